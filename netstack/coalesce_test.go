package netstack

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// tcpSeg builds a TCP segment from clientV4:40000 (or clientV6) to publicV4:443 with a
// timestamp option: seq, payload bytes of value seq, flags (ACK added), ack 1000, TTL 64.
func tcpSeg(v6 bool, seq uint32, payload int, flags uint8) []byte {
	const thLen = header.TCPMinimumSize + 12 // NOP, NOP, timestamps
	ipLen := ipv4HeaderLen
	if v6 {
		ipLen = ipv6HeaderLen
	}
	p := make([]byte, ipLen+thLen+payload)
	if v6 {
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:6], uint16(thLen+payload))
		p[6], p[7] = protoTCP, 64
		s, d := clientV6.As16(), publicV6.As16()
		copy(p[8:24], s[:])
		copy(p[24:40], d[:])
	} else {
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
		p[6] = 0x40 // DF
		p[8], p[9] = 64, protoTCP
		s, d := clientV4.As4(), publicV4.As4()
		copy(p[12:16], s[:])
		copy(p[16:20], d[:])
	}
	t := p[ipLen:]
	binary.BigEndian.PutUint16(t[0:2], 40000)
	binary.BigEndian.PutUint16(t[2:4], 443)
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], 1000)
	t[12] = thLen / 4 << 4
	t[13] = flags | uint8(header.TCPFlagAck)
	binary.BigEndian.PutUint16(t[14:16], 512)
	copy(t[20:32], []byte{1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9})
	for i := range payload {
		t[thLen+i] = byte(seq)
	}
	return p
}

// runOf feeds pkts to the rules as inbound.deliver does and returns the lengths of the runs
// (1: a packet that entered alone).
func runOf(t *testing.T, v6 bool, pkts ...[]byte) []int {
	t.Helper()
	var runs []int
	var first, last seg
	var f []byte
	n, total := 0, 0
	for _, p := range pkts {
		s, ok := parseSeg(p, v6)
		if n > 0 && ok && total+s.payload < maxRun && follows(f, &first, &last, p, &s) {
			n++
			last = s
			total += s.payload
			continue
		}
		if n > 0 {
			runs = append(runs, n)
			n = 0
		}
		if ok && s.startsRun() {
			f, first, last, n, total = p, s, s, 1, len(p)
			continue
		}
		runs = append(runs, 1)
	}
	if n > 0 {
		runs = append(runs, n)
	}
	return runs
}

func TestCoalesceRules(t *testing.T) {
	const mss = 1000
	for _, v6 := range []bool{false, true} {
		seg := func(seq uint32, payload int, flags uint8) []byte { return tcpSeg(v6, seq, payload, flags) }
		for _, tc := range []struct {
			name string
			pkts [][]byte
			want []int
		}{
			{"contiguous equal segments", [][]byte{seg(0, mss, 0), seg(mss, mss, 0), seg(2*mss, mss, 0)}, []int{3}},
			{"a shorter one ends the run", [][]byte{seg(0, mss, 0), seg(mss, 10, 0), seg(mss+10, mss, 0)}, []int{2, 1}},
			{"a longer one does not follow", [][]byte{seg(0, 10, 0), seg(10, mss, 0)}, []int{1, 1}},
			{"PSH is last", [][]byte{seg(0, mss, 0), seg(mss, mss, uint8(header.TCPFlagPsh)), seg(2*mss, mss, 0)}, []int{2, 1}},
			{"FIN is last", [][]byte{seg(0, mss, 0), seg(mss, mss, uint8(header.TCPFlagFin)), seg(2*mss, mss, 0)}, []int{2, 1}},
			{"a gap in sequence", [][]byte{seg(0, mss, 0), seg(2*mss, mss, 0)}, []int{1, 1}},
			{"a retransmission", [][]byte{seg(0, mss, 0), seg(0, mss, 0)}, []int{1, 1}},
			{"pure ACKs stay alone", [][]byte{seg(0, 0, 0), seg(0, 0, 0)}, []int{1, 1}},
			{"SYN stays alone", [][]byte{seg(0, mss, uint8(header.TCPFlagSyn)), seg(mss, mss, 0)}, []int{1, 1}},
			{"RST does not follow", [][]byte{seg(0, mss, 0), seg(mss, mss, uint8(header.TCPFlagRst))}, []int{1, 1}},
			{"CWR does not follow", [][]byte{seg(0, mss, 0), seg(mss, mss, uint8(header.TCPFlagCwr))}, []int{1, 1}},
			{"under 64 KiB", func() [][]byte {
				var ps [][]byte
				for i := range 70 {
					ps = append(ps, seg(uint32(i*mss), mss, 0))
				}
				return ps
			}(), []int{65, 5}},
		} {
			if got := runOf(t, v6, tc.pkts...); !slices.Equal(got, tc.want) {
				t.Errorf("v6=%v %s: runs %v, want %v", v6, tc.name, got, tc.want)
			}
		}

		// Fields that must match the first segment's.
		for _, tc := range []struct {
			name string
			edit func(p []byte, ip int)
		}{
			{"another ACK", func(p []byte, ip int) { p[ip+11]++ }},
			{"another timestamp", func(p []byte, ip int) { p[ip+27]++ }},
			{"another source port", func(p []byte, ip int) { p[ip+1]++ }},
			{"another TTL", func(p []byte, ip int) {
				if ip == ipv6HeaderLen {
					p[7]--
				} else {
					p[8]--
				}
			}},
			{"another source address", func(p []byte, ip int) {
				if ip == ipv6HeaderLen {
					p[23]++
				} else {
					p[15]++
				}
			}},
			{"another TOS or traffic class", func(p []byte, ip int) { p[1] |= 0x04 }},
		} {
			b := seg(mss, mss, 0)
			ip := ipv4HeaderLen
			if v6 {
				ip = ipv6HeaderLen
			}
			tc.edit(b, ip)
			if got := runOf(t, v6, seg(0, mss, 0), b); !slices.Equal(got, []int{1, 1}) {
				t.Errorf("v6=%v %s: runs %v, want [1 1]", v6, tc.name, got)
			}
		}
	}
	// Not coalesced at all: IPv4 options, fragments, UDP.
	p := tcpSeg(false, 0, 100, 0)
	p[6] = 0x20 // more fragments
	if _, ok := parseSeg(p, false); ok {
		t.Error("a fragment parsed as a segment")
	}
	p = tcpSeg(false, 0, 100, 0)
	p[9] = protoUDP
	if _, ok := parseSeg(p, false); ok {
		t.Error("UDP parsed as a segment")
	}
	p = tcpSeg(false, 0, 100, 0)
	p[ipv4HeaderLen+12] = 15 << 4 // a TCP header longer than the packet
	if _, ok := parseSeg(p[:ipv4HeaderLen+40], false); ok {
		t.Error("a truncated TCP header parsed as a segment")
	}
}

// TestCoalescePacket: the packet of a run has the first segment's headers with the length of
// the whole, the last one's PSH, a valid IPv4 header checksum, and every payload in order.
func TestCoalescePacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		run := [][]byte{tcpSeg(v6, 0, 1000, 0), tcpSeg(v6, 1000, 1000, 0), tcpSeg(v6, 2000, 300, uint8(header.TCPFlagPsh))}
		first, _ := parseSeg(run[0], v6)
		last, _ := parseSeg(run[2], v6)
		total := len(run[0]) + 1000 + 300
		pkt := coalesce(run, &first, &last, total)
		got := pkt.ToView().AsSlice()
		pkt.DecRef()
		if len(got) != total {
			t.Fatalf("v6=%v: %d bytes, want %d", v6, len(got), total)
		}
		ip := first.ip
		if v6 {
			if n := header.IPv6(got).PayloadLength(); int(n) != total-ipv6HeaderLen {
				t.Errorf("IPv6 payload length %d, want %d", n, total-ipv6HeaderLen)
			}
		} else {
			h := header.IPv4(got)
			if int(h.TotalLength()) != total || !h.IsChecksumValid() {
				t.Errorf("IPv4 total length %d (want %d), checksum valid %v", h.TotalLength(), total, h.IsChecksumValid())
			}
		}
		tcp := header.TCP(got[ip:])
		if tcp.SequenceNumber() != 0 || tcp.Flags() != header.TCPFlagAck|header.TCPFlagPsh {
			t.Errorf("seq %d flags %v, want 0 and ACK|PSH", tcp.SequenceNumber(), tcp.Flags())
		}
		payload := got[ip+first.tcp:]
		want := append(append(bytes.Repeat([]byte{0}, 1000), bytes.Repeat([]byte{byte(1000 & 0xff)}, 1000)...), bytes.Repeat([]byte{byte(2000 & 0xff)}, 300)...)
		if !bytes.Equal(payload, want) {
			t.Errorf("v6=%v: payload differs", v6)
		}
	}
}
