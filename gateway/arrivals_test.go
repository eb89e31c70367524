package gateway

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
	"github.com/popgate/popgate/store"
)

// TestArrivalLoop: one arrival is followed by a call at each delay; a burst of arrivals by
// the same calls, not one per arrival; nothing after Close.
func TestArrivalLoop(t *testing.T) {
	var calls atomic.Int64
	n := &Node{closing: make(chan struct{}), arrived: make(chan struct{}, 1)}
	n.cfg.PeerArrived = func() { calls.Add(1) }
	n.wg.Add(1)
	go n.arrivalLoop([]time.Duration{50 * time.Millisecond, 150 * time.Millisecond})
	want := func(k int64) {
		t.Helper()
		eventually(t, fmt.Sprintf("%d calls", k), 5*time.Second, func(context.Context) error {
			if got := calls.Load(); got != k {
				return fmt.Errorf("%d calls", got)
			}
			return nil
		})
	}
	n.peerArrived()
	want(2)
	for range 10 {
		n.peerArrived()
	}
	want(4)
	close(n.closing)
	n.wg.Wait()
	if got := calls.Load(); got != 4 {
		t.Errorf("%d calls in all, want 4", got)
	}
	if got := n.arrivals.Load(); got != 11 {
		t.Errorf("%d arrivals counted, want 11", got)
	}
}

// TestNodePeerArrived: a handshake of a peer the desired state places at this node calls
// nothing; one of a peer it places at another node calls Config.PeerArrived (a joined node
// then reports at once, and the controller places the peer here).
func TestNodePeerArrived(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	bbKey, _ := store.GeneratePrivateKey()
	var calls atomic.Int64
	cfg := Config{
		Interface: "pgarr", NodeName: "pop", ExitMode: ExitUserspace, BackboneKey: bbKey, AnyPort: true,
		exitDialer:  testServers(t, []byte("hello")),
		PeerArrived: func() { calls.Add(1) },
	}
	var err error
	if cfg.PrivateKey, err = st.NodePrivateKey(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.Overlay = storeOverlay(st)
	pop, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pop.Close() })
	if err := pop.Start(ctx); err != nil {
		t.Fatal(err)
	}
	other := startBackboneNode(t, st, "pgarx", false, "") // node 3
	f := &fanout{nodes: []*Node{pop, other}, names: []string{"pop", "x"}, roles: [][]string{{"pop", "exit"}, {"pop", "exit"}}}
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
	eventually(t, "the client placed here", 20*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })
	if got := pop.arrivals.Load(); got != 0 {
		t.Errorf("the handshake of a peer placed here counted as %d arrivals, want 0", got)
	}

	// Placed at node 3, the other; the same client handshakes here again.
	f.mu.Lock()
	f.at = 3
	err = f.applyLocked(ctx)
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	wgmuxtest.CloseDevice(client.dev)
	client = startClient(t, config)
	eventually(t, "the client placed elsewhere", 20*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })
	eventually(t, "PeerArrived called", 5*time.Second, func(context.Context) error {
		if calls.Load() == 0 {
			return fmt.Errorf("not called; %d arrivals", pop.arrivals.Load())
		}
		return nil
	})
}
