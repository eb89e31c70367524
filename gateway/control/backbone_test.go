package control

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// joinTestNode joins node name with roles and a backbone to st.
func joinTestNode(t *testing.T, c *Controller, st *store.Store, name, roles string, pin byte) store.Node {
	t.Helper()
	ctx := context.Background()
	jt, secret, err := st.CreateJoinToken(ctx, store.NewJoinToken{Roles: roles, Region: "local", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := st.RedeemJoinToken(ctx, store.Redemption{TokenID: jt.ID, Secret: secret, Name: name, Pin: [32]byte{pin},
		BackboneEndpoint: "192.0.2." + string('0'+rune(pin)) + ":51821", BackbonePublicKey: store.Key{pin}})
	if err != nil {
		t.Fatal(err)
	}
	c.changed(ctx) // as the node sync's join does
	return n
}

func nodeNames(ns []plane.Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

// TestNodeDesiredBackbone: a node's desired state names it (store ID + 1) and every other
// node with a backbone, the controller's own included; a removed node is in none at the
// next publication; where peers are follows the latest handshake of two nodes' reports.
func TestNodeDesiredBackbone(t *testing.T) {
	ctx := context.Background()
	c, dp, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820",
		Backbone: BackboneConfig{Endpoint: "198.51.100.1:51821", PublicKey: store.Key{99}}})
	if d := dp.Desired(); d.Self != plane.ControllerNode || len(d.Nodes) != 0 {
		t.Errorf("the controller's own state: self %d, nodes %v", d.Self, d.Nodes)
	}
	p1 := joinTestNode(t, c, st, "p1", "pop", 1)
	x1 := joinTestNode(t, c, st, "x1", "exit", 2)
	d, err := c.NodeDesired(ctx, p1)
	if err != nil {
		t.Fatal(err)
	}
	if d.Self != uint32(p1.ID)+1 || !reflect.DeepEqual(nodeNames(d.Nodes), []string{"controller", "x1"}) {
		t.Errorf("p1's state: self %d, nodes %v", d.Self, nodeNames(d.Nodes))
	}
	if want := (plane.Node{ID: uint32(x1.ID) + 1, Name: "x1", Roles: []string{"exit"}, Region: "local", BackboneEndpoint: "192.0.2.2:51821", BackboneKey: store.Key{2}}); !reflect.DeepEqual(d.Nodes[1], want) {
		t.Errorf("x1 in p1's state: %+v, want %+v", d.Nodes[1], want)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("p1's state does not validate: %v", err)
	}
	if own := dp.Desired(); !reflect.DeepEqual(nodeNames(own.Nodes), []string{"p1", "x1"}) || own.Validate() != nil {
		t.Errorf("the controller's own nodes: %v (%v)", nodeNames(own.Nodes), own.Validate())
	}

	// A peer handshakes at p1, then later at x1: the later handshake wins, whatever order
	// the reports come in.
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	peer, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	report := func(at time.Time) *plane.Report {
		return &plane.Report{Peers: []plane.PeerState{{PublicKey: peer.PublicKey, LastHandshake: at}}}
	}
	c.NodeReported(x1, report(t0.Add(time.Second)), 0)
	c.NodeReported(p1, report(t0), 0) // older: ignored
	ch := c.Changed()
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("where the peer is was not published")
	}
	d, _ = c.NodeDesired(ctx, p1)
	if want := []plane.PeerNode{{Peer: peer.ID, Node: uint32(x1.ID) + 1}}; !reflect.DeepEqual(d.PeerNodes, want) || d.PeerNodesVersion == 0 {
		t.Errorf("PeerNodes %v (version %d), want %v", d.PeerNodes, d.PeerNodesVersion, want)
	}
	// p1's clock is 5 s ahead: its handshake 3 s later by its clock is 2 s earlier in fact.
	c.NodeReported(p1, report(t0.Add(3*time.Second)), 5*time.Second)
	if d, _ = c.NodeDesired(ctx, p1); d.PeerNodes[0].Node != uint32(x1.ID)+1 {
		t.Errorf("a handshake earlier in the controller's time moved the peer: %v", d.PeerNodes)
	}
	c.NodeReported(p1, report(t0.Add(2*time.Second)), 0)
	if d, _ = c.NodeDesired(ctx, p1); d.PeerNodes[0].Node != uint32(p1.ID)+1 || d.Validate() != nil {
		t.Errorf("the later handshake at p1 did not win: %v (%v)", d.PeerNodes, d.Validate())
	}

	// x1 is removed: it is in no state at the next publication, and no peer is placed there.
	c.NodeReported(x1, report(t0.Add(4*time.Second)), 0)
	if _, err := c.RemoveNode(ctx, "x1"); err != nil {
		t.Fatal(err)
	}
	d, _ = c.NodeDesired(ctx, p1)
	if !reflect.DeepEqual(nodeNames(d.Nodes), []string{"controller"}) || len(d.PeerNodes) != 0 || d.Validate() != nil {
		t.Errorf("after x1's removal p1's state: nodes %v, peer nodes %v (%v)", nodeNames(d.Nodes), d.PeerNodes, d.Validate())
	}
	if own := dp.Desired(); !reflect.DeepEqual(nodeNames(own.Nodes), []string{"p1"}) {
		t.Errorf("after x1's removal the controller's nodes: %v", nodeNames(own.Nodes))
	}
}

// TestNoBackboneDesired: without a backbone the controller's own state names no nodes, as
// before the backbone.
func TestNoBackboneDesired(t *testing.T) {
	c, dp, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820"})
	joinTestNode(t, c, st, "p1", "pop", 1)
	if d := dp.Desired(); d.Self != 0 || d.Nodes != nil || d.PeerNodes != nil {
		t.Errorf("own state without a backbone: self %d, nodes %v, peer nodes %v", d.Self, d.Nodes, d.PeerNodes)
	}
}
