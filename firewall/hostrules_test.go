package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-iptables/iptables"
)

// ruleWorld is an IPv4 and an IPv6 iptables, fake or real, and a way to read a whole table as
// `iptables -t table -S` prints it.
type ruleWorld struct {
	v4, v6 iptablesAPI
	dump   func(t *testing.T, v6 bool, table string) []string
}

// snapshot reads the four tables HostRules touches, keyed like hostRulesCase.want.
func (w ruleWorld) snapshot(t *testing.T) map[string][]string {
	t.Helper()
	return map[string][]string{
		"v4 filter": w.dump(t, false, "filter"),
		"v4 nat":    w.dump(t, false, "nat"),
		"v6 filter": w.dump(t, true, "filter"),
		"v6 nat":    w.dump(t, true, "nat"),
	}
}

// newIPTables is the HostRulesConfig.newIPTables hostChain that hands out the world's tables.
func (w ruleWorld) newIPTables(proto iptables.Protocol) (iptablesAPI, error) {
	if proto == iptables.ProtocolIPv6 {
		return w.v6, nil
	}
	return w.v4, nil
}

func newFakeWorld() (ruleWorld, *fakeIPTables, *fakeIPTables) {
	v4, v6 := newFakeIPTables(), newFakeIPTables()
	return ruleWorld{
		v4: v4, v6: v6,
		dump: func(_ *testing.T, v6fam bool, table string) []string {
			if v6fam {
				return v6.dump(table)
			}
			return v4.dump(table)
		},
	}, v4, v6
}

// addForeignRules puts rules of someone else's around ours, in both families: HostRules must
// leave them as they are.
func addForeignRules(t *testing.T, w ruleWorld) {
	t.Helper()
	for _, ipt := range []iptablesAPI{w.v4, w.v6} {
		for _, err := range []error{
			ipt.Append("filter", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"),
			ipt.ClearChain("filter", "FOREIGN"),
			ipt.Append("filter", "FOREIGN", "-j", "RETURN"),
			ipt.Append("filter", "FORWARD", "-j", "FOREIGN"),
			ipt.Append("nat", "POSTROUTING", "-o", "eth9", "-j", "MASQUERADE"),
		} {
			if err != nil {
				t.Fatalf("adding foreign rules: %v", err)
			}
		}
	}
}

// foreignFilter is the filter table after addForeignRules, in either family.
var foreignFilter = []string{
	"-P INPUT ACCEPT",
	"-P FORWARD ACCEPT",
	"-P OUTPUT ACCEPT",
	"-N FOREIGN",
	"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
	"-A FORWARD -j FOREIGN",
	"-A FOREIGN -j RETURN",
}

// foreignNAT is the nat table after addForeignRules, in either family.
var foreignNAT = []string{
	"-P PREROUTING ACCEPT",
	"-P INPUT ACCEPT",
	"-P OUTPUT ACCEPT",
	"-P POSTROUTING ACCEPT",
	"-A POSTROUTING -o eth9 -j MASQUERADE",
}

var (
	testOverlayV4 = netip.MustParsePrefix("100.64.0.0/10")
	testOverlayV6 = netip.MustParsePrefix("fd00:aaaa:bbbb::/48")
)

// hostRulesCase is a configuration and the tables expected after Install over the foreign
// rules. The same cases run against the fake and, in a network namespace, the real iptables.
type hostRulesCase struct {
	name string
	cfg  HostRulesConfig
	want map[string][]string
}

var hostRulesCases = []hostRulesCase{
	{
		name: "any egress",
		cfg:  HostRulesConfig{TunName: "pgexit0", OverlayV4: testOverlayV4, OverlayV6: testOverlayV6},
		want: map[string][]string{
			"v4 filter": {
				"-P INPUT ACCEPT",
				"-P FORWARD ACCEPT",
				"-P OUTPUT ACCEPT",
				"-N FOREIGN",
				"-N POPGATE-FORWARD",
				"-N POPGATE-INPUT",
				"-A INPUT -j POPGATE-INPUT",
				"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
				"-A FORWARD -j POPGATE-FORWARD",
				"-A FORWARD -j FOREIGN",
				"-A FOREIGN -j RETURN",
				"-A POPGATE-FORWARD -i pgexit0 -j ACCEPT",
				"-A POPGATE-FORWARD -o pgexit0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
				"-A POPGATE-FORWARD -o pgexit0 -j DROP",
				"-A POPGATE-INPUT -p udp -m udp --dport 51820 -j ACCEPT",
			},
			"v4 nat": {
				"-P PREROUTING ACCEPT",
				"-P INPUT ACCEPT",
				"-P OUTPUT ACCEPT",
				"-P POSTROUTING ACCEPT",
				"-N POPGATE-POSTROUTING",
				"-A POSTROUTING -j POPGATE-POSTROUTING",
				"-A POSTROUTING -o eth9 -j MASQUERADE",
				"-A POPGATE-POSTROUTING -s 100.64.0.0/10 ! -o pgexit0 -j MASQUERADE",
			},
			"v6 filter": {
				"-P INPUT ACCEPT",
				"-P FORWARD ACCEPT",
				"-P OUTPUT ACCEPT",
				"-N FOREIGN",
				"-N POPGATE-FORWARD",
				"-N POPGATE-INPUT",
				"-A INPUT -j POPGATE-INPUT",
				"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
				"-A FORWARD -j POPGATE-FORWARD",
				"-A FORWARD -j FOREIGN",
				"-A FOREIGN -j RETURN",
				"-A POPGATE-FORWARD -i pgexit0 -j ACCEPT",
				"-A POPGATE-FORWARD -o pgexit0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
				"-A POPGATE-FORWARD -o pgexit0 -j DROP",
				"-A POPGATE-INPUT -p udp -m udp --dport 51820 -j ACCEPT",
			},
			"v6 nat": {
				"-P PREROUTING ACCEPT",
				"-P INPUT ACCEPT",
				"-P OUTPUT ACCEPT",
				"-P POSTROUTING ACCEPT",
				"-N POPGATE-POSTROUTING",
				"-A POSTROUTING -j POPGATE-POSTROUTING",
				"-A POSTROUTING -o eth9 -j MASQUERADE",
				"-A POPGATE-POSTROUTING -s fd00:aaaa:bbbb::/48 ! -o pgexit0 -j MASQUERADE",
			},
		},
	},
	{
		name: "egress eth0, port 443, IPv4 overlay only, unmasked prefix",
		cfg: HostRulesConfig{TunName: "pgexit0", ListenPort: 443, EgressInterface: "eth0",
			OverlayV4: netip.MustParsePrefix("10.77.1.9/16")},
		want: map[string][]string{
			"v4 filter": {
				"-P INPUT ACCEPT",
				"-P FORWARD ACCEPT",
				"-P OUTPUT ACCEPT",
				"-N FOREIGN",
				"-N POPGATE-FORWARD",
				"-N POPGATE-INPUT",
				"-A INPUT -j POPGATE-INPUT",
				"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
				"-A FORWARD -j POPGATE-FORWARD",
				"-A FORWARD -j FOREIGN",
				"-A FOREIGN -j RETURN",
				"-A POPGATE-FORWARD -i pgexit0 -o eth0 -j ACCEPT",
				"-A POPGATE-FORWARD -i pgexit0 -j DROP",
				"-A POPGATE-FORWARD -o pgexit0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
				"-A POPGATE-FORWARD -o pgexit0 -j DROP",
				"-A POPGATE-INPUT -p udp -m udp --dport 443 -j ACCEPT",
			},
			"v4 nat": {
				"-P PREROUTING ACCEPT",
				"-P INPUT ACCEPT",
				"-P OUTPUT ACCEPT",
				"-P POSTROUTING ACCEPT",
				"-N POPGATE-POSTROUTING",
				"-A POSTROUTING -j POPGATE-POSTROUTING",
				"-A POSTROUTING -o eth9 -j MASQUERADE",
				"-A POPGATE-POSTROUTING -s 10.77.0.0/16 -o eth0 -j MASQUERADE",
			},
			"v6 filter": {
				"-P INPUT ACCEPT",
				"-P FORWARD ACCEPT",
				"-P OUTPUT ACCEPT",
				"-N FOREIGN",
				"-N POPGATE-FORWARD",
				"-N POPGATE-INPUT",
				"-A INPUT -j POPGATE-INPUT",
				"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
				"-A FORWARD -j POPGATE-FORWARD",
				"-A FORWARD -j FOREIGN",
				"-A FOREIGN -j RETURN",
				"-A POPGATE-FORWARD -i pgexit0 -o eth0 -j ACCEPT",
				"-A POPGATE-FORWARD -i pgexit0 -j DROP",
				"-A POPGATE-FORWARD -o pgexit0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
				"-A POPGATE-FORWARD -o pgexit0 -j DROP",
				"-A POPGATE-INPUT -p udp -m udp --dport 443 -j ACCEPT",
			},
			"v6 nat": {
				"-P PREROUTING ACCEPT",
				"-P INPUT ACCEPT",
				"-P OUTPUT ACCEPT",
				"-P POSTROUTING ACCEPT",
				"-N POPGATE-POSTROUTING",
				"-A POSTROUTING -j POPGATE-POSTROUTING",
				"-A POSTROUTING -o eth9 -j MASQUERADE",
			},
		},
	},
}

// diffTables reports every table of got that differs from want, line by line.
func diffTables(t *testing.T, when string, got, want map[string][]string) {
	t.Helper()
	for _, key := range []string{"v4 filter", "v4 nat", "v6 filter", "v6 nat"} {
		if !slices.Equal(got[key], want[key]) {
			t.Errorf("%s: %s table:\ngot:\n\t%s\nwant:\n\t%s", when, key,
				strings.Join(got[key], "\n\t"), strings.Join(want[key], "\n\t"))
		}
	}
}

// countingIPTables counts the calls that change rules or chains, to show that installing
// again changes nothing: our rule specs are spelt exactly as iptables lists them.
type countingIPTables struct {
	iptablesAPI
	changes int
}

var _ iptablesAPI = (*countingIPTables)(nil)

func (c *countingIPTables) ClearChain(table, chain string) error {
	c.changes++
	return c.iptablesAPI.ClearChain(table, chain)
}

func (c *countingIPTables) DeleteChain(table, chain string) error {
	c.changes++
	return c.iptablesAPI.DeleteChain(table, chain)
}

func (c *countingIPTables) Insert(table, chain string, pos int, rulespec ...string) error {
	c.changes++
	return c.iptablesAPI.Insert(table, chain, pos, rulespec...)
}

func (c *countingIPTables) Append(table, chain string, rulespec ...string) error {
	c.changes++
	return c.iptablesAPI.Append(table, chain, rulespec...)
}

func (c *countingIPTables) Delete(table, chain string, rulespec ...string) error {
	c.changes++
	return c.iptablesAPI.Delete(table, chain, rulespec...)
}

// hostRulesLog is a logger whose output the test reads.
func hostRulesLog() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

// runHostRulesCase installs, installs again (also from a second HostRules, as after a
// restart), uninstalls twice and closes, checking the whole tables after each step.
func runHostRulesCase(t *testing.T, w ruleWorld, tc hostRulesCase) {
	t.Helper()
	ctx := context.Background()
	addForeignRules(t, w)
	before := w.snapshot(t)
	diffTables(t, "before install", before, map[string][]string{
		"v4 filter": foreignFilter, "v4 nat": foreignNAT, "v6 filter": foreignFilter, "v6 nat": foreignNAT,
	})

	v4, v6 := &countingIPTables{iptablesAPI: w.v4}, &countingIPTables{iptablesAPI: w.v6}
	cfg := tc.cfg
	cfg.newIPTables = ruleWorld{v4: v4, v6: v6}.newIPTables
	log, logBuf := hostRulesLog()
	h, err := NewHostRules(cfg, log)
	if err != nil {
		t.Fatalf("NewHostRules: %v", err)
	}
	if !h.IPv6() {
		t.Fatalf("IPv6() = false, want true; log:\n%s", logBuf)
	}
	if err := h.Install(ctx); err != nil {
		t.Fatalf("Install: %v", err)
	}
	diffTables(t, "after Install", w.snapshot(t), tc.want)

	installed := v4.changes + v6.changes
	if err := h.Install(ctx); err != nil {
		t.Fatalf("second Install: %v", err)
	}
	diffTables(t, "after a second Install", w.snapshot(t), tc.want)
	h2, err := NewHostRules(cfg, log)
	if err != nil {
		t.Fatalf("second NewHostRules: %v", err)
	}
	if err := h2.Install(ctx); err != nil {
		t.Fatalf("Install by a second HostRules: %v", err)
	}
	diffTables(t, "after Install by a second HostRules", w.snapshot(t), tc.want)
	if n := v4.changes + v6.changes - installed; n != 0 {
		t.Errorf("installing again made %d changes, want none", n)
	}

	if err := h.Uninstall(ctx); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	diffTables(t, "after Uninstall", w.snapshot(t), before)
	if err := h2.Uninstall(ctx); err != nil {
		t.Fatalf("second Uninstall: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	diffTables(t, "after Close", w.snapshot(t), before)
	if err := h.Install(ctx); !errors.Is(err, errHostRulesClosed) {
		t.Errorf("Install after Close = %v, want %v", err, errHostRulesClosed)
	}
	if strings.Contains(logBuf.String(), "level=WARN") {
		t.Errorf("unexpected warnings:\n%s", logBuf)
	}
}

func TestHostRulesFake(t *testing.T) {
	for _, tc := range hostRulesCases {
		t.Run(tc.name, func(t *testing.T) {
			w, _, _ := newFakeWorld()
			runHostRulesCase(t, w, tc)
		})
	}
}

// TestHostRulesInstallFromEmpty checks the tables of a namespace that had no rules at all.
func TestHostRulesInstallFromEmpty(t *testing.T) {
	w, v4, _ := newFakeWorld()
	cfg := hostRulesCases[0].cfg
	cfg.newIPTables = w.newIPTables
	h, err := NewHostRules(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantFilter := []string{
		"-P INPUT ACCEPT",
		"-P FORWARD ACCEPT",
		"-P OUTPUT ACCEPT",
		"-N POPGATE-FORWARD",
		"-N POPGATE-INPUT",
		"-A INPUT -j POPGATE-INPUT",
		"-A FORWARD -j POPGATE-FORWARD",
		"-A POPGATE-FORWARD -i pgexit0 -j ACCEPT",
		"-A POPGATE-FORWARD -o pgexit0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"-A POPGATE-FORWARD -o pgexit0 -j DROP",
		"-A POPGATE-INPUT -p udp -m udp --dport 51820 -j ACCEPT",
	}
	wantNAT := []string{
		"-P PREROUTING ACCEPT",
		"-P INPUT ACCEPT",
		"-P OUTPUT ACCEPT",
		"-P POSTROUTING ACCEPT",
		"-N POPGATE-POSTROUTING",
		"-A POSTROUTING -j POPGATE-POSTROUTING",
		"-A POPGATE-POSTROUTING -s 100.64.0.0/10 ! -o pgexit0 -j MASQUERADE",
	}
	wantNAT6 := slices.Clone(wantNAT)
	wantNAT6[len(wantNAT6)-1] = "-A POPGATE-POSTROUTING -s fd00:aaaa:bbbb::/48 ! -o pgexit0 -j MASQUERADE"
	diffTables(t, "after Install", w.snapshot(t), map[string][]string{
		"v4 filter": wantFilter, "v4 nat": wantNAT, "v6 filter": wantFilter, "v6 nat": wantNAT6,
	})

	// Installing again changes nothing at all: no flush, so no moment without our rules.
	changes := v4.changes
	if err := h.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v4.changes != changes {
		t.Errorf("second Install made %d changes, want 0", v4.changes-changes)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	empty := newFakeIPTables()
	diffTables(t, "after Close", w.snapshot(t), map[string][]string{
		"v4 filter": empty.dump("filter"), "v4 nat": empty.dump("nat"),
		"v6 filter": empty.dump("filter"), "v6 nat": empty.dump("nat"),
	})
}

// TestHostRulesInstallRepairs starts from what an older run could have left: a stale rule in
// our chain, a duplicate jump, a jump further down. Install leaves one jump each and our rules.
func TestHostRulesInstallRepairs(t *testing.T) {
	w, v4, _ := newFakeWorld()
	addForeignRules(t, w)
	for _, err := range []error{
		v4.ClearChain("filter", "POPGATE-INPUT"),
		v4.Append("filter", "POPGATE-INPUT", "-p", "udp", "-m", "udp", "--dport", "4242", "-j", "ACCEPT"),
		v4.Insert("filter", "INPUT", 1, "-j", "POPGATE-INPUT"),
		v4.Append("filter", "INPUT", "-j", "POPGATE-INPUT"),
		v4.ClearChain("filter", "POPGATE-FORWARD"),
		v4.Append("filter", "FORWARD", "-j", "POPGATE-FORWARD"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	cfg := hostRulesCases[0].cfg
	cfg.newIPTables = w.newIPTables
	h, err := NewHostRules(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"v4 filter": {
			"-P INPUT ACCEPT",
			"-P FORWARD ACCEPT",
			"-P OUTPUT ACCEPT",
			"-N FOREIGN",
			"-N POPGATE-FORWARD",
			"-N POPGATE-INPUT",
			"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
			"-A INPUT -j POPGATE-INPUT",
			"-A FORWARD -j FOREIGN",
			"-A FORWARD -j POPGATE-FORWARD",
			"-A FOREIGN -j RETURN",
			"-A POPGATE-FORWARD -i pgexit0 -j ACCEPT",
			"-A POPGATE-FORWARD -o pgexit0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			"-A POPGATE-FORWARD -o pgexit0 -j DROP",
			"-A POPGATE-INPUT -p udp -m udp --dport 51820 -j ACCEPT",
		},
		"v4 nat":    hostRulesCases[0].want["v4 nat"],
		"v6 filter": hostRulesCases[0].want["v6 filter"],
		"v6 nat":    hostRulesCases[0].want["v6 nat"],
	}
	diffTables(t, "after Install", w.snapshot(t), want)
}

// TestHostRulesPartialInstall fails each changing iptables call of an Install in turn, then
// checks that Uninstall brings back the tables as they were (IPv4), or that Install carried
// on without IPv6 and removed what it had added there.
func TestHostRulesPartialInstall(t *testing.T) {
	ctx := context.Background()
	cfg := hostRulesCases[0].cfg
	failErr := fakeErrorf("iptables: injected failure")

	// Count the changing calls of a full install in each family.
	w, v4, v6 := newFakeWorld()
	addForeignRules(t, w)
	n4, n6 := v4.changes, v6.changes
	cfg.newIPTables = w.newIPTables
	if h, err := NewHostRules(cfg, nil); err != nil {
		t.Fatal(err)
	} else if err := h.Install(ctx); err != nil {
		t.Fatal(err)
	}
	n4, n6 = v4.changes-n4, v6.changes-n6
	if n4 == 0 || n6 == 0 {
		t.Fatalf("install made %d IPv4 and %d IPv6 changes", n4, n6)
	}

	for _, fam := range []string{"v4", "v6"} {
		n := n4
		if fam == "v6" {
			n = n6
		}
		for i := 1; i <= n; i++ {
			t.Run(fmt.Sprintf("%s call %d of %d", fam, i, n), func(t *testing.T) {
				w, v4, v6 := newFakeWorld()
				addForeignRules(t, w)
				before := w.snapshot(t)
				failing := v4
				if fam == "v6" {
					failing = v6
				}
				failing.failAt, failing.failErr = i, failErr

				cfg := cfg
				cfg.newIPTables = w.newIPTables
				log, logBuf := hostRulesLog()
				h, err := NewHostRules(cfg, log)
				if err != nil {
					t.Fatal(err)
				}
				err = h.Install(ctx)
				if fam == "v4" {
					if !errors.Is(err, failErr) {
						t.Fatalf("Install = %v, want the injected failure", err)
					}
				} else {
					if err != nil {
						t.Fatalf("Install = %v, want IPv4 only and no error", err)
					}
					if h.IPv6() {
						t.Error("IPv6() = true after IPv6 failed")
					}
					if got := strings.Count(logBuf.String(), "level=WARN"); got != 1 {
						t.Errorf("%d warnings, want 1:\n%s", got, logBuf)
					}
					got := w.snapshot(t)
					diffTables(t, "IPv6 after its failed Install", map[string][]string{"v6 filter": got["v6 filter"], "v6 nat": got["v6 nat"]},
						map[string][]string{"v6 filter": before["v6 filter"], "v6 nat": before["v6 nat"]})
				}
				if err := h.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				diffTables(t, "after Close", w.snapshot(t), before)
			})
		}
	}
}

// TestHostRulesUninstallCarriesOn fails one call of Uninstall: the rest still goes, the error
// is returned, and a second Uninstall finishes the job.
func TestHostRulesUninstallCarriesOn(t *testing.T) {
	ctx := context.Background()
	w, v4, _ := newFakeWorld()
	addForeignRules(t, w)
	before := w.snapshot(t)
	cfg := hostRulesCases[0].cfg
	cfg.newIPTables = w.newIPTables
	h, err := NewHostRules(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Install(ctx); err != nil {
		t.Fatal(err)
	}
	failErr := fakeErrorf("iptables: injected failure")
	v4.failAt, v4.failErr = 1, failErr // the first jump deletion, filter INPUT
	if err := h.Uninstall(ctx); !errors.Is(err, failErr) {
		t.Fatalf("Uninstall = %v, want the injected failure", err)
	}
	got := w.snapshot(t)
	if slices.Contains(got["v4 filter"], "-N POPGATE-FORWARD") || slices.Contains(got["v4 nat"], "-N POPGATE-POSTROUTING") {
		t.Errorf("Uninstall stopped at the first error:\n%s\n%s", strings.Join(got["v4 filter"], "\n"), strings.Join(got["v4 nat"], "\n"))
	}
	diffTables(t, "IPv6 after a failed IPv4 Uninstall", map[string][]string{"v6 filter": got["v6 filter"], "v6 nat": got["v6 nat"]},
		map[string][]string{"v6 filter": before["v6 filter"], "v6 nat": before["v6 nat"]})
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	diffTables(t, "after Close", w.snapshot(t), before)
}

func TestHostRulesContextCanceled(t *testing.T) {
	w, v4, _ := newFakeWorld()
	cfg := hostRulesCases[0].cfg
	cfg.newIPTables = w.newIPTables
	h, err := NewHostRules(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Install(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Install = %v, want context.Canceled", err)
	}
	if v4.changes != 0 {
		t.Errorf("Install with a canceled context made %d changes", v4.changes)
	}
	if !h.IPv6() {
		t.Error("a canceled Install turned IPv6 off")
	}
}

func TestNewHostRulesUnavailable(t *testing.T) {
	notFound := func(bin string) error { return &exec.Error{Name: bin, Err: exec.ErrNotFound} }
	denied := fakeErrorf("running [/usr/sbin/iptables -t nat -S POSTROUTING 1 --wait 5]: exit status 4: iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)")
	tests := []struct {
		name     string
		v4, v6   func() (iptablesAPI, error)
		wantErr  []string // substrings of the error; nil: no error
		wantIPv6 bool
		wantWarn int
	}{
		{
			name:    "iptables missing",
			v4:      func() (iptablesAPI, error) { return nil, notFound("iptables") },
			v6:      func() (iptablesAPI, error) { return nil, notFound("ip6tables") },
			wantErr: []string{"kernel exit mode is unavailable", "iptables command is not installed", "apt-get install iptables", "--exit-mode userspace"},
		},
		{
			name:    "no CAP_NET_ADMIN",
			v4:      func() (iptablesAPI, error) { f := newFakeIPTables(); f.denyErr = denied; return f, nil },
			v6:      func() (iptablesAPI, error) { f := newFakeIPTables(); f.denyErr = denied; return f, nil },
			wantErr: []string{"kernel exit mode is unavailable", "iptables needs CAP_NET_ADMIN", "--exit-mode userspace", "Permission denied"},
		},
		{
			name:     "ip6tables missing",
			v4:       func() (iptablesAPI, error) { return newFakeIPTables(), nil },
			v6:       func() (iptablesAPI, error) { return nil, notFound("ip6tables") },
			wantWarn: 1,
		},
		{
			name: "no IPv6 nat table",
			v4:   func() (iptablesAPI, error) { return newFakeIPTables(), nil },
			v6: func() (iptablesAPI, error) {
				f := newFakeIPTables()
				delete(f.tables, "nat")
				return f, nil
			},
			wantWarn: 1,
		},
		{
			name:     "both",
			v4:       func() (iptablesAPI, error) { return newFakeIPTables(), nil },
			v6:       func() (iptablesAPI, error) { return newFakeIPTables(), nil },
			wantIPv6: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hostRulesCases[0].cfg
			cfg.newIPTables = func(proto iptables.Protocol) (iptablesAPI, error) {
				if proto == iptables.ProtocolIPv6 {
					return tc.v6()
				}
				return tc.v4()
			}
			log, logBuf := hostRulesLog()
			h, err := NewHostRules(cfg, log)
			if tc.wantErr != nil {
				if !errors.Is(err, ErrKernelModeUnavailable) {
					t.Fatalf("NewHostRules = %v, want ErrKernelModeUnavailable", err)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("NewHostRules: %v", err)
			}
			if h.IPv6() != tc.wantIPv6 {
				t.Errorf("IPv6() = %v, want %v", h.IPv6(), tc.wantIPv6)
			}
			if err := h.Install(context.Background()); err != nil {
				t.Fatalf("Install: %v", err)
			}
			if err := h.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := strings.Count(logBuf.String(), "level=WARN"); got != tc.wantWarn {
				t.Errorf("%d warnings, want %d:\n%s", got, tc.wantWarn, logBuf)
			}
		})
	}
}

func TestHostRulesConfigValidate(t *testing.T) {
	ok := HostRulesConfig{TunName: "pgexit0", OverlayV4: testOverlayV4}
	tests := []struct {
		name    string
		edit    func(c *HostRulesConfig)
		wantErr string // "" for valid
	}{
		{"defaults", func(c *HostRulesConfig) {}, ""},
		{"no tun", func(c *HostRulesConfig) { c.TunName = "" }, "TunName is empty"},
		{"bad tun", func(c *HostRulesConfig) { c.TunName = "eth+" }, `TunName "eth+" is not an interface name`},
		{"long tun", func(c *HostRulesConfig) { c.TunName = "abcdefghijklmnop" }, "is not an interface name"},
		{"port", func(c *HostRulesConfig) { c.ListenPort = 70000 }, "ListenPort 70000 is out of range"},
		{"bad egress", func(c *HostRulesConfig) { c.EgressInterface = "a b" }, `EgressInterface "a b" is not an interface name`},
		{"egress is tun", func(c *HostRulesConfig) { c.EgressInterface = "pgexit0" }, "is the TUN itself"},
		{"v6 in OverlayV4", func(c *HostRulesConfig) { c.OverlayV4 = testOverlayV6 }, "OverlayV4 fd00:aaaa:bbbb::/48 is not an IPv4 prefix"},
		{"v4 in OverlayV6", func(c *HostRulesConfig) { c.OverlayV6 = testOverlayV4 }, "OverlayV6 100.64.0.0/10 is not an IPv6 prefix"},
		{"4in6 in OverlayV6", func(c *HostRulesConfig) { c.OverlayV6 = netip.MustParsePrefix("::ffff:10.0.0.0/104") }, "is not an IPv6 prefix"},
		{"no overlay", func(c *HostRulesConfig) { c.OverlayV4 = netip.Prefix{} }, "OverlayV4 and OverlayV6 are both empty"},
		{"v6 only", func(c *HostRulesConfig) { c.OverlayV4, c.OverlayV6 = netip.Prefix{}, testOverlayV6 }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if c.ListenPort != 51820 {
					t.Errorf("ListenPort = %d, want the default 51820", c.ListenPort)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestHostRulesKernelModeAvailable(t *testing.T) {
	dir := t.TempDir()
	tun := filepath.Join(dir, "tun")
	if err := os.WriteFile(tun, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	status := func(capEff string) string {
		p := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(capEff)+".status")
		body := "Name:\tpopgate\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n"
		if capEff != "" {
			body += "CapEff:\t" + capEff + "\n"
		}
		body += "CapBnd:\t000001ffffffffff\n"
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	found := func(string) (string, error) { return "/usr/sbin/iptables", nil }
	missing := func(name string) (string, error) { return "", &exec.Error{Name: name, Err: exec.ErrNotFound} }
	tests := []struct {
		name       string
		statusPath string
		tunPath    string
		lookPath   func(string) (string, error)
		want       bool
		wantWhy    string
	}{
		{"root", status("000001ffffffffff"), tun, found, true, "has CAP_NET_ADMIN"},
		{"only CAP_NET_ADMIN", status("0000000000001000"), tun, found, true, "has CAP_NET_ADMIN"},
		{"all but CAP_NET_ADMIN", status("000001ffffffefff"), tun, found, false, "lacks CAP_NET_ADMIN"},
		{"no caps", status("0000000000000000"), tun, found, false, "lacks CAP_NET_ADMIN"},
		{"no CapEff line", status(""), tun, found, false, "has no CapEff line"},
		{"garbled CapEff", status("zz"), tun, found, false, `CapEff "zz" is not a hex number`},
		{"no status file", filepath.Join(dir, "nope"), tun, found, false, "cannot read the capabilities"},
		{"no tun", status("000001ffffffffff"), filepath.Join(dir, "nope"), found, false, "cannot be opened"},
		{"no iptables", status("000001ffffffffff"), tun, missing, false, "apt-get install iptables"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := kernelModeAvailable(tc.statusPath, tc.tunPath, tc.lookPath)
			if got != tc.want || !strings.Contains(why, tc.wantWhy) {
				t.Errorf("kernelModeAvailable = %v, %q; want %v and a reason containing %q", got, why, tc.want, tc.wantWhy)
			}
		})
	}
	// The real one must not fail on this machine, whatever it answers.
	ok, why := KernelModeAvailable()
	t.Logf("KernelModeAvailable() = %v, %q", ok, why)
}

func TestHostRulesOneLineError(t *testing.T) {
	err := oneLineErr(errors.New("running [iptables -t nat -N X --wait]: exit status 4: iptables v1.8.9 (nf_tables): CHAIN_ADD failed\nTry `iptables -h' for more information.\n"))
	want := "running [iptables -t nat -N X --wait]: exit status 4: iptables v1.8.9 (nf_tables): CHAIN_ADD failed; Try `iptables -h' for more information."
	if err.Error() != want {
		t.Errorf("oneLineErr = %q, want %q", err, want)
	}
	if oneLineErr(nil) != nil {
		t.Error("oneLineErr(nil) != nil")
	}
}
