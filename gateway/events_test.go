package gateway

import (
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/backbone"
	"github.com/popgate/popgate/gateway/plane"
)

// eventRecorder keeps what a node's OnEvent heard.
type eventRecorder struct {
	mu  sync.Mutex
	evs []plane.Event
}

func (r *eventRecorder) add(e plane.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
}

// take returns what was heard since the last take, as "kind subject from→to" lines.
func (r *eventRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		line := e.Kind + " " + e.Subject
		if e.Kind == plane.EventFailover {
			line += fmt.Sprintf(" %s→%s tenant %d", e.Data["from"], e.Data["to"], e.Tenant)
		}
		out = append(out, line)
	}
	r.evs = nil
	return out
}

// TestEventsFailover: as the links change, a PoP without the exit role tells of each route
// whose exit changed and of the internet's, and of links down and back; not of the backbone
// starting (links new, Unknown, coming Up), not of an admin's change of a route's exits.
func TestEventsFailover(t *testing.T) {
	rec := new(eventRecorder)
	n := &Node{cfg: Config{NodeName: "p1", NoExit: true, OnEvent: rec.add}, log: testLogger(t)}
	n.bb.self, n.bb.noExit, n.bb.region = 2, true, "fra"
	n.bb.nodes = []plane.Node{
		{ID: 3, Name: "x1", Roles: []string{plane.RoleExit}, Region: "fra"},
		{ID: 4, Name: "x2", Roles: []string{plane.RoleExit}, Region: "fra"},
		{ID: 5, Name: "p2", Roles: []string{plane.RolePoP}, Region: "fra"},
	}
	prefix := netip.MustParsePrefix("10.99.0.0/16")
	setRoutes := func(exits ...backbone.NodeID) {
		n.snap.Store(&snapshot{tenants: map[int64]*tenantState{
			7: {id: 7, name: "acme", routes: []route{{prefix: prefix, exits: exits}}},
			8: {id: 8, name: "beta"},
		}})
	}
	setRoutes(3, 4)
	link := func(id backbone.NodeID, st backbone.State, lost int) backbone.LinkState {
		return backbone.LinkState{Node: id, Name: map[backbone.NodeID]string{3: "x1", 4: "x2", 5: "p2"}[id], State: st, Lost: lost, Probes: 100}
	}
	up := func(id backbone.NodeID) backbone.LinkState { return link(id, backbone.StateUp, 0) }
	dead := func(id backbone.NodeID) backbone.LinkState { return link(id, backbone.StateDown, 100) }
	unknown := func(id backbone.NodeID) backbone.LinkState { return link(id, backbone.StateUnknown, 0) }
	steps := []struct {
		name  string
		links []backbone.LinkState
		want  []string
	}{
		{"no link judged", []backbone.LinkState{unknown(3), unknown(4)}, nil},
		// x2 first: its choice is not settled while x1 is Unknown, and x1 coming Up moves
		// the internet to it (the region's first) without a failover.
		{"x2 up first", []backbone.LinkState{unknown(3), up(4)}, nil},
		{"both up", []backbone.LinkState{up(3), up(4)}, nil},
		{"x1 dies", []backbone.LinkState{dead(3), up(4)}, []string{
			"failover route:acme/10.99.0.0/16 x1→x2 tenant 7", "failover internet:p1 x1→x2 tenant 0"}},
		{"the same again", []backbone.LinkState{dead(3), up(4)}, nil},
		{"x1 back", []backbone.LinkState{up(3), up(4)}, []string{
			"failover route:acme/10.99.0.0/16 x2→x1 tenant 7", "failover internet:p1 x2→x1 tenant 0"}},
		{"both die", []backbone.LinkState{dead(3), dead(4)}, []string{
			"failover route:acme/10.99.0.0/16 x1→ tenant 7", "failover internet:p1 x1→ tenant 0"}},
		{"both back", []backbone.LinkState{up(3), up(4)}, []string{
			"failover route:acme/10.99.0.0/16 →x1 tenant 7", "failover internet:p1 →x1 tenant 0"}},
	}
	for _, s := range steps {
		n.bb.mu.Lock()
		n.noteExitsLocked(makeView(2, n.bb.nodes, true, "fra", s.links), s.links)
		n.bb.mu.Unlock()
		if got := rec.take(); !reflect.DeepEqual(got, s.want) {
			t.Errorf("%s: events %q, want %q", s.name, got, s.want)
		}
	}
	// An admin's new list of exits is no failover, nor is a route gone.
	both := []backbone.LinkState{up(3), up(4)}
	setRoutes(4, 3)
	n.bb.mu.Lock()
	n.noteExitsLocked(makeView(2, n.bb.nodes, true, "fra", both), both)
	n.bb.mu.Unlock()
	setRoutes()
	n.bb.mu.Lock()
	n.noteExitsLocked(makeView(2, n.bb.nodes, true, "fra", both), both)
	n.bb.mu.Unlock()
	if got := rec.take(); got != nil {
		t.Errorf("events of an admin's changes: %q", got)
	}
	n.bb.mu.Lock()
	if len(n.bb.watch.exits) != 1 {
		t.Errorf("the watch keeps %d routes, want the internet's alone", len(n.bb.watch.exits))
	}
	n.bb.mu.Unlock()

	// Links: a new link coming Up is the backbone starting; Down and Up again are told, and a
	// new link that never answers goes Down.
	for _, s := range []backbone.LinkState{up(3), up(3), dead(3), up(3), link(5, backbone.StateDown, 0)} {
		s.Since = time.Now()
		n.linkEvent(s)
	}
	want := []string{"link.down link:p1/x1", "link.up link:p1/x1", "link.down link:p1/p2"}
	if got := rec.take(); !reflect.DeepEqual(got, want) {
		t.Errorf("link events %q, want %q", got, want)
	}
}
