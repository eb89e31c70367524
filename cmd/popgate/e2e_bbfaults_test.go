package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// udpRelay forwards UDP between the nodes that send to it and one target, each way after
// a delay it can change: netem is not in this kernel, so a relay in the path stands in for a
// long or slow link. A node that advertises the relay as its backbone endpoint is reached
// through it; each sender gets a socket of its own towards the target, so the target's
// answers (to whatever address they came from, as WireGuard roams) find their way back.
type udpRelay struct {
	t      *testing.T
	ns     *testbed.Netns
	pc     net.PacketConn
	target *net.UDPAddr
	delay  atomic.Int64 // each way, nanoseconds

	mu    sync.Mutex
	conns map[string]net.PacketConn // by sender
}

func startRelay(t *testing.T, ns *testbed.Netns, listen netip.AddrPort, target netip.AddrPort) *udpRelay {
	t.Helper()
	pc, err := ns.ListenPacket("udp4", listen.String())
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{t: t, ns: ns, pc: pc, target: net.UDPAddrFromAddrPort(target), conns: map[string]net.PacketConn{}}
	t.Cleanup(r.close)
	go r.run()
	return r
}

func (r *udpRelay) close() {
	r.pc.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

// later sends b with write after the relay's delay.
func (r *udpRelay) later(b []byte, write func([]byte)) {
	if d := time.Duration(r.delay.Load()); d > 0 {
		time.AfterFunc(d, func() { write(b) })
		return
	}
	write(b)
}

func (r *udpRelay) run() {
	buf := make([]byte, 2048)
	for {
		n, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		c := r.conns[from.String()]
		if c == nil {
			host, _, _ := net.SplitHostPort(r.pc.LocalAddr().String())
			if c, err = r.ns.ListenPacket("udp4", net.JoinHostPort(host, "0")); err != nil {
				r.mu.Unlock()
				r.t.Errorf("relay: %v", err)
				return
			}
			r.conns[from.String()] = c
			go func(c net.PacketConn, back net.Addr) { // the target's answers, back to the sender
				buf := make([]byte, 2048)
				for {
					n, _, err := c.ReadFrom(buf)
					if err != nil {
						return
					}
					r.later(append([]byte(nil), buf[:n]...), func(b []byte) { r.pc.WriteTo(b, back) })
				}
			}(c, from)
		}
		r.mu.Unlock()
		r.later(append([]byte(nil), buf[:n]...), func(b []byte) { c.WriteTo(b, r.target) })
	}
}

// answeredShare is the share of the pinger's datagrams (one every 100 ms) answered between
// from and to.
func (p *bbPinger) answeredShare(from, to time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, a := range p.answers {
		if !a.at.Before(from) && a.at.Before(to) {
			n++
		}
	}
	return float64(n) / (to.Sub(from).Seconds() * 10)
}

// TestE2EBackboneFaults: a PoP (role pop) whose one exit is reached over a backbone link
// that turns bad — 20 % loss each way (iptables statistic), a round trip of 600 ms (a relay
// adding 300 ms each way: more than the probes' 500 ms timeout), and a 2 Mbit/s bottleneck
// under a 20 Mbit/s flood (tbf) — while a stock client sends a datagram every 100 ms through
// it to the Internet host. With no other exit to move to, the PoP keeps sending through the
// link it has: traffic goes on at the rate the link lets through. The figures of each fault
// are logged for the closing note.
func TestE2EBackboneFaults(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "iptables", "tc", "iperf3")
	n := testbed.NewNetwork(t)
	mk := func(role, ifprefix string, on ...string) *netProc {
		return newNetProc(t, bin, n, role, ifprefix, on...)
	}
	ctrl := mk("bfctl", "bfc", testbed.Backbone)
	pop := mk("bfpop", "bfp", testbed.WAN, testbed.Backbone)
	x1 := mk("bfx", "bfx", testbed.Backbone, testbed.Internet)
	relayNS := n.AddNode(t, "bfr", testbed.Backbone)
	cliNS := n.AddClient(t)
	bbEcho(t, n.Internet, testbed.InternetAddr4.String()+":45200")

	const popPort, popBB, x1BB = 45211, 45221, 45222
	relayAddr := relayNS.Addr4[testbed.Backbone]
	// Each node advertises the relay as its backbone endpoint: whichever way a packet goes
	// between the PoP and the exit, it crosses the relay.
	toX1 := startRelay(t, relayNS.NS, netip.AddrPortFrom(relayAddr, 45250), netip.AddrPortFrom(x1.node.Addr4[testbed.Backbone], x1BB))
	toPoP := startRelay(t, relayNS.NS, netip.AddrPortFrom(relayAddr, 45251), netip.AddrPortFrom(pop.node.Addr4[testbed.Backbone], popBB))

	ctrl.args = []string{"--roles", "controller", "--web-addr", "127.0.0.1:0", "--metrics-addr", "",
		"--public-endpoint", fmt.Sprintf("%s:%d", pop.node.Addr4[testbed.WAN], popPort),
		"--controller-addr", ctrl.node.Addr4[testbed.Backbone].String() + ":45201"}
	for _, c := range []struct {
		p                       *netProc
		port, bbPort, relayPort int
	}{{pop, popPort, popBB, 45251}, {x1, 45212, x1BB, 45250}} {
		c.p.args = []string{"--listen-port", fmt.Sprint(c.port), "--interface", c.p.ifname,
			"--web-addr", "127.0.0.1:0", "--metrics-addr", "", "--exit-mode", "userspace", "--backbone-port", fmt.Sprint(c.bbPort),
			"--backbone-endpoint", fmt.Sprintf("%s:%d", relayAddr, c.relayPort)}
	}
	ctrl.startController()
	pop.start("--join", ctrl.joinToken("pop", "local", "p1"))
	x1.start("--join", ctrl.joinToken("exit", "local", "x1"))
	ctrl.waitInSync(60*time.Second, "p1", "x1")
	ctrl.mustCLI("tenant", "add", "acme")
	conf := ctrl.mustCLI("peer", "add", "--tenant", "acme", "laptop")
	ctrl.waitInSync(10*time.Second, "p1", "x1")

	link := func() bbLink {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		links, err := pop.backboneLinks(ctx)
		if err != nil && !errors.Is(err, errNoBackbone) {
			t.Fatalf("status of the PoP: %v", err)
		}
		for _, l := range links {
			if l.Node == "x1" {
				return l
			}
		}
		return bbLink{Node: "x1", State: "none"}
	}
	downs := func() int { return strings.Count(pop.proc.Log(), "name=x1 state=down") }
	testbed.Poll(t, 30*time.Second, "the PoP's link to x1 up", func(context.Context) error {
		if l := link(); l.State != "up" {
			return fmt.Errorf("link %+v", l)
		}
		return nil
	})

	testbed.StartClient(t, cliNS.NS, "bfw"+n.Suffix, conf)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := new(bbPinger)
	go p.run(ctx, t, cliNS.NS, testbed.InternetAddr4.String()+":45200")
	testbed.Poll(t, 30*time.Second, "the client to reach the Internet host through x1", func(context.Context) error {
		if _, ok := p.last(); !ok {
			return fmt.Errorf("no answer within the last second")
		}
		return nil
	})
	// phase runs a fault for d and reports what the client and the link went through.
	phase := func(name string, d time.Duration) (share float64, gap time.Duration, l bbLink, flaps int) {
		t.Helper()
		before := downs()
		from := time.Now()
		time.Sleep(d)
		to := time.Now()
		share, gap, l, flaps = p.answeredShare(from, to), p.gap(from), link(), downs()-before
		t.Logf("%s, %v: %.0f %% of the datagrams answered, longest gap %v; the link %s (rtt %.1f ms, loss %d %%), down %d times",
			name, d, share*100, gap.Round(10*time.Millisecond), l.State, float64(l.RTTMicros)/1000, l.LossPercent, flaps)
		return
	}
	if share, _, _, _ := phase("a clean backbone", 5*time.Second); share < 0.9 {
		t.Errorf("on a clean backbone only %.0f %% of the datagrams were answered", share*100)
	}

	// 20 % loss each way between the PoP and the relay: both the tunnel's packets and the
	// probes. Three probes missed in a row (0.8 % of the time) take the link Down; the
	// datagrams must go on through it (about 64 % answered), not stop while it is Down.
	relay := relayAddr.String()
	pop.node.NS.MustRun(t, "iptables", "-I", "OUTPUT", "-p", "udp", "-d", relay, "-m", "statistic", "--mode", "random", "--probability", "0.2", "-j", "DROP")
	pop.node.NS.MustRun(t, "iptables", "-I", "INPUT", "-p", "udp", "-s", relay, "-m", "statistic", "--mode", "random", "--probability", "0.2", "-j", "DROP")
	share, _, _, _ := phase("20 % loss each way", 30*time.Second)
	if share < 0.4 {
		t.Errorf("with 20 %% loss each way only %.0f %% of the datagrams were answered (64 %% expected): did the link's state stop the traffic?", share*100)
	}
	pop.node.NS.MustRun(t, "iptables", "-F", "OUTPUT")
	pop.node.NS.MustRun(t, "iptables", "-F", "INPUT")

	// A round trip of 600 ms, above the probes' 500 ms timeout: the probes' wait follows the
	// round trip and the link comes back Up; the datagrams go on meanwhile.
	toX1.delay.Store(int64(150 * time.Millisecond))
	toPoP.delay.Store(int64(150 * time.Millisecond))
	phase("a 300 ms round trip", 5*time.Second)
	toX1.delay.Store(int64(300 * time.Millisecond))
	toPoP.delay.Store(int64(300 * time.Millisecond))
	phase("a 600 ms round trip, settling", 10*time.Second)
	share, _, l, _ := phase("a 600 ms round trip", 10*time.Second)
	if share < 0.8 || l.State != "up" {
		t.Errorf("with a 600 ms round trip %.0f %% of the datagrams were answered and the link is %s: want most answered and the link up", share*100, l.State)
	}
	toX1.delay.Store(0)
	toPoP.delay.Store(0)

	// A 2 Mbit/s bottleneck at the relay (tbf, up to 300 ms of queue) under a 20 Mbit/s UDP
	// flood from the client: the probes queue behind the flood.
	relayNS.NS.MustRun(t, "tc", "qdisc", "replace", "dev", relayNS.Links[testbed.Backbone], "root", "tbf", "rate", "2mbit", "burst", "32kbit", "latency", "300ms")
	srv := n.Internet.Command(context.Background(), "iperf3", "-s", "-1", "-p", "45202", "-B", testbed.InternetAddr4.String())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	time.Sleep(300 * time.Millisecond)
	flood := cliNS.NS.Command(context.Background(), "iperf3", "-c", testbed.InternetAddr4.String(), "-p", "45202", "-u", "-b", "20M", "-l", "1200", "-t", "15")
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	share, _, _, _ = phase("2 Mbit/s under a 20 Mbit/s flood", 14*time.Second)
	flood.Wait()
	relayNS.NS.MustRun(t, "tc", "qdisc", "del", "dev", relayNS.Links[testbed.Backbone], "root")
	if share < 0.3 {
		t.Errorf("through a 2 Mbit/s bottleneck under a flood only %.0f %% of the datagrams were answered", share*100)
	}

	// Clean again: the link is Up and every datagram answered.
	testbed.Poll(t, 30*time.Second, "the link up again", func(context.Context) error {
		if l := link(); l.State != "up" {
			return fmt.Errorf("link %+v", l)
		}
		return nil
	})
	if share, _, _, _ := phase("clean again", 5*time.Second); share < 0.9 {
		t.Errorf("after the faults only %.0f %% of the datagrams were answered", share*100)
	}
}
