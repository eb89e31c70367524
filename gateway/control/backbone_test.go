package control

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
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
	// An exit links only to PoPs (the controller's node is one): not to another exit.
	x9 := joinTestNode(t, c, st, "x9", "exit", 9)
	if d, _ := c.NodeDesired(ctx, x9); !reflect.DeepEqual(nodeNames(d.Nodes), []string{"controller", "p1"}) {
		t.Errorf("exit x9's nodes: %v, want the PoPs only", nodeNames(d.Nodes))
	}
	if d, _ := c.NodeDesired(ctx, p1); !reflect.DeepEqual(nodeNames(d.Nodes), []string{"controller", "x1", "x9"}) {
		t.Errorf("p1's nodes with a second exit: %v", nodeNames(d.Nodes))
	}
	if _, err := c.RemoveNode(ctx, "x9"); err != nil {
		t.Fatal(err)
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

	// A removed peer is forgotten at the next report.
	if err := c.RemovePeer(ctx, "acme", "laptop"); err != nil {
		t.Fatal(err)
	}
	c.NodeReported(p1, &plane.Report{Peers: []plane.PeerState{{PublicKey: store.Key{42}, LastHandshake: t0}}}, 0)
	c.where.mu.Lock()
	left := len(c.where.at)
	c.where.mu.Unlock()
	if left != 0 {
		t.Errorf("%d placements kept after the peer's removal", left)
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

// TestRoutesWithExits: a route's exits carry the state the nodes report of their links to
// them, and the first one up is in use; "unknown" until a node reports a link.
func TestRoutesWithExits(t *testing.T) {
	ctx := context.Background()
	c, _, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820"})
	p1 := joinTestNode(t, c, st, "p1", "pop", 1)
	p2 := joinTestNode(t, c, st, "p2", "pop", 2)
	x1 := joinTestNode(t, c, st, "x1", "exit", 3)
	joinTestNode(t, c, st, "x2", "exit", 4)
	joinTestNode(t, c, st, "x3", "exit", 5)
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddRoute(ctx, "acme", netip.MustParsePrefix("10.0.0.0/8"), "exit:x1,exit:x2,exit:x3"); err != nil {
		t.Fatal(err)
	}
	_, err := c.AddRoute(ctx, "acme", netip.MustParsePrefix("10.1.0.0/16"), "exit:p1")
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), `node "p1" is not an exit`) {
		t.Errorf("a route via a PoP: %v", err)
	}
	id := func(n store.Node) uint32 { return uint32(n.ID) + 1 }
	reportLinks := func(n store.Node, links ...plane.LinkState) {
		b, _ := json.Marshal(map[string]any{"links": links})
		if err := st.RecordNodeReport(ctx, n.ID, store.NodeReport{At: time.Now(), Report: string(b)}); err != nil {
			t.Fatal(err)
		}
	}
	states := func() string {
		rs, err := c.RoutesWithExits(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range rs[0].Exits {
			s := e.Name + "=" + e.State
			if e.InUse {
				s += "*"
			}
			out = append(out, s)
		}
		return strings.Join(out, " ")
	}
	if got, want := states(), "x1=unknown x2=unknown x3=unknown"; got != want {
		t.Errorf("before reports: %s, want %s", got, want)
	}
	x2 := uint32(x1.ID) + 2
	reportLinks(p1, plane.LinkState{Node: id(x1), State: plane.LinkDown}, plane.LinkState{Node: x2, State: plane.LinkUp})
	reportLinks(p2, plane.LinkState{Node: id(x1), State: plane.LinkDown}, plane.LinkState{Node: x2, State: plane.LinkDown})
	if got, want := states(), "x1=down x2=partial* x3=unknown"; got != want {
		t.Errorf("x1 down: %s, want %s", got, want)
	}
	reportLinks(p2, plane.LinkState{Node: id(x1), State: plane.LinkUp})
	reportLinks(p1, plane.LinkState{Node: id(x1), State: plane.LinkUp, RTT: time.Millisecond})
	if got, want := states(), "x1=up* x2=unknown x3=unknown"; got != want {
		t.Errorf("x1 up: %s, want %s", got, want)
	}
	ns, _ := c.Nodes(ctx)
	if ns[0].Name != "p1" || len(ns[0].Links) != 1 || ns[0].Links[0].RTT != time.Millisecond {
		t.Errorf("node list: %+v", ns[0])
	}
	// Removing x1 drops it from the route.
	dropped, err := c.RemoveNode(ctx, "x1")
	if err != nil || len(dropped) != 1 || dropped[0].Route.Via != "exit:x2,exit:x3" || dropped[0].Removed {
		t.Errorf("RemoveNode = %+v, %v", dropped, err)
	}
}
