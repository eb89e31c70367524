package wgmuxtest

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// recv calls fn once and returns the datagrams it read, with their sources.
func recv(t *testing.T, fn conn.ReceiveFunc) (got []string, from []string) {
	t.Helper()
	bufs := [][]byte{make([]byte, 100), make([]byte, 100)}
	sizes, eps := make([]int, 2), make([]conn.Endpoint, 2)
	done := make(chan int, 1)
	go func() {
		n, err := fn(bufs, sizes, eps)
		if err != nil {
			t.Error(err)
		}
		done <- n
	}()
	select {
	case n := <-done:
		for i := range n {
			got = append(got, string(bufs[i][:sizes[i]]))
			from = append(from, eps[i].DstToString())
		}
		return got, from
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received")
		return nil, nil
	}
}

func TestSocketLoopbackAndSent(t *testing.T) {
	s := NewSocket(2)
	fns, port, err := s.Open(0)
	if err != nil || len(fns) != 2 || port == 0 {
		t.Fatalf("Open: %d receive functions, port %d, %v", len(fns), port, err)
	}
	if got := fns[0].PrettyName(); got != "v4" {
		t.Errorf("IPv4 receive function named %q, want v4 (the Mux tells families apart by it)", got)
	}
	self, _ := s.ParseEndpoint(netip.AddrPortFrom(netip.MustParseAddr("::1"), port).String())
	if err := s.Send([][]byte{[]byte("wake")}, self); err != nil {
		t.Fatal(err)
	}
	if got, from := recv(t, fns[1]); len(got) != 1 || got[0] != "wake" || from[0] != self.DstToString() {
		t.Errorf("through loopback: %q from %q", got, from)
	}
	s.SetLoopback(false)
	if err := s.Send([][]byte{[]byte("x")}, self); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("loopback off: %v, want ENETUNREACH", err)
	}
	if err := s.Send([][]byte{[]byte("out")}, At("198.51.100.1:9")); err != nil {
		t.Fatal(err)
	}
	if got := string(<-s.Sent()); got != "out" {
		t.Errorf("sent %q", got)
	}
	s.Deliver([]byte("a"))
	s.Deliver([]byte("b"))
	if got, from := recv(t, fns[0]); len(got) != 2 || got[1] != "b" || from[0] != "192.0.2.1:51820" {
		t.Errorf("delivered: %q from %q", got, from)
	}
	done := make(chan error, 1)
	go func() { _, err := fns[0](make([][]byte, 1), make([]int, 1), make([]conn.Endpoint, 1)); done <- err }()
	s.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("receive after Close: %v, want net.ErrClosed", err)
	}
	if s.Opens() != 1 || s.Closes() != 1 || s.IsOpen() {
		t.Errorf("opens %d, closes %d, open %v", s.Opens(), s.Closes(), s.IsOpen())
	}
}

func TestNetworkCarriesDatagrams(t *testing.T) {
	n := NewNetwork()
	a := n.NewSocket(1, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"))
	b := n.NewSocket(1, netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2"))
	fa, _, err := a.Open(51820)
	if err != nil {
		t.Fatal(err)
	}
	fb, pb, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Send([][]byte{[]byte("to b")}, At(netip.AddrPortFrom(netip.MustParseAddr("2001:db8::2"), pb).String())); err != nil {
		t.Fatal(err)
	}
	if got, from := recv(t, fb[1]); len(got) != 1 || got[0] != "to b" || from[0] != "[2001:db8::1]:51820" {
		t.Errorf("b got %q from %q", got, from)
	}
	if err := b.Send([][]byte{[]byte("to a")}, At("192.0.2.1:51820")); err != nil {
		t.Fatal(err)
	}
	if got, from := recv(t, fa[0]); len(got) != 1 || got[0] != "to a" || from[0] != netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), pb).String() {
		t.Errorf("a got %q from %q", got, from)
	}

	// One port per address; a closed socket gives its port back.
	c := n.NewSocket(1, netip.MustParseAddr("192.0.2.1"), netip.Addr{})
	if _, _, err := c.Open(51820); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("a port in use: %v, want EADDRINUSE", err)
	}
	a.Close()
	if _, _, err := c.Open(51820); err != nil {
		t.Errorf("the port of a closed socket: %v", err)
	}
	c.Close()
	if err := b.Send([][]byte{[]byte("lost")}, At("192.0.2.1:51820")); err != nil {
		t.Fatal(err)
	}
	if got := string(<-b.Sent()); got != "lost" {
		t.Errorf("to an address nobody has: sent %q", got)
	}
}
