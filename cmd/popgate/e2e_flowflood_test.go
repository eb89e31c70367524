package main

// The end-to-end test of fair shares under a flood of new flows (issue 15, finding 1): one
// stock client of tenant acme opens tens of thousands of UDP flows through the userspace
// exit as fast as it can, while a stock client of tenant bravo keeps opening new TCP
// connections and downloading, /healthz is asked and the CLI talks to the node. Everything
// of bravo's must succeed, and afterwards status must show acme's flood bounded, counted by
// bound, and the log must say so in a line or two, not thousands. Needs root and the tools
// of `make test-deps`.
//
// It reads `status --json` into its own struct, not webui's, so that it also builds against
// a popgate without the bounds and fails there for what the flood does.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

const (
	// floodFlows and floodFor bound the flood: new UDP flows (one datagram each to another
	// port of the "internet" host, where nothing listens) and how long it may take.
	floodFlows = 40000
	floodFor   = 12 * time.Second
	// floodOpenFiles is serve's open files limit (soft and hard): a small appliance's, and
	// the same on every machine the test runs on. Without bounds, the flood's sockets take
	// all of it in a few seconds.
	floodOpenFiles = 8192
	// floodWebAddr is serve's web address inside its namespace, for /healthz.
	floodWebAddr = "127.0.0.1:8080"
)

// floodStatus is what the test reads of `popgate status --json`.
type floodStatus struct {
	Node struct {
		Goroutines int    `json:"goroutines"`
		RSSBytes   uint64 `json:"rss_bytes"`
	} `json:"node"`
	Device struct {
		ExitSockets      int `json:"exit_sockets"`
		ExitSocketBudget int `json:"exit_socket_budget"`
	} `json:"device"`
	Tenants []struct {
		Name      string `json:"name"`
		Flows     int    `json:"flows"`
		ExitFlows struct {
			TCP, UDP, ICMP int
		} `json:"exit_flows"`
		MaxFlowsPerPeer int               `json:"max_flows_per_peer"`
		Drops           map[string]uint64 `json:"drops"`
		Evicted         map[string]uint64 `json:"evicted"`
	} `json:"tenants"`
}

func (n *e2eNode) floodStatus(ctx context.Context) (*floodStatus, error) {
	stdout, stderr, err := n.cli(ctx, "status", "--json")
	if err != nil {
		return nil, fmt.Errorf("popgate status --json: %w: %s", err, strings.TrimSpace(stderr))
	}
	var st floodStatus
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		return nil, fmt.Errorf("popgate status --json: %w: %s", err, stdout)
	}
	return &st, nil
}

// floodTally counts the attempts and failures of one kind of check during the flood.
type floodTally struct {
	name      string
	ok, fails atomic.Int64
	mu        sync.Mutex
	firstErr  error
}

func (c *floodTally) note(err error) {
	if err == nil {
		c.ok.Add(1)
		return
	}
	c.fails.Add(1)
	c.mu.Lock()
	if c.firstErr == nil {
		c.firstErr = err
	}
	c.mu.Unlock()
}

func (c *floodTally) String() string {
	return fmt.Sprintf("%s %d of %d", c.name, c.ok.Load(), c.ok.Load()+c.fails.Load())
}

// procSample is the serve process as /proc and status show it.
type procSample struct {
	fds, goroutines int
	rss             uint64
}

func sampleProc(pid int) (procSample, error) {
	var s procSample
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			s.rss = kb << 10
		}
	}
	return s, nil
}

func TestE2EFlowFlood(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "prlimit")
	begin := time.Now()
	topo := testbed.NewTopology(t)
	net4 := topo.NetAddr4
	n := &e2eNode{t: t, bin: bin, topo: topo, dataDir: t.TempDir(), ifname: topo.Name("pg"), port: 51821, mode: "userspace",
		dns: netip.AddrPortFrom(net4, 53).String()}
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, n.ifname+".sock")) })

	// The "internet": a file to download, a UDP echo; no listener on the flood's ports.
	files := testbed.ServeRandomFileWith(t, topo.Net, testbed.FileServerOptions{Addr: ":80", SizeMB: 1})
	echo := netip.AddrPortFrom(net4, 7)
	testbed.StartUDPEchoOn(t, topo.Net, ":7")

	args := append([]string{"prlimit", fmt.Sprintf("--nofile=%d:%d", floodOpenFiles, floodOpenFiles), "--"},
		n.serveArgs(n.ifname, n.port)...)
	p, err := topo.Pop.Start(t, append(args, "--web-addr", floodWebAddr)...)
	if err != nil {
		t.Fatal(err)
	}
	n.proc = p
	testbed.Poll(t, 30*time.Second, "popgate status to answer", func(ctx context.Context) error {
		if exited, err := p.Exited(); exited {
			t.Fatalf("popgate serve exited (%v); its log:\n%s", err, p.LogTail(40))
		}
		_, stderr, err := n.cli(ctx, "status")
		if err != nil {
			return fmt.Errorf("%w: %s", err, stderr)
		}
		return nil
	})
	n.mustCLI(t, "tenant", "add", "acme")
	n.mustCLI(t, "tenant", "add", "bravo")
	flooder := topo.Cli
	testbed.StartClient(t, flooder, topo.Name("wfa"), n.mustCLI(t, "peer", "add", "--tenant", "acme", "flooder"))
	victimNS := topo.NewClient(t)
	testbed.StartClient(t, victimNS, topo.Name("wfb"), n.mustCLI(t, "peer", "add", "--tenant", "bravo", "victim"))

	health := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: topo.Pop.DialContext, DisableKeepAlives: true}}
	healthz := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+floodWebAddr+"/healthz", nil)
		resp, err := health.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz: %s", resp.Status)
		}
		return nil
	}
	download := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return files.CheckDownload(ctx, victimNS, net4)
	}
	testbed.Poll(t, 30*time.Second, "bravo's first download", download)
	testbed.Poll(t, 10*time.Second, "/healthz", healthz)
	testbed.Poll(t, 30*time.Second, "acme's udp echo", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return testbed.EchoUDP(ctx, flooder, echo)
	})
	// acme's own flow with replies, which must outlive acme's flood.
	kept := testbed.StartEchoFlow(t, flooder, echo, 100*time.Millisecond)
	testbed.Poll(t, 10*time.Second, "acme's echo flow", func(context.Context) error {
		if time.Since(kept.LastReply()) > time.Second {
			return fmt.Errorf("no reply for %v", time.Since(kept.LastReply()).Round(time.Millisecond))
		}
		return nil
	})
	before, _ := sampleProc(p.Pid())
	t.Logf("set up in %v; serve before the flood: %d fds, %.0f MB RSS", time.Since(begin).Round(time.Millisecond), before.fds, float64(before.rss)/1e6)

	// The flood, and everything that must go on meanwhile.
	downloads := &floodTally{name: "bravo's downloads"}
	healths := &floodTally{name: "/healthz"}
	clis := &floodTally{name: "popgate status"}
	var peak procSample
	var peakMu sync.Mutex
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Each loop counts what it finished before the end: the end cuts the last attempt short.
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := download(ctx); ctx.Err() == nil {
				downloads.note(err)
			}
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := healthz(ctx); ctx.Err() == nil {
				healths.note(err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := n.floodStatus(cctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			clis.note(err)
			s, perr := sampleProc(p.Pid())
			peakMu.Lock()
			if perr == nil {
				peak.fds, peak.rss = max(peak.fds, s.fds), max(peak.rss, s.rss)
			}
			if err == nil {
				peak.goroutines = max(peak.goroutines, st.Node.Goroutines)
			}
			peakMu.Unlock()
			time.Sleep(500 * time.Millisecond)
		}
	})
	sent, took, err := floodUDP(flooder, net4, floodFlows, floodFor)
	if err != nil {
		t.Errorf("flood: %v", err)
	}
	time.Sleep(2 * time.Second) // the last of it reaches the node; bravo's checks go on
	stop()
	wg.Wait()
	keptSince := time.Since(kept.LastReply())
	kept.Stop()
	t.Logf("flood: %d new UDP flows in %v (%.0f/s); serve at the peak: %d fds, %d goroutines, %.0f MB RSS",
		sent, took.Round(time.Millisecond), float64(sent)/took.Seconds(), peak.fds, peak.goroutines, float64(peak.rss)/1e6)
	t.Logf("during the flood: %v, %v, %v", downloads, healths, clis)

	for _, c := range []*floodTally{downloads, healths, clis} {
		if c.fails.Load() > 0 || c.ok.Load() == 0 {
			t.Errorf("%s during acme's flood; the first failure: %v", c, c.firstErr)
		}
	}
	if keptSince > 2*time.Second {
		t.Errorf("acme's own echo flow got no reply for %v at the end of the flood (%d replies to %d datagrams)",
			keptSince.Round(time.Millisecond), kept.Replies(), kept.Sent())
	}

	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := n.floodStatus(sctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range st.Tenants {
		t.Logf("tenant %s: exit flows %+v, tracked %d, drops %v, evicted %v", ts.Name, ts.ExitFlows, ts.Flows, ts.Drops, ts.Evicted)
		switch ts.Name {
		case "acme":
			t.Logf("acme's flows that reached the exit: %d (open, evicted or refused)",
				uint64(ts.ExitFlows.UDP)+ts.Evicted["flow_limit_peer"]+ts.Drops["flow_limit_peer"])
			if ts.ExitFlows.UDP > ts.MaxFlowsPerPeer || ts.MaxFlowsPerPeer == 0 {
				t.Errorf("acme holds %d exit UDP flows, its peer's bound is %d", ts.ExitFlows.UDP, ts.MaxFlowsPerPeer)
			}
			if ts.Evicted["flow_limit_peer"]+ts.Drops["flow_limit_peer"] == 0 || ts.Evicted["conntrack"]+ts.Drops["from_peer.conntrack_limit_peer"] == 0 {
				t.Errorf("status shows no flows of acme's evicted or dropped at its peer's bound: drops %v, evicted %v", ts.Drops, ts.Evicted)
			}
		case "bravo":
			if len(ts.Evicted) > 0 || ts.Drops["flow_limit_node"]+ts.Drops["fd_budget"] > 0 {
				t.Errorf("bravo lost flows to acme's flood: drops %v, evicted %v", ts.Drops, ts.Evicted)
			}
		}
	}
	if st.Device.ExitSocketBudget == 0 || st.Device.ExitSocketBudget >= floodOpenFiles {
		t.Errorf("exit socket budget %d with an open files limit of %d", st.Device.ExitSocketBudget, floodOpenFiles)
	}

	log := p.Log()
	limitLines := strings.Count(log, "limit reached")
	if n := strings.Count(log, "too many open files"); n > 0 {
		t.Errorf("the log has %d lines of 'too many open files'", n)
	}
	if limitLines == 0 || limitLines > 4 {
		t.Errorf("the log has %d lines about a limit reached, want 1-4 (one a minute per peer and bound)", limitLines)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "limit reached") {
			t.Logf("log: %s", line)
		}
	}
	t.Logf("%v in all", time.Since(begin).Round(time.Millisecond))
}

// floodBurst and floodPause pace the flood: unpaced, the stock client's TUN queue drops most
// of it (25,000 datagrams in 0.2 s, a quarter through); in bursts of 50 a millisecond apart
// nearly all get through, at the highest rate the client carries here.
const (
	floodBurst = 20
	floodPause = time.Millisecond
)

// floodUDP sends one datagram to each of count ports of dst from one socket in ns, each a new
// flow, in bursts, for at most d. It returns how many it sent and how long that took.
func floodUDP(ns *testbed.Netns, dst netip.Addr, count int, d time.Duration) (int, time.Duration, error) {
	c, err := ns.ListenPacket("udp4", ":0")
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	payload := []byte("flood")
	start := time.Now()
	sent := 0
	for i := 0; i < count && time.Since(start) < d; i++ {
		if i%floodBurst == 0 {
			time.Sleep(floodPause)
		}
		to := &net.UDPAddr{IP: dst.AsSlice(), Port: 1024 + i%60000}
		if _, err := c.WriteTo(payload, to); err == nil {
			sent++
		}
	}
	return sent, time.Since(start), nil
}
