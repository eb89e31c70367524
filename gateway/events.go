package gateway

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/popgate/popgate/gateway/backbone"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// The node's events (issue 16): a backbone link down and back, and a route's exit changed
// (a failover), told to Config.OnEvent. They are worked out off the packet path, where the
// view of the links is rebuilt: the packet path reads the view and never waits for this.

// eventWatch remembers what the last view showed, to tell what changed. Its methods run
// under bbPath.mu, so that views are compared in the order they were published.
type eventWatch struct {
	// links are the links' states as OnLinkChange told them.
	links map[backbone.NodeID]backbone.State
	// exits are the exits each route used at the last view (exitKey), and whether that
	// choice was settled: made when none of the route's candidates was still Unknown. A
	// change from an unsettled choice is the backbone starting, not a failover.
	exits map[exitKey]exitChoice
}

// exitKey is a route whose exit can change: a tenant's route via exits (its exits in order
// are part of the key, so that an admin's change of the list is not taken for a failover),
// or the internet's on a node without the exit role (tenant 0, no prefix).
type exitKey struct {
	tenant int64
	prefix netip.Prefix
	exits  string
}

type exitChoice struct {
	via     backbone.NodeID
	settled bool
}

// emit hands e to Config.OnEvent, stamped now.
func (n *Node) emit(e plane.Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	n.log.Info("event", "kind", e.Kind, "subject", e.Subject, "message", e.Message)
	if n.cfg.OnEvent != nil {
		n.cfg.OnEvent(e)
	}
}

// linkEvent tells of a link's change: Down (from Up, or a new link that never answered) and
// Up again after Down. A new link coming Up is the backbone starting: no event.
func (n *Node) linkEvent(s backbone.LinkState) {
	n.bb.mu.Lock()
	w := &n.bb.watch
	if w.links == nil {
		w.links = map[backbone.NodeID]backbone.State{}
	}
	prev, known := w.links[s.Node]
	w.links[s.Node] = s.State
	self := n.cfg.NodeName
	n.bb.mu.Unlock()
	if known && prev == s.State {
		return
	}
	peer := s.Name
	if peer == "" {
		peer = "#" + strconv.FormatUint(uint64(s.Node), 10)
	}
	data := map[string]string{"from": self, "to": peer, "to_id": strconv.FormatUint(uint64(s.Node), 10),
		"loss_percent": strconv.Itoa(int(math.Round(s.Loss() * 100)))}
	if s.SmoothedRTT > 0 {
		data["rtt_ms"] = strconv.FormatFloat(float64(s.SmoothedRTT)/float64(time.Millisecond), 'f', 1, 64)
	}
	subject := "link:" + self + "/" + peer
	switch {
	case s.State == backbone.StateDown:
		data["state"] = "down"
		n.emit(plane.Event{At: s.Since, Kind: plane.EventLinkDown, Subject: subject, Data: data,
			Message: fmt.Sprintf("backbone link %s → %s is down: %d probes missed in a row", self, peer, s.MissesInRow)})
	case s.State == backbone.StateUp && known && prev == backbone.StateDown:
		data["state"] = "up"
		n.emit(plane.Event{At: s.Since, Kind: plane.EventLinkUp, Subject: subject, Data: data,
			Message: fmt.Sprintf("backbone link %s → %s is up again", self, peer)})
	}
}

// rebuildBB rebuilds the view of the links and tells of the routes whose exit it changed.
func (n *Node) rebuildBB() {
	n.bb.mu.Lock()
	defer n.bb.mu.Unlock()
	n.noteExitsLocked(n.bb.rebuildLocked())
}

// noteExitsLocked compares the exits the routes of the current snapshot use in view v (of
// links) with those they used before, and emits a failover event for each that changed.
// Must hold n.bb.mu.
func (n *Node) noteExitsLocked(v *bbView, links []backbone.LinkState) {
	if v == nil || v.self == 0 {
		return
	}
	w := &n.bb.watch
	state := make(map[backbone.NodeID]backbone.State, len(links))
	for _, l := range links {
		state[l.Node] = l.State
	}
	names := make(map[backbone.NodeID]string, len(n.bb.nodes)+1)
	var exitNodes []backbone.NodeID
	for _, nd := range n.bb.nodes {
		names[backbone.NodeID(nd.ID)] = nd.Name
		if slices.Contains(nd.Roles, plane.RoleExit) {
			exitNodes = append(exitNodes, backbone.NodeID(nd.ID))
		}
	}
	names[v.self] = n.cfg.NodeName
	name := func(id backbone.NodeID) string {
		if id == 0 {
			return ""
		}
		if s := names[id]; s != "" {
			return s
		}
		return "#" + strconv.FormatUint(uint64(id), 10)
	}
	// settled: every candidate's link was judged (none still Unknown); this node's own exit
	// is always.
	settled := func(ids []backbone.NodeID) bool {
		for _, id := range ids {
			if s, ok := state[id]; id != v.self && (!ok || s == backbone.StateUnknown) {
				return false
			}
		}
		return true
	}
	seen := map[exitKey]bool{}
	note := func(k exitKey, cands []backbone.NodeID, via backbone.NodeID, tenantName string) {
		seen[k] = true
		prev, had := w.exits[k]
		now := exitChoice{via: via, settled: settled(cands)}
		if w.exits == nil {
			w.exits = map[exitKey]exitChoice{}
		}
		if !had && via == 0 {
			return // none yet: the links are starting
		}
		w.exits[k] = now
		if !had || !prev.settled || prev.via == via {
			return
		}
		var what, subject string
		if k.prefix.IsValid() {
			what = fmt.Sprintf("route %s of tenant %s", k.prefix, tenantName)
			subject = store.RouteTarget(tenantName, k.prefix)
		} else {
			what = "internet traffic"
			subject = "internet:" + n.cfg.NodeName
		}
		candNames := make([]string, len(cands))
		for i, id := range cands {
			candNames[i] = name(id)
		}
		data := map[string]string{"node": n.cfg.NodeName, "from": name(prev.via), "to": name(via), "exits": strings.Join(candNames, ",")}
		if k.prefix.IsValid() {
			data["route"] = k.prefix.String()
		}
		msg := fmt.Sprintf("%s: %s now leaves through %s (was %s)", n.cfg.NodeName, what, name(via), name(prev.via))
		if via == 0 {
			msg = fmt.Sprintf("%s: %s has no exit left (was %s): none of %s answers", n.cfg.NodeName, what, name(prev.via), strings.Join(candNames, ", "))
		}
		n.emit(plane.Event{Kind: plane.EventFailover, Tenant: k.tenant, Subject: subject, Message: msg, Data: data})
	}
	if snap := n.snap.Load(); snap != nil {
		ids := make([]int64, 0, len(snap.tenants))
		for id := range snap.tenants {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			ts := snap.tenants[id]
			for _, r := range ts.routes {
				if len(r.exits) == 0 {
					continue
				}
				k := exitKey{tenant: id, prefix: r.prefix, exits: fmt.Sprint(r.exits)}
				note(k, r.exits, v.firstUp(r.exits), ts.name)
			}
		}
	}
	if n.cfg.NoExit {
		note(exitKey{}, exitNodes, v.internet, "")
	}
	for k := range w.exits {
		if !seen[k] {
			delete(w.exits, k)
		}
	}
}
