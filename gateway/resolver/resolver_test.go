package resolver

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/popgate/popgate/gateway/plane"
)

var testOverlay = plane.Overlay{
	V4: netip.MustParsePrefix("100.64.0.0/10"), V6: netip.MustParsePrefix("fd00:1::/48"),
	Gateway4: netip.MustParseAddr("100.64.0.1"), Gateway6: netip.MustParseAddr("fd00:1::1"),
}

func testDesired() *plane.Desired {
	return &plane.Desired{
		Tenants: []plane.Tenant{{ID: 1, Name: "acme"}, {ID: 2, Name: "globex"}},
		Peers: []plane.Peer{
			{ID: 1, Tenant: 1, Name: "Laptop", IPv4: netip.MustParseAddr("100.64.0.2"), IPv6: netip.MustParseAddr("fd00:1::2"), Enabled: true},
			{ID: 2, Tenant: 1, Name: "phone", IPv4: netip.MustParseAddr("100.64.0.3"), IPv6: netip.MustParseAddr("fd00:1::3")}, // disabled
			{ID: 3, Tenant: 2, Name: "laptop", IPv4: netip.MustParseAddr("100.64.0.4"), IPv6: netip.MustParseAddr("fd00:1::4"), Enabled: true},
			{ID: 4, Tenant: 1, Name: "laptop", IPv4: netip.MustParseAddr("100.64.0.5"), Enabled: true}, // the same name in another case
		},
	}
}

// upstream is a DNS server on loopback answering A queries with 192.0.2.1 (TTL 300) and
// NXDOMAIN (SOA minimum 30) for names starting with "nx"; it counts the queries.
type upstream struct {
	addr    netip.AddrPort
	queries atomic.Int64
	silent  atomic.Bool
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	return startUpstreamAnswering(t, "192.0.2.1")
}

// startUpstreamAnswering is startUpstream answering A questions with answer.
func startUpstreamAnswering(t *testing.T, answer string) *upstream {
	t.Helper()
	ans := net.ParseIP(answer)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	u := &upstream{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			u.queries.Add(1)
			if u.silent.Load() {
				continue
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			m := new(dns.Msg)
			m.SetReply(q)
			name := q.Question[0].Name
			if len(name) > 2 && name[:2] == "nx" {
				m.Rcode = dns.RcodeNameError
				m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600}, Ns: "ns.example.", Mbox: "h.example.", Minttl: 30}}
			} else {
				m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: ans}}
			}
			b, _ := m.Pack()
			pc.WriteTo(b, from)
		}
	}()
	return u
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestResolver(t *testing.T, cfg Config) *Resolver {
	t.Helper()
	cfg.Overlay = testOverlay
	r, err := New(cfg, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	r.SetZones(BuildZones(testDesired(), func(p *plane.Peer) bool { return p.Enabled }))
	return r
}

// ask sends a question as tenant and returns the answer, waiting for a forwarded one.
func ask(t *testing.T, r *Resolver, tenant int64, name string, qtype uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(4096, false) // what many stub resolvers send
	b, _ := q.Pack()
	later := make(chan []byte, 1)
	a := r.Query(tenant, netip.MustParseAddr("100.64.0.2"), b, func() func([]byte) { return func(b []byte) { later <- b } })
	if a == nil {
		select {
		case a = <-later:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s %s: no answer", name, dns.TypeToString[qtype])
		}
	}
	m := new(dns.Msg)
	if err := m.Unpack(a); err != nil {
		t.Fatalf("%s: the answer does not parse: %v", name, err)
	}
	if m.Id != q.Id || !m.Response {
		t.Fatalf("%s: answer id %d (want %d), response %v", name, m.Id, q.Id, m.Response)
	}
	return m
}

func answerText(m *dns.Msg) string {
	s := dns.RcodeToString[m.Rcode]
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			s += " " + rr.A.String()
		case *dns.AAAA:
			s += " " + rr.AAAA.String()
		case *dns.PTR:
			s += " " + rr.Ptr
		}
	}
	return s
}

// TestZones: a tenant's peers by name and address; disabled peers, other tenants' names and
// anything under the private TLD are unknown; nothing of that reaches the upstream.
func TestZones(t *testing.T) {
	up := startUpstream(t)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}})
	for _, c := range []struct {
		tenant int64
		name   string
		qtype  uint16
		want   string
	}{
		{1, "laptop.acme.internal.", dns.TypeA, "NOERROR 100.64.0.2"},
		{1, "LAPTOP.Acme.Internal.", dns.TypeAAAA, "NOERROR fd00:1::2"},
		{1, "laptop.acme.internal.", dns.TypeMX, "NOERROR"}, // NODATA
		{1, "phone.acme.internal.", dns.TypeA, "NXDOMAIN"},  // disabled
		{1, "acme.internal.", dns.TypeA, "NOERROR"},
		{1, "laptop.globex.internal.", dns.TypeA, "NXDOMAIN"},
		{2, "laptop.globex.internal.", dns.TypeA, "NOERROR 100.64.0.4"},
		{2, "laptop.acme.internal.", dns.TypeA, "NXDOMAIN"},
		{1, "internal.", dns.TypeSOA, "NXDOMAIN"},
		{1, "2.0.64.100.in-addr.arpa.", dns.TypePTR, "NOERROR laptop.acme.internal."},
		{2, "2.0.64.100.in-addr.arpa.", dns.TypePTR, "NXDOMAIN"}, // acme's address
		{1, mustReverse("fd00:1::2"), dns.TypePTR, "NOERROR laptop.acme.internal."},
		{1, "9.9.64.100.in-addr.arpa.", dns.TypePTR, "NXDOMAIN"},
	} {
		if got := answerText(ask(t, r, c.tenant, c.name, c.qtype)); got != c.want {
			t.Errorf("tenant %d: %s %s = %q, want %q", c.tenant, c.name, dns.TypeToString[c.qtype], got, c.want)
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("the upstream was asked %d times for the tenants' names", n)
	}
	if m := ask(t, r, 1, "laptop.acme.internal.", dns.TypeA); !m.Authoritative || m.Answer[0].Header().Ttl != zoneTTL {
		t.Errorf("a zone answer: authoritative %v, ttl %d", m.Authoritative, m.Answer[0].Header().Ttl)
	}
	if m := ask(t, r, 1, "nobody.acme.internal.", dns.TypeA); len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("NXDOMAIN without the zone's SOA: %v", m.Ns)
	}
}

// TestForwardAndCache: other names go to the upstream once and then come from the cache,
// with their TTL counted down, until it runs out; NXDOMAIN is kept for the SOA's minimum.
func TestForwardAndCache(t *testing.T) {
	up := startUpstream(t)
	clk := &clock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}, Now: clk.now})
	if got := answerText(ask(t, r, 1, "www.example.com.", dns.TypeA)); got != "NOERROR 192.0.2.1" {
		t.Fatalf("forwarded: %q", got)
	}
	clk.add(100 * time.Second)
	m := ask(t, r, 2, "WWW.example.com.", dns.TypeA) // another tenant: the same public answer
	if answerText(m) != "NOERROR 192.0.2.1" || m.Answer[0].Header().Ttl != 200 || m.Question[0].Name != "WWW.example.com." {
		t.Errorf("from the cache: %q ttl %d name %s", answerText(m), m.Answer[0].Header().Ttl, m.Question[0].Name)
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("the upstream was asked %d times, want 1", n)
	}
	clk.add(200 * time.Second)
	ask(t, r, 1, "www.example.com.", dns.TypeA)
	if n := up.queries.Load(); n != 2 {
		t.Errorf("after the TTL the upstream was asked %d times, want 2", n)
	}
	ask(t, r, 1, "nx.example.com.", dns.TypeA)
	clk.add(29 * time.Second)
	if got := answerText(ask(t, r, 1, "nx.example.com.", dns.TypeA)); got != "NXDOMAIN" {
		t.Errorf("a cached NXDOMAIN: %q", got)
	}
	clk.add(2 * time.Second)
	ask(t, r, 1, "nx.example.com.", dns.TypeA)
	if n := up.queries.Load(); n != 4 {
		t.Errorf("NXDOMAIN kept past its 30 s: the upstream was asked %d times, want 4", n)
	}
	if st := r.Stats(); st.Forwarded != 4 || st.CacheHits != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestUpstreamSilent: a silent first upstream is skipped for the next after its timeout;
// with every one silent the client gets SERVFAIL.
func TestUpstreamSilent(t *testing.T) {
	dead, live := startUpstream(t), startUpstream(t)
	dead.silent.Store(true)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{dead.addr, live.addr}, Timeout: 100 * time.Millisecond})
	if got := answerText(ask(t, r, 1, "a.example.com.", dns.TypeA)); got != "NOERROR 192.0.2.1" {
		t.Errorf("with the first upstream silent: %q", got)
	}
	live.silent.Store(true)
	if got := answerText(ask(t, r, 1, "b.example.com.", dns.TypeA)); got != "SERVFAIL" {
		t.Errorf("with every upstream silent: %q", got)
	}
	if r.inFlight.Load() != 0 {
		t.Errorf("%d queries left in flight", r.inFlight.Load())
	}
}

// TestRateAndGarbage: a client over its rate gets nothing; garbage gets nothing or FORMERR.
func TestRateAndGarbage(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	r := newTestResolver(t, Config{PeerRate: 10, PeerBurst: 20, Now: clk.now})
	q := new(dns.Msg)
	q.SetQuestion("laptop.acme.internal.", dns.TypeA)
	b, _ := q.Pack()
	src := netip.MustParseAddr("100.64.0.2")
	answered := 0
	for range 100 {
		if r.Query(1, src, b, nil) != nil {
			answered++
		}
	}
	if answered != 20 {
		t.Errorf("%d of 100 queries at once answered, want the burst of 20", answered)
	}
	if r.Query(1, netip.MustParseAddr("100.64.0.9"), b, nil) == nil {
		t.Error("another client was limited too")
	}
	clk.add(time.Second)
	if r.Query(1, src, b, nil) == nil {
		t.Error("the client is still limited a second later")
	}
	if a := r.Query(1, netip.MustParseAddr("100.64.0.10"), []byte{0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff}, nil); len(a) != 12 || a[0] != 0 || a[1] != 7 || a[3]&0xf != dns.RcodeFormatError {
		t.Errorf("a broken query got % x, want FORMERR with its ID", a)
	}
	if a := r.Query(1, netip.MustParseAddr("100.64.0.10"), []byte{1, 2, 3}, nil); a != nil {
		t.Errorf("a short datagram got % x", a)
	}
	if st := r.Stats(); st.RateLimited != 80 || st.Malformed != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestReplyPacket: the answer's IP packet swaps the query's addresses and ports and carries
// valid checksums, over IPv4 and IPv6.
func TestReplyPacket(t *testing.T) {
	payload := []byte("an answer of odd length")
	for _, c := range []struct{ src, dst string }{{"100.64.0.2", "100.64.0.1"}, {"fd00:1::2", "fd00:1::1"}} {
		src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
		q := AppendReply(nil, fakeQuery(dst, src), []byte("query")) // a packet from src to dst:53
		got, ok := UDPPayload(q)
		if !ok || string(got) != "query" {
			t.Fatalf("UDPPayload of the query: %q %v", got, ok)
		}
		a := AppendReply(nil, q, payload)
		if p, ok := UDPPayload(a); !ok || string(p) != string(payload) {
			t.Fatalf("UDPPayload of the answer: %q %v", p, ok)
		}
		hl := ipv4Header
		var pseudo uint16
		if src.Is6() {
			hl = ipv6Header
			pseudo = checksum.Checksum(a[8:40], 0)
			if netip.AddrFrom16([16]byte(a[8:24])) != dst || netip.AddrFrom16([16]byte(a[24:40])) != src {
				t.Errorf("v6 addresses % x", a[8:40])
			}
		} else {
			pseudo = checksum.Checksum(a[12:20], 0)
			if checksum.Checksum(a[:20], 0) != 0xffff {
				t.Error("bad IPv4 header checksum")
			}
			if netip.AddrFrom4([4]byte(a[12:16])) != dst || netip.AddrFrom4([4]byte(a[16:20])) != src {
				t.Errorf("v4 addresses % x", a[12:20])
			}
		}
		u := a[hl:]
		if binary.BigEndian.Uint16(u) != 53 || binary.BigEndian.Uint16(u[2:]) != 40000 {
			t.Errorf("ports %d → %d", binary.BigEndian.Uint16(u), binary.BigEndian.Uint16(u[2:]))
		}
		if checksum.Checksum(u, checksum.Combine(pseudo, protoUDP+uint16(len(u)))) != 0xffff {
			t.Errorf("%s: bad UDP checksum", c.src)
		}
	}
}

// fakeQuery is a UDP packet from 53 to 40000 of from → to, which AppendReply turns around.
func fakeQuery(from, to netip.Addr) []byte {
	hl := ipv4Header
	if from.Is6() {
		hl = ipv6Header
	}
	b := make([]byte, hl+udpHeaderLen)
	if from.Is6() {
		b[0], b[6] = 6<<4, protoUDP
		copy(b[8:24], from.AsSlice())
		copy(b[24:40], to.AsSlice())
	} else {
		b[0], b[9] = 4<<4|5, protoUDP
		copy(b[12:16], from.AsSlice())
		copy(b[16:20], to.AsSlice())
	}
	binary.BigEndian.PutUint16(b[hl:], 53)
	binary.BigEndian.PutUint16(b[hl+2:], 40000)
	return b
}

func mustReverse(a string) string {
	s, err := dns.ReverseAddr(a)
	if err != nil {
		panic(err)
	}
	return s
}

// TestCustomDomain: a tenant with a domain of its own has its names there (and no longer
// under <tenant>.internal); another tenant asking for them is forwarded like any public name
// and never gets the tenant's addresses.
func TestCustomDomain(t *testing.T) {
	up := startUpstream(t)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}})
	d := testDesired()
	d.Tenants[1].Domain = "Corp.Example"
	r.SetZones(BuildZones(d, func(p *plane.Peer) bool { return p.Enabled }))
	for _, c := range []struct {
		tenant int64
		name   string
		want   string
	}{
		{2, "laptop.corp.example.", "NOERROR 100.64.0.4"},
		{2, "laptop.globex.internal.", "NXDOMAIN"},
		{1, "laptop.corp.example.", "NOERROR 192.0.2.1"}, // the upstream's answer, not globex's
		{1, "laptop.acme.internal.", "NOERROR 100.64.0.2"},
	} {
		if got := answerText(ask(t, r, c.tenant, c.name, dns.TypeA)); got != c.want {
			t.Errorf("tenant %d: %s = %q, want %q", c.tenant, c.name, got, c.want)
		}
	}
	if m := ask(t, r, 2, mustReverse("100.64.0.4"), dns.TypePTR); answerText(m) != "NOERROR laptop.corp.example." {
		t.Errorf("reverse in the custom domain: %q", answerText(m))
	}
}

// TestCacheBounded: a full cache stays at its bound, drops expired answers first, and makes
// room at random between its scans.
func TestCacheBounded(t *testing.T) {
	c := newCache(1000)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	answer := func(ttl uint32) *dns.Msg {
		m := new(dns.Msg)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IPv4(192, 0, 2, 1)}}
		return m
	}
	for i := range 1000 {
		ttl := uint32(3600)
		if i < 500 {
			ttl = 10
		}
		c.put(cacheKey{name: fmt.Sprint(i), qtype: 1}, answer(ttl), now)
	}
	now = now.Add(time.Minute) // half of them expired
	for i := range 5000 {
		c.put(cacheKey{name: fmt.Sprint("n", i), qtype: 1}, answer(3600), now)
		if len(c.entries) > 1000 {
			t.Fatalf("the cache holds %d answers, more than its 1000", len(c.entries))
		}
	}
	if c.get(cacheKey{name: "n4999", qtype: 1}, now) == nil {
		t.Error("the newest answer is not kept")
	}
}
