package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
)

// memNet is an in-memory network (wgmuxtest) for a node and its stock clients: no UDP port, no
// kernel socket. The node is at memNodeEndpoint; each client has an address of its own.
type memNet struct {
	net     *wgmuxtest.Network
	clients atomic.Int32
}

const memNodeEndpoint = "192.0.2.1:51820"

// onMemNet puts cfg's shared socket on a new in-memory network, at memNodeEndpoint.
func onMemNet(cfg *Config) *memNet {
	m := &memNet{net: wgmuxtest.NewNetwork()}
	cfg.ListenPort = 51820
	cfg.socket = m.net.NewSocket(conn.IdealBatchSize, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"))
	return m
}

// startMemNode is startNode on an in-memory network.
func startMemNode(t *testing.T, cfg Config) (*testNode, *memNet) {
	t.Helper()
	m := onMemNet(&cfg)
	return startNodeEndpoint(t, cfg, memNodeEndpoint), m
}

// startClient starts a stock client from config on a socket of the network.
func (m *memNet) startClient(t *testing.T, config string) *wgClient {
	t.Helper()
	i := byte(1 + m.clients.Add(1))
	return startClientOn(t, config, m.net.NewSocket(16, netip.AddrFrom4([4]byte{192, 0, 2, i}),
		netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: i})))
}

// TestNodeOnInMemorySocket: a node whose shared socket is a wgmuxtest.Socket serves a stock
// wireguard-go client on the same in-memory network: no UDP port is taken for WireGuard.
func TestNodeOnInMemorySocket(t *testing.T) {
	node, network := startMemNode(t, Config{
		Interface:  fmt.Sprintf("pgm%d", os.Getpid()%100000),
		ExitMode:   ExitUserspace,
		exitDialer: testServers(t, []byte("hello")),
	})
	ctx := context.Background()
	if _, err := node.Controller().AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	_, config, err := node.Controller().AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	client := network.startClient(t, config)
	eventually(t, "UDP echo through the in-memory socket", 20*time.Second, func(ctx context.Context) error {
		return client.udpEcho(ctx, "198.51.100.2:7")
	})
	if st := node.mux.Stats(); st.Routed == 0 || st.Transports == 0 {
		t.Errorf("the Mux routed %d initiations and received %d transport datagrams; want some of both", st.Routed, st.Transports)
	}
}
