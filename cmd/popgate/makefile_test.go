package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo stands in for go in TestMakeRun: `go list -deps` lists n packages, `go build -v`
// names n packages on stderr as it "compiles" them and writes, at -o, a popgate that prints
// its arguments; with FAKE_GO_FAIL set it fails like a compile error instead.
const fakeGo = `#!/bin/sh
n=${FAKE_GO_PACKAGES:-0}
case "$1" in
list)
	i=0; while [ $i -lt 120 ]; do echo "example.com/pkg$i"; i=$((i+1)); done ;;
build)
	out=""; prev=""
	for a in "$@"; do [ "$prev" = "-o" ] && out=$a; prev=$a; done
	i=0; while [ $i -lt $n ]; do echo "example.com/pkg$i" >&2; i=$((i+1)); done
	if [ -n "$FAKE_GO_FAIL" ]; then
		echo "# github.com/popgate/popgate/store" >&2
		echo "store/peers.go:12:2: undefined: frob" >&2
		exit 1
	fi
	printf '#!/bin/sh\necho "popgate $*"\n' > "$out"; chmod +x "$out" ;;
*)
	echo "fake go: $*" >&2; exit 2 ;;
esac
`

// TestMakeRun runs the Makefile's build and run targets with a fake go: ARGS reach serve,
// a long build says how far it got, a short one says nothing more, and a failed one shows
// the compiler's message and fails.
func TestMakeRun(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Makefile")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	goBin := filepath.Join(dir, "go")
	if err := os.WriteFile(goBin, []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	make := func(env []string, args ...string) (string, error) {
		cmd := exec.Command("make", append([]string{"-s", "-C", root, "GO=" + goBin, "BIN=" + filepath.Join(dir, "popgate")}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := make([]string{"FAKE_GO_PACKAGES=120"}, "run", "ARGS=--public-endpoint vpn.example.com:51820 --log-level debug")
	if err != nil {
		t.Fatalf("make run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"build: compiling " + filepath.Join(dir, "popgate") + " and the packages it uses (120 in all",
		"a first build takes about ",
		"build: 50 of 120 packages compiled\n",
		"build: 100 of 120 packages compiled\n",
		"popgate serve --public-endpoint vpn.example.com:51820 --log-level debug\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make run output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "example.com/pkg") {
		t.Errorf("make run lists the packages one by one:\n%s", out)
	}

	// A rebuild of a few packages says nothing more; without ARGS serve gets no flags.
	out, err = make([]string{"FAKE_GO_PACKAGES=3"}, "run")
	if err != nil || strings.Contains(out, "build: ") || !strings.HasSuffix(out, "popgate serve \n") && !strings.HasSuffix(out, "popgate serve\n") {
		t.Errorf("make run after a small change: %v\n%s", err, out)
	}

	out, err = make([]string{"FAKE_GO_PACKAGES=60", "FAKE_GO_FAIL=1"}, "build")
	if err == nil || !strings.Contains(out, "store/peers.go:12:2: undefined: frob\n") || !strings.Contains(out, "# github.com/popgate/popgate/store\n") {
		t.Errorf("a failed build: %v\n%s", err, out)
	}
}

// TestMakeFuzzRunsEveryTarget runs `make fuzz` with a stand-in for go that lists two
// packages of two fuzz targets each and fails the first target it runs: every target still
// runs, the failure is listed at the end, and make fails.
func TestMakeFuzzRunsEveryTarget(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "ran")
	goBin := filepath.Join(dir, "go")
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
	if err := os.WriteFile(goBin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "fuzz", "GO="+goBin, "FUZZTIME=1s")
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
