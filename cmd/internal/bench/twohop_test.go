//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// The two-hop case: client → PoP → backbone → exit → Internet host, each gateway on a
// testbed.Network of its own (TESTBED.md's wan, backbone and internet bridges). Ports of its
// processes (inside the Network's namespaces).
const (
	thCtrlAddr   = 47000 // the controller's node listener (--controller-addr)
	thCtrlListen = 47001 // the controller's --listen-port (it runs no data plane)
	thPopPort    = 47010 // the PoP's WireGuard port: the clients' endpoint
	thPopBB      = 47011 // the PoP's backbone
	thExitPort   = 47020 // the exit's WireGuard port (no client uses it)
	thExitBB     = 47021 // the exit's backbone
	thS1Port     = 47030 // baseline: the first server's port for clients
	thS1BB       = 47031 // baseline: the first server's end of the tunnel to the exit
	thS2Port     = 47032 // baseline: the exit's end of that tunnel
	thIperf      = 47050 // iperf3 -s on the Internet host
)

// twoHop is one two-hop gateway: what the bench measures through (g: the client in the
// Network's client namespace, iperf3 on its Internet host) and its processes.
type twoHop struct {
	g *gw
	// popgate: the controller, the PoP (--roles pop) and the exit (--roles exit, exit mode
	// g.kind). ctrl runs no data plane.
	ctrl, pop, exit *pgNode
	// baseline: the three wireguard-go devices (the first server's two, the exit's).
	wg []*testbed.Proc
}

// pids are the processes that carry the traffic: the PoP and the exit, or the baseline's
// three wireguard-go.
func (h *twoHop) pids() []int {
	if h.pop != nil {
		return []int{h.pop.proc.Pid(), h.exit.proc.Pid()}
	}
	var p []int
	for _, w := range h.wg {
		p = append(p, w.Pid())
	}
	return p
}

// thName is an interface name "bt<role><network suffix>" (role: 2 letters), unique on the
// machine; its UAPI socket is removed at cleanup.
func thName(t testing.TB, n *testbed.Network, role string) string {
	t.Helper()
	name := "bt" + role + n.Suffix
	if len(name) > 15 {
		t.Fatalf("bench: interface name %q is longer than 15 bytes", name)
	}
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, name+".sock")) })
	return name
}

// thTopology is the view of a Network that the measuring functions of gw read: the client
// namespace as Cli, the first hop as Pop, the Internet host as Net.
func thTopology(n *testbed.Network, cli, first *testbed.NetNode) *testbed.Topology {
	return &testbed.Topology{
		Cli: cli.NS, Pop: first.NS, Net: n.Internet, Suffix: n.Suffix,
		CliLink: cli.Links[testbed.WAN], CliAddr: cli.Addr4[testbed.WAN], PopCliAddr: first.Addr4[testbed.WAN],
		NetAddr4: testbed.InternetAddr4, NetAddr6: testbed.InternetAddr6,
	}
}

// newTwoHopBaseline builds the two hops from stock parts: upstream wireguard-go in the first
// server (wan and backbone bridges), whose device for clients hands everything to the kernel,
// which routes it into a second device, a WireGuard tunnel to the exit (backbone and internet
// bridges); there a third device and kernel forwarding with MASQUERADE towards the Internet
// host. No filter; every MTU 1,420.
func (e *env) newTwoHopBaseline(t *testing.T) *twoHop {
	t.Helper()
	n := testbed.NewNetwork(t)
	s1 := n.AddNode(t, "btwg", testbed.WAN, testbed.Backbone)
	s2 := n.AddNode(t, "btwx", testbed.Backbone, testbed.Internet)
	cli := n.AddClient(t)
	keys := map[string][2]string{} // private, public
	for _, k := range []string{"cli", "s1a", "s1b", "s2"} {
		priv, pub, err := testbed.GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		keys[k] = [2]string{priv, pub}
	}
	keyFile := func(k string) string {
		f := filepath.Join(t.TempDir(), k+".key")
		if err := os.WriteFile(f, []byte(keys[k][0]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	wa, wb, wx := thName(t, n, "wa"), thName(t, n, "wb"), thName(t, n, "wx")
	h := &twoHop{}
	up := func(ns *testbed.NetNode, ifname string) {
		ns.NS.MustRun(t, "ip", "link", "set", "dev", ifname, "mtu", "1420")
		ns.NS.MustRun(t, "ip", "link", "set", "dev", ifname, "up")
	}
	// The first server: clients on wa (100.64.0.1/10), everything else into wb.
	h.wg = append(h.wg, testbed.StartWireGuardGo(t, s1.NS, wa, e.wgGo))
	s1.NS.MustRun(t, "wg", "set", wa, "private-key", keyFile("s1a"), "listen-port", strconv.Itoa(thS1Port),
		"peer", keys["cli"][1], "allowed-ips", "100.64.0.2/32")
	s1.NS.MustRun(t, "ip", "address", "add", "100.64.0.1/10", "dev", wa)
	up(s1, wa)
	h.wg = append(h.wg, testbed.StartWireGuardGo(t, s1.NS, wb, e.wgGo))
	s1.NS.MustRun(t, "wg", "set", wb, "private-key", keyFile("s1b"), "listen-port", strconv.Itoa(thS1BB),
		"peer", keys["s2"][1], "allowed-ips", "0.0.0.0/0",
		"endpoint", netip.AddrPortFrom(s2.Addr4[testbed.Backbone], thS2Port).String(), "persistent-keepalive", "25")
	up(s1, wb)
	s1.NS.MustRun(t, "ip", "-4", "route", "add", "default", "dev", wb)
	if err := s1.NS.EnableForwarding(); err != nil {
		t.Fatalf("bench: %v", err)
	}
	// The exit: the tunnel's far end, forwarding and MASQUERADE to the Internet host.
	h.wg = append(h.wg, testbed.StartWireGuardGo(t, s2.NS, wx, e.wgGo))
	s2.NS.MustRun(t, "wg", "set", wx, "private-key", keyFile("s2"), "listen-port", strconv.Itoa(thS2Port),
		"peer", keys["s1b"][1], "allowed-ips", "100.64.0.0/10")
	up(s2, wx)
	s2.NS.MustRun(t, "ip", "-4", "route", "add", "100.64.0.0/10", "dev", wx)
	if err := s2.NS.EnableForwarding(); err != nil {
		t.Fatalf("bench: %v", err)
	}
	s2.NS.MustRun(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "100.64.0.0/10", "-o", s2.Links[testbed.Internet], "-j", "MASQUERADE")

	endpoint := netip.AddrPortFrom(s1.Addr4[testbed.WAN], thS1Port)
	conf := fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = 100.64.0.2/32\nMTU = 1420\n\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = 0.0.0.0/0\nPersistentKeepalive = 25\n",
		keys["cli"][0], keys["s1a"][1], endpoint)
	h.g = &gw{kind: kindBaseline, topo: thTopology(n, cli, s1), endpoint: endpoint, conf: conf, wgGo: e.wgGo,
		clientPrefix: "btc", iperfPort: thIperf}
	return h
}

// newTwoHopPopgate builds popgate's two hops: a controller alone (--roles controller) on the
// backbone bridge, a PoP (wan and backbone; joined with --roles pop, so it has no exit of its
// own) and an exit of the PoP's region (backbone and internet; --roles exit, exit mode
// mode), each with --backbone-endpoint. The tenant has no route of its own: its default, via
// internet, is the region's exit. Its policy is the single hop's (cfg.rules rules).
func (e *env) newTwoHopPopgate(t *testing.T, mode string) *twoHop {
	t.Helper()
	n := testbed.NewNetwork(t)
	ctrlN := n.AddNode(t, "btctl", testbed.Backbone)
	popN := n.AddNode(t, "btpop", testbed.WAN, testbed.Backbone)
	exitN := n.AddNode(t, "btexit", testbed.Backbone, testbed.Internet)
	cli := n.AddClient(t)
	endpoint := netip.AddrPortFrom(popN.Addr4[testbed.WAN], thPopPort)
	common := func(ifname string, port int) []string {
		return []string{"--listen-port", strconv.Itoa(port), "--interface", ifname,
			"--web-addr", "127.0.0.1:0", "--metrics-addr", "off",
			// In-tunnel DNS is not benchmarked; this address is never queried.
			"--dns-upstream", netip.AddrPortFrom(testbed.InternetAddr4, 53).String()}
	}
	h := &twoHop{}
	h.ctrl = &pgNode{bin: e.bin, ns: ctrlN.NS, dataDir: t.TempDir(), ifname: thName(t, n, "pc"), mode: "controller"}
	h.ctrl.args = append(common(h.ctrl.ifname, thCtrlListen), "--roles", "controller",
		"--controller-addr", netip.AddrPortFrom(ctrlN.Addr4[testbed.Backbone], thCtrlAddr).String(),
		"--public-endpoint", endpoint.String())
	if _, err := h.ctrl.start(t, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	node := func(nd *testbed.NetNode, role, name, nodeMode string, port, bb int, token ...string) *pgNode {
		p := &pgNode{bin: e.bin, ns: nd.NS, dataDir: t.TempDir(), ifname: thName(t, n, role), mode: nodeMode}
		p.args = append(common(p.ifname, port), "--exit-mode", nodeMode, "--node-name", name,
			"--backbone-port", strconv.Itoa(bb),
			"--backbone-endpoint", netip.AddrPortFrom(nd.Addr4[testbed.Backbone], uint16(bb)).String())
		args := p.args
		p.args = append(args, "--join", strings.TrimSpace(h.ctrl.mustCLI(t, 30*time.Second, append([]string{"node", "token", "--name", name}, token...)...)))
		if _, err := p.start(t, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		p.args = args // later starts need no token
		return p
	}
	// The PoP has no exit role: its exit mode is unused.
	h.pop = node(popN, "pp", "p1", kindUserspace, thPopPort, thPopBB, "--roles", "pop")
	h.exit = node(exitN, "px", "x1", mode, thExitPort, thExitBB, "--roles", "exit", "--region", "local")

	h.ctrl.mustCLI(t, 30*time.Second, "tenant", "add", "bench")
	conf := h.ctrl.mustCLI(t, 30*time.Second, "peer", "add", "--tenant", "bench", "client")
	policy := filepath.Join(t.TempDir(), "bench.policy")
	if err := os.WriteFile(policy, []byte(policyText(e.cfg.rules)), 0o644); err != nil {
		t.Fatal(err)
	}
	h.ctrl.mustCLI(t, 60*time.Second, "policy", "set", "--tenant", "bench", policy)
	// In sync: the PoP applied the policy. (A joined node's status shows no rule hits, so,
	// unlike the single hop, the bench cannot check afterwards that the rules decided flows.)
	if err := h.inSync(90*time.Second, "p1", "x1"); err != nil {
		t.Fatal(err)
	}
	if err := h.backboneUp(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := h.exit.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Device.ExitMode != mode {
		t.Fatalf("the exit, serve --exit-mode %s, runs with exit mode %q", mode, st.Device.ExitMode)
	}
	h.g = &gw{kind: mode, topo: thTopology(n, cli, popN), endpoint: endpoint, conf: conf, node: h.pop, wgGo: e.wgGo,
		clientPrefix: "btc", iperfPort: thIperf}
	return h
}

// inSync waits until the controller lists the named nodes connected and in sync.
func (h *twoHop) inSync(within time.Duration, names ...string) error {
	return testbed.PollErr(context.Background(), within, func(ctx context.Context) error {
		out, err := h.ctrl.cli(ctx, "node", "list", "--json")
		if err != nil {
			return err
		}
		var l struct {
			Nodes []struct {
				Name      string `json:"name"`
				Connected bool   `json:"connected"`
				Applied   int64  `json:"applied_generation"`
				Current   int64  `json:"current_generation"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			return fmt.Errorf("node list --json: %w", err)
		}
		for _, name := range names {
			ok := false
			for _, nd := range l.Nodes {
				ok = ok || nd.Name == name && nd.Connected && nd.Applied >= nd.Current
			}
			if !ok {
				return fmt.Errorf("%s is not connected and in sync: %s", name, out)
			}
		}
		return nil
	})
}

// thStatus is what the bench reads of a two-hop node's `status --json` beyond pgStatus.
type thStatus struct {
	Device struct {
		Drops map[string]uint64 `json:"drops"`
	} `json:"device"`
	Backbone *struct {
		Links []struct {
			Node        string `json:"node"`
			State       string `json:"state"`
			RTTMicros   int64  `json:"rtt_us"`
			LossPercent int    `json:"loss_percent"`
		} `json:"links"`
	} `json:"backbone"`
}

func thStatusOf(ctx context.Context, n *pgNode) (thStatus, error) {
	var st thStatus
	out, err := n.cli(ctx, "status", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// backboneUp waits until the PoP's backbone link to the exit is up.
func (h *twoHop) backboneUp(within time.Duration) error {
	return testbed.PollErr(context.Background(), within, func(ctx context.Context) error {
		st, err := thStatusOf(ctx, h.pop)
		if err != nil {
			return err
		}
		if st.Backbone == nil {
			return errors.New("the PoP's status shows no backbone")
		}
		for _, l := range st.Backbone.Links {
			if l.Node == "x1" && l.State == "up" {
				return nil
			}
		}
		return fmt.Errorf("the PoP's backbone links %+v: want x1 up", st.Backbone.Links)
	})
}

const twoHopGroup = "Two hops: client → PoP → backbone → exit → Internet host (iperf3 and ping as above; popgate: a PoP without the exit role and an exit of its region, the 1,000-rule policy at the PoP; baseline: two stock wireguard-go servers, a WireGuard tunnel between them, kernel forwarding, MASQUERADE at the exit)"

// phaseTwoHop is issue 14's bench: the two-hop case on the baseline, popgate with the kernel
// exit and popgate with the userspace exit, alternating as the other phases do; then CPU
// profiles of the PoP and the kernel exit during one TCP stream each way.
func (e *env) phaseTwoHop(t *testing.T) {
	var hs []*twoHop
	step(t, "set up the three two-hop gateways", func() {
		hs = []*twoHop{e.newTwoHopBaseline(t), e.newTwoHopPopgate(t, kindUserspace), e.newTwoHopPopgate(t, kindKernel)}
		for _, h := range hs {
			if err := h.g.startIperf(t); err != nil {
				t.Fatalf("two hops, %s: %v", h.g.kind, err)
			}
			if err := h.g.startClient(t); err != nil {
				t.Fatalf("two hops: %v", err)
			}
		}
	})
	byGW := map[*gw]*twoHop{}
	var gws []*gw
	for _, h := range hs {
		byGW[h.g] = h
		gws = append(gws, h.g)
	}
	def := func(name, unit string, digits, better int, limit float64) *row {
		rw := e.res.def(twoHopGroup, name, unit, digits, better, limit)
		if limit != 0 {
			rw.only = kindKernel
		}
		return rw
	}

	for _, c := range []struct {
		name    string
		streams int
		reverse bool
	}{
		{"TCP upload (client → host), 1 stream", 1, false},
		{"TCP upload, 4 streams", 4, false},
		{"TCP download (host → client, -R), 1 stream", 1, true},
		{"TCP download, 4 streams", 4, true},
	} {
		rw := def(c.name, "Gbit/s", 2, +1, 1.0)
		cpu := def(c.name+": CPU per GB moved of the processes of both hops", "CPU s/GB", 2, -1, 0)
		e.roundsOn(gws, func(g *gw, _ int) {
			e.measure(t, g, []*row{rw, cpu}, func() ([]float64, error) {
				return g.tcpThroughput(t, c.streams, c.reverse, byGW[g].pids()...)
			})
		})
	}

	pps := def("UDP, 64 B payload, sender unlimited (-b 0): packets received", "kpps", 1, +1, 1.0)
	lost := def("UDP, 64 B payload, sender unlimited: loss", "%", 1, 0, 0)
	e.roundsOn(gws, func(g *gw, _ int) {
		e.measure(t, g, []*row{pps, lost}, func() ([]float64, error) {
			rep, err := g.iperf(t, 5, "-u", "-b", "0", "-l", "64")
			s := rep.End.SumReceived
			if err == nil && s.Seconds <= 0 {
				err = errors.New("iperf3 reported no receive time")
			}
			return []float64{s.Bytes / 64 / s.Seconds / 1e3, s.LostPercent}, err
		})
	})

	p50 := def("idle RTT p50 ("+idleMethod+")", "ms", 3, -1, 1.0)
	p99 := def("idle RTT p99", "ms", 3, -1, 1.0)
	e.idleRTTs(t, gws, p50, p99)
	lp50 := def("loaded RTT p50 (the same during a 1-stream TCP upload)", "ms", 3, -1, 0)
	lp99 := def("loaded RTT p99", "ms", 3, -1, 0)
	e.roundsOn(gws, func(g *gw, _ int) {
		e.measure(t, g, []*row{lp50, lp99}, func() ([]float64, error) {
			done := make(chan error, 1)
			go func() {
				_, err := g.iperfOnce(5, "-P", "1")
				done <- err
			}()
			time.Sleep(1500 * time.Millisecond)
			rtts, _, perr := g.pingRTTs(200, 10*time.Millisecond)
			if ierr := <-done; perr == nil && ierr != nil {
				perr = fmt.Errorf("the TCP load failed: %w", ierr)
			}
			return []float64{percentile(rtts, 50), percentile(rtts, 99)}, perr
		})
	})

	// What the nodes dropped and how their backbone link looked: a figure far off is
	// explained here first.
	for _, h := range hs[1:] {
		for _, nd := range []*pgNode{h.pop, h.exit} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			st, err := thStatusOf(ctx, nd)
			cancel()
			if err != nil {
				t.Errorf("two hops, %s: %v", h.g.kind, err)
				continue
			}
			var links []string
			if st.Backbone != nil {
				for _, l := range st.Backbone.Links {
					links = append(links, fmt.Sprintf("%s %s, RTT %d µs, loss %d %%", l.Node, l.State, l.RTTMicros, l.LossPercent))
				}
			}
			t.Logf("two hops, %s exit, %s: drops %v; backbone links: %s", h.g.kind, nd.ifname, st.Device.Drops, strings.Join(links, "; "))
		}
	}
	e.twoHopProfile(t, hs[2])
}

// twoHopProfile profiles the PoP and the exit of h (POPGATE_CPUPROFILE) during one TCP stream
// each way: one life of both per direction (start, the client's handshake, 9 s of iperf3).
func (e *env) twoHopProfile(t *testing.T, h *twoHop) {
	for i, c := range []struct {
		what string
		args []string
	}{
		{"TCP upload (client → host), 1 stream", nil},
		{"TCP download (host → client), 1 stream", []string{"-R"}},
	} {
		paths := map[*pgNode]string{}
		for _, nd := range []*pgNode{h.pop, h.exit} {
			if err := nd.stop(30 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		for _, nd := range []*pgNode{h.exit, h.pop} {
			paths[nd] = filepath.Join(e.profDir, fmt.Sprintf("cpu-twohop-%s-%s-%d.pprof", h.g.kind, map[bool]string{true: "pop", false: "exit"}[nd == h.pop], i))
			if _, err := nd.start(t, 60*time.Second, "POPGATE_CPUPROFILE="+paths[nd]); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.backboneUp(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := h.g.startClient(t); err != nil {
			t.Fatal(err)
		}
		rep, err := h.g.iperf(t, 8, append([]string{"-O", "1", "-P", "1"}, c.args...)...)
		if err != nil {
			t.Errorf("two hops, profile run: %v", err)
		}
		for _, nd := range []*pgNode{h.pop, h.exit} {
			if err := nd.stop(60 * time.Second); err != nil {
				t.Fatal(err)
			}
			who := "the PoP (--roles pop)"
			if nd == h.exit {
				who = fmt.Sprintf("the exit (--roles exit, %s exit)", h.g.kind)
			}
			title := fmt.Sprintf("two hops, %s, %s — %.2f Gbit/s while profiled", who, c.what, rep.End.SumReceived.BitsPerSecond/1e9)
			if err := e.keepProfile(t, paths[nd], 15, false, title); err != nil {
				t.Fatal(err)
			}
		}
	}
}
