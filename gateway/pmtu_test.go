package gateway

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// synPacket builds an IPv4 or IPv6 TCP segment from src to dst with flags and the TCP
// options opts, and a valid checksum.
func synPacket(src, dst netip.Addr, flags byte, opts []byte, payload []byte) []byte {
	tcpLen := tcpHeaderMin + len(opts) + len(payload)
	var p []byte
	if src.Is4() {
		p = make([]byte, ipv4HeaderMin+tcpLen)
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		p[6] = 0x40 // DF
		p[8], p[9] = 64, protoTCP
		s, d := src.As4(), dst.As4()
		copy(p[12:], s[:])
		copy(p[16:], d[:])
		checksum.Put(p[10:12], ^checksum.Checksum(p[:ipv4HeaderMin], 0))
	} else {
		p = make([]byte, ipv6Header+tcpLen)
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(tcpLen))
		p[6], p[7] = protoTCP, 64
		s, d := src.As16(), dst.As16()
		copy(p[8:], s[:])
		copy(p[24:], d[:])
	}
	tcp := p[len(p)-tcpLen:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 443)
	tcp[12] = byte((tcpHeaderMin+len(opts))/4) << 4
	tcp[13] = flags
	copy(tcp[tcpHeaderMin:], opts)
	copy(tcp[tcpHeaderMin+len(opts):], payload)
	checksum.Put(tcp[16:18], ^l4Sum(p))
	return p
}

// l4Sum is the ones' complement sum of the packet's transport segment and pseudo-header:
// 0xffff when the segment's checksum is right.
func l4Sum(p []byte) uint16 {
	var pseudo []byte
	var seg []byte
	if p[0]>>4 == 4 {
		ihl := int(p[0]&0x0f) * 4
		seg = p[ihl:]
		pseudo = make([]byte, 12)
		copy(pseudo, p[12:20])
		pseudo[9] = p[9]
		binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	} else {
		seg = p[ipv6Header:]
		pseudo = make([]byte, 40)
		copy(pseudo, p[8:40])
		binary.BigEndian.PutUint32(pseudo[32:], uint32(len(seg)))
		pseudo[39] = p[6]
	}
	return checksum.Checksum(seg, checksum.Checksum(pseudo, 0))
}

func mssOpt(mss uint16) []byte { return []byte{tcpOptMSS, 4, byte(mss >> 8), byte(mss)} }

func TestClampMSS(t *testing.T) {
	c4, s4 := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("198.51.100.2")
	c6, s6 := netip.MustParseAddr("fd00::2"), netip.MustParseAddr("2001:db8:1::2")
	const syn, synack, ack = 0x02, 0x12, 0x10
	// The options of a Linux SYN: MSS, SACK permitted, timestamps, NOP, window scale.
	linux := func(mss uint16) []byte {
		return append(mssOpt(mss), 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7)
	}
	for _, tc := range []struct {
		name    string
		pkt     []byte
		mss     uint16
		want    uint16 // MSS after; 0: the packet is unchanged
		changed bool
	}{
		{"IPv4 SYN above the limit", synPacket(c4, s4, syn, linux(1380), nil), MSSFor(1396, false), 1356, true},
		{"IPv6 SYN above the limit", synPacket(c6, s6, syn, linux(1360), nil), MSSFor(1396, true), 1336, true},
		{"SYN-ACK too", synPacket(s4, c4, synack, mssOpt(1460), nil), 1356, 1356, true},
		{"MSS after NOPs", synPacket(c4, s4, syn, append([]byte{1, 1, 1, 1}, mssOpt(1460)...), nil), 1356, 1356, true},
		{"already below", synPacket(c4, s4, syn, linux(1200), nil), 1356, 1200, false},
		{"not a SYN", synPacket(c4, s4, ack, mssOpt(1460), []byte("data")), 1356, 1460, false},
		{"no MSS option", synPacket(c4, s4, syn, []byte{1, 1, 1, 1}, nil), 1356, 0, false},
		{"option list ends first", synPacket(c4, s4, syn, append([]byte{0, 0, 0, 0}, mssOpt(1460)...), nil), 1356, 1460, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := bytes.Clone(tc.pkt)
			if got := clampMSS(tc.pkt, tc.mss); got != tc.changed {
				t.Fatalf("clampMSS reported %v, want %v", got, tc.changed)
			}
			if !tc.changed && !bytes.Equal(before, tc.pkt) {
				t.Fatal("the packet changed although clampMSS said it did not")
			}
			if s := l4Sum(tc.pkt); s != 0xffff {
				t.Fatalf("TCP checksum wrong after the clamp (sum %#04x)", s)
			}
			if tc.want != 0 {
				l4 := ipv4HeaderMin
				if tc.pkt[0]>>4 == 6 {
					l4 = ipv6Header
				}
				opts := tc.pkt[l4+tcpHeaderMin:]
				i := bytes.IndexByte(opts, tcpOptMSS)
				if got := binary.BigEndian.Uint16(opts[i+2:]); got != tc.want {
					t.Fatalf("MSS %d, want %d", got, tc.want)
				}
			}
		})
	}
	// Malformed headers are left alone, never read past the end.
	for _, p := range [][]byte{nil, {0x45}, {0x60, 0, 0}, synPacket(c4, s4, syn, mssOpt(1460), nil)[:30]} {
		if clampMSS(p, 1000) {
			t.Fatalf("clampMSS changed a malformed packet % x", p)
		}
	}
}

func TestTooBig(t *testing.T) {
	gw4, gw6 := netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("fd00::1")
	c4, s4 := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("198.51.100.2")
	c6, s6 := netip.MustParseAddr("fd00::2"), netip.MustParseAddr("2001:db8:1::2")
	buf := make([]byte, icmpv6MaxTotal)

	big4 := synPacket(c4, s4, 0x10, nil, make([]byte, 1400)) // DF set
	out := tooBig(buf, big4, 1396, gw4)
	if out == nil {
		t.Fatal("no ICMP for a too-big IPv4 packet with DF")
	}
	if len(out) != icmpv4MaxTotal {
		t.Fatalf("ICMPv4 error of %d bytes, want %d (quote up to 576 in all)", len(out), icmpv4MaxTotal)
	}
	if out[9] != protoICMP || !bytes.Equal(out[12:16], gw4.AsSlice()) || !bytes.Equal(out[16:20], c4.AsSlice()) {
		t.Fatalf("ICMPv4 error has the wrong protocol or addresses: % x", out[:20])
	}
	if checksum.Checksum(out[:20], 0) != 0xffff {
		t.Fatal("IPv4 header checksum wrong")
	}
	icmp := out[20:]
	if icmp[0] != 3 || icmp[1] != 4 || binary.BigEndian.Uint16(icmp[6:]) != 1396 {
		t.Fatalf("ICMPv4 type %d code %d mtu %d, want 3 4 1396", icmp[0], icmp[1], binary.BigEndian.Uint16(icmp[6:]))
	}
	if checksum.Checksum(icmp, 0) != 0xffff {
		t.Fatal("ICMPv4 checksum wrong")
	}
	if !bytes.Equal(icmp[8:], big4[:len(icmp)-8]) {
		t.Fatal("the ICMPv4 error does not quote the start of the packet")
	}

	noDF := bytes.Clone(big4)
	noDF[6] = 0
	if tooBig(buf, noDF, 1396, gw4) != nil {
		t.Fatal("an ICMP error for a packet that may be fragmented")
	}
	icmpErr := bytes.Clone(out)
	if tooBig(buf, icmpErr, 500, gw4) != nil {
		t.Fatal("an ICMP error answered with another")
	}

	big6 := synPacket(c6, s6, 0x10, nil, make([]byte, 1400))
	out = tooBig(buf, big6, 1396, gw6)
	if out == nil || len(out) != icmpv6MaxTotal {
		t.Fatalf("ICMPv6 error of %d bytes, want %d", len(out), icmpv6MaxTotal)
	}
	if out[6] != protoICMPv6 || !bytes.Equal(out[8:24], gw6.AsSlice()) || !bytes.Equal(out[24:40], c6.AsSlice()) {
		t.Fatalf("ICMPv6 error has the wrong next header or addresses")
	}
	if out[40] != 2 || binary.BigEndian.Uint32(out[44:]) != 1396 {
		t.Fatalf("ICMPv6 type %d mtu %d, want 2 1396", out[40], binary.BigEndian.Uint32(out[44:]))
	}
	if l4Sum(out) != 0xffff {
		t.Fatal("ICMPv6 checksum wrong")
	}
	if tooBig(buf, big6, 1396, gw4) != nil || tooBig(buf, big4, 1396, gw6) != nil {
		t.Fatal("an ICMP error from an address of the other family")
	}
}

func FuzzPathMTU(f *testing.F) {
	f.Add(synPacket(netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("198.51.100.2"), 0x02, mssOpt(1460), nil), uint16(1356))
	f.Add(synPacket(netip.MustParseAddr("fd00::2"), netip.MustParseAddr("2001:db8::2"), 0x02, mssOpt(1440), nil), uint16(1336))
	buf := make([]byte, icmpv6MaxTotal)
	f.Fuzz(func(t *testing.T, pkt []byte, mss uint16) {
		valid := len(pkt) > 0 && (pkt[0]>>4 == 4 && len(pkt) >= int(pkt[0]&0x0f)*4 && pkt[0]&0x0f >= 5 ||
			pkt[0]>>4 == 6 && len(pkt) >= ipv6Header) && l4Sum(pkt) == 0xffff
		if clampMSS(pkt, mss) && valid && l4Sum(pkt) != 0xffff {
			t.Fatal("clampMSS broke a valid checksum")
		}
		tooBig(buf, pkt, 1396, netip.MustParseAddr("100.64.0.1"))
		tooBig(buf, pkt, 1396, netip.MustParseAddr("fd00::1"))
	})
}
