package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
)

// TestNodeOnInMemorySocket: a node whose shared socket is a wgmuxtest.Socket serves a stock
// wireguard-go client on the same in-memory network: no UDP port is taken for WireGuard.
func TestNodeOnInMemorySocket(t *testing.T) {
	network := wgmuxtest.NewNetwork()
	node := startNodeEndpoint(t, Config{
		Interface:  fmt.Sprintf("pgm%d", os.Getpid()%100000),
		ListenPort: 51820,
		ExitMode:   ExitUserspace,
		exitDialer: testServers(t, []byte("hello")),
		socket:     network.NewSocket(16, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")),
	}, "192.0.2.1:51820")
	ctx := context.Background()
	if _, err := node.Controller().AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	_, config, err := node.Controller().AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	client := startClientOn(t, config, network.NewSocket(16, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2")))
	eventually(t, "UDP echo through the in-memory socket", 20*time.Second, func(ctx context.Context) error {
		return client.udpEcho(ctx, "198.51.100.2:7")
	})
	if st := node.mux.Stats(); st.Routed == 0 || st.Transports == 0 {
		t.Errorf("the Mux routed %d initiations and received %d transport datagrams; want some of both", st.Routed, st.Transports)
	}
}
