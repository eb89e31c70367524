package store

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// TestSnapshot: a snapshot holds what the separate reads return, with the generation.
func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, tn := range []string{"bravo", "acme"} {
		if _, err := s.AddTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []NewPeer{newPeer(t, "bravo", "phone"), newPeer(t, "acme", "router"), newPeer(t, "acme", "laptop")} {
		if _, err := s.AddPeer(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SetPeerSite(ctx, "acme", "router", "office", pfxs("10.10.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRoute(ctx, "acme", pfx("10.10.0.0/24"), "site:office"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy(ctx, "acme", "default deny\n", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDNSZone(ctx, "acme", "corp.example", aps("10.10.0.53:53")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRegion(ctx, "fra", "vpn-fra.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTenantRegions(ctx, "acme", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetDNSUpstreams(ctx, "acme", []string{"9.9.9.9"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnableDNSLog(ctx, "bravo", 0); err != nil {
		t.Fatal(err)
	}

	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := s.Generation(ctx)
	tenants, _ := s.ListTenants(ctx)
	peers, _ := s.ListPeers(ctx, "")
	routes, _ := s.ListRoutes(ctx, "")
	policies, _ := s.Policies(ctx)
	regions, _ := s.Regions(ctx)
	nodes, _ := s.Nodes(ctx)
	checks, _ := s.NetChecks(ctx)
	zones, _ := s.DNSZones(ctx, "")
	acme, _ := s.Tenant(ctx, "acme")
	ups, _ := s.DNSUpstreams(ctx, "acme")
	bravo, _ := s.Tenant(ctx, "bravo")
	bravoLog, _ := s.DNSLogSettings(ctx, "bravo")
	want := Snapshot{Generation: gen, Tenants: tenants, Peers: peers, Routes: routes, Policies: policies,
		Regions: regions, TenantRegions: map[int64][]string{acme.ID: {"fra"}}, Nodes: nodes, Checks: checks, DNSZones: zones,
		DNSUpstreams: map[int64][]DNSUpstream{acme.ID: ups}, DNSLogs: map[int64]DNSLogSettings{bravo.ID: bravoLog}}
	if !reflect.DeepEqual(snap, want) {
		got, _ := json.MarshalIndent(snap, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("Snapshot:\n%s\nwant\n%s", got, w)
	}
	if len(snap.Peers) != 3 || snap.Peers[0].TenantName != "acme" || len(snap.Routes) != 5 || len(snap.Policies) != 1 || len(snap.Checks) != 1 || len(snap.DNSZones) != 1 {
		t.Errorf("Snapshot holds %d peers (first of %q), %d routes, %d policies", len(snap.Peers), snap.Peers[0].TenantName, len(snap.Routes), len(snap.Policies))
	}
}

// TestSnapshotIsOneRead: while peers are added one transaction at a time, every snapshot holds
// exactly the peers its generation counts, never a peer of a later generation or one short.
func TestSnapshotIsOneRead(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	base, _ := s.Generation(ctx)
	const peers = 40
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range peers {
			if _, err := s.AddPeer(ctx, newPeer(t, "acme", fmt.Sprintf("p%02d", i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		snap, err := s.Snapshot(ctx)
		if err != nil {
			t.Error(err)
			<-done
			return
		}
		if got := int64(len(snap.Peers)); got != snap.Generation-base {
			t.Errorf("snapshot of generation %d (base %d) holds %d peers", snap.Generation, base, got)
			<-done
			return
		}
		select {
		case <-done:
			return
		default:
		}
	}
}
