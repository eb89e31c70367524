// Package wgmuxtest provides in-memory UDP sockets as conn.Binds, for tests of the Mux and of
// what runs on it, as wireguard-go's conn/bindtest does for a device: no ports, no kernel, and
// a loopback a test can take away.
package wgmuxtest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.zx2c4.com/wireguard/conn"
)

// Endpoint is a Socket's conn.Endpoint: an address and port.
type Endpoint struct{ netip.AddrPort }

var _ conn.Endpoint = Endpoint{}

// At returns the Endpoint of s, "addr:port", as a conn.Endpoint; it panics when s is not one.
func At(s string) conn.Endpoint { return Endpoint{netip.MustParseAddrPort(s)} }

func (Endpoint) ClearSrc()             {}
func (Endpoint) SrcToString() string   { return "" }
func (e Endpoint) DstToString() string { return e.AddrPort.String() }
func (e Endpoint) DstToBytes() []byte  { b, _ := e.AddrPort.MarshalBinary(); return b }
func (e Endpoint) DstIP() netip.Addr   { return e.Addr() }
func (Endpoint) SrcIP() netip.Addr     { return netip.Addr{} }

// Network carries datagrams between the open Sockets made by its NewSocket, by destination
// address and port. The zero value is not usable; call NewNetwork.
type Network struct {
	mu    sync.Mutex
	bound map[netip.AddrPort]*Socket // open sockets by each of their addresses and their port
}

// NewNetwork returns an empty network.
func NewNetwork() *Network { return &Network{bound: map[netip.AddrPort]*Socket{}} }

// Socket is an in-memory UDP socket as a conn.Bind, with an IPv4 and an IPv6 receive
// function as StdNetBind has (their names end in IPv4 and IPv6, which the Mux tells the
// families apart by). A datagram sent to the socket's own port on 127.0.0.1 or ::1 comes back
// to it, as through loopback, unless SetLoopback(false); one sent to an open Socket of the
// same Network arrives there from this socket's address; any other goes to Sent. Tests inject
// datagrams with Deliver, Deliver6 and DeliverFrom. Each receive function and Sent hold 4,096
// datagrams; what a Socket sends beyond that is dropped, as a network would.
type Socket struct {
	net          *Network   // nil: a socket alone
	addr4, addr6 netip.Addr // its addresses on net
	batch        int
	rx4, rx6     chan datagram
	sent         chan []byte
	noLoop       atomic.Bool

	mu     sync.Mutex    // guards the fields below
	closed chan struct{} // nil while not open
	port   uint16
	opens  int
	closes int
	mark   uint32
}

type datagram struct {
	b  []byte
	ep conn.Endpoint
}

var _ conn.Bind = (*Socket)(nil)

// NewSocket returns a socket on no network that reads up to batch datagrams at a time.
func NewSocket(batch int) *Socket {
	return &Socket{
		batch: max(batch, 1),
		rx4:   make(chan datagram, 4096),
		rx6:   make(chan datagram, 4096),
		sent:  make(chan []byte, 4096),
	}
}

// NewSocket returns a socket of n with the addresses addr4 (IPv4) and addr6 (IPv6) that reads
// up to batch datagrams at a time. Other sockets of n reach it at those addresses and the port
// it opens on.
func (n *Network) NewSocket(batch int, addr4, addr6 netip.Addr) *Socket {
	s := NewSocket(batch)
	s.net, s.addr4, s.addr6 = n, addr4.Unmap(), addr6
	return s
}

// Open opens the socket on port; 0 picks a port of its own (40000 + the number of opens). On
// a network, a port another open socket has on one of the same addresses is refused with
// EADDRINUSE.
func (s *Socket) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if port == 0 {
		port = uint16(40000 + s.opens + 1)
	}
	if s.net != nil {
		if err := s.net.bind(s, port); err != nil {
			return nil, 0, err
		}
	}
	s.opens++
	s.port = port
	s.closed = make(chan struct{})
	return []conn.ReceiveFunc{s.receiveIPv4(s.closed), s.receiveIPv6(s.closed)}, port, nil
}

func (n *Network) bind(s *Socket, port uint16) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	keys := s.keys(port)
	for _, k := range keys {
		if o := n.bound[k]; o != nil && o != s {
			return fmt.Errorf("wgmuxtest: listen on %s: %w", k, syscall.EADDRINUSE)
		}
	}
	for _, k := range keys {
		n.bound[k] = s
	}
	return nil
}

func (n *Network) unbind(s *Socket, port uint16) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range s.keys(port) {
		if n.bound[k] == s {
			delete(n.bound, k)
		}
	}
}

// lookup returns the open socket at to, if any.
func (n *Network) lookup(to netip.AddrPort) *Socket {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bound[netip.AddrPortFrom(to.Addr().Unmap(), to.Port())]
}

func (s *Socket) keys(port uint16) []netip.AddrPort {
	var keys []netip.AddrPort
	for _, a := range []netip.Addr{s.addr4, s.addr6} {
		if a.IsValid() {
			keys = append(keys, netip.AddrPortFrom(a, port))
		}
	}
	return keys
}

func (s *Socket) receiveIPv4(closed chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		return receive(s.rx4, closed, bufs, sizes, eps)
	}
}

func (s *Socket) receiveIPv6(closed chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		return receive(s.rx6, closed, bufs, sizes, eps)
	}
}

// receive blocks for one datagram, then takes what else is queued, up to len(bufs).
func receive(rx chan datagram, closed chan struct{}, bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	var d datagram
	select {
	case <-closed:
		return 0, net.ErrClosed
	case d = <-rx:
	}
	for n := 0; ; {
		sizes[n] = copy(bufs[n], d.b)
		eps[n] = d.ep
		if n++; n == len(bufs) {
			return n, nil
		}
		select {
		case d = <-rx:
		default:
			return n, nil
		}
	}
}

// Close closes the socket: its ReceiveFuncs return net.ErrClosed. Closing a closed socket does
// nothing.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != nil {
		close(s.closed)
		s.closed = nil
		s.closes++
		if s.net != nil {
			s.net.unbind(s, s.port)
		}
	}
	return nil
}

// SetMark records mark (see Mark).
func (s *Socket) SetMark(mark uint32) error {
	s.mu.Lock()
	s.mark = mark
	s.mu.Unlock()
	return nil
}

// Send sends bufs to ep: to the socket itself for its port on loopback (ENETUNREACH without
// loopback, net.ErrClosed while closed), to the open Socket of the network at ep, or else to
// Sent.
func (s *Socket) Send(bufs [][]byte, ep conn.Endpoint) error {
	to := netip.AddrPortFrom(ep.DstIP(), 0)
	if e, ok := ep.(Endpoint); ok {
		to = e.AddrPort
	}
	s.mu.Lock()
	open, port := s.closed != nil, s.port
	s.mu.Unlock()
	if to.Addr().IsLoopback() && to.Port() == port {
		switch {
		case !open:
			return net.ErrClosed
		case s.noLoop.Load():
			return syscall.ENETUNREACH
		}
		from := Endpoint{netip.AddrPortFrom(to.Addr(), port)}
		for _, b := range bufs {
			s.rx(to.Addr()) <- datagram{b: bytes.Clone(b), ep: from}
		}
		return nil
	}
	if s.net != nil {
		if dst := s.net.lookup(to); dst != nil {
			src := s.addr4
			if to.Addr().Unmap().Is6() {
				src = s.addr6
			}
			from := Endpoint{netip.AddrPortFrom(src, port)}
			rx := dst.rx(to.Addr())
			for _, b := range bufs {
				select {
				case rx <- datagram{b: bytes.Clone(b), ep: from}:
				default: // a full socket buffer drops
				}
			}
			return nil
		}
	}
	for _, b := range bufs {
		select {
		case s.sent <- bytes.Clone(b):
		default:
		}
	}
	return nil
}

// ParseEndpoint parses "addr:port".
func (s *Socket) ParseEndpoint(str string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(str)
	if err != nil {
		return nil, err
	}
	return Endpoint{ap}, nil
}

// BatchSize is the batch NewSocket was given.
func (s *Socket) BatchSize() int { return s.batch }

func (s *Socket) rx(a netip.Addr) chan datagram {
	if a.Unmap().Is6() {
		return s.rx6
	}
	return s.rx4
}

// Deliver queues b for the IPv4 receive function, from 192.0.2.1:51820.
func (s *Socket) Deliver(b []byte) { s.DeliverFrom(b, At("192.0.2.1:51820")) }

// Deliver6 queues b for the IPv6 receive function, from [2001:db8::1]:51820.
func (s *Socket) Deliver6(b []byte) { s.DeliverFrom(b, At("[2001:db8::1]:51820")) }

// DeliverFrom queues b from ep for the receive function of ep's family. It blocks while 4,096
// datagrams wait there.
func (s *Socket) DeliverFrom(b []byte, ep conn.Endpoint) { s.rx(ep.DstIP()) <- datagram{b: b, ep: ep} }

// Sent returns what the socket sent to nobody it knows (see Send).
func (s *Socket) Sent() <-chan []byte { return s.sent }

// SetLoopback makes sends to the socket's own port on loopback arrive (on, the default) or
// fail with ENETUNREACH, as with the loopback interface down.
func (s *Socket) SetLoopback(on bool) { s.noLoop.Store(!on) }

// IsOpen reports whether the socket is open.
func (s *Socket) IsOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed != nil
}

// Opens and Closes count the socket's Opens and (effective) Closes.
func (s *Socket) Opens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens
}

func (s *Socket) Closes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closes
}

// Mark is the mark last set with SetMark.
func (s *Socket) Mark() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mark
}
