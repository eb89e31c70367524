package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// TestControllerPublishes: after a change the data plane has the whole desired state of the
// store's generation, every field carried over.
func TestControllerPublishes(t *testing.T) {
	ctx := context.Background()
	c, dp, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820"})
	if d := dp.Desired(); d == nil || len(d.Tenants) != 0 || d.Overlay.Gateway4 != netip.MustParseAddr("100.64.0.1") {
		t.Fatalf("desired state after Start: %+v", d)
	}
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "router", Groups: []string{"infra"}, Site: "office",
		SitePrefixes: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}}); err != nil {
		t.Fatal(err)
	}
	expiry := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	if _, err := c.SetPeerExpiry(ctx, "acme", "router", &expiry); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddRoute(ctx, "acme", netip.MustParsePrefix("10.10.0.0/24"), "site:office"); err != nil {
		t.Fatal(err)
	}
	const policy = "default deny\nallow any -> site:office\n"
	if _, _, err := c.SetPolicy(ctx, "acme", policy); err != nil {
		t.Fatal(err)
	}
	n := 16
	if _, err := c.SetTenantLimits(ctx, "acme", store.TenantLimits{MaxFlowsPerPeer: &n}); err != nil {
		t.Fatal(err)
	}

	gen, _ := st.Generation(ctx)
	p, _ := st.Peer(ctx, "acme", "router")
	tn, _ := st.Tenant(ctx, "acme")
	d := dp.Desired()
	if d.Generation != gen {
		t.Errorf("desired generation %d, store %d", d.Generation, gen)
	}
	if want := []plane.Tenant{{ID: tn.ID, Name: "acme", Policy: policy, MaxFlowsPerPeer: 16}}; !reflect.DeepEqual(d.Tenants, want) {
		t.Errorf("tenants %+v, want %+v", d.Tenants, want)
	}
	want := []plane.Peer{{ID: p.ID, Tenant: tn.ID, Name: "router", PublicKey: p.PublicKey, IPv4: p.IPv4, IPv6: p.IPv6, Enabled: true,
		ExpiresAt: expiry, Groups: []string{"infra"}, Site: "office", SitePrefixes: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}}}
	if !reflect.DeepEqual(d.Peers, want) {
		t.Errorf("peers %+v, want %+v", d.Peers, want)
	}
	if len(d.Routes) != 3 || d.Routes[0] != (plane.Route{Tenant: tn.ID, Prefix: netip.MustParsePrefix("10.10.0.0/24"), Via: "site:office"}) {
		t.Errorf("routes %+v", d.Routes)
	}
	if st, err := c.Status(ctx); err != nil || st.Generation != gen || st.Applied != gen || st.ApplyError != "" {
		t.Errorf("Status: generation %d, applied %d, error %q, %v", st.Generation, st.Applied, st.ApplyError, err)
	}
}

// TestControllerChangeIsDoneWhenApplyFails: a committed change is a done change. When the
// data plane does not apply it, the call still succeeds, Status says why, and the state is
// published again until it applies; nobody retries a change that is stored (which would fail
// with "exists").
func TestControllerChangeIsDoneWhenApplyFails(t *testing.T) {
	ctx := context.Background()
	c, dp, _ := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820", RetryEvery: 20 * time.Millisecond})
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	dp.Fail(errors.New("tenant acme: configure device: too many open files"))
	p, conf, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil || p.Name != "laptop" || !strings.Contains(conf, "PrivateKey = ") {
		t.Fatalf("AddPeer while the data plane fails = %+v, %v", p, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Applied >= st.Generation || !strings.Contains(st.ApplyError, "too many open files") || st.PeersTotal != 1 {
		t.Errorf("Status while failing: generation %d, applied %d, error %q, %d peers, %v", st.Generation, st.Applied, st.ApplyError, st.PeersTotal, err)
	}
	if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "laptop"}); !errors.Is(err, store.ErrExists) {
		t.Errorf("adding the stored peer again: %v, want ErrExists", err)
	}
	if _, err := c.SetPeerEnabled(ctx, "acme", "laptop", false); err != nil {
		t.Errorf("a change while the data plane fails: %v", err)
	}

	before := dp.Applies()
	dp.Fail(nil)
	for deadline := time.Now().Add(10 * time.Second); dp.Desired() == nil || len(dp.Desired().Peers) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the stored state was not published again (%d applies since the failure ended)", dp.Applies()-before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := dp.Desired().Peers[0]; p.Name != "laptop" || p.Enabled {
		t.Errorf("published peer %+v, want laptop disabled", p)
	}
	st, _ = c.Status(ctx)
	if st.ApplyError != "" || st.Applied != st.Generation {
		t.Errorf("Status after the retry: generation %d, applied %d, error %q", st.Generation, st.Applied, st.ApplyError)
	}
}

// TestControllerStatus: Status is the controller's facts (peers, tenants, key, endpoint,
// addresses) with the node's report (node, live state, counters).
func TestControllerStatus(t *testing.T) {
	ctx := context.Background()
	c, dp, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820", MTU: 1380})
	for _, tn := range []string{"bravo", "acme"} {
		if _, err := c.AddTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	var keys []store.Key
	for _, p := range []AddPeerRequest{{Tenant: "acme", Name: "a1"}, {Tenant: "acme", Name: "a2"}, {Tenant: "acme", Name: "off"}, {Tenant: "bravo", Name: "b1"}} {
		pi, _, err := c.AddPeer(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, pi.PublicKey)
	}
	if _, err := c.SetPeerEnabled(ctx, "acme", "off", false); err != nil {
		t.Fatal(err)
	}
	acme, _ := st.Tenant(ctx, "acme")
	started := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	dp.SetReport(plane.Report{
		Node: plane.NodeStatus{Name: "pop-1", Version: "1.2", Region: "fra", StartedAt: started, Interface: "popgate0",
			UAPISocket: "/var/run/wireguard/popgate0.sock", ListenPort: 51820, MTU: 1380, ExitMode: "userspace",
			Drops: map[string]uint64{"no_peer": 2}, ExitSockets: 3, ExitSocketBudget: 100,
			// The node's totals: more than its peers', for a peer removed since.
			Traffic: plane.Traffic{RxBytes: 5010, TxBytes: 20, RxPackets: 13, TxPackets: 2}},
		Peers: []plane.PeerState{
			{PublicKey: keys[0], Online: true, Endpoint: "192.0.2.1:1000", RxBytes: 10, TxBytes: 20, RxPackets: 1, TxPackets: 2},
			{PublicKey: keys[1], RxPackets: 5},
			// A disabled peer's session (the node has not caught up) counts for nothing live;
			// its counters stay.
			{PublicKey: keys[2], Online: true, RxBytes: 1000, RxPackets: 7},
		},
		Tenants: []plane.TenantState{{ID: acme.ID, Traffic: plane.Traffic{RxBytes: 5010, TxBytes: 20, RxPackets: 13, TxPackets: 2}, Flows: 4, ExitUDP: 1, Drops: map[string]uint64{"no_route": 1},
			Rules: []plane.RuleStat{{Line: 0, Rule: "default allow", Hits: 3}}}},
	})
	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.NodeName != "pop-1" || s.Version != "1.2" || s.Region != "fra" || !s.StartedAt.Equal(started) || s.Interface != "popgate0" ||
		s.ExitMode != "userspace" || s.UAPISocket == "" || s.ListenPort != 51820 || s.ExitSockets != 3 || s.ExitSocketBudget != 100 || s.Drops["no_peer"] != 2 {
		t.Errorf("the node's part: %+v", s)
	}
	if s.PublicKey != st.NodePublicKey() || s.PublicEndpoint != "vpn.example.com:51820" || s.MTU != 1380 ||
		fmt.Sprint(s.Addresses) != "[100.64.0.1 "+s.Addresses[1].String()+"]" || !s.Addresses[1].Is6() {
		t.Errorf("the controller's part: %+v", s)
	}
	if s.PeersTotal != 4 || s.PeersEnabled != 3 || s.PeersOnline != 1 || s.RxBytes != 5010 || s.TxBytes != 20 {
		t.Errorf("peers: total %d, enabled %d, online %d, rx %d, tx %d", s.PeersTotal, s.PeersEnabled, s.PeersOnline, s.RxBytes, s.TxBytes)
	}
	if len(s.Tenants) != 2 || s.Tenants[0].Name != "acme" || s.Tenants[1].Name != "bravo" {
		t.Fatalf("tenants %+v", s.Tenants)
	}
	a := s.Tenants[0]
	if a.Peers != 3 || a.Online != 1 || a.RxBytes != 5010 || a.TxBytes != 20 || a.RxPackets != 13 || a.TxPackets != 2 || a.Flows != 4 || a.ExitUDP != 1 || a.Drops["no_route"] != 1 ||
		len(a.Rules) != 1 || a.Rules[0].Hits != 3 || a.MaxFlowsPerPeer != plane.DefaultMaxFlowsPerPeer {
		t.Errorf("acme: %+v", a)
	}
	if b := s.Tenants[1]; b.Peers != 1 || b.Online != 0 || len(b.Drops) != 0 || b.Rules != nil {
		t.Errorf("bravo: %+v", b)
	}
	if pi, err := c.Peer(ctx, "acme", "off"); err != nil || pi.Online || pi.RxBytes != 1000 || pi.RxPackets != 7 {
		t.Errorf("the disabled peer: %+v, %v", pi, err)
	}
	// Peer asks the data plane about that one peer (no whole report) and says of it what a
	// listing says.
	list, err := c.ListPeers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	reports := dp.Reports()
	for _, want := range list {
		got, err := c.Peer(ctx, want.TenantName, want.Name)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Peer(%s, %s) = %+v, %v\nthe listing has %+v", want.TenantName, want.Name, got, err, want)
		}
	}
	if n := dp.Reports() - reports; n != 0 {
		t.Errorf("Peer built %d whole reports for %d peers, want none", n, len(list))
	}
}
