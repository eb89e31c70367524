package udpbind

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// reader reads a bind's receive function with full-size buffers.
type reader struct {
	fn    conn.ReceiveFunc
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
}

func newReader(fn conn.ReceiveFunc, n int) *reader {
	r := &reader{fn: fn, bufs: make([][]byte, n), sizes: make([]int, n), eps: make([]conn.Endpoint, n)}
	for i := range r.bufs {
		r.bufs[i] = make([]byte, 65535)
	}
	return r
}

// datagram is one received datagram.
type datagram struct {
	data []byte
	ep   *Endpoint
}

// read returns the datagrams of one call.
func (r *reader) read(t *testing.T) []datagram {
	t.Helper()
	n, err := r.fn(r.bufs, r.sizes, r.eps)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	var out []datagram
	for i := range n {
		out = append(out, datagram{append([]byte(nil), r.bufs[i][:r.sizes[i]]...), r.eps[i].(*Endpoint)})
	}
	return out
}

// openBind opens a Bind on port and returns its receive functions by family.
func openBind(t *testing.T, b conn.Bind, port uint16) (v4, v6 conn.ReceiveFunc, actual uint16) {
	t.Helper()
	fns, actual, err := b.Open(port)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	for _, fn := range fns {
		switch fn.PrettyName() {
		case "v4":
			v4 = fn
		case "v6":
			v6 = fn
		default:
			t.Fatalf("receive function named %q, want v4 or v6", fn.PrettyName())
		}
	}
	if v4 == nil || v6 == nil {
		t.Fatalf("receive functions %d, want v4 and v6", len(fns))
	}
	return v4, v6, actual
}

// segmented writes payloads (all of one size but the last) to dst as one UDP_SEGMENT message.
func segmented(t *testing.T, c *net.UDPConn, dst netip.AddrPort, size int, payloads [][]byte) {
	t.Helper()
	var all []byte
	for _, p := range payloads {
		all = append(all, p...)
	}
	oob := make([]byte, cmsgSpace(2))
	binary.NativeEndian.PutUint16(putCmsg(oob, unix.IPPROTO_UDP, unix.UDP_SEGMENT, 2), uint16(size))
	if _, _, err := c.WriteMsgUDPAddrPort(all, oob, dst); err != nil {
		t.Fatalf("send %d segments: %v", len(payloads), err)
	}
}

// TestSourceAddress is the anycast bug: a host with a second address (on lo) gets a datagram
// at it; the endpoint must carry that address, and the reply must leave from it, not from the
// address the kernel would pick towards the client. Also when the kernel coalesced a burst
// (GRO), and when the datagrams do not all fit the caller's buffers.
func TestSourceAddress(t *testing.T) {
	ns := newNetns(t, "addr add 198.18.0.1/32 dev lo", "addr add 2001:db8:ff::1/128 dev lo nodad")
	for _, tc := range []struct {
		name         string
		local, from  string
		port         uint16
		burst, slots int
	}{
		{"v4 one", "198.18.0.1", "127.0.0.1", 47101, 1, 128},
		{"v6 one", "2001:db8:ff::1", "::1", 47102, 1, 128},
		{"v4 coalesced", "198.18.0.1", "127.0.0.1", 47103, 64, 128},
		{"v6 coalesced", "2001:db8:ff::1", "::1", 47104, 64, 128},
		{"v4 coalesced carried", "198.18.0.1", "127.0.0.1", 47105, 64, 7},
		{"v6 coalesced last short", "2001:db8:ff::1", "::1", 47106, 33, 128},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New()
			var v4, v6 conn.ReceiveFunc
			var client *net.UDPConn
			ns.do(t, func() {
				v4, v6, _ = openBind(t, b, tc.port)
				var err error
				if client, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tc.from), 0))); err != nil {
					t.Error(err)
				}
			})
			if client == nil {
				t.FailNow()
			}
			defer client.Close()
			fn := v4
			if netip.MustParseAddr(tc.local).Is6() {
				fn = v6
			}
			local := netip.MustParseAddr(tc.local)
			dst := netip.AddrPortFrom(local, tc.port)
			const size = 100
			var payloads [][]byte
			for i := range tc.burst {
				p := bytes.Repeat([]byte{byte(i)}, size)
				if i == tc.burst-1 && tc.burst%2 == 1 {
					p = p[:size/2] // the last one shorter, as GRO allows
				}
				payloads = append(payloads, p)
			}
			before := b.Stats()
			if tc.burst == 1 {
				if _, err := client.WriteToUDPAddrPort(payloads[0], dst); err != nil {
					t.Fatal(err)
				}
			} else {
				segmented(t, client, dst, size, payloads)
			}
			r := newReader(fn, tc.slots)
			var got []datagram
			for len(got) < tc.burst {
				got = append(got, r.read(t)...)
			}
			if len(got) != tc.burst {
				t.Fatalf("got %d datagrams, want %d", len(got), tc.burst)
			}
			for i, d := range got {
				if !bytes.Equal(d.data, payloads[i]) {
					t.Fatalf("datagram %d: % x, want % x", i, d.data[:min(8, len(d.data))], payloads[i][:8])
				}
				if d.ep.SrcIP() != local || d.ep.SrcToString() != tc.local {
					t.Fatalf("datagram %d: endpoint source %q, want %s", i, d.ep.SrcToString(), local)
				}
				if want := client.LocalAddr().(*net.UDPAddr).AddrPort(); d.ep.DstAddrPort() != unmapped(want) {
					t.Fatalf("datagram %d: endpoint %s, want %s", i, d.ep.DstToString(), want)
				}
			}
			st := b.Stats()
			if tc.burst > 1 && st.Coalesced == before.Coalesced {
				t.Errorf("the kernel did not coalesce the burst (stats %+v): the test did not test GRO", st)
			}
			if tc.slots < tc.burst && st.Carried == before.Carried {
				t.Errorf("nothing carried with %d slots for %d datagrams", tc.slots, tc.burst)
			}

			// The reply leaves from the address the client sent to.
			if err := b.Send([][]byte{[]byte("reply")}, got[0].ep); err != nil {
				t.Fatal(err)
			}
			client.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 100)
			n, from, err := client.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "reply" || unmapped(from) != dst {
				t.Errorf("client got %q from %s, want \"reply\" from %s", buf[:n], from, dst)
			}
		})
	}
}

// TestSendSourceGone: a source address the host no longer has is forgotten, and the datagram
// leaves from the one the kernel picks.
func TestSendSourceGone(t *testing.T) {
	b := New()
	_, _, port := openBind(t, b, 0)
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ep := NewEndpoint(client.LocalAddr().(*net.UDPAddr).AddrPort(), netip.MustParseAddr("192.0.2.77"))
	if err := b.Send([][]byte{[]byte("hello")}, ep); err != nil {
		t.Fatalf("send: %v", err)
	}
	if ep.SrcIP().IsValid() || ep.SrcToString() != "" {
		t.Errorf("source %q kept after the kernel refused it", ep.SrcToString())
	}
	if b.Stats().SrcCleared != 1 {
		t.Errorf("stats %+v, want SrcCleared 1", b.Stats())
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, from, err := client.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port); string(buf[:n]) != "hello" || from != want {
		t.Errorf("got %q from %s, want \"hello\" from %s", buf[:n], from, want)
	}
}

// TestSendSegmented: runs of same-size datagrams arrive as the datagrams they were, in order,
// whether or not the kernel segmented them.
func TestSendSegmented(t *testing.T) {
	b := New()
	openBind(t, b, 0)
	client, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ep, err := b.ParseEndpoint(client.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	var bufs [][]byte
	for i, size := range []int{1000, 1000, 1000, 500, 1000, 1000, 0, 7, 7, 7, 7, 1200} {
		bufs = append(bufs, bytes.Repeat([]byte{byte(i)}, size))
	}
	for range 90 { // a run longer than one message takes
		bufs = append(bufs, bytes.Repeat([]byte{0xee}, 64))
	}
	if err := b.Send(bufs, ep); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2000)
	for i, want := range bufs {
		n, err := client.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d: %d bytes, want %d", i, n, len(want))
		}
	}
	st := b.Stats()
	t.Logf("stats %+v", st)
	if st.Segmented == 0 && b.socks.Load().v6.gso.Load() {
		t.Errorf("nothing segmented although the kernel takes UDP_SEGMENT")
	}
}

// TestFloodBatches: a flood of small datagrams is read many at a time, not 2 (wireguard-go's
// StdNetBind with GRO on).
func TestFloodBatches(t *testing.T) {
	b := New()
	v4, _, port := openBind(t, b, 0)
	const total, size = 10000, 64
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	go func() {
		// One datagram per message: sendmmsg without segmentation, like a flood of
		// initiations from many sources.
		pc := ipv4.NewPacketConn(client)
		ua := net.UDPAddrFromAddrPort(dst)
		msgs := make([]ipv4.Message, 128)
		for i := range msgs {
			msgs[i] = ipv4.Message{Buffers: [][]byte{make([]byte, size)}, Addr: ua}
		}
		for sent := 0; sent < total; {
			batch := msgs[:min(len(msgs), total-sent)]
			for i := range batch {
				binary.BigEndian.PutUint32(batch[i].Buffers[0], uint32(sent+i))
			}
			n, err := pc.WriteBatch(batch, 0)
			if err != nil {
				t.Error(err)
				return
			}
			sent += n
		}
	}()
	r := newReader(v4, conn.IdealBatchSize)
	got, reads, most := 0, 0, 0
	done := make(chan struct{})
	timer := time.AfterFunc(5*time.Second, func() { close(done); b.Close() })
	defer timer.Stop()
	for got < total {
		n, err := r.fn(r.bufs, r.sizes, r.eps)
		if errors.Is(err, net.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got += n
		reads++
		most = max(most, n)
	}
	t.Logf("%d datagrams in %d reads, at most %d in one (stats %+v)", got, reads, most, b.Stats())
	if got < total*9/10 {
		t.Fatalf("received %d of %d", got, total)
	}
	if most <= 2 || got/reads <= 2 {
		t.Errorf("reads of at most %d, %d on average: want more than 2", most, got/reads)
	}
}

// TestClose: Close ends a read in progress with net.ErrClosed, Send fails after it, and the
// bind opens again on the same port.
func TestClose(t *testing.T) {
	b := New()
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, len(fns))
	for _, fn := range fns {
		go func() {
			r := newReader(fn, 4)
			_, err := r.fn(r.bufs, r.sizes, r.eps)
			errc <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range fns {
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after Close: %v, want net.ErrClosed", err)
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ep, _ := b.ParseEndpoint("127.0.0.1:1")
	if err := b.Send([][]byte{{1}}, ep); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close: %v, want net.ErrClosed", err)
	}
	if _, again, err := b.Open(port); err != nil || again != port {
		t.Fatalf("reopen on %d: port %d, %v", port, again, err)
	}
	defer b.Close()
	if _, _, err := b.Open(0); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Errorf("Open twice: %v", err)
	}
	if err := b.SetMark(1); err != nil && os.Geteuid() == 0 {
		t.Errorf("SetMark as root: %v", err)
	}
}

// TestLinkLocal: a datagram from an IPv6 link-local address is answered to that address on
// its interface (the zone), from the link-local address it arrived at. (x/net names the zone
// in the namespace of the thread that reads, not the socket's; the index is what counts.)
func TestLinkLocal(t *testing.T) {
	srvNS, cliNS := newNetns(t), newNetns(t)
	veth := fmt.Sprintf("ubl%d", nsSeq.Add(1))
	ip(t, "link", "add", veth+"s", "netns", srvNS.name, "type", "veth", "peer", "name", veth+"c", "netns", cliNS.name)
	ip(t, "-n", srvNS.name, "addr", "add", "fe80::1/64", "dev", veth+"s", "nodad")
	ip(t, "-n", srvNS.name, "link", "set", veth+"s", "up")
	ip(t, "-n", cliNS.name, "addr", "add", "fe80::2/64", "dev", veth+"c", "nodad")
	ip(t, "-n", cliNS.name, "link", "set", veth+"c", "up")

	b := New()
	var v6 conn.ReceiveFunc
	srvNS.do(t, func() { _, v6, _ = openBind(t, b, 47111) })
	var client *net.UDPConn
	cliNS.do(t, func() {
		var err error
		if client, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("fe80::2"), Zone: veth + "c"}); err != nil {
			t.Error(err)
		}
	})
	if client == nil {
		t.FailNow()
	}
	defer client.Close()
	dst := &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 47111, Zone: veth + "c"}
	deadline := time.Now().Add(5 * time.Second)
	for { // until the link is up
		if _, err := client.WriteToUDP([]byte("hello"), dst); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := newReader(v6, 8).read(t)
	if len(got) != 1 || got[0].ep.SrcIP() != netip.MustParseAddr("fe80::1") || got[0].ep.DstIP().Zone() == "" {
		t.Fatalf("got %d datagrams, the first from %s to %q", len(got), got[0].ep.DstToString(), got[0].ep.SrcToString())
	}
	if err := b.Send([][]byte{[]byte("reply")}, got[0].ep); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, from, err := client.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "reply" || !from.IP.Equal(net.ParseIP("fe80::1")) || from.Port != 47111 {
		t.Errorf("client got %q from %s, want \"reply\" from [fe80::1]:47111", buf[:n], from)
	}
}

// TestEmptyDatagram: an empty datagram is returned as one of size 0, and the one behind it
// is not lost (StdNetBind's GRO path ends a read at an empty datagram and loses the rest).
func TestEmptyDatagram(t *testing.T) {
	b := New()
	v4, _, port := openBind(t, b, 0)
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
	for _, p := range []string{"", "behind", ""} {
		if _, err := client.WriteToUDP([]byte(p), dst); err != nil {
			t.Fatal(err)
		}
	}
	r := newReader(v4, conn.IdealBatchSize)
	var got []string
	for len(got) < 3 {
		for _, d := range r.read(t) {
			got = append(got, string(d.data))
		}
	}
	if fmt.Sprintf("%q", got) != `["" "behind" ""]` {
		t.Errorf("got %q", got)
	}
}

// TestSegmentsAboveMTU: the kernel refuses to segment datagrams larger than the route's MTU
// (EINVAL); they go one by one (fragmented), and segmenting stays on for the next send.
func TestSegmentsAboveMTU(t *testing.T) {
	ns := newNetns(t, "link set lo mtu 1280")
	b := New()
	var client *net.UDPConn
	ns.do(t, func() {
		openBind(t, b, 47121)
		var err error
		if client, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Error(err)
		}
	})
	if client == nil {
		t.FailNow()
	}
	defer client.Close()
	if !b.socks.Load().v4.gso.Load() {
		t.Skip("the kernel does not take UDP_SEGMENT")
	}
	ep := NewEndpoint(client.LocalAddr().(*net.UDPAddr).AddrPort(), netip.Addr{})
	var bufs [][]byte
	for i := range 10 {
		bufs = append(bufs, bytes.Repeat([]byte{byte(i)}, 1400))
	}
	if err := b.Send(bufs, ep); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2000)
	for i, want := range bufs {
		n, err := client.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d: %d bytes of %d, want 1400 of %d", i, n, buf[0], i)
		}
	}
	if st := b.Stats(); st.GSOFallback == 0 || st.Segmented != 0 {
		t.Errorf("stats %+v: want a fallback and nothing segmented", st)
	}
	if !b.socks.Load().v4.gso.Load() {
		t.Error("segmenting turned off for good by a datagram above the MTU")
	}
}

// unmapped returns ap with an IPv4-mapped address as IPv4.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// TestReadMessages: how many messages a read of 128 buffers asks for as traffic changes
// between a bulk transfer (64 datagrams a message) and single datagrams.
func TestReadMessages(t *testing.T) {
	const n = conn.IdealBatchSize
	perMsg := 1
	read := func(most int) int { // one read whose fullest message brought most; the next m
		perMsg = nextPerMsg(perMsg, most)
		return readMessages(n, perMsg)
	}
	if m := readMessages(n, perMsg); m != n {
		t.Fatalf("first read asks for %d messages, want %d", m, n)
	}
	if m := read(64); m != 2 {
		t.Fatalf("after messages of 64 datagrams: %d messages, want 2", m)
	}
	// The reader caught up: one read found a single datagram. Were the next read to ask for
	// 128 messages and find them full, 8,064 datagrams would wait in the carry.
	if m := read(1); m*64-n > n {
		t.Fatalf("after one single datagram: %d messages of up to 64 datagrams, more than twice the buffers", m)
	}
	// A flood of single datagrams takes whole batches again soon.
	reads := 0
	for m := 0; m < n; reads++ {
		m = read(1)
		if reads > 7 {
			t.Fatalf("single datagrams: still %d messages a read after %d reads", m, reads)
		}
	}
	if m := read(40); m != n/40 {
		t.Fatalf("after a message of 40: %d messages, want %d", m, n/40)
	}
	if readMessages(n, 0) != n || readMessages(n, 1000) != 1 || readMessages(1, 64) != 1 {
		t.Fatal("readMessages out of [1, n]")
	}
}
