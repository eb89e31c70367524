package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Tests of the UDP relay (udp.go): datagrams to non-local destinations bypass gVisor.

// plainDialer hides the *net.UDPConn behind a plain net.Conn, as a test or custom Dialer
// may: the relay must then do without batched syscalls.
type plainDialer struct{ d Dialer }

func (p plainDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := p.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

// gateDialer holds every dial until open is closed.
type gateDialer struct {
	d    Dialer
	open chan struct{}
}

func (g gateDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.d.DialContext(ctx, network, address)
}

// conns are the two kinds of host socket the relay handles.
var conns = []struct {
	name  string
	plain bool
}{{"udpconn", false}, {"plain", true}}

func newRelayHarness(t *testing.T, cfg Config, plain bool) *harness {
	t.Helper()
	d := newMapDialer()
	cfg.Dialer = d
	if plain {
		cfg.Dialer = plainDialer{d}
	}
	h := newHarness(t, cfg)
	h.dialer = d
	return h
}

// relayed reports the flows of the relay's table.
func relayed(e *Exit) int {
	e.udp.mu.RLock()
	defer e.udp.mu.RUnlock()
	return len(e.udp.m)
}

// TestUDPRelayEcho: round trips of every size up to the MTU and beyond it (replies
// fragmented by the exit, requests fragmented by the client and reassembled by gVisor),
// over one flow of the relay, for both families and both kinds of host socket. The client
// stack verifies every checksum and reassembles.
func TestUDPRelayEcho(t *testing.T) {
	for _, fam := range families {
		for _, kind := range conns {
			t.Run(fam.name+"/"+kind.name, func(t *testing.T) {
				h := newRelayHarness(t, Config{}, kind.plain)
				var tooBig sync.Map
				h.setTap(func(pkt []byte) {
					if len(pkt) > h.exit.cfg.MTU {
						tooBig.Store(len(pkt), true)
					}
				})
				srv := serveUDP(t, fam.udp, 0, echoUDP)
				dst := ap(fam.public, 7)
				h.dialer.set(dst, srv.addr)

				c := h.dialUDP(dst)
				defer c.Close()
				buf := make([]byte, 1<<16)
				for i, n := range []int{1, 64, 1200, 1372, 1373, 1392, 1400, 1500, 4000, 9000, 30000} {
					msg := bytes.Repeat([]byte{byte(i + 1)}, n)
					copy(msg, []byte{0xde, 0xad})
					if _, err := c.Write(msg); err != nil {
						t.Fatal(err)
					}
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					got, err := c.Read(buf)
					if err != nil {
						t.Fatalf("%d bytes: %v", n, err)
					}
					if !bytes.Equal(buf[:got], msg) {
						t.Fatalf("%d bytes: got %d back, different", n, got)
					}
				}
				tooBig.Range(func(k, _ any) bool {
					t.Errorf("the exit output a %d-byte packet; MTU %d", k, h.exit.cfg.MTU)
					return true
				})
				if st := h.exit.Stats(); st.UDPFlows != 1 || relayed(h.exit) != 1 || st.DialFailures != 0 {
					t.Errorf("UDPFlows %d, relayed %d, DialFailures %d: want one relayed flow", st.UDPFlows, relayed(h.exit), st.DialFailures)
				}
			})
		}
	}
}

// seqServer records the first 4 bytes (a sequence number) of every datagram it receives.
type seqServer struct {
	*udpServer
	mu  sync.Mutex
	got []uint32
}

func serveSeq(t *testing.T, network string) *seqServer {
	s := &seqServer{}
	s.udpServer = serveUDP(t, network, 0, func(b []byte) []byte {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(b) >= 4 {
			s.got = append(s.got, binary.BigEndian.Uint32(b))
		}
		return nil
	})
	return s
}

func (s *seqServer) received() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.got...)
}

// seqBatch builds count datagrams src → dst numbered from first.
func seqBatch(src, dst netip.AddrPort, first, count int, size int) [][]byte {
	var b [][]byte
	for i := range count {
		p := make([]byte, size)
		binary.BigEndian.PutUint32(p, uint32(first+i))
		b = append(b, udpPacket(src, dst, p))
	}
	return b
}

func wantSeq(t *testing.T, got []uint32, want []uint32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("received %d datagrams %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("datagram %d is #%d, want #%d (order %v)", i, got[i], want[i], got)
		}
	}
}

func seq(from, to int) []uint32 {
	var s []uint32
	for i := from; i < to; i++ {
		s = append(s, uint32(i))
	}
	return s
}

// TestUDPRelayBatchOrder: many datagrams of one flow in one Write batch, interleaved with
// another flow's and with TCP, arrive in order.
func TestUDPRelayBatchOrder(t *testing.T) {
	for _, fam := range families {
		for _, kind := range conns {
			t.Run(fam.name+"/"+kind.name, func(t *testing.T) {
				h := newRelayHarness(t, Config{}, kind.plain)
				a, b := serveSeq(t, fam.udp), serveSeq(t, fam.udp)
				dstA, dstB := ap(fam.public, 1000), ap(fam.public2, 2000)
				h.dialer.set(dstA, a.addr)
				h.dialer.set(dstB, b.addr)
				src := ap(fam.client, 4000)
				// Open both flows and wait for their dials.
				h.exit.Write(append(seqBatch(src, dstA, 0, 1, 100), seqBatch(src, dstB, 0, 1, 100)...))
				within(t, 5*time.Second, "both flows", func() bool { return len(a.received()) == 1 && len(b.received()) == 1 })

				var batch [][]byte
				as, bs := seqBatch(src, dstA, 1, 100, 200), seqBatch(src, dstB, 1, 100, 200)
				for i := range 100 {
					batch = append(batch, as[i], bs[i])
					if i%10 == 0 {
						batch = append(batch, tcpSYN(ap(fam.client, 5000), ap(fam.public, 9)))
					}
				}
				h.exit.Write(batch)
				within(t, 5*time.Second, "200 datagrams", func() bool { return len(a.received()) == 101 && len(b.received()) == 101 })
				wantSeq(t, a.received(), seq(0, 101))
				wantSeq(t, b.received(), seq(0, 101))
			})
		}
	}
}

// TestUDPRelayDialQueue: the datagrams that arrive while a flow dials are held (up to
// udpDialQueue), then sent in order before any later one.
func TestUDPRelayDialQueue(t *testing.T) {
	gate := make(chan struct{})
	d := newMapDialer()
	h := newHarness(t, Config{Dialer: gateDialer{d, gate}})
	srv := serveSeq(t, "udp4")
	dst := ap(publicV4, 1000)
	d.set(dst, srv.addr)
	src := ap(clientV4, 4000)

	h.exit.Write(seqBatch(src, dst, 0, 10, 50))
	h.exit.Write(seqBatch(src, dst, 10, 10, 50)) // 6 fit, 4 do not
	if n := h.exit.Stats().Drops[DropFlowQueueFull]; n != 4 {
		t.Errorf("flow_queue_full drops = %d, want 4", n)
	}
	close(gate)
	within(t, 5*time.Second, "the queued datagrams", func() bool { return len(srv.received()) == udpDialQueue })
	h.exit.Write(seqBatch(src, dst, 100, 5, 50))
	within(t, 5*time.Second, "the later datagrams", func() bool { return len(srv.received()) == udpDialQueue+5 })
	wantSeq(t, srv.received(), append(seq(0, udpDialQueue), seq(100, 105)...))
}

// TestUDPRelayDialFailure: a failed dial is counted, the flow and its slot go away, and
// the next datagram tries again.
func TestUDPRelayDialFailure(t *testing.T) {
	h := newHarness(t, Config{})
	dst := ap(publicV4, 1000) // not mapped: the test dialer refuses it
	pkt := udpPacket(ap(clientV4, 4000), dst, []byte("x"))
	h.exit.Write([][]byte{pkt})
	within(t, 5*time.Second, "the failed dial", func() bool {
		st := h.exit.Stats()
		return st.DialFailures == 1 && st.UDPFlows == 0 && h.exit.Stats().Flows == 0 && relayed(h.exit) == 0
	})
	h.exit.Write([][]byte{pkt})
	within(t, 5*time.Second, "a second dial", func() bool { return h.exit.Stats().DialFailures == 2 })
}

// TestUDPRelayIdle: a flow idle both ways closes after UDPIdleTimeout, whichever way its
// traffic went, and every counter drops back.
func TestUDPRelayIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			h := newHarness(t, Config{UDPIdleTimeout: idle})
			sink := serveSeq(t, fam.udp) // never answers: only the client's datagrams keep it alive
			dst := ap(fam.public, 1000)
			h.dialer.set(dst, sink.addr)
			src := ap(fam.client, 4000)
			for i := range 6 {
				h.exit.Write(seqBatch(src, dst, i, 1, 10))
				time.Sleep(idle / 2)
			}
			if st := h.exit.Stats(); st.UDPFlows != 1 || len(sink.received()) != 6 {
				t.Fatalf("UDPFlows %d, %d datagrams received: want 1 flow kept alive by the client", st.UDPFlows, len(sink.received()))
			}
			within(t, 3*time.Second, "the idle flow to close", func() bool {
				return h.exit.Stats().UDPFlows == 0 && h.exit.Stats().Flows == 0 && relayed(h.exit) == 0
			})
			if d := h.dialer.dialed(); len(d) != 1 {
				t.Errorf("dials %v, want 1", d)
			}
		})
	}
}

// TestUDPRelayMaxFlows: a new flow above MaxFlows is refused with ICMP administratively
// prohibited, from the exit's own address, and counted; a closed flow frees its slot.
func TestUDPRelayMaxFlows(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			h := newHarness(t, Config{MaxFlows: 1, UDPIdleTimeout: 300 * time.Millisecond})
			ch := tapICMP(h)
			srv := serveUDP(t, fam.udp, 0, echoUDP)
			dst := ap(fam.public, 7)
			h.dialer.set(dst, srv.addr)
			first := h.dialUDP(dst)
			defer first.Close()
			roundTrip(t, first, "first")

			src := ap(fam.client, 4001)
			h.exit.Write([][]byte{udpPacket(src, dst, []byte("second"))})
			pkt := recvPacket(t, ch)
			typ, code, from := byte(icmpv4Unreachable), byte(13), localV4
			if fam.client.Is6() {
				typ, code, from = icmpv6Unreachable, 1, localV6
			}
			checkUnreachable(t, pkt, from, src, dst, typ, code)
			if st := h.exit.Stats(); st.FlowsRefused != 1 || st.UDPFlows != 1 {
				t.Errorf("FlowsRefused %d UDPFlows %d, want 1 and 1", st.FlowsRefused, st.UDPFlows)
			}
			within(t, 3*time.Second, "the first flow to idle out", func() bool { return h.exit.Stats().UDPFlows == 0 })
			second := h.dialUDP(ap(fam.public, 7))
			defer second.Close()
			roundTrip(t, second, "after a slot freed")
		})
	}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != msg {
		t.Fatalf("round trip %q: %q, %v", msg, buf[:n], err)
	}
}

func recvPacket(t *testing.T, ch chan []byte) []byte {
	t.Helper()
	select {
	case pkt := <-ch:
		return pkt
	case <-time.After(5 * time.Second):
		t.Fatal("no ICMP packet from the exit")
		return nil
	}
}

// checkUnreachable checks an ICMP(v6) destination unreachable from → client quoting a
// datagram client → dst, with every checksum.
func checkUnreachable(t *testing.T, pkt []byte, from netip.Addr, client, dst netip.AddrPort, typ, code byte) {
	t.Helper()
	var m []byte
	var src, to netip.Addr
	if pkt[0]>>4 == 4 {
		ip := header.IPv4(pkt)
		if !ip.IsValid(len(pkt)) || !ip.IsChecksumValid() {
			t.Fatalf("bad IPv4 header %x", pkt)
		}
		m = ip.Payload()
		if checksum.Checksum(m, 0) != 0xffff {
			t.Errorf("bad ICMP checksum")
		}
		src, to = netip.AddrFrom4(ip.SourceAddress().As4()), netip.AddrFrom4(ip.DestinationAddress().As4())
		m = m[:8+20+8]
	} else {
		ip := header.IPv6(pkt)
		m = ip.Payload()
		want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
			Header: header.ICMPv6(m[:8]), Src: ip.SourceAddress(), Dst: ip.DestinationAddress(),
			PayloadCsum: checksum.Checksum(m[8:], 0), PayloadLen: len(m) - 8,
		})
		if header.ICMPv6(m).Checksum() != want {
			t.Errorf("bad ICMPv6 checksum")
		}
		src, to = netip.AddrFrom16(ip.SourceAddress().As16()), netip.AddrFrom16(ip.DestinationAddress().As16())
		m = m[:8+40+8]
	}
	if m[0] != typ || m[1] != code || src != from || to != client.Addr() {
		t.Fatalf("ICMP type %d code %d from %v to %v, want %d/%d from %v to %v", m[0], m[1], src, to, typ, code, from, client.Addr())
	}
	u := header.UDP(m[len(m)-8:])
	if u.SourcePort() != client.Port() || u.DestinationPort() != dst.Port() {
		t.Errorf("quoted ports %d → %d, want %d → %d", u.SourcePort(), u.DestinationPort(), client.Port(), dst.Port())
	}
}

// TestUDPRelayPortUnreachable: ECONNREFUSED from the host socket (the destination's ICMP
// port unreachable) reaches the client as ICMP port unreachable from the destination.
func TestUDPRelayPortUnreachable(t *testing.T) {
	for _, fam := range families {
		for _, kind := range conns {
			t.Run(fam.name+"/"+kind.name, func(t *testing.T) {
				h := newRelayHarness(t, Config{}, kind.plain)
				dst := ap(fam.public, 9)
				h.dialer.set(dst, freePort(t, fam.tcp))
				c, ep := h.dialUDPEndpoint(dst)
				defer c.Close()
				waitRefused(t, ep, func() { c.Write([]byte("anyone?")) })
			})
		}
	}
}

// TestUDPRelayCloseNoLeak: Close with relayed flows open (established both kinds, one still
// dialling, one with datagrams queued) leaves no goroutine behind.
func TestUDPRelayCloseNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		srv4 := serveUDP(t, "udp4", 0, echoUDP)
		srv6 := serveUDP(t, "udp6", 0, echoUDP)
		defer srv4.close()
		defer srv6.close()
		var hs []*harness
		for _, plain := range []bool{false, true} {
			h := newRelayHarness(t, Config{}, plain)
			hs = append(hs, h)
			h.dialer.set(ap(publicV4, 7), srv4.addr)
			h.dialer.set(ap(publicV6, 7), srv6.addr)
			for _, dst := range []netip.AddrPort{ap(publicV4, 7), ap(publicV6, 7)} {
				c := h.dialUDP(dst)
				defer c.Close()
				roundTrip(t, c, "hello")
			}
			h.dialer.blockOn(ap(publicV4, 8))
			h.exit.Write(seqBatch(ap(clientV4, 4000), ap(publicV4, 8), 0, 3, 10))
			within(t, 5*time.Second, "flows", func() bool { return h.exit.Stats().UDPFlows == 3 })
		}
		for _, h := range hs {
			h.close()
			if st := h.exit.Stats(); st.UDPFlows != 0 || h.exit.Stats().Flows != 0 {
				t.Errorf("after Close: UDPFlows %d reserved %d", st.UDPFlows, h.exit.Stats().Flows)
			}
		}
	}()
	checkNoLeak(t, before)
}

// TestUDPRelayNoAlloc: Write allocates nothing for datagrams of established flows, sent
// with sendmmsg.
func TestUDPRelayNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	e, d := newTestExit(t)
	var batch [][]byte
	for i, fam := range families {
		sink := listenSink(t, fam.udp) // nobody reads: nothing allocates on the far side
		dst := ap(fam.public, uint16(1000+i))
		d.set(dst, sink)
		e.Write([][]byte{udpPacket(ap(fam.client, 4000), dst, []byte("open"))})
		within(t, 5*time.Second, "the flow", func() bool { f := e.udp.get(makeUDPKey(ap(fam.client, 4000), dst)); return f != nil && f.ready.Load() })
		for range 32 {
			batch = append(batch, udpPacket(ap(fam.client, 4000), dst, make([]byte, 100)))
		}
	}
	if n := testing.AllocsPerRun(200, func() { e.Write(batch) }); n != 0 {
		t.Errorf("Write of %d datagrams of 2 established flows allocates %v times", len(batch), n)
	}
	if st := e.Stats(); st.Drops[DropHostSendFailed] > uint64(len(batch)*201/2) {
		t.Errorf("most datagrams dropped: %v", st.Drops)
	}
}

// newTestExit is an exit without a client stack: Output discards.
func newTestExit(t testing.TB) (*Exit, *mapDialer) {
	d := newMapDialer()
	e, err := New(Config{Output: func([][]byte) {}, Dialer: d, Pinger: &fakePinger{drop: true}, LocalAddrs: []netip.Addr{localV4, localV6}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, d
}

// loopbackAny is the loopback address of network ("udp4" or "udp6") at a port the kernel picks.
func loopbackAny(network string) string {
	if network == "udp6" {
		return "[::1]:0"
	}
	return "127.0.0.1:0"
}

// listenSink is a loopback UDP socket nobody reads.
func listenSink(t testing.TB, network string) netip.AddrPort {
	c, err := net.ListenPacket(network, loopbackAny(network))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestParsePacketUDP(t *testing.T) {
	c4, c6 := ap(clientV4, 1000), ap(clientV6, 1000)
	frag4 := udpPacket(c4, ap(publicV4, 53), []byte("q"))
	frag4[6] = 0x20 // more fragments
	opts4 := udpPacket(c4, ap(publicV4, 53), []byte("q"))
	opts4 = append(opts4[:20:20], append([]byte{1, 1, 1, 0}, opts4[20:]...)...)
	opts4[0] = 0x46
	binary.BigEndian.PutUint16(opts4[2:], uint16(len(opts4)))
	long4 := udpPacket(c4, ap(publicV4, 53), []byte("q"))
	binary.BigEndian.PutUint16(long4[24:], 10) // beyond the packet
	short4 := udpPacket(c4, ap(publicV4, 53), []byte("q"))
	binary.BigEndian.PutUint16(short4[24:], 7)
	hbh6 := udpPacket(c6, ap(publicV6, 53), []byte("q"))
	hbh6 = append(hbh6[:40:40], append([]byte{17, 0, 1, 4, 0, 0, 0, 0}, hbh6[40:]...)...)
	hbh6[6] = 0
	binary.BigEndian.PutUint16(hbh6[4:], uint16(len(hbh6)-40))
	for _, c := range []struct {
		name string
		pkt  []byte
		want DropReason
		udp  bool
		l4   int
	}{
		{"v4", udpPacket(c4, ap(publicV4, 53), []byte("q")), dropNone, true, 20},
		{"v4 empty", udpPacket(c4, ap(publicV4, 53), nil), dropNone, true, 20},
		{"v6", udpPacket(c6, ap(publicV6, 53), []byte("q")), dropNone, true, 40},
		{"v4 fragment to gVisor", frag4, dropNone, false, 0},
		{"v4 options to gVisor", opts4, dropNone, false, 0},
		{"v6 hop-by-hop to gVisor", hbh6, dropNone, false, 0},
		{"v4 length beyond the packet", long4, DropMalformed, false, 0},
		{"v4 length below the header", short4, DropMalformed, false, 0},
		{"v4 truncated header", udpPacket(c4, ap(publicV4, 53), nil)[:24], DropMalformed, false, 0},
		{"v6 truncated header", udpPacket(c6, ap(publicV6, 53), nil)[:44], DropMalformed, false, 0},
		{"v4 tcp", tcpSYN(c4, ap(publicV4, 80)), dropNone, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "v4 truncated header" {
				binary.BigEndian.PutUint16(c.pkt[2:], 24)
			}
			if c.name == "v6 truncated header" {
				binary.BigEndian.PutUint16(c.pkt[4:], 4)
			}
			var pi pktInfo
			if got := parsePacket(c.pkt, &pi); got != c.want {
				t.Fatalf("parsePacket = %v, want %v", got, c.want)
			}
			if c.want == dropNone && (pi.udp != c.udp || (c.udp && pi.l4 != c.l4)) {
				t.Errorf("udp %v l4 %d, want %v %d", pi.udp, pi.l4, c.udp, c.l4)
			}
		})
	}
}

// TestReplyFragments checks the relay's fragments against gVisor's header parsers: sizes
// within the MTU, offsets, flags, one identification, checksums, and the datagram they
// reassemble into.
func TestReplyFragments(t *testing.T) {
	client, dst := ap(clientV4, 4000), ap(publicV4, 53)
	client6, dst6 := ap(clientV6, 4000), ap(publicV6, 53)
	frag := make([]byte, fragBufSize)
	for _, c := range []struct {
		client, dst netip.AddrPort
		n, mtu      int
	}{
		{client, dst, 1392, 1420}, {client, dst, 1393, 1420}, {client, dst, 4000, 1420},
		{client, dst, 65507, 1280}, {client, dst, 65507, 1500}, {client, dst, 3000, 65535},
		{client6, dst6, 1372, 1420}, {client6, dst6, 1373, 1420}, {client6, dst6, 4000, 1420},
		{client6, dst6, udpMaxPayload, 1280},
	} {
		h := newReplyHeader(c.dst, c.client)
		slot := make([]byte, udpSlotSize)
		payload := randomBytes(c.n)
		copy(slot[udpRoom:], payload)
		pkts := h.appendReply(nil, slot, c.n, c.mtu, frag, 0x12345678)
		var data []byte
		for i, p := range pkts {
			if len(p) > c.mtu {
				t.Fatalf("%+v: packet %d has %d bytes", c, i, len(p))
			}
			more := i < len(pkts)-1
			var off int
			var body []byte
			if c.client.Addr().Is4() {
				ip := header.IPv4(p)
				if !ip.IsValid(len(p)) || !ip.IsChecksumValid() || int(ip.TotalLength()) != len(p) || ip.Protocol() != protoUDP {
					t.Fatalf("%+v: packet %d: bad IPv4 header", c, i)
				}
				if (ip.Flags()&header.IPv4FlagMoreFragments != 0) != more || (len(pkts) > 1 && ip.ID() != 0x5678) {
					t.Fatalf("%+v: packet %d: flags %x id %x", c, i, ip.Flags(), ip.ID())
				}
				off, body = int(ip.FragmentOffset()), ip.Payload()
			} else {
				ip := header.IPv6(p)
				if !ip.IsValid(len(p)) || int(ip.PayloadLength())+40 != len(p) {
					t.Fatalf("%+v: packet %d: bad IPv6 header", c, i)
				}
				body = ip.Payload()
				if len(pkts) > 1 {
					fh := header.IPv6Fragment(body)
					if ip.NextHeader() != protoFragment || !fh.IsValid() || fh.NextHeader() != protoUDP || fh.More() != more || fh.ID() != 0x12345678 {
						t.Fatalf("%+v: packet %d: bad fragment header", c, i)
					}
					off, body = int(fh.FragmentOffset())*8, body[fragHeaderLen:]
				} else if ip.NextHeader() != protoUDP {
					t.Fatalf("%+v: next header %d", c, ip.NextHeader())
				}
			}
			if off != len(data) {
				t.Fatalf("%+v: packet %d at offset %d, want %d", c, i, off, len(data))
			}
			data = append(data, body...)
		}
		u := header.UDP(data)
		if int(u.Length()) != len(data) || u.SourcePort() != c.dst.Port() || u.DestinationPort() != c.client.Port() || !bytes.Equal(u.Payload(), payload) {
			t.Fatalf("%+v: reassembled a different datagram", c)
		}
		sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpAddr(c.dst.Addr()), tcpAddr(c.client.Addr()), uint16(len(data)))
		if checksum.Checksum(data, sum) != 0xffff {
			t.Fatalf("%+v: bad UDP checksum", c)
		}
	}
}
