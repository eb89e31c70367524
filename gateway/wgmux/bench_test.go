package wgmux

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/popgate/popgate/gateway/internal/udpbind"
	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
	"github.com/popgate/popgate/store"
)

// transportPath measures what the Mux adds to a received batch of transport datagrams: the
// goroutine of device 1 reads a full batch spread over devices from the inner bind, as
// RoutineReceiveIncoming would, keeps its own and queues the others', whose ReceiveFuncs then
// copy them into wireguard-go-sized buffers.
type transportPath struct {
	m     *Mux
	s     []*session
	fns   []conn.ReceiveFunc // the first (IPv4) ReceiveFunc of each device
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
	idx   []uint32
	size  int
}

// feedBind is an inner bind whose one receive function writes a batch of transport headers
// into the caller's buffers every call, without blocking: a wgmuxtest.Socket would add a
// channel receive and a copy per datagram to what is measured.
type feedBind struct {
	p *transportPath
}

func (f feedBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	return []conn.ReceiveFunc{f.receiveIPv4}, 51820, nil
}

func (f feedBind) receiveIPv4(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	p := f.p
	for i := range conn.IdealBatchSize {
		b := bufs[i]
		// What the socket writes: the header (the payload is whatever the buffer held).
		binary.LittleEndian.PutUint32(b[0:], typeTransport)
		binary.LittleEndian.PutUint32(b[4:], p.idx[(i/8)%len(p.idx)]) // runs of 8 per session
		binary.LittleEndian.PutUint64(b[8:], uint64(i))
		sizes[i] = p.size
		eps[i] = wgmuxtest.Endpoint{}
	}
	return conn.IdealBatchSize, nil
}

func (feedBind) Close() error                       { return nil }
func (feedBind) SetMark(uint32) error               { return nil }
func (feedBind) Send([][]byte, conn.Endpoint) error { return nil }
func (feedBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	return wgmuxtest.Endpoint{AddrPort: ap}, err
}
func (feedBind) BatchSize() int { return conn.IdealBatchSize }

func newTransportPath(tb testing.TB, devices, size int) *transportPath {
	p := &transportPath{size: size}
	p.m, _ = newTestMux(tb, feedBind{p}, testKey(tb), nil)
	for i := range devices {
		b := p.m.Bind(int64(i + 1))
		fns, _ := mustOpen(tb, b, 0)
		tb.Cleanup(func() { b.Close() })
		p.fns = append(p.fns, fns[0])
		s := b.sess.Load()
		p.s = append(p.s, s)
		for j := range 4 { // a few sessions per device
			idx := uint32(0x1000*(i+1) + j)
			p.m.learn(s.id, idx)
			p.idx = append(p.idx, idx)
		}
	}
	p.bufs = make([][]byte, conn.IdealBatchSize)
	for i := range p.bufs {
		p.bufs[i] = make([]byte, device.MaxMessageSize)
	}
	p.sizes = make([]int, conn.IdealBatchSize)
	p.eps = make([]conn.Endpoint, conn.IdealBatchSize)
	return p
}

// batch runs one batch of IdealBatchSize datagrams through the Mux.
func (p *transportPath) batch() {
	if n, err := p.fns[0](p.bufs, p.sizes, p.eps); n == 0 || err != nil {
		panic(fmt.Sprintf("device 1 read %d datagrams: %v", n, err))
	}
	for i, s := range p.s[1:] {
		for len(s.queue) > 0 {
			p.fns[i+1](p.bufs, p.sizes, p.eps)
		}
	}
}

func TestTransportPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	p := newTransportPath(t, 4, 1400)
	p.batch() // fill the pools
	if n := testing.AllocsPerRun(100, p.batch); n != 0 {
		t.Errorf("%v allocations per batch of %d, want 0", n, conn.IdealBatchSize)
	}
	if st := p.m.Stats(); st.Delivered != st.Received || st.Delivered == 0 {
		t.Errorf("stats %+v", st)
	}
}

func BenchmarkTransport(b *testing.B) {
	for _, c := range []struct {
		name          string
		devices, size int
	}{
		{"1dev/64B", 1, 64},
		{"1dev/1400B", 1, 1400},
		{"4dev/1400B", 4, 1400},
		{"32dev/1400B", 32, 1400},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := newTransportPath(b, c.devices, c.size)
			b.SetBytes(int64(c.size * conn.IdealBatchSize))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p.batch()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conn.IdealBatchSize), "ns/packet")
		})
	}
}

// BenchmarkInitiation measures one valid initiation from the socket to a device: mac1,
// admission and the route. decrypt: the X25519 and AEAD of the static key and route (a map
// lookup among 10,001 keys), then the device's queue. hit: the endpoint cache routes it to the
// device whose goroutine read it (it stays where it is), and the device's answer confirms the
// hit.
func BenchmarkInitiation(b *testing.B) {
	node, client := testKey(b), testKey(b)
	msg := captureInitiation(b, client, node.PublicKey())
	owners := map[store.Key]int64{client.PublicKey(): 1}
	for range 10000 {
		owners[testKey(b).PublicKey()] = 2
	}
	route := func(k store.Key) (int64, bool) { id, ok := owners[k]; return id, ok }
	for _, hit := range []bool{false, true} {
		name := "decrypt"
		if hit {
			name = "hit"
		}
		b.Run(name, func(b *testing.B) {
			h := newSyncHarness(b, node, route, 1, 2)
			lim := defaultHSLimits()
			lim.sourceRate, lim.sourceBurst = 1e9, 1e6 // one source, as fast as it goes: never under load
			h.m.hs = newHandshakes(lim)
			h.m.useEndpoints = hit
			ep := wgmuxtest.Endpoint{}
			answer := responseMsg(9, binary.LittleEndian.Uint32(msg[initSenderOff:]))
			h.m.answered(h.s[0], answer, ep)
			pkts := [][]byte{msg}
			b.ReportAllocs()
			for b.Loop() {
				h.run(pkts, nil)
				if hit {
					h.m.answered(h.s[0], answer, ep)
				}
			}
			st := h.m.Stats()
			if st.Delivered != st.Initiations || hit && st.EndpointConfirmed != st.Initiations {
				b.Fatalf("stats %+v", st)
			}
			h.m.eps.reset()
		})
	}
}

// BenchmarkStatic is the decryption of the static key alone.
func BenchmarkStatic(b *testing.B) {
	node, client := testKey(b), testKey(b)
	msg := captureInitiation(b, client, node.PublicKey())
	n, _ := newNoise(node)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := n.initiatorStatic(msg); !ok {
			b.Fatal("no static")
		}
	}
}

// BenchmarkCookieReply is what an initiation refused under load for want of mac2 costs when
// it gets a cookie reply: the reply's MAC and XChaCha20-Poly1305 seal, and a send to a socket
// that discards it.
func BenchmarkCookieReply(b *testing.B) {
	node := testKey(b)
	m := mustNew(b, Config{Socket: feedBind{}, PrivateKey: node}, nil)
	msg := junkInitiation(node.PublicKey(), 1)
	ep := wgmuxtest.At("198.51.100.7:4000")
	b.ReportAllocs()
	for b.Loop() {
		m.sendCookie(msg, ep)
	}
}

// BenchmarkRoundTrip measures one packet through a tunnel and back: a stock wireguard-go
// client sends it over loopback to a server device whose TUN turns it around. The server
// device has a socket of its own (stock), is alone on a Mux, or shares the Mux with three idle
// devices. back-to-back pings keep every goroutine warm; idle ones (1 ms apart) pay the
// wake-ups an idle tunnel pays. ns/rtt is the round trip alone.
func BenchmarkRoundTrip(b *testing.B) {
	rttBench(b, func(b *testing.B, mux bool, idle int) func(seq uint64) {
		cli := roundTripSetup(b, mux, idle)
		return func(seq uint64) {
			if !cli.ping(uint32(seq), 5*time.Second) {
				b.Fatal("no answer")
			}
		}
	})
}

var benchSocket = flag.String("wgmux.socket", "std", "the server's UDP socket in BenchmarkRoundTrip and BenchmarkReceiveLatency: std (wireguard-go's StdNetBind) or udpbind (the node's)")

// newServerSocket returns the socket -wgmux.socket names, for the server side of a benchmark.
func newServerSocket(tb testing.TB) conn.Bind {
	switch *benchSocket {
	case "std":
		return conn.NewDefaultBind()
	case "udpbind":
		return udpbind.NewDefault()
	}
	tb.Fatalf("-wgmux.socket=%q: want std or udpbind", *benchSocket)
	return nil
}

// rttBench runs the round trips of BenchmarkRoundTrip and BenchmarkReceiveLatency:
// for each bind (stock, mux, mux+3idle), back-to-back and 1 ms apart, setup prepares a round
// trip and ns/rtt is the time spent in it.
func rttBench(b *testing.B, setup func(b *testing.B, mux bool, idle int) (roundTrip func(seq uint64))) {
	for _, c := range []struct {
		name string
		mux  bool
		idle int
	}{
		{"stock", false, 0},
		{"mux", true, 0},
		{"mux+3idle", true, 3},
	} {
		for _, pause := range []time.Duration{0, time.Millisecond} {
			name := c.name + "/back-to-back"
			if pause > 0 {
				name = c.name + "/idle"
			}
			b.Run(name, func(b *testing.B) {
				roundTrip := setup(b, c.mux, c.idle)
				var rtt time.Duration
				for seq := uint64(1); b.Loop(); seq++ {
					if pause > 0 {
						time.Sleep(pause)
					}
					start := time.Now()
					roundTrip(seq)
					rtt += time.Since(start)
				}
				b.ReportMetric(float64(rtt.Nanoseconds())/float64(b.N), "ns/rtt")
			})
		}
	}
}

// roundTripSetup starts the devices of BenchmarkRoundTrip and returns the client's TUN
// once a ping has come back.
func roundTripSetup(b *testing.B, mux bool, idle int) *pingTUN {
	node, site := testKey(b), testKey(b)
	var bind conn.Bind
	if mux {
		m := mustNew(b, Config{Socket: newServerSocket(b), PrivateKey: node, Route: func(k store.Key) (int64, bool) { return 1, k == site.PublicKey() }}, nil)
		bind = m.Bind(1)
		for i := range idle {
			startServer(b, m, int64(2+i), node, testKey(b), "")
		}
	} else {
		bind = newServerSocket(b)
	}
	sitePub, nodePub := site.PublicKey(), node.PublicKey()
	srv := startDevice(b, newEchoTUN(), bind, fmt.Sprintf("private_key=%x\npublic_key=%x\nallowed_ip=100.64.0.2/32\n", node[:], sitePub[:]))
	cli := newPingTUN()
	startDevice(b, cli, conn.NewDefaultBind(), fmt.Sprintf("private_key=%x\npublic_key=%x\nendpoint=127.0.0.1:%d\nallowed_ip=100.64.0.0/10\n", site[:], nodePub[:], listenPort(b, srv)))
	for seq := uint32(1 << 31); ; seq++ { // until the handshake is done
		if cli.ping(seq, 200*time.Millisecond) {
			return cli
		}
		if seq > 1<<31+75 {
			b.Fatal("no answer through the tunnel")
		}
	}
}

func startDevice(tb testing.TB, tdev tun.Device, bind conn.Bind, uapi string) *device.Device {
	tb.Helper()
	dev := device.NewDevice(tdev, bind, silentLogger())
	if err := dev.IpcSet(uapi); err != nil {
		tb.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { wgmuxtest.CloseDevice(dev) })
	return dev
}

// testTUN is a tun.Device whose reads come from in; what writes do is up to write.
type testTUN struct {
	in     chan []byte
	write  func(pkt []byte)
	events chan tun.Event
	closed chan struct{}
	once   sync.Once
}

func newTestTUN(write func([]byte)) *testTUN {
	t := &testTUN{in: make(chan []byte, 16), write: write, events: make(chan tun.Event, 1), closed: make(chan struct{})}
	t.events <- tun.EventUp
	return t
}

func (t *testTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-t.in:
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-t.closed:
		return 0, os.ErrClosed
	}
}

func (t *testTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		t.write(b[offset:])
	}
	return len(bufs), nil
}

func (*testTUN) File() *os.File             { return nil }
func (*testTUN) MTU() (int, error)          { return 1420, nil }
func (*testTUN) Name() (string, error)      { return "muxtun", nil }
func (t *testTUN) Events() <-chan tun.Event { return t.events }
func (*testTUN) BatchSize() int             { return 1 }
func (t *testTUN) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}

// newEchoTUN returns a TUN that sends every IPv4 packet written to it back, source and
// destination swapped.
func newEchoTUN() *testTUN {
	var t *testTUN
	t = newTestTUN(func(pkt []byte) {
		if len(pkt) < 20 {
			return
		}
		out := bytes.Clone(pkt)
		copy(out[12:16], pkt[16:20])
		copy(out[16:20], pkt[12:16])
		select {
		case t.in <- out:
		default:
		}
	})
	return t
}

// pingTUN is the client's TUN: ping sends an IPv4 packet 100.64.0.2 → 100.64.0.1 and waits
// for it to come back.
type pingTUN struct {
	*testTUN
	back chan uint32
}

func newPingTUN() *pingTUN {
	p := &pingTUN{back: make(chan uint32, 16)}
	p.testTUN = newTestTUN(func(pkt []byte) {
		if len(pkt) >= 28 {
			select {
			case p.back <- binary.BigEndian.Uint32(pkt[24:28]):
			default:
			}
		}
	})
	return p
}

func (p *pingTUN) ping(seq uint32, wait time.Duration) bool {
	pkt := make([]byte, 64)
	pkt[0] = 0x45                           // IPv4, 20-byte header
	binary.BigEndian.PutUint16(pkt[2:], 64) // total length
	pkt[8], pkt[9] = 64, 253                // TTL, protocol: experimental
	copy(pkt[12:], []byte{100, 64, 0, 2, 100, 64, 0, 1})
	binary.BigEndian.PutUint32(pkt[24:], seq)
	p.in <- pkt
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case got := <-p.back:
			if got == seq {
				return true
			}
		case <-t.C:
			return false
		}
	}
}

// BenchmarkReceiveLatency measures what a bind adds to a round trip, without wireguard-go:
// a UDP socket sends a transport datagram over loopback, the device's goroutine (one per
// ReceiveFunc, as RoutineReceiveIncoming) receives it and sends it back through the bind. The
// bind is a socket of its own (stock), the device alone on a Mux, or with three idle devices
// whose goroutines wait too. idle: 1 ms between round trips.
func BenchmarkReceiveLatency(b *testing.B) {
	rttBench(b, func(b *testing.B, mux bool, idle int) func(seq uint64) {
		var bind conn.Bind
		var m *Mux
		if mux {
			m = mustNew(b, Config{Socket: newServerSocket(b), PrivateKey: testKey(b)}, nil)
			bind = m.Bind(1)
			for i := range idle {
				other := m.Bind(int64(2 + i))
				fns, _ := mustOpen(b, other, 0)
				echo(b, other, fns)
			}
		} else {
			bind = newServerSocket(b)
		}
		fns, port := mustOpen(b, bind, 0)
		client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { client.Close() })
		ep, err := bind.ParseEndpoint(client.LocalAddr().String())
		if err != nil {
			b.Fatal(err)
		}
		bind.Send([][]byte{responseMsg(7, 0)}, ep) // the Mux learns index 7
		echo(b, bind, fns)
		server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
		pkt, buf := transportMsg(7, 64), make([]byte, 1500)
		client.SetReadDeadline(time.Now().Add(time.Second))
		if n, _ := client.Read(buf); n != responseSize {
			b.Fatalf("read %d bytes, want the response", n)
		}
		client.SetReadDeadline(time.Time{})
		return func(seq uint64) {
			binary.LittleEndian.PutUint64(pkt[8:], seq)
			if _, err := client.WriteToUDP(pkt, server); err != nil {
				b.Fatal(err)
			}
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				n, err := client.Read(buf)
				if err != nil {
					if m != nil {
						b.Logf("wgmux: %+v", m.Stats())
					}
					b.Fatal(err)
				}
				if n == len(pkt) && binary.LittleEndian.Uint64(buf[8:]) == seq {
					return
				}
			}
		}
	})
}

// echo runs a goroutine per receive function of an open bind that sends every datagram
// back where it came from, until the bind closes (at the end of the test).
func echo(tb testing.TB, bind conn.Bind, fns []conn.ReceiveFunc) {
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := bind.BatchSize()
			bufs := make([][]byte, n)
			for i := range bufs {
				bufs[i] = make([]byte, device.MaxMessageSize)
			}
			sizes, eps := make([]int, n), make([]conn.Endpoint, n)
			for {
				k, err := fn(bufs, sizes, eps)
				if err != nil {
					return
				}
				for i := range k {
					if sizes[i] > 0 {
						bind.Send([][]byte{bufs[i][:sizes[i]]}, eps[i])
					}
				}
			}
		}()
	}
	tb.Cleanup(func() { bind.Close(); wg.Wait() })
}

// BenchmarkFloodReceive measures the receive path for a batch of initiations with a valid
// mac1 from 100 sources, as under a flood: mac1, then admission (the Mux under load, no mac2,
// most refused without a cookie reply).
func BenchmarkFloodReceive(b *testing.B) {
	node := testKey(b)
	h := newSyncHarness(b, node, nil, 1)
	for i := range conn.IdealBatchSize {
		h.sizes[i] = copy(h.bufs[i], junkInitiation(node.PublicKey(), uint32(i)))
	}
	eps := make([]conn.Endpoint, conn.IdealBatchSize)
	for i := range eps {
		eps[i] = wgmuxtest.Endpoint{AddrPort: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 100)}), 9)}
	}
	var out [initiationSize]byte
	b.ReportAllocs()
	for b.Loop() {
		for i := range h.sizes {
			h.sizes[i] = initiationSize
		}
		copy(h.eps, eps)
		h.rc.sort(h.bufs, h.sizes, h.eps, conn.IdealBatchSize)
		for {
			if _, ok := h.m.hs.take(&out); !ok {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conn.IdealBatchSize), "ns/initiation")
	h.m.flush(&h.rc.counts)
	b.Logf("%+v", h.m.Stats())
}
