package resolver

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/plane"
)

// PrivateTLD is the top-level domain ICANN reserved for private use (2024): tenants' domains
// live under it by default, and a name under it is never asked of an upstream.
const PrivateTLD = "internal."

// zoneTTL is the TTL of the answers from a tenant's zone: a peer's addresses never change
// while it exists, but a removed peer should not linger in caches.
const zoneTTL = 60

// Zone is one tenant's names: each served peer's name under the tenant's domain, with its
// overlay addresses, and the reverse; and its split zones.
type Zone struct {
	// Domain is the tenant's domain, lower case, fully qualified ("acme.internal.").
	Domain string
	names  map[string]peerAddrs  // fully qualified, lower case
	ptr    map[netip.Addr]string // overlay address → fully qualified name
	// splits are the tenant's split zones by fully qualified name; nil without any.
	splits map[string]*splitZone
	// upstreams are the tenant's own (plane.TenantDNS), tried in order; none: the node's.
	upstreams []plane.DNSUpstream
	// log: the tenant's query log is on; who names its served peers by overlay address
	// then (nil otherwise).
	log bool
	who map[netip.Addr]string
}

type peerAddrs struct{ v4, v6 netip.Addr }

// DefaultDomain is a tenant's domain unless it sets one: <tenant>.internal.
func DefaultDomain(tenant string) string { return tenant + "." + PrivateTLD }

// BuildZones makes the zones of the tenants in d from their peers served at the time now
// says (enabled, not expired): a disabled peer has no name. A zone carries its tenant's
// resolver settings too (plane.TenantDNS). A peer's name is lower-cased
// (DNS names are case-blind); of two peers whose names differ only in case, the older (lower
// ID) has the name.
func BuildZones(d *plane.Desired, served func(*plane.Peer) bool) map[int64]*Zone {
	// Maps made to size: grown from empty, the zones of 100,000 peers allocated 92 MB a
	// build (BenchmarkBuildZones), made to size 58 MB.
	size := make(map[int64]int, len(d.Tenants))
	for i := range d.Peers {
		size[d.Peers[i].Tenant]++
	}
	zs := make(map[int64]*Zone, len(d.Tenants))
	for _, t := range d.Tenants {
		domain := DefaultDomain(t.Name)
		if t.Domain != "" {
			domain = dns.Fqdn(strings.ToLower(t.Domain))
		}
		n := size[t.ID]
		zs[t.ID] = &Zone{Domain: domain, names: make(map[string]peerAddrs, n), ptr: make(map[netip.Addr]string, 2*n), splits: buildSplits(&t),
			upstreams: t.DNS.Upstreams, log: t.DNS.QueryLog}
		if t.DNS.QueryLog {
			zs[t.ID].who = make(map[netip.Addr]string, 2*n)
		}
	}
	peers := slices.Clone(d.Peers)
	slices.SortFunc(peers, func(a, b plane.Peer) int { return int(a.ID - b.ID) })
	for i := range peers {
		p := &peers[i]
		z := zs[p.Tenant]
		if z == nil || !served(p) {
			continue
		}
		if z.who != nil {
			for _, a := range []netip.Addr{p.IPv4, p.IPv6} {
				if a.IsValid() {
					z.who[a] = p.Name
				}
			}
		}
		label := strings.ToLower(p.Name)
		if _, ok := dns.IsDomainName(label); !ok {
			continue
		}
		name := label + "." + z.Domain
		if _, taken := z.names[name]; taken {
			continue
		}
		z.names[name] = peerAddrs{p.IPv4, p.IPv6}
		for _, a := range []netip.Addr{p.IPv4, p.IPv6} {
			if a.IsValid() {
				z.ptr[a] = name
			}
		}
	}
	return zs
}

// lookup answers the names of the zone: the records of name of type qtype, and whether
// the name exists.
func (z *Zone) lookup(name string, qtype uint16) (rrs []dns.RR, exists bool) {
	a, ok := z.names[name]
	if !ok {
		return nil, name == z.Domain
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: zoneTTL}
	}
	if (qtype == dns.TypeA || qtype == dns.TypeANY) && a.v4.IsValid() {
		rrs = append(rrs, &dns.A{Hdr: hdr(dns.TypeA), A: a.v4.AsSlice()})
	}
	if (qtype == dns.TypeAAAA || qtype == dns.TypeANY) && a.v6.IsValid() {
		rrs = append(rrs, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.v6.AsSlice()})
	}
	return rrs, true
}

// soa is the zone's SOA, for the authority section of negative answers (RFC 2308): its
// minimum is how long they may be cached.
func (z *Zone) soa() dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: z.Domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: zoneTTL},
		Ns: "ns." + z.Domain, Mbox: "hostmaster." + z.Domain, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: zoneTTL}
}

// reverseAddr parses a PTR query name (in-addr.arpa or ip6.arpa) into the address it asks
// about; false when it is not a whole address.
func reverseAddr(name string) (netip.Addr, bool) {
	name = strings.ToLower(name)
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		labels := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		slices.Reverse(labels)
		a, err := netip.ParseAddr(strings.Join(labels, "."))
		return a, err == nil && a.Is4()
	case strings.HasSuffix(name, ".ip6.arpa."):
		nibbles := strings.Split(strings.TrimSuffix(name, ".ip6.arpa."), ".")
		if len(nibbles) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, n := range nibbles {
			if len(n) != 1 {
				return netip.Addr{}, false
			}
			v := strings.IndexByte("0123456789abcdef", n[0])
			if v < 0 {
				return netip.Addr{}, false
			}
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= byte(v) << 4
			} else {
				b[pos/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
