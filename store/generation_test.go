package store

import (
	"context"
	"net/netip"
	"testing"
)

func TestGeneration(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	gen := func() int64 {
		t.Helper()
		g, err := s.Generation(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	last := gen()
	if last < 1 {
		t.Fatalf("generation of a fresh store = %d", last)
	}
	step := func(what string, changes bool, call func() error) {
		t.Helper()
		if err := call(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		g := gen()
		switch {
		case changes && g <= last:
			t.Errorf("%s: generation stayed at %d", what, g)
		case !changes && g != last:
			t.Errorf("%s: generation moved %d → %d without a change", what, last, g)
		}
		last = g
	}
	discard := func(_ any, err error) error { return err }

	// Writes that change something.
	step("AddTenant", true, func() error { return discard(s.AddTenant(ctx, "acme")) })
	step("AddPeer", true, func() error { return discard(s.AddPeer(ctx, newPeer(t, "acme", "router"))) })
	step("SetPeerGroups", true, func() error { return discard(s.SetPeerGroups(ctx, "acme", "router", []string{"infra"})) })
	step("SetPeerSite", true, func() error {
		return discard(s.SetPeerSite(ctx, "acme", "router", "office", pfxs("10.10.0.0/24")))
	})
	step("AddRoute", true, func() error { return discard(s.AddRoute(ctx, "acme", pfx("10.10.0.0/24"), "site:office")) })
	step("AddDNSZone", true, func() error {
		return discard(s.AddDNSZone(ctx, "acme", "corp.example", []netip.AddrPort{netip.MustParseAddrPort("10.10.0.53:53")}))
	})
	step("RemoveDNSZone", true, func() error { return discard(s.RemoveDNSZone(ctx, "acme", "corp.example")) })
	step("RemoveRoute", true, func() error { return discard(s.RemoveRoute(ctx, "acme", pfx("10.10.0.0/24"))) })
	step("SetPolicy", true, func() error { return s.SetPolicy(ctx, "acme", "default deny\n", 0) })
	step("SetTenantSplitTunnel", true, func() error { return discard(s.SetTenantSplitTunnel(ctx, "acme", true)) })
	step("SetTenantDomain", true, func() error { return discard(s.SetTenantDomain(ctx, "acme", "corp.example")) })
	limits := TenantLimits{MaxFlowsPerPeer: new(int), MaxFlows: new(int)}
	*limits.MaxFlowsPerPeer, *limits.MaxFlows = 10, 100
	step("SetTenantLimits", true, func() error { return discard(s.SetTenantLimits(ctx, "acme", limits)) })
	step("SetPeerEnabled", true, func() error { return discard(s.SetPeerEnabled(ctx, "acme", "router", false)) })
	step("SetSetting", true, func() error { return s.SetSetting(ctx, "ui.banner", "hi") })

	// Reads.
	step("reads", false, func() error {
		for _, err := range []error{
			discard(s.Tenant(ctx, "acme")), discard(s.ListTenants(ctx)), discard(s.Peer(ctx, "acme", "router")),
			discard(s.ListPeers(ctx, "")), discard(s.ListPeers(ctx, "acme")), discard(s.Sites(ctx, "")),
			discard(s.ListRoutes(ctx, "")), discard(s.DNSZones(ctx, "")), discard(s.Policies(ctx)), discard(s.CountPeers(ctx, "")),
			discard(s.PeerPrivateKey(ctx, "acme", "router")), discard(s.Setting(ctx, "ui.banner")),
			discard(s.NodePrivateKey(ctx)),
		} {
			if err != nil {
				return err
			}
		}
		_, _, err := s.Policy(ctx, "acme")
		return err
	})
	// Writes that change nothing, and refused writes.
	step("no-op writes", false, func() error {
		for _, err := range []error{
			discard(s.SetPeerGroups(ctx, "acme", "router", []string{"infra"})),
			discard(s.SetPeerSite(ctx, "acme", "router", "office", pfxs("10.10.0.0/24"))),
			s.SetPolicy(ctx, "acme", "default deny\n", 0),
			discard(s.SetTenantSplitTunnel(ctx, "acme", true)),
			discard(s.SetTenantLimits(ctx, "acme", limits)),
			discard(s.SetPeerEnabled(ctx, "acme", "router", false)),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	step("refused writes", false, func() error {
		if _, err := s.AddTenant(ctx, "acme"); err == nil {
			t.Error("AddTenant of an existing tenant succeeded")
		}
		if _, err := s.AddRoute(ctx, "acme", pfx("10.0.0.0/8"), "site:nope"); err == nil {
			t.Error("AddRoute via a missing site succeeded")
		}
		return nil
	})
	step("Reopen", false, func() error {
		if err := s.Close(); err != nil {
			return err
		}
		s = openOpts(t, opts)
		return nil
	})

	// Another process (another Store on the same file) sees this one's changes and the other
	// way round.
	other := openOpts(t, opts)
	step("write by another process", true, func() error { return discard(other.RemovePeer(ctx, "acme", "router")) })
	if g, err := other.Generation(ctx); err != nil || g != last {
		t.Errorf("the other process reads generation %d, %v; want %d", g, err, last)
	}
	step("RemoveTenant", true, func() error { return s.RemoveTenant(ctx, "acme") })
	if g, err := other.Generation(ctx); err != nil || g != last {
		t.Errorf("the other process reads generation %d, %v; want %d", g, err, last)
	}
}
