// Package testbed runs end-to-end tests against stock WireGuard parts in network namespaces.
//
// It creates namespaces and veth links (NewNetns, Veth), the topology of the project's
// TESTBED.md (NewTopology) with as many client namespaces as a test needs (Topology.NewClient)
// and sites, LANs behind a site connector (NewSite), stock wireguard-go clients and servers
// configured with wg(8) (StartClient, Site.StartConnector, StartStockServer), and traffic
// helpers: HTTP servers (a file, optionally rate-limited, or a text), a TCP banner, a UDP
// echo server, downloads, echoes (one-shot or a steady one-socket flow) and pings from
// another namespace.
//
// Everything a test creates is named uniquely per process (a pid suffix) and removed in
// t.Cleanup, also when the test fails: processes are ended by pid, namespaces deleted, UAPI
// sockets in /var/run/wireguard (shared by all namespaces) removed. Only loopback and addresses
// inside the namespaces the test created ever receive traffic.
//
// The helpers that take a testing.TB call t.Fatal and so must run on the test's goroutine.
package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// RequireRoot skips the test unless it runs as root: namespaces, veth links and TUN devices
// need CAP_NET_ADMIN.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testbed: end-to-end test needs root (network namespaces, veth, /dev/net/tun); run it as root, as CI does")
	}
}

// RequireTools checks that each tool is in PATH. When one is missing it fails the test under
// CI (CI=true), where a missing tool means a broken setup, and skips it otherwise; either way
// the message says to run `make test-deps`.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("testbed: missing %s: run `make test-deps` (as root) to install them", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// seq numbers the names this process hands out.
var seq atomic.Uint32

// uniqueSuffix returns "<pid>-<n>", unique among the live processes of this machine.
func uniqueSuffix() string {
	return fmt.Sprintf("%d-%d", os.Getpid(), seq.Add(1))
}

// Poll calls fn every 200 ms until it returns nil and fails the test with what and fn's last
// error when timeout passes first. fn's context ends at the deadline. Use it instead of timed
// assertions: pick a generous timeout, it costs nothing when things work.
func Poll(t testing.TB, timeout time.Duration, what string, fn func(ctx context.Context) error) {
	t.Helper()
	if err := PollErr(context.Background(), timeout, fn); err != nil {
		t.Fatalf("%s: not within %v: %v", what, timeout, err)
	}
}

// PollErr is Poll returning fn's last error instead of failing a test.
func PollErr(ctx context.Context, timeout time.Duration, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// commandError describes a failed command with its output.
func commandError(args []string, out []byte, err error) error {
	msg := strings.TrimSpace(string(out))
	if msg == "" {
		return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, msg)
}

// runHost runs a command in the test's own namespace and returns its combined output.
func runHost(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("testbed: no command")
	}
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), commandError(args, out, err)
	}
	return string(out), nil
}
