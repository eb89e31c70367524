package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nsPrefix starts the name of every namespace this package creates: "pgtb-<pid>-<n>-<role>".
const nsPrefix = "pgtb-"

// Netns is a named network namespace (`ip netns`) that a test created. Deleting it (at test
// cleanup) also removes its links, addresses, routes and firewall rules.
//
// Commands run in it through `ip netns exec`, which also bind-mounts the files of
// /etc/netns/<name>/ over /etc (resolv.conf, hosts); Go code runs in it through Do, which
// switches only the network namespace of one OS thread. /var/run/wireguard is NOT per
// namespace: UAPI sockets of every namespace meet there, so interface names must be unique.
type Netns struct {
	Name string
}

// sweepOnce removes, once per process, what earlier runs of this package left behind when
// they were killed before their cleanup ran: namespaces named after a pid that no longer
// exists, and UAPI sockets named like ours ("<prefix><pid>-<n>.sock") that nothing listens on.
var sweepOnce sync.Once

// staleSocketRE matches the UAPI sockets of interfaces named by Topology.Name.
var staleSocketRE = regexp.MustCompile(`^[a-z]{1,4}([0-9]+)-[0-9]+\.sock$`)

func sweepStale() {
	if socks, err := os.ReadDir(UAPIDir); err == nil {
		for _, e := range socks {
			m := staleSocketRE.FindStringSubmatch(e.Name())
			if m == nil || pidAlive(m[1]) {
				continue
			}
			path := filepath.Join(UAPIDir, e.Name())
			if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
				c.Close() // someone serves it after all
			} else if errors.Is(err, syscall.ECONNREFUSED) {
				_ = os.Remove(path)
			}
		}
	}
	ents, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), nsPrefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if !pidAlive(pid) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = runHost(ctx, "ip", "netns", "del", e.Name())
			cancel()
			_ = os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
		}
	}
}

// pidAlive reports whether the decimal pid names a running process; anything that is not a
// pid counts as alive, so that nothing is removed by mistake.
func pidAlive(pid string) bool {
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 1 {
		return true
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", n))
	return !errors.Is(err, os.ErrNotExist)
}

// NewNetns creates the namespace "pgtb-<pid>-<n>-<role>" with loopback up and IPv6 duplicate
// address detection off (addresses are usable at once), and deletes it at test cleanup.
func NewNetns(t testing.TB, role string) *Netns {
	t.Helper()
	return newNetnsNamed(t, nsPrefix+uniqueSuffix()+"-"+role)
}

func newNetnsNamed(t testing.TB, name string) *Netns {
	t.Helper()
	sweepOnce.Do(sweepStale)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The first `ip netns add` on a machine makes /var/run/netns a shared mount; two processes
	// doing that at once can trip over each other, so try again.
	var err error
	for range 3 {
		if _, err = runHost(ctx, "ip", "netns", "add", name); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("testbed: create namespace: %v", err)
	}
	ns := &Netns{Name: name}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := runHost(ctx, "ip", "netns", "del", name); err != nil {
			t.Errorf("testbed: delete namespace: %v", err)
		}
		_ = os.RemoveAll(filepath.Join("/etc/netns", name))
	})
	ns.MustRun(t, "ip", "link", "set", "lo", "up")
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := ns.Sysctl(k, "0"); err != nil {
			t.Fatalf("testbed: %v", err)
		}
	}
	return ns
}

// String returns the namespace's name.
func (ns *Netns) String() string { return ns.Name }

// Command returns a command that runs args inside the namespace through `ip netns exec`
// (which execs args[0], so the process's pid is the command's own). It is killed when ctx ends
// and when the test binary dies.
func (ns *Netns) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs args inside the namespace and returns the combined output. The error carries the
// command and its output.
func (ns *Netns) Run(ctx context.Context, args ...string) (string, error) {
	out, err := ns.Command(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), commandError(append([]string{"[" + ns.Name + "]"}, args...), out, err)
	}
	return string(out), nil
}

// MustRun is Run with a 30 s limit that fails t on error.
func (ns *Netns) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := ns.Run(ctx, args...)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return out
}

// Start starts a long-running process inside the namespace (see Proc); t's cleanup stops it.
// To set environment variables, start args with "env", "K=V", ….
func (ns *Netns) Start(t testing.TB, args ...string) (*Proc, error) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	return startProc(t, args, cmd)
}

// Do runs fn on an OS thread switched into the namespace. Sockets that fn creates belong to
// the namespace for their whole life, wherever they are used later; so start servers
// (Listen, ListenPacket) and dial (DialContext) with it. fn must not create sockets in new
// goroutines: those run on other threads, in the test's own namespace.
func (ns *Netns) Do(fn func() error) error {
	runtime.LockOSThread()
	// Open the target first so nothing is switched when the namespace is gone.
	target, err := os.Open(filepath.Join("/var/run/netns", ns.Name))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testbed: open namespace %s: %w", ns.Name, err)
	}
	defer target.Close()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testbed: open own namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testbed: enter namespace %s: %w", ns.Name, err)
	}
	defer func() {
		// A thread that cannot switch back stays locked: the runtime ends it with this
		// goroutine instead of reusing it in the wrong namespace.
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// Sysctl sets a sysctl of the namespace, e.g. Sysctl("net.ipv4.ip_forward", "1").
func (ns *Netns) Sysctl(key, value string) error {
	return ns.Do(func() error {
		path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, ns.Name, err)
		}
		return nil
	})
}

// EnableForwarding turns on IPv4 and IPv6 forwarding in the namespace.
func (ns *Netns) EnableForwarding() error {
	if err := ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	return ns.Sysctl("net.ipv6.conf.all.forwarding", "1")
}

// Listen is net.Listen inside the namespace.
func (ns *Netns) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := ns.Do(func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// ListenPacket is net.ListenPacket inside the namespace.
func (ns *Netns) ListenPacket(network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

// DialContext dials from inside the namespace. Use IP literals: name resolution would run
// in the test's own namespace.
func (ns *Netns) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// HTTPClient returns a client whose connections start inside the namespace. It uses no proxy
// and no keep-alive (every request is a new flow).
func (ns *Netns) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       ns.DialContext,
		DisableKeepAlives: true,
	}}
}

// AddAddr adds an address to a link of the namespace; IPv6 addresses skip duplicate address
// detection.
func (ns *Netns) AddAddr(ctx context.Context, dev string, p netip.Prefix) error {
	args := []string{"ip", "address", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	_, err := ns.Run(ctx, args...)
	return err
}

// VethEnd is one end of a veth pair: its namespace, link name (at most 15 bytes) and
// addresses.
type VethEnd struct {
	NS    *Netns
	Name  string
	Addrs []netip.Prefix
}

// Veth creates a veth pair between two namespaces, adds the addresses and sets both ends up.
// The pair is created inside a.NS, so no name ever appears in the test's own namespace; it
// goes away with the namespaces.
func Veth(t testing.TB, a, b VethEnd) {
	t.Helper()
	a.NS.MustRun(t, "ip", "link", "add", a.Name, "type", "veth", "peer", "name", b.Name, "netns", b.NS.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, end := range []VethEnd{a, b} {
		for _, p := range end.Addrs {
			if err := end.NS.AddAddr(ctx, end.Name, p); err != nil {
				t.Fatalf("testbed: %v", err)
			}
		}
		end.NS.MustRun(t, "ip", "link", "set", end.Name, "up")
	}
}

// UDPRcvbufErrors is UDP's RcvbufErrors in the namespace (/proc/net/snmp): datagrams the
// kernel dropped because a socket's receive buffer was full.
func (n *Netns) UDPRcvbufErrors() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.Run(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	var names []string
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "RcvbufErrors" && i < len(f) {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("testbed: no Udp RcvbufErrors in %s's /proc/net/snmp", n.Name)
}
