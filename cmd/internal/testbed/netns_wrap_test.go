package testbed

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWrap: a wrapped command sees the namespace's links (only lo in a new one), not the
// host's.
func TestWrap(t *testing.T) {
	RequireRoot(t)
	RequireTools(t, "ip")
	ns := NewNetns(t, "wrap")
	cmd := exec.Command("ip", "-o", "link", "show")
	if err := ns.Wrap(cmd); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], ": lo:") {
		t.Errorf("wrapped `ip -o link show` printed %q, want only lo", out)
	}
	if err := ns.Wrap(exec.Command("no-such-program-pgtb")); err == nil {
		t.Error("Wrap of a program that is not in PATH: no error")
	}
}
