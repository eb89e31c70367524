package resolver

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/plane"
)

// withQueryLog is testDesired with tenant 1's (acme's) query log on.
func withQueryLog() *plane.Desired {
	d := testDesired()
	d.Tenants[0].DNS.QueryLog = true
	return d
}

func logText(es []plane.DNSQuery) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%d %d %s %s %s %s %s %s\n", e.Seq, e.Tenant, e.Peer, e.Client, e.Name, e.Type, e.Outcome, e.Rcode)
	}
	return b.String()
}

// TestQueryLog: the queries of a tenant whose log is on are logged with what became of them,
// whichever way they were answered; another tenant's never are.
func TestQueryLog(t *testing.T) {
	up, silent := startUpstream(t), startUpstream(t)
	silent.silent.Store(true)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}, Timeout: 100 * time.Millisecond})
	setZones(r, withQueryLog())
	ask(t, r, 1, "Laptop.acme.internal.", dns.TypeA)
	ask(t, r, 1, "WWW.example.com.", dns.TypeAAAA)
	ask(t, r, 1, "www.example.com.", dns.TypeAAAA)
	ask(t, r, 1, "nx.example.com.", dns.TypeA)
	ask(t, r, 1, "laptop.globex.internal.", dns.TypeA)
	ask(t, r, 1, mustReverse("100.64.0.2"), dns.TypePTR)
	ask(t, r, 2, "www.example.com.", dns.TypeA) // globex: its log is off
	ask(t, r, 2, "laptop.globex.internal.", dns.TypeA)
	q := new(dns.Msg)
	q.SetQuestion("version.bind.", dns.TypeTXT)
	q.Question[0].Qclass = dns.ClassCHAOS
	b, _ := q.Pack()
	r.Query(1, netip.MustParseAddr("100.64.0.2"), b, nil)
	setZones(r, withUpstreams(plane.DNSUpstream{Addr: silent.addr})) // acme's log off now
	ask(t, r, 1, "unlogged.example.com.", dns.TypeA)
	d := withQueryLog()
	d.Tenants[0].DNS.Upstreams = []plane.DNSUpstream{{Addr: silent.addr}}
	setZones(r, d)
	ask(t, r, 1, "lost.example.com.", dns.TypeA)

	got := logText(r.LogAfter(0, 100))
	want := `1 1 Laptop 100.64.0.2 laptop.acme.internal A local NOERROR
2 1 Laptop 100.64.0.2 www.example.com AAAA forwarded NOERROR
3 1 Laptop 100.64.0.2 www.example.com AAAA cache NOERROR
4 1 Laptop 100.64.0.2 nx.example.com A forwarded NXDOMAIN
5 1 Laptop 100.64.0.2 laptop.globex.internal A local NXDOMAIN
6 1 Laptop 100.64.0.2 2.0.64.100.in-addr.arpa PTR local NOERROR
7 1 Laptop 100.64.0.2 version.bind TXT refused REFUSED
8 1 Laptop 100.64.0.2 lost.example.com A failed SERVFAIL
`
	if got != want {
		t.Errorf("the log:\n%s\nwant\n%s", got, want)
	}
	es := r.LogAfter(7, 100)
	if len(es) != 1 || es[0].Latency < 100*time.Millisecond || es[0].At.IsZero() {
		t.Errorf("the failed query: %+v, want it logged after the upstream's timeout", es)
	}
	if got := logText(r.LogAfter(2, 2)); !strings.HasPrefix(got, "3 ") || strings.Count(got, "\n") != 2 {
		t.Errorf("LogAfter(2, 2):\n%s", got)
	}
	if es := r.LogAfter(8, 100); len(es) != 0 {
		t.Error("entries after the last")
	}
}

// TestQueryLogRing: the log keeps the newest LogEntries; those that went before the
// controller had them are counted, those it had are not.
func TestQueryLogRing(t *testing.T) {
	r := newTestResolver(t, Config{LogEntries: 10})
	setZones(r, withQueryLog())
	for i := range 25 {
		ask(t, r, 1, fmt.Sprintf("p%d.acme.internal.", i), dns.TypeA)
	}
	es := r.LogAfter(0, 100)
	if len(es) != 10 || es[0].Seq != 16 || es[9].Seq != 25 || es[9].Name != "p24.acme.internal" {
		t.Fatalf("the ring holds %s", logText(es))
	}
	if d := r.LogDropped(); d != 15 {
		t.Errorf("%d dropped, want 15", d)
	}
	r.LogAfter(20, 100) // the controller has up to 20
	for i := range 5 {
		ask(t, r, 1, fmt.Sprintf("q%d.acme.internal.", i), dns.TypeA)
	}
	if d := r.Stats().LogDropped; d != 15 {
		t.Errorf("%d dropped after the controller had those that went, want 15 still", d)
	}
	if es := r.LogAfter(20, 100); len(es) != 10 || es[0].Seq != 21 || es[9].Seq != 30 {
		t.Errorf("after 20: %s", logText(es))
	}
}

// BenchmarkQueryLocal: a tenant's own name answered at once, with its query log off and on:
// what logging costs a query.
func BenchmarkQueryLocal(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "log-off", true: "log-on"}[on], func(b *testing.B) {
			r, err := New(Config{Overlay: testOverlay, PeerRate: 1e12, PeerBurst: 1e12}, discardLog())
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			d := testDesired()
			d.Tenants[0].DNS.QueryLog = on
			setZones(r, d)
			q := new(dns.Msg)
			q.SetQuestion("laptop.acme.internal.", dns.TypeA)
			msg, _ := q.Pack()
			src := netip.MustParseAddr("100.64.0.2")
			b.ReportAllocs()
			for b.Loop() {
				if r.Query(1, src, msg, nil) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}
