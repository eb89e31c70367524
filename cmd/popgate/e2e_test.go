package main

// The end-to-end test of the appliance: the real popgate binary in the gateway namespace of
// the testbed topology, a stock WireGuard client configured only from the text that
// `popgate peer add` printed, and traffic through it to the "internet" namespace. Needs root
// and the Debian tools of `make test-deps`; skips without them (fails under CI=true when a
// tool is missing).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// e2eBinary is the popgate binary, built once by the first test that needs it into dir,
// which TestMain removes after the tests.
var e2eBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if e2eBinary.dir != "" {
		_ = os.RemoveAll(e2eBinary.dir)
	}
	os.Exit(code)
}

// e2eRequireBinary returns the popgate binary, building it on first use; it skips the test
// when the build fails (the message says why).
func e2eRequireBinary(t *testing.T) string {
	t.Helper()
	e2eBinary.once.Do(func() {
		e2eBinary.dir, e2eBinary.err = os.MkdirTemp("", "popgate-e2e-")
		if e2eBinary.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		bin := filepath.Join(e2eBinary.dir, "popgate")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			e2eBinary.err = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		e2eBinary.path = bin
	})
	if e2eBinary.path == "" {
		t.Fatalf("e2e: cannot build popgate: %v", e2eBinary.err)
	}
	return e2eBinary.path
}

// e2eNode is one `popgate serve` in the topology's Pop namespace and its admin CLI.
type e2eNode struct {
	t       *testing.T // the test that owns the node: its cleanup stops serve
	bin     string
	topo    *testbed.Topology
	dataDir string
	ifname  string
	port    int
	dns     string // --dns-upstream, when set
	mode    string // --exit-mode
	proc    *testbed.Proc
}

func (n *e2eNode) endpoint() string {
	return netip.AddrPortFrom(n.topo.PopCliAddr, uint16(n.port)).String()
}

func (n *e2eNode) serveArgs(ifname string, port int) []string {
	return []string{n.bin, "serve",
		"--data-dir", n.dataDir,
		"--listen-port", fmt.Sprint(port),
		"--public-endpoint", netip.AddrPortFrom(n.topo.PopCliAddr, uint16(port)).String(),
		"--interface", ifname,
		"--web-addr", "127.0.0.1:0",
		"--dns-upstream", n.dns,
		"--exit-mode", n.mode,
	}
}

// startUserspaceNode starts `popgate serve` (userspace exit) in a new topology, with a UDP
// echo server in Net as its DNS upstream, and returns the node and that traffic.
func startUserspaceNode(t *testing.T, ifprefix string, port int) (*e2eNode, *e2eTraffic) {
	t.Helper()
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping")
	topo := testbed.NewTopology(t)
	n := &e2eNode{t: t, bin: bin, topo: topo, dataDir: t.TempDir(), ifname: topo.Name(ifprefix), port: port, mode: "userspace"}
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, n.ifname+".sock")) })
	tr := &e2eTraffic{topo: topo, echo: testbed.StartUDPEcho(t, topo.Net)}
	n.dns = tr.echo.Addr(topo.NetAddr4).String()
	if err := n.start(); err != nil {
		t.Fatalf("e2e: popgate serve did not start: %v", err)
	}
	return n, tr
}

// start starts serve and waits until `popgate status` answers. The error carries the log.
func (n *e2eNode) start() error {
	p, err := n.topo.Pop.Start(n.t, n.serveArgs(n.ifname, n.port)...)
	if err != nil {
		return err
	}
	n.proc = p
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("popgate serve exited (%v) before it answered `popgate status`; its log:\n%s", err, p.LogTail(40))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, stderr, err := n.cli(ctx, "status")
		cancel()
		if err == nil {
			return nil
		}
		lastErr = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr))
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("`popgate status` did not succeed within 60 s (last: %v); serve's log:\n%s", lastErr, p.LogTail(40))
}

// cli runs `popgate args… --data-dir D` in the test's own namespace (the control socket is a
// file in the data dir).
func (n *e2eNode) cli(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	return e2eRun(ctx, n.bin, append(args, "--data-dir", n.dataDir)...)
}

// mustCLI is cli with a 30 s limit that fails t unless the command succeeds.
func (n *e2eNode) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stdout, stderr, err := n.cli(ctx, args...)
	if err != nil {
		t.Fatalf("popgate %s: %v\nstderr: %s\nstdout: %s", strings.Join(args, " "), err, stderr, stdout)
	}
	return stdout
}

func e2eRun(ctx context.Context, bin string, args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// e2ePeer is what the test reads of `popgate peer list --json`.
type e2ePeer struct {
	Tenant    string `json:"tenant"`
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	IPv4      string `json:"ipv4"`
	IPv6      string `json:"ipv6"`
	Enabled   bool   `json:"enabled"`
	Online    bool   `json:"online"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
}

func (n *e2eNode) peers(ctx context.Context) ([]e2ePeer, error) {
	stdout, stderr, err := n.cli(ctx, "peer", "list", "--json")
	if err != nil {
		return nil, fmt.Errorf("popgate peer list --json: %w: %s", err, strings.TrimSpace(stderr))
	}
	var wrapped struct {
		Peers []e2ePeer `json:"peers"`
	}
	if err := json.Unmarshal([]byte(stdout), &wrapped); err == nil {
		return wrapped.Peers, nil
	}
	var list []e2ePeer
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		return nil, fmt.Errorf("popgate peer list --json printed no peer list (%v): %s", err, stdout)
	}
	return list, nil
}

func (n *e2eNode) mustPeers(t *testing.T) []e2ePeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps, err := n.peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func e2eFindPeer(ps []e2ePeer, tenant, name string) (e2ePeer, bool) {
	for _, p := range ps {
		if p.Tenant == tenant && p.Name == name {
			return p, true
		}
	}
	return e2ePeer{}, false
}

// e2eOneLine checks that a failed command explained itself in exactly one line on stderr.
func e2eOneLine(stderr string) error {
	s := strings.TrimRight(stderr, "\n")
	if s == "" {
		return errors.New("stderr is empty")
	}
	if strings.Contains(s, "\n") {
		return fmt.Errorf("stderr has %d lines, want 1:\n%s", strings.Count(s, "\n")+1, stderr)
	}
	return nil
}

// e2eFailed checks that err is a non-zero exit (not a kill by the deadline).
func e2eFailed(err error) error {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return errors.New("exited 0, want non-zero")
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return nil
	default:
		return fmt.Errorf("did not exit by itself: %v", err)
	}
}

// e2eCheckConfig checks the client config that `popgate peer add` printed.
func e2eCheckConfig(t *testing.T, conf, endpoint string) *testbed.Config {
	t.Helper()
	cfg, err := testbed.ParseConfig(conf)
	if err != nil {
		t.Fatalf("peer add printed no valid wg-quick file: %v\n%s", err, conf)
	}
	in := cfg.Interface
	if in.PrivateKey == "" {
		t.Error("[Interface] has no PrivateKey")
	}
	var v4, v6 []netip.Prefix
	for _, p := range in.Addresses {
		switch {
		case p.Addr().Is4() && netip.MustParsePrefix("100.64.0.0/10").Contains(p.Addr()):
			v4 = append(v4, p)
		case p.Addr().Is6() && netip.MustParsePrefix("fd00::/8").Contains(p.Addr()):
			v6 = append(v6, p)
		}
	}
	if len(in.Addresses) != 2 || len(v4) != 1 || len(v6) != 1 {
		t.Errorf("Address = %v, want one IPv4 in 100.64.0.0/10 and one IPv6 in fd00::/8", in.Addresses)
	}
	if in.MTU <= 0 {
		t.Error("[Interface] has no MTU")
	}
	if len(cfg.Peers) != 1 {
		t.Fatalf("config has %d [Peer] sections, want 1:\n%s", len(cfg.Peers), conf)
	}
	p := cfg.Peers[0]
	if p.Endpoint != endpoint {
		t.Errorf("Endpoint = %q, want %q", p.Endpoint, endpoint)
	}
	allowed := slices.Clone(p.AllowedIPs)
	slices.SortFunc(allowed, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	if want := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}; !slices.Equal(allowed, want) {
		t.Errorf("AllowedIPs = %v, want %v", p.AllowedIPs, want)
	}
	if p.PersistentKeepalive != 25 {
		t.Errorf("PersistentKeepalive = %d, want 25", p.PersistentKeepalive)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := testbed.WGQuickStrip(ctx, "pgcheck", conf); err != nil {
		t.Errorf("wg-quick does not accept the config: %v", err)
	}
	if t.Failed() {
		t.Fatalf("the config:\n%s", conf)
	}
	return cfg
}

// e2eTraffic drives traffic from Cli to Net through the client's tunnel.
type e2eTraffic struct {
	topo  *testbed.Topology
	files *testbed.FileServer
	echo  *testbed.UDPEchoServer
}

// check waits (generously) for the first ping of each family, then downloads the file with a
// checksum compare (when download is set), echoes UDP and pings, over IPv4 and IPv6.
func (tr *e2eTraffic) check(t *testing.T, download bool) {
	t.Helper()
	for _, addr := range []netip.Addr{tr.topo.NetAddr4, tr.topo.NetAddr6} {
		testbed.Poll(t, 60*time.Second, fmt.Sprintf("ping %s through the tunnel", addr), func(ctx context.Context) error {
			return testbed.PingN(ctx, tr.topo.Cli, addr, 1, time.Second)
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if download {
			start := time.Now()
			if err := tr.files.CheckDownload(ctx, tr.topo.Cli, addr); err != nil {
				t.Errorf("download: %v", err)
			} else {
				t.Logf("downloaded %d MiB from %s in %v", tr.files.Size>>20, addr, time.Since(start).Round(time.Millisecond))
			}
		}
		ectx, ecancel := context.WithTimeout(ctx, 15*time.Second)
		if err := testbed.EchoUDP(ectx, tr.topo.Cli, tr.echo.Addr(addr)); err != nil {
			t.Errorf("udp echo: %v", err)
		}
		ecancel()
		if err := testbed.Ping(ctx, tr.topo.Cli, addr); err != nil {
			t.Errorf("ping: %v", err)
		}
		cancel()
	}
}

// works reports whether one quick UDP echo over IPv4 gets through.
func (tr *e2eTraffic) works() error {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	return testbed.EchoUDP(ctx, tr.topo.Cli, tr.echo.Addr(tr.topo.NetAddr4))
}

// waitBlocked polls until traffic no longer gets through, then checks that it stays so.
func (tr *e2eTraffic) waitBlocked(t *testing.T, what string) {
	t.Helper()
	start := time.Now()
	testbed.Poll(t, 30*time.Second, "traffic to stop after "+what, func(context.Context) error {
		if tr.works() == nil {
			return errors.New("udp echo still answered")
		}
		return nil
	})
	t.Logf("traffic stopped within %v of %s (one probe takes up to 1.5 s)", time.Since(start).Round(100*time.Millisecond), what)
	if tr.works() == nil {
		t.Errorf("udp echo answered again after %s", what)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if testbed.PingN(ctx, tr.topo.Cli, tr.topo.NetAddr6, 1, time.Second) == nil {
		t.Errorf("ping over IPv6 answered after %s", what)
	}
}

func TestE2EApplianceUserspace(t *testing.T) { testE2EAppliance(t, "userspace") }

func TestE2EApplianceKernel(t *testing.T) { testE2EAppliance(t, "kernel") }

// testE2EAppliance is the README walk-through with a stock client, in one exit mode.
func testE2EAppliance(t *testing.T, mode string) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping")
	topo := testbed.NewTopology(t)
	n := &e2eNode{t: t, bin: bin, topo: topo, dataDir: t.TempDir(), ifname: topo.Name("pg"), port: 51821, mode: mode}
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, n.ifname+".sock")) })
	tr := &e2eTraffic{
		topo:  topo,
		files: testbed.ServeRandomFile(t, topo.Net, 20),
		echo:  testbed.StartUDPEcho(t, topo.Net),
	}
	// The in-tunnel resolver forwards to this stand-in for an upstream.
	upstream := testbed.StartDNS(t, topo.Net)
	n.dns = upstream.Addr(topo.NetAddr4).String()
	if err := n.start(); err != nil {
		t.Fatalf("e2e: popgate serve did not start: %v", err)
	}
	var st struct {
		Device struct {
			ExitMode string `json:"exit_mode"`
		} `json:"device"`
	}
	if err := json.Unmarshal([]byte(n.mustCLI(t, "status", "--json")), &st); err != nil || st.Device.ExitMode != mode {
		t.Fatalf("status --json: exit mode %q (%v), want %q", st.Device.ExitMode, err, mode)
	}

	n.mustCLI(t, "tenant", "add", "acme")
	conf := n.mustCLI(t, "peer", "add", "--tenant", "acme", "laptop")
	cfg := e2eCheckConfig(t, conf, n.endpoint())
	clientPub, err := testbed.PublicKey(cfg.Interface.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	// The client is configured from popgate's text only, and never again.
	testbed.StartClient(t, topo.Cli, topo.Name("wgc"), conf)

	if !t.Run("traffic", func(t *testing.T) { tr.check(t, true) }) {
		return
	}

	t.Run("in-tunnel DNS", func(t *testing.T) {
		if len(cfg.Interface.DNS) != 2 {
			t.Fatalf("config DNS = %v, want the node's IPv4 and IPv6 overlay addresses", cfg.Interface.DNS)
		}
		// At both of the node's addresses, over UDP and over TCP (a client's retry after a
		// truncated answer): the peer's own name (the tenant's zone, from the node), a
		// public name (forwarded to the upstream, then cached), a name of another tenant's
		// domain (nobody's: NXDOMAIN, never forwarded), and the reverse of the peer's
		// address.
		var laptop4 string
		for _, a := range cfg.Interface.Addresses {
			if a.Addr().Is4() {
				laptop4 = a.Addr().String()
			}
		}
		rev, _ := dns.ReverseAddr(laptop4)
		for _, over := range []struct {
			proto   string
			resolve func(context.Context, *testbed.Netns, netip.AddrPort, string, uint16) (string, []string, error)
		}{{"UDP", testbed.Resolve}, {"TCP", testbed.ResolveTCP}} {
			for _, d := range cfg.Interface.DNS {
				server := netip.AddrPortFrom(netip.MustParseAddr(d), 53)
				for _, c := range []struct {
					name  string
					qtype uint16
					want  string
				}{
					{"laptop.acme.internal", dns.TypeA, "NOERROR " + laptop4},
					{"www.example.com", dns.TypeA, "NOERROR " + testbed.DNSAnswer.String()},
					{"laptop.globex.internal", dns.TypeA, "NXDOMAIN"},
					{rev, dns.TypePTR, "NOERROR laptop.acme.internal."},
				} {
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					rcode, answers, err := over.resolve(ctx, topo.Cli, server, c.name, c.qtype)
					cancel()
					if got := strings.TrimSpace(rcode + " " + strings.Join(answers, " ")); err != nil || got != c.want {
						t.Errorf("%s at %s over %s: %q (%v), want %q", c.name, d, over.proto, got, err, c.want)
					}
				}
			}
		}
		if q := upstream.Queries(); q != 1 {
			t.Errorf("the upstream was asked %d times, want once (www.example.com, then from the cache)", q)
		}
	})

	t.Run("DNS blocklist", func(t *testing.T) { e2eBlocklist(t, n, cfg.Interface.DNS) })

	t.Run("peer list", func(t *testing.T) {
		var got e2ePeer
		testbed.Poll(t, 30*time.Second, "peer list to show laptop online with traffic", func(ctx context.Context) error {
			ps, err := n.peers(ctx)
			if err != nil {
				return err
			}
			p, ok := e2eFindPeer(ps, "acme", "laptop")
			if !ok {
				return fmt.Errorf("no acme/laptop in %+v", ps)
			}
			got = p
			if !p.Online || p.RxBytes == 0 || p.TxBytes == 0 {
				return fmt.Errorf("acme/laptop: %+v", p)
			}
			return nil
		})
		if got.PublicKey != clientPub || !got.Enabled {
			t.Errorf("acme/laptop = %+v, want enabled with public key %s", got, clientPub)
		}
		var addrs []string
		for _, p := range cfg.Interface.Addresses {
			addrs = append(addrs, p.Addr().String())
		}
		if !slices.Contains(addrs, got.IPv4) || !slices.Contains(addrs, got.IPv6) {
			t.Errorf("acme/laptop addresses %s, %s are not the config's %v", got.IPv4, got.IPv6, addrs)
		}
	})

	t.Run("wg show", func(t *testing.T) {
		out := topo.Pop.MustRun(t, "wg", "show", n.ifname)
		if !strings.Contains(out, "peer: "+clientPub) {
			t.Errorf("wg show %s does not list peer %s:\n%s", n.ifname, clientPub, out)
		}
		pub := strings.TrimSpace(topo.Pop.MustRun(t, "wg", "show", n.ifname, "public-key"))
		if pub != cfg.Peers[0].PublicKey {
			t.Errorf("device public key %s, config's [Peer] PublicKey %s", pub, cfg.Peers[0].PublicKey)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		before := n.mustPeers(t)
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"unknown tenant", []string{"peer", "add", "--tenant", "nosuchtenant", "phone"}},
			{"duplicate name", []string{"peer", "add", "--tenant", "acme", "laptop"}},
			{"malformed public key", []string{"peer", "add", "--tenant", "acme", "--public-key", "not-a-key", "phone"}},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			stdout, stderr, err := n.cli(ctx, tc.args...)
			cancel()
			if err := e2eFailed(err); err != nil {
				t.Errorf("%s: popgate %s: %v", tc.name, strings.Join(tc.args, " "), err)
			}
			if err := e2eOneLine(stderr); err != nil {
				t.Errorf("%s: popgate %s: %v", tc.name, strings.Join(tc.args, " "), err)
			}
			if stdout != "" {
				t.Errorf("%s: popgate %s printed on stdout: %s", tc.name, strings.Join(tc.args, " "), stdout)
			}
			t.Logf("%s: %s", tc.name, strings.TrimSpace(stderr))
		}
		after := n.mustPeers(t)
		key := func(p e2ePeer) string { return p.Tenant + "/" + p.Name + "/" + p.PublicKey }
		if !slices.Equal(e2eMap(before, key), e2eMap(after, key)) {
			t.Errorf("peer list changed by refused commands:\nbefore %+v\nafter  %+v", before, after)
		}
	})

	t.Run("second serve", func(t *testing.T) {
		ifname2 := topo.Name("pgx")
		t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, ifname2+".sock")) })
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := topo.Pop.Command(ctx, n.serveArgs(ifname2, n.port+1)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("a second serve on the same data dir still ran after 60 s; its output:\n%s%s", stdout.String(), stderr.String())
		}
		if err := e2eFailed(err); err != nil {
			t.Errorf("second serve on the same data dir: %v", err)
		}
		msg := stderr.String()
		if !strings.Contains(msg, n.dataDir) && !strings.Contains(strings.ToLower(msg), "already") {
			t.Errorf("second serve's message names neither the data dir nor what is already there:\n%s", msg)
		}
		t.Logf("second serve said: %s", strings.TrimSpace(msg))
		if exited, err := n.proc.Exited(); exited {
			t.Fatalf("the first serve exited (%v)", err)
		}
		n.mustCLI(t, "status")
		testbed.Poll(t, 30*time.Second, "traffic through the first serve", func(context.Context) error { return tr.works() })
	})

	if !t.Run("restart", func(t *testing.T) {
		switch err := n.proc.Stop(30 * time.Second); {
		case errors.Is(err, testbed.ErrKilled):
			t.Errorf("serve did not exit within 30 s of SIGTERM")
		case err != nil:
			t.Errorf("serve exited with %v after SIGTERM, want a clean exit", err)
		}
		if err := n.start(); err != nil {
			t.Fatal(err)
		}
		// The same client, not reconfigured: its old session is gone on the server side, and
		// wireguard-go handshakes again after at most ~15 s without answers.
		tr.check(t, true)
	}) {
		return
	}

	t.Run("disable and enable", func(t *testing.T) {
		n.mustCLI(t, "peer", "disable", "--tenant", "acme", "laptop")
		tr.waitBlocked(t, "peer disable")
		if p, ok := e2eFindPeer(n.mustPeers(t), "acme", "laptop"); !ok || p.Enabled {
			t.Errorf("after disable, peer list has acme/laptop = %+v (found %v), want disabled", p, ok)
		}
		n.mustCLI(t, "peer", "enable", "--tenant", "acme", "laptop")
		testbed.Poll(t, 60*time.Second, "traffic after peer enable", func(context.Context) error { return tr.works() })
		tr.check(t, false)
	})

	t.Run("remove", func(t *testing.T) {
		n.mustCLI(t, "peer", "remove", "--tenant", "acme", "laptop")
		tr.waitBlocked(t, "peer remove")
		if p, ok := e2eFindPeer(n.mustPeers(t), "acme", "laptop"); ok {
			t.Errorf("after remove, peer list still has %+v", p)
		}
		testbed.Poll(t, 10*time.Second, "wg show to drop the removed peer", func(ctx context.Context) error {
			out, err := topo.Pop.Run(ctx, "wg", "show", n.ifname)
			if err != nil {
				return err
			}
			if strings.Contains(out, clientPub) {
				return fmt.Errorf("wg show %s still lists %s", n.ifname, clientPub)
			}
			return nil
		})
	})
}

func e2eMap[T any](xs []T, f func(T) string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	slices.Sort(out)
	return out
}

// TestE2EStatusWithoutDaemon: status against a data dir where nothing runs fails in one line.
func TestE2EStatusWithoutDaemon(t *testing.T) {
	bin := e2eRequireBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stdout, stderr, err := e2eRun(ctx, bin, "status", "--data-dir", t.TempDir())
	if err := e2eFailed(err); err != nil {
		t.Errorf("popgate status on an empty data dir: %v", err)
	}
	if err := e2eOneLine(stderr); err != nil {
		t.Errorf("popgate status on an empty data dir: %v", err)
	}
	if stdout != "" {
		t.Errorf("popgate status on an empty data dir printed on stdout: %s", stdout)
	}
	t.Logf("status said: %s", strings.TrimSpace(stderr))
}

// e2eBlocklist: a blocklist of tenant acme, which the controller fetches from a server on
// the PoP's loopback (the CLI is an owner's, whose lists may be on private addresses), is
// NXDOMAIN for acme's client, subdomains included, and resolves for a client of another
// tenant, globex, at each of the node's DNS addresses, over UDP and TCP; the count shows in
// the metrics; removed, the names resolve for acme again.
func e2eBlocklist(t *testing.T, n *e2eNode, dnsAddrs []string) {
	topo := n.topo
	ln, err := topo.Pop.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "# ads\n0.0.0.0 ads.example.com\n||tracker.example.net^\n127.0.0.1 localhost\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	n.mustCLI(t, "tenant", "add", "globex")
	gconf := n.mustCLI(t, "peer", "add", "--tenant", "globex", "desktop")
	globex := topo.NewClient(t)
	gif := topo.Name("dbgc")
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, gif+".sock")) })
	testbed.StartClient(t, globex, gif, gconf)

	n.mustCLI(t, "dns", "blocklist", "add", "--tenant", "acme", "--url", "http://"+ln.Addr().String()+"/hosts", "ads")
	if list := n.mustCLI(t, "dns", "blocklist", "list", "--tenant", "acme"); !strings.Contains(list, "ads") || !strings.Contains(list, "ok ") {
		t.Errorf("dns blocklist list:\n%s", list)
	}
	start := time.Now()
	first := netip.AddrPortFrom(netip.MustParseAddr(dnsAddrs[0]), 53)
	testbed.Poll(t, 30*time.Second, "ads.example.com to be NXDOMAIN for acme", func(ctx context.Context) error {
		if rcode, _, err := testbed.Resolve(ctx, topo.Cli, first, "ads.example.com", dns.TypeA); err != nil || rcode != "NXDOMAIN" {
			return fmt.Errorf("%s (%v)", rcode, err)
		}
		return nil
	})
	t.Logf("a blocklist added was in force %s later", time.Since(start).Round(10*time.Millisecond))
	answer := "NOERROR " + testbed.DNSAnswer.String()
	// Over UDP and over TCP (the resolver's too, not a relay to the upstream).
	for _, over := range []struct {
		proto   string
		resolve func(context.Context, *testbed.Netns, netip.AddrPort, string, uint16) (string, []string, error)
	}{{"UDP", testbed.Resolve}, {"TCP", testbed.ResolveTCP}} {
		for _, d := range dnsAddrs {
			server := netip.AddrPortFrom(netip.MustParseAddr(d), 53)
			for _, c := range []struct {
				who   string
				ns    *testbed.Netns
				name  string
				qtype uint16
				want  string
			}{
				{"acme", topo.Cli, "ads.example.com", dns.TypeA, "NXDOMAIN"},
				{"acme", topo.Cli, "www.ads.example.com", dns.TypeA, "NXDOMAIN"},
				{"acme", topo.Cli, "cdn.tracker.example.net", dns.TypeAAAA, "NXDOMAIN"},
				{"acme", topo.Cli, "example.com", dns.TypeA, answer},
				{"globex", globex, "ads.example.com", dns.TypeA, answer},
				{"globex", globex, "www.ads.example.com", dns.TypeA, answer},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				rcode, answers, err := over.resolve(ctx, c.ns, server, c.name, c.qtype)
				cancel()
				if got := strings.TrimSpace(rcode + " " + strings.Join(answers, " ")); err != nil || got != c.want {
					t.Errorf("%s's client: %s at %s over %s: %q (%v), want %q", c.who, c.name, d, over.proto, got, err, c.want)
				}
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	blocked, err := e2eMetric(ctx, topo.Pop, `popgate_dns_queries_total{result="blocked"}`)
	cancel()
	if err != nil || blocked < 12 {
		t.Errorf("popgate_dns_queries_total{result=\"blocked\"} = %v (%v), want at least 12", blocked, err)
	}

	n.mustCLI(t, "dns", "blocklist", "remove", "--tenant", "acme", "ads")
	testbed.Poll(t, 30*time.Second, "ads.example.com to resolve for acme once its list is gone", func(ctx context.Context) error {
		rcode, answers, err := testbed.Resolve(ctx, topo.Cli, first, "ads.example.com", dns.TypeA)
		if got := strings.TrimSpace(rcode + " " + strings.Join(answers, " ")); err != nil || got != answer {
			return fmt.Errorf("%q (%v)", got, err)
		}
		return nil
	})
}
