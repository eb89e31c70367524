package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Packet builders for tests, on gVisor's header package so they do not share code with
// what they test.

func tcpAddr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

// ipPacket wraps an L4 payload (with its checksum already set) in an IP header.
func ipPacket(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	if src.Is4() {
		b := make([]byte, header.IPv4MinimumSize+len(l4))
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)), TTL: 64, Protocol: proto,
			SrcAddr: tcpAddr(src), DstAddr: tcpAddr(dst),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(b[header.IPv4MinimumSize:], l4)
		return b
	}
	b := make([]byte, header.IPv6MinimumSize+len(l4))
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength: uint16(len(l4)), TransportProtocol: tcpip.TransportProtocolNumber(proto),
		HopLimit: 64, SrcAddr: tcpAddr(src), DstAddr: tcpAddr(dst),
	})
	copy(b[header.IPv6MinimumSize:], l4)
	return b
}

func tcpSYN(src, dst netip.AddrPort) []byte {
	t := header.TCP(make([]byte, header.TCPMinimumSize))
	t.Encode(&header.TCPFields{
		SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1000,
		DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 65535,
	})
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpAddr(src.Addr()), tcpAddr(dst.Addr()), uint16(len(t)))
	t.SetChecksum(^t.CalculateChecksum(sum))
	return ipPacket(src.Addr(), dst.Addr(), uint8(header.TCPProtocolNumber), t)
}

func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	u := header.UDP(make([]byte, header.UDPMinimumSize+len(payload)))
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], payload)
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpAddr(src.Addr()), tcpAddr(dst.Addr()), uint16(len(u)))
	u.SetChecksum(^u.CalculateChecksum(checksum.Checksum(payload, sum)))
	return ipPacket(src.Addr(), dst.Addr(), uint8(header.UDPProtocolNumber), u)
}

func echoRequest(src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	m := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], payload)
	if src.Is4() {
		m[0] = byte(header.ICMPv4Echo)
		binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, 0))
		return ipPacket(src, dst, uint8(header.ICMPv4ProtocolNumber), m)
	}
	m[0] = byte(header.ICMPv6EchoRequest)
	binary.BigEndian.PutUint16(m[2:], header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: header.ICMPv6(m[:8]), Src: tcpAddr(src), Dst: tcpAddr(dst),
		PayloadCsum: checksum.Checksum(payload, 0), PayloadLen: len(payload),
	}))
	return ipPacket(src, dst, uint8(header.ICMPv6ProtocolNumber), m)
}

// echoPacket is a parsed echo request or reply.
type echoPacket struct {
	reply    bool
	src, dst netip.Addr
	id, seq  uint16
	payload  string
}

// parseEcho parses an IP packet carrying ICMP echo and checks every checksum and length.
func parseEcho(b []byte) (*echoPacket, error) {
	var e echoPacket
	var m []byte
	switch b[0] >> 4 {
	case 4:
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) || !ip.IsChecksumValid() || int(ip.TotalLength()) != len(b) || ip.Protocol() != uint8(header.ICMPv4ProtocolNumber) {
			return nil, errors.New("bad IPv4 header")
		}
		m = ip.Payload()
		if checksum.Checksum(m, 0) != 0xffff {
			return nil, errors.New("bad ICMP checksum")
		}
		e.src, e.dst = netip.AddrFrom4(ip.SourceAddress().As4()), netip.AddrFrom4(ip.DestinationAddress().As4())
		switch m[0] {
		case byte(header.ICMPv4EchoReply):
			e.reply = true
		case byte(header.ICMPv4Echo):
		default:
			return nil, fmt.Errorf("ICMP type %d", m[0])
		}
	case 6:
		ip := header.IPv6(b)
		if !ip.IsValid(len(b)) || int(ip.PayloadLength())+header.IPv6MinimumSize != len(b) || ip.TransportProtocol() != header.ICMPv6ProtocolNumber {
			return nil, errors.New("bad IPv6 header")
		}
		m = ip.Payload()
		want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
			Header: header.ICMPv6(m[:8]), Src: ip.SourceAddress(), Dst: ip.DestinationAddress(),
			PayloadCsum: checksum.Checksum(m[8:], 0), PayloadLen: len(m) - 8,
		})
		if header.ICMPv6(m).Checksum() != want {
			return nil, errors.New("bad ICMPv6 checksum")
		}
		e.src, e.dst = netip.AddrFrom16(ip.SourceAddress().As16()), netip.AddrFrom16(ip.DestinationAddress().As16())
		switch m[0] {
		case byte(header.ICMPv6EchoReply):
			e.reply = true
		case byte(header.ICMPv6EchoRequest):
		default:
			return nil, fmt.Errorf("ICMPv6 type %d", m[0])
		}
	default:
		return nil, errors.New("not IP")
	}
	e.id = binary.BigEndian.Uint16(m[4:])
	e.seq = binary.BigEndian.Uint16(m[6:])
	e.payload = string(m[8:])
	return &e, nil
}

func TestParsePacket(t *testing.T) {
	c4, c6 := ap(clientV4, 1000), ap(clientV6, 1000)
	withOptions := tcpSYN(c4, ap(publicV4, 80))
	withOptions = append(withOptions[:20:20], append([]byte{1, 1, 1, 0}, withOptions[20:]...)...)
	withOptions[0] = 0x46
	binary.BigEndian.PutUint16(withOptions[2:], uint16(len(withOptions)))
	fragEcho := echoRequest(clientV4, publicV4, 1, 1, nil)
	fragEcho[6] = 0x20 // more fragments
	padded := append(tcpSYN(c4, ap(publicV4, 80)), 0, 0, 0, 0)
	hopByHopEcho := echoRequest(clientV6, publicV6, 9, 9, []byte("x"))
	hopByHopEcho = append(hopByHopEcho[:40:40], append([]byte{58, 0, 1, 4, 0, 0, 0, 0}, hopByHopEcho[40:]...)...)
	hopByHopEcho[6] = 0
	binary.BigEndian.PutUint16(hopByHopEcho[4:], uint16(len(hopByHopEcho)-40))
	frag6Echo := echoRequest(clientV6, publicV6, 9, 9, nil)
	frag6Echo = append(frag6Echo[:40:40], append([]byte{58, 0, 0, 1, 0, 0, 0, 1}, frag6Echo[40:]...)...)
	frag6Echo[6] = 44
	binary.BigEndian.PutUint16(frag6Echo[4:], uint16(len(frag6Echo)-40))

	for _, c := range []struct {
		name   string
		pkt    []byte
		want   DropReason
		echo   bool
		length int
	}{
		{"empty", nil, DropMalformed, false, 0},
		{"version 5", []byte{0x50, 0, 0, 20}, DropMalformed, false, 0},
		{"short v4", tcpSYN(c4, ap(publicV4, 80))[:19], DropMalformed, false, 0},
		{"short v6", tcpSYN(c6, ap(publicV6, 80))[:39], DropMalformed, false, 0},
		{"v4 ihl 4", append([]byte{0x44}, tcpSYN(c4, ap(publicV4, 80))[1:]...), DropMalformed, false, 0},
		{"v4 total > len", tcpSYN(c4, ap(publicV4, 80))[:30], DropMalformed, false, 0},
		{"v6 payload > len", tcpSYN(c6, ap(publicV6, 80))[:50], DropMalformed, false, 0},
		{"v4 syn", tcpSYN(c4, ap(publicV4, 80)), dropNone, false, 40},
		{"v4 options", withOptions, dropNone, false, 44},
		{"v4 padding trimmed", padded, dropNone, false, 40},
		{"v6 syn", tcpSYN(c6, ap(publicV6, 80)), dropNone, false, 60},
		{"v4 echo", echoRequest(clientV4, publicV4, 1, 1, []byte("abc")), dropNone, true, 31},
		{"v6 echo", echoRequest(clientV6, publicV6, 1, 1, []byte("abc")), dropNone, true, 51},
		{"v6 echo after hop-by-hop", hopByHopEcho, dropNone, true, len(hopByHopEcho)},
		{"v4 echo truncated", echoRequest(clientV4, publicV4, 1, 1, nil)[:24], DropMalformed, false, 0},
		{"v4 fragmented echo", fragEcho, DropICMPFragment, false, 0},
		{"v6 fragmented echo", frag6Echo, DropICMPFragment, false, 0},
		{"v4 echo reply passes to gVisor", func() []byte { p := echoRequest(clientV4, publicV4, 1, 1, nil); p[20] = 0; return p }(), dropNone, false, 28},
		{"v4 loopback dst", tcpSYN(c4, netip.MustParseAddrPort("127.0.0.1:80")), DropLoopback, false, 0},
		{"v4 loopback src", tcpSYN(netip.MustParseAddrPort("127.0.0.1:80"), ap(publicV4, 80)), DropLoopback, false, 0},
		{"v6 loopback dst", tcpSYN(c6, netip.MustParseAddrPort("[::1]:80")), DropLoopback, false, 0},
		{"v6 mapped loopback", tcpSYN(c6, netip.MustParseAddrPort("[::ffff:127.0.0.1]:80")), DropLoopback, false, 0},
		{"v4 zero", tcpSYN(c4, netip.MustParseAddrPort("0.1.2.3:80")), DropMartian, false, 0},
		{"v4 metadata", tcpSYN(c4, netip.MustParseAddrPort("169.254.169.254:80")), DropMartian, false, 0},
		{"v4 multicast", udpPacket(c4, netip.MustParseAddrPort("239.1.1.1:80"), nil), DropMartian, false, 0},
		{"v4 class E", udpPacket(c4, netip.MustParseAddrPort("240.0.0.1:80"), nil), DropMartian, false, 0},
		{"v6 unspecified", tcpSYN(c6, netip.MustParseAddrPort("[::]:80")), DropMartian, false, 0},
		{"v6 v4-compatible", tcpSYN(c6, netip.MustParseAddrPort("[::127.0.0.1]:80")), DropMartian, false, 0},
		{"v6 link-local", tcpSYN(c6, netip.MustParseAddrPort("[fe80::1]:80")), DropMartian, false, 0},
		{"v6 multicast", udpPacket(c6, netip.MustParseAddrPort("[ff05::1]:80"), nil), DropMartian, false, 0},
		{"v6 nat64 is fine", tcpSYN(c6, netip.MustParseAddrPort("[64:ff9b::c633:6402]:80")), dropNone, false, 60},
	} {
		t.Run(c.name, func(t *testing.T) {
			var pi pktInfo
			got := parsePacket(c.pkt, &pi)
			if got != c.want {
				t.Fatalf("parsePacket = %v, want %v", got, c.want)
			}
			if got != dropNone {
				return
			}
			if pi.echo != c.echo || pi.length != c.length {
				t.Errorf("echo %v length %d, want %v %d", pi.echo, pi.length, c.echo, c.length)
			}
		})
	}
}

func TestParsePacketNoAlloc(t *testing.T) {
	pkts := [][]byte{tcpSYN(ap(clientV4, 1), ap(publicV4, 80)), tcpSYN(ap(clientV6, 1), ap(publicV6, 80))}
	var pi pktInfo
	if n := testing.AllocsPerRun(100, func() {
		for _, p := range pkts {
			parsePacket(p, &pi)
		}
	}); n != 0 {
		t.Errorf("parsePacket allocates %v times", n)
	}
}

func TestPingTable(t *testing.T) {
	a := newAcct(100, 100, func() int64 { return 0 }, nil)
	var pt pingTable
	pt.init(a)
	dst := publicV4
	// ent is an admitted request of client with id at now.
	ent := func(client netip.Addr, id uint16, now int64) *pingEntry {
		e := &pingEntry{client: client, clientID: id, expires: now + int64(pingTimeout)}
		e.acct, _, _ = a.admit(&Owner{}, kindICMP, e, nil)
		return e
	}
	flows := func() int { n, _ := a.counts(); return n }

	id, ok := pt.add(dst, 1, ent(clientV4, 7, 0))
	if !ok || id != 7 {
		t.Fatalf("first add: %d %v", id, ok)
	}
	id2, ok := pt.add(dst, 1, ent(clientV4.Next(), 7, 0))
	if !ok || id2 == 7 {
		t.Fatalf("second client, same id: %d %v, want another id", id2, ok)
	}
	if e, ok := pt.take(pingKey{dst, id2, 1}, 0); !ok || e.client != clientV4.Next() || e.clientID != 7 {
		t.Fatalf("take: %+v %v", e, ok)
	}
	if n := flows(); n != 1 {
		t.Errorf("%d flows counted after a take, want 1", n)
	}
	// The same client asking again replaces its entry.
	if id, ok := pt.add(dst, 1, ent(clientV4, 7, 0)); !ok || id != 7 {
		t.Fatalf("repeated request: %d %v", id, ok)
	}
	if n := flows(); n != 1 {
		t.Errorf("%d flows counted after a repeated request, want 1", n)
	}
	// Expired entries are forgotten by expire, and take refuses them.
	later := int64(2 * pingTimeout)
	pt.add(dst, 2, ent(clientV4, 9, 0))
	if _, ok := pt.take(pingKey{dst, 9, 2}, later); ok {
		t.Fatal("took an expired entry")
	}
	pt.expire(later)
	if len(pt.m) != 0 || flows() != 0 {
		t.Fatalf("after expire: %d entries, %d flows counted", len(pt.m), flows())
	}
	// An evicted entry leaves the table.
	e := ent(clientV4, 11, 0)
	pt.add(dst, 3, e)
	e.abort()
	if _, ok := pt.take(pingKey{dst, 11, 3}, 0); ok {
		t.Fatal("took an aborted entry")
	}
}

// failDialer refuses every dial: the fuzzer must never reach a real network.
type failDialer struct{}

func (failDialer) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("fuzz: no dialling")
}

func newFuzzExit(t testing.TB) *Exit {
	e, err := New(Config{
		LocalAddrs:   []netip.Addr{localV4, localV6},
		DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")},
		Output:       func([][]byte) {},
		Dialer:       failDialer{},
		Pinger:       &fakePinger{drop: true},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestMalformedNoPanic(t *testing.T) {
	e := newFuzzExit(t)
	syn := tcpSYN(ap(clientV4, 1000), ap(publicV4, 80))
	var pkts [][]byte
	for i := range syn {
		pkts = append(pkts, syn[:i])
	}
	for i := range 256 {
		b := append([]byte(nil), syn...)
		b[0] = byte(i)
		pkts = append(pkts, b)
	}
	pkts = append(pkts, nil, []byte{}, []byte{0x60}, make([]byte, 40), make([]byte, 1500))
	e.Write(pkts)
	if e.Stats().Drops[DropMalformed] == 0 {
		t.Error("no malformed drops counted")
	}
}

func FuzzWrite(f *testing.F) {
	c4, c6 := ap(clientV4, 1000), ap(clientV6, 1000)
	for _, p := range [][]byte{
		tcpSYN(c4, ap(publicV4, 80)),
		tcpSYN(c6, ap(publicV6, 80)),
		tcpSYN(c4, ap(localV4, 53)),
		udpPacket(c4, ap(publicV4, 53), []byte("query")),
		udpPacket(c6, ap(localV6, 53), []byte("0123456789abcdef")),
		udpPacket(c4, ap(localV4, 7), nil),
		echoRequest(clientV4, publicV4, 1, 2, []byte("ping")),
		echoRequest(clientV6, localV6, 1, 2, []byte("ping")),
		{0x45, 0, 0, 20},
		{0x60},
	} {
		f.Add(p)
	}
	e := newFuzzExit(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		e.Write([][]byte{pkt, pkt})
	})
}

func TestBuildUDPUnreachable(t *testing.T) {
	buf := make([]byte, 1<<16)
	for _, c := range []struct {
		client, dst netip.AddrPort
		prohibited  bool
		typ, code   byte
	}{
		{ap(clientV4, 1234), ap(publicV4, 53), false, 3, 3},
		{ap(clientV4, 1234), ap(publicV4, 53), true, 3, 13},
		{ap(clientV6, 1234), ap(publicV6, 53), false, 1, 4},
		{ap(clientV6, 1234), ap(publicV6, 53), true, 1, 1},
	} {
		pkt := buildUDPUnreachable(buf, c.dst.Addr(), c.client, c.dst, c.prohibited)
		var m, quote []byte
		if c.client.Addr().Is4() {
			ip := header.IPv4(pkt)
			if !ip.IsValid(len(pkt)) || !ip.IsChecksumValid() || int(ip.TotalLength()) != len(pkt) {
				t.Fatalf("%+v: bad IPv4 header %x", c, pkt)
			}
			m = ip.Payload()
			if checksum.Checksum(m, 0) != 0xffff {
				t.Errorf("%+v: bad ICMP checksum", c)
			}
			quote = m[8:]
			q := header.IPv4(quote)
			if !q.IsChecksumValid() || q.Protocol() != uint8(header.UDPProtocolNumber) || q.SourceAddress() != tcpAddr(c.client.Addr()) || q.DestinationAddress() != tcpAddr(c.dst.Addr()) {
				t.Errorf("%+v: bad quoted header %x", c, quote)
			}
			quote = quote[20:]
		} else {
			ip := header.IPv6(pkt)
			if !ip.IsValid(len(pkt)) || int(ip.PayloadLength())+40 != len(pkt) {
				t.Fatalf("%+v: bad IPv6 header", c)
			}
			m = ip.Payload()
			want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
				Header: header.ICMPv6(m[:8]), Src: ip.SourceAddress(), Dst: ip.DestinationAddress(),
				PayloadCsum: checksum.Checksum(m[8:], 0), PayloadLen: len(m) - 8,
			})
			if header.ICMPv6(m).Checksum() != want {
				t.Errorf("%+v: bad ICMPv6 checksum", c)
			}
			quote = m[8+40:]
		}
		if m[0] != c.typ || m[1] != c.code {
			t.Errorf("%+v: type %d code %d", c, m[0], m[1])
		}
		u := header.UDP(quote)
		if u.SourcePort() != c.client.Port() || u.DestinationPort() != c.dst.Port() {
			t.Errorf("%+v: quoted ports %d→%d", c, u.SourcePort(), u.DestinationPort())
		}
	}
}
