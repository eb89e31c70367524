package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

func TestFDBudget(t *testing.T) {
	for _, c := range []struct{ limit, budget int }{
		{1024, 768},             // Debian's default soft limit: a quarter kept
		{4096, 3072},            // a quarter is the whole reserve
		{8192, 7168},            // the e2e test's
		{20000, 18976},          // a limit set by hand
		{524288, 523264},        // systemd's default hard limit
		{1 << 30, 1<<30 - 1024}, // the most fdBudget counts
	} {
		if got := budgetOf(c.limit); got != c.budget {
			t.Errorf("budgetOf(%d) = %d, want %d", c.limit, got, c.budget)
		}
	}
	if budget, limit := fdBudget(); limit <= 0 || budget != budgetOf(limit) {
		t.Errorf("fdBudget() = %d, %d", budget, limit)
	}
}

// TestNodeFlowLimits: a peer of one tenant opening new UDP flows to a place that never
// answers stays at its tenant's per-peer bound, in the exit and in the firewall, by
// replacing its own flows without a reply; its flows that got replies, and another
// tenant's peer, go on; status shows the bounds, the flows and the evictions.
func TestNodeFlowLimits(t *testing.T) {
	dialer := testServers(t, []byte("x"))
	sink, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	const perPeer, flood = 16, 120
	for i := range flood {
		dialer[fmt.Sprintf("198.51.100.3:%d", 2000+i)] = sink.LocalAddr().String()
	}
	node, network := startMemNode(t, Config{
		Interface:    fmt.Sprintf("pgl%d", os.Getpid()%100000),
		ExitMode:     ExitUserspace,
		DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")},
		exitDialer:   dialer,
	})
	ctx := context.Background()
	ctrl := node.Controller()
	clients := map[string]*wgClient{}
	for _, tenant := range []string{"acme", "bravo"} {
		if _, err := ctrl.AddTenant(ctx, tenant); err != nil {
			t.Fatal(err)
		}
		_, config, err := ctrl.AddPeer(ctx, control.AddPeerRequest{Tenant: tenant, Name: "laptop"})
		if err != nil {
			t.Fatal(err)
		}
		clients[tenant] = network.startClient(t, config)
	}
	n := perPeer
	ti, err := ctrl.SetTenantLimits(ctx, "acme", store.TenantLimits{MaxFlowsPerPeer: &n})
	if err != nil || ti.MaxFlowsPerPeer != perPeer || ti.MaxFlows != plane.DefaultMaxFlowsPerTenant {
		t.Fatalf("SetTenantLimits = %+v, %v", ti, err)
	}
	acme, bravo := clients["acme"], clients["bravo"]
	eventually(t, "acme's udp echo", 10*time.Second, func(ctx context.Context) error { return acme.udpEcho(ctx, "198.51.100.2:7") })
	// A flow with replies, kept open through the flood.
	kept, err := acme.tnet.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("198.51.100.2:7"))
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	echoOn := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("kept")); err != nil {
			return err
		}
		_, err := c.Read(make([]byte, 10))
		return err
	}
	eventually(t, "the kept flow", 10*time.Second, func(context.Context) error { return echoOn(kept) })

	for i := range flood {
		c, err := acme.tnet.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort(fmt.Sprintf("198.51.100.3:%d", 2000+i)))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("flood"))
		defer c.Close()
	}
	var st control.TenantStatus
	eventually(t, "acme's flood to be bounded", 10*time.Second, func(ctx context.Context) error {
		s, err := ctrl.Status(ctx)
		if err != nil {
			return err
		}
		st = s.Tenants[0]
		if st.Name != "acme" || st.Evicted["flow_limit_peer"] < flood-perPeer || st.Evicted["conntrack"] < flood-perPeer {
			return fmt.Errorf("acme: %+v", st)
		}
		if st.ExitUDP > perPeer || st.Flows > perPeer {
			return fmt.Errorf("acme holds %d exit UDP flows, %d tracked, above its bound %d", st.ExitUDP, st.Flows, perPeer)
		}
		if s.ExitSocketBudget <= 0 || s.ExitSockets > s.ExitSocketBudget {
			return fmt.Errorf("exit sockets %d of %d", s.ExitSockets, s.ExitSocketBudget)
		}
		return nil
	})
	if st.MaxFlowsPerPeer != perPeer || st.MaxFlows != plane.DefaultMaxFlowsPerTenant {
		t.Errorf("acme's bounds in status: %d per peer, %d", st.MaxFlowsPerPeer, st.MaxFlows)
	}
	if err := echoOn(kept); err != nil {
		t.Errorf("acme's flow with replies, after the flood: %v", err)
	}
	eventually(t, "bravo's udp echo", 10*time.Second, func(ctx context.Context) error { return bravo.udpEcho(ctx, "198.51.100.2:7") })
	eventually(t, "a new flow of acme's", 10*time.Second, func(ctx context.Context) error { return acme.udpEcho(ctx, "198.51.100.2:7") })
	s, _ := ctrl.Status(ctx)
	if b := s.Tenants[1]; b.Name != "bravo" || len(b.Evicted) != 0 || b.ExitUDP == 0 || b.MaxFlowsPerPeer != plane.DefaultMaxFlowsPerPeer {
		t.Errorf("bravo: %+v", b)
	}
}
