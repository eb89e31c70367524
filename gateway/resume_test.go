package gateway

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
)

// TestNodeResumesEnabledPeer: a peer disabled while connected and enabled again gets its
// session back from a handshake the node starts towards the client's last endpoint (the
// node receives a handshake response, which it gets only for handshakes it initiated),
// rather than waiting for the client's own retry. A peer that was not connected is not
// put into its device by enabling it.
func TestNodeResumesEnabledPeer(t *testing.T) {
	cfg := Config{
		Interface:  fmt.Sprintf("pgr%d", os.Getpid()%100000),
		ExitMode:   ExitUserspace,
		exitDialer: testServers(t, []byte("hello")),
	}
	node, network := startMemNode(t, cfg)
	ctx := context.Background()
	ctrl := node.Controller()
	if _, err := ctrl.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	p, config, err := ctrl.AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	idle, _, err := ctrl.AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	client := network.startClient(t, config)
	eventually(t, "first contact", 20*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })

	held := func(name string) bool {
		pi, err := ctrl.Peer(ctx, "acme", name)
		if err != nil {
			t.Fatal(err)
		}
		ts := node.snap.Load().tenants[pi.TenantID]
		if ts == nil || ts.dev == nil {
			return false
		}
		ts.dev.mu.Lock()
		defer ts.dev.mu.Unlock()
		_, ok := ts.dev.peers[pi.PublicKey]
		return ok
	}
	for _, name := range []string{"laptop", "idle"} {
		if _, err := ctrl.SetPeerEnabled(ctx, "acme", name, false); err != nil {
			t.Fatal(err)
		}
	}
	client.lostAccess(t, "disabled")
	before := node.mux.Stats().Responses
	enabledAt := time.Now()
	for _, name := range []string{"laptop", "idle"} {
		if _, err := ctrl.SetPeerEnabled(ctx, "acme", name, true); err != nil {
			t.Fatal(err)
		}
	}
	if !held("laptop") {
		t.Errorf("the peer %s, connected when it was disabled, is not back in its device once enabled", p.Name)
	}
	if held("idle") {
		t.Errorf("enabling the peer %s, which never connected, put it into its device: peers are materialised on handshake", idle.Name)
	}
	eventually(t, "the enabled peer's traffic", 30*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })
	t.Logf("traffic resumed %v after enabling the peer", time.Since(enabledAt).Round(time.Millisecond))
	if after := node.mux.Stats().Responses; after == before {
		t.Errorf("the node received no handshake response after enabling the peer (%d before, %d after): it did not start the handshake, the client did", before, after)
	}
}
