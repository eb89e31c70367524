package netstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// family is one address family's test setup.
type family struct {
	name    string
	tcp     string // loopback network of the servers
	udp     string
	client  netip.Addr
	local   netip.Addr
	public  netip.Addr
	public2 netip.Addr
}

var families = []family{
	{"v4", "tcp4", "udp4", clientV4, localV4, publicV4, netip.MustParseAddr("198.51.100.3")},
	{"v6", "tcp6", "udp6", clientV6, localV6, publicV6, netip.MustParseAddr("2001:db8:1::3")},
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestTCPDownload(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.download(t, fam.tcp, ap(fam.public, 80), randomBytes(8<<20))
			if st := h.exit.Stats(); st.DialFailures != 0 || st.PacketsIn == 0 || st.PacketsOut == 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestTCPDownloadLoss: a data segment lost on the way to the client is sent again, the
// download arrives whole, and Stats counts the retransmission.
func TestTCPDownloadLoss(t *testing.T) {
	h := newHarness(t, Config{})
	var seen, lost atomic.Int64
	h.tapMu.Lock()
	h.lose = func(p []byte) bool {
		// The 100th packet with more than headers, once.
		if len(p) > 200 && seen.Add(1) == 100 {
			lost.Add(1)
			return true
		}
		return false
	}
	h.tapMu.Unlock()
	h.download(t, "tcp4", ap(publicV4, 80), randomBytes(4<<20))
	if lost.Load() != 1 {
		t.Fatalf("%d packets lost, want 1: the test lost nothing", lost.Load())
	}
	if st := h.exit.Stats(); st.TCPRetransmits == 0 {
		t.Errorf("a segment was lost and the download completed, but TCPRetransmits is 0 (stats %+v)", st)
	}
}

func TestTCPUploadHalfClose(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			srv := serveTCP(t, fam.tcp, hashBack)
			dst := ap(fam.public, 443)
			h.dialer.set(dst, srv.addr)

			c, err := h.dialTCP(ctxTimeout(t, 5*time.Second), dst)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			data := randomBytes(4 << 20)
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			// The server answers only after our FIN: the half-close must pass through.
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if want := sha256.Sum256(data); !bytes.Equal(got, want[:]) {
				t.Fatalf("server hashed something else: got %x, want %x", got, want)
			}
			// The client stack sends with GSO, so batches bring runs of one flow's
			// segments: they entered coalesced (coalesce.go), and arrived whole.
			if h.exit.Stats().TCPCoalesced == 0 {
				t.Error("no segment of the upload was coalesced")
			}
		})
	}
}

func TestTCPServerHalfClose(t *testing.T) {
	h := newHarness(t, Config{})
	fromClient := make(chan string, 1)
	srv := serveTCP(t, "tcp4", func(c net.Conn) {
		c.Write([]byte("hello from server"))
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		fromClient <- string(b)
	})
	dst := ap(publicV4, 25)
	h.dialer.set(dst, srv.addr)
	c, err := h.dialTCP(ctxTimeout(t, 5*time.Second), dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c) // ends at the server's FIN
	if err != nil || string(got) != "hello from server" {
		t.Fatalf("read %q, %v", got, err)
	}
	// Our direction is still open.
	if _, err := c.Write([]byte("bye from client")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	select {
	case s := <-fromClient:
		if s != "bye from client" {
			t.Fatalf("server read %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server never saw the client's data and FIN")
	}
}

func TestTCPRefused(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			dst := ap(fam.public, 81)
			h.dialer.set(dst, freePort(t, fam.tcp))

			start := time.Now()
			c, err := h.dialTCP(ctxTimeout(t, 5*time.Second), dst)
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded, want connection refused")
			}
			if !strings.Contains(err.Error(), "refused") {
				t.Fatalf("dial: %v, want connection refused", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refusal took %v", d)
			}
			if st := h.exit.Stats(); st.DialFailures != 1 {
				t.Errorf("DialFailures = %d, want 1", st.DialFailures)
			}
		})
	}
}

// TestLocalAddrsRefused: a LocalAddr offers only its services; nothing is dialled.
func TestLocalAddrsRefused(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			h := newHarness(t, Config{}) // no DNS upstreams: port 53 is closed too
			for _, port := range []uint16{22, 53, 8080} {
				_, err := h.dialTCP(ctxTimeout(t, 5*time.Second), ap(fam.local, port))
				if err == nil || !strings.Contains(err.Error(), "refused") {
					t.Errorf("TCP %v: %v, want connection refused", ap(fam.local, port), err)
				}
			}
			u, ep := h.dialUDPEndpoint(ap(fam.local, 53))
			defer u.Close()
			waitRefused(t, ep, func() { u.Write([]byte("0123456789abcdef")) })
			if d := h.dialer.dialed(); len(d) != 0 {
				t.Errorf("dialled %v", d)
			}
		})
	}
}

func TestUDPEcho(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			srv := serveUDP(t, fam.udp, 0, echoUDP)
			dst := ap(fam.public, 7)
			h.dialer.set(dst, srv.addr)

			c := h.dialUDP(dst)
			defer c.Close()
			buf := make([]byte, 2000)
			for i := range 20 {
				msg := bytes.Repeat([]byte{byte(i)}, 100+i*50)
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("round trip %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], msg) {
					t.Fatalf("round trip %d: got %d bytes, want %d", i, n, len(msg))
				}
			}
			if st := h.exit.Stats(); st.UDPFlows != 1 {
				t.Errorf("UDPFlows = %d, want 1 (one flow for every round trip)", st.UDPFlows)
			}
		})
	}
}

func TestUDPIdleExpiry(t *testing.T) {
	h := newHarness(t, Config{UDPIdleTimeout: 300 * time.Millisecond})
	srv := serveUDP(t, "udp4", 0, echoUDP)
	dst := ap(publicV4, 5353)
	h.dialer.set(dst, srv.addr)
	c := h.dialUDP(dst)
	defer c.Close()

	roundTrip := func() {
		t.Helper()
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	// Traffic keeps it alive past the timeout.
	for range 4 {
		time.Sleep(150 * time.Millisecond)
		roundTrip()
	}
	if n := h.exit.Stats().UDPFlows; n != 1 {
		t.Fatalf("UDPFlows = %d while active, want 1", n)
	}
	within(t, 3*time.Second, "the idle UDP flow to close", func() bool { return h.exit.Stats().UDPFlows == 0 })
	// A new datagram opens a new flow.
	roundTrip()
	if d := h.dialer.dialed(); len(d) != 2 {
		t.Errorf("dials %v, want 2", d)
	}
}

func TestUDPPortUnreachablePassesBack(t *testing.T) {
	h := newHarness(t, Config{})
	dst := ap(publicV4, 9)
	h.dialer.set(dst, freePort(t, "tcp4"))
	c, ep := h.dialUDPEndpoint(dst)
	defer c.Close()
	waitRefused(t, ep, func() { c.Write([]byte("anyone?")) })
}

func TestDNSRelay(t *testing.T) {
	dns := serveDNS(t, "good")
	dead := freePort(t, "tcp4") // nothing listens: UDP and TCP are refused at once
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			h := newHarness(t, Config{DNSUpstreams: []netip.AddrPort{dead, dns.addr}})
			query := []byte{0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 'q'}

			u := h.dialUDP(ap(fam.local, 53))
			defer u.Close()
			u.Write(query)
			u.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			n, err := u.Read(buf)
			if err != nil {
				t.Fatalf("UDP: %v", err)
			}
			if got := buf[:n]; len(got) != len(query)+4 || got[0] != 0xab || got[1] != 0xcd || got[2]&0x80 == 0 || string(got[len(query):]) != "good" {
				t.Fatalf("UDP answer %x", got)
			}

			c, err := h.dialTCP(ctxTimeout(t, 5*time.Second), ap(fam.local, 53))
			if err != nil {
				t.Fatalf("TCP: %v", err)
			}
			defer c.Close()
			msg := binary.BigEndian.AppendUint16(nil, uint16(len(query)))
			c.Write(append(msg, query...))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				t.Fatal(err)
			}
			a := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(c, a); err != nil {
				t.Fatal(err)
			}
			if !bytes.HasSuffix(a, []byte("good")) || a[2]&0x80 == 0 {
				t.Fatalf("TCP answer %x", a)
			}
		})
	}
}

// tapICMP collects the ICMP packets the exit outputs.
func tapICMP(h *harness) chan []byte {
	ch := make(chan []byte, 64)
	h.setTap(func(pkt []byte) {
		proto := pkt[9]
		if pkt[0]>>4 == 6 {
			proto = pkt[6]
		}
		if proto == protoICMP || proto == protoICMPv6 {
			select {
			case ch <- append([]byte(nil), pkt...):
			default:
			}
		}
	})
	return ch
}

func recvICMP(t *testing.T, ch chan []byte) *echoPacket {
	t.Helper()
	select {
	case pkt := <-ch:
		e, err := parseEcho(pkt)
		if err != nil {
			t.Fatalf("exit sent a bad ICMP packet %x: %v", pkt, err)
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no ICMP packet from the exit")
		return nil
	}
}

func TestEchoLocal(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			pinger := &fakePinger{}
			h := newHarness(t, Config{Pinger: pinger})
			ch := tapICMP(h)
			h.exit.Write([][]byte{echoRequest(fam.client, fam.local, 0x1234, 7, []byte("hello local"))})
			r := recvICMP(t, ch)
			want := echoPacket{reply: true, src: fam.local, dst: fam.client, id: 0x1234, seq: 7, payload: "hello local"}
			if *r != want {
				t.Fatalf("reply %+v, want %+v", *r, want)
			}
			if len(pinger.sent()) != 0 {
				t.Error("an echo to a LocalAddr reached the pinger")
			}
			if st := h.exit.Stats(); st.LocalEchoReplies != 1 {
				t.Errorf("LocalEchoReplies = %d", st.LocalEchoReplies)
			}
		})
	}
}

func TestEchoThroughPinger(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			pinger := &fakePinger{drop: true} // the test answers below, once both are out
			h := newHarness(t, Config{Pinger: pinger})
			ch := tapICMP(h)
			other := fam.client.Next() // a second client, same id and seq
			h.exit.Write([][]byte{
				echoRequest(fam.client, fam.public, 0x1234, 7, []byte("from one")),
				echoRequest(other, fam.public, 0x1234, 7, []byte("from two")),
			})
			sent := pinger.sent()
			if len(sent) != 2 || sent[0].id == sent[1].id || sent[0].dst != fam.public {
				t.Fatalf("pings %+v: want two to %v with distinct ids", sent, fam.public)
			}
			for _, p := range sent {
				pinger.onReply(p.dst, p.id, p.seq, []byte(p.payload))
			}
			got := map[netip.Addr]echoPacket{}
			for range 2 {
				r := recvICMP(t, ch)
				got[r.dst] = *r
			}
			for dst, payload := range map[netip.Addr]string{fam.client: "from one", other: "from two"} {
				want := echoPacket{reply: true, src: fam.public, dst: dst, id: 0x1234, seq: 7, payload: payload}
				if got[dst] != want {
					t.Errorf("reply to %v: %+v, want %+v", dst, got[dst], want)
				}
			}
			// A duplicate reply finds no request.
			pinger.onReply(sent[0].dst, sent[0].id, sent[0].seq, []byte(sent[0].payload))
			if st := h.exit.Stats(); st.PingsSent != 2 || st.PingsAnswered != 2 {
				t.Errorf("PingsSent %d PingsAnswered %d", st.PingsSent, st.PingsAnswered)
			}
		})
	}
}

// TestEchoAsyncPinger: replies that come back on the pinger's own goroutines.
func TestEchoAsyncPinger(t *testing.T) {
	h := newHarness(t, Config{Pinger: &fakePinger{}})
	ch := tapICMP(h)
	for seq := range uint16(10) {
		h.exit.Write([][]byte{echoRequest(clientV4, publicV4, 99, seq, []byte("async"))})
		r := recvICMP(t, ch)
		if want := (echoPacket{reply: true, src: publicV4, dst: clientV4, id: 99, seq: seq, payload: "async"}); *r != want {
			t.Fatalf("reply %+v, want %+v", *r, want)
		}
	}
}

func TestEchoPingUnavailable(t *testing.T) {
	h := newHarness(t, Config{Pinger: &fakePinger{closed: true}})
	h.exit.Write([][]byte{echoRequest(clientV4, publicV4, 1, 1, nil)})
	if n := h.exit.Stats().Drops[DropPingUnavailable]; n != 1 {
		t.Fatalf("ping_unavailable drops = %d, want 1", n)
	}
}

func TestMartiansDropped(t *testing.T) {
	h := newHarness(t, Config{DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}})
	pinger := h.exit.pinger.(*fakePinger)
	cases := []struct {
		pkt  []byte
		want DropReason
	}{
		{tcpSYN(ap(clientV4, 1000), netip.MustParseAddrPort("127.0.0.1:22")), DropLoopback},
		{tcpSYN(ap(clientV4, 1000), netip.MustParseAddrPort("127.1.2.3:80")), DropLoopback},
		{tcpSYN(ap(clientV6, 1000), netip.MustParseAddrPort("[::1]:22")), DropLoopback},
		{tcpSYN(ap(clientV6, 1000), netip.MustParseAddrPort("[::ffff:127.0.0.1]:22")), DropLoopback},
		{udpPacket(ap(clientV4, 1000), netip.MustParseAddrPort("127.0.0.53:53"), []byte("q")), DropLoopback},
		{echoRequest(clientV4, netip.MustParseAddr("127.0.0.1"), 1, 1, nil), DropLoopback},
		{echoRequest(clientV6, netip.MustParseAddr("::1"), 1, 1, nil), DropLoopback},
		{tcpSYN(netip.MustParseAddrPort("127.0.0.1:1000"), ap(publicV4, 80)), DropLoopback},
		{tcpSYN(ap(clientV4, 1000), netip.MustParseAddrPort("0.0.0.0:22")), DropMartian},
		{tcpSYN(ap(clientV4, 1000), netip.MustParseAddrPort("169.254.169.254:80")), DropMartian},
		{udpPacket(ap(clientV4, 1000), netip.MustParseAddrPort("224.0.0.251:5353"), []byte("q")), DropMartian},
		{udpPacket(ap(clientV4, 68), netip.MustParseAddrPort("255.255.255.255:67"), []byte("q")), DropMartian},
		{tcpSYN(ap(clientV6, 1000), netip.MustParseAddrPort("[::]:22")), DropMartian},
		{tcpSYN(ap(clientV6, 1000), netip.MustParseAddrPort("[::ffff:10.0.0.1]:22")), DropMartian},
		{tcpSYN(ap(clientV6, 1000), netip.MustParseAddrPort("[fe80::1]:22")), DropMartian},
		{udpPacket(ap(clientV6, 1000), netip.MustParseAddrPort("[ff02::fb]:5353"), []byte("q")), DropMartian},
	}
	want := map[DropReason]uint64{}
	for _, c := range cases {
		h.exit.Write([][]byte{c.pkt})
		want[c.want]++
	}
	time.Sleep(100 * time.Millisecond) // anything that got through would be dialling now
	if got := h.exit.Stats().Drops; !equalDrops(got, want) {
		t.Errorf("drops %v, want %v", got, want)
	}
	if d := h.dialer.dialed(); len(d) != 0 {
		t.Errorf("dialled %v", d)
	}
	if p := pinger.sent(); len(p) != 0 {
		t.Errorf("pinged %v", p)
	}
}

func equalDrops(a, b map[DropReason]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestMaxFlows(t *testing.T) {
	h := newHarness(t, Config{MaxFlows: 2})
	srv := serveTCP(t, "tcp4", holdOpen)
	dst := ap(publicV4, 22)
	h.dialer.set(dst, srv.addr)

	var open []*gonet.TCPConn
	for i := range 2 {
		c, err := h.dialTCP(ctxTimeout(t, 5*time.Second), dst)
		if err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
		defer c.Close()
		open = append(open, c)
	}
	within(t, 5*time.Second, "2 TCP flows", func() bool { return h.exit.Stats().TCPFlows == 2 })

	start := time.Now()
	_, err := h.dialTCP(ctxTimeout(t, 5*time.Second), dst)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("third flow: %v, want connection refused", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusal took %v", d)
	}

	// UDP above the limit: ICMP administratively prohibited.
	ch := tapICMP(h)
	u := h.dialUDP(ap(publicV4, 53))
	defer u.Close()
	u.Write([]byte("over the limit"))
	select {
	case pkt := <-ch:
		if pkt[20] != icmpv4Unreachable || pkt[21] != 13 {
			t.Errorf("got ICMP type %d code %d, want 3/13", pkt[20], pkt[21])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ICMP for the refused UDP flow")
	}
	if st := h.exit.Stats(); st.FlowsRefused != 2 {
		t.Errorf("FlowsRefused = %d, want 2", st.FlowsRefused)
	}

	// Closing a flow frees its slot.
	open[0].Close()
	within(t, 5*time.Second, "the closed flow to end", func() bool { return h.exit.Stats().TCPFlows == 1 })
	c, err := h.dialTCP(ctxTimeout(t, 5*time.Second), dst)
	if err != nil {
		t.Fatalf("after a slot freed: %v", err)
	}
	c.Close()
}

// blockDialer blocks every dial until its context ends.
type blockDialer struct{}

func (blockDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCloseNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		dns := serveDNS(t, "x")
		srv := serveTCP(t, "tcp4", holdOpen)
		udpSrv := serveUDP(t, "udp4", 0, echoUDP)
		defer dns.udp.close()
		defer dns.tcp.close()
		defer srv.close()
		defer udpSrv.close()

		h := newHarness(t, Config{DNSUpstreams: []netip.AddrPort{dns.addr}, Pinger: &fakePinger{drop: true}})
		h.dialer.set(ap(publicV4, 22), srv.addr)
		h.dialer.set(ap(publicV4, 7), udpSrv.addr)
		ctx := ctxTimeout(t, 5*time.Second)

		c, err := h.dialTCP(ctx, ap(publicV4, 22)) // stays open
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		c.Read(make([]byte, 1))
		u := h.dialUDP(ap(publicV4, 7))
		u.Write([]byte("x"))
		u.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := u.Read(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		d := h.dialUDP(ap(localV4, 53))
		d.Write([]byte("0123456789abcdef"))
		d.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := d.Read(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		h.exit.Write([][]byte{echoRequest(clientV4, publicV4, 1, 1, nil)}) // never answered
		// A dial that blocks until Close.
		h.dialer.blockOn(ap(publicV4, 1))
		go h.dialTCP(context.Background(), ap(publicV4, 1))

		within(t, 5*time.Second, "flows to open", func() bool {
			st := h.exit.Stats()
			return st.TCPFlows == 1 && st.UDPFlows == 2 && h.exit.Stats().Flows == 5
		})
		h.close()
		if err := h.exit.Close(); err != nil { // idempotent
			t.Fatal(err)
		}
	}()
	checkNoLeak(t, before)
}

func TestCloseAbortsPendingDial(t *testing.T) {
	before := runtime.NumGoroutine()
	h := newHarness(t, Config{Dialer: blockDialer{}})
	go h.dialTCP(context.Background(), ap(publicV4, 80))
	within(t, 5*time.Second, "the dial to start", func() bool { return h.exit.Stats().Flows == 1 })
	done := make(chan struct{})
	go func() { h.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a pending dial")
	}
	checkNoLeak(t, before)
}

func TestWriteAfterClose(t *testing.T) {
	h := newHarness(t, Config{})
	h.close()
	h.exit.Write([][]byte{tcpSYN(ap(clientV4, 1), ap(publicV4, 80))})
	if st := h.exit.Stats(); st.PacketsIn != 0 {
		t.Errorf("PacketsIn = %d after Close", st.PacketsIn)
	}
}

func TestConfigValidate(t *testing.T) {
	out := func([][]byte) {}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Output"},
		{Config{Output: out, MTU: 100}, "MTU"},
		{Config{Output: out, LocalAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, "LocalAddrs[0]"},
		{Config{Output: out, DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0")}}, "DNSUpstreams[0]"},
		{Config{Output: out, UDPIdleTimeout: -1}, "UDPIdleTimeout"},
		{Config{Output: out, MaxFlows: -1}, "MaxFlows"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
	c := Config{Output: out}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MTU != 1420 || c.UDPIdleTimeout != 2*time.Minute || c.MaxFlows != 65536 || c.Dialer == nil {
		t.Errorf("defaults %+v", c)
	}
}

// TestQuietWhenIdle: an idle exit sends nothing (no NDP, MLD or router solicitations
// towards clients).
func TestQuietWhenIdle(t *testing.T) {
	var n atomic.Int64
	e, err := New(Config{Output: func(p [][]byte) { n.Add(int64(len(p))) }, Pinger: &fakePinger{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	time.Sleep(1500 * time.Millisecond)
	if n.Load() != 0 {
		t.Fatalf("an idle exit sent %d packets", n.Load())
	}
}

// TestDNSServerTCP: with Config.DNSServer, a TCP connection to the DNS service is served by
// it — with the connection's owner and client address — and never dialled upstream; a
// half-close from the client reaches it as EOF, and what it writes reaches the client.
func TestDNSServerTCP(t *testing.T) {
	type call struct {
		owner  Owner
		client netip.AddrPort
		query  string
	}
	calls := make(chan call, 2)
	cfg := Config{
		Owner: func(a netip.Addr) Owner { return Owner{Peer: 7, Tenant: 3} },
		DNSServer: func(o Owner, client netip.AddrPort, c net.Conn) {
			b, err := io.ReadAll(c) // to the client's half-close
			if err != nil {
				t.Errorf("DNSServer read: %v", err)
			}
			c.Write([]byte("answer to " + string(b)))
			calls <- call{o, client, string(b)}
		},
	}
	h := newHarness(t, cfg)
	for _, local := range []netip.Addr{localV4, localV6} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := h.dialTCP(ctx, netip.AddrPortFrom(local, 53))
		cancel()
		if err != nil {
			t.Fatalf("dial %v:53: %v", local, err)
		}
		c.Write([]byte("q1"))
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "answer to q1" {
			t.Errorf("%v:53 answered %q (%v), want %q", local, got, err, "answer to q1")
		}
		k := <-calls
		client := clientV4
		if local.Is6() {
			client = clientV6
		}
		if k.owner.Tenant != 3 || k.owner.Peer != 7 || k.client.Addr() != client || k.query != "q1" {
			t.Errorf("DNSServer got %+v, want tenant 3, peer 7, client %v, query q1", k, client)
		}
	}
	if d := h.dialer.dialed(); len(d) != 0 {
		t.Errorf("the exit dialled %v; the DNS server serves without upstreams", d)
	}
}
