package netstack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tsoOptions are the TCP options of an established gVisor connection: NOP NOP timestamps.
var tsoOptions = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}

// gsoSegment describes a TCP segment as gVisor's TCP builds it for a host-GSO link.
type gsoSegment struct {
	v6      bool
	mss     uint16 // GSOOptions.MSS
	payload int
	view    int // payload split into views of this size (0: one view)
	flags   header.TCPFlags
	seq     uint32
	id      uint16 // IPv4 ID
}

func (g gsoSegment) addrs() (src, dst netip.Addr) {
	if g.v6 {
		return publicV6, clientV6
	}
	return publicV4, clientV4
}

// payloadBytes is g's payload: a counter, so that misplaced bytes show.
func (g gsoSegment) payloadBytes() []byte {
	b := make([]byte, g.payload)
	for i := range b {
		b[i] = byte(i * 7 / 3)
	}
	return b
}

// build makes the PacketBuffer, the way transport/tcp (buildTCPHdr with host GSO) and
// network/ipv4|ipv6 (addIPHeader) do: headers of the whole segment, a TCP checksum field
// with the pseudo-header sum only, the payload in views of g.view bytes. The caller DecRefs.
func (g gsoSegment) build() *stack.PacketBuffer {
	payload := g.payloadBytes()
	var buf buffer.Buffer
	step := g.view
	if step == 0 {
		step = max(len(payload), 1)
	}
	for off := 0; off < len(payload); off += step {
		buf.Append(buffer.NewViewWithData(payload[off:min(off+step, len(payload))]))
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.IPv6MinimumSize + header.TCPHeaderMaximumSize,
		Payload:            buf,
	})
	src, dst := g.addrs()
	tcpLen := header.TCPMinimumSize + len(tsoOptions)
	tcp := header.TCP(pkt.TransportHeader().Push(tcpLen))
	tcp.Encode(&header.TCPFields{
		SrcPort: 443, DstPort: 50000, SeqNum: g.seq, AckNum: 77,
		DataOffset: uint8(tcpLen), Flags: g.flags, WindowSize: 5000,
	})
	copy(tcp[header.TCPMinimumSize:], tsoOptions)
	tcp.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpAddr(src), tcpAddr(dst), uint16(pkt.Size())))
	pkt.TransportProtocolNumber = header.TCPProtocolNumber

	gso := stack.GSO{NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: g.mss, MaxSize: gsoMaxSize}
	if g.v6 {
		ip := header.IPv6(pkt.NetworkHeader().Push(header.IPv6MinimumSize))
		ip.Encode(&header.IPv6Fields{
			PayloadLength: uint16(pkt.Size() - header.IPv6MinimumSize), TransportProtocol: header.TCPProtocolNumber,
			HopLimit: 64, SrcAddr: tcpAddr(src), DstAddr: tcpAddr(dst),
		})
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
		gso.Type, gso.L3HdrLen = stack.GSOTCPv6, header.IPv6MinimumSize
	} else {
		ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(pkt.Size()), ID: g.id, Flags: header.IPv4FlagDontFragment, TTL: 64,
			Protocol: uint8(header.TCPProtocolNumber), SrcAddr: tcpAddr(src), DstAddr: tcpAddr(dst),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
		gso.Type, gso.L3HdrLen = stack.GSOTCPv4, header.IPv4MinimumSize
	}
	pkt.GSOOptions = gso
	return pkt
}

// refChecksum is RFC 1071's sum, word by word, of the concatenation of bs: an independent
// reference for checksum.Checksum.
func refChecksum(bs ...[]byte) uint16 {
	var all []byte
	for _, b := range bs {
		all = append(all, b...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var sum uint32
	for i := 0; i < len(all); i += 2 {
		sum += uint32(all[i])<<8 | uint32(all[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// pseudoHeader is the TCP pseudo-header of RFC 9293 (IPv4) and RFC 8200 (IPv6).
func pseudoHeader(src, dst netip.Addr, tcpLen int) []byte {
	b := append(src.AsSlice(), dst.AsSlice()...)
	if src.Is4() {
		return append(b, 0, uint8(header.TCPProtocolNumber), byte(tcpLen>>8), byte(tcpLen))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(tcpLen))
	return append(b, 0, 0, 0, uint8(header.TCPProtocolNumber))
}

// capture records what a linkEndpoint hands to out: copies of the packets, and the size of
// each batch.
type capture struct {
	pkts    [][]byte
	batches []int
}

func (c *capture) out(pkts [][]byte) {
	c.batches = append(c.batches, len(pkts))
	for _, p := range pkts {
		c.pkts = append(c.pkts, append([]byte(nil), p...))
	}
}

// checkSegments checks that segs are g split into packets of at most mtu bytes with payloads
// of wantMSS (the last one shorter or equal).
func checkSegments(t *testing.T, g gsoSegment, mtu, wantMSS int, segs [][]byte) {
	t.Helper()
	want := g.payloadBytes()
	wantN := max((len(want)+wantMSS-1)/wantMSS, 1)
	if len(segs) != wantN {
		t.Fatalf("%d packets, want %d", len(segs), wantN)
	}
	src, dst := g.addrs()
	var got []byte
	for i, p := range segs {
		first, last := i == 0, i == len(segs)-1
		if len(p) > mtu {
			t.Errorf("packet %d: %d bytes, above the MTU %d", i, len(p), mtu)
		}
		var l3 int
		if g.v6 {
			ip := header.IPv6(p)
			l3 = header.IPv6MinimumSize
			if int(ip.PayloadLength()) != len(p)-l3 {
				t.Errorf("packet %d: IPv6 payload length %d, want %d", i, ip.PayloadLength(), len(p)-l3)
			}
			if ip.TransportProtocol() != header.TCPProtocolNumber || ip.HopLimit() != 64 ||
				ip.SourceAddress() != tcpAddr(src) || ip.DestinationAddress() != tcpAddr(dst) {
				t.Errorf("packet %d: IPv6 header changed: % x", i, p[:l3])
			}
		} else {
			ip := header.IPv4(p)
			l3 = int(ip.HeaderLength())
			if !ip.IsValid(len(p)) || int(ip.TotalLength()) != len(p) {
				t.Errorf("packet %d: IPv4 total length %d, want %d", i, ip.TotalLength(), len(p))
			}
			if !ip.IsChecksumValid() || refChecksum(p[:l3]) != 0xffff {
				t.Errorf("packet %d: bad IPv4 header checksum %#04x", i, ip.Checksum())
			}
			if wantID := g.id + uint16(i); ip.ID() != wantID {
				t.Errorf("packet %d: IPv4 ID %d, want %d", i, ip.ID(), wantID)
			}
			if ip.Flags() != header.IPv4FlagDontFragment || ip.TTL() != 64 || ip.Protocol() != uint8(header.TCPProtocolNumber) ||
				ip.SourceAddress() != tcpAddr(src) || ip.DestinationAddress() != tcpAddr(dst) {
				t.Errorf("packet %d: IPv4 header changed: % x", i, p[:l3])
			}
		}
		tcp := header.TCP(p[l3:])
		payload := tcp.Payload()
		if !last && len(payload) != wantMSS {
			t.Errorf("packet %d: payload %d bytes, want %d", i, len(payload), wantMSS)
		}
		if s := tcp.SequenceNumber(); s != g.seq+uint32(len(got)) {
			t.Errorf("packet %d: sequence number %d, want %d (contiguous)", i, s, g.seq+uint32(len(got)))
		}
		wantFlags := g.flags
		if !first {
			wantFlags &^= header.TCPFlagCwr
		}
		if !last {
			wantFlags &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if tcp.Flags() != wantFlags {
			t.Errorf("packet %d: flags %v, want %v", i, tcp.Flags(), wantFlags)
		}
		if tcp.SourcePort() != 443 || tcp.DestinationPort() != 50000 || tcp.AckNumber() != 77 ||
			tcp.WindowSize() != 5000 || !bytes.Equal(tcp.Options(), tsoOptions) {
			t.Errorf("packet %d: TCP header changed: % x", i, p[l3:l3+int(tcp.DataOffset())])
		}
		if !tcp.IsChecksumValid(tcpAddr(src), tcpAddr(dst), checksum.Checksum(payload, 0), uint16(len(payload))) {
			t.Errorf("packet %d: bad TCP checksum %#04x (gVisor's check)", i, tcp.Checksum())
		}
		if s := refChecksum(pseudoHeader(src, dst, len(tcp)), tcp); s != 0xffff {
			t.Errorf("packet %d: bad TCP checksum %#04x (reference sum %#04x)", i, tcp.Checksum(), s)
		}
		got = append(got, payload...)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("reassembled payload differs (%d bytes, want %d)", len(got), len(want))
	}
}

func TestWritePacketsSegmentsTCP(t *testing.T) {
	const mtu = 1420
	hdr4 := header.IPv4MinimumSize + header.TCPMinimumSize + len(tsoOptions)
	hdr6 := header.IPv6MinimumSize + header.TCPMinimumSize + len(tsoOptions)
	ack := header.TCPFlagAck
	for _, c := range []struct {
		name    string
		mtu     int
		g       gsoSegment
		wantMSS int
	}{
		{"v4 exact multiple of MSS", mtu, gsoSegment{mss: 1348, payload: 3 * 1348, flags: ack | header.TCPFlagPsh | header.TCPFlagFin, seq: 1000, id: 7}, 1348},
		{"v4 not a multiple", mtu, gsoSegment{mss: 1348, payload: 3*1348 + 101, flags: ack | header.TCPFlagPsh, seq: 1000, id: 7}, 1348},
		{"v4 shorter than MSS", mtu, gsoSegment{mss: 1348, payload: 700, flags: ack | header.TCPFlagPsh | header.TCPFlagFin, seq: 5}, 1348},
		{"v4 one byte", mtu, gsoSegment{mss: 1348, payload: 1, flags: ack | header.TCPFlagPsh}, 1348},
		{"v4 pure ACK", mtu, gsoSegment{mss: 1348, flags: ack, seq: 9}, 1348},
		{"v4 before the handshake completes (MSS 0)", mtu, gsoSegment{flags: ack}, mtu - hdr4},
		{"v4 FIN alone", mtu, gsoSegment{mss: 1348, flags: ack | header.TCPFlagFin}, 1348},
		{"v4 CWR on the first only", mtu, gsoSegment{mss: 1348, payload: 2*1348 + 1, flags: ack | header.TCPFlagCwr | header.TCPFlagEce | header.TCPFlagPsh}, 1348},
		{"v4 sequence number wraps", mtu, gsoSegment{mss: 1348, payload: 4 * 1348, flags: ack, seq: 0xffffffff - 2000}, 1348},
		{"v4 ID wraps", mtu, gsoSegment{mss: 1348, payload: 4 * 1348, flags: ack, id: 0xfffe}, 1348},
		{"v4 odd MSS, payload across views", mtu, gsoSegment{mss: 1001, payload: 5003, view: 1000, flags: ack | header.TCPFlagPsh}, 1001},
		{"v4 MSS above the MTU is capped", mtu, gsoSegment{mss: 8960, payload: 5000, view: 4096, flags: ack | header.TCPFlagPsh}, mtu - hdr4},
		{"v4 largest GSO segment", mtu, gsoSegment{mss: 1348, payload: gsoMaxSize - header.TCPTotalHeaderMaximumSize - 1, view: 4096, flags: ack | header.TCPFlagPsh}, 1348},
		{"v6 exact multiple of MSS", mtu, gsoSegment{v6: true, mss: 1328, payload: 4 * 1328, flags: ack | header.TCPFlagFin, seq: 77}, 1328},
		{"v6 not a multiple (odd)", mtu, gsoSegment{v6: true, mss: 1328, payload: 4*1328 + 1, flags: ack | header.TCPFlagPsh | header.TCPFlagFin}, 1328},
		{"v6 shorter than MSS", mtu, gsoSegment{v6: true, mss: 1328, payload: 1327, flags: ack | header.TCPFlagPsh}, 1328},
		{"v6 pure ACK", mtu, gsoSegment{v6: true, mss: 1328, flags: ack}, 1328},
		{"v6 MSS above the MTU is capped", 1280, gsoSegment{v6: true, mss: 1328, payload: 3000, flags: ack}, 1280 - hdr6},
		{"v6 largest GSO segment", mtu, gsoSegment{v6: true, mss: 1328, payload: gsoMaxSize - header.TCPTotalHeaderMaximumSize - 1, view: 1500, flags: ack | header.TCPFlagPsh | header.TCPFlagFin}, 1328},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cap capture
			l := newLinkEndpoint(uint32(c.mtu), cap.out, false)
			pkt := c.g.build()
			defer pkt.DecRef()
			var pkts stack.PacketBufferList
			pkts.PushBack(pkt)
			if n, err := l.WritePackets(pkts); n != 1 || err != nil {
				t.Fatalf("WritePackets = %d, %v", n, err)
			}
			if len(cap.batches) != 1 {
				t.Errorf("out called %d times (batches %v), want once", len(cap.batches), cap.batches)
			}
			checkSegments(t, c.g, c.mtu, c.wantMSS, cap.pkts)
		})
	}
}

// plainPacket is a packet gVisor finished (no GSO), headers and payload in separate views.
func plainPacket(payload int) *stack.PacketBuffer {
	body := make([]byte, payload)
	for i := range body {
		body[i] = byte(i)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.IPv4MinimumSize + header.UDPMinimumSize,
		Payload:            buffer.MakeWithData(body),
	})
	udp := header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize))
	udp.Encode(&header.UDPFields{SrcPort: 53, DstPort: 5353, Length: uint16(pkt.Size())})
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(pkt.Size()), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpAddr(publicV4), DstAddr: tcpAddr(clientV4),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	return pkt
}

func flatten(pkt *stack.PacketBuffer) []byte {
	var b []byte
	for _, s := range pkt.AsSlices() {
		b = append(b, s...)
	}
	return b
}

// TestWritePacketsBatches: one WritePackets call reaches out in batches of at most
// outBatchMax, in order, other packets unchanged among the segments.
func TestWritePacketsBatches(t *testing.T) {
	const mtu = 1420
	big := gsoSegment{mss: 1348, payload: gsoMaxSize - header.TCPTotalHeaderMaximumSize - 1, view: 4096, flags: header.TCPFlagAck}
	perBig := (big.payload + 1347) / 1348
	var pkts stack.PacketBufferList
	first, lastPkt := plainPacket(100), plainPacket(1000)
	pkts.PushBack(first)
	for range 3 {
		pkts.PushBack(big.build())
	}
	pkts.PushBack(lastPkt)
	defer pkts.DecRef()

	var cap capture
	l := newLinkEndpoint(mtu, cap.out, false)
	if n, err := l.WritePackets(pkts); n != pkts.Len() || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	total := 2 + 3*perBig
	if len(cap.pkts) != total {
		t.Fatalf("%d packets out, want %d", len(cap.pkts), total)
	}
	if want := []int{outBatchMax, total - outBatchMax}; len(cap.batches) != 2 || cap.batches[0] != want[0] || cap.batches[1] != want[1] {
		t.Errorf("batches %v, want %v", cap.batches, want)
	}
	if !bytes.Equal(cap.pkts[0], flatten(first)) || !bytes.Equal(cap.pkts[total-1], flatten(lastPkt)) {
		t.Errorf("the packets without GSO changed or moved")
	}
	for i := range 3 {
		checkSegments(t, big, mtu, 1348, cap.pkts[1+i*perBig:1+(i+1)*perBig])
	}
}

func TestWritePacketsNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	var pkts stack.PacketBufferList
	pkts.PushBack(gsoSegment{mss: 1348, payload: 60000, view: 4096, flags: header.TCPFlagAck}.build())
	pkts.PushBack(gsoSegment{v6: true, mss: 1328, flags: header.TCPFlagAck}.build())
	pkts.PushBack(plainPacket(1000))
	defer pkts.DecRef()
	var sent int
	l := newLinkEndpoint(1420, func(p [][]byte) { sent += len(p) }, false)
	if n := testing.AllocsPerRun(100, func() { l.WritePackets(pkts) }); n != 0 {
		t.Errorf("WritePackets allocates %v times per call", n)
	}
	if sent == 0 {
		t.Error("nothing sent")
	}
}

// TestTCPDownloadSegmented: through the exit, gVisor's TCP hands the link GSO segments (far
// fewer TCP segments than packets out), and every packet fits the MTU. The client stack
// verifies every checksum; TestTCPDownload checks the data.
func TestTCPDownloadSegmented(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			mtu := h.exit.cfg.MTU
			var tooBig atomic.Int64
			h.setTap(func(p []byte) {
				if len(p) > mtu {
					tooBig.Add(1)
				}
			})
			h.download(t, fam.tcp, ap(fam.public, 80), randomBytes(4<<20))
			if n := tooBig.Load(); n > 0 {
				t.Errorf("%d packets above the MTU %d", n, mtu)
			}
			segs := h.exit.stack.Stats().TCP.SegmentsSent.Value()
			t.Logf("%d TCP segments, %d packets out", segs, h.exit.Stats().PacketsOut)
			if out := h.exit.Stats().PacketsOut; out < 4*segs {
				t.Errorf("%d packets out for %d TCP segments sent: gVisor does not use GSO", out, segs)
			}
		})
	}
}

// BenchmarkWritePacketsGSO measures WritePackets splitting the largest GSO segment gVisor
// builds into 1,420-byte packets (copies and checksums included; out discards).
func BenchmarkWritePacketsGSO(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		b.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(b *testing.B) {
			g := gsoSegment{v6: v6, mss: 1328, payload: gsoMaxSize - header.TCPTotalHeaderMaximumSize - 1, view: 4096, flags: header.TCPFlagAck}
			var pkts stack.PacketBufferList
			pkts.PushBack(g.build())
			defer pkts.DecRef()
			sent := 0
			l := newLinkEndpoint(1420, func(p [][]byte) { sent += len(p) }, false)
			b.SetBytes(int64(g.payload))
			b.ReportAllocs()
			for b.Loop() {
				l.WritePackets(pkts)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent), "ns/packet")
		})
	}
}
