// Package resolver is the DNS resolver every PoP answers at its overlay addresses (the
// `DNS =` line of client configs): each tenant's peers by name under the tenant's domain,
// the reverse of overlay addresses, names in a tenant's split zones sent to the zone's
// servers through the tenant's own packet path (split.go), and everything else forwarded to
// the tenant's own upstreams (plain DNS or DNS over TLS, dot.go) or else the node's. The
// answers of the node's upstreams are cached for every tenant; those of a tenant's split
// zones and own upstreams for that tenant alone. Queries come from the packet path (UDP to port 53 of
// the node's overlay addresses), never from a socket on a public address, so the node is no
// open resolver. A tenant's names are answered only to that tenant's peers: a query for
// another tenant's name finds nothing, and names under the private TLD are never asked of an
// upstream. A tenant's blocklists (SetBlocklists) make the names they hold, and their
// subdomains, NXDOMAIN to that tenant's peers only, before its split zones and upstreams
// are asked.
package resolver

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/plane"
)

// Defaults of Config.
const (
	DefaultPeerRate     = 1000 // queries a second from one client address
	DefaultPeerBurst    = 2000
	DefaultCacheEntries = 20000
	DefaultTimeout      = 2 * time.Second
	// MaxUDPSize is the largest answer sent over UDP: the DNS flag day's 1,232 bytes, which
	// fit any tunnel MTU popgate allows without fragments. Larger answers are truncated (TC)
	// and the client asks again over TCP.
	MaxUDPSize = 1232
	// maxInFlight bounds the queries waiting for an upstream; more are answered SERVFAIL.
	maxInFlight = 8192
	// upstreamSockets is how many UDP sockets carry the forwarded queries (each with random
	// port and 16-bit IDs chosen at random).
	upstreamSockets = 4
	// tenantSockets is how many carry the queries to tenants' plain upstreams (opened at
	// the first such query, for both address families).
	tenantSockets  = 2
	maxPositiveTTL = 24 * time.Hour
	maxNegativeTTL = 5 * time.Minute
	// BlockedTTL is how long a client may cache the NXDOMAIN of a blocked name (the SOA
	// minimum of the answer): short, so that a list taken off unblocks its names soon.
	BlockedTTL = 60
)

// Config configures a Resolver; New calls Validate.
type Config struct {
	// Upstreams are the resolvers forwarded to, tried in order. None: only the tenants'
	// names are answered, everything else SERVFAIL.
	Upstreams []netip.AddrPort
	// Overlay is the tenants' address space: the reverse of its addresses is answered here,
	// never forwarded.
	Overlay plane.Overlay
	// PeerRate and PeerBurst bound the queries of one client address (a token bucket);
	// more are dropped and counted. Defaults DefaultPeerRate, DefaultPeerBurst.
	PeerRate, PeerBurst float64
	// CacheEntries bounds the cache. Default DefaultCacheEntries.
	CacheEntries int
	// Timeout is how long one upstream may take before the next is tried. Default
	// DefaultTimeout.
	Timeout time.Duration
	// ListenPacket opens the sockets towards the upstreams. Default net.ListenPacket.
	ListenPacket func(network, address string) (net.PacketConn, error)
	// TLSRoots verifies the certificates of DNS-over-TLS upstreams. Default nil: the
	// system's roots (tests set their own).
	TLSRoots *x509.CertPool
	// MaxTLSConns bounds the node's connections to DNS-over-TLS upstreams, every tenant's
	// together. Default DefaultMaxTLSConns.
	MaxTLSConns int
	// TLSIdle is how long a DNS-over-TLS connection with no query may stay open. Default
	// DefaultTLSIdle.
	TLSIdle time.Duration
	// LogEntries bounds the query log kept for the controller (querylog.go). Default
	// DefaultLogEntries.
	LogEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// SendSplit carries a query to a tenant's split zone server: pkt is an IP packet from
	// the node's own overlay address (SetNodeAddrs) to the server, to be routed as
	// tenant's traffic from the node; the answer comes back through Deliver. An error means
	// the server is out of the tenant's reach now (the next server is tried). nil: split
	// zones answer SERVFAIL.
	SendSplit func(tenant int64, pkt []byte) error
	// MaxSplitInFlight bounds the queries one tenant has waiting for its split zones'
	// servers; more are answered SERVFAIL. Default DefaultMaxSplitInFlight.
	MaxSplitInFlight int
}

// Validate fills defaults.
func (c *Config) Validate() error {
	if c.PeerRate == 0 {
		c.PeerRate = DefaultPeerRate
	}
	if c.PeerBurst == 0 {
		c.PeerBurst = DefaultPeerBurst
	}
	if c.PeerRate < 0 || c.PeerBurst < 1 {
		return fmt.Errorf("resolver: peer rate %v and burst %v: use positive values", c.PeerRate, c.PeerBurst)
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = DefaultCacheEntries
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ListenPacket == nil {
		c.ListenPacket = net.ListenPacket
	}
	if c.MaxTLSConns == 0 {
		c.MaxTLSConns = DefaultMaxTLSConns
	}
	if c.TLSIdle == 0 {
		c.TLSIdle = DefaultTLSIdle
	}
	if c.LogEntries == 0 {
		c.LogEntries = DefaultLogEntries
	}
	if c.MaxTLSConns < 0 || c.TLSIdle < 0 || c.Timeout < 0 || c.LogEntries < 0 {
		return fmt.Errorf("resolver: MaxTLSConns %d, TLSIdle %s, Timeout %s, LogEntries %d: use positive values (0: the default)",
			c.MaxTLSConns, c.TLSIdle, c.Timeout, c.LogEntries)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxSplitInFlight == 0 {
		c.MaxSplitInFlight = DefaultMaxSplitInFlight
	}
	if c.MaxSplitInFlight < 0 {
		return fmt.Errorf("resolver: MaxSplitInFlight %d: use a positive bound", c.MaxSplitInFlight)
	}
	return nil
}

// Stats counts what became of the queries since the resolver started.
type Stats struct {
	Queries     uint64 // every query taken in
	Local       uint64 // answered from a tenant's zone or the reverse of the overlay
	CacheHits   uint64 // answered from the cache
	Forwarded   uint64 // sent to an upstream
	Blocked     uint64 // NXDOMAIN: a name of one of the tenant's blocklists
	Split       uint64 // sent to a tenant's split zone's server
	Failed      uint64 // SERVFAIL: no upstream answered in time, or too many in flight
	RateLimited uint64 // dropped: the client address was over its rate
	Malformed   uint64 // not a DNS query
	LogDropped  uint64 // logged queries that went before the controller had them (LogAfter)
}

// Resolver answers the tenants' DNS queries. Its methods are safe for concurrent use.
type Resolver struct {
	cfg Config
	log *slog.Logger

	zones  atomic.Pointer[map[int64]*Zone]
	blocks atomic.Pointer[map[int64]Blocklist]
	cache  *cache
	limit  *limiter

	// nodeUps are Config.Upstreams, as tenants' are written.
	nodeUps []plane.DNSUpstream
	socks   []*upstreamSock
	next    atomic.Uint32 // round robin over socks and tsocks
	// tsocks are the sockets towards tenants' plain upstreams, opened at the first query
	// that needs them (tsMu serialises the opening and Close).
	tsMu   sync.Mutex
	tsocks atomic.Pointer[[]*upstreamSock]
	// tls holds the connections to DNS-over-TLS upstreams (dot.go).
	tls dotPools
	// qlog is the query log of the tenants that turned it on (querylog.go).
	qlog queryLog

	queries, local, hits, forwarded, blocked, splits, failed, limited, malformed atomic.Uint64

	inFlight atomic.Int64
	// split holds the queries sent to split zones' servers; nodeAddrs is where from.
	split     splitState
	nodeAddrs atomic.Pointer[[2]netip.Addr]
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New makes a resolver; Start opens its upstream sockets.
func New(cfg Config, log *slog.Logger) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Resolver{cfg: cfg, log: log, cache: newCache(cfg.CacheEntries), limit: newLimiter(cfg.PeerRate, cfg.PeerBurst)}
	for _, u := range cfg.Upstreams {
		r.nodeUps = append(r.nodeUps, plane.DNSUpstream{Addr: u})
	}
	r.tls.pools = map[plane.DNSUpstream]*dotPool{}
	r.qlog.max = cfg.LogEntries
	empty := map[int64]*Zone{}
	r.zones.Store(&empty)
	r.split.pending, r.split.inFlight = map[splitKey]*splitPending{}, map[int64]int{}
	r.nodeAddrs.Store(&[2]netip.Addr{})
	none := map[int64]Blocklist{}
	r.blocks.Store(&none)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Start opens the sockets towards the upstreams (none without upstreams).
func (r *Resolver) Start() error {
	if len(r.cfg.Upstreams) == 0 {
		return nil
	}
	for range upstreamSockets {
		network := "udp4"
		if !r.cfg.Upstreams[0].Addr().Unmap().Is4() {
			network = "udp6"
		}
		if r.hasBothFamilies() {
			network = "udp"
		}
		pc, err := r.cfg.ListenPacket(network, ":0")
		if err != nil {
			r.Close()
			return fmt.Errorf("resolver: a socket towards the upstreams: %w", err)
		}
		r.socks = append(r.socks, r.startSock(pc))
	}
	return nil
}

// startSock starts reading the answers that come to pc.
func (r *Resolver) startSock(pc net.PacketConn) *upstreamSock {
	s := &upstreamSock{r: r, pc: pc, pending: map[uint16]*pending{}}
	r.wg.Add(1)
	go s.read()
	return s
}

// tenantSocks returns the sockets towards tenants' plain upstreams, opening them at the
// first call; nil when they cannot be opened (logged) or the resolver is closed.
func (r *Resolver) tenantSocks() []*upstreamSock {
	if ss := r.tsocks.Load(); ss != nil {
		return *ss
	}
	r.tsMu.Lock()
	defer r.tsMu.Unlock()
	if ss := r.tsocks.Load(); ss != nil {
		return *ss
	}
	if r.ctx.Err() != nil {
		return nil
	}
	var ss []*upstreamSock
	for range tenantSockets {
		pc, err := r.cfg.ListenPacket("udp", ":0") // both families: tenants' upstreams may be either
		if err != nil {
			r.log.Error("dns: open a socket towards tenants' upstreams", "err", err)
			for _, s := range ss {
				s.pc.Close()
			}
			return nil
		}
		ss = append(ss, r.startSock(pc))
	}
	r.tsocks.Store(&ss)
	return ss
}

func (r *Resolver) hasBothFamilies() bool {
	v4, v6 := false, false
	for _, u := range r.cfg.Upstreams {
		if u.Addr().Unmap().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4 && v6
}

// Close closes the upstream sockets and connections; queries in flight get no answer, and
// Deliver takes no more. Idempotent.
func (r *Resolver) Close() {
	r.cancel()
	socks := r.socks
	r.tsMu.Lock()
	if ts := r.tsocks.Load(); ts != nil {
		socks = append(slices.Clip(socks), *ts...)
	}
	r.tsMu.Unlock()
	for _, s := range socks {
		s.pc.Close()
	}
	r.tls.closeAll()
	r.wg.Wait()
	r.split.mu.Lock()
	for k, p := range r.split.pending {
		p.timer.Stop()
		delete(r.split.pending, k)
	}
	clear(r.split.inFlight)
	r.split.mu.Unlock()
	for _, s := range socks {
		s.mu.Lock()
		for id, p := range s.pending {
			p.timer.Stop()
			delete(s.pending, id)
		}
		s.mu.Unlock()
	}
}

// SetZones replaces the tenants' zones (BuildZones); queries after it see the new ones.
// Connections to DNS-over-TLS upstreams no tenant has any more close when idle.
func (r *Resolver) SetZones(zs map[int64]*Zone) {
	r.zones.Store(&zs)
	live := map[plane.DNSUpstream]bool{}
	for _, z := range zs {
		for _, u := range z.upstreams {
			if u.TLSName != "" {
				live[u] = true
			}
		}
	}
	r.tls.forget(live)
}

// Blocklist says whether a name is blocked: gateway/blocklist's Union is one. It must be
// safe for concurrent use and must not change once handed to SetBlocklists.
type Blocklist interface {
	// Match reports whether name (lower case, fully qualified) or a parent of it is
	// listed, and which (without the final dot).
	Match(name string) (listed string, ok bool)
}

// SetBlocklists replaces the tenants' blocklists, by tenant ID (a tenant missing has none);
// queries after it see the new ones.
func (r *Resolver) SetBlocklists(bs map[int64]Blocklist) { r.blocks.Store(&bs) }

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	return Stats{Queries: r.queries.Load(), Local: r.local.Load(), CacheHits: r.hits.Load(), Forwarded: r.forwarded.Load(), Blocked: r.blocked.Load(),
		Split: r.splits.Load(), Failed: r.failed.Load(), RateLimited: r.limited.Load(), Malformed: r.malformed.Load(), LogDropped: r.LogDropped()}
}

// Query answers msg, one DNS query over UDP from client address src, a peer (or a site's
// host) of tenant. It returns the answer when it has one at once (a name of the tenant's, the
// cache, an error); otherwise nil: it forwards the query, and the function later returns
// gets the answer from another goroutine, unless no upstream answers in time (then SERVFAIL)
// or the resolver closes. later is called only then, so an answer at once costs the caller
// nothing to set up. A query it drops (over the rate, not DNS) gets nothing.
func (r *Resolver) Query(tenant int64, src netip.Addr, msg []byte, later func() func([]byte)) []byte {
	return r.query(tenant, src, msg, later, false)
}

// query is Query; overTCP: the answer goes back over TCP, whole (up to 65,535 bytes).
func (r *Resolver) query(tenant int64, src netip.Addr, msg []byte, later func() func([]byte), overTCP bool) []byte {
	r.queries.Add(1)
	if !r.limit.allow(src, r.cfg.Now()) {
		r.limited.Add(1)
		return nil
	}
	q := new(dns.Msg)
	if err := q.Unpack(msg); err != nil || q.Response {
		r.malformed.Add(1)
		if len(msg) >= 12 && msg[2]&0x80 == 0 { // a query header: say so
			return formErr(msg)
		}
		return nil
	}
	size := clientSize(q)
	if overTCP {
		size = dns.MaxMsgSize
	}
	zs := *r.zones.Load()
	z := zs[tenant]
	lq := r.newLogged(z, tenant, src) // nil unless the tenant's query log is on
	if q.Opcode != dns.OpcodeQuery {
		return r.done(lq, q, errReply(q, dns.RcodeNotImplemented), size, plane.DNSOutcomeRefused)
	}
	if len(q.Question) != 1 {
		return r.pack(errReply(q, dns.RcodeFormatError), size)
	}
	question := q.Question[0]
	if question.Qclass != dns.ClassINET && question.Qclass != dns.ClassANY {
		return r.done(lq, q, errReply(q, dns.RcodeRefused), size, plane.DNSOutcomeRefused)
	}
	name := strings.ToLower(question.Name)
	if z != nil && (name == z.Domain || strings.HasSuffix(name, "."+z.Domain)) {
		r.local.Add(1)
		return r.done(lq, q, r.fromZone(q, z, name, question.Qtype), size, plane.DNSOutcomeLocal)
	}
	if a, ok := reverseAddr(name); ok && (r.cfg.Overlay.V4.Contains(a) || r.cfg.Overlay.V6.Contains(a)) {
		r.local.Add(1)
		return r.done(lq, q, r.reverse(q, z, a, question.Qtype), size, plane.DNSOutcomeLocal)
	}
	// A blocked name is blocked whichever server would answer it, a split zone's too.
	if bl := (*r.blocks.Load())[tenant]; bl != nil {
		if listed, ok := bl.Match(name); ok {
			r.blocked.Add(1)
			return r.done(lq, q, blockedAnswer(q, listed), size, plane.DNSOutcomeBlocked)
		}
	}
	key := cacheKey{name: name, qtype: question.Qtype, qclass: question.Qclass, do: do(q)}
	if z != nil {
		if sz := z.splitFor(name); sz != nil {
			return r.querySplit(tenant, q, sz, key, size, later, lq)
		}
	}
	if name == PrivateTLD || strings.HasSuffix(name, "."+PrivateTLD) {
		// Another tenant's name, or nobody's: as if it did not exist, and never asked of an
		// upstream (which would learn the names a tenant uses).
		r.local.Add(1)
		return r.done(lq, q, negative(q, dns.RcodeNameError, nil), size, plane.DNSOutcomeLocal)
	}
	// The tenant's own upstreams, or the node's; their answers are cached apart.
	ups := r.nodeUps
	if z != nil && len(z.upstreams) > 0 {
		ups, key.scope = z.upstreams, tenant
	}
	if m := r.cache.get(key, r.cfg.Now()); m != nil {
		r.hits.Add(1)
		m.Id = q.Id
		m.Question[0].Name = question.Name
		m.RecursionDesired = q.RecursionDesired
		fitEDNS(m, q)
		return r.done(lq, q, m, size, plane.DNSOutcomeCache)
	}
	if len(ups) == 0 {
		r.failed.Add(1)
		return r.done(lq, q, errReply(q, dns.RcodeServerFailure), size, plane.DNSOutcomeFailed)
	}
	if r.inFlight.Add(1) > maxInFlight {
		r.inFlight.Add(-1)
		r.failed.Add(1)
		return r.done(lq, q, errReply(q, dns.RcodeServerFailure), size, plane.DNSOutcomeFailed)
	}
	r.forwarded.Add(1)
	p := &pending{q: q, key: key, size: size, reply: later(), ups: ups, logged: lq}
	r.send(p, 0)
	return nil
}

// done logs q (when lq is not nil) with its answer m and outcome, and packs m.
func (r *Resolver) done(lq *logged, q, m *dns.Msg, size int, outcome string) []byte {
	if lq != nil {
		r.logQuery(lq, q, outcome, m.Rcode)
	}
	return r.pack(m, size)
}

// fromZone answers a question for name in the tenant's zone z.
func (r *Resolver) fromZone(q *dns.Msg, z *Zone, name string, qtype uint16) *dns.Msg {
	rrs, exists := z.lookup(name, qtype)
	if !exists {
		return negative(q, dns.RcodeNameError, z.soa())
	}
	if len(rrs) == 0 {
		return negative(q, dns.RcodeSuccess, z.soa())
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative, m.RecursionAvailable = true, true
	m.Answer = rrs
	fitEDNS(m, q)
	return m
}

// reverse answers the reverse of overlay address a: the tenant's peer's name, or nothing
// (another tenant's addresses are as unknown as unused ones).
func (r *Resolver) reverse(q *dns.Msg, z *Zone, a netip.Addr, qtype uint16) *dns.Msg {
	name := ""
	if z != nil {
		name = z.ptr[a]
	}
	if name == "" {
		return negative(q, dns.RcodeNameError, nil)
	}
	if qtype != dns.TypePTR && qtype != dns.TypeANY {
		return negative(q, dns.RcodeSuccess, nil)
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative, m.RecursionAvailable = true, true
	m.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: zoneTTL}, Ptr: name}}
	fitEDNS(m, q)
	return m
}

// pack packs m, truncated (TC) to size.
func (r *Resolver) pack(m *dns.Msg, size int) []byte {
	m.Truncate(size)
	b, err := m.Pack()
	if err != nil {
		r.log.Debug("dns: pack an answer", "err", err)
		return nil
	}
	return b
}

// negative is an answer without records: NXDOMAIN or NODATA, with soa in the authority
// section when there is one (RFC 2308: how long it may be cached).
func negative(q *dns.Msg, rcode int, soa dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	m.Authoritative, m.RecursionAvailable = true, true
	if soa != nil {
		m.Ns = []dns.RR{soa}
	}
	fitEDNS(m, q)
	return m
}

// blockedAnswer is the NXDOMAIN of a name the tenant's blocklists list (listed: the name or
// the parent of it that a list holds), with an SOA of the listed name whose minimum,
// BlockedTTL, is how long it may be cached.
func blockedAnswer(q *dns.Msg, listed string) *dns.Msg {
	zone := dns.Fqdn(listed)
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: BlockedTTL},
		Ns: "blocked.invalid.", Mbox: "hostmaster.blocked.invalid.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: BlockedTTL}
	return negative(q, dns.RcodeNameError, soa)
}

func errReply(q *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	m.RecursionAvailable = true
	fitEDNS(m, q)
	return m
}

// formErr answers a query header whose message does not parse with FORMERR: its ID, the QR
// bit, and no sections.
func formErr(msg []byte) []byte {
	b := make([]byte, 12)
	copy(b, msg[:4])
	b[2] = b[2]&0x79 | 0x80 // QR, opcode kept, AA and TC off, RD kept
	b[3] = dns.RcodeFormatError
	return b
}

// clientSize is the largest answer the client takes over UDP: its EDNS size (at least 512,
// at most MaxUDPSize), or 512 without EDNS.
func clientSize(q *dns.Msg) int {
	if o := q.IsEdns0(); o != nil {
		return min(max(int(o.UDPSize()), dns.MinMsgSize), MaxUDPSize)
	}
	return dns.MinMsgSize
}

// do reports whether the query asks for DNSSEC records.
func do(q *dns.Msg) bool {
	o := q.IsEdns0()
	return o != nil && o.Do()
}

// fitEDNS makes m's EDNS match the query's: an OPT record with our size when the query had
// one, none when it had none.
func fitEDNS(m, q *dns.Msg) {
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	if o := q.IsEdns0(); o != nil {
		m.SetEdns0(MaxUDPSize, o.Do())
	}
}

// pending is a forwarded query waiting for its answer.
type pending struct {
	q     *dns.Msg
	key   cacheKey
	size  int
	reply func([]byte)
	// ups are the upstreams it may be sent to, in order; tries is how many it was sent to.
	ups   []plane.DNSUpstream
	tries int
	// again: it was sent again to the same DNS-over-TLS upstream after the connection
	// carrying it broke (at most once).
	again bool
	to    netip.AddrPort
	timer *time.Timer
	// logged: the tenant's query log is on.
	logged *logged
}

// send sends p to upstream number i: over UDP with a fresh ID on one of the sockets, or over
// one of the upstream's TLS connections. p is held by no socket or connection while send
// runs (its fields are guarded by the mutex of the one that holds it).
func (r *Resolver) send(p *pending, i int) {
	u := p.ups[i]
	p.tries, p.to = i+1, u.Addr
	if u.TLSName != "" {
		r.tls.send(r, u, p)
		return
	}
	socks := r.socks
	if p.key.scope != 0 {
		socks = r.tenantSocks()
	}
	if len(socks) == 0 {
		r.tryNext(p)
		return
	}
	s := socks[int(r.next.Add(1))%len(socks)]
	out := p.q.Copy()
	s.mu.Lock()
	id := randomID()
	for s.pending[id] != nil {
		id = randomID()
	}
	s.pending[id] = p
	p.timer = time.AfterFunc(r.cfg.Timeout, func() {
		if s.forget(id, p) {
			r.tryNext(p)
		}
	})
	s.mu.Unlock()
	out.Id = id
	b, err := out.Pack()
	if err == nil {
		_, err = s.pc.WriteTo(b, net.UDPAddrFromAddrPort(u.Addr))
	}
	if err != nil && r.ctx.Err() == nil {
		r.log.Debug("dns: send to an upstream", "upstream", u, "err", err)
	}
}

// tryNext tries the upstream after the one p was sent to last, or answers SERVFAIL after the
// last. p is held by no socket or connection.
func (r *Resolver) tryNext(p *pending) {
	if r.ctx.Err() != nil {
		r.inFlight.Add(-1)
		return
	}
	if p.tries < len(p.ups) {
		r.send(p, p.tries)
		return
	}
	r.inFlight.Add(-1)
	r.failed.Add(1)
	r.logQuery(p.logged, p.q, plane.DNSOutcomeFailed, dns.RcodeServerFailure)
	if b := r.pack(errReply(p.q, dns.RcodeServerFailure), p.size); b != nil {
		p.reply(b)
	}
}

// upstreamSock is one socket towards the upstreams, with the queries sent on it by ID.
type upstreamSock struct {
	r       *Resolver
	pc      net.PacketConn
	mu      sync.Mutex
	pending map[uint16]*pending
}

// forget takes p (sent as id) off the socket; false when it was no longer there (answered).
func (s *upstreamSock) forget(id uint16, p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[id] != p {
		return false
	}
	delete(s.pending, id)
	return true
}

func (s *upstreamSock) read() {
	defer s.r.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.r.ctx.Err() != nil {
				return
			}
			continue
		}
		if n < 12 {
			continue
		}
		id := binary.BigEndian.Uint16(buf)
		s.mu.Lock()
		p := s.pending[id]
		ua, _ := from.(*net.UDPAddr)
		if p == nil || ua == nil || ua.AddrPort() != p.to && netip.AddrPortFrom(ua.AddrPort().Addr().Unmap(), ua.AddrPort().Port()) != p.to {
			s.mu.Unlock()
			continue // not an answer we wait for: late, spoofed or from elsewhere
		}
		m := answerTo(p, buf[:n])
		if m == nil {
			s.mu.Unlock()
			continue
		}
		delete(s.pending, id)
		p.timer.Stop()
		s.mu.Unlock()
		s.r.answer(p, m)
	}
}

// answerTo parses b as the answer to p: nil when it is not one (it does not parse, or answers
// another question).
func answerTo(p *pending, b []byte) *dns.Msg {
	m := new(dns.Msg)
	if m.Unpack(b) != nil || !m.Response || len(m.Question) != 1 ||
		!strings.EqualFold(m.Question[0].Name, p.q.Question[0].Name) || m.Question[0].Qtype != p.q.Question[0].Qtype {
		return nil
	}
	return m
}

// answer caches m (the upstream's answer to p) and sends it to the client.
func (r *Resolver) answer(p *pending, m *dns.Msg) {
	r.inFlight.Add(-1)
	r.finish(p, m, plane.DNSOutcomeForwarded)
}

// finish caches m, the answer to p, under p's key, logs p with outcome (when its tenant's
// log is on), and sends m to the client.
func (r *Resolver) finish(p *pending, m *dns.Msg, outcome string) {
	now := r.cfg.Now()
	if !m.Truncated && (m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError) {
		r.cache.put(p.key, m, now)
	}
	r.logQuery(p.logged, p.q, outcome, m.Rcode)
	m.Id = p.q.Id
	m.Question[0].Name = p.q.Question[0].Name
	fitEDNS(m, p.q)
	if b := r.pack(m, p.size); b != nil {
		p.reply(b)
	}
}

func randomID() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}
