package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The base root file system of the container tests: Debian 12 with systemd, built by
// mmdebstrap from Debian's mirror and cached as a tarball, unpacked fresh for each test.
var basePackages = []string{"systemd", "systemd-sysv", "dbus", "adduser", "iptables", "iproute2"}

// baseMaxAge is how long a cached base tarball is used before it is built again.
const baseMaxAge = 7 * 24 * time.Hour

// baseRootfs returns the path of the cached base tarball, building it when it is missing or
// old. POPGATE_TEST_CACHE names the cache directory (default: dist/cache).
func baseRootfs(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("POPGATE_TEST_CACHE")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "dist", "cache")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "bookworm-"+strings.Join(basePackages, "_")+".tar")
	if fi, err := os.Stat(tarball); err == nil && time.Since(fi.ModTime()) < baseMaxAge {
		return tarball
	}
	start := time.Now()
	tmp := tarball + ".tmp"
	// --format=tar: mmdebstrap would take the name ending in .tmp for a directory.
	mustRun(t, 15*time.Minute, "", nil, "mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
		"--include="+strings.Join(basePackages, ","), "bookworm", tmp, "http://deb.debian.org/debian")
	if err := os.Rename(tmp, tarball); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the base root file system %s in %s", tarball, time.Since(start).Round(time.Second))
	return tarball
}

// container is a Debian 12 root booted with systemd-nspawn: its own systemd as PID 1, its own
// network namespace holding only loopback.
type container struct {
	t      *testing.T
	dir    string
	nspawn *exec.Cmd
	done   chan struct{}
	pid1   int // the container's systemd, in the host's PID namespace
	log    *os.File
}

// bootContainer unpacks the base tarball into a fresh directory and boots it, with bind
// (read-only) mounted at /debs. Cleanup powers it off.
func bootContainer(t *testing.T, bind string) *container {
	t.Helper()
	base := baseRootfs(t)
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, 5*time.Minute, "", nil, "tar", "-C", dir, "-xf", base)
	log, err := os.Create(filepath.Join(t.TempDir(), "nspawn.log"))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("pgpkg%d", os.Getpid())
	// --register=no --keep-unit: this host runs no systemd (no machined, no bus).
	cmd := exec.Command("systemd-nspawn", "-D", dir, "-M", name, "--register=no", "--keep-unit",
		"--private-network", "-b", "--console=passive", "--bind-ro="+bind+":/debs")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &container{t: t, dir: dir, nspawn: cmd, done: make(chan struct{}), log: log}
	go func() { cmd.Wait(); close(c.done) }()
	t.Cleanup(c.stop)

	err = poll(30*time.Second, 100*time.Millisecond, func() error {
		select {
		case <-c.done:
			return fmt.Errorf("systemd-nspawn exited")
		default:
		}
		children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(children)) {
			pid, _ := strconv.Atoi(f)
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasSuffix(exe, "/systemd") {
				c.pid1 = pid
				return nil
			}
		}
		return fmt.Errorf("no systemd under systemd-nspawn yet")
	})
	if err != nil {
		t.Fatalf("container did not start: %v\n%s", err, c.logTail())
	}
	// is-system-running --wait returns once boot finished: running, or degraded. It fails
	// while systemd has not yet opened its socket.
	var out string
	err = poll(time.Minute, 200*time.Millisecond, func() error {
		out, err = c.sh(time.Minute, "systemctl is-system-running --wait || true")
		if strings.TrimSpace(out) == "" {
			return fmt.Errorf("systemctl is-system-running: %v", err)
		}
		return nil
	})
	if s := strings.TrimSpace(out); s != "running" {
		failed, _ := c.sh(time.Minute, "systemctl --failed --no-pager; journalctl -b --no-pager | tail -n 40")
		t.Fatalf("container booted into state %q, want running:\n%s", s, failed)
	}
	return c
}

func (c *container) logTail() string {
	data, _ := os.ReadFile(c.log.Name())
	return tail(string(data), 40)
}

// sh runs a shell script inside the container as root, with a clean environment, and
// returns its stdout (and stderr, on failure, in the error).
func (c *container) sh(timeout time.Duration, script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return run(ctx, "", nil, "nsenter", "-t", strconv.Itoa(c.pid1), "-a", "--",
		"/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root", "TERM=dumb",
		"/bin/sh", "-euc", script)
}

// must runs script and fails the test when it fails.
func (c *container) must(script string) string {
	c.t.Helper()
	out, err := c.sh(3*time.Minute, script)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// hostNet runs a host command (curl) inside the container's network namespace.
func (c *container) hostNet(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return run(ctx, "", nil, append([]string{"nsenter", "-t", strconv.Itoa(c.pid1), "-n", "--"}, args...)...)
}

// stop powers the container off (SIGRTMIN+4 to its systemd) and waits; it kills
// systemd-nspawn when that takes too long.
func (c *container) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	if c.pid1 > 0 {
		syscall.Kill(c.pid1, syscall.Signal(34+4)) // SIGRTMIN+4: poweroff
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.t.Logf("container did not power off within 30 s: killing it")
		if c.pid1 > 0 {
			syscall.Kill(c.pid1, syscall.SIGKILL) // takes the container's PID namespace with it
		}
		syscall.Kill(-c.nspawn.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
}
