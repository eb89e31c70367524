package netstack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type echoReply struct {
	src     netip.Addr
	id, seq uint16
	payload string
}

// replyCollector is an EchoHandler that keeps the replies a test asked for (a raw socket
// also sees replies meant for other processes).
type replyCollector struct {
	mu   sync.Mutex
	want map[[2]uint16]bool
	ch   chan echoReply
}

func newReplyCollector() *replyCollector {
	return &replyCollector{want: make(map[[2]uint16]bool), ch: make(chan echoReply, 16)}
}

func (r *replyCollector) expect(id, seq uint16) {
	r.mu.Lock()
	r.want[[2]uint16{id, seq}] = true
	r.mu.Unlock()
}

func (r *replyCollector) handle(src netip.Addr, id, seq uint16, payload []byte) {
	r.mu.Lock()
	ok := r.want[[2]uint16{id, seq}]
	r.mu.Unlock()
	if ok {
		r.ch <- echoReply{src, id, seq, string(payload)}
	}
}

// pingLoopback pings 127.0.0.1 and ::1 through p, three times each, with ids that the
// kernel would not choose itself, and checks that every reply carries the id and seq
// Ping was given.
func pingLoopback(t *testing.T, p *hostPinger) {
	t.Helper()
	rc := newReplyCollector()
	if err := p.Start(rc.handle); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, dst := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")} {
		for seq := uint16(1); seq <= 3; seq++ {
			id := uint16(0xbe00 + seq)
			payload := fmt.Sprintf("popgate %v %d", dst, seq)
			rc.expect(id, seq)
			if err := p.Ping(context.Background(), dst, id, seq, []byte(payload)); err != nil {
				t.Fatalf("Ping %v: %v", dst, err)
			}
			select {
			case r := <-rc.ch:
				want := echoReply{dst, id, seq, payload}
				if r != want {
					t.Fatalf("reply %+v, want %+v", r, want)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("no reply from %v (raw=%v)", dst, p.v4.raw)
			}
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (raw ICMP sockets, network namespaces); run the tests as root to cover this")
	}
}

// TestHostPingerAuto uses whatever this host allows: datagram sockets when
// net.ipv4.ping_group_range includes our gid, raw sockets as root.
func TestHostPingerAuto(t *testing.T) {
	p := newHostPinger(testLogger(t), pingModeAuto)
	if _, _, err := p.open(false); err != nil {
		t.Skipf("this host allows no ICMP sockets to this process (%v): run as root or widen net.ipv4.ping_group_range", err)
	}
	pingLoopback(t, p)
}

func TestHostPingerRaw(t *testing.T) {
	requireRoot(t)
	p := newHostPinger(testLogger(t), pingModeRaw)
	pingLoopback(t, p)
	if !p.v4.raw || !p.v6.raw {
		t.Error("raw mode did not use raw sockets")
	}
}

// TestHostPingerDatagram runs in a fresh network namespace whose ping_group_range admits
// everyone, to cover the unprivileged sockets (and the kernel's id rewriting) as root.
func TestHostPingerDatagram(t *testing.T) {
	requireRoot(t)
	err := inPingNamespace(func() error {
		rc := newReplyCollector()
		p := newHostPinger(testLogger(t), pingModeDatagram)
		if err := p.Start(rc.handle); err != nil {
			return err
		}
		defer p.Close()
		if p.v4.err != nil || p.v6.err != nil || p.v4.raw {
			return fmt.Errorf("datagram sockets unavailable in the namespace: v4 %v, v6 %v", p.v4.err, p.v6.err)
		}
		for _, dst := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")} {
			// Two pings with the same seq and different ids need two sockets: the kernel
			// rewrites both ids to the socket's ident.
			for _, id := range []uint16{0x1111, 0x2222} {
				rc.expect(id, 5)
				if err := p.Ping(context.Background(), dst, id, 5, []byte("dgram")); err != nil {
					return err
				}
			}
			got := map[uint16]bool{}
			for range 2 {
				select {
				case r := <-rc.ch:
					if r.src != dst || r.seq != 5 || r.payload != "dgram" {
						return fmt.Errorf("reply %+v", r)
					}
					got[r.id] = true
				case <-time.After(3 * time.Second):
					return fmt.Errorf("no reply from %v", dst)
				}
			}
			if !got[0x1111] || !got[0x2222] {
				return fmt.Errorf("replies carried ids %v, want 0x1111 and 0x2222", got)
			}
		}
		// Claiming (dst, seq) twice before any reply needs a second socket.
		dst := netip.MustParseAddr("127.0.0.1")
		s1, err1 := p.sockFor(&p.v4, dst, 1, 77)
		s2, err2 := p.sockFor(&p.v4, dst, 2, 77)
		if err1 != nil || err2 != nil || s1 == s2 {
			return fmt.Errorf("same (dst, seq) twice: sockets %p %p, errors %v %v; want two sockets", s1, s2, err1, err2)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// inPingNamespace runs fn on a thread of its own in a new network namespace. The thread
// is never handed back to the scheduler: its goroutine exits locked, so it dies with it.
func inPingNamespace(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := enterPingNamespace(); err != nil {
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// enterPingNamespace moves the calling (locked) thread into a new network namespace with
// loopback up and unprivileged ICMP sockets allowed for every group.
func enterPingNamespace() error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return err
	}
	// /proc/sys/net follows the opening thread's namespace.
	return os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0o644)
}

// TestHostPingerUnavailable: with neither kind of socket allowed, one clear log line and
// every ping fails with ErrPingUnavailable.
func TestHostPingerUnavailable(t *testing.T) {
	p := newHostPinger(testLogger(t), pingModeDatagram)
	if _, _, err := p.open(false); err == nil {
		t.Skip("datagram ICMP sockets are allowed here")
	}
	if err := p.Start(func(netip.Addr, uint16, uint16, []byte) {}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err := p.Ping(context.Background(), netip.MustParseAddr("127.0.0.1"), 1, 1, nil)
	if !errors.Is(err, ErrPingUnavailable) {
		t.Fatalf("Ping: %v, want ErrPingUnavailable", err)
	}
}

// translatingPinger pings loopback in place of the public test addresses, so the whole
// chain (exit → host sockets → exit) runs without leaving the machine.
type translatingPinger struct {
	inner *hostPinger
	m     map[netip.Addr]netip.Addr // public → loopback
}

func (p *translatingPinger) Start(onReply EchoHandler) error {
	back := make(map[netip.Addr]netip.Addr)
	for k, v := range p.m {
		back[v] = k
	}
	return p.inner.Start(func(src netip.Addr, id, seq uint16, payload []byte) {
		if pub, ok := back[src]; ok {
			onReply(pub, id, seq, payload)
		}
	})
}

func (p *translatingPinger) Ping(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) error {
	if to, ok := p.m[dst]; ok {
		return p.inner.Ping(ctx, to, id, seq, payload)
	}
	return fmt.Errorf("test pinger: %v is not mapped", dst)
}

func (p *translatingPinger) Close() error { return p.inner.Close() }

func TestEchoThroughHostPinger(t *testing.T) {
	hp := newHostPinger(testLogger(t), pingModeAuto)
	if _, _, err := hp.open(false); err != nil {
		t.Skipf("this host allows no ICMP sockets to this process (%v): run as root or widen net.ipv4.ping_group_range", err)
	}
	pinger := &translatingPinger{inner: hp, m: map[netip.Addr]netip.Addr{
		publicV4: netip.MustParseAddr("127.0.0.1"),
		publicV6: netip.MustParseAddr("::1"),
	}}
	h := newHarness(t, Config{Pinger: pinger})
	ch := tapICMP(h)
	for _, fam := range families {
		h.exit.Write([][]byte{echoRequest(fam.client, fam.public, 0x4321, 9, []byte("through the host"))})
		r := recvICMP(t, ch)
		want := echoPacket{reply: true, src: fam.public, dst: fam.client, id: 0x4321, seq: 9, payload: "through the host"}
		if *r != want {
			t.Fatalf("%s: reply %+v, want %+v", fam.name, *r, want)
		}
	}
}
