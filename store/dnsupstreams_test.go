package store

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseDNSUpstream(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		in   string
		want DNSUpstream
		err  string // a part of the error; "" for none
	}{
		{in: "9.9.9.9", want: DNSUpstream{Addr: ap("9.9.9.9:53")}},
		{in: "9.9.9.9:5353", want: DNSUpstream{Addr: ap("9.9.9.9:5353")}},
		{in: "2620:fe::fe", want: DNSUpstream{Addr: ap("[2620:fe::fe]:53")}},
		{in: "[2620:fe::fe]", want: DNSUpstream{Addr: ap("[2620:fe::fe]:53")}},
		{in: "[2620:fe::fe]:54", want: DNSUpstream{Addr: ap("[2620:fe::fe]:54")}},
		{in: "tls://dns.quad9.net@9.9.9.9", want: DNSUpstream{Addr: ap("9.9.9.9:853"), TLSName: "dns.quad9.net"}},
		{in: "TLS://DNS.Quad9.net.@9.9.9.9:8853", want: DNSUpstream{Addr: ap("9.9.9.9:8853"), TLSName: "dns.quad9.net"}},
		{in: "tls://dns.quad9.net@[2620:fe::fe]:853", want: DNSUpstream{Addr: ap("[2620:fe::fe]:853"), TLSName: "dns.quad9.net"}},
		{in: "tls://dns.quad9.net@2620:fe::fe", want: DNSUpstream{Addr: ap("[2620:fe::fe]:853"), TLSName: "dns.quad9.net"}},
		{in: "192.0.2.53", want: DNSUpstream{Addr: ap("192.0.2.53:53")}}, // documentation ranges are allowed (tests)

		{in: "", err: "empty"},
		{in: "9.9.9.9 1.1.1.1", err: "spaces"},
		{in: "dns.google", err: `"dns.google" is not an IP address`},
		{in: "dns.google:53", err: `"dns.google" is not an IP address`},
		{in: "9.9.9.9:0", err: "port 0"},
		{in: "9.9.9.9:99999", err: `the port "99999"`},
		{in: "9.9.9.9:dns", err: `the port "dns"`},
		{in: "https://dns.google/dns-query", err: "the scheme https:// is not one popgate speaks"},
		{in: "tls://9.9.9.9", err: "needs the server's name"},
		{in: "tls://dns.quad9.net", err: "needs the server's address too"},
		{in: "tls://9.9.9.9@9.9.9.9", err: "is not a server's DNS name"},
		{in: "tls://localhost@9.9.9.9", err: "is not a server's DNS name"},
		{in: "tls://dns.quad9.net@dns.quad9.net", err: "is not an IP address"},
		{in: "127.0.0.1", err: "127.0.0.1 is not a public address"},
		{in: "10.1.2.3:53", err: "10.1.2.3 is not a public address"},
		{in: "192.168.1.1", err: "not a public address"},
		{in: "100.64.0.1", err: "100.64.0.1 is not a public address"}, // the overlay
		{in: "169.254.169.254", err: "not a public address"},
		{in: "::1", err: "::1 is not a public address"},
		{in: "fd00::53", err: "not a public address"},
		{in: "fe80::1%eth0", err: "without a zone"},
		{in: "::ffff:9.9.9.9", err: "IPv4-mapped"},
		{in: "0.0.0.0", err: "not a public address"},
		{in: "tls://dns.example@10.0.0.53", err: "10.0.0.53 is not a public address"},
	} {
		got, err := ParseDNSUpstream(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseDNSUpstream(%q): %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("ParseDNSUpstream(%q) = %+v, want %+v", tc.in, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid)):
			t.Errorf("ParseDNSUpstream(%q) = %+v, %v; want an ErrInvalid saying %q", tc.in, got, err, tc.err)
		}
		if err == nil {
			again, err := ParseDNSUpstream(got.String())
			if err != nil || again != got {
				t.Errorf("ParseDNSUpstream(%q) = %+v, %v: String %q does not read back", tc.in, again, err, got.String())
			}
		}
	}
	if _, err := ParseDNSUpstreams([]string{"9.9.9.9", "9.9.9.9:53"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("the same upstream twice: %v", err)
	}
	if _, err := ParseDNSUpstreams([]string{"9.9.9.9", "9.9.9.10", "1.1.1.1", "1.0.0.1", "8.8.8.8"}); err == nil || !strings.Contains(err.Error(), "at most 4") {
		t.Errorf("five upstreams: %v", err)
	}
}

func TestDNSUpstreams(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	globex := mustTenant(t, s, "globex")

	if ups, err := s.DNSUpstreams(ctx, "acme"); err != nil || len(ups) != 0 {
		t.Fatalf("a new tenant's upstreams: %v, %v; want none (the node's)", ups, err)
	}
	g0, _ := s.Generation(ctx)
	ups, err := s.SetDNSUpstreams(ctx, "acme", []string{"tls://dns.quad9.net@9.9.9.9", "149.112.112.112"})
	if err != nil {
		t.Fatal(err)
	}
	want := "tls://dns.quad9.net@9.9.9.9:853 149.112.112.112:53"
	if got := upstreamsText(ups); got != want {
		t.Errorf("SetDNSUpstreams = %s, want %s", got, want)
	}
	if got, err := s.DNSUpstreams(ctx, "acme"); err != nil || upstreamsText(got) != want {
		t.Errorf("DNSUpstreams = %s, %v; want %s", upstreamsText(got), err, want)
	}
	if g1, _ := s.Generation(ctx); g1 <= g0 {
		t.Errorf("the generation stayed at %d: nodes would not learn of the upstreams", g1)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := upstreamsText(snap.DNSUpstreams[acme.ID]); got != want || len(snap.DNSUpstreams[globex.ID]) != 0 {
		t.Errorf("snapshot upstreams: acme %s, globex %v; want acme %s, globex none", got, snap.DNSUpstreams[globex.ID], want)
	}

	// Refused: a private address, an unknown tenant; nothing changes.
	if _, err := s.SetDNSUpstreams(ctx, "acme", []string{"9.9.9.9", "10.0.0.53"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a private upstream: %v, want ErrInvalid", err)
	}
	if _, err := s.SetDNSUpstreams(ctx, "initech", []string{"9.9.9.9"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown tenant: %v, want ErrNotFound", err)
	}
	if got, _ := s.DNSUpstreams(ctx, "acme"); upstreamsText(got) != want {
		t.Errorf("after refused changes: %s, want %s", upstreamsText(got), want)
	}

	// Reset: the node's again.
	if ups, err := s.SetDNSUpstreams(ctx, "acme", nil); err != nil || len(ups) != 0 {
		t.Fatalf("reset: %v, %v", ups, err)
	}
	if got, _ := s.DNSUpstreams(ctx, "acme"); len(got) != 0 {
		t.Errorf("after reset: %s, want none", upstreamsText(got))
	}
	entries, _, err := s.ListAudit(ctx, AuditQuery{Action: "dns.upstream"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action+" "+e.Target+" "+e.Detail)
	}
	if got := strings.Join(actions, "; "); got != "dns.upstream.reset dns:acme the node's upstreams; dns.upstream.set dns:acme "+want {
		t.Errorf("audit: %s", got)
	}

	// They go with their tenant.
	if _, err := s.SetDNSUpstreams(ctx, "globex", []string{"1.1.1.1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTenant(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM dns_upstreams").Scan(&n); err != nil || n != 0 {
		t.Errorf("rows left after the tenant went: %d, %v", n, err)
	}
}

func upstreamsText(ups []DNSUpstream) string {
	out := make([]string, len(ups))
	for i, u := range ups {
		out[i] = u.String()
	}
	return strings.Join(out, " ")
}
