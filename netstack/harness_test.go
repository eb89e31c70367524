package netstack

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// The harness wires a "client" gVisor stack (100.64.0.2, fdaa::2) back to back with an
// Exit (100.64.0.1, fdaa::1). Each direction is a queue drained by one goroutine, like a
// wire: the client's packets reach Exit.Write in batches, the Exit's Output reaches the
// client's NIC. Destinations are public-looking test addresses that the test Dialer maps
// to loopback servers.

var (
	clientV4 = netip.MustParseAddr("100.64.0.2")
	clientV6 = netip.MustParseAddr("fdaa::2")
	localV4  = netip.MustParseAddr("100.64.0.1")
	localV6  = netip.MustParseAddr("fdaa::1")
	// Documentation prefixes: never routed, the test dialer maps them to loopback.
	publicV4 = netip.MustParseAddr("198.51.100.2")
	publicV6 = netip.MustParseAddr("2001:db8:1::2")
)

type harness struct {
	t      testing.TB
	exit   *Exit
	client *stack.Stack
	dialer *mapDialer

	toExit, toClient *pktQueue

	tapMu sync.Mutex
	tap   func(pkt []byte)      // sees every packet the exit outputs
	lose  func(pkt []byte) bool // true: the packet is lost on its way to the client
	delay time.Duration         // each output batch waits this long on its way to the client

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// newHarness starts an exit configured by cfg (Output and Dialer are filled in) and a
// client stack. It is closed by t.Cleanup.
func newHarness(t testing.TB, cfg Config) *harness {
	h := &harness{
		t:        t,
		dialer:   newMapDialer(),
		toExit:   newPktQueue(),
		toClient: newPktQueue(),
	}
	if cfg.LocalAddrs == nil {
		cfg.LocalAddrs = []netip.Addr{localV4, localV6}
	}
	if cfg.Dialer == nil {
		cfg.Dialer = h.dialer
	}
	if cfg.Pinger == nil {
		cfg.Pinger = &fakePinger{}
	}
	cfg.Output = func(pkts [][]byte) {
		h.tapMu.Lock()
		tap, lose, delay := h.tap, h.lose, h.delay
		h.tapMu.Unlock()
		if delay > 0 {
			time.Sleep(delay) // the exit's output goroutine waits: a slow, FIFO wire
		}
		for _, pkt := range pkts {
			if tap != nil {
				tap(pkt)
			}
			if lose != nil && lose(pkt) {
				continue
			}
			h.toClient.push(pkt)
		}
	}
	exit, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h.exit = exit

	mtu := uint32(exit.cfg.MTU)
	clientLink := newLinkEndpoint(mtu, h.toExit.pushBatch, false)
	clientLink.verifyRX = true // the client checks every checksum the exit computes
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := tuneStack(s); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNIC(nicID, clientLink); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{clientV4, clientV6} {
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	h.client = s

	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.toExit.run(exit.Write)
	}()
	go func() {
		defer h.wg.Done()
		h.toClient.run(func(pkts [][]byte) {
			in := clientLink.beginInbound()
			for _, p := range pkts {
				in.deliver(p, p[0]>>4 == 6)
			}
			in.finish()
		})
	}()
	t.Cleanup(h.close)
	return h
}

// close stops the exit, the client stack and the wire, in that order.
func (h *harness) close() {
	h.closeOnce.Do(func() {
		if err := h.exit.Close(); err != nil {
			h.t.Errorf("Exit.Close: %v", err)
		}
		h.client.Destroy()
		h.toExit.close()
		h.toClient.close()
		h.wg.Wait()
	})
}

// setDelay makes the wire to the client take d, from the next output on.
func (h *harness) setDelay(d time.Duration) {
	h.tapMu.Lock()
	h.delay = d
	h.tapMu.Unlock()
}

func (h *harness) setTap(f func([]byte)) {
	h.tapMu.Lock()
	h.tap = f
	h.tapMu.Unlock()
}

func fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	proto := ipv4.ProtocolNumber
	if ap.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}, proto
}

// download serves data from a loopback server (network tcp4 or tcp6) that dst maps to,
// fetches it through the exit and fails t unless all of it arrived intact.
func (h *harness) download(t *testing.T, network string, dst netip.AddrPort, data []byte) {
	t.Helper()
	srv := serveTCP(t, network, sendData(data))
	h.dialer.set(dst, srv.addr)
	c, err := h.dialTCP(ctxTimeout(t, 5*time.Second), dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", len(got), err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("downloaded %d bytes, want %d with the same SHA-256", len(got), len(data))
	}
}

// dialTCP connects from the client stack through the exit.
func (h *harness) dialTCP(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	fa, proto := fullAddr(dst)
	return gonet.DialContextTCP(ctx, h.client, fa, proto)
}

// dialUDP opens a client UDP socket towards dst.
func (h *harness) dialUDP(dst netip.AddrPort) *gonet.UDPConn {
	h.t.Helper()
	fa, proto := fullAddr(dst)
	c, err := gonet.DialUDP(h.client, nil, &fa, proto)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// dialUDPEndpoint is dialUDP that also returns the gVisor endpoint, whose LastError
// reports ICMP errors (gVisor's Read does not, unlike Linux's).
func (h *harness) dialUDPEndpoint(dst netip.AddrPort) (*gonet.UDPConn, tcpip.Endpoint) {
	h.t.Helper()
	fa, proto := fullAddr(dst)
	var wq waiter.Queue
	ep, err := h.client.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := ep.Connect(fa); err != nil {
		h.t.Fatal(err)
	}
	return gonet.NewUDPConn(&wq, ep), ep
}

// waitRefused waits for an ICMP port unreachable to reach the client endpoint.
func waitRefused(t testing.TB, ep tcpip.Endpoint, send func()) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		send()
		time.Sleep(50 * time.Millisecond)
		if _, ok := ep.LastError().(*tcpip.ErrConnectionRefused); ok {
			return
		}
	}
	t.Fatal("the client never saw ICMP port unreachable")
}

// pktQueue is one direction of the wire: unbounded, so that neither side ever blocks
// the other (TCP windows bound what is in it), and drained in batches.
type pktQueue struct {
	mu     sync.Mutex
	q      [][]byte
	spare  [][]byte
	closed bool
	signal chan struct{}
}

func newPktQueue() *pktQueue { return &pktQueue{signal: make(chan struct{}, 1)} }

func (q *pktQueue) pushBatch(pkts [][]byte) {
	for _, p := range pkts {
		q.push(p)
	}
}

func (q *pktQueue) push(pkt []byte) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	var b []byte
	if n := len(q.spare); n > 0 {
		b = q.spare[n-1][:0]
		q.spare = q.spare[:n-1]
	}
	q.q = append(q.q, append(b, pkt...))
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// run delivers batches until close.
func (q *pktQueue) run(deliver func([][]byte)) {
	var batch [][]byte
	for range q.signal {
		q.mu.Lock()
		batch, q.q = q.q, batch[:0]
		q.mu.Unlock()
		if len(batch) > 0 {
			deliver(batch)
		}
		q.mu.Lock()
		if len(q.spare) < 4096 {
			q.spare = append(q.spare, batch...)
		}
		q.mu.Unlock()
		clear(batch)
	}
}

func (q *pktQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.signal)
	}
}

// mapDialer maps test destinations to loopback servers. It dials loopback addresses as
// they are and refuses everything else, so no test ever reaches beyond this machine.
type mapDialer struct {
	mu    sync.Mutex
	m     map[netip.AddrPort]netip.AddrPort
	dials []string // every address asked for, as given
	block map[netip.AddrPort]bool
	d     net.Dialer
}

// blockOn makes dials to from block until their context ends.
func (d *mapDialer) blockOn(from netip.AddrPort) {
	d.mu.Lock()
	if d.block == nil {
		d.block = make(map[netip.AddrPort]bool)
	}
	d.block[from] = true
	d.mu.Unlock()
}

func newMapDialer() *mapDialer { return &mapDialer{m: make(map[netip.AddrPort]netip.AddrPort)} }

func (d *mapDialer) set(from, to netip.AddrPort) {
	d.mu.Lock()
	d.m[from] = to
	d.mu.Unlock()
}

func (d *mapDialer) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dials...)
}

func (d *mapDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.dials = append(d.dials, address)
	to, ok := d.m[ap]
	block := d.block[ap]
	d.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if !ok {
		if !ap.Addr().IsLoopback() {
			return nil, fmt.Errorf("test dialer: %s is not mapped to loopback", address)
		}
		to = ap
	}
	return d.d.DialContext(ctx, network, to.String())
}

// fakePinger answers every ping itself, asynchronously, unless drop is set.
type fakePinger struct {
	mu      sync.Mutex
	onReply EchoHandler
	pings   []fakePing
	drop    bool
	closed  bool
	wg      sync.WaitGroup
}

type fakePing struct {
	dst     netip.Addr
	id, seq uint16
	payload string
}

func (p *fakePinger) Start(onReply EchoHandler) error {
	p.onReply = onReply
	return nil
}

func (p *fakePinger) Ping(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrPingUnavailable
	}
	p.pings = append(p.pings, fakePing{dst, id, seq, string(payload)})
	if p.drop {
		return nil
	}
	data := append([]byte(nil), payload...)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.onReply(dst, id, seq, data)
	}()
	return nil
}

func (p *fakePinger) sent() []fakePing {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]fakePing(nil), p.pings...)
}

func (p *fakePinger) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

var _ Pinger = (*fakePinger)(nil)

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// checkNoLeak fails t when, within a few seconds, the goroutine count does not return to
// at most before.
func checkNoLeak(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d before, %d after Close:\n%s", before, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
