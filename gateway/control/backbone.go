package control

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// BackboneConfig is the controller's own node's backbone (issue 14), for the desired state
// of the other nodes (Node plane.ControllerNode) and its own. The zero value: the controller
// runs no backbone, and its own desired state is as without one.
type BackboneConfig struct {
	// Endpoint is where the other nodes reach its backbone ("host:port"); PublicKey its
	// backbone's WireGuard public key. Both are required for a backbone.
	Endpoint  string
	PublicKey store.Key
	// Name is its name as other nodes know it. Default "controller".
	Name string
	// Roles are the controller's node roles among plane.RolePoP and plane.RoleExit.
	// Default both (the appliance).
	Roles []string
}

// on reports whether the controller runs a backbone.
func (b BackboneConfig) on() bool { return b.Endpoint != "" && !b.PublicKey.IsZero() }

// PeerNodesEvery bounds how often a change of where peers are is published: changes within
// it go out together. A client switching PoP is followed within it plus a report's way.
const PeerNodesEvery = 200 * time.Millisecond

// nodeID is the backbone ID of a joined node.
func nodeID(n store.Node) uint32 { return uint32(n.ID) + 1 }

// nodeRoles splits a store node's roles.
func nodeRoles(roles string) []string { return strings.Split(roles, ",") }

// backboneNodes returns the nodes of the network with a backbone, ordered by ID, but self:
// every joined node with a backbone key and endpoint, and the controller's own node when
// it runs a backbone. A node removed from the store is in none.
//
// A node links only to the nodes it needs: a PoP to every other node (exits for the
// internet and routes via exits, PoPs for peers and sites there), an exit without the pop
// role only to the PoPs (it sends nothing but replies to where the peers are). So exits do
// not probe each other, and a network of P PoPs and E exits has P·(P−1)/2 + P·E links, not
// (P+E)·(P+E−1)/2.
func (c *Controller) backboneNodes(snap *store.Snapshot, self uint32) []plane.Node {
	all := make([]plane.Node, 0, len(snap.Nodes)+1)
	if bb := c.cfg.Backbone; bb.on() {
		all = append(all, plane.Node{ID: plane.ControllerNode, Name: bb.Name, Roles: bb.Roles, Region: c.cfg.Region,
			BackboneEndpoint: bb.Endpoint, BackboneKey: bb.PublicKey})
	}
	for _, n := range snap.Nodes {
		id := nodeID(n)
		if n.BackbonePublicKey.IsZero() || n.BackboneEndpoint == "" || id > plane.MaxNodeID {
			continue
		}
		all = append(all, plane.Node{ID: id, Name: n.Name, Roles: nodeRoles(n.Roles), Region: n.Region,
			BackboneEndpoint: n.BackboneEndpoint, BackboneKey: n.BackbonePublicKey})
	}
	selfPoP := true // a node unknown here (no backbone of its own yet) is given everyone
	for _, n := range all {
		if n.ID == self {
			selfPoP = slices.Contains(n.Roles, plane.RolePoP)
		}
	}
	out := all[:0]
	for _, n := range all {
		if n.ID != self && (selfPoP || slices.Contains(n.Roles, plane.RolePoP)) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b plane.Node) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// withBackbone fills d's Self, Nodes and PeerNodes for the node self. Peers are placed only
// at nodes d knows.
func (c *Controller) withBackbone(d *plane.Desired, snap *store.Snapshot, self uint32) {
	d.Self = self
	d.Nodes = c.backboneNodes(snap, self)
	known := make(map[uint32]bool, len(d.Nodes)+1)
	known[self] = true
	for _, n := range d.Nodes {
		known[n.ID] = true
	}
	peers := make(map[int64]bool, len(d.Peers))
	for _, p := range d.Peers {
		peers[p.ID] = true
	}
	d.PeerNodes, d.PeerNodesVersion = c.where.list(peers, known)
}

// where keeps where each peer is: the node with its latest completed handshake.
type where struct {
	mu sync.Mutex
	// at holds each peer's node and the handshake there, in the controller's clock.
	at      map[int64]placement
	version int64
	// snap is the snapshot at was last pruned against: peers removed since are forgotten.
	snap *store.Snapshot
	// pending: a change not yet published; timer publishes it.
	pending bool
	timer   *time.Timer
}

type placement struct {
	node uint32
	at   time.Time
}

// list returns the placements of peers at known nodes, ordered by peer, and the version.
func (w *where) list(peers map[int64]bool, known map[uint32]bool) ([]plane.PeerNode, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []plane.PeerNode
	for p, pl := range w.at {
		if peers[p] && known[pl.node] {
			out = append(out, plane.PeerNode{Peer: p, Node: pl.node})
		}
	}
	slices.SortFunc(out, func(a, b plane.PeerNode) int { return cmp.Compare(a.Peer, b.Peer) })
	return out, w.version
}

// NodeReported takes joined node n's report (nodesync.Source): where its peers are (see
// peersAt), its checks' results (queueResults), its counters for the traffic history
// (observeTraffic); and notes that the node reports (nodeReported).
func (c *Controller) NodeReported(n store.Node, rep *plane.Report, offset time.Duration) {
	c.nodeReported(n)
	if id := nodeID(n); id <= plane.MaxNodeID {
		c.peersAt(id, rep, offset)
		c.queueResults(joinedCheckNode(n), rep.Checks)
	}
	c.observeTraffic(n.ID+1, rep, offset, c.now())
}

// ownReport feeds the controller's own node's report to peersAt (every second while it runs
// a backbone): its peers are placed at it like at any node.
func (c *Controller) ownReport(time.Time) {
	rep := c.dp.Report()
	c.peersAt(plane.ControllerNode, &rep, 0)
}

// peersAt takes what node (its backbone ID) reports of its peers: each peer whose latest
// handshake anywhere is this one is placed at node. offset is the node's clock minus the
// controller's, so that handshakes at nodes with different clocks compare. A change of any
// peer's node is published, at most every PeerNodesEvery; reports that change nothing cost a
// map lookup per peer.
func (c *Controller) peersAt(node uint32, rep *plane.Report, offset time.Duration) {
	snap := c.read.Load()
	if snap == nil || rep == nil {
		return
	}
	var ids map[store.Key]int64
	changed := false
	w := &c.where
	w.mu.Lock()
	for _, ps := range rep.Peers {
		if ps.LastHandshake.IsZero() {
			continue
		}
		if ids == nil {
			ids = c.peerIDs(snap)
			if w.snap != snap { // forget removed peers once per publication
				w.snap = snap
				if len(w.at) > 0 {
					live := make(map[int64]bool, len(snap.Peers))
					for i := range snap.Peers {
						live[snap.Peers[i].ID] = true
					}
					for p := range w.at {
						if !live[p] {
							delete(w.at, p)
						}
					}
				}
			}
		}
		id, ok := ids[ps.PublicKey]
		if !ok {
			continue
		}
		at := ps.LastHandshake.Add(-offset)
		old, had := w.at[id]
		if had && !at.After(old.at) {
			continue
		}
		if w.at == nil {
			w.at = map[int64]placement{}
		}
		w.at[id] = placement{node: node, at: at}
		if !had || old.node != node {
			changed = true
		}
	}
	if changed {
		w.version++
		if !w.pending && !c.isClosing() {
			// Close sees the timer under w.mu after closing, so no Add follows its Wait.
			w.pending = true
			c.wg.Add(1)
			w.timer = time.AfterFunc(PeerNodesEvery, c.publishWhere)
		}
	}
	w.mu.Unlock()
}

// peerIDs maps the published peers' keys to their IDs; built once per snapshot.
func (c *Controller) peerIDs(snap *store.Snapshot) map[store.Key]int64 {
	c.idsMu.Lock()
	defer c.idsMu.Unlock()
	if c.ids.snap != snap {
		m := make(map[store.Key]int64, len(snap.Peers))
		for _, p := range snap.Peers {
			m[p.PublicKey] = p.ID
		}
		c.ids.snap, c.ids.m = snap, m
	}
	return c.ids.m
}

// publishWhere publishes a change of where peers are: to the nodes (Changed), and to the
// controller's own data plane when it runs a backbone.
func (c *Controller) publishWhere() {
	defer c.wg.Done()
	c.where.mu.Lock()
	c.where.pending = false
	c.where.mu.Unlock()
	if c.isClosing() {
		return
	}
	if c.cfg.Backbone.on() {
		c.changed(context.Background())
		return
	}
	c.notifyChanged()
}

// Exit states of a route's exits (ExitState.State) besides plane.LinkUp, plane.LinkDown and
// plane.LinkUnknown: some nodes reach it, others do not.
const ExitPartial = "partial"

// linkReportFresh is how old a node's report may be for its links to count.
const linkReportFresh = 30 * time.Second

// ExitState is one exit of a route as the nodes' probes see it.
type ExitState struct {
	Name string
	// State is plane.LinkUp when every node reporting a link to it (with a report younger
	// than 30 s) has it up, plane.LinkDown when every one has it down, ExitPartial when
	// some do, plane.LinkUnknown when none reports it yet.
	State string
	// InUse: the first exit that is up or partly up, which carries the route's traffic.
	InUse bool
}

// RouteInfo is a route with the state of its exits (none for the internet or a site).
type RouteInfo struct {
	store.Route
	Exits []ExitState
}

// RoutesWithExits lists the tenant's routes like Routes, each exit with its state from the
// nodes' latest reports (and the controller's own node's links when it runs a backbone).
func (c *Controller) RoutesWithExits(ctx context.Context, tenant string) ([]RouteInfo, error) {
	rs, err := c.Routes(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]RouteInfo, len(rs))
	var states map[string]string // by exit name, read at the first route via exits
	for i, r := range rs {
		out[i].Route = r
		v, err := plane.ParseVia(r.Via)
		if err != nil || len(v.Exits) == 0 {
			continue
		}
		if states == nil {
			if states, err = c.exitStates(ctx); err != nil {
				return nil, err
			}
		}
		inUse := false
		for _, name := range v.Exits {
			st := cmp.Or(states[name], plane.LinkUnknown)
			e := ExitState{Name: name, State: st}
			if !inUse && (st == plane.LinkUp || st == ExitPartial) {
				e.InUse, inUse = true, true
			}
			out[i].Exits = append(out[i].Exits, e)
		}
	}
	return out, nil
}

// exitStates sums up every node's reported links by the name of the node they reach.
func (c *Controller) exitStates(ctx context.Context) (map[string]string, error) {
	ns, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	names := make(map[uint32]string, len(ns))
	for _, n := range ns {
		names[n.BackboneID] = n.Name
	}
	up, down := map[string]int{}, map[string]int{}
	count := func(links []plane.LinkState) {
		for _, l := range links {
			name, ok := names[l.Node]
			switch {
			case !ok:
			case l.State == plane.LinkUp:
				up[name]++
			case l.State == plane.LinkDown:
				down[name]++
			}
		}
	}
	now := time.Now()
	for _, n := range ns {
		if n.Connected || now.Sub(n.LastSeen) < linkReportFresh {
			count(n.Links)
		}
	}
	if c.cfg.Backbone.on() {
		count(c.dp.Report().Links)
	}
	out := make(map[string]string, len(up)+len(down))
	for _, n := range ns {
		switch u, d := up[n.Name], down[n.Name]; {
		case u > 0 && d > 0:
			out[n.Name] = ExitPartial
		case u > 0:
			out[n.Name] = plane.LinkUp
		case d > 0:
			out[n.Name] = plane.LinkDown
		}
	}
	return out, nil
}

func (c *Controller) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}
