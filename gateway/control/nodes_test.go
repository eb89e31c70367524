package control

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/nodesync"
	"github.com/popgate/popgate/store"
)

func TestNodeOperations(t *testing.T) {
	ctx := context.Background()
	// Without Config.Nodes the controller takes no nodes.
	plain, _ := newTestController(t)
	if _, _, err := plain.NodeToken(ctx, "pop", "", "", 0); !errors.Is(err, ErrNoNodes) || !strings.Contains(err.Error(), "--controller-addr") {
		t.Fatalf("NodeToken without nodes: %v", err)
	}

	pin := nodesync.Pin{7}
	links := map[string]nodesync.Link{}
	c, _, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820",
		Nodes: &NodesConfig{Addr: "192.0.2.10:7443", Pin: pin, Links: func() map[string]nodesync.Link { return links }}})
	line, jt, err := c.NodeToken(ctx, "pop", "", "p1", 0)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := nodesync.ParseToken(line, time.Now())
	if err != nil || tok.Addr != "192.0.2.10:7443" || tok.Pin != pin || tok.ID != jt.ID || jt.Region != "local" || jt.Name != "p1" {
		t.Fatalf("token %+v (%+v), %v", tok, jt, err)
	}
	if d := time.Until(tok.Expires); d < 59*time.Minute || d > time.Hour {
		t.Errorf("token expires in %s", d)
	}
	for _, tc := range []struct {
		roles, region string
		life          time.Duration
		want          string
	}{
		{"pop", "nowhere", 0, "nowhere"},
		{"router", "", 0, "give pop, exit or pop,exit"},
		{"pop", "", 30 * time.Second, "from a minute to 7 days"},
		{"pop", "", 8 * 24 * time.Hour, "from a minute to 7 days"},
	} {
		if _, _, err := c.NodeToken(ctx, tc.roles, tc.region, "", tc.life); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NodeToken(%q, %q, %s) = %v, want %q", tc.roles, tc.region, tc.life, err, tc.want)
		}
	}
	if _, x, err := c.NodeToken(ctx, "exit", "", "", 0); err != nil || x.Region != "" {
		t.Errorf("an exit's token: %+v, %v", x, err)
	}

	// A node joins; the list shows it with its link.
	n, err := st.RedeemJoinToken(ctx, store.Redemption{TokenID: tok.ID, Secret: tok.Secret, Pin: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	links["p1"] = nodesync.Link{Since: time.Now(), Applied: 3}
	ns, err := c.Nodes(ctx)
	if err != nil || len(ns) != 1 || !ns[0].Connected || ns[0].AppliedGeneration != 3 || ns[0].Current == 0 {
		t.Fatalf("Nodes = %+v, %v", ns, err)
	}

	// Its desired state is its region's, with the node key for the controller's own region.
	d, err := c.NodeDesired(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := st.NodePrivateKey(ctx)
	if d.RegionKey == nil || *d.RegionKey != key || d.Region != "local" {
		t.Errorf("NodeDesired: region %q key %v", d.Region, d.RegionKey)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("NodeDesired does not validate: %v", err)
	}

	// A PoP of another region gets that region's key.
	if _, err := c.AddRegion(ctx, "fra", "vpn-fra.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	fraLine, fraTok, err := c.NodeToken(ctx, "pop", "fra", "", 0)
	if err != nil || fraTok.Region != "fra" {
		t.Fatalf("a token for region fra: %+v, %v", fraTok, err)
	}
	ft, _ := nodesync.ParseToken(fraLine, time.Now())
	fraNode, err := st.RedeemJoinToken(ctx, store.Redemption{TokenID: ft.ID, Secret: ft.Secret, Name: "f1", Pin: [32]byte{2}})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := c.NodeDesired(ctx, fraNode)
	if err != nil {
		t.Fatal(err)
	}
	fraKey, _ := st.RegionPrivateKey(ctx, "fra")
	if fd.Region != "fra" || fd.RegionKey == nil || *fd.RegionKey != fraKey || fraKey == key {
		t.Errorf("NodeDesired of a fra PoP: region %q key %v", fd.Region, fd.RegionKey)
	}
	if err := fd.Validate(); err != nil {
		t.Errorf("NodeDesired of a fra PoP does not validate: %v", err)
	}

	// A change and a removal publish: Changed closes.
	ch := c.Changed()
	if _, err := c.RemoveNode(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Error("RemoveNode did not publish")
	}
	if _, err := c.RemoveNode(ctx, "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing again: %v", err)
	}
}
