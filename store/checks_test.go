package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNetChecks(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.EnsureHomeRegion(ctx, "local", "vpn.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	fra, err := s.AddRegion(ctx, "fra", "vpn-fra.example.com:51820")
	if err != nil {
		t.Fatal(err)
	}
	mustTenant(t, s, "acme")
	mustTenant(t, s, "beta")
	gen0, _ := s.Generation(ctx)

	// Every region has its handshake check, without anyone adding it.
	cs, err := s.NetChecks(ctx)
	if err != nil || len(cs) != 2 {
		t.Fatalf("NetChecks: %+v, %v", cs, err)
	}
	if c := cs[0]; c.Name != "region:fra" || c.Kind != CheckHandshake || c.Target != "vpn-fra.example.com:51820" || c.RegionKey != fra.PublicKey ||
		c.From != "other-regions" || c.Every != time.Minute || !c.Global() {
		t.Fatalf("fra's check: %+v", c)
	}
	if c := cs[1]; c.Name != "region:local" || c.RegionKey != s.NodePublicKey() || c.Target != "vpn.example.com:51820" {
		t.Fatalf("local's check: %+v", c)
	}

	dns, err := s.AddNetCheck(ctx, NewNetCheck{Name: "resolver", Kind: CheckDNS, Target: "www.example.com", Expect: "192.0.2.10"})
	if err != nil || dns.ID == 0 || dns.Every != DefaultCheckEvery || dns.From != "all" {
		t.Fatalf("AddNetCheck dns: %+v, %v", dns, err)
	}
	web, err := s.AddNetCheck(ctx, NewNetCheck{Tenant: "acme", Name: "site", Kind: CheckHTTP, Target: "https://www.example.com/health",
		Every: 30 * time.Second, From: "node:p2, region:fra,node:p1,region:fra"})
	if err != nil || web.TenantName != "acme" || web.From != "region:fra,node:p1,node:p2" {
		t.Fatalf("AddNetCheck http: %+v, %v", web, err)
	}
	// The same name in another tenant, and the operator's: separate checks.
	if _, err := s.AddNetCheck(ctx, NewNetCheck{Tenant: "beta", Name: "site", Kind: CheckHTTP, Target: "http://203.0.113.9/"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddNetCheck(ctx, NewNetCheck{Name: "site", Kind: CheckHTTP, Target: "http://10.0.0.1:8080/"}); err != nil {
		t.Fatalf("the operator may check a private address: %v", err)
	}
	if gen, _ := s.Generation(ctx); gen != gen0+4 {
		t.Fatalf("generation %d after 4 checks added, want %d", gen, gen0+4)
	}
	got, err := s.NetCheck(ctx, "acme", "site")
	if err != nil || got.ID != web.ID || got.Target != web.Target || got.Every != 30*time.Second {
		t.Fatalf("NetCheck(acme, site): %+v, %v", got, err)
	}
	if got, err := s.NetCheck(ctx, "", "region:fra"); err != nil || got.Kind != CheckHandshake {
		t.Fatalf("NetCheck(region:fra): %+v, %v", got, err)
	}
	cs, _ = s.NetChecks(ctx)
	var names []string
	for _, c := range cs {
		names = append(names, c.TenantName+"/"+c.Name)
	}
	if strings.Join(names, " ") != "/region:fra /region:local /resolver /site acme/site beta/site" {
		t.Fatalf("order: %q", names)
	}

	// Bad input: one clear error each, nothing stored.
	for _, c := range []struct {
		nc       NewNetCheck
		kind     error
		contains string
	}{
		{NewNetCheck{Name: "Bad", Kind: CheckDNS, Target: "a.example"}, ErrInvalid, "check name"},
		{NewNetCheck{Name: "x", Kind: "ping", Target: "a.example"}, ErrInvalid, "use dns or http"},
		{NewNetCheck{Name: "x", Kind: CheckHandshake, Target: "a.example"}, ErrInvalid, "not added"},
		{NewNetCheck{Name: "x", Kind: CheckDNS, Target: "a..example"}, ErrInvalid, "not a DNS name"},
		{NewNetCheck{Name: "x", Kind: CheckDNS, Target: "a example"}, ErrInvalid, "not a DNS name"},
		{NewNetCheck{Name: "x", Kind: CheckDNS, Target: "a.example", Expect: "nope"}, ErrInvalid, "not an IP address"},
		{NewNetCheck{Name: "x", Kind: CheckHTTP, Target: "ftp://a.example/"}, ErrInvalid, "not an http or https URL"},
		{NewNetCheck{Name: "x", Kind: CheckHTTP, Target: "https://user:pw@a.example/"}, ErrInvalid, "credentials"},
		{NewNetCheck{Name: "x", Kind: CheckHTTP, Target: "https://a.example/", Expect: "2000"}, ErrInvalid, "100 to 599"},
		{NewNetCheck{Name: "x", Kind: CheckHTTP, Target: "https://a.example/ x"}, ErrInvalid, "spaces"},
		{NewNetCheck{Name: "x", Kind: CheckHTTP, Target: "http://a.example:99999/"}, ErrInvalid, "bad port"},
		{NewNetCheck{Name: "x", Kind: CheckHTTP, Target: "http://192.0.2.1:99999/"}, ErrInvalid, "bad port"},
		{NewNetCheck{Name: "x", Kind: CheckHTTP, Target: "http://[2001:db8::1]:0/"}, ErrInvalid, "bad port"},
		{NewNetCheck{Name: "x", Kind: CheckDNS, Target: "a.example", Every: time.Second}, ErrInvalid, "every 10s to 1h0m0s"},
		{NewNetCheck{Name: "x", Kind: CheckDNS, Target: "a.example", Every: 90500 * time.Millisecond}, ErrInvalid, "whole seconds"},
		{NewNetCheck{Name: "x", Kind: CheckDNS, Target: "a.example", From: "all,region:fra"}, ErrInvalid, "all goes alone"},
		{NewNetCheck{Name: "x", Kind: CheckDNS, Target: "a.example", From: "pop:p1"}, ErrInvalid, "unknown"},
		{NewNetCheck{Name: "x", Kind: CheckDNS, Target: "a.example", From: "region:FRA"}, ErrInvalid, "region name"},
		{NewNetCheck{Name: "resolver", Kind: CheckDNS, Target: "a.example"}, ErrExists, "exists already"},
		{NewNetCheck{Tenant: "nope", Name: "x", Kind: CheckDNS, Target: "a.example"}, ErrNotFound, "tenant \"nope\""},
		// A tenant's check reaches only the internet.
		{NewNetCheck{Tenant: "acme", Name: "x", Kind: CheckHTTP, Target: "http://127.0.0.1:8080/"}, ErrInvalid, "not a public address"},
		{NewNetCheck{Tenant: "acme", Name: "x", Kind: CheckHTTP, Target: "http://[fd00::1]/"}, ErrInvalid, "not a public address"},
		{NewNetCheck{Tenant: "acme", Name: "x", Kind: CheckHTTP, Target: "http://100.64.0.1/"}, ErrInvalid, "not a public address"},
		{NewNetCheck{Tenant: "acme", Name: "x", Kind: CheckHTTP, Target: "http://169.254.169.254/latest/meta-data/"}, ErrInvalid, "not a public address"},
		{NewNetCheck{Tenant: "acme", Name: "x", Kind: CheckHTTP, Target: "http://localhost:8080/"}, ErrInvalid, "names this host"},
	} {
		_, err := s.AddNetCheck(ctx, c.nc)
		wantErr(t, err, c.kind, c.contains)
	}
	if n, _ := s.NetChecks(ctx); len(n) != 6 {
		t.Fatalf("%d checks after refusals, want 6", len(n))
	}

	// A tenant has at most MaxChecksPerTenant.
	for i := 1; i < MaxChecksPerTenant; i++ {
		if _, err := s.AddNetCheck(ctx, NewNetCheck{Tenant: "acme", Name: "c" + strings.Repeat("x", i), Kind: CheckDNS, Target: "a.example"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.AddNetCheck(ctx, NewNetCheck{Tenant: "acme", Name: "onemore", Kind: CheckDNS, Target: "a.example"})
	wantErr(t, err, ErrInvalid, "the most it may have")
	if _, err := s.AddNetCheck(ctx, NewNetCheck{Tenant: "beta", Name: "other", Kind: CheckDNS, Target: "a.example"}); err != nil {
		t.Fatalf("another tenant is not held back: %v", err)
	}

	// Remove: the region's own cannot be; a tenant's goes with its tenant.
	wantErr(t, s.RemoveNetCheck(ctx, "", "region:fra"), ErrInvalid, "goes when the region is removed")
	wantErr(t, s.RemoveNetCheck(ctx, "", "nope"), ErrNotFound, "check list")
	wantErr(t, s.RemoveNetCheck(ctx, "beta", "resolver"), ErrNotFound, "of tenant \"beta\"")
	if err := s.RemoveNetCheck(ctx, "acme", "site"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NetCheck(ctx, "acme", "site"); err == nil {
		t.Fatal("removed check still there")
	}
	if err := s.RemoveRegion(ctx, "fra"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NetCheck(ctx, "", "region:fra"); err == nil {
		t.Fatal("a removed region's check is still there")
	}
	if err := s.RemoveNetCheck(ctx, "beta", "site"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveNetCheck(ctx, "beta", "other"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTenant(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	entries, _, err := s.ListAudit(ctx, AuditQuery{Action: "check"})
	if err != nil || len(entries) == 0 || entries[0].Action != "check.remove" || entries[0].Target != "check:beta/other" {
		t.Fatalf("audit: %+v, %v", entries, err)
	}

	// The snapshot carries the checks.
	snap, err := s.Snapshot(ctx)
	if err != nil || len(snap.Checks) == 0 || snap.Checks[0].Name != "region:local" {
		t.Fatalf("Snapshot checks: %+v, %v", snap.Checks, err)
	}
}

func TestCheckResults(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s := openOpts(t, Options{Path: filepath.Join(t.TempDir(), "popgate.db"), Now: clock.Now})
	c, err := s.AddNetCheck(ctx, NewNetCheck{Name: "resolver", Kind: CheckDNS, Target: "www.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	gen0, _ := s.Generation(ctx)
	now := clock.Now().Truncate(time.Minute)
	ms := time.Millisecond
	rs := []CheckResult{
		{Check: c.ID, Node: 1, Minute: now.Add(-2 * time.Minute), OK: 1, LatencyP50: 4 * ms, LatencyMax: 4 * ms, Detail: "192.0.2.10"},
		{Check: c.ID, Node: 2, Minute: now.Add(-2 * time.Minute), Failed: 1, Error: "timeout\nafter 5s"},
		{Check: c.ID, Node: 1, Minute: now.Add(-time.Minute), OK: 2, LatencyP50: 6 * ms, LatencyMax: 9 * ms},
		{Check: c.ID, Node: 1, Minute: now, OK: 1, LatencyP50: 5 * ms, LatencyMax: 5 * ms},
		// Dropped: an unknown check, no run, a minute past retention, node 0.
		{Check: c.ID + 100, Node: 1, Minute: now, OK: 1},
		{Check: c.ID, Node: 3, Minute: now},
		{Check: c.ID, Node: 3, Minute: now.Add(-CheckRetention - time.Minute), OK: 1},
		{Check: c.ID, Node: 0, Minute: now, OK: 1},
	}
	if err := s.RecordCheckResults(ctx, rs); err != nil {
		t.Fatal(err)
	}
	// A minute reported again replaces what it said: the node's counts only grow in it.
	if err := s.RecordCheckResults(ctx, []CheckResult{{Check: c.ID, Node: 1, Minute: now, OK: 2, Failed: 1, LatencyP50: 5 * ms, LatencyMax: 7 * ms, Error: "refused"}}); err != nil {
		t.Fatal(err)
	}
	if gen, _ := s.Generation(ctx); gen != gen0 {
		t.Fatalf("results moved the generation from %d to %d", gen0, gen)
	}
	got, err := s.CheckResults(ctx, c.ID, now.Add(-time.Hour))
	if err != nil || len(got) != 4 {
		t.Fatalf("CheckResults: %+v, %v", got, err)
	}
	if g := got[1]; g.Node != 2 || g.Failed != 1 || g.Error != "timeout\uFFFDafter 5s" || !g.Minute.Equal(now.Add(-2*time.Minute)) {
		t.Fatalf("node 2's failure: %+v", g)
	}
	if g := got[3]; g.OK != 2 || g.Failed != 1 || g.LatencyMax != 7*ms || g.Error != "refused" {
		t.Fatalf("the minute reported again: %+v", g)
	}
	if m, err := s.NodeMinutes(ctx, now.Add(-time.Hour)); err != nil || m[1] != 3 || m[2] != 1 || len(m) != 2 {
		t.Fatalf("NodeMinutes: %v, %v", m, err)
	}
	bins, err := s.CheckBins(ctx, c.ID, now.Add(-time.Hour), 10*time.Minute)
	if err != nil || len(bins) == 0 {
		t.Fatalf("CheckBins: %+v, %v", bins, err)
	}
	var ok, failed int
	for _, b := range bins {
		ok, failed = ok+b.OK, failed+b.Failed
	}
	if ok != 5 || failed != 2 {
		t.Fatalf("bins count %d passed, %d failed; want 5, 2: %+v", ok, failed, bins)
	}

	// A week later they are pruned.
	clock.Advance(CheckRetention - time.Minute)
	n, err := s.PruneCheckResults(ctx)
	if err != nil || n != 2 {
		t.Fatalf("PruneCheckResults: %d, %v; want the 2 results of the oldest minute", n, err)
	}
	clock.Advance(time.Hour)
	if n, err := s.PruneCheckResults(ctx); err != nil || n != 2 {
		t.Fatalf("PruneCheckResults: %d, %v", n, err)
	}
	// Removing the check removes its results.
	if err := s.RecordCheckResults(ctx, []CheckResult{{Check: c.ID, Node: 1, Minute: clock.Now(), OK: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveNetCheck(ctx, "", "resolver"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.CheckResults(ctx, c.ID, time.Time{}); len(got) != 0 {
		t.Fatalf("results outlive their check: %+v", got)
	}
}

func TestPublicAddr(t *testing.T) {
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true}, {"2606:4700::1111", true}, {"198.51.100.7", true}, {"::ffff:8.8.8.8", true},
		{"127.0.0.1", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false},
		{"100.64.0.1", false}, {"169.254.169.254", false}, {"0.0.0.0", false}, {"0.1.2.3", false},
		{"224.0.0.1", false}, {"255.255.255.255", false}, {"240.0.0.2", false}, {"198.18.0.1", false},
		{"::1", false}, {"fd00::1", false}, {"fe80::1", false}, {"ff02::1", false}, {"::", false},
		{"::ffff:127.0.0.1", false}, {"192.0.0.8", false},
	} {
		if got := PublicAddr(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("PublicAddr(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
}
