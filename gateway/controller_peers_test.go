package gateway

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/store"
)

// TestControllerPeers checks the peer sequence against ListPeers, the slice it saves building.
func TestControllerPeers(t *testing.T) {
	ctx := context.Background()
	c := startTestNode(t).Controller()
	for _, tenant := range []string{"acme", "bravo", "empty"} {
		if _, err := c.AddTenant(ctx, tenant); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []AddPeerRequest{{Tenant: "bravo", Name: "carol"}, {Tenant: "acme", Name: "phone"}, {Tenant: "acme", Name: "laptop"}} {
		if _, _, err := c.AddPeer(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SetPeerEnabled(ctx, "acme", "phone", false); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"", "acme", "bravo", "empty"} {
		want, err := c.ListPeers(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := c.Peers(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // a sequence can be ranged over again
			if got := slices.Collect(seq); len(got) != len(want) || len(want) > 0 && !reflect.DeepEqual(got, want) {
				t.Errorf("Peers(%q) = %v, want %v", tenant, got, want)
			}
		}
	}
	// Stopping early: the sequence must not call yield again (range panics if it does).
	seq, _ := c.Peers(ctx, "")
	n := 0
	for range seq {
		if n++; n == 2 {
			break
		}
	}
	if _, err := c.Peers(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Peers of an unknown tenant: %v, want ErrNotFound", err)
	}
}

func TestNodeDeviceBufferBytes(t *testing.T) {
	ctx := context.Background()
	n := startTestNode(t)
	c := n.Controller()
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if got := n.DeviceBufferBytes(); got != 0 {
		t.Errorf("no device yet: %d bytes", got)
	}
	if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "laptop"}); err != nil {
		t.Fatal(err)
	}
	// A receive batch per address family of the socket (a ReceiveFunc each, through the
	// Mux) and a read batch (the TUN's).
	n.mux.mu.Lock()
	families := len(n.mux.gen.readers)
	n.mux.mu.Unlock()
	if families < 1 || families > 2 {
		t.Fatalf("the socket has %d receive functions, want 1 or 2", families)
	}
	if got, want := n.DeviceBufferBytes(), uint64((families+1)*conn.IdealBatchSize)*device.MaxMessageSize; got != want {
		t.Errorf("one device: %d bytes, want %d", got, want)
	}
}
