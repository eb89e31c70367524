package resolver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/blocklist"
	"github.com/popgate/popgate/gateway/plane"
)

func mustSet(t *testing.T, names ...string) *blocklist.Set {
	t.Helper()
	l := blocklist.Encode(names, 0)
	s, err := blocklist.Load(l.Body, l.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBlocklists: a name one of the tenant's lists holds, or a subdomain of it, is NXDOMAIN
// to that tenant only, never asked of the upstream; the tenant's own names come first.
func TestBlocklists(t *testing.T) {
	up := startUpstream(t)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}})
	ads := mustSet(t, "ads.example.com", "tracker.net")
	own := mustSet(t, "acme.internal", "globex.internal")
	r.SetBlocklists(map[int64]Blocklist{1: blocklist.Union{ads, own}})
	for _, c := range []struct {
		tenant int64
		name   string
		qtype  uint16
		want   string
	}{
		{1, "ads.example.com.", dns.TypeA, "NXDOMAIN"},
		{1, "Deep.Sub.ADS.example.com.", dns.TypeAAAA, "NXDOMAIN"},
		{1, "x.tracker.net.", dns.TypeHTTPS, "NXDOMAIN"},
		{1, "example.com.", dns.TypeA, "NOERROR 192.0.2.1"},
		{1, "notads.example.com.", dns.TypeA, "NOERROR 192.0.2.1"},
		{2, "ads.example.com.", dns.TypeA, "NOERROR 192.0.2.1"}, // another tenant's list
		{2, "x.tracker.net.", dns.TypeA, "NOERROR 192.0.2.1"},
		{1, "laptop.acme.internal.", dns.TypeA, "NOERROR 100.64.0.2"}, // its own names first
		{1, "2.0.64.100.in-addr.arpa.", dns.TypePTR, "NOERROR laptop.acme.internal."},
		{1, "laptop.globex.internal.", dns.TypeA, "NXDOMAIN"},
	} {
		if got := answerText(ask(t, r, c.tenant, c.name, c.qtype)); got != c.want {
			t.Errorf("tenant %d: %s %s = %q, want %q", c.tenant, c.name, dns.TypeToString[c.qtype], got, c.want)
		}
	}
	if n := r.Stats().Blocked; n != 4 {
		t.Errorf("Stats.Blocked = %d, want 4", n)
	}
	if n := up.queries.Load(); n != 4 {
		t.Errorf("the upstream was asked %d times, want 4 (the names not blocked)", n)
	}
	m := ask(t, r, 1, "www.ads.example.com.", dns.TypeA)
	if !m.Authoritative || len(m.Answer) != 0 || len(m.Ns) != 1 {
		t.Fatalf("a blocked name's answer: authoritative %v, %d answers, authority %v", m.Authoritative, len(m.Answer), m.Ns)
	}
	soa, ok := m.Ns[0].(*dns.SOA)
	if !ok || soa.Hdr.Name != "ads.example.com." || soa.Minttl != BlockedTTL || soa.Hdr.Ttl != BlockedTTL {
		t.Errorf("a blocked name's SOA: %v", m.Ns[0])
	}
	if m.IsEdns0() == nil {
		t.Error("the answer to an EDNS query has no OPT")
	}

	// Blocked answers are not cached: with the list gone, the name resolves.
	r.SetBlocklists(nil)
	if got := answerText(ask(t, r, 1, "ads.example.com.", dns.TypeA)); got != "NOERROR 192.0.2.1" {
		t.Errorf("ads.example.com once the list is gone: %q", got)
	}
}

// TestBlocklistsBeforeSplitAndUpstreams: a tenant's blocklists come before its split zones
// and its own upstreams (neither is asked a blocked name, a zone's name included), they are
// its alone (another tenant's zone "." still gets the name), and its query log has each
// blocked query as blocked NXDOMAIN among the others.
func TestBlocklistsBeforeSplitAndUpstreams(t *testing.T) {
	nodeUp, ownUp := startUpstream(t), startUpstreamAnswering(t, "198.51.100.7")
	d := splitDesired()
	d.Tenants[0].DNS.Upstreams = []plane.DNSUpstream{{Addr: ownUp.addr}}
	d.Tenants[0].DNS.QueryLog = true
	r, f := newSplitResolver(t, Config{Upstreams: []netip.AddrPort{nodeUp.addr}}, d)
	r.SetBlocklists(map[int64]Blocklist{
		1: mustSet(t, "ads.corp.example", "tracker.example.com"),
		2: mustSet(t, "blocked.example.net"),
	})
	for _, c := range []struct {
		tenant int64
		name   string
		want   string
	}{
		{1, "x.ads.corp.example.", "NXDOMAIN"},              // in its zone corp.example, but listed
		{1, "db.corp.example.", "NOERROR 10.10.0.1"},        // the zone's server A
		{1, "tracker.example.com.", "NXDOMAIN"},             // never asked of its upstream
		{1, "www.example.com.", "NOERROR 198.51.100.7"},     // its own upstream
		{1, "laptop.acme.internal.", "NOERROR 100.64.0.2"},  // its names first
		{2, "blocked.example.net.", "NXDOMAIN"},             // globex's list, before its zone "."
		{2, "x.ads.corp.example.", "NOERROR 10.10.0.3"},     // acme's list is not globex's: its zone's server C
		{2, "tracker.example.com.", "NOERROR 10.10.0.3"},    //
		{1, "blocked.example.net.", "NOERROR 198.51.100.7"}, // nor globex's acme's
	} {
		if got := answerText(ask(t, r, c.tenant, c.name, dns.TypeA)); got != c.want {
			t.Errorf("tenant %d: %s = %q, want %q", c.tenant, c.name, got, c.want)
		}
	}
	if a, b, c := f.askedOf(serverA), f.askedOf(serverB), f.askedOf(serverC); a != 1 || b != 0 || c != 2 {
		t.Errorf("the zones' servers were asked A %d, B %d, C %d times; want 1, 0, 2 (no blocked name)", a, b, c)
	}
	if n, m := ownUp.queries.Load(), nodeUp.queries.Load(); n != 2 || m != 0 {
		t.Errorf("acme's upstream was asked %d times (want 2), the node's %d (want 0)", n, m)
	}
	want := `1 1 Laptop 100.64.0.2 x.ads.corp.example A blocked NXDOMAIN
2 1 Laptop 100.64.0.2 db.corp.example A split NOERROR
3 1 Laptop 100.64.0.2 tracker.example.com A blocked NXDOMAIN
4 1 Laptop 100.64.0.2 www.example.com A forwarded NOERROR
5 1 Laptop 100.64.0.2 laptop.acme.internal A local NOERROR
6 1 Laptop 100.64.0.2 blocked.example.net A forwarded NOERROR
`
	if got := logText(r.LogAfter(0, 100)); got != want {
		t.Errorf("acme's log:\n%s\nwant\n%s", got, want)
	}
	if st := r.Stats(); st.Blocked != 3 || st.Split != 3 || st.Forwarded != 2 || st.Local != 1 {
		t.Errorf("stats %+v: want 3 blocked, 3 split, 2 forwarded, 1 local", st)
	}
}
