package gateway

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// fanout is the data plane of a network of nodes in one process, for a controller that
// does not yet fill in the backbone's parts of the desired state: it applies each desired
// state to every node, with its Self, the other nodes and where peers are (all at the
// first node, the PoP), and routes rewritten by via.
type fanout struct {
	mu    sync.Mutex
	nodes []*Node // nodes[i] is backbone ID i+2
	names []string
	roles [][]string
	via   string // replaces ViaInternet in routes; "": kept
	at    uint32 // the backbone ID every peer is placed at; 0: the first node's, 2
	last  *plane.Desired
}

func (f *fanout) desiredFor(d *plane.Desired, i int) *plane.Desired {
	dd := *d
	dd.Self = uint32(i + 2)
	dd.Nodes = nil
	for j, n := range f.nodes {
		if j == i || n == nil || n.bb.dev.Load() == nil {
			continue
		}
		dd.Nodes = append(dd.Nodes, plane.Node{ID: uint32(j + 2), Name: f.names[j], Roles: f.roles[j], Region: "local",
			BackboneEndpoint: fmt.Sprintf("127.0.0.1:%d", n.bb.dev.Load().Port()), BackboneKey: n.BackbonePublicKey()})
	}
	dd.PeerNodes = nil
	for _, p := range d.Peers {
		dd.PeerNodes = append(dd.PeerNodes, plane.PeerNode{Peer: p.ID, Node: cmp.Or(f.at, 2)})
	}
	if f.via != "" {
		dd.Routes = slices.Clone(d.Routes)
		for k := range dd.Routes {
			if dd.Routes[k].Via == plane.ViaInternet {
				dd.Routes[k].Via = f.via
			}
		}
	}
	return &dd
}

func (f *fanout) Apply(ctx context.Context, d *plane.Desired) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = d
	return f.applyLocked(ctx)
}

func (f *fanout) applyLocked(ctx context.Context) error {
	var errs []error
	// Twice: the first starts the backbones, whose ports the second tells the others.
	for range 2 {
		for i, n := range f.nodes {
			if n != nil {
				errs = append(errs, n.Apply(ctx, f.desiredFor(f.last, i)))
			}
		}
	}
	return errors.Join(errs...)
}

// set replaces node i (nil: it is gone) and applies the last state again.
func (f *fanout) set(i int, n *Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[i] = n
	return f.applyLocked(context.Background())
}

func (f *fanout) Report() plane.Report { return f.nodes[0].Report() }
func (f *fanout) PeerState(k store.Key) (plane.PeerState, bool) {
	return f.nodes[0].PeerState(k)
}

// startBackboneNode starts a node with a backbone for the fanout's tests.
func startBackboneNode(t *testing.T, st *store.Store, name string, noExit bool, body string, ports ...int) *Node {
	t.Helper()
	k, err := store.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return startBackboneNodeKey(t, st, name, noExit, body, k, ports...)
}

func startBackboneNodeKey(t *testing.T, st *store.Store, name string, noExit bool, body string, bbKey store.Key, ports ...int) *Node {
	t.Helper()
	cfg := Config{
		Interface: name, NodeName: name, ExitMode: ExitUserspace, NoExit: noExit, BackboneKey: bbKey,
		AnyPort:        true,
		backboneTuning: backboneTuning{probeEvery: 50 * time.Millisecond, probeTimeout: 100 * time.Millisecond, upAfter: 500 * time.Millisecond},
	}
	if len(ports) == 2 {
		cfg.AnyPort, cfg.ListenPort, cfg.BackbonePort = false, ports[0], ports[1]
	}
	if body != "" {
		cfg.exitDialer = testServers(t, []byte(body))
	}
	var err error
	if cfg.PrivateKey, err = st.NodePrivateKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.Overlay = storeOverlay(st)
	n, err := New(cfg, testLogger(t).With("node", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBackboneFailover: a client at a PoP without the exit role reaches the internet through
// the first of two exits of its region over the backbone (via internet); when that exit dies, through the second within
// the backbone's down time; and through the first again once it is back and Up.
func TestBackboneFailover(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	pop := startBackboneNode(t, st, "pgbpop", true, "")
	x1Key, _ := store.GeneratePrivateKey()
	x1 := startBackboneNodeKey(t, st, "pgbx1", false, "exit one", x1Key)
	x2 := startBackboneNode(t, st, "pgbx2", false, "exit two")
	f := &fanout{nodes: []*Node{pop, x1, x2}, names: []string{"pop", "x1", "x2"},
		roles: [][]string{{plane.RolePoP}, {plane.RoleExit}, {plane.RoleExit}}}
	ctrl, err := control.New(control.Config{PublicEndpoint: fmt.Sprintf("127.0.0.1:%d", pop.Config().ListenPort), MTU: pop.Config().MTU, Region: "local"},
		st, f, testLogger(t).With("component", "control"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })
	if err := ctrl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	_, config, err := ctrl.AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	client := startClient(t, config)
	through := func(body string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			got, err := client.get(ctx, "http://198.51.100.2/")
			if err != nil {
				return err
			}
			if got != sha256.Sum256([]byte(body)) {
				return fmt.Errorf("the answer did not come through %q", body)
			}
			return nil
		}
	}
	eventually(t, "through exit 1", 20*time.Second, through("exit one"))
	if err := client.udpEcho(ctx, "198.51.100.2:7"); err != nil {
		t.Fatalf("UDP through exit 1: %v", err)
	}

	x1Ports := []int{x1.Config().ListenPort, x1.bb.dev.Load().Port()}
	x1.Close()
	start := time.Now()
	eventually(t, "through exit 2 after exit 1 died", 5*time.Second, through("exit two"))
	t.Logf("failover took %v", time.Since(start))

	x1 = startBackboneNodeKey(t, st, "pgbx1", false, "exit one", x1Key, x1Ports...)
	if err := f.set(1, x1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "back through exit 1", 10*time.Second, through("exit one"))

	var up int
	for _, l := range pop.BackboneLinks() {
		if l.State.String() == "up" {
			up++
		}
	}
	if up != 2 {
		t.Errorf("the PoP's links: %+v, want 2 up", pop.BackboneLinks())
	}
	links := pop.Report().Links
	if len(links) != 2 || links[0].Node != 3 || links[0].Name != "x1" || links[0].State != plane.LinkUp || links[0].Ups == 0 ||
		links[1].Node != 4 || links[1].Name != "x2" {
		t.Errorf("the PoP's report: links %+v, want nodes 3 (x1, up at least once) and 4 (x2)", links)
	}
	t.Logf("the PoP's link to x1 went up %d and down %d times", links[0].Ups, links[0].Downs)
}
