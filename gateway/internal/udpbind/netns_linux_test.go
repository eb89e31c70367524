package udpbind

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// Test namespaces are ub<pid>-<n>; test ports 47xxx.
var nsSeq atomic.Int32

// netns is a network namespace made for one test, removed at its end.
type netns struct{ name string }

// newNetns makes a namespace with lo up and runs each setup command in it ("ip" arguments
// after "-n NAME"). It skips the test without root.
func newNetns(t *testing.T, setup ...string) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	ns := &netns{name: fmt.Sprintf("ub%d-%d", os.Getpid(), nsSeq.Add(1))}
	ip(t, "netns", "add", ns.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns.name).Run() })
	ip(t, "-n", ns.name, "link", "set", "lo", "up")
	for _, s := range setup {
		ip(t, append([]string{"-n", ns.name}, strings.Fields(s)...)...)
	}
	return ns
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// do runs fn on a thread inside the namespace: the sockets fn opens live there. The thread
// is discarded afterwards.
func (ns *netns) do(t *testing.T, fn func()) {
	t.Helper()
	if err := ns.run(fn); err != nil {
		t.Fatal(err)
	}
}

// run is do for any goroutine: it returns what failed.
func (ns *netns) run(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open("/run/netns/" + ns.name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.name, err)
			return
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

// nsBind opens its bind inside a namespace, whichever goroutine calls Open (a wireguard-go
// device opens its bind from its own goroutines).
type nsBind struct {
	conn.Bind
	ns *netns
}

func (b nsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	if rerr := b.ns.run(func() { fns, actual, err = b.Bind.Open(port) }); rerr != nil {
		return nil, 0, rerr
	}
	return fns, actual, err
}
