package store

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPolicy(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s, _ := openTest(t)
	s.now = clock.Now
	acme := mustTenant(t, s, "acme")
	beta := mustTenant(t, s, "beta")

	text, updated, err := s.Policy(ctx, "acme")
	if err != nil || text != "" || !updated.IsZero() {
		t.Errorf("Policy before SetPolicy = %q, %v, %v; want \"\", zero time", text, updated, err)
	}
	if m, err := s.Policies(ctx); err != nil || len(m) != 0 {
		t.Errorf("Policies before SetPolicy = %v, %v", m, err)
	}

	// Stored verbatim: white space, comments, CRLF, non-ASCII, even bytes that are not UTF-8
	// (the caller's parser decides what it accepts).
	for _, text := range []string{
		"default deny\nallow group:eng -> 10.10.0.0/24 tcp 80\n",
		"  # comment only\r\n\r\n",
		"allow any -> site:büro any\n",
		"odd \x00 bytes \xff\xfe",
		"",
		strings.Repeat("x", MaxPolicySize),
	} {
		clock.Advance(time.Minute)
		if err := s.SetPolicy(ctx, "acme", text, 0); err != nil {
			t.Fatalf("SetPolicy(%.40q): %v", text, err)
		}
		got, updated, err := s.Policy(ctx, "acme")
		if err != nil || got != text || !updated.Equal(clock.Now()) {
			t.Errorf("Policy after SetPolicy(%.40q) = %.40q (%d bytes), %v, %v", text, got, len(got), updated, err)
		}
	}

	// The same text again changes nothing, not even the time.
	clock.Advance(time.Minute)
	g0, _ := s.Generation(ctx)
	if err := s.SetPolicy(ctx, "beta", "default allow\n", 0); err != nil {
		t.Fatal(err)
	}
	_, set, _ := s.Policy(ctx, "beta")
	clock.Advance(time.Minute)
	if err := s.SetPolicy(ctx, "beta", "default allow\n", 0); err != nil {
		t.Fatal(err)
	}
	if _, again, _ := s.Policy(ctx, "beta"); !again.Equal(set) {
		t.Errorf("SetPolicy with the same text moved the time %v → %v", set, again)
	}
	if g, _ := s.Generation(ctx); g != g0+1 {
		t.Errorf("generation %d → %d; want one step for the one change", g0, g)
	}

	m, err := s.Policies(ctx)
	want := map[int64]string{acme.ID: strings.Repeat("x", MaxPolicySize), beta.ID: "default allow\n"}
	if err != nil || !reflect.DeepEqual(m, want) {
		t.Errorf("Policies = %d entries, %v", len(m), err)
	}

	err = s.SetPolicy(ctx, "acme", strings.Repeat("x", MaxPolicySize+1), 0)
	wantErr(t, err, ErrInvalid, `the policy of tenant "acme" has 4194305 bytes, at most 4194304 (4 MiB) are allowed: shorten it`)
	wantErr(t, s.SetPolicy(ctx, "nope", "x", 0), ErrNotFound, `tenant "nope" not found`)
	_, _, err = s.Policy(ctx, "nope")
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
}

func TestSetTenantSplitTunnel(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	if acme.SplitTunnel {
		t.Fatal("a new tenant has split tunnel on")
	}
	for _, on := range []bool{true, true, false, true} {
		got, err := s.SetTenantSplitTunnel(ctx, "acme", on)
		want := acme
		want.SplitTunnel = on
		if err != nil || got != want {
			t.Fatalf("SetTenantSplitTunnel(%v) = %+v, %v", on, got, err)
		}
		if stored, err := s.Tenant(ctx, "acme"); err != nil || stored != want {
			t.Errorf("Tenant = %+v, %v; want %+v", stored, err, want)
		}
		if ts, err := s.ListTenants(ctx); err != nil || len(ts) != 1 || ts[0] != want {
			t.Errorf("ListTenants = %+v, %v", ts, err)
		}
	}
	_, err := s.SetTenantSplitTunnel(ctx, "nope", true)
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
}

func TestSetTenantLimits(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	if acme.MaxFlowsPerPeer != 0 || acme.MaxFlows != 0 {
		t.Fatalf("a new tenant has limits %d/%d, want the defaults (0)", acme.MaxFlowsPerPeer, acme.MaxFlows)
	}
	n := func(v int) *int { return &v }
	for _, c := range []struct {
		set            TenantLimits
		perPeer, flows int
	}{
		{TenantLimits{MaxFlowsPerPeer: n(100)}, 100, 0},
		{TenantLimits{MaxFlows: n(5000)}, 100, 5000},
		{TenantLimits{}, 100, 5000},
		{TenantLimits{MaxFlowsPerPeer: n(MaxFlowLimit), MaxFlows: n(1)}, MaxFlowLimit, 1},
		{TenantLimits{MaxFlowsPerPeer: n(0)}, 0, 1},
		{TenantLimits{MaxFlowsPerPeer: n(0), MaxFlows: n(0)}, 0, 0},
	} {
		got, err := s.SetTenantLimits(ctx, "acme", c.set)
		want := acme
		want.MaxFlowsPerPeer, want.MaxFlows = c.perPeer, c.flows
		if err != nil || got != want {
			t.Fatalf("SetTenantLimits(%+v) = %+v, %v; want %+v", c.set, got, err, want)
		}
		if stored, err := s.Tenant(ctx, "acme"); err != nil || stored != want {
			t.Errorf("Tenant = %+v, %v; want %+v", stored, err, want)
		}
		if ts, err := s.ListTenants(ctx); err != nil || len(ts) != 1 || ts[0] != want {
			t.Errorf("ListTenants = %+v, %v", ts, err)
		}
	}
	_, err := s.SetTenantLimits(ctx, "acme", TenantLimits{MaxFlows: n(-1)})
	wantErr(t, err, ErrInvalid, "max flows -1 is out of range: use 1 to 1048576, or 0 for the node's default")
	_, err = s.SetTenantLimits(ctx, "acme", TenantLimits{MaxFlowsPerPeer: n(MaxFlowLimit + 1)})
	wantErr(t, err, ErrInvalid, "max flows per peer 1048577 is out of range")
	_, err = s.SetTenantLimits(ctx, "nope", TenantLimits{MaxFlows: n(1)})
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
}

func TestRemoveTenantCascades(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "beta")
	for _, tn := range []string{"acme", "beta"} {
		if _, err := s.AddRoute(ctx, tn, pfx("10.0.0.0/8"), "internet"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPolicy(ctx, tn, "default deny\n", 0); err != nil {
			t.Fatal(err)
		}
	}
	np := newPeer(t, "acme", "router")
	np.Groups, np.Site, np.SitePrefixes = []string{"infra"}, "office", pfxs("10.10.0.0/24")
	mustPeer(t, s, np)
	if _, err := s.AddRoute(ctx, "acme", pfx("10.10.0.0/24"), "site:office"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.RemoveTenant(ctx, "acme"), ErrInvalid, "tenant acme still has 1 peer: remove it first")

	if _, err := s.RemoveRoute(ctx, "acme", pfx("10.10.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemovePeer(ctx, "acme", "router"); err != nil {
		t.Fatal(err)
	}
	if got, want := rowCounts(t, s), "tenants=2 peers=0 peer_groups=0 sites=0 site_prefixes=0 routes=6 policies=2 "; got != want {
		t.Errorf("after RemovePeer: %s, want %s", got, want)
	}
	if err := s.RemoveTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if got, want := rowCounts(t, s), "tenants=1 peers=0 peer_groups=0 sites=0 site_prefixes=0 routes=3 policies=1 "; got != want {
		t.Errorf("after RemoveTenant: %s, want %s", got, want)
	}
	// The other tenant keeps its own.
	if text, _, err := s.Policy(ctx, "beta"); err != nil || text != "default deny\n" {
		t.Errorf("beta's policy = %q, %v", text, err)
	}
	// A new tenant of the same name starts afresh.
	mustTenant(t, s, "acme")
	if text, updated, err := s.Policy(ctx, "acme"); err != nil || text != "" || !updated.IsZero() {
		t.Errorf("policy of the re-created tenant = %q, %v, %v", text, updated, err)
	}
	if rs, err := s.ListRoutes(ctx, "acme"); err != nil || len(rs) != 2 {
		t.Errorf("routes of the re-created tenant = %q, %v", routeStrings(rs), err)
	}
}
