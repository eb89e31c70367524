// Package packaging holds the tests of popgate's .deb and VM image (the recipes are the shell
// scripts and files beside them). The fast tests run with every `go test ./...`; the ones
// that build a root file system or boot a VM run when POPGATE_TEST_PACKAGING asks for them
// (`make test-packaging`).
package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository's top directory (tests run in packaging/).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Dir(filepath.Dir(file))
}

// fromRoot makes a path given relative to the repository root (as make passes it) absolute.
func fromRoot(t testing.TB, path string) string {
	t.Helper()
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(repoRoot(t), path)
}

// wantSlow skips t unless POPGATE_TEST_PACKAGING names kind ("deb", "image") or "all".
func wantSlow(t testing.TB, kind string) {
	t.Helper()
	list := strings.Split(os.Getenv("POPGATE_TEST_PACKAGING"), ",")
	if !slices.Contains(list, kind) && !slices.Contains(list, "all") {
		t.Skipf("set POPGATE_TEST_PACKAGING=%s (or run make test-packaging) to run this %s test", kind, kind)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the %s tests need root (mmdebstrap, systemd-nspawn, network namespaces)", kind)
	}
}

// requireTools fails t when a command is missing; make test-packaging installs them.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing tools %v: run packaging/deps.sh test (make test-packaging does)", missing)
	}
}

// run runs a command with a timeout and returns its stdout; a failure includes stderr.
func run(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\nstdout: %s\nstderr: %s", strings.Join(args, " "), err,
			tail(stdout.String(), 40), tail(stderr.String(), 40))
	}
	return stdout.String(), nil
}

func mustRun(t testing.TB, timeout time.Duration, dir string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := run(ctx, dir, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// poll calls fn every interval until it returns nil or timeout passes; it returns fn's last
// error then.
func poll(timeout, interval time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

// buildDeb runs packaging/deb/build.sh with the upstream version into dir and returns the
// .deb's path.
func buildDeb(t testing.TB, version, dir string) string {
	t.Helper()
	env := []string{"DIST=" + dir}
	if version != "" {
		env = append(env, "POPGATE_VERSION="+version)
	}
	out := mustRun(t, 10*time.Minute, repoRoot(t), env, "packaging/deb/build.sh")
	return strings.TrimSpace(tail(out, 1))
}

// debField reads a control field of a .deb.
func debField(t testing.TB, deb, field string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, time.Minute, "", nil, "dpkg-deb", "--field", deb, field))
}
