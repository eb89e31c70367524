package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
	"github.com/popgate/popgate/webui"
)

// TestE2ERegionChecks: a controller serving region local and a PoP serving region fra, each
// with a backbone, check each other's region endpoint by a real WireGuard handshake without
// being told to. When the PoP's endpoint stops answering from outside (its UDP port dropped
// by its firewall) while the process runs on and keeps syncing, the controller's check of
// fra fails, and says so in an event: up but unreachable is down.
func TestE2ERegionChecks(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "iptables")
	n := testbed.NewNetwork(t)
	ctrlNS := n.AddNode(t, "bkctl", testbed.WAN, testbed.Backbone)
	popNS := n.AddNode(t, "bkpop", testbed.WAN, testbed.Backbone)
	ifn := func(role string) string {
		name := fmt.Sprintf("bk%s%d", role, os.Getpid()%100000)
		t.Cleanup(func() { os.Remove(filepath.Join(testbed.UAPIDir, name+".sock")) })
		return name
	}
	ctrlDir, popDir := t.TempDir(), t.TempDir()
	ctrlEP := fmt.Sprintf("%s:49101", ctrlNS.Addr4[testbed.WAN])
	popEP := fmt.Sprintf("%s:49111", popNS.Addr4[testbed.WAN])
	cli := func(ctx context.Context, args ...string) (string, string, error) {
		return e2eRun(ctx, bin, append(args, "--data-dir", ctrlDir)...)
	}
	mustCLI := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, stderr, err := cli(ctx, args...)
		if err != nil {
			t.Fatalf("popgate %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}
	ctrl, err := ctrlNS.NS.Start(t, bin, "serve", "--data-dir", ctrlDir, "--listen-port", "49101", "--interface", ifn("c"),
		"--public-endpoint", ctrlEP, "--web-addr", "127.0.0.1:0", "--metrics-addr", "", "--exit-mode", "userspace",
		"--controller-addr", ctrlNS.Addr4[testbed.Backbone].String()+":49100",
		"--backbone-port", "49102", "--backbone-endpoint", ctrlNS.Addr4[testbed.Backbone].String()+":49102")
	if err != nil {
		t.Fatal(err)
	}
	testbed.Poll(t, 60*time.Second, "the controller to answer", func(ctx context.Context) error {
		if exited, err := ctrl.Exited(); exited {
			t.Fatalf("the controller exited (%v):\n%s", err, ctrl.LogTail(40))
		}
		_, stderr, err := cli(ctx, "status")
		if err != nil {
			return fmt.Errorf("%v: %s", err, stderr)
		}
		return nil
	})
	mustCLI("region", "add", "fra", "--endpoint", popEP)
	token := strings.TrimSpace(mustCLI("node", "token", "--roles", "pop", "--region", "fra", "--name", "p1"))
	pop, err := popNS.NS.Start(t, bin, "serve", "--data-dir", popDir, "--join", token, "--listen-port", "49111", "--interface", ifn("p"),
		"--web-addr", "127.0.0.1:0", "--metrics-addr", "", "--exit-mode", "userspace",
		"--backbone-port", "49112", "--backbone-endpoint", popNS.Addr4[testbed.Backbone].String()+":49112")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	// latest returns the latest minute of check name as node saw it, and whether there is one.
	latest := func(ctx context.Context, name, node string) (webui.APICheckLatest, []string, error) {
		out, stderr, err := cli(ctx, "check", "show", name, "--json")
		if err != nil {
			return webui.APICheckLatest{}, nil, fmt.Errorf("check show %s: %v: %s", name, err, stderr)
		}
		var c webui.APICheck
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			return webui.APICheckLatest{}, nil, err
		}
		for _, l := range c.Latest {
			if l.Node == node {
				return l, c.Runners, nil
			}
		}
		return webui.APICheckLatest{}, c.Runners, fmt.Errorf("%s has no result from %s yet (runners %v)", name, node, c.Runners)
	}
	passes := func(name, node string) {
		t.Helper()
		testbed.Poll(t, 90*time.Second, node+" to reach "+name, func(ctx context.Context) error {
			if exited, err := pop.Exited(); exited {
				t.Fatalf("the PoP exited (%v):\n%s", err, pop.LogTail(40))
			}
			l, _, err := latest(ctx, name, node)
			if err != nil {
				return err
			}
			if l.OK == 0 {
				return fmt.Errorf("%s from %s: %+v", name, node, l)
			}
			t.Logf("%s from %s: a handshake in %s (%s), %s after the PoP started", name, node,
				time.Duration(l.LatencyMicros)*time.Microsecond, l.Detail, time.Since(start).Round(time.Second))
			return nil
		})
	}
	passes("region:fra", "controller")
	passes("region:local", "p1")
	if _, runners, err := latest(context.Background(), "region:fra", "controller"); err != nil || strings.Join(runners, ",") != "controller" {
		t.Errorf("region:fra runs on %v (%v), want the controller alone: a region's own PoPs do not check it", runners, err)
	}

	// The PoP's endpoint stops answering from outside; the process runs on and syncs over
	// the backbone bridge.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := popNS.NS.Run(ctx, "iptables", "-I", "INPUT", "-p", "udp", "--dport", "49111", "-j", "DROP"); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	blocked := time.Now()
	testbed.Poll(t, 150*time.Second, "the controller to see fra's endpoint down", func(ctx context.Context) error {
		l, _, err := latest(ctx, "region:fra", "controller")
		if err != nil {
			return err
		}
		if l.Failed == 0 || l.OK > 0 || l.Minute.Before(blocked.Truncate(time.Minute)) {
			return fmt.Errorf("the latest minute: %+v", l)
		}
		t.Logf("fra down from the controller %s after its port was dropped: %s", time.Since(blocked).Round(time.Second), l.Error)
		return nil
	})
	if exited, _ := pop.Exited(); exited {
		t.Fatal("the PoP exited")
	}
	out := mustCLI("node", "list", "--json")
	if !strings.Contains(out, `"connected": true`) {
		t.Errorf("the PoP should still be connected (up but unreachable):\n%s", out)
	}
	show := mustCLI("check", "show", "region:fra")
	if !strings.Contains(show, "no answer in time") {
		t.Errorf("check show region:fra:\n%s", show)
	}
	// The event, once the first minute that failed throughout is over.
	testbed.Poll(t, 100*time.Second, "the event of fra's endpoint down", func(ctx context.Context) error {
		out, stderr, err := cli(ctx, "event", "list", "--kind", "check")
		if err != nil {
			return fmt.Errorf("%v: %s", err, stderr)
		}
		if !strings.Contains(out, "check.down") || !strings.Contains(out, "region fra's endpoint fails from controller") {
			return fmt.Errorf("event list --kind check:\n%s", out)
		}
		t.Logf("the event came %s after the port was dropped", time.Since(blocked).Round(time.Second))
		return nil
	})
}
