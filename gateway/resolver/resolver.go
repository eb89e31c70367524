// Package resolver is the DNS resolver every PoP answers at its overlay addresses (the
// `DNS =` line of client configs): each tenant's peers by name under the tenant's domain,
// the reverse of overlay addresses, and everything else forwarded to the node's upstreams
// through a cache shared by the tenants. Queries come from the packet path (UDP to port 53 of
// the node's overlay addresses), never from a socket on a public address, so the node is no
// open resolver. A tenant's names are answered only to that tenant's peers: a query for
// another tenant's name finds nothing, and names under the private TLD are never asked of an
// upstream. A tenant's blocklists (SetBlocklists) make the names they hold, and their
// subdomains, NXDOMAIN to that tenant's peers only.
package resolver

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
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
	maxPositiveTTL  = 24 * time.Hour
	maxNegativeTTL  = 5 * time.Minute
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
	// Now is the clock. Default time.Now.
	Now func() time.Time
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
	if c.Now == nil {
		c.Now = time.Now
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
	Failed      uint64 // SERVFAIL: no upstream answered in time, or too many in flight
	RateLimited uint64 // dropped: the client address was over its rate
	Malformed   uint64 // not a DNS query
}

// Resolver answers the tenants' DNS queries. Its methods are safe for concurrent use.
type Resolver struct {
	cfg Config
	log *slog.Logger

	zones  atomic.Pointer[map[int64]*Zone]
	blocks atomic.Pointer[map[int64]Blocklist]
	cache  *cache
	limit  *limiter

	socks []*upstreamSock
	next  atomic.Uint32 // round robin over socks

	queries, local, hits, forwarded, blocked, failed, limited, malformed atomic.Uint64

	inFlight atomic.Int64
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// New makes a resolver; Start opens its upstream sockets.
func New(cfg Config, log *slog.Logger) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Resolver{cfg: cfg, log: log, cache: newCache(cfg.CacheEntries), limit: newLimiter(cfg.PeerRate, cfg.PeerBurst)}
	empty := map[int64]*Zone{}
	r.zones.Store(&empty)
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
		s := &upstreamSock{r: r, pc: pc, pending: map[uint16]*pending{}}
		r.socks = append(r.socks, s)
		r.wg.Add(1)
		go s.read()
	}
	return nil
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

// Close closes the upstream sockets; queries in flight get no answer.
func (r *Resolver) Close() {
	r.cancel()
	for _, s := range r.socks {
		s.pc.Close()
	}
	r.wg.Wait()
	for _, s := range r.socks {
		s.mu.Lock()
		for id, p := range s.pending {
			p.timer.Stop()
			delete(s.pending, id)
		}
		s.mu.Unlock()
	}
}

// SetZones replaces the tenants' zones (BuildZones); queries after it see the new ones.
func (r *Resolver) SetZones(zs map[int64]*Zone) { r.zones.Store(&zs) }

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
	return Stats{Queries: r.queries.Load(), Local: r.local.Load(), CacheHits: r.hits.Load(), Forwarded: r.forwarded.Load(),
		Blocked: r.blocked.Load(), Failed: r.failed.Load(), RateLimited: r.limited.Load(), Malformed: r.malformed.Load()}
}

// Query answers msg, one DNS query over UDP from client address src, a peer (or a site's
// host) of tenant. It returns the answer when it has one at once (a name of the tenant's, the
// cache, an error); otherwise nil: it forwards the query, and the function later returns
// gets the answer from another goroutine, unless no upstream answers in time (then SERVFAIL)
// or the resolver closes. later is called only then, so an answer at once costs the caller
// nothing to set up. A query it drops (over the rate, not DNS) gets nothing.
func (r *Resolver) Query(tenant int64, src netip.Addr, msg []byte, later func() func([]byte)) []byte {
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
	if q.Opcode != dns.OpcodeQuery {
		return r.pack(errReply(q, dns.RcodeNotImplemented), size)
	}
	if len(q.Question) != 1 {
		return r.pack(errReply(q, dns.RcodeFormatError), size)
	}
	question := q.Question[0]
	if question.Qclass != dns.ClassINET && question.Qclass != dns.ClassANY {
		return r.pack(errReply(q, dns.RcodeRefused), size)
	}
	name := strings.ToLower(question.Name)
	zs := *r.zones.Load()
	if z := zs[tenant]; z != nil && (name == z.Domain || strings.HasSuffix(name, "."+z.Domain)) {
		r.local.Add(1)
		return r.pack(r.fromZone(q, z, name, question.Qtype), size)
	}
	if a, ok := reverseAddr(name); ok && (r.cfg.Overlay.V4.Contains(a) || r.cfg.Overlay.V6.Contains(a)) {
		r.local.Add(1)
		return r.pack(r.reverse(q, zs[tenant], a, question.Qtype), size)
	}
	if bl := (*r.blocks.Load())[tenant]; bl != nil {
		if listed, ok := bl.Match(name); ok {
			r.blocked.Add(1)
			return r.pack(blockedAnswer(q, listed), size)
		}
	}
	if name == PrivateTLD || strings.HasSuffix(name, "."+PrivateTLD) {
		// Another tenant's name, or nobody's: as if it did not exist, and never asked of an
		// upstream (which would learn the names a tenant uses).
		r.local.Add(1)
		m := negative(q, dns.RcodeNameError, nil)
		return r.pack(m, size)
	}
	key := cacheKey{name: name, qtype: question.Qtype, qclass: question.Qclass, do: do(q)}
	if m := r.cache.get(key, r.cfg.Now()); m != nil {
		r.hits.Add(1)
		m.Id = q.Id
		m.Question[0].Name = question.Name
		m.RecursionDesired = q.RecursionDesired
		fitEDNS(m, q)
		return r.pack(m, size)
	}
	if len(r.socks) == 0 {
		r.failed.Add(1)
		return r.pack(errReply(q, dns.RcodeServerFailure), size)
	}
	if r.inFlight.Add(1) > maxInFlight {
		r.inFlight.Add(-1)
		r.failed.Add(1)
		return r.pack(errReply(q, dns.RcodeServerFailure), size)
	}
	r.forwarded.Add(1)
	p := &pending{q: q, key: key, size: size, reply: later()}
	r.send(p, 0)
	return nil
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
	tries int
	to    netip.AddrPort
	timer *time.Timer
}

// send sends p to upstream number i with a fresh ID on one of the sockets.
// p is in no socket's pending map while send runs (its fields are guarded by the mutex of
// the socket whose map holds it).
func (r *Resolver) send(p *pending, i int) {
	to := r.cfg.Upstreams[i]
	s := r.socks[int(r.next.Add(1))%len(r.socks)]
	out := p.q.Copy()
	s.mu.Lock()
	id := randomID()
	for s.pending[id] != nil {
		id = randomID()
	}
	p.tries, p.to = i+1, to
	s.pending[id] = p
	p.timer = time.AfterFunc(r.cfg.Timeout, func() { r.timeout(s, id, p) })
	s.mu.Unlock()
	out.Id = id
	b, err := out.Pack()
	if err == nil {
		_, err = s.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
	}
	if err != nil && r.ctx.Err() == nil {
		r.log.Debug("dns: send to an upstream", "upstream", to, "err", err)
	}
}

// timeout tries the next upstream, or answers SERVFAIL after the last.
func (r *Resolver) timeout(s *upstreamSock, id uint16, p *pending) {
	s.mu.Lock()
	if s.pending[id] != p {
		s.mu.Unlock()
		return
	}
	delete(s.pending, id)
	tries := p.tries
	s.mu.Unlock()
	if r.ctx.Err() != nil {
		r.inFlight.Add(-1)
		return
	}
	if tries < len(r.cfg.Upstreams) {
		r.send(p, tries)
		return
	}
	r.inFlight.Add(-1)
	r.failed.Add(1)
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
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil || !m.Response || len(m.Question) != 1 ||
			!strings.EqualFold(m.Question[0].Name, p.q.Question[0].Name) || m.Question[0].Qtype != p.q.Question[0].Qtype {
			s.mu.Unlock()
			continue
		}
		delete(s.pending, id)
		p.timer.Stop()
		s.mu.Unlock()
		s.r.answer(p, m)
	}
}

// answer caches m (the upstream's answer to p) and sends it to the client.
func (r *Resolver) answer(p *pending, m *dns.Msg) {
	r.inFlight.Add(-1)
	now := r.cfg.Now()
	if !m.Truncated && (m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError) {
		r.cache.put(p.key, m, now)
	}
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
