package firewall

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// pkt describes a test packet; build returns its bytes.
type pkt struct {
	src, dst     string
	proto        uint8
	sport, dport uint16
	flags        uint8
	icmpType     uint8
	icmpCode     uint8
	id           uint16 // ICMP echo identifier
	quote        []byte // ICMP error: the quoted packet
	fragOff      uint16 // in 8-byte units
	more         bool
	fragID       uint32
	fragHdr      bool // IPv6: add a fragment header even when not fragmented
	ext          []uint8
	payload      int
	ipOptions    int // IPv4 option bytes (multiple of 4)
}

func (p pkt) build() []byte {
	src, dst := netip.MustParseAddr(p.src), netip.MustParseAddr(p.dst)
	var l4 []byte
	if p.fragOff == 0 {
		switch p.proto {
		case ipprotoTCP:
			l4 = make([]byte, 20)
			binary.BigEndian.PutUint16(l4[0:], p.sport)
			binary.BigEndian.PutUint16(l4[2:], p.dport)
			l4[12] = 5 << 4
			l4[13] = p.flags
		case ipprotoUDP:
			l4 = make([]byte, 8)
			binary.BigEndian.PutUint16(l4[0:], p.sport)
			binary.BigEndian.PutUint16(l4[2:], p.dport)
		case ipprotoICMP, ipprotoICMPv6:
			l4 = make([]byte, 8)
			l4[0], l4[1] = p.icmpType, p.icmpCode
			binary.BigEndian.PutUint16(l4[4:], p.id)
			l4 = append(l4, p.quote...)
		}
	}
	l4 = append(l4, make([]byte, p.payload)...)
	if src.Is4() {
		ihl := 20 + p.ipOptions
		b := make([]byte, ihl, ihl+len(l4))
		b[0] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(b[2:], uint16(ihl+len(l4)))
		binary.BigEndian.PutUint16(b[4:], uint16(p.fragID))
		fo := p.fragOff
		if p.more {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(b[6:], fo)
		b[8] = 64
		b[9] = p.proto
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		for i := 20; i < ihl; i++ {
			b[i] = 1 // NOP options
		}
		return append(b, l4...)
	}
	var exts []byte
	next := p.proto
	if p.fragHdr || p.fragOff > 0 || p.more {
		f := make([]byte, 8)
		f[0] = next
		fo := p.fragOff << 3
		if p.more {
			fo |= 1
		}
		binary.BigEndian.PutUint16(f[2:], fo)
		binary.BigEndian.PutUint32(f[4:], p.fragID)
		exts = append(f, exts...)
		next = 44
	}
	for i := len(p.ext) - 1; i >= 0; i-- {
		h := make([]byte, 8)
		h[0] = next
		exts = append(h, exts...)
		next = p.ext[i]
	}
	b := make([]byte, 40, 40+len(exts)+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(exts)+len(l4)))
	b[6] = next
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	b = append(b, exts...)
	return append(b, l4...)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestPacketParse(t *testing.T) {
	tcp4 := pkt{src: "100.64.0.1", dst: "10.0.0.1", proto: ipprotoTCP, sport: 40000, dport: 443, flags: TCPSyn}
	udp6 := pkt{src: "fd7a::1", dst: "2001:db8::1", proto: ipprotoUDP, sport: 5353, dport: 53}
	quoted4 := pkt{src: "100.64.0.1", dst: "10.0.0.1", proto: ipprotoUDP, sport: 1000, dport: 53}.build()
	tests := []struct {
		name string
		in   []byte
		want Packet
		err  error
	}{
		{"tcp4", tcp4.build(), Packet{Src: mustAddr("100.64.0.1"), Dst: mustAddr("10.0.0.1"), Proto: ipprotoTCP, Len: 40, SrcPort: 40000, DstPort: 443, TCPFlags: TCPSyn}, nil},
		{"tcp4 options", pkt{src: "1.1.1.1", dst: "2.2.2.2", proto: ipprotoTCP, sport: 1, dport: 2, flags: TCPAck, ipOptions: 12}.build(),
			Packet{Src: mustAddr("1.1.1.1"), Dst: mustAddr("2.2.2.2"), Proto: ipprotoTCP, Len: 52, SrcPort: 1, DstPort: 2, TCPFlags: TCPAck}, nil},
		{"trailing bytes ignored", append(tcp4.build(), 0, 0, 0), Packet{Src: mustAddr("100.64.0.1"), Dst: mustAddr("10.0.0.1"), Proto: ipprotoTCP, Len: 40, SrcPort: 40000, DstPort: 443, TCPFlags: TCPSyn}, nil},
		{"udp6", udp6.build(), Packet{Src: mustAddr("fd7a::1"), Dst: mustAddr("2001:db8::1"), Proto: ipprotoUDP, Len: 48, SrcPort: 5353, DstPort: 53}, nil},
		{"udp6 ext headers", pkt{src: "fd7a::1", dst: "fd7a::2", proto: ipprotoUDP, sport: 1, dport: 2, ext: []uint8{0, 60, 43}}.build(),
			Packet{Src: mustAddr("fd7a::1"), Dst: mustAddr("fd7a::2"), Proto: ipprotoUDP, Len: 72, SrcPort: 1, DstPort: 2}, nil},
		{"icmp4 echo", pkt{src: "100.64.0.1", dst: "8.8.8.8", proto: ipprotoICMP, icmpType: 8, id: 77}.build(),
			Packet{Src: mustAddr("100.64.0.1"), Dst: mustAddr("8.8.8.8"), Proto: ipprotoICMP, Len: 28, ICMPType: 8, ICMPID: 77}, nil},
		{"icmp6 echo reply", pkt{src: "2001:db8::1", dst: "fd7a::1", proto: ipprotoICMPv6, icmpType: 129, id: 9}.build(),
			Packet{Src: mustAddr("2001:db8::1"), Dst: mustAddr("fd7a::1"), Proto: ipprotoICMPv6, Len: 48, ICMPType: 129, ICMPID: 9}, nil},
		{"icmp4 unreachable", pkt{src: "192.0.2.1", dst: "100.64.0.1", proto: ipprotoICMP, icmpType: 3, icmpCode: 3, quote: quoted4}.build(),
			Packet{Src: mustAddr("192.0.2.1"), Dst: mustAddr("100.64.0.1"), Proto: ipprotoICMP, Len: 56, ICMPType: 3, ICMPCode: 3,
				Quoted: Quoted{Src: mustAddr("100.64.0.1"), Dst: mustAddr("10.0.0.1"), Proto: ipprotoUDP, SrcPort: 1000, DstPort: 53}, HasQuoted: true}, nil},
		{"icmp4 error quoting only a header and 8 bytes", pkt{src: "192.0.2.1", dst: "100.64.0.1", proto: ipprotoICMP, icmpType: 11,
			quote: pkt{src: "100.64.0.1", dst: "10.0.0.1", proto: ipprotoTCP, sport: 7, dport: 8, payload: 100}.build()[:28]}.build(),
			Packet{Src: mustAddr("192.0.2.1"), Dst: mustAddr("100.64.0.1"), Proto: ipprotoICMP, Len: 56, ICMPType: 11,
				Quoted: Quoted{Src: mustAddr("100.64.0.1"), Dst: mustAddr("10.0.0.1"), Proto: ipprotoTCP, SrcPort: 7, DstPort: 8}, HasQuoted: true}, nil},
		{"icmp4 error quoting too little", pkt{src: "192.0.2.1", dst: "100.64.0.1", proto: ipprotoICMP, icmpType: 3, quote: quoted4[:22]}.build(),
			Packet{Src: mustAddr("192.0.2.1"), Dst: mustAddr("100.64.0.1"), Proto: ipprotoICMP, Len: 50, ICMPType: 3}, nil},
		{"icmp6 too big quoting an echo", pkt{src: "2001:db8::1", dst: "fd7a::1", proto: ipprotoICMPv6, icmpType: 2,
			quote: pkt{src: "fd7a::1", dst: "2001:db8::2", proto: ipprotoICMPv6, icmpType: 128, id: 5}.build()}.build(),
			Packet{Src: mustAddr("2001:db8::1"), Dst: mustAddr("fd7a::1"), Proto: ipprotoICMPv6, Len: 96, ICMPType: 2,
				Quoted: Quoted{Src: mustAddr("fd7a::1"), Dst: mustAddr("2001:db8::2"), Proto: ipprotoICMPv6, SrcPort: 5, DstPort: 5, ICMPType: 128}, HasQuoted: true}, nil},
		{"first fragment v4", pkt{src: "1.1.1.1", dst: "2.2.2.2", proto: ipprotoUDP, sport: 1, dport: 2, more: true, fragID: 99, payload: 100}.build(),
			Packet{Src: mustAddr("1.1.1.1"), Dst: mustAddr("2.2.2.2"), Proto: ipprotoUDP, Len: 128, Frag: FirstFragment, FragID: 99, SrcPort: 1, DstPort: 2}, nil},
		{"later fragment v4", pkt{src: "1.1.1.1", dst: "2.2.2.2", proto: ipprotoUDP, fragOff: 16, fragID: 99, payload: 100}.build(),
			Packet{Src: mustAddr("1.1.1.1"), Dst: mustAddr("2.2.2.2"), Proto: ipprotoUDP, Len: 120, Frag: LaterFragment, FragID: 99}, nil},
		{"first fragment v6", pkt{src: "fd7a::1", dst: "fd7a::2", proto: ipprotoTCP, sport: 1, dport: 2, flags: TCPAck, more: true, fragID: 1 << 30}.build(),
			Packet{Src: mustAddr("fd7a::1"), Dst: mustAddr("fd7a::2"), Proto: ipprotoTCP, Len: 68, Frag: FirstFragment, FragID: 1 << 30, SrcPort: 1, DstPort: 2, TCPFlags: TCPAck}, nil},
		{"later fragment v6", pkt{src: "fd7a::1", dst: "fd7a::2", proto: ipprotoTCP, fragOff: 100, fragID: 7, payload: 16, ext: []uint8{0}}.build(),
			Packet{Src: mustAddr("fd7a::1"), Dst: mustAddr("fd7a::2"), Proto: ipprotoTCP, Len: 72, Frag: LaterFragment, FragID: 7}, nil},
		{"atomic fragment v6", pkt{src: "fd7a::1", dst: "fd7a::2", proto: ipprotoUDP, sport: 3, dport: 4, fragHdr: true, fragID: 5}.build(),
			Packet{Src: mustAddr("fd7a::1"), Dst: mustAddr("fd7a::2"), Proto: ipprotoUDP, Len: 56, SrcPort: 3, DstPort: 4}, nil},
		{"other protocol", pkt{src: "1.1.1.1", dst: "2.2.2.2", proto: 47, payload: 4}.build(),
			Packet{Src: mustAddr("1.1.1.1"), Dst: mustAddr("2.2.2.2"), Proto: 47, Len: 24}, nil},
		{"empty", nil, Packet{}, ErrPacketTruncated},
		{"version 5", []byte{0x50, 0, 0, 0}, Packet{}, ErrPacketVersion},
		{"short v4", tcp4.build()[:19], Packet{}, ErrPacketTruncated},
		{"ihl too small", func() []byte { b := tcp4.build(); b[0] = 0x44; return b }(), Packet{}, ErrPacketHeader},
		{"total length beyond data", tcp4.build()[:39], Packet{}, ErrPacketTruncated},
		{"tcp header cut", func() []byte {
			b := tcp4.build()[:30]
			binary.BigEndian.PutUint16(b[2:], 30)
			return b
		}(), Packet{}, ErrPacketTruncated},
		{"tiny first fragment", func() []byte {
			b := pkt{src: "1.1.1.1", dst: "2.2.2.2", proto: ipprotoTCP, more: true}.build()[:28]
			binary.BigEndian.PutUint16(b[2:], 28)
			return b
		}(), Packet{}, ErrPacketFragment},
		{"tcp fragment at offset 8", pkt{src: "1.1.1.1", dst: "2.2.2.2", proto: ipprotoTCP, fragOff: 1, payload: 20}.build(), Packet{}, ErrPacketFragment},
		{"short v6", udp6.build()[:39], Packet{}, ErrPacketTruncated},
		{"v6 payload length beyond data", udp6.build()[:47], Packet{}, ErrPacketTruncated},
		{"too many ext headers", pkt{src: "fd7a::1", dst: "fd7a::2", proto: ipprotoUDP, sport: 1, dport: 2, ext: []uint8{0, 60, 60, 60, 60, 60, 60, 60, 60}}.build(), Packet{}, ErrPacketExtHeader},
		{"ext header cut", pkt{src: "fd7a::1", dst: "fd7a::2", proto: 59, ext: []uint8{60}}.build()[:44], Packet{}, ErrPacketTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := p.Parse(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Parse error = %v, want %v", err, tt.err)
			}
			if err == nil && !reflect.DeepEqual(p, tt.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", p, tt.want)
			}
		})
	}
}

func TestPacketParseAllocs(t *testing.T) {
	b := pkt{src: "fd7a::1", dst: "fd7a::2", proto: ipprotoICMPv6, icmpType: 1,
		quote: pkt{src: "fd7a::2", dst: "fd7a::1", proto: ipprotoTCP, sport: 1, dport: 2}.build(), ext: []uint8{0}}.build()
	var p Packet
	if n := testing.AllocsPerRun(100, func() { _ = p.Parse(b) }); n != 0 {
		t.Errorf("Parse allocates %v times", n)
	}
}
