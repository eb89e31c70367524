package resolver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/popgate/popgate/gateway/plane"
)

var (
	node4, node6 = testOverlay.NodeAddrs(7)
	serverA      = netip.MustParseAddrPort("10.10.0.53:53")
	serverB      = netip.MustParseAddrPort("10.10.0.54:5353")
	serverC      = netip.MustParseAddrPort("[fd00:10::53]:53")
)

// fakePath stands in for the tenants' packet paths and the sites behind them: each server
// answers A questions with an address of its own (its marker) after the packet crossed
// "the network" on another goroutine, unless it is silent; a refused server is out of the
// tenant's reach (SendSplit fails).
type fakePath struct {
	t       *testing.T
	r       *Resolver
	markers map[netip.AddrPort]netip.Addr // the address each server answers with

	mu      sync.Mutex
	delay   time.Duration // how long an answer takes to come back
	silent  map[netip.AddrPort]bool
	refused map[netip.AddrPort]bool
	asked   map[netip.AddrPort]int
	// sent are the query packets' (tenant, from, to) in order.
	sent []string
}

func newFakePath(t *testing.T) *fakePath {
	return &fakePath{t: t, silent: map[netip.AddrPort]bool{}, refused: map[netip.AddrPort]bool{}, asked: map[netip.AddrPort]int{},
		markers: map[netip.AddrPort]netip.Addr{
			serverA: netip.MustParseAddr("10.10.0.1"), serverB: netip.MustParseAddr("10.10.0.2"), serverC: netip.MustParseAddr("10.10.0.3"),
		}}
}

func (f *fakePath) send(tenant int64, pkt []byte) error {
	from, to, payload, ok := parseUDP(pkt)
	if !ok {
		f.t.Errorf("SendSplit got a packet that is no UDP: % x", pkt)
		return errors.New("not UDP")
	}
	checkUDPChecksums(f.t, pkt)
	f.mu.Lock()
	f.sent = append(f.sent, fmt.Sprintf("%d %s %s", tenant, from.Addr(), to))
	if f.refused[to] {
		f.mu.Unlock()
		return fmt.Errorf("%s is in none of tenant %d's routes", to.Addr(), tenant)
	}
	f.asked[to]++
	silent, delay := f.silent[to], f.delay
	f.mu.Unlock()
	q := new(dns.Msg)
	if err := q.Unpack(payload); err != nil {
		f.t.Errorf("the query does not parse: %v", err)
		return nil
	}
	if o := q.IsEdns0(); o != nil && o.UDPSize() > MaxUDPSize {
		f.t.Errorf("the query asks for answers of %d bytes, more than the tunnels carry whole", o.UDPSize())
	}
	if silent {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(q)
	if q.Question[0].Qtype == dns.TypeA {
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: f.markers[to].AsSlice()}}
	}
	b, _ := m.Pack()
	answer := appendUDP(nil, to, from, b)
	go func() {
		time.Sleep(delay)
		f.r.Deliver(tenant, answer)
	}()
	return nil
}

func (f *fakePath) askedOf(s netip.AddrPort) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[s]
}

func checkUDPChecksums(t *testing.T, pkt []byte) {
	t.Helper()
	hl, pseudo := ipv4Header, uint16(0)
	if pkt[0]>>4 == 6 {
		hl, pseudo = ipv6Header, checksum.Checksum(pkt[8:40], 0)
	} else {
		pseudo = checksum.Checksum(pkt[12:20], 0)
		if checksum.Checksum(pkt[:20], 0) != 0xffff {
			t.Error("bad IPv4 header checksum")
		}
	}
	u := pkt[hl:]
	if checksum.Checksum(u, checksum.Combine(pseudo, protoUDP+uint16(len(u)))) != 0xffff {
		t.Error("bad UDP checksum")
	}
}

// splitDesired gives acme (1) the zones corp.example (servers A, B) and eng.corp.example
// (B), and globex (2) the root zone (C, over IPv6).
func splitDesired() *plane.Desired {
	d := testDesired()
	d.Tenants[0].DNS.Zones = []plane.DNSZone{
		{Name: "corp.example", Servers: []netip.AddrPort{serverA, serverB}},
		{Name: "eng.corp.example", Servers: []netip.AddrPort{serverB}},
	}
	d.Tenants[1].DNS.Zones = []plane.DNSZone{{Name: ".", Servers: []netip.AddrPort{serverC}}}
	return d
}

func newSplitResolver(t *testing.T, cfg Config, d *plane.Desired) (*Resolver, *fakePath) {
	t.Helper()
	f := newFakePath(t)
	cfg.SendSplit = f.send
	r := newTestResolver(t, cfg)
	f.r = r
	r.SetZones(BuildZones(d, func(p *plane.Peer) bool { return p.Enabled }))
	r.SetNodeAddrs(node4, node6)
	return r, f
}

// TestSplitZones: a tenant's names in its zones go to the longest zone's first server,
// from the node's own address of the server's family; its peers' names stay its own, and
// the rest goes upstream; another tenant's zones are not this one's.
func TestSplitZones(t *testing.T) {
	up := startUpstream(t)
	r, f := newSplitResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}}, splitDesired())
	for _, c := range []struct {
		tenant int64
		name   string
		want   string
	}{
		{1, "db.corp.example.", "NOERROR 10.10.0.1"},       // corp.example: A
		{1, "CORP.Example.", "NOERROR 10.10.0.1"},          // the zone's own name
		{1, "x.eng.corp.example.", "NOERROR 10.10.0.2"},    // the longer zone: B
		{1, "eng.corp.example.", "NOERROR 10.10.0.2"},      //
		{1, "engcorp.example.", "NOERROR 192.0.2.1"},       // no zone: upstream
		{1, "laptop.acme.internal.", "NOERROR 100.64.0.2"}, // its own names first
		{1, "x.internal.", "NXDOMAIN"},                     // never asked of anyone
		{2, "db.corp.example.", "NOERROR 10.10.0.3"},       // globex's root zone: C
		{2, "www.example.com.", "NOERROR 10.10.0.3"},       //
		{2, "laptop.globex.internal.", "NOERROR 100.64.0.4"},
		{2, "x.internal.", "NOERROR 10.10.0.3"}, // the root zone holds the private TLD too
	} {
		if got := answerText(ask(t, r, c.tenant, c.name, dns.TypeA)); got != c.want {
			t.Errorf("tenant %d: %s = %q, want %q", c.tenant, c.name, got, c.want)
		}
	}
	f.mu.Lock()
	sent := f.sent
	f.mu.Unlock()
	a, b, c := "1 "+node4.String()+" "+serverA.String(), "1 "+node4.String()+" "+serverB.String(), "2 "+node6.String()+" "+serverC.String()
	if want := []string{a, a, b, b, c, c, c}; !slices.Equal(sent, want) {
		t.Errorf("packets sent (tenant, from, to):\n%q\nwant\n%q", sent, want)
	}
	if st := r.Stats(); st.Split != 7 || st.Forwarded != 1 {
		t.Errorf("stats %+v: want 7 split, 1 forwarded", st)
	}
}

// TestSplitCacheScope: a split zone's answer is cached for its tenant alone; another
// tenant asking the same name gets the upstreams' answer, which in turn never reaches the
// first.
func TestSplitCacheScope(t *testing.T) {
	up := startUpstream(t)
	d := splitDesired()
	d.Tenants[1].DNS.Zones = nil
	r, f := newSplitResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}}, d)
	for i, c := range []struct {
		tenant int64
		want   string
	}{{1, "NOERROR 10.10.0.1"}, {2, "NOERROR 192.0.2.1"}, {1, "NOERROR 10.10.0.1"}, {2, "NOERROR 192.0.2.1"}} {
		if got := answerText(ask(t, r, c.tenant, "db.corp.example.", dns.TypeA)); got != c.want {
			t.Errorf("ask %d, tenant %d: %q, want %q", i, c.tenant, got, c.want)
		}
	}
	if a, u := f.askedOf(serverA), up.queries.Load(); a != 1 || u != 1 {
		t.Errorf("the site's server was asked %d times and the upstream %d, want once each (then the tenant's cache)", a, u)
	}
	if st := r.Stats(); st.CacheHits != 2 {
		t.Errorf("stats %+v, want 2 cache hits", st)
	}
}

// TestSplitServers: a silent server is skipped for the next after the timeout, one out of
// the tenant's reach (its route removed since) at once; with none left, SERVFAIL, and
// nothing stays in flight.
func TestSplitServers(t *testing.T) {
	r, f := newSplitResolver(t, Config{Timeout: 100 * time.Millisecond}, splitDesired())
	f.silent[serverA] = true
	if got := answerText(ask(t, r, 1, "a.corp.example.", dns.TypeA)); got != "NOERROR 10.10.0.2" {
		t.Errorf("with A silent: %q, want B's answer", got)
	}
	f.mu.Lock()
	f.silent[serverA], f.refused[serverA] = false, true
	f.mu.Unlock()
	start := time.Now()
	if got := answerText(ask(t, r, 1, "b.corp.example.", dns.TypeA)); got != "NOERROR 10.10.0.2" {
		t.Errorf("with A out of reach: %q, want B's answer", got)
	}
	t.Logf("with A out of reach, B answered after %v (no timeout waited)", time.Since(start).Round(time.Microsecond))
	f.mu.Lock()
	f.refused[serverB] = true
	f.mu.Unlock()
	if got := answerText(ask(t, r, 1, "c.corp.example.", dns.TypeA)); got != "SERVFAIL" {
		t.Errorf("with every server out of reach: %q", got)
	}
	f.mu.Lock()
	f.refused[serverA], f.refused[serverB] = false, false
	f.silent[serverA], f.silent[serverB] = true, true
	f.mu.Unlock()
	if got := answerText(ask(t, r, 1, "d.corp.example.", dns.TypeA)); got != "SERVFAIL" {
		t.Errorf("with every server silent: %q", got)
	}
	r.SetNodeAddrs(netip.Addr{}, netip.Addr{})
	if got := answerText(ask(t, r, 2, "e.example.", dns.TypeA)); got != "SERVFAIL" {
		t.Errorf("without node addresses: %q", got)
	}
	r.split.mu.Lock()
	defer r.split.mu.Unlock()
	if len(r.split.pending) != 0 || len(r.split.inFlight) != 0 {
		t.Errorf("left in flight: %d pending, %v", len(r.split.pending), r.split.inFlight)
	}
}

// TestSplitDeliver: only the answer to a query in flight is taken: from its server's
// address and port, to the node's address and the query's port, with its ID and question,
// for its tenant.
func TestSplitDeliver(t *testing.T) {
	r, f := newSplitResolver(t, Config{Timeout: 5 * time.Second}, splitDesired())
	f.silent[serverA] = true
	q := new(dns.Msg)
	q.SetQuestion("db.corp.example.", dns.TypeA)
	b, _ := q.Pack()
	got := make(chan []byte, 1)
	if a := r.Query(1, netip.MustParseAddr("100.64.0.2"), b, func() func([]byte) { return func(b []byte) { got <- b } }); a != nil {
		t.Fatal("answered at once")
	}
	var k splitKey
	var p *splitPending
	r.split.mu.Lock()
	for k, p = range r.split.pending {
	}
	r.split.mu.Unlock()
	if p == nil {
		t.Fatal("nothing in flight")
	}
	answer := func(id uint16, name string) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.Response, m.Id = true, id
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(10, 10, 0, 99)}}
		b, _ := m.Pack()
		return b
	}
	good := appendUDP(nil, serverA, p.from, answer(k.id, "db.corp.example."))
	for _, c := range []struct {
		what   string
		tenant int64
		pkt    []byte
	}{
		{"another tenant", 2, good},
		{"another server", 1, appendUDP(nil, serverB, p.from, answer(k.id, "db.corp.example."))},
		{"another server port", 1, appendUDP(nil, netip.AddrPortFrom(serverA.Addr(), 5300), p.from, answer(k.id, "db.corp.example."))},
		{"another port", 1, appendUDP(nil, serverA, netip.AddrPortFrom(p.from.Addr(), p.from.Port()^1), answer(k.id, "db.corp.example."))},
		{"another node", 1, appendUDP(nil, serverA, netip.AddrPortFrom(netip.MustParseAddr("100.127.0.8"), p.from.Port()), answer(k.id, "db.corp.example."))},
		{"another ID", 1, appendUDP(nil, serverA, p.from, answer(k.id^1, "db.corp.example."))},
		{"another question", 1, appendUDP(nil, serverA, p.from, answer(k.id, "www.corp.example."))},
		{"not DNS", 1, appendUDP(nil, serverA, p.from, []byte("hello, world"))},
		{"not UDP", 1, []byte{0x45, 0, 0, 20}},
	} {
		if r.Deliver(c.tenant, c.pkt) {
			t.Errorf("%s: taken", c.what)
		}
	}
	select {
	case <-got:
		t.Fatal("a wrong answer reached the client")
	default:
	}
	if !r.Deliver(1, good) {
		t.Fatal("the right answer was not taken")
	}
	m := new(dns.Msg)
	if err := m.Unpack(<-got); err != nil || m.Id != q.Id || answerText(m) != "NOERROR 10.10.0.99" {
		t.Errorf("the client got %v (%v), want its ID %d and 10.10.0.99", m, err, q.Id)
	}
	if r.Deliver(1, good) {
		t.Error("the same answer taken twice")
	}
}

// TestSplitInFlightBound: a tenant with MaxSplitInFlight queries waiting gets SERVFAIL for
// more at once; another tenant is not held back.
func TestSplitInFlightBound(t *testing.T) {
	r, f := newSplitResolver(t, Config{Timeout: 10 * time.Second, MaxSplitInFlight: 3}, splitDesired())
	f.silent[serverA], f.silent[serverC] = true, true
	q := func(tenant int64, name string) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		b, _ := m.Pack()
		return r.Query(tenant, netip.MustParseAddr("100.64.0.2"), b, func() func([]byte) { return func([]byte) {} })
	}
	for i := range 3 {
		if a := q(1, fmt.Sprintf("h%d.corp.example.", i)); a != nil {
			t.Fatalf("query %d answered at once", i)
		}
	}
	a := q(1, "h3.corp.example.")
	m := new(dns.Msg)
	if a == nil || m.Unpack(a) != nil || m.Rcode != dns.RcodeServerFailure {
		t.Errorf("the fourth query waiting: %v, want SERVFAIL at once", m)
	}
	if a := q(2, "h.example."); a != nil {
		t.Errorf("another tenant was held back: %x", a)
	}
}

func TestSplitFor(t *testing.T) {
	z := &Zone{splits: buildSplits(&plane.Tenant{DNS: plane.TenantDNS{Zones: []plane.DNSZone{
		{Name: "example", Servers: []netip.AddrPort{serverA}}, {Name: "a.b.example", Servers: []netip.AddrPort{serverB}},
	}}})}
	for name, want := range map[string]string{
		"example.": "example.", "x.example.": "example.", "b.example.": "example.", "a.b.example.": "a.b.example.",
		"z.a.b.example.": "a.b.example.", "xa.b.example.": "example.", "example.com.": "", ".": "", "com.": "",
	} {
		got := ""
		if s := z.splitFor(name); s != nil {
			got = s.name
		}
		if got != want {
			t.Errorf("splitFor(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestSplitWithUpstreamsAndLog: a tenant with split zones, upstreams of its own and its
// query log on: a zone's names go to the zone's servers, the others to the tenant's
// upstreams, never the node's; every query is logged with what became of it, a zone
// server's answer as split with the time it took to come back.
func TestSplitWithUpstreamsAndLog(t *testing.T) {
	nodeUp, ownUp := startUpstream(t), startUpstreamAnswering(t, "198.51.100.7")
	d := splitDesired()
	d.Tenants[0].DNS.Upstreams = []plane.DNSUpstream{{Addr: ownUp.addr}}
	d.Tenants[0].DNS.QueryLog = true
	r, f := newSplitResolver(t, Config{Upstreams: []netip.AddrPort{nodeUp.addr}, Timeout: 100 * time.Millisecond}, d)
	const delay = 50 * time.Millisecond
	f.mu.Lock()
	f.delay = delay
	f.mu.Unlock()
	for _, c := range []struct {
		tenant int64
		name   string
		want   string
	}{
		{1, "db.corp.example.", "NOERROR 10.10.0.1"},         // split: A, answering late
		{1, "db.corp.example.", "NOERROR 10.10.0.1"},         // the tenant's cache
		{1, "www.example.com.", "NOERROR 198.51.100.7"},      // the tenant's own upstream
		{1, "www.example.com.", "NOERROR 198.51.100.7"},      // its cache, not the node's
		{2, "laptop.globex.internal.", "NOERROR 100.64.0.4"}, // globex: log off
	} {
		if got := answerText(ask(t, r, c.tenant, c.name, dns.TypeA)); got != c.want {
			t.Errorf("tenant %d: %s = %q, want %q", c.tenant, c.name, got, c.want)
		}
	}
	f.mu.Lock()
	f.silent[serverA], f.silent[serverB] = true, true
	f.mu.Unlock()
	if got := answerText(ask(t, r, 1, "lost.corp.example.", dns.TypeA)); got != "SERVFAIL" {
		t.Errorf("with every server silent: %q", got)
	}
	if n := nodeUp.queries.Load(); n != 0 {
		t.Errorf("the node's upstream was asked %d times for a tenant with its own", n)
	}
	if n := ownUp.queries.Load(); n != 1 {
		t.Errorf("the tenant's upstream was asked %d times, want once (then its cache)", n)
	}
	es := r.LogAfter(0, 100)
	want := `1 1 Laptop 100.64.0.2 db.corp.example A split NOERROR
2 1 Laptop 100.64.0.2 db.corp.example A cache NOERROR
3 1 Laptop 100.64.0.2 www.example.com A forwarded NOERROR
4 1 Laptop 100.64.0.2 www.example.com A cache NOERROR
5 1 Laptop 100.64.0.2 lost.corp.example A failed SERVFAIL
`
	if got := logText(es); got != want {
		t.Fatalf("the log:\n%s\nwant\n%s", got, want)
	}
	if es[0].Latency < delay {
		t.Errorf("the split answer was logged after %v, before it came (%v)", es[0].Latency, delay)
	}
	if es[4].Latency < 2*100*time.Millisecond {
		t.Errorf("the failed split query was logged after %v, before both servers' timeouts", es[4].Latency)
	}
	t.Logf("latencies: split %v, cache %v, forwarded %v, failed %v", es[0].Latency, es[1].Latency, es[2].Latency, es[4].Latency)
	if st := r.Stats(); st.Split != 2 || st.Forwarded != 1 || st.CacheHits != 2 || st.Failed != 1 {
		t.Errorf("stats %+v: want 2 split, 1 forwarded, 2 cache hits, 1 failed", st)
	}
}
