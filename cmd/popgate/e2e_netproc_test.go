package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// netProc is one `popgate serve` of a multi-node test: its namespace, data dir and flags.
type netProc struct {
	t      *testing.T
	bin    string
	node   *testbed.NetNode
	dir    string
	ifname string
	args   []string // serve's flags beyond --data-dir
	proc   *testbed.Proc
	// cliLimit is mustCLI's limit on one command; 0 is 60 s.
	cliLimit time.Duration
}

func (p *netProc) start(extra ...string) {
	p.t.Helper()
	args := append([]string{p.bin, "serve", "--data-dir", p.dir}, p.args...)
	proc, err := p.node.NS.Start(p.t, append(args, extra...)...)
	if err != nil {
		p.t.Fatal(err)
	}
	p.proc = proc
}

// kill ends the process with SIGKILL, as a crash would.
func (p *netProc) kill() {
	p.t.Helper()
	p.proc.Signal(syscall.SIGKILL)
	<-p.proc.Done()
}

// status is `popgate status --json` of the process, through the control socket in its data
// dir.
func (p *netProc) status(ctx context.Context) (map[string]any, error) {
	out, stderr, err := e2eRun(ctx, p.bin, "status", "--json", "--data-dir", p.dir)
	if err != nil {
		return nil, fmt.Errorf("status: %v: %s", err, strings.TrimSpace(stderr))
	}
	var st map[string]any
	return st, json.Unmarshal([]byte(out), &st)
}

// peersOnline is the number of peers online at the process, from its status.
func (p *netProc) peersOnline(ctx context.Context) int {
	st, err := p.status(ctx)
	if err != nil {
		return -1
	}
	peers, _ := st["peers"].(map[string]any)
	n, _ := peers["online"].(float64)
	return int(n)
}

// newNetProc makes the namespace of one `popgate serve` of a multi-node test: a node of n
// attached to the bridges on, with a data dir and an interface name of its own (its UAPI
// socket removed at cleanup).
func newNetProc(t *testing.T, bin string, n *testbed.Network, role, ifprefix string, on ...string) *netProc {
	t.Helper()
	nd := n.AddNode(t, role, on...)
	ifname := ifprefix + n.Suffix
	if len(ifname) > 15 {
		ifname = ifname[:15]
	}
	t.Cleanup(func() { os.Remove(filepath.Join(testbed.UAPIDir, ifname+".sock")) })
	return &netProc{t: t, bin: bin, node: nd, dir: t.TempDir(), ifname: ifname}
}

// cli runs `popgate args… --data-dir D` against the process's control socket.
func (p *netProc) cli(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	return e2eRun(ctx, p.bin, append(args, "--data-dir", p.dir)...)
}

// mustCLI is cli with a limit of cliLimit that fails the test unless the command succeeds.
func (p *netProc) mustCLI(args ...string) string {
	p.t.Helper()
	limit := p.cliLimit
	if limit == 0 {
		limit = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, stderr, err := p.cli(ctx, args...)
	if err != nil {
		p.t.Fatalf("popgate %s: %v\n%s", strings.Join(args[:min(len(args), 4)], " "), err, stderr)
	}
	return out
}

// startController starts the process and waits until its control socket answers.
func (p *netProc) startController() {
	p.t.Helper()
	p.start()
	testbed.Poll(p.t, 60*time.Second, "the controller to answer", func(ctx context.Context) error {
		if exited, err := p.proc.Exited(); exited {
			p.t.Fatalf("the controller exited (%v):\n%s", err, p.proc.LogTail(40))
		}
		_, stderr, err := p.cli(ctx, "status")
		if err != nil {
			return fmt.Errorf("%v: %s", err, stderr)
		}
		return nil
	})
}

// waitInSync waits until the controller p lists every named node connected and in sync
// (applied the current generation), and returns how long that took.
func (p *netProc) waitInSync(within time.Duration, names ...string) time.Duration {
	p.t.Helper()
	start := time.Now()
	testbed.Poll(p.t, within, strings.Join(names, ", ")+" to be connected and in sync", func(ctx context.Context) error {
		out, stderr, err := p.cli(ctx, "node", "list", "--json")
		if err != nil {
			return fmt.Errorf("node list: %v: %s", err, stderr)
		}
		var l struct{ Nodes []e2eJoined }
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			return err
		}
		for _, name := range names {
			i := slices.IndexFunc(l.Nodes, func(n e2eJoined) bool { return n.Name == name })
			if i < 0 || !l.Nodes[i].Connected || l.Nodes[i].Applied < l.Nodes[i].Current {
				return fmt.Errorf("%s not in sync: %s", name, out)
			}
		}
		return nil
	})
	return time.Since(start)
}

// joinToken makes a join token on the controller p for a node named name with roles, in
// region ("": the controller's default).
func (p *netProc) joinToken(roles, region, name string) string {
	p.t.Helper()
	args := []string{"node", "token", "--roles", roles, "--name", name}
	if region != "" {
		args = append(args, "--region", region)
	}
	return strings.TrimSpace(p.mustCLI(args...))
}

// bbLink is one backbone link in a node's `status --json`.
type bbLink struct {
	Node        string `json:"node"`
	State       string `json:"state"`
	RTTMicros   int64  `json:"rtt_us"`
	LossPercent int    `json:"loss_percent"`
}

// errNoBackbone is backboneLinks's error for a status without a backbone.
var errNoBackbone = errors.New("the status shows no backbone")

// backboneLinks are the backbone links in the process's `popgate status --json`.
func (p *netProc) backboneLinks(ctx context.Context) ([]bbLink, error) {
	out, stderr, err := p.cli(ctx, "status", "--json")
	if err != nil {
		return nil, fmt.Errorf("status: %v: %s", err, strings.TrimSpace(stderr))
	}
	var st struct{ Backbone *struct{ Links []bbLink } }
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, err
	}
	if st.Backbone == nil {
		return nil, errNoBackbone
	}
	return st.Backbone.Links, nil
}

// waitLinksUp waits until at least want of the process's backbone links are up.
func (p *netProc) waitLinksUp(within time.Duration, what string, want int) {
	p.t.Helper()
	testbed.Poll(p.t, within, what, func(ctx context.Context) error {
		links, err := p.backboneLinks(ctx)
		if err != nil {
			return err
		}
		up := 0
		for _, l := range links {
			if l.State == "up" {
				up++
			}
		}
		if up < want {
			return fmt.Errorf("links %+v, want %d up", links, want)
		}
		return nil
	})
}
