package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// bbEcho is a UDP server on the Internet host that answers each datagram with the address
// it came from: which exit carried it.
func bbEcho(t *testing.T, ns *testbed.Netns, addr string) {
	t.Helper()
	testbed.ServeUDP(t, ns, addr, func(req []byte, from net.Addr) []byte {
		return fmt.Appendf(nil, "%s %s", req, from.(*net.UDPAddr).AddrPort().Addr())
	})
}

// bbPinger sends a datagram every 100 ms from a client's namespace and records when each
// answer came and which exit it names.
type bbPinger struct {
	mu      sync.Mutex
	answers []bbAnswer
}

type bbAnswer struct {
	at   time.Time
	exit netip.Addr
}

func (p *bbPinger) run(ctx context.Context, t *testing.T, ns *testbed.Netns, to string) {
	c, err := ns.DialContext(ctx, "udp4", to)
	if err != nil {
		t.Error(err)
		return
	}
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				fmt.Fprintf(c, "%d", seq)
			}
		}
	}()
	buf := make([]byte, 200)
	for {
		n, err := c.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue // a refused send (ICMP) while the path is down
		}
		f := strings.Fields(string(buf[:n]))
		a, err := netip.ParseAddr(f[len(f)-1])
		if err != nil {
			continue
		}
		p.mu.Lock()
		p.answers = append(p.answers, bbAnswer{time.Now(), a})
		p.mu.Unlock()
	}
}

// last is the exit of the latest answer, if it came within the last second.
func (p *bbPinger) last() (netip.Addr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.answers) == 0 || time.Since(p.answers[len(p.answers)-1].at) > time.Second {
		return netip.Addr{}, false
	}
	return p.answers[len(p.answers)-1].exit, true
}

// gap is the longest time without an answer since from.
func (p *bbPinger) gap(from time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var longest time.Duration
	prev := time.Time{}
	for _, a := range p.answers {
		if a.at.Before(from) {
			prev = a.at
			continue
		}
		if !prev.IsZero() && a.at.Sub(prev) > longest {
			longest = a.at.Sub(prev)
		}
		prev = a.at
	}
	return longest
}

// e2eMetric reads one series (its name and labels as /metrics writes them, e.g.
// `popgate_nodes{state="connected"}`) from the metrics endpoint at its default address in
// ns.
func e2eMetric(ctx context.Context, ns *testbed.Netns, series string) (float64, error) {
	out, err := ns.Run(ctx, "curl", "-sS", "--fail", "--max-time", "5", "http://"+defaultMetricsAddr+"/metrics")
	if err != nil {
		return 0, fmt.Errorf("/metrics: %v: %s", err, out)
	}
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no %s", series)
}

// TestE2EBackboneFailover: a controller, a PoP with the role pop only, and two exits on the
// backbone and internet bridges. A stock client at the PoP reaches the Internet host through
// exit 1 (the first exit of the PoP's region), over UDP and TCP; exit 1 is killed and a datagram every 100 ms
// goes on through exit 2 with no gap over 3 s; exit 1 restarts and the traffic returns to it.
// The PoP's metrics show the link to exit 1 down and back, one failover each way
// (popgate_backbone_link_transitions_total), and the controller's show exit 1 offline and back.
func TestE2EBackboneFailover(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go")
	n := testbed.NewNetwork(t)
	mk := func(role, ifprefix string, on ...string) *netProc {
		return newNetProc(t, bin, n, role, ifprefix, on...)
	}
	ctrl := mk("bdctl", "bdc", testbed.Backbone)
	pop := mk("bdpop", "bdp", testbed.WAN, testbed.Backbone)
	x1 := mk("bdx", "bdx", testbed.Backbone, testbed.Internet)
	x2 := mk("bdx", "bdy", testbed.Backbone, testbed.Internet)
	cliNS := n.AddClient(t)
	bbEcho(t, n.Internet, testbed.InternetAddr4.String()+":45100")
	fs := testbed.ServeRandomFile(t, n.Internet, 8)

	const popPort = 45011
	ctrl.args = []string{"--listen-port", "45001", "--interface", ctrl.ifname,
		"--public-endpoint", fmt.Sprintf("%s:%d", pop.node.Addr4[testbed.WAN], popPort), "--web-addr", "127.0.0.1:0",
		"--exit-mode", "userspace", "--controller-addr", ctrl.node.Addr4[testbed.Backbone].String() + ":45000"}
	ctrl.cliLimit = 30 * time.Second
	ctrl.startController()
	// Each joined node has exit mode mode, its backbone on port bbPort of its backbone
	// address. Exit 1 has the kernel exit, exit 2 the userspace one.
	for _, c := range []struct {
		p            *netProc
		mode         string
		port, bbPort int
	}{{pop, "userspace", popPort, 45021}, {x1, "kernel", 45012, 45022}, {x2, "userspace", 45013, 45023}} {
		c.p.args = []string{"--listen-port", fmt.Sprint(c.port), "--interface", c.p.ifname,
			"--web-addr", "127.0.0.1:0", "--exit-mode", c.mode, "--backbone-port", fmt.Sprint(c.bbPort),
			"--backbone-endpoint", fmt.Sprintf("%s:%d", c.p.node.Addr4[testbed.Backbone], c.bbPort)}
	}
	inSync := func(name string) { t.Helper(); ctrl.waitInSync(30*time.Second, name) }
	pop.start("--join", ctrl.joinToken("pop", "", "p1"))
	inSync("p1")
	// The exits of the PoP's region, x1 first (the lower backbone ID).
	x1.start("--join", ctrl.joinToken("exit", "local", "x1"))
	inSync("x1")
	x2.start("--join", ctrl.joinToken("exit", "local", "x2"))
	inSync("x2")

	ctrl.mustCLI("tenant", "add", "acme")
	conf := ctrl.mustCLI("peer", "add", "--tenant", "acme", "laptop")
	inSync("p1")
	pop.waitLinksUp(20*time.Second, "the PoP's backbone links", 2)

	testbed.StartClient(t, cliNS.NS, "bdw"+n.Suffix, conf)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := new(bbPinger)
	go p.run(ctx, t, cliNS.NS, testbed.InternetAddr4.String()+":45100")
	through := func(exit *testbed.NetNode, within time.Duration, what string) {
		t.Helper()
		want := exit.Addr4[testbed.Internet]
		testbed.Poll(t, within, what, func(context.Context) error {
			if got, ok := p.last(); !ok || got != want {
				return fmt.Errorf("the latest answer came through %v (fresh: %v), want %v", got, ok, want)
			}
			return nil
		})
	}
	through(x1.node, 30*time.Second, "the client to reach the Internet host through exit 1")
	// TCP too: a client configured with MTU 1,420, larger than the backbone carries,
	// downloads through it (its SYN's MSS is clamped at the PoP, the server's SYN-ACK's too).
	dl, dlCancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer dlCancel()
	req, _ := http.NewRequestWithContext(dl, "GET", fs.URL(testbed.InternetAddr4), nil)
	resp, err := cliNS.NS.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("download through exit 1: %v", err)
	}
	h := sha256.New()
	size, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || size != fs.Size || hex.EncodeToString(h.Sum(nil)) != fs.SHA256 {
		t.Fatalf("download through exit 1: %d of %d bytes, %v, the file intact: %v", size, fs.Size, err, hex.EncodeToString(h.Sum(nil)) == fs.SHA256)
	}

	// metricIs polls the metrics in ns until each series has its value.
	metricIs := func(ns *testbed.NetNode, what string, want map[string]float64) {
		t.Helper()
		testbed.Poll(t, 30*time.Second, what, func(ctx context.Context) error {
			for series, v := range want {
				got, err := e2eMetric(ctx, ns.NS, series)
				if err != nil {
					return err
				}
				if got != v {
					return fmt.Errorf("%s is %v, want %v", series, got, v)
				}
			}
			return nil
		})
	}
	const (
		x1Up    = `popgate_backbone_link_up{node="x1"}`
		x1Ups   = `popgate_backbone_link_transitions_total{node="x1",to="up"}`
		x1Downs = `popgate_backbone_link_transitions_total{node="x1",to="down"}`
	)
	metricIs(pop.node, "the PoP's metrics to show its link to x1 up", map[string]float64{x1Up: 1, `popgate_backbone_link_up{node="x2"}`: 1})
	metricIs(ctrl.node, "the controller's metrics to show its 3 nodes connected", map[string]float64{`popgate_nodes{state="connected"}`: 3})
	mctx, mcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer mcancel()
	ups, err := e2eMetric(mctx, pop.node.NS, x1Ups)
	if err != nil {
		t.Fatal(err)
	}
	downs, err := e2eMetric(mctx, pop.node.NS, x1Downs)
	if err != nil {
		t.Fatal(err)
	}
	if ups < 1 {
		t.Errorf("%s is %v with the link up, want at least 1", x1Ups, ups)
	}
	if _, err := e2eMetric(mctx, pop.node.NS, `popgate_backbone_link_rtt_seconds{node="x1"}`); err != nil {
		t.Error(err)
	}

	killed := time.Now()
	if err := x1.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-x1.proc.Done()
	through(x2.node, 10*time.Second, "the traffic to move to exit 2")
	time.Sleep(time.Second)
	gap := p.gap(killed.Add(-time.Second))
	t.Logf("failover: the longest time without an answer, a datagram every 100 ms: %v", gap)
	if gap > 3*time.Second {
		t.Errorf("failover left a gap of %v, more than 3 s", gap)
	}

	metricIs(pop.node, "the PoP's metrics to count the link to x1 down once", map[string]float64{x1Up: 0, x1Downs: downs + 1, x1Ups: ups})
	metricIs(ctrl.node, "the controller's metrics to show x1 offline", map[string]float64{
		`popgate_node_connected{node="x1"}`: 0, `popgate_nodes{state="offline"}`: 1, `popgate_nodes{state="connected"}`: 2})

	x1.start()
	through(x1.node, 30*time.Second, "the traffic to return to exit 1 once it is back")
	metricIs(pop.node, "the PoP's metrics to count the link to x1 up again", map[string]float64{x1Up: 1, x1Ups: ups + 1, x1Downs: downs + 1})
	metricIs(ctrl.node, "the controller's metrics to show x1 back", map[string]float64{`popgate_node_connected{node="x1"}`: 1, `popgate_nodes{state="connected"}`: 3})
}
