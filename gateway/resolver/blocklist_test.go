package resolver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/blocklist"
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
