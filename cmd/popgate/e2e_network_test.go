package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// pingGateway returns a poll function: one ping from c to the overlay's gateway address.
func pingGateway(c *testbed.NetNode) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.NS.Run(ctx, "ping", "-c", "1", "-W", "1", "100.64.0.1")
		return err
	}
}

// TestE2ETwoRegions is issue 13's network on one machine (TESTBED.md's bridges): a controller
// on the backbone bridge; region fra served by two PoPs behind one anycast address (the
// switch routes it to both, ECMP, as an upstream router would); region ams served by one
// PoP; stock clients on the wan bridge. It checks that one peer works with either region's
// config; that with the controller dead a peer never seen before connects at a PoP and a PoP
// restarted meanwhile serves again; that with the controller back a removed peer loses access
// at every PoP; and that when the fra PoP serving a client dies (and the switch stops routing
// to it) the client carries on at the other fra PoP. It logs the propagation of 20 changes to
// all three PoPs and the recovery time, for the closing note.
func TestE2ETwoRegions(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping", "ss", "curl")
	n := testbed.NewNetwork(t)
	anycast := netip.MustParseAddr("198.18.0.1")
	const popPort = 45520

	mk := func(role, ifprefix string, on ...string) *netProc {
		return newNetProc(t, bin, n, role, ifprefix, on...)
	}
	ctrl := mk("ctl", "tc", testbed.Backbone)
	controllerAddr := netip.AddrPortFrom(ctrl.node.Addr4[testbed.Backbone], 45500).String()
	// The controller alone (--roles controller), as issue 13's walkthrough runs it: no data
	// plane of its own; its region local serves nobody here.
	ctrl.args = []string{"--roles", "controller", "--web-addr", "127.0.0.1:0",
		"--public-endpoint", netip.AddrPortFrom(ctrl.node.Addr4[testbed.Backbone], 45501).String(),
		"--controller-addr", controllerAddr}
	fra1 := mk("fra", "tf", testbed.WAN, testbed.Backbone, testbed.Internet)
	fra2 := mk("fra", "tg", testbed.WAN, testbed.Backbone, testbed.Internet)
	ams1 := mk("ams", "ta", testbed.WAN, testbed.Backbone, testbed.Internet)
	// No route prefers the anycast address as the PoPs' source: popgate's socket answers
	// from the address each datagram arrived at (gateway/internal/udpbind).
	n.AddAnycast(t, anycast, false, fra1.node, fra2.node)
	pops := []*netProc{fra1, fra2, ams1}
	for _, p := range pops {
		p.args = []string{"--listen-port", fmt.Sprint(popPort), "--interface", p.ifname, "--web-addr", "127.0.0.1:0",
			"--exit-mode", "userspace", "--dns-upstream", testbed.InternetAddr4.String()}
	}

	mustCLI, startController, allInSync, pingFrom := ctrl.mustCLI, ctrl.startController, ctrl.waitInSync, pingGateway
	popNames := []string{"fra1", "fra2", "ams1"}

	startController()
	mustCLI("region", "add", "fra", "--endpoint", netip.AddrPortFrom(anycast, popPort).String())
	mustCLI("region", "add", "ams", "--endpoint", netip.AddrPortFrom(ams1.node.Addr4[testbed.WAN], popPort).String())
	for i, p := range pops {
		region := strings.TrimRight(popNames[i], "0123456789")
		p.start("--join", ctrl.joinToken("pop,exit", region, popNames[i]), "--backbone-endpoint", netip.AddrPortFrom(p.node.Addr4[testbed.Backbone], 45510).String())
	}
	allInSync(60*time.Second, popNames...)
	checkControllerOnly(t, ctrl)
	checkJoinedMetrics(t, fra1, "fra1", "fra", "pop,exit")

	mustCLI("tenant", "add", "acme")
	fraConf := mustCLI("peer", "add", "--tenant", "acme", "--region", "fra", "laptop")
	amsConf := mustCLI("peer", "config", "--tenant", "acme", "--region", "ams", "laptop")
	allInSync(10*time.Second, popNames...)

	// One peer, either region's config.
	laptop := n.AddClient(t)
	n.RouteVia(t, laptop, anycast)
	lc := testbed.StartClient(t, laptop.NS, "tl"+n.Suffix, fraConf)
	testbed.Poll(t, 30*time.Second, "the laptop to ping its fra PoP", pingFrom(laptop))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if out, err := laptop.NS.Run(ctx, "ping", "-c", "1", "-W", "2", testbed.InternetAddr4.String()); err != nil {
		t.Errorf("the laptop does not reach the internet host through its fra PoP's exit: %v\n%s", err, out)
	}
	cancel()
	lc.Stop()
	laptopAms := n.AddClient(t)
	testbed.StartClient(t, laptopAms.NS, "tm"+n.Suffix, amsConf)
	testbed.Poll(t, 30*time.Second, "the laptop with ams's config to ping its ams PoP", pingFrom(laptopAms))
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	if ams1.peersOnline(ctx) < 1 {
		t.Errorf("ams1 shows no peer online although the laptop pings through it")
	}
	cancel()

	// Propagation of 20 changes, to all three PoPs (the controller's node list reports each
	// PoP's applied generation: an upper bound of the time to the data plane).
	var took []time.Duration
	for i := range 20 {
		mustCLI("peer", map[bool]string{true: "disable", false: "enable"}[i%2 == 0], "--tenant", "acme", "laptop")
		took = append(took, allInSync(10*time.Second, popNames...))
	}
	slices.Sort(took)
	t.Logf("propagation of 20 changes to 3 PoPs (command returned → every PoP reported it applied): median %s, worst %s",
		took[len(took)/2], took[len(took)-1])

	// A peer added now, never seen by any PoP; then the controller dies.
	phoneConf := mustCLI("peer", "add", "--tenant", "acme", "--region", "fra", "phone")
	allInSync(10*time.Second, popNames...)
	ctrl.kill()
	phone := n.AddClient(t)
	n.RouteVia(t, phone, anycast)
	testbed.StartClient(t, phone.NS, "tp"+n.Suffix, phoneConf)
	testbed.Poll(t, 30*time.Second, "a peer never seen before to connect at a fra PoP with the controller dead", pingFrom(phone))

	// ams1 restarts while the controller is away: it serves from the state it kept.
	ams1.kill()
	ams1.start()
	testbed.Poll(t, 45*time.Second, "the laptop to ping ams1 restarted without its controller", pingFrom(laptopAms))

	// The controller returns; a removed peer loses access at every PoP.
	startController()
	allInSync(45*time.Second, popNames...) // the PoPs' reconnect backoff is at most 30 s
	start := time.Now()
	mustCLI("peer", "remove", "--tenant", "acme", "laptop")
	var lost time.Duration
	testbed.Poll(t, 15*time.Second, "the removed laptop to lose access at ams1", func(ctx context.Context) error {
		if pingFrom(laptopAms)(ctx) == nil {
			return fmt.Errorf("the removed laptop still pings ams1")
		}
		lost = time.Since(start)
		return nil
	})
	t.Logf("the removed peer lost access at ams1 %s after the command started (each ping waits up to 1 s)", lost)
	laptopFra := n.AddClient(t)
	n.RouteVia(t, laptopFra, anycast)
	testbed.StartClient(t, laptopFra.NS, "tr"+n.Suffix, fraConf)
	ctx, cancel = context.WithTimeout(context.Background(), 8*time.Second)
	if err := pingFrom(laptopFra)(ctx); err == nil {
		t.Errorf("the removed laptop still connects at a fra PoP")
	}
	cancel()

	// The fra PoP that serves the phone dies; the switch stops routing the anycast address to
	// it (what the router does once the PoP's route is withdrawn); the phone's next handshake
	// reaches the other fra PoP, which has the region's key and accepts every peer of it.
	serving, other := fra1, fra2
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	if fra1.peersOnline(ctx) < 1 {
		serving, other = fra2, fra1
	}
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	if serving.peersOnline(ctx) < 1 {
		t.Fatalf("neither fra PoP shows the phone online")
	}
	cancel()
	killed := time.Now()
	serving.kill()
	n.Announce(t, anycast, other.node)
	testbed.Poll(t, 60*time.Second, "the phone to carry on at the other fra PoP", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := phone.NS.Run(ctx, "ping", "-c", "1", "-W", "1", "100.64.0.1")
		return err
	})
	t.Logf("a fra PoP died: its client pinged through the other fra PoP %s later (the stock client's own retry: keepalive 10 s + rekey 5 s, then every 5 s)",
		time.Since(killed).Round(100*time.Millisecond))
}

// checkControllerOnly checks that a controller started with --roles controller says so in its
// status and holds no UDP socket: it carries no traffic.
func checkControllerOnly(t *testing.T, ctrl *netProc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := ctrl.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node, _ := st["node"].(map[string]any)
	if roles := fmt.Sprint(node["roles"]); roles != "[controller]" {
		t.Errorf("the controller's status says roles %s, want [controller]", roles)
	}
	out, err := ctrl.node.NS.Run(ctx, "ss", "-Hulpn")
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	if strings.Contains(out, "popgate") {
		t.Errorf("the controller alone holds a UDP socket; it should carry no traffic:\n%s", out)
	}
}

// checkJoinedMetrics checks a joined node's metrics endpoint at its default address (in its
// own namespace): ready, and its name, region and roles as the controller gave them.
func checkJoinedMetrics(t *testing.T, p *netProc, name, region, roles string) {
	t.Helper()
	testbed.Poll(t, 30*time.Second, name+"'s /readyz to say ready", func(ctx context.Context) error {
		out, err := p.node.NS.Run(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:9586/readyz")
		if err != nil || strings.TrimSpace(out) != "ready" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := p.node.NS.Run(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:9586/metrics")
	if err != nil {
		t.Fatalf("%s's /metrics: %v\n%s", name, err, out)
	}
	want := fmt.Sprintf(`popgate_node_info{name=%q,region=%q,roles=%q} 1`, name, region, roles)
	if !strings.Contains(out, want) {
		t.Errorf("%s's /metrics lacks %s", name, want)
	}
	if !strings.Contains(out, "popgate_desired_staleness_seconds 0") {
		t.Errorf("%s's /metrics does not say its desired state is current (popgate_desired_staleness_seconds 0)", name)
	}
}
