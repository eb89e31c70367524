//go:build bench

package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/cmd/internal/testbed"
	"github.com/popgate/popgate/store"
)

// The DNS case (phase dns; issue 17): dnsperf in a site's LAN behind one stock client asks
// the tunnel's DNS address, 100.64.0.1, for peer names, cached public names and names seen
// once (forwarded). popgate's in-tunnel resolver (userspace exit: the resolver is the same
// for both exits) against the bench's stock gateway with dnsmasq on its tunnel address.
const (
	// dnsUpstreamPort is where the upstream stand-in listens in Net; popgate's
	// --dns-upstream points there (serveArgs).
	dnsUpstreamPort = 47153
	// dnsPeers peer names are stored in the tenant (popgate) and in the hosts file (dnsmasq).
	dnsPeers = 1000
	// dnsCachedNames is the small set of public names asked over and over.
	dnsCachedNames = 100
	// dnsClients is dnsperf's sockets (-c) and outstanding queries (-q); each socket's flow
	// leaves from an address of its own in the site's LAN (SNAT in the site's namespace):
	// popgate limits each client address to 1,000 queries a second, one address alone would
	// measure that limit.
	dnsClients = 200
	dnsSecs    = 5
	// dnsPacedQPS is the rate of the latency runs (-Q): a busy office, far below saturation.
	dnsPacedQPS = 1000
	// dnsFwdNames bounds the unique names of one run (dnsperf -n 1 stops at the end).
	dnsFwdNames = 400_000
)

var (
	dnsServer   = netip.MustParseAddr("100.64.0.1")
	dnsSiteLAN  = netip.MustParsePrefix("10.77.0.0/24")
	dnsStandInA = "203.0.113.1" // what the stand-in answers every A question under example.com with
)

const dnsGroup = "DNS through the tunnel (dnsperf in a site's LAN behind one stock client, 200 sockets each from an address of its own, asking 100.64.0.1: popgate's resolver (the userspace exit's node; the same in kernel mode), or dnsmasq on the stock server; peer names: 1,000 of the tenant, A and AAAA; cached names: 100 public names asked over and over; forwarded names: each asked once, answered by a stand-in in Net; unpaced: 5 s without -Q; latency: 5 s at 1,000 queries/s)"

// dnsSide is one gateway's DNS setup: the site's namespace with its connector (a stock
// client) and dnsperf, and the stock resolver when there is one.
type dnsSide struct {
	g       *gw
	ns      *testbed.Netns // the site's LAN: the connector and dnsperf
	conf    string         // the connector's wg-quick file
	client  *testbed.Client
	clients int
	dnsmasq *testbed.Proc // baseline only: the resolver in Pop
}

// pids are the processes whose CPU time counts as the gateway's: popgate serve, or the
// baseline's wireguard-go and dnsmasq.
func (d *dnsSide) pids() []int {
	if d.dnsmasq != nil {
		return []int{d.g.serverPid(), d.dnsmasq.Pid()}
	}
	return []int{d.g.serverPid()}
}

// startClient (re)starts the site's connector and spreads dnsperf's flows over the LAN's
// addresses: SNAT rules that give each new flow towards port 53 the next address (the
// statistic match in nth mode, the classic round robin: rule i takes 1 in N-i of what is
// left). It waits until the resolver answers.
func (d *dnsSide) startClient(t testing.TB, wgGo string) error {
	t.Helper()
	if d.client != nil {
		_ = d.client.Stop()
	}
	d.clients++
	name := d.g.topo.Name(fmt.Sprintf("bd%d", d.clients))
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, name+".sock")) })
	d.client = testbed.StartClientWith(t, d.ns, name, d.conf, testbed.ClientOptions{WireGuardGo: wgGo})
	var b strings.Builder
	b.WriteString("*nat\n")
	for i := range dnsClients {
		fmt.Fprintf(&b, "-A POSTROUTING -o %s -p udp --dport 53 -m statistic --mode nth --every %d --packet 0 -j SNAT --to-source %s\n",
			name, dnsClients-i, lanAddr(i))
	}
	b.WriteString("COMMIT\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := d.ns.Command(ctx, "iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: SNAT rules in the site's namespace: %v: %s", d.g.kind, err, out)
	}
	return testbed.PollErr(ctx, 60*time.Second, func(ctx context.Context) error {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, _, err := testbed.Resolve(rctx, d.ns, netip.AddrPortFrom(dnsServer, 53), "n0.cached.example.com", dns.TypeA)
		return err
	})
}

// lanAddr is the i-th address of the site's LAN (from .1).
func lanAddr(i int) netip.Addr {
	a := dnsSiteLAN.Addr().As4()
	a[3] = byte(i + 1)
	return netip.AddrFrom4(a)
}

// dnsmasqArgs is dnsmasq in the foreground, no config file, pid file, /etc/hosts or
// resolv.conf, bound to listen:port alone (not on loopback, nowhere else), logging to stderr.
func dnsmasqArgs(listen netip.Addr, port int, extra ...string) []string {
	return append([]string{"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=", "--user=root",
		"--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=" + listen.String(),
		"--port=" + strconv.Itoa(port), "--log-facility=-"}, extra...)
}

// startDnsmasq starts dnsmasq in ns and waits until it listens on listen:port.
func startDnsmasq(t testing.TB, ns *testbed.Netns, listen netip.Addr, port int, extra ...string) (*testbed.Proc, error) {
	t.Helper()
	p, err := ns.Start(t, dnsmasqArgs(listen, port, extra...)...)
	if err != nil {
		return nil, err
	}
	err = testbed.PollErr(context.Background(), 10*time.Second, func(ctx context.Context) error {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("dnsmasq exited (%v): %s", err, p.LogTail(10))
		}
		out, err := ns.Run(ctx, "ss", "-Hlun", fmt.Sprintf("sport = :%d", port))
		if err != nil {
			return err
		}
		if !strings.Contains(out, netip.AddrPortFrom(listen, uint16(port)).String()) {
			return fmt.Errorf("dnsmasq does not listen on %s yet", netip.AddrPortFrom(listen, uint16(port)))
		}
		return nil
	})
	return p, err
}

// startStandIn starts the upstream stand-in in g's Net: dnsmasq answering every A question
// under example.com with dnsStandInA, TTL 1 h, from its configuration (no cache, no
// upstream), on dnsUpstreamPort.
func startStandIn(t testing.TB, g *gw) error {
	_, err := startDnsmasq(t, g.topo.Net, g.topo.NetAddr4, dnsUpstreamPort,
		"--address=/example.com/"+dnsStandInA, "--local-ttl=3600", "--cache-size=0")
	if err != nil {
		return fmt.Errorf("%s: the upstream stand-in: %w", g.kind, err)
	}
	return nil
}

// setupDNSPopgate stores dnsPeers peers in the tenant bench (serve stopped, as the handshake
// case does), starts serve again, adds the site's connector and its route through the CLI,
// and returns the peers of the tenant (for the baseline's hosts file).
func (e *env) setupDNSPopgate(t *testing.T, d *dnsSide) []store.Peer {
	t.Helper()
	g := d.g
	privs, err := genKeys(dnsPeers)
	if err != nil {
		t.Fatal(err)
	}
	pubs := publicKeys(privs)
	if err := g.node.stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	var peers []store.Peer
	err = g.node.withStore(func(s *store.Store) error {
		ctx := context.Background()
		for i := range pubs {
			if _, err := s.AddPeer(ctx, store.NewPeer{TenantName: "bench", Name: fmt.Sprintf("p%05d", i), PublicKey: &pubs[i]}); err != nil {
				return err
			}
		}
		peers, err = s.ListPeers(ctx, "bench")
		return err
	})
	if err != nil {
		t.Fatalf("%s: store the peers: %v", g.kind, err)
	}
	if _, err := g.node.start(e.root, 120*time.Second); err != nil {
		t.Fatal(err)
	}
	d.conf = g.node.mustCLI(t, 30*time.Second, "peer", "add", "--tenant", "bench", "--site", "dnsbench", "--site-prefix", dnsSiteLAN.String(), "dnssite")
	g.node.mustCLI(t, 30*time.Second, "route", "add", "--tenant", "bench", "--via", "site:dnsbench", dnsSiteLAN.String())
	if err := g.startClient(e.root); err != nil { // serve restarted: a new session for the other phases
		t.Fatal(err)
	}
	return peers
}

// setupDNSBaseline starts dnsmasq on the stock server's tunnel address in Pop: the peers'
// names from a hosts file (TTL 60 s, popgate's), nothing under internal. forwarded,
// everything else forwarded to the stand-in, as many forwarded queries in flight as popgate
// allows; and the site's connector as a stock site peer. The cache keeps dnsmasq's default
// size (150 answers; the cached names fit): with unique names a larger one costs dnsmasq's
// forwarding dearly (about half the rate with 10,000, measured on loopback).
func (e *env) setupDNSBaseline(t *testing.T, d *dnsSide, peers []store.Peer) {
	t.Helper()
	g := d.g
	var b strings.Builder
	for _, p := range peers {
		name := strings.ToLower(p.Name) + ".bench.internal"
		fmt.Fprintf(&b, "%s %s\n%s %s\n", p.IPv4, name, p.IPv6, name)
	}
	hosts := filepath.Join(t.TempDir(), "peers.hosts")
	if err := os.WriteFile(hosts, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := startDnsmasq(t, g.topo.Pop, dnsServer, 53,
		"--addn-hosts="+hosts, "--local=/internal/", "--local-ttl=60",
		"--server="+g.topo.NetAddr4.String()+"#"+strconv.Itoa(dnsUpstreamPort),
		"--dns-forward-max=8192")
	if err != nil {
		t.Fatalf("baseline: dnsmasq in Pop: %v", err)
	}
	d.dnsmasq = p
	d.conf = g.stock.AddSitePeer(t, dnsSiteLAN)
}

// dnsperfResult is what the bench reads of a dnsperf run.
type dnsperfResult struct {
	sent, completed, lost int
	rcodes                map[string]int
	runtime, qps          float64
	avgLatency, maxLat    float64   // s, from the summary
	latencies             []float64 // ms, one per answer (with -v)
}

func (r dnsperfResult) noerror() int { return r.rcodes["NOERROR"] }

var (
	dpSent    = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	dpDone    = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	dpLost    = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	dpRcodes  = regexp.MustCompile(`Response codes:\s+(.*)`)
	dpRcode   = regexp.MustCompile(`([A-Z0-9]+) (\d+) \(`)
	dpRuntime = regexp.MustCompile(`Run time \(s\):\s+([0-9.]+)`)
	dpQPS     = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	dpLatency = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+) \(min [0-9.]+, max ([0-9.]+)\)`)
)

// parseDNSPerf reads dnsperf's output: the summary and, with -v, one line per answer
// ("> NOERROR name A 0.000818": the latency in seconds) or timeout ("> T name A").
func parseDNSPerf(out io.Reader) (dnsperfResult, error) {
	r := dnsperfResult{rcodes: map[string]int{}}
	var summary strings.Builder
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "> ") {
			f := strings.Fields(line)
			if len(f) == 5 && f[1] != "T" && f[1] != "I" {
				if s, err := strconv.ParseFloat(f[4], 64); err == nil {
					r.latencies = append(r.latencies, s*1e3)
				}
			}
			continue
		}
		summary.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	s := summary.String()
	num := func(re *regexp.Regexp) (float64, bool) {
		m := re.FindStringSubmatch(s)
		if m == nil {
			return 0, false
		}
		f, err := strconv.ParseFloat(m[1], 64)
		return f, err == nil
	}
	sent, ok1 := num(dpSent)
	done, ok2 := num(dpDone)
	rt, ok3 := num(dpRuntime)
	if !ok1 || !ok2 || !ok3 {
		return r, fmt.Errorf("no dnsperf statistics in its output: %.500s", s)
	}
	lost, _ := num(dpLost)
	r.sent, r.completed, r.lost, r.runtime = int(sent), int(done), int(lost), rt
	r.qps, _ = num(dpQPS)
	if m := dpLatency.FindStringSubmatch(s); m != nil {
		r.avgLatency, _ = strconv.ParseFloat(m[1], 64)
		r.maxLat, _ = strconv.ParseFloat(m[2], 64)
	}
	if m := dpRcodes.FindStringSubmatch(s); m != nil {
		for _, c := range dpRcode.FindAllStringSubmatch(m[1], -1) {
			n, _ := strconv.Atoi(c[2])
			r.rcodes[c[1]] += n
		}
	}
	return r, nil
}

// dnsperf runs dnsperf in the site's namespace against the tunnel's DNS address with the
// queries of file and args (-l, -Q, -v, …).
func (d *dnsSide) dnsperf(file string, args ...string) (dnsperfResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"dnsperf", "-s", dnsServer.String(), "-d", file, "-c", strconv.Itoa(dnsClients),
		"-q", strconv.Itoa(dnsClients), "-t", "2"}, args...)
	cmd := d.ns.Command(ctx, full...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return dnsperfResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return dnsperfResult{}, err
	}
	r, perr := parseDNSPerf(stdout)
	_, _ = io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	switch {
	case werr != nil:
		return r, fmt.Errorf("%s: %w: %.300s", strings.Join(full, " "), werr, stderr.String())
	case perr != nil:
		return r, fmt.Errorf("%s: %w", strings.Join(full, " "), perr)
	case r.sent == 0:
		return r, fmt.Errorf("%s: sent nothing: %.300s", strings.Join(full, " "), stderr.String())
	}
	return r, nil
}

// writeQueries writes dnsperf's input: one "name type" a line.
func writeQueries(path string, lines func(w *bufio.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	lines(w)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// dnsCase is one kind of name: where dnsperf's input comes from.
type dnsCase struct {
	name string
	// file returns the input of one run (unpaced: many queries; paced: fewer); the
	// forwarded case makes new names for every run.
	file func(paced bool) (string, error)
	// repeat: dnsperf may read the input again and again (-n 1 otherwise: a name asked
	// twice would be cached). Inputs not repeated are removed after their run.
	repeat bool
	// warm: one pass through the input before anything is counted (the cache's names).
	warm bool
	// want is what the first A question of the input must get (checked before the runs).
	question, want string
}

// done removes the input of a run when it is not read again.
func (c dnsCase) done(file string) {
	if !c.repeat {
		_ = os.Remove(file)
	}
}

func (e *env) dnsCases(t *testing.T, dir string) []dnsCase {
	t.Helper()
	peerFile := filepath.Join(dir, "peers.txt")
	cachedFile := filepath.Join(dir, "cached.txt")
	err := writeQueries(peerFile, func(w *bufio.Writer) {
		for i := range dnsPeers {
			fmt.Fprintf(w, "p%05d.bench.internal A\np%05d.bench.internal AAAA\n", i, i)
		}
	})
	if err == nil {
		err = writeQueries(cachedFile, func(w *bufio.Writer) {
			for i := range dnsCachedNames {
				fmt.Fprintf(w, "n%d.cached.example.com A\n", i)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	return []dnsCase{
		{name: "peer names", repeat: true,
			file: func(bool) (string, error) { return peerFile, nil }, question: "p00000.bench.internal"},
		{name: "cached names", repeat: true, warm: true,
			file: func(bool) (string, error) { return cachedFile, nil }, question: "n0.cached.example.com", want: dnsStandInA},
		{name: "forwarded names",
			file: func(paced bool) (string, error) {
				runs++
				n := dnsFwdNames
				if paced {
					n = dnsPacedQPS * (dnsSecs + 2)
				}
				var r [6]byte
				_, _ = rand.Read(r[:])
				label := hex.EncodeToString(r[:])
				path := filepath.Join(dir, fmt.Sprintf("fwd-%d.txt", runs))
				return path, writeQueries(path, func(w *bufio.Writer) {
					for i := range n {
						fmt.Fprintf(w, "%s-%d.fwd.example.com A\n", label, i)
					}
				})
			},
			question: "check.fwd.example.com", want: dnsStandInA},
	}
}

// phaseDNS is issue 17's bench: dnsperf through the tunnel against popgate's resolver
// (userspace exit) and against dnsmasq behind the stock gateway, alternating; then a CPU
// profile of serve during each case.
func (e *env) phaseDNS(t *testing.T) {
	var missing []string
	for _, tool := range []string{"dnsperf", "dnsmasq", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("bench: missing %s: `make bench` installs them (Debian packages dnsperf and dnsmasq-base)", strings.Join(missing, ", "))
	}
	base, pg := &dnsSide{g: e.gw(kindBaseline)}, &dnsSide{g: e.gw(kindUserspace)}
	sides := []*dnsSide{base, pg}
	var peers []store.Peer
	step(t, "set up DNS: the stand-in, popgate's peers and site, dnsmasq, the sites' clients", func() {
		for _, d := range sides {
			if err := startStandIn(t, d.g); err != nil {
				t.Fatal(err)
			}
		}
		peers = e.setupDNSPopgate(t, pg)
		e.setupDNSBaseline(t, base, peers)
		for _, d := range sides {
			d.ns = d.g.topo.NewClient(t)
			if err := d.startClient(t, e.wgGo); err != nil {
				t.Fatal(err)
			}
		}
	})
	want := map[string]string{}
	for _, p := range peers {
		want[strings.ToLower(p.Name)+".bench.internal"] = p.IPv4.String()
	}
	dir := t.TempDir()
	cases := e.dnsCases(t, dir)
	cases[0].want = want[cases[0].question]

	// Both answer alike before anything is measured.
	for _, d := range sides {
		for _, c := range cases {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			rcode, ans, err := testbed.Resolve(ctx, d.ns, netip.AddrPortFrom(dnsServer, 53), c.question, dns.TypeA)
			cancel()
			if err != nil || rcode != "NOERROR" || len(ans) != 1 || ans[0] != c.want {
				t.Fatalf("%s: %s A from the site: %s %v (%v), want NOERROR %s", d.g.kind, c.question, rcode, ans, err, c.want)
			}
		}
	}
	e.res.note("DNS case: %s, %s.", toolVersion("dnsperf", "-h"), toolVersion("dnsmasq", "--version"))

	bySide := map[*gw]*dnsSide{base.g: base, pg.g: pg}
	gws := []*gw{base.g, pg.g}
	for _, c := range cases {
		qps := e.res.def(dnsGroup, c.name+": NOERROR answers a second, unpaced", "1/s", 0, +1, 1.0)
		bad := e.res.def(dnsGroup, c.name+": unpaced, lost or not NOERROR", "%", 2, 0, 0)
		cpu := e.res.def(dnsGroup, c.name+": unpaced, CPU of the gateway's processes per 1,000 answers", "CPU ms", 1, -1, 0)
		p50 := e.res.def(dnsGroup, c.name+": latency p50", "ms", 3, -1, 1.10)
		p99 := e.res.def(dnsGroup, c.name+": latency p99", "ms", 3, -1, 1.10)
		if c.warm {
			for _, d := range sides { // the cache holds the names before anything is counted
				if err := d.warm(c); err != nil {
					t.Fatalf("%s: %v", d.g.kind, err)
				}
			}
		}
		e.roundsOn(gws, func(g *gw, _ int) {
			d := bySide[g]
			e.measure(t, g, []*row{qps, bad, cpu, p50, p99}, func() ([]float64, error) {
				return d.run(t, c)
			})
		})
	}
	e.dnsCounters(t, pg)
	e.dnsProfile(t, pg, cases)
}

// warm asks every name of c's input once.
func (d *dnsSide) warm(c dnsCase) error {
	file, err := c.file(false)
	if err == nil {
		_, err = d.dnsperf(file, "-n", "1")
	}
	if err != nil {
		return fmt.Errorf("warm the cache: %w", err)
	}
	return nil
}

// run is one unpaced and one paced run of case c: answered queries a second, lost or not
// NOERROR (%), CPU ms per 1,000 answers, latency p50 and p99 (ms) of the paced run.
func (d *dnsSide) run(t *testing.T, c dnsCase) ([]float64, error) {
	file, err := c.file(false)
	if err != nil {
		return nil, err
	}
	args := []string{"-l", strconv.Itoa(dnsSecs)}
	if !c.repeat {
		args = append(args, "-n", "1")
	}
	cpu0, err := cpuSeconds(d.pids()...)
	if err != nil {
		return nil, err
	}
	r, err := d.dnsperf(file, args...)
	c.done(file)
	if err != nil {
		return nil, err
	}
	cpu1, err := cpuSeconds(d.pids()...)
	if err != nil {
		return nil, err
	}
	if !c.repeat && r.sent >= dnsFwdNames {
		return nil, fmt.Errorf("dnsperf asked all %d unique names before %d s: raise dnsFwdNames", dnsFwdNames, dnsSecs)
	}
	ok := r.noerror()
	t.Logf("%-9s %s: unpaced: %d sent, %d completed, %d lost, rcodes %v, %.0f q/s (dnsperf), average latency %.2f ms, max %.1f ms",
		d.g.kind, c.name, r.sent, r.completed, r.lost, r.rcodes, r.qps, r.avgLatency*1e3, r.maxLat*1e3)
	if ok == 0 {
		return nil, fmt.Errorf("no NOERROR answer of %d queries (rcodes %v)", r.sent, r.rcodes)
	}
	vals := []float64{float64(ok) / r.runtime, 100 * float64(r.sent-ok) / float64(r.sent), (cpu1 - cpu0) * 1e6 / float64(ok)}

	if file, err = c.file(true); err != nil {
		return nil, err
	}
	args = []string{"-l", strconv.Itoa(dnsSecs), "-Q", strconv.Itoa(dnsPacedQPS), "-v"}
	if !c.repeat {
		args = append(args, "-n", "1")
	}
	p, err := d.dnsperf(file, args...)
	c.done(file)
	if err != nil {
		return nil, err
	}
	if len(p.latencies) == 0 {
		return nil, fmt.Errorf("the paced run got no answer (%d sent, rcodes %v)", p.sent, p.rcodes)
	}
	if p.noerror() < p.sent*99/100 {
		return nil, fmt.Errorf("the paced run: %d of %d queries lost or not NOERROR (rcodes %v)", p.sent-p.noerror(), p.sent, p.rcodes)
	}
	return append(vals, percentile(p.latencies, 50), percentile(p.latencies, 99)), nil
}

// dnsCounters notes what popgate's resolver counted (its /metrics, in Pop): the cache and
// the forwarding were where the cases say, and no query met the per-client rate limit.
func (e *env) dnsCounters(t *testing.T, d *dnsSide) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9586/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.g.topo.Pop.HTTPClient().Do(req)
	if err != nil {
		t.Errorf("popgate's /metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("popgate's /metrics: %v", err)
		return
	}
	counts := map[string]string{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, `popgate_dns_queries_total{result="`); ok {
			if k, v, ok := strings.Cut(rest, `"} `); ok {
				counts[k] = v
			}
		}
	}
	var parts []string
	for _, k := range []string{"local", "cache", "forwarded", "failed", "rate_limited", "malformed"} {
		parts = append(parts, fmt.Sprintf("%s %s", k, counts[k]))
	}
	t.Logf("popgate's resolver: %s", strings.Join(parts, ", "))
	e.res.note("DNS case: popgate's resolver counted (popgate_dns_queries_total, the whole phase): %s.", strings.Join(parts, ", "))
	if n, _ := strconv.ParseFloat(counts["rate_limited"], 64); n > 0 {
		t.Errorf("popgate's resolver dropped %.0f queries over the per-client rate: the load was not spread over enough addresses, and the figures measure the limit", n)
	}
}

// dnsProfile restarts serve with POPGATE_CPUPROFILE for each case: the connector's
// handshake, the cache warmed (cached names), one unpaced run.
func (e *env) dnsProfile(t *testing.T, d *dnsSide, cases []dnsCase) {
	g := d.g
	for i, c := range cases {
		path := filepath.Join(e.profDir, fmt.Sprintf("cpu-dns-%d.pprof", i))
		if err := g.node.stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := g.node.start(t, 60*time.Second, "POPGATE_CPUPROFILE="+path); err != nil {
			t.Fatal(err)
		}
		if err := d.startClient(t, e.wgGo); err != nil {
			t.Fatal(err)
		}
		if c.warm {
			if err := d.warm(c); err != nil {
				t.Errorf("profile: %v", err)
			}
		}
		file, err := c.file(false)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"-l", strconv.Itoa(dnsSecs)}
		if !c.repeat {
			args = append(args, "-n", "1")
		}
		r, err := d.dnsperf(file, args...)
		c.done(file)
		if err != nil {
			t.Errorf("profile run: %v", err)
		}
		if err := g.node.stop(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		title := fmt.Sprintf("popgate serve, userspace exit, DNS, %s — %.0f answers/s while profiled", c.name, float64(r.noerror())/max(r.runtime, 1e-9))
		if err := e.keepProfile(t, path, 20, false, title); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.node.start(e.root, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := g.startClient(e.root); err != nil {
		t.Fatal(err)
	}
}

// toolVersion is the first line of `tool arg` that names a version, or the tool's name.
func toolVersion(tool, arg string) string {
	out, _ := exec.Command(tool, arg).CombinedOutput()
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.Contains(strings.ToLower(line), "version") {
			v := strings.TrimSpace(strings.Split(line, "Copyright")[0])
			if !strings.Contains(strings.ToLower(v), tool) {
				v = tool + " " + v
			}
			return v
		}
	}
	return tool
}
