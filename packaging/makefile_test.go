package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeFuzzRunsEveryTarget runs `make fuzz` with a stand-in for go that lists two
// packages of two fuzz targets each and fails the first target it runs: every target still
// runs, the failure is listed at the end, and make fails.
func TestMakeFuzzRunsEveryTarget(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "ran")
	fakeGo := filepath.Join(dir, "go")
	script := `#!/bin/sh
case "$*" in
"list ./...") echo example.com/a; echo example.com/b ;;
"test -list ^Fuzz "*) echo FuzzOne; echo FuzzTwo; echo "ok $4 0.01s" ;;
"test -run ^\$ -fuzz "*)
	echo "$8 $5" >> ` + log + `
	[ "$8 $5" = "example.com/a ^FuzzOne\$" ] && { echo "--- FAIL: FuzzOne (toolchain flake)"; exit 1; }
	exit 0 ;;
*) echo "fake go: unexpected $*" >&2; exit 3 ;;
esac
`
	if err := os.WriteFile(fakeGo, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "-C", repoRoot(t), "fuzz", "GO="+fakeGo, "FUZZTIME=1s")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Errorf("make fuzz succeeded although a target failed:\n%s", out)
	}
	ran, _ := os.ReadFile(log)
	want := "example.com/a ^FuzzOne$\nexample.com/a ^FuzzTwo$\nexample.com/b ^FuzzOne$\nexample.com/b ^FuzzTwo$\n"
	if string(ran) != want {
		t.Errorf("targets run:\n%s\nwant:\n%s\nmake said:\n%s", ran, want, out)
	}
	if !strings.Contains(string(out), "these targets failed") || !strings.Contains(string(out), "  example.com/a.FuzzOne\n") ||
		strings.Contains(string(out), "example.com/b.FuzzOne") {
		t.Errorf("make fuzz did not list the failure (only):\n%s", out)
	}
}
