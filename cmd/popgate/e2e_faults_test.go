package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// TestE2ENodeFaults puts the control plane of a network through faults between a controller
// and its PoPs (issue 15's "faults across nodes"): p1 partitioned from the controller while
// p2 is not; 20 % loss each way on p1's link; p1's link limited to 1 Mbit/s while a large
// desired state (a 600 kB policy) is on its way, and p1 killed in the middle of receiving it.
// Each time: p1 keeps serving its clients, no change is lost (every change reaches p1 once
// the fault ends, and revocations made meanwhile take effect), and its database stays
// sound. The figures (how long changes took to resume) are logged for the note.
func TestE2ENodeFaults(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping", "iptables", "tc")
	n := testbed.NewNetwork(t)
	const popPort = 45620

	mk := func(role, ifprefix string, on ...string) *netProc {
		return newNetProc(t, bin, n, role, ifprefix, on...)
	}
	ctrl := mk("ctl", "fc", testbed.Backbone)
	ctrlAddr := netip.AddrPortFrom(ctrl.node.Addr4[testbed.Backbone], 45600)
	ctrl.args = []string{"--listen-port", "45601", "--interface", ctrl.ifname, "--web-addr", "127.0.0.1:0",
		"--public-endpoint", netip.AddrPortFrom(ctrl.node.Addr4[testbed.Backbone], 45601).String(),
		"--exit-mode", "userspace", "--controller-addr", ctrlAddr.String()}
	p1 := mk("pop", "fp", testbed.WAN, testbed.Backbone)
	p2 := mk("pop", "fq", testbed.WAN, testbed.Backbone)
	pops := map[string]*netProc{"p1": p1, "p2": p2}
	for _, p := range pops {
		p.args = []string{"--listen-port", fmt.Sprint(popPort), "--interface", p.ifname, "--web-addr", "127.0.0.1:0", "--exit-mode", "userspace"}
	}
	mustCLI, waitInSync, pinger := ctrl.mustCLI, ctrl.waitInSync, pingGateway
	// p1Link runs a command on p1's link to the backbone bridge (where the controller is).
	p1Link := func(args ...string) { t.Helper(); p1.node.NS.MustRun(t, args...) }
	bbLink := p1.node.Links[testbed.Backbone]

	ctrl.startController()
	for name, p := range pops {
		token := strings.TrimSpace(mustCLI("node", "token", "--roles", "pop", "--name", name))
		p.start("--join", token)
	}
	waitInSync(60*time.Second, "p1", "p2")
	mustCLI("tenant", "add", "acme")
	clients := map[string]*testbed.NetNode{}
	for _, name := range []string{"p1", "p2"} {
		conf := mustCLI("peer", "add", "--tenant", "acme", "dev-"+name)
		conf = strings.Replace(conf, "Endpoint = ", "Endpoint = "+netip.AddrPortFrom(pops[name].node.Addr4[testbed.WAN], popPort).String()+"\n# was: ", 1)
		c := n.AddClient(t)
		testbed.StartClient(t, c.NS, "fk"+name+n.Suffix[:min(len(n.Suffix), 8)], conf)
		clients[name] = c
	}
	waitInSync(10*time.Second, "p1", "p2")
	for name, c := range clients {
		testbed.Poll(t, 30*time.Second, "the client at "+name+" to ping it", pinger(c))
	}
	// A second device of the tenant, connected at p1, to be removed during the partition.
	doomedConf := mustCLI("peer", "add", "--tenant", "acme", "doomed")
	doomedConf = strings.Replace(doomedConf, "Endpoint = ", "Endpoint = "+netip.AddrPortFrom(p1.node.Addr4[testbed.WAN], popPort).String()+"\n# was: ", 1)
	doomed := n.AddClient(t)
	testbed.StartClient(t, doomed.NS, "fd"+n.Suffix, doomedConf)
	waitInSync(10*time.Second, "p1", "p2")
	testbed.Poll(t, 30*time.Second, "the doomed device to ping p1", pinger(doomed))

	t.Run("partition", func(t *testing.T) {
		// p1 loses the controller (both ways); p2 does not.
		p1Link("iptables", "-I", "INPUT", "-i", bbLink, "-j", "DROP")
		p1Link("iptables", "-I", "OUTPUT", "-o", bbLink, "-j", "DROP")
		t.Cleanup(func() {
			p1.node.NS.Run(context.Background(), "iptables", "-F", "INPUT")
			p1.node.NS.Run(context.Background(), "iptables", "-F", "OUTPUT")
		})
		mustCLI("peer", "remove", "--tenant", "acme", "doomed")
		waitInSync(10*time.Second, "p2")
		// p1 serves on: its own client keeps working; it has not heard of the removal.
		testbed.Poll(t, 10*time.Second, "p1's client to ping p1 while p1 is cut off", pinger(clients["p1"]))
		// Long enough for p1 to notice (its stream idles out after 30 s) and say so.
		testbed.Poll(t, 60*time.Second, "p1 to say it is stale", func(ctx context.Context) error {
			out, stderr, err := e2eRun(ctx, bin, "status", "--data-dir", p1.dir)
			if err != nil {
				return fmt.Errorf("%v: %s", err, stderr)
			}
			if !strings.Contains(out, "STALE") {
				return fmt.Errorf("status does not say STALE:\n%s", out)
			}
			return nil
		})
		testbed.Poll(t, 10*time.Second, "p1's client to ping p1 while p1 is stale", pinger(clients["p1"]))
		p1.node.NS.MustRun(t, "iptables", "-F", "INPUT")
		p1.node.NS.MustRun(t, "iptables", "-F", "OUTPUT")
		took := waitInSync(60*time.Second, "p1") // its reconnect backoff is at most 30 s
		t.Logf("partition healed: p1 had the changes made meanwhile %s later (reconnect backoff ≤ 30 s)", took.Round(100*time.Millisecond))
		testbed.Poll(t, 10*time.Second, "the device removed during the partition to lose access at p1", func(ctx context.Context) error {
			if pinger(doomed)(ctx) == nil {
				return fmt.Errorf("it still pings p1")
			}
			return nil
		})
	})

	t.Run("loss", func(t *testing.T) {
		p1Link("iptables", "-I", "INPUT", "-i", bbLink, "-m", "statistic", "--mode", "random", "--probability", "0.2", "-j", "DROP")
		p1Link("iptables", "-I", "OUTPUT", "-o", bbLink, "-m", "statistic", "--mode", "random", "--probability", "0.2", "-j", "DROP")
		t.Cleanup(func() {
			p1.node.NS.Run(context.Background(), "iptables", "-F", "INPUT")
			p1.node.NS.Run(context.Background(), "iptables", "-F", "OUTPUT")
		})
		var took []time.Duration
		for i := range 10 {
			mustCLI("peer", map[bool]string{true: "disable", false: "enable"}[i%2 == 0], "--tenant", "acme", "dev-p2")
			took = append(took, waitInSync(60*time.Second, "p1"))
		}
		slices.Sort(took)
		t.Logf("20%% loss each way between p1 and the controller: 10 changes reached p1 in median %s, worst %s",
			took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
		p1.node.NS.MustRun(t, "iptables", "-F", "INPUT")
		p1.node.NS.MustRun(t, "iptables", "-F", "OUTPUT")
	})

	t.Run("rate and kill mid-sync", func(t *testing.T) {
		// 1 Mbit/s out of the controller's side towards p1, so that a large state takes seconds.
		p1Link("tc", "qdisc", "replace", "dev", bbLink, "root", "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "2s")
		ctrl.node.NS.MustRun(t, "tc", "qdisc", "replace", "dev", ctrl.node.Links[testbed.Backbone], "root", "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "2s")
		t.Cleanup(func() {
			ctrl.node.NS.Run(context.Background(), "tc", "qdisc", "del", "dev", ctrl.node.Links[testbed.Backbone], "root")
			p1.node.NS.Run(context.Background(), "tc", "qdisc", "del", "dev", bbLink, "root")
		})
		// A 600 kB policy of comments (random, so gzip cannot shrink it much) and one rule.
		var b strings.Builder
		for b.Len() < 600_000 {
			r := make([]byte, 32)
			rand.Read(r)
			fmt.Fprintf(&b, "# %s\n", hex.EncodeToString(r))
		}
		b.WriteString("default deny\nallow any -> any\n")
		policy := filepath.Join(t.TempDir(), "big.policy")
		if err := os.WriteFile(policy, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		mustCLI("policy", "set", "--tenant", "acme", policy)
		took := waitInSync(120*time.Second, "p1", "p2")
		t.Logf("a 600 kB state over 1 Mbit/s reached both PoPs %s after the command returned", took.Round(100*time.Millisecond))

		// Again, and p1 dies while it receives the state: restarted, it serves (the state it
		// kept, whole), its database checks clean, and the new state arrives.
		b.WriteString("# again\n")
		if err := os.WriteFile(policy, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		mustCLI("peer", "remove", "--tenant", "acme", "dev-p2") // a revocation in the same state
		mustCLI("policy", "set", "--tenant", "acme", policy)
		time.Sleep(time.Second) // the frame is on its way at 1 Mbit/s
		p1.kill()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, stderr, err := e2eRun(ctx, bin, "db", "check", "--data-dir", p1.dir)
		cancel()
		if err != nil {
			t.Fatalf("db check of p1 killed mid-sync: %v\n%s%s", err, out, stderr)
		}
		p1.start()
		testbed.Poll(t, 60*time.Second, "p1's client to ping p1 restarted", pinger(clients["p1"]))
		took = waitInSync(120*time.Second, "p1")
		t.Logf("p1 killed while receiving a 600 kB state: restarted, it was in sync %s later (%s after the change)",
			took.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
	})
}
