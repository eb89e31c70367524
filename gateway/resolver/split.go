package resolver

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/plane"
)

// Split zones: a tenant's queries for names in one of its zones (plane.DNSZone) go to the
// zone's servers, in a site of the tenant or at one of its peers, through the tenant's own
// packet path: the resolver builds each query as an IP packet from the node's own overlay
// address (plane.Overlay.NodeAddrs), Config.SendSplit routes it as the tenant's traffic,
// and the packet path hands the answers, addressed to the node's address, to Deliver. The
// answers are cached for that tenant alone.

// DefaultMaxSplitInFlight is Config.MaxSplitInFlight's default.
const DefaultMaxSplitInFlight = 1024

// splitZone is one split zone of a tenant.
type splitZone struct {
	name    string // fully qualified, lower case; "." for every name
	servers []netip.AddrPort
}

// buildSplits returns the zones of t by fully qualified name; nil without any.
func buildSplits(t *plane.Tenant) map[string]*splitZone {
	if len(t.DNS.Zones) == 0 {
		return nil
	}
	m := make(map[string]*splitZone, len(t.DNS.Zones))
	for _, z := range t.DNS.Zones {
		name := dns.Fqdn(strings.ToLower(z.Name))
		m[name] = &splitZone{name: name, servers: z.Servers}
	}
	return m
}

// splitFor returns the longest of the zone's split zones that holds name (fully qualified,
// lower case), or nil.
func (z *Zone) splitFor(name string) *splitZone {
	if len(z.splits) == 0 {
		return nil
	}
	for n := name; ; {
		if s := z.splits[n]; s != nil {
			return s
		}
		if n == "." {
			return nil
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || i == len(n)-1 {
			n = "."
		} else {
			n = n[i+1:]
		}
	}
}

// splitKey is what an answer from a split zone's server is matched by, besides the
// addresses and the question: the query's source port and ID, both random.
type splitKey struct {
	port, id uint16
}

// splitPending is a query sent to a split zone's server, waiting for its answer.
type splitPending struct {
	pending
	tenant int64
	zone   *splitZone
	from   netip.AddrPort // the node's address and the query's port
}

// splitState is the resolver's split queries in flight; mu guards all of it.
type splitState struct {
	mu       sync.Mutex
	pending  map[splitKey]*splitPending
	inFlight map[int64]int // by tenant
}

// SetNodeAddrs sets the node's own overlay addresses, the source of the queries to split
// zones' servers; invalid ones: the node has none, and split zones answer SERVFAIL.
func (r *Resolver) SetNodeAddrs(v4, v6 netip.Addr) {
	r.nodeAddrs.Store(&[2]netip.Addr{v4, v6})
}

// querySplit answers q of tenant for a name in its split zone sz: from the tenant's part of
// the cache, else by sending it to the zone's servers (nil: the answer comes through reply).
// lq is q's query log entry (nil: the tenant's log is off), logged when q is answered.
func (r *Resolver) querySplit(tenant int64, q *dns.Msg, sz *splitZone, key cacheKey, size int, later func() func([]byte), lq *logged) []byte {
	key.scope = tenant
	if m := r.cache.get(key, r.cfg.Now()); m != nil {
		r.hits.Add(1)
		m.Id = q.Id
		m.Question[0].Name = q.Question[0].Name
		m.RecursionDesired = q.RecursionDesired
		fitEDNS(m, q)
		return r.done(lq, q, m, size, plane.DNSOutcomeCache)
	}
	if r.cfg.SendSplit == nil {
		r.failed.Add(1)
		return r.done(lq, q, errReply(q, dns.RcodeServerFailure), size, plane.DNSOutcomeFailed)
	}
	s := &r.split
	s.mu.Lock()
	if s.inFlight[tenant] >= r.cfg.MaxSplitInFlight {
		s.mu.Unlock()
		r.failed.Add(1)
		return r.done(lq, q, errReply(q, dns.RcodeServerFailure), size, plane.DNSOutcomeFailed)
	}
	s.inFlight[tenant]++
	s.mu.Unlock()
	r.splits.Add(1)
	p := &splitPending{pending: pending{q: q, key: key, size: size, reply: later(), logged: lq}, tenant: tenant, zone: sz}
	r.sendSplit(p, 0)
	return nil
}

// sendSplit sends p to its zone's servers from number i on: the first the tenant's packet
// path takes waits for its answer until the timeout; when none does, the client gets
// SERVFAIL. p is in no pending map while sendSplit runs.
func (r *Resolver) sendSplit(p *splitPending, i int) {
	s := &r.split
	addrs := r.nodeAddrs.Load()
	for ; i < len(p.zone.servers); i++ {
		to := p.zone.servers[i]
		src := addrs[0]
		if to.Addr().Is6() {
			src = addrs[1]
		}
		if !src.IsValid() {
			r.log.Debug("dns: this node has no overlay address of its own to ask a split zone's server from", "tenant_id", p.tenant, "zone", p.zone.name, "server", to)
			continue
		}
		s.mu.Lock()
		k := splitKey{port: randomPort(), id: randomID()}
		for s.pending[k] != nil {
			k = splitKey{port: randomPort(), id: randomID()}
		}
		from := netip.AddrPortFrom(src, k.port)
		p.tries, p.to, p.from = i+1, to, from
		s.pending[k] = p
		p.timer = time.AfterFunc(r.cfg.Timeout, func() { r.splitTimeout(k, p) })
		s.mu.Unlock()
		out := p.q.Copy()
		out.Id = k.id
		// An answer larger than the tunnels carry would come in fragments, which the
		// packet path does not reassemble: ask for one that fits (the client gets TC
		// beyond its own size in any case).
		if o := out.IsEdns0(); o != nil && o.UDPSize() > MaxUDPSize {
			o.SetUDPSize(MaxUDPSize)
		}
		b, err := out.Pack()
		if err == nil {
			err = r.cfg.SendSplit(p.tenant, appendUDP(make([]byte, 0, ipv6Header+udpHeaderLen+len(b)), from, to, b))
		}
		if err == nil {
			return
		}
		// Out of the tenant's reach now (its route or peer went since the zone was added),
		// or not packed: the next server, at once.
		r.log.Debug("dns: a split zone's server cannot be asked", "tenant_id", p.tenant, "zone", p.zone.name, "server", to, "err", err)
		s.mu.Lock()
		if s.pending[k] != p {
			s.mu.Unlock()
			return // the timer fired meanwhile and carried on
		}
		delete(s.pending, k)
		p.timer.Stop()
		s.mu.Unlock()
	}
	r.splitDone(p)
	r.failed.Add(1)
	r.logQuery(p.logged, p.q, plane.DNSOutcomeFailed, dns.RcodeServerFailure)
	if b := r.pack(errReply(p.q, dns.RcodeServerFailure), p.size); b != nil {
		p.reply(b)
	}
}

// splitDone takes p out of its tenant's queries in flight.
func (r *Resolver) splitDone(p *splitPending) {
	s := &r.split
	s.mu.Lock()
	if s.inFlight[p.tenant]--; s.inFlight[p.tenant] <= 0 {
		delete(s.inFlight, p.tenant)
	}
	s.mu.Unlock()
}

// splitTimeout tries the zone's next server, or answers SERVFAIL after the last.
func (r *Resolver) splitTimeout(k splitKey, p *splitPending) {
	s := &r.split
	s.mu.Lock()
	if s.pending[k] != p {
		s.mu.Unlock()
		return
	}
	delete(s.pending, k)
	tries := p.tries
	s.mu.Unlock()
	if r.ctx.Err() != nil {
		r.splitDone(p)
		return
	}
	r.sendSplit(p, tries)
}

// Deliver takes a packet the packet path received for the node's own overlay address from
// tenant (a peer or site of it at this node, or another node over the backbone with its
// label): the answer of a split zone's server, when it matches a query in flight by
// tenant, addresses, ports, ID and question. Anything else is dropped; false says so. raw
// is the caller's: Deliver keeps nothing of it.
func (r *Resolver) Deliver(tenant int64, raw []byte) bool {
	from, to, payload, ok := parseUDP(raw)
	if !ok || len(payload) < 12 {
		return false
	}
	k := splitKey{port: to.Port(), id: uint16(payload[0])<<8 | uint16(payload[1])}
	s := &r.split
	s.mu.Lock()
	p := s.pending[k]
	if p == nil || p.tenant != tenant || p.to != from || p.from != to {
		s.mu.Unlock()
		return false // late, spoofed, or from elsewhere
	}
	m := new(dns.Msg)
	if m.Unpack(payload) != nil || !m.Response || len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, p.q.Question[0].Name) ||
		m.Question[0].Qtype != p.q.Question[0].Qtype || m.Question[0].Qclass != p.q.Question[0].Qclass {
		s.mu.Unlock()
		return false
	}
	delete(s.pending, k)
	p.timer.Stop()
	s.mu.Unlock()
	r.splitDone(p)
	r.finish(&p.pending, m, plane.DNSOutcomeSplit)
	return true
}

// randomPort is a source port for a query to a split zone's server, above the well-known
// ports.
func randomPort() uint16 {
	for {
		if p := randomID(); p >= 1024 {
			return p
		}
	}
}
