package main

import (
	"context"
	"encoding/json"
	"fmt"
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
	mk := func(role, ifprefix string, on ...string) *netProc {
		return newNetProc(t, bin, n, role, ifprefix, on...)
	}
	ctrl := mk("bkctl", "bkc", testbed.WAN, testbed.Backbone)
	pop := mk("bkpop", "bkp", testbed.WAN, testbed.Backbone)
	ctrlBB, popBB := ctrl.node.Addr4[testbed.Backbone].String(), pop.node.Addr4[testbed.Backbone].String()
	popEP := fmt.Sprintf("%s:49111", pop.node.Addr4[testbed.WAN])
	ctrl.args = []string{"--listen-port", "49101", "--interface", ctrl.ifname,
		"--public-endpoint", fmt.Sprintf("%s:49101", ctrl.node.Addr4[testbed.WAN]), "--web-addr", "127.0.0.1:0", "--metrics-addr", "",
		"--exit-mode", "userspace", "--controller-addr", ctrlBB + ":49100", "--backbone-port", "49102", "--backbone-endpoint", ctrlBB + ":49102"}
	ctrl.cliLimit = 30 * time.Second
	pop.args = []string{"--listen-port", "49111", "--interface", pop.ifname, "--web-addr", "127.0.0.1:0", "--metrics-addr", "",
		"--exit-mode", "userspace", "--backbone-port", "49112", "--backbone-endpoint", popBB + ":49112"}
	cli, mustCLI := ctrl.cli, ctrl.mustCLI
	ctrl.startController()
	mustCLI("region", "add", "fra", "--endpoint", popEP)
	pop.start("--join", ctrl.joinToken("pop", "fra", "p1"))
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
			if exited, err := pop.proc.Exited(); exited {
				t.Fatalf("the PoP exited (%v):\n%s", err, pop.proc.LogTail(40))
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
	if out, err := pop.node.NS.Run(ctx, "iptables", "-I", "INPUT", "-p", "udp", "--dport", "49111", "-j", "DROP"); err != nil {
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
	if exited, _ := pop.proc.Exited(); exited {
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
