package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// netnsEnv names, in the test binary re-run inside `ip netns exec`, the namespace it runs in.
// go-iptables runs the iptables binary, so the whole process must be in the namespace: then
// no rule of the host can be touched.
const netnsEnv = "POPGATE_HOSTRULES_NETNS"

// TestHostRulesNetns runs the cases of TestHostRulesFake against the real iptables and
// ip6tables, each in a fresh network namespace, and checks the fake against them; then, with
// CAP_NET_ADMIN dropped, that NewHostRules and KernelModeAvailable say what is missing.
func TestHostRulesNetns(t *testing.T) {
	if env := os.Getenv(netnsEnv); env != "" {
		runInNetns(t, env)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace: run `sudo go test -run HostRules ./firewall/`")
	}
	for _, bin := range []string{"ip", "iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing: `make test-deps` installs it", bin)
			}
			t.Skipf("%s is missing (`make test-deps` installs it): %v", bin, err)
		}
	}
	for i, tc := range hostRulesCases {
		t.Run(tc.name, func(t *testing.T) {
			reexecInNetns(t, strconv.Itoa(i))
		})
	}
	t.Run("without CAP_NET_ADMIN", func(t *testing.T) {
		if _, err := exec.LookPath("setpriv"); err != nil {
			t.Skipf("setpriv (util-linux) is missing: %v", err)
		}
		reexecInNetns(t, "denied", "setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin")
	})
}

// reexecInNetns runs this test again, through wrapper (if any), inside a new network
// namespace, telling it which part to run.
func reexecInNetns(t *testing.T, part string, wrapper ...string) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("pgfw-%d-%s", os.Getpid(), part)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"netns", "exec", ns}, wrapper...)
	args = append(args, self, "-test.run", "^TestHostRulesNetns$", "-test.count", "1", "-test.v", "-test.timeout", "90s")
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+ns+"/"+part)
	out, err := cmd.CombinedOutput()
	t.Logf("in namespace %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("the test in namespace %s failed: %v", ns, err)
	}
	if !strings.Contains(string(out), "--- PASS: TestHostRulesNetns") {
		t.Fatalf("the test in namespace %s did not run", ns)
	}
}

// runInNetns is the half of TestHostRulesNetns that runs inside a namespace; env is
// "namespace/part", part a case index or "denied".
func runInNetns(t *testing.T, env string) {
	ns, part, _ := strings.Cut(env, "/")
	// Refuse to touch any rule unless this process is in the namespace the parent made.
	var self, want syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(filepath.Join("/run/netns", ns), &want); err != nil {
		t.Fatal(err)
	}
	if self.Dev != want.Dev || self.Ino != want.Ino {
		t.Fatalf("refusing to run: this process is not in network namespace %s", ns)
	}

	if part == "denied" {
		ok, why := KernelModeAvailable()
		if ok || !strings.Contains(why, "lacks CAP_NET_ADMIN") {
			t.Errorf("KernelModeAvailable() = %v, %q; want false, lacks CAP_NET_ADMIN", ok, why)
		}
		_, err := NewHostRules(hostRulesCases[0].cfg, nil)
		if !errors.Is(err, ErrKernelModeUnavailable) || !strings.Contains(err.Error(), "iptables needs CAP_NET_ADMIN") {
			t.Fatalf("NewHostRules = %v, want ErrKernelModeUnavailable saying iptables needs CAP_NET_ADMIN", err)
		}
		t.Logf("NewHostRules: %v", err)
		return
	}
	i, err := strconv.Atoi(part)
	if err != nil || i < 0 || i >= len(hostRulesCases) {
		t.Fatalf("%s=%q names no case", netnsEnv, env)
	}
	v4, err := newRealIPTables(iptables.ProtocolIPv4)
	if err != nil {
		t.Fatal(err)
	}
	v6, err := newRealIPTables(iptables.ProtocolIPv6)
	if err != nil {
		t.Fatal(err)
	}
	w := ruleWorld{v4: v4, v6: v6, dump: dumpReal}
	t.Logf("iptables: %s", strings.TrimSpace(iptablesOutput(t, "iptables", "-V")))
	// The fresh namespace first: HostRules must bring it back to exactly this.
	fresh := newFakeIPTables()
	diffTables(t, "fresh namespace", w.snapshot(t), map[string][]string{
		"v4 filter": fresh.dump("filter"), "v4 nat": fresh.dump("nat"),
		"v6 filter": fresh.dump("filter"), "v6 nat": fresh.dump("nat"),
	})
	runHostRulesCase(t, w, hostRulesCases[i])
}

// dumpReal is ruleWorld.dump for the real binaries.
func dumpReal(t *testing.T, v6 bool, table string) []string {
	t.Helper()
	bin := "iptables"
	if v6 {
		bin = "ip6tables"
	}
	out := strings.TrimSpace(iptablesOutput(t, bin, "-w", "5", "-t", table, "-S"))
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

func iptablesOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}
