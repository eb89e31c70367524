package control

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// joinRegionNode joins node name with roles in region ("" for none) and certificate pin
// byte pin, with a backbone whose key is all k (0: no backbone).
func joinRegionNode(t *testing.T, c *Controller, st *store.Store, name, roles, region string, pin, k byte) store.Node {
	t.Helper()
	ctx := context.Background()
	jt, secret, err := st.CreateJoinToken(ctx, store.NewJoinToken{Roles: roles, Region: region, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	red := store.Redemption{TokenID: jt.ID, Secret: secret, Name: name, Pin: [32]byte{pin}}
	if k != 0 {
		red.BackboneEndpoint, red.BackbonePublicKey = "192.0.2."+string('0'+rune(k))+":51821", store.Key{k}
	}
	n, err := st.RedeemJoinToken(ctx, red)
	if err != nil {
		t.Fatal(err)
	}
	c.changed(ctx)
	return n
}

// checkNames names d's checks as the store does, for comparing.
func checkNames(t *testing.T, st *store.Store, d *plane.Desired) []string {
	t.Helper()
	all, err := st.NetChecks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, pc := range d.Checks {
		i := slices.IndexFunc(all, func(c store.NetCheck) bool { return c.ID == pc.ID })
		if i < 0 {
			t.Fatalf("check %d is in no store", pc.ID)
		}
		name := all[i].Name
		if all[i].TenantName != "" {
			name = all[i].TenantName + "/" + name
		}
		out = append(out, name)
	}
	return out
}

// TestChecksAssignment: each node runs the checks its from names, a tenant's only in the
// tenant's regions, and every region's handshake check from the PoPs of the other regions
// that have a backbone key; every node's desired state validates.
func TestChecksAssignment(t *testing.T) {
	ctx := context.Background()
	c, dp, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820",
		Backbone: BackboneConfig{Endpoint: "198.51.100.1:51821", PublicKey: store.Key{99}}})
	for _, r := range []string{"fra", "ams"} {
		if _, err := c.AddRegion(ctx, r, "vpn-"+r+".example.com:51820"); err != nil {
			t.Fatal(err)
		}
	}
	p1 := joinRegionNode(t, c, st, "p1", "pop", "fra", 1, 1)
	p2 := joinRegionNode(t, c, st, "p2", "pop,exit", "ams", 2, 2)
	p3 := joinRegionNode(t, c, st, "p3", "pop", "fra", 3, 0) // no backbone: no handshakes
	x1 := joinRegionNode(t, c, st, "x1", "exit", "", 4, 4)
	for _, tn := range []string{"acme", "beta"} {
		if _, err := c.AddTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SetTenantRegions(ctx, "acme", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	for _, req := range []AddCheckRequest{
		{Name: "resolver", Kind: plane.CheckDNS, Target: "www.example.com"},
		{Name: "web", Kind: plane.CheckHTTP, Target: "https://www.example.com/", From: "region:fra"},
		{Name: "exit-web", Kind: plane.CheckHTTP, Target: "https://www.example.com/", From: "node:x1"},
		{Tenant: "acme", Name: "shop", Kind: plane.CheckHTTP, Target: "https://shop.example.com/", Every: 30 * time.Second},
		{Tenant: "beta", Name: "shop", Kind: plane.CheckHTTP, Target: "https://beta.example.com/", From: "node:controller,region:ams"},
	} {
		if _, err := c.AddCheck(ctx, req); err != nil {
			t.Fatalf("AddCheck %+v: %v", req, err)
		}
	}
	for _, bad := range []struct {
		req  AddCheckRequest
		want string
	}{
		{AddCheckRequest{Name: "x", Kind: plane.CheckDNS, Target: "a.example", From: "region:par"}, "there is no region par"},
		{AddCheckRequest{Name: "x", Kind: plane.CheckDNS, Target: "a.example", From: "node:p9"}, "there is no node p9"},
		{AddCheckRequest{Tenant: "acme", Name: "x", Kind: plane.CheckDNS, Target: "a.example", From: "region:ams"}, "tenant acme may not use region ams"},
		{AddCheckRequest{Tenant: "acme", Name: "x", Kind: plane.CheckHTTP, Target: "http://10.1.1.1/"}, "not a public address"},
	} {
		if _, err := c.AddCheck(ctx, bad.req); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("AddCheck %+v = %v, want ErrInvalid with %q", bad.req, err, bad.want)
		}
	}

	want := map[string][]string{
		"controller": {"region:ams", "region:fra", "resolver", "beta/shop"},
		"p1":         {"region:ams", "region:local", "resolver", "web", "acme/shop"},
		"p2":         {"region:fra", "region:local", "resolver", "beta/shop"},
		"p3":         {"resolver", "web", "acme/shop"},
		"x1":         {"exit-web"},
	}
	if got := checkNames(t, st, dp.Desired()); !reflect.DeepEqual(got, want["controller"]) {
		t.Errorf("the controller's own node runs %q, want %q", got, want["controller"])
	}
	for _, n := range []store.Node{p1, p2, p3, x1} {
		d, err := c.NodeDesired(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Validate(); err != nil {
			t.Errorf("%s's state: %v", n.Name, err)
		}
		if got := checkNames(t, st, d); !reflect.DeepEqual(got, want[n.Name]) {
			t.Errorf("%s runs %q, want %q", n.Name, got, want[n.Name])
		}
	}
	d, _ := c.NodeDesired(ctx, p1)
	fra, _ := st.Region(ctx, "fra")
	for _, pc := range d.Checks {
		if pc.Kind == plane.CheckHandshake && pc.Target == "vpn-fra.example.com:51820" {
			t.Errorf("p1 checks its own region: %+v", pc)
		}
		if pc.Kind == plane.CheckHandshake && pc.Target == "vpn.example.com:51820" && pc.PublicKey != st.NodePublicKey() {
			t.Errorf("the home region's check is not for the node key: %+v", pc)
		}
	}
	own := dp.Desired()
	if i := slices.IndexFunc(own.Checks, func(pc plane.Check) bool { return pc.Target == "vpn-fra.example.com:51820" }); i < 0 || own.Checks[i].PublicKey != fra.PublicKey {
		t.Errorf("the controller's check of fra: %+v", own.Checks)
	}

	web, err := c.Check(ctx, "", "web")
	if err != nil || !reflect.DeepEqual(web.Runners, []string{"p1", "p3"}) || web.Summary.Day.Uptime() != -1 {
		t.Errorf("Check(web): %+v, %v", web, err)
	}
	all, err := c.Checks(ctx, "")
	if err != nil || len(all) != 8 || all[0].Name != "region:ams" {
		t.Errorf("Checks: %d, %v", len(all), err)
	}
	if acme, err := c.Checks(ctx, "acme"); err != nil || len(acme) != 1 || acme[0].Name != "shop" || acme[0].TenantName != "acme" {
		t.Errorf("Checks(acme): %+v, %v", acme, err)
	}
	if _, err := c.Checks(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Checks(nope): %v", err)
	}

	// A removed check leaves every node's state.
	if err := c.RemoveCheck(ctx, "", "resolver"); err != nil {
		t.Fatal(err)
	}
	if got := checkNames(t, st, dp.Desired()); slices.Contains(got, "resolver") {
		t.Errorf("after removal the controller runs %q", got)
	}
}

// TestCheckResultsKept: a node's results reach the store, those of checks it was not given
// do not; a minute reported again replaces what it said; the summary counts the day's runs,
// its percentiles and each node's latest minute.
func TestCheckResultsKept(t *testing.T) {
	ctx := context.Background()
	c, _, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820"})
	p1 := joinRegionNode(t, c, st, "p1", "pop", "local", 1, 1)
	resolver, err := c.AddCheck(ctx, AddCheckRequest{Name: "resolver", Kind: plane.CheckDNS, Target: "www.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.AddCheck(ctx, AddCheckRequest{Name: "other", Kind: plane.CheckDNS, Target: "www.example.com", From: "node:controller"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Minute)
	ms := time.Millisecond
	rep := &plane.Report{Checks: []plane.CheckResult{
		{Check: resolver.ID, Minute: now, OK: 1, LatencyP50: 30 * ms, LatencyMax: 30 * ms, Detail: "192.0.2.10"},
		{Check: resolver.ID, Minute: now.Add(-time.Minute), OK: 1, LatencyP50: 10 * ms, LatencyMax: 10 * ms},
		{Check: resolver.ID, Minute: now.Add(-2 * time.Minute), Failed: 1, Error: "no answer in time"},
		{Check: other.ID, Minute: now, OK: 1}, // not p1's to report
	}}
	c.NodeReported(p1, rep, 0)
	rep.Checks[0].OK, rep.Checks[0].LatencyMax = 2, 40*ms // the current minute grew
	c.NodeReported(p1, rep, 0)
	var got CheckInfo
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, err = c.Check(ctx, "", "resolver"); err != nil {
			t.Fatal(err)
		}
		if got.Summary.Day.OK == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := got.Summary
	if s.Day.OK != 3 || s.Day.Failed != 1 || s.Day.Uptime() != 75 || s.Day.P50 != 10*ms || s.Day.P95 != 30*ms || s.Week != s.Day {
		t.Errorf("summary: %+v", s)
	}
	if len(s.Latest) != 1 || s.Latest[0].Node != "p1" || s.Latest[0].Detail != "192.0.2.10" || s.Latest[0].LatencyMax != 40*ms {
		t.Errorf("latest: %+v", s.Latest)
	}
	if rs, _ := st.CheckResults(ctx, other.ID, time.Time{}); len(rs) != 0 {
		t.Errorf("p1 reported for a check it does not run: %+v", rs)
	}
	bins, err := c.CheckHistory(ctx, resolver.ID, now.Add(-time.Hour), 10*time.Minute)
	if err != nil || len(bins) == 0 {
		t.Errorf("CheckHistory: %+v, %v", bins, err)
	}

	// Events: the first whole minute seen failed (down), the next passed (back); the
	// current minute is not judged yet, and a minute reported again is judged once.
	c.NodeReported(p1, rep, 0)
	var es []store.Event
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if es, _, err = c.Events(ctx, store.EventQuery{Kind: "check"}); err != nil {
			t.Fatal(err)
		}
		if len(es) >= 2 {
			break
		}
	}
	if len(es) != 2 || es[1].Kind != plane.EventCheckDown || es[0].Kind != plane.EventCheckBack ||
		es[1].Node != "p1" || es[1].Subject != "check:resolver" || es[1].Message != "check resolver fails from p1: no answer in time" ||
		es[0].Message != "check resolver passes again from p1" {
		t.Errorf("events: %+v", es)
	}
}

func TestPercentiles(t *testing.T) {
	ms := time.Millisecond
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*ms)
	}
	if p50, p95 := percentiles(ds); p50 != 50*ms || p95 != 95*ms {
		t.Errorf("1..100 ms: p50 %s, p95 %s", p50, p95)
	}
	if p50, p95 := percentiles([]time.Duration{7 * ms}); p50 != 7*ms || p95 != 7*ms {
		t.Errorf("one: %s, %s", p50, p95)
	}
	if p50, p95 := percentiles(nil); p50 != 0 || p95 != 0 {
		t.Errorf("none: %s, %s", p50, p95)
	}
}

// TestNodeDesiredPublishesAJoin: a node that joined since the last publication is published
// when it first asks for its state, so that the other nodes know it (and answer its
// handshake checks) without waiting for another change.
func TestNodeDesiredPublishesAJoin(t *testing.T) {
	ctx := context.Background()
	c, dp, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820",
		Backbone: BackboneConfig{Endpoint: "198.51.100.1:51821", PublicKey: store.Key{99}}})
	jt, secret, err := st.CreateJoinToken(ctx, store.NewJoinToken{Roles: "pop", Region: "local", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := st.RedeemJoinToken(ctx, store.Redemption{TokenID: jt.ID, Secret: secret, Name: "p1", Pin: [32]byte{1},
		BackboneEndpoint: "192.0.2.1:51821", BackbonePublicKey: store.Key{1}})
	if err != nil {
		t.Fatal(err)
	}
	if nodes := dp.Desired().Nodes; len(nodes) != 0 {
		t.Fatalf("published before the node synced: %v", nodeNames(nodes))
	}
	if _, err := c.NodeDesired(ctx, n); err != nil {
		t.Fatal(err)
	}
	if nodes := dp.Desired().Nodes; len(nodes) != 1 || nodes[0].Name != "p1" {
		t.Errorf("the controller's own state after p1 synced: nodes %v", nodeNames(nodes))
	}
}
