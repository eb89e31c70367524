package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// startBareNode starts a node with no controller and no store: the key is made here and the
// overlay is testOverlay. Closed at the end of the test.
func startBareNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	var err error
	if cfg.PrivateKey, err = store.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	cfg.Overlay = testOverlay
	if cfg.ExitMode == "" {
		cfg.ExitMode = ExitUserspace // the kernel exit would change the host's own firewall
	}
	if cfg.Interface == "" {
		cfg.Interface = fmt.Sprintf("pgb%d", os.Getpid()%100000)
	}
	if cfg.ListenPort == 0 {
		cfg.AnyPort = true
	}
	n, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

// desiredOf is the desired state of generation gen with tenant 1 ("acme", the internet
// routes) and peers.
func desiredOf(gen int64, peers ...plane.Peer) *plane.Desired {
	return &plane.Desired{
		Format: plane.Format, Generation: gen, Overlay: testOverlay,
		Tenants: []plane.Tenant{{ID: 1, Name: "acme"}},
		Peers:   peers,
		Routes: []plane.Route{
			{Tenant: 1, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Via: plane.ViaInternet},
			{Tenant: 1, Prefix: netip.MustParsePrefix("::/0"), Via: plane.ViaInternet},
		},
	}
}

// reportedPeer returns k's state in r.
func reportedPeer(r plane.Report, k store.Key) (plane.PeerState, bool) {
	i := slices.IndexFunc(r.Peers, func(p plane.PeerState) bool { return p.PublicKey == k })
	if i < 0 {
		return plane.PeerState{}, false
	}
	return r.Peers[i], true
}

// TestNodeAppliesWithoutController: a desired state handed to a node that has no controller
// and no store serves a stock client; a later one cuts it off; one the node must not apply
// changes nothing and says why. The report follows.
func TestNodeAppliesWithoutController(t *testing.T) {
	ctx := context.Background()
	cfg := Config{exitDialer: testServers(t, []byte("hello"))}
	network := onMemNet(&cfg)
	node := startBareNode(t, cfg)
	if r := node.Report(); r.Generation != 0 || len(r.Peers) != 0 || r.Node.ListenPort != node.Config().ListenPort {
		t.Errorf("report before the first apply: %+v", r)
	}
	clientKey, _ := store.GeneratePrivateKey()
	laptop := plane.Peer{ID: 7, Tenant: 1, Name: "laptop", PublicKey: clientKey.PublicKey(), Enabled: true,
		IPv4: netip.MustParseAddr("100.64.0.2"), IPv6: netip.MustParseAddr("fd00:aaaa:bbbb::2")}
	if err := node.Apply(ctx, desiredOf(5, laptop)); err != nil {
		t.Fatal(err)
	}
	client := network.startClient(t, fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = %s/32, %s/128\n\n[Peer]\nPublicKey = %s\nEndpoint = %s\n",
		clientKey, laptop.IPv4, laptop.IPv6, node.Config().PrivateKey.PublicKey(), memNodeEndpoint))
	eventually(t, "the client through the exit", 20*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })

	r := node.Report()
	p, ok := reportedPeer(r, laptop.PublicKey)
	if r.Format != plane.Format || r.Generation != 5 || r.ApplyError != "" || !ok || !p.Online || p.RxPackets == 0 || p.TxPackets == 0 || p.RxBytes == 0 {
		t.Errorf("report after traffic: %+v, laptop %+v", r, p)
	}
	if len(r.Tenants) != 1 || r.Tenants[0].ID != 1 || len(r.Tenants[0].Rules) == 0 {
		t.Errorf("tenants reported: %+v", r.Tenants)
	}
	checkPeerState(t, node, laptop.PublicKey)
	nobody, _ := store.GeneratePrivateKey()
	checkPeerState(t, node, nobody.PublicKey()) // a key the node never had: nothing to say

	// Refused: another installation's overlay, a malformed state. Nothing changes.
	other := desiredOf(6)
	other.Overlay.V6 = netip.MustParsePrefix("fd00:cccc:dddd::/48")
	other.Overlay.Gateway6 = netip.MustParseAddr("fd00:cccc:dddd::1")
	if err := node.Apply(ctx, other); !errors.Is(err, plane.ErrInvalid) || !strings.Contains(err.Error(), "the node belongs to another installation") {
		t.Errorf("a state for another overlay: %v", err)
	}
	twice := desiredOf(6, laptop, laptop)
	if err := node.Apply(ctx, twice); !errors.Is(err, plane.ErrInvalid) {
		t.Errorf("a malformed state: %v", err)
	}
	if r := node.Report(); r.Generation != 5 || r.ApplyError != "" {
		t.Errorf("a refused state shows in the report: %+v", r)
	}
	if err := client.udpEcho(ctx, "198.51.100.2:7"); err != nil {
		t.Errorf("after refused states: %v", err)
	}

	laptop.Enabled = false
	if err := node.Apply(ctx, desiredOf(8, laptop)); err != nil {
		t.Fatal(err)
	}
	client.lostAccess(t, "disabled")
	if r := node.Report(); r.Generation != 8 {
		t.Errorf("generation %d reported, want 8", r.Generation)
	}
	checkPeerState(t, node, laptop.PublicKey) // no longer served
}

// checkPeerState checks that PeerState says of k what Report says, taking both again while
// k's state changes between them.
func checkPeerState(t *testing.T, node *Node, k store.Key) {
	t.Helper()
	for range 10 {
		before, okBefore := node.PeerState(k)
		want, ok := reportedPeer(node.Report(), k)
		after, okAfter := node.PeerState(k)
		if !reflect.DeepEqual(before, after) || okBefore != okAfter {
			continue // traffic in between
		}
		if okAfter != ok || !reflect.DeepEqual(after, want) {
			t.Errorf("PeerState(%s) = %+v, %v; Report says %+v, %v", k, after, okAfter, want, ok)
		}
		return
	}
	t.Errorf("PeerState(%s) changed between every two calls", k)
}

// TestNodeExpiresPeers: the node takes expired peers out by itself, each when its time
// comes, with the desired state it was given last.
func TestNodeExpiresPeers(t *testing.T) {
	node := startBareNode(t, Config{})
	now := time.Now()
	p1, p2, p3 := testPeer(1, "acme", "a", 2, true), testPeer(1, "acme", "b", 3, true), testPeer(1, "acme", "c", 4, true)
	p1.ExpiresAt, p2.ExpiresAt = now.Add(200*time.Millisecond), now.Add(600*time.Millisecond)
	if err := node.Apply(context.Background(), desiredOf(3, p1, p2, p3)); err != nil {
		t.Fatal(err)
	}
	served := func() (out []string) {
		for _, e := range node.snap.Load().byKey {
			out = append(out, e.name)
		}
		slices.Sort(out)
		return out
	}
	if got := served(); !slices.Equal(got, []string{"a", "b", "c"}) && time.Now().Before(p1.ExpiresAt) {
		t.Fatalf("served before any expiry: %v", got)
	}
	if got := served(); slices.Contains(got, "c") == false {
		t.Fatalf("the peer that never expires is not served: %v", got)
	}
	// b expires after a, by the timer that a's expiry armed.
	eventually(t, "both expired", 10*time.Second, func(context.Context) error {
		if got := served(); !slices.Equal(got, []string{"c"}) {
			return fmt.Errorf("served %v", got)
		}
		return nil
	})
	if r := node.Report(); r.Generation != 3 || r.ApplyError != "" {
		t.Errorf("report after the expiries: generation %d, error %q", r.Generation, r.ApplyError)
	}
}

// TestNodeExpiresByItsClock: expiry is judged by Config.Clock (a joined node's is its
// controller's): a node whose Clock is an hour ahead of its host takes out a peer that
// expires in 30 minutes at once, one whose Clock is an hour behind serves a peer that expired
// 30 minutes ago.
func TestNodeExpiresByItsClock(t *testing.T) {
	for _, c := range []struct {
		name   string
		offset time.Duration
		want   []string
	}{
		{"an hour ahead", time.Hour, []string{"c"}},
		{"an hour behind", -time.Hour, []string{"b", "c"}},
	} {
		node := startBareNode(t, Config{Clock: func() time.Time { return time.Now().Add(c.offset) }})
		now := time.Now()
		a, b, cc := testPeer(1, "acme", "a", 2, true), testPeer(1, "acme", "b", 3, true), testPeer(1, "acme", "c", 4, true)
		a.ExpiresAt, b.ExpiresAt = now.Add(30*time.Minute), now.Add(-30*time.Minute)
		if c.offset < 0 {
			a.ExpiresAt = now.Add(-90 * time.Minute)
		}
		if err := node.Apply(context.Background(), desiredOf(2, a, b, cc)); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range node.snap.Load().byKey {
			got = append(got, e.name)
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: served %v, want %v", c.name, got, c.want)
		}
	}
}

// TestNodeApplyAfterClose: Apply on a closed node says so and changes nothing.
func TestNodeApplyAfterClose(t *testing.T) {
	node := startBareNode(t, Config{})
	node.Close()
	err := node.Apply(context.Background(), desiredOf(1, testPeer(1, "acme", "a", 2, true)))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close = %v, want ErrClosed", err)
	}
	node.mu.Lock()
	devs, desired, expiry := len(node.devs), node.desired, node.expiry
	node.mu.Unlock()
	if devs != 0 || desired != nil || expiry != nil || len(node.snap.Load().byKey) != 0 {
		t.Errorf("Apply after Close changed the node: %d devices, desired %v, expiry %v, %d peers served", devs, desired, expiry, len(node.snap.Load().byKey))
	}
	if r := node.Report(); r.Generation != 0 {
		t.Errorf("report after Close: generation %d", r.Generation)
	}
}

// nodeGoroutines returns the stacks of goroutines running the node's own code.
func nodeGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "popgate/gateway.(*Node)") {
			out = append(out, g)
		}
	}
	return out
}

// TestNodeCloseRacesApplyAndExpiry: Close while Apply runs in a loop, peers expire every
// millisecond and (as root) a wg(8) client holds the UAPI socket open: when Close returns,
// none of the node's goroutines runs (the expiry timer's and the UAPI connections' are
// waited for), Apply says ErrClosed, and no goroutine is left behind.
func TestNodeCloseRacesApplyAndExpiry(t *testing.T) {
	before := runtime.NumGoroutine()
	for round := range 4 {
		node := startBareNode(t, Config{Interface: fmt.Sprintf("pgr%d%d", os.Getpid()%10000, round)})
		if node.uapiPath != "" {
			c, err := net.Dial("unix", node.uapiPath)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("get=1\n")) // and then nothing: the handler waits for the empty line
		}
		applied := make(chan int64, 1)
		var closed atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			for gen := int64(1); ; gen++ {
				now := time.Now()
				var peers []plane.Peer
				for i := range 3 {
					p := testPeer(1, "acme", fmt.Sprint("p", i), byte(2+i), true)
					p.ExpiresAt = now.Add(time.Duration(i+int(gen%3)) * time.Millisecond)
					peers = append(peers, p)
				}
				closedBefore := closed.Load() // Close had returned before this Apply began
				err := node.Apply(context.Background(), desiredOf(gen, peers...))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if closedBefore {
					t.Error("Apply after Close returned nil")
					return
				}
				select {
				case applied <- gen:
				default:
				}
			}
		})
		for gen := range applied {
			if gen >= 20 {
				break
			}
		}
		node.Close()
		closed.Store(true)
		wg.Wait()
		if gs := nodeGoroutines(); len(gs) > 0 {
			t.Fatalf("round %d: after Close, %d goroutines run the node's code:\n%s", round, len(gs), strings.Join(gs, "\n\n"))
		}
		if err := node.Apply(context.Background(), desiredOf(1000)); !errors.Is(err, ErrClosed) {
			t.Errorf("Apply after Close = %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
