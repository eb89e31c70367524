package plane

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"

	"github.com/popgate/popgate/store"
)

// TenantDNS is what the in-tunnel resolver (gateway/resolver) does for one tenant beyond its
// peers' names (Tenant.Domain).
type TenantDNS struct {
	// Zones are the tenant's split zones: a query of its peers for a name in one of them
	// (the longest that matches) goes to the zone's servers, through the tenant's own
	// packet path (a site, or a peer), from the node's own overlay address (NodeAddrs).
	Zones []DNSZone `json:"zones,omitempty"`
	// Upstreams are the resolvers the tenant's other queries are forwarded to, tried in
	// order (the next when one does not answer in time); none: the node's. At most
	// store.MaxDNSUpstreams, each on a public address.
	Upstreams []DNSUpstream `json:"upstreams,omitempty"`
	// Blocklists are the tenant's blocklists, by name: a name one of them lists, or a
	// subdomain of it, is answered NXDOMAIN to the tenant's peers. The names themselves are
	// not in the desired state (which goes whole to every node at each change): a node gets
	// each list's content by its SHA256, from its own store or its controller (nodesync's
	// GET /v1/blob/{sha256}), and keeps one copy of a content however many tenants list it.
	Blocklists []BlocklistRef `json:"blocklists,omitempty"`
	// QueryLog: the node logs the tenant's queries (DNSQuery) and reports them
	// (Report.DNSLog); off unless the tenant turned it on.
	QueryLog bool `json:"query_log,omitempty"`
}

// DNSZone is one split zone of a tenant.
type DNSZone struct {
	// Name is the zone, lower case without the final dot; "." is every name.
	Name string `json:"name"`
	// Servers are asked in order, the next when one does not answer in time: addresses in
	// one of the tenant's site routes, or its peers' overlay addresses.
	Servers []netip.AddrPort `json:"servers"`
}

// DNSUpstream is one of a tenant's upstreams (store.DNSUpstream): plain DNS over UDP, or DNS
// over TLS when TLSName is set.
type DNSUpstream struct {
	Addr netip.AddrPort `json:"addr"`
	// TLSName is the name the server's certificate must hold; "": plain DNS.
	TLSName string `json:"tls_name,omitempty"`
}

// DNSUpstreamOf is the plane's form of store upstream u.
func DNSUpstreamOf(u store.DNSUpstream) DNSUpstream {
	return DNSUpstream{Addr: u.Addr, TLSName: u.TLSName}
}

// String is the upstream as the store writes it: "9.9.9.9:53", "tls://dns.quad9.net@9.9.9.9:853".
func (u DNSUpstream) String() string {
	return store.DNSUpstream{Addr: u.Addr, TLSName: u.TLSName}.String()
}

// BlocklistRef is one blocklist of a tenant: its name and the hash of its content in the
// canonical form (gateway/blocklist: sorted names, one a line).
type BlocklistRef struct {
	Name   string `json:"name"`
	SHA256 Digest `json:"sha256"`
	// Names is how many names the content holds.
	Names int `json:"names"`
}

// Digest is a SHA-256, written in hex.
type Digest [32]byte

// String is d in lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is all zeros: no content.
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText writes d in hex.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads d from 64 hex digits.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// ParseDigest reads a SHA-256 from 64 hex digits.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, fmt.Errorf("a SHA-256 is 64 hex digits, not %d characters", len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return Digest{}, fmt.Errorf("a SHA-256 is 64 hex digits: %v", err)
	}
	return d, nil
}

// validateDNS checks what the store checks of a tenant's DNS settings: zone names valid and
// unique, 1 to store.MaxDNSZoneServers valid servers each, at most store.MaxDNSZones zones;
// every upstream reads back as itself (store.ParseDNSUpstream: the form, a public address),
// none twice, at most store.MaxDNSUpstreams; at most store.MaxBlocklists blocklists with valid
// unique names, each with a content hash and at most store.MaxBlocklistNames names, together
// at most store.MaxTenantBlocklistNames.
func (t *Tenant) validateDNS() error {
	if len(t.DNS.Zones) > store.MaxDNSZones {
		return invalid("tenant %q: %d DNS zones, at most %d", t.Name, len(t.DNS.Zones), store.MaxDNSZones)
	}
	seen := make(map[string]bool, len(t.DNS.Zones))
	for _, z := range t.DNS.Zones {
		name, err := store.CanonicalDNSZone(z.Name)
		if err != nil || name != z.Name || seen[name] {
			return invalid("tenant %q: DNS zone %q is not a unique lower-case zone name without the final dot", t.Name, z.Name)
		}
		seen[name] = true
		if n := len(z.Servers); n < 1 || n > store.MaxDNSZoneServers {
			return invalid("tenant %q: DNS zone %q has %d servers, not 1 to %d", t.Name, z.Name, n, store.MaxDNSZoneServers)
		}
		for _, s := range z.Servers {
			if err := store.ValidateDNSServer(s); err != nil {
				return invalid("tenant %q: DNS zone %q: %v", t.Name, z.Name, err)
			}
		}
	}
	ups := t.DNS.Upstreams
	if len(ups) > store.MaxDNSUpstreams {
		return invalid("tenant %q: %d DNS upstreams, at most %d", t.Name, len(ups), store.MaxDNSUpstreams)
	}
	for i, u := range ups {
		p, err := store.ParseDNSUpstream(u.String())
		if err != nil {
			return invalid("tenant %q: %v", t.Name, err)
		}
		if DNSUpstreamOf(p) != u {
			return invalid("tenant %q: DNS upstream %s is not written as the store writes it (%s)", t.Name, u, p)
		}
		for _, o := range ups[:i] {
			if o == u {
				return invalid("tenant %q: DNS upstream %s is there twice", t.Name, u)
			}
		}
	}
	return t.validateBlocklists()
}

func (t *Tenant) validateBlocklists() error {
	lists := t.DNS.Blocklists
	if len(lists) > store.MaxBlocklists {
		return invalid("tenant %q: %d blocklists, at most %d", t.Name, len(lists), store.MaxBlocklists)
	}
	total := 0
	for i, b := range lists {
		if err := store.ValidateBlocklistName(b.Name); err != nil {
			return invalid("tenant %q: blocklist %d: %v", t.Name, i, err)
		}
		for _, o := range lists[:i] {
			if o.Name == b.Name {
				return invalid("tenant %q: blocklist %q is there twice", t.Name, b.Name)
			}
		}
		if b.SHA256.IsZero() || b.Names < 0 || b.Names > store.MaxBlocklistNames {
			return invalid("tenant %q: blocklist %q: no content hash, or %d names (at most %d)", t.Name, b.Name, b.Names, store.MaxBlocklistNames)
		}
		total += b.Names
	}
	if total > store.MaxTenantBlocklistNames {
		return invalid("tenant %q: its blocklists hold %d names, at most %d", t.Name, total, store.MaxTenantBlocklistNames)
	}
	return nil
}

// DNSQuery is one query of a tenant's that the in-tunnel resolver answered, as its query log
// (TenantDNS.QueryLog) keeps it.
type DNSQuery struct {
	// Seq numbers the node's logged queries from 1 at the start of its process, so that the
	// controller keeps each once however often it is sent (as Event.Seq).
	Seq uint64 `json:"seq"`
	// At is when it came, by the node's clock.
	At     time.Time `json:"at"`
	Tenant int64     `json:"tenant"` // Tenant.ID
	// Peer is the name of the peer that asked; "" for a host behind a site's connector.
	Peer string `json:"peer,omitempty"`
	// Client is the address that asked.
	Client netip.Addr `json:"client"`
	// Name is the name asked for, lower case, without the final dot ("." for the root).
	Name string `json:"name"`
	// Type is the question's type: "A", "AAAA", "TYPE65534".
	Type string `json:"type"`
	// Outcome is what the resolver did (a DNSOutcome…; a newer node may say others).
	Outcome string `json:"outcome"`
	// Rcode is the answer's: "NOERROR", "NXDOMAIN", "SERVFAIL", …
	Rcode string `json:"rcode"`
	// Latency is from the query to the answer.
	Latency time.Duration `json:"latency_ns"`
}

// What the resolver did with a query, as DNSQuery.Outcome.
const (
	DNSOutcomeLocal     = "local"     // a name of the tenant's, the overlay's reverse, or under the private TLD
	DNSOutcomeCache     = "cache"     // from the cache
	DNSOutcomeForwarded = "forwarded" // an upstream answered
	DNSOutcomeBlocked   = "blocked"   // NXDOMAIN: on one of the tenant's blocklists (TenantDNS.Blocklists)
	DNSOutcomeSplit     = "split"     // one of the servers of the tenant's split zone (TenantDNS.Zones) answered
	DNSOutcomeFailed    = "failed"    // SERVFAIL: no upstream or split zone server answered in time, or none to ask
	DNSOutcomeRefused   = "refused"   // not a query the resolver takes (an opcode, a class, several questions)
)

// MaxReportDNSLog is the most logged queries one report carries: the node sends the others in
// the reports that follow.
const MaxReportDNSLog = 1000
