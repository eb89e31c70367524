//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
	"github.com/popgate/popgate/store"
)

// Gateway kinds, in the order the table shows them.
const (
	kindBaseline  = "baseline"
	kindUserspace = "userspace"
	kindKernel    = "kernel"
)

var kinds = []string{kindBaseline, kindUserspace, kindKernel}

// kindTitle is a kind's column title.
func kindTitle(k string) string {
	switch k {
	case kindBaseline:
		return "stock wireguard-go + kernel forwarding"
	case kindUserspace:
		return "popgate, userspace exit"
	case kindKernel:
		return "popgate, kernel exit"
	}
	return k
}

// iperfPort is where the iperf3 server of each Net namespace listens.
const iperfPort = 5201

// gw is one gateway under test with a topology of its own (so that the three never share a
// namespace, a route or a firewall table), one stock client in its Cli and an iperf3 server
// in its Net.
type gw struct {
	kind      string
	topo      *testbed.Topology
	endpoint  netip.AddrPort
	serverPub store.Key
	conf      string // the client's wg-quick file
	client    *testbed.Client
	clients   int // clients started so far, for unique interface names
	iperfSrv  *testbed.Proc
	wgGo      string // upstream wireguard-go, for clients (and the baseline server)
	// clientPrefix starts the client's interface names (default "c"); iperfPort is where
	// the iperf3 server listens (default iperfPort).
	clientPrefix string
	iperfPort    int

	node  *pgNode              // popgate only
	stock *testbed.StockServer // baseline only
}

// startClient (re)starts the stock client from g.conf under a new interface name and waits
// until a ping crosses the tunnel.
func (g *gw) startClient(t testing.TB) error {
	t.Helper()
	if g.client != nil {
		_ = g.client.Stop()
		g.client = nil
	}
	g.clients++
	prefix := g.clientPrefix
	if prefix == "" {
		prefix = "c"
	}
	name := g.topo.Name(fmt.Sprintf("%s%d", prefix, g.clients))
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, name+".sock")) })
	g.client = testbed.StartClientWith(t, g.topo.Cli, name, g.conf, testbed.ClientOptions{WireGuardGo: g.wgGo})
	return g.ready(60 * time.Second)
}

// ready waits until a ping from Cli reaches Net through the tunnel.
func (g *gw) ready(timeout time.Duration) error {
	err := testbed.PollErr(context.Background(), timeout, func(ctx context.Context) error {
		return testbed.PingN(ctx, g.topo.Cli, g.topo.NetAddr4, 1, time.Second)
	})
	if err != nil {
		return fmt.Errorf("%s: no ping through the tunnel within %v: %w", g.kind, timeout, err)
	}
	return nil
}

// iperfAt is the port of the iperf3 server in Net.
func (g *gw) iperfAt() string {
	if g.iperfPort != 0 {
		return strconv.Itoa(g.iperfPort)
	}
	return strconv.Itoa(iperfPort)
}

// startIperf (re)starts `iperf3 -s` in Net and waits until it listens.
func (g *gw) startIperf(t testing.TB) error {
	t.Helper()
	if g.iperfSrv != nil {
		_ = g.iperfSrv.Stop(5 * time.Second)
	}
	p, err := g.topo.Net.Start(t, "iperf3", "-s", "-p", g.iperfAt())
	if err != nil {
		return err
	}
	g.iperfSrv = p
	return testbed.PollErr(context.Background(), 10*time.Second, func(ctx context.Context) error {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("iperf3 -s exited (%v): %s", err, p.LogTail(5))
		}
		out, err := g.topo.Net.Run(ctx, "ss", "-Hltn", "sport = :"+g.iperfAt())
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			return errors.New("iperf3 -s does not listen yet")
		}
		return nil
	})
}

// pgNode is one `popgate serve` in a topology's Pop (or in ns) and its admin CLI.
type pgNode struct {
	bin     string
	topo    *testbed.Topology
	dataDir string
	ifname  string
	port    int
	mode    string
	proc    *testbed.Proc
	// ns, when set, is where serve runs instead of topo.Pop; args, when set, are serve's
	// flags after --data-dir instead of the single node's of serveArgs (the two-hop nodes).
	ns   *testbed.Netns
	args []string
	// unprivileged: serve runs as nobody without capabilities, as the .deb's unit runs the
	// userspace exit (setUnprivileged).
	unprivileged bool
}

// unprivilegedUID is the user an unprivileged serve runs as: nobody.
const unprivilegedUID = "65534"

// setUnprivileged makes n run as the .deb's unit runs the userspace exit: as a user without
// capabilities (so no SO_RCVBUFFORCE: its sockets get at most net.core.rmem_max), its data
// dir and binary where that user reaches them, ping through unprivileged ICMP sockets (the
// package's sysctl opens them).
func (n *pgNode) setUnprivileged(t testing.TB) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgbench-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "popgate")
	data := filepath.Join(dir, "data")
	for _, c := range [][]string{{"cp", n.bin, bin}, {"chmod", "0755", dir, bin}, {"mkdir", "-m", "0700", data}, {"chown", unprivilegedUID + ":" + unprivilegedUID, data}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	n.bin, n.dataDir, n.unprivileged = bin, data, true
	n.topo.Pop.MustRun(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
}

func (n *pgNode) serveArgs() []string {
	if n.args != nil {
		return append([]string{n.bin, "serve", "--data-dir", n.dataDir}, n.args...)
	}
	return []string{n.bin, "serve",
		"--data-dir", n.dataDir,
		"--listen-port", strconv.Itoa(n.port),
		"--public-endpoint", netip.AddrPortFrom(n.topo.PopCliAddr, uint16(n.port)).String(),
		"--interface", n.ifname,
		"--web-addr", "127.0.0.1:0",
		// The DNS case's upstream stand-in (dns_test.go); the other cases never query it.
		"--dns-upstream", netip.AddrPortFrom(n.topo.NetAddr4, dnsUpstreamPort).String(),
		"--exit-mode", n.mode,
	}
}

// start starts serve with extra environment variables ("K=V") and waits until `popgate
// status` answers. It returns how long that took. The error carries the log's tail.
func (n *pgNode) start(t testing.TB, timeout time.Duration, env ...string) (time.Duration, error) {
	t.Helper()
	sock := filepath.Join(testbed.UAPIDir, n.ifname+".sock")
	_ = os.Remove(sock)
	t.Cleanup(func() { _ = os.Remove(sock) })
	args := n.serveArgs()
	if n.unprivileged {
		args = append([]string{"setpriv", "--reuid=" + unprivilegedUID, "--regid=" + unprivilegedUID, "--clear-groups",
			"--inh-caps=-all", "--bounding-set=-all", "--"}, args...)
	}
	if extra := strings.Fields(os.Getenv("BENCH_SERVE_ENV")); len(extra) > 0 {
		env = append(extra, env...)
	}
	if len(env) > 0 {
		args = append(append([]string{"env"}, env...), args...)
	}
	began := time.Now()
	ns := n.ns
	if ns == nil {
		ns = n.topo.Pop
	}
	p, err := ns.Start(t, args...)
	if err != nil {
		return 0, err
	}
	n.proc = p
	deadline := began.Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if exited, err := p.Exited(); exited {
			return 0, fmt.Errorf("popgate serve (%s) exited (%v) before `popgate status` answered; its log:\n%s", n.mode, err, p.LogTail(30))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := n.cli(ctx, "status")
		cancel()
		if err == nil {
			return time.Since(began), nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("popgate serve (%s): `popgate status` did not answer within %v (last: %v); its log:\n%s", n.mode, timeout, last, p.LogTail(30))
}

// stop stops serve (SIGTERM, then SIGKILL after timeout); a clean exit is nil.
func (n *pgNode) stop(timeout time.Duration) error {
	if n.proc == nil {
		return nil
	}
	err := n.proc.Stop(timeout)
	if err != nil {
		return fmt.Errorf("popgate serve (%s) did not stop cleanly: %w; its log:\n%s", n.mode, err, n.proc.LogTail(20))
	}
	return nil
}

// cli runs `popgate ARGS --data-dir DIR` and returns stdout; the error carries stderr.
func (n *pgNode) cli(ctx context.Context, args ...string) (string, error) {
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, n.bin, append(args, "--data-dir", n.dataDir)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("popgate %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), nil
}

// mustCLI is cli with a time limit that fails t on error.
func (n *pgNode) mustCLI(t testing.TB, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := n.cli(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pgStatus is what the benchmark reads of `popgate status --json`.
type pgStatus struct {
	Node struct {
		Goroutines int    `json:"goroutines"`
		RSSBytes   uint64 `json:"rss_bytes"`
	} `json:"node"`
	Device struct {
		PublicKey string `json:"public_key"`
		ExitMode  string `json:"exit_mode"`
	} `json:"device"`
	Peers struct {
		Total   int `json:"total"`
		Enabled int `json:"enabled"`
		Online  int `json:"online"`
	} `json:"peers"`
	Tenants []struct {
		Name  string `json:"name"`
		Flows int    `json:"flows"`
		Rules []struct {
			Line int    `json:"line"`
			Rule string `json:"rule"`
			Hits uint64 `json:"hits"`
		} `json:"rules"`
	} `json:"tenants"`
}

// status returns `popgate status --json`.
func (n *pgNode) status(ctx context.Context) (pgStatus, error) {
	var st pgStatus
	out, err := n.cli(ctx, "status", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("popgate status --json: %w: %.200s", err, out)
	}
	return st, nil
}

// withStore stops nothing: serve must not run. It opens the node's store, calls fn and closes
// the store again.
func (n *pgNode) withStore(fn func(s *store.Store) error) error {
	if n.proc != nil {
		if exited, _ := n.proc.Exited(); !exited {
			return errors.New("popgate serve still runs: stop it before opening its store")
		}
	}
	ctx := context.Background()
	s, err := store.Open(ctx, store.Options{Path: filepath.Join(n.dataDir, "popgate.db")})
	if err != nil {
		return err
	}
	err = fn(s)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// procStatus reads fields of /proc/PID/status (e.g. "VmRSS", "Threads").
func procStatus(pid int, keys ...string) (map[string]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				out[k] = strings.TrimSpace(v)
			}
		}
	}
	return out, nil
}

// cpuSeconds is the CPU time (user + system) the processes pids have used so far, summed.
func cpuSeconds(pids ...int) (float64, error) {
	var sum float64
	for _, pid := range pids {
		s, err := procCPUSeconds(pid)
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}

// procCPUSeconds is the CPU time (user + system) pid has used so far.
func procCPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name (which may hold spaces) in parentheses: state is
	// the first, utime and stime the 12th and 13th.
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	const clockTicks = 100 // USER_HZ on Linux
	return (utime + stime) / clockTicks, nil
}

// serverPid is the gateway's process: popgate serve or the baseline's wireguard-go.
func (g *gw) serverPid() int {
	if g.node != nil {
		return g.node.proc.Pid()
	}
	return g.stock.Proc.Pid()
}

// apiGet sends GET path to serve's control socket, as the CLI does but without the CLI's
// limit on the answer's size, and returns the body.
func (n *pgNode) apiGet(ctx context.Context, path string) ([]byte, error) {
	sock := filepath.Join(n.dataDir, "popgate.sock")
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://popgate"+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, body)
	}
	return body, err
}

// rssMiB is VmRSS of pid in MiB.
func rssMiB(pid int) (float64, error) {
	st, err := procStatus(pid, "VmRSS")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(st["VmRSS"])
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("VmRSS of pid %d: %q", pid, st["VmRSS"])
	}
	kb, err := strconv.ParseFloat(f[0], 64)
	return kb / 1024, err
}

// policyText returns a tenant policy of n rules for the throughput cases: n-1 deny rules that
// the benchmark traffic does not match (destinations, ports and sources of other networks,
// each form a third of them), then the allow rule that passes it. The firewall evaluates the
// whole list for each new flow that reaches the last rule.
func policyText(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %d rules: %d that the benchmark traffic does not match, then the one that allows it\ndefault deny\n", n, n-1)
	for i := range n - 1 {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "deny any -> 10.%d.%d.0/24 tcp %d\n", i/250, i%250, 1000+i)
		case 1:
			fmt.Fprintf(&b, "deny any -> 172.16.%d.%d/32 udp %d-%d\n", i/250, i%250, 2000+i, 2010+i)
		case 2:
			fmt.Fprintf(&b, "deny 100.100.%d.%d/32 -> any\n", i/250, i%250)
		}
	}
	b.WriteString("allow any -> 198.51.100.0/24, 2001:db8:1::/64\n")
	return b.String()
}
