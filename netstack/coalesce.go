package netstack

import (
	"bytes"
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Receive coalescing: consecutive TCP segments of one flow in a Write batch enter gVisor as
// one packet, built while they are copied in. It merges what gVisor's GRO merges (stack/gro:
// same addresses, ports, TTL or hop limit, TOS or traffic class and flow label; same ACK,
// header length and options; contiguous sequence numbers; segments of the first one's size
// but the last; no SYN, RST, URG or CWR; PSH or FIN only on the last; under 64 KiB), but only
// runs of adjacent packets, which is how one peer's batch brings a bulk transfer. Against
// handing every packet to gVisor's GRO it saves, per segment, a packet buffer, a pooled chunk
// and GRO's merge of views: the copy into gVisor is the one the packet got anyway.

// seg is what coalescing compares of one TCP segment.
type seg struct {
	ip      int // IP header length: 20 (IPv4 without options) or 40 (IPv6 without extensions)
	tcp     int // TCP header length
	payload int
	seq     uint32
	flags   uint8
}

// endFlags end a run at the segment that carries them (gVisor's GRO flushes on them).
const endFlags = uint8(header.TCPFlagUrg | header.TCPFlagPsh | header.TCPFlagRst | header.TCPFlagSyn | header.TCPFlagFin)

// maxRun bounds a coalesced packet's size, as gVisor's GRO does (groMaxPacketSize).
const maxRun = 1 << 16

// parseSeg reads the headers coalescing needs of p, an IP packet parsePacket accepted and
// trimmed to its length. ok is false for anything but TCP straight after a plain IP header
// (IPv4 without options or fragmentation, IPv6 without extension headers).
func parseSeg(p []byte, v6 bool) (s seg, ok bool) {
	if v6 {
		if len(p) < ipv6HeaderLen+header.TCPMinimumSize || p[6] != protoTCP {
			return s, false
		}
		s.ip = ipv6HeaderLen
	} else {
		if len(p) < ipv4HeaderLen+header.TCPMinimumSize || p[9] != protoTCP || p[0]&0x0f != 5 ||
			binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 {
			return s, false
		}
		s.ip = ipv4HeaderLen
	}
	t := p[s.ip:]
	s.tcp = int(t[12]>>4) * 4
	if s.tcp < header.TCPMinimumSize || s.ip+s.tcp > len(p) {
		return s, false
	}
	s.payload = len(p) - s.ip - s.tcp
	s.seq = binary.BigEndian.Uint32(t[4:8])
	s.flags = t[13]
	return s, true
}

// startsRun reports whether s may be followed by more of its flow: it has data and no flag
// that ends a run.
func (s *seg) startsRun() bool { return s.payload > 0 && s.flags&endFlags == 0 }

// follows reports whether segment s (bytes p) continues the run that began with first
// (bytes f) and so far ends with last, whose bytes are as long as first's.
func follows(f []byte, first, last *seg, p []byte, s *seg) bool {
	switch {
	case last.flags&endFlags != 0, last.payload != first.payload, // the run has ended
		s.payload == 0, s.payload > first.payload, // not a continuation of equal segments
		s.ip != first.ip, s.tcp != first.tcp,
		s.flags&uint8(header.TCPFlagCwr) != 0,
		(s.flags^first.flags)&^uint8(header.TCPFlagCwr|header.TCPFlagFin|header.TCPFlagPsh) != 0,
		s.seq != last.seq+uint32(last.payload):
		return false
	}
	if first.ip == ipv6HeaderLen {
		// Version, traffic class, flow label; next header and hop limit; the addresses.
		if !bytes.Equal(p[0:4], f[0:4]) || !bytes.Equal(p[6:40], f[6:40]) {
			return false
		}
	} else if p[1] != f[1] || p[8] != f[8] || !bytes.Equal(p[12:20], f[12:20]) { // TOS, TTL, addresses
		return false
	}
	// Ports, then the ACK number, then the options (timestamps included).
	t, ft := p[first.ip:], f[first.ip:]
	return bytes.Equal(t[0:4], ft[0:4]) && bytes.Equal(t[8:12], ft[8:12]) &&
		bytes.Equal(t[header.TCPMinimumSize:first.tcp], ft[header.TCPMinimumSize:first.tcp])
}

// coalesce builds one packet of run, segments of one flow that follow one another (see
// follows), and total, its length: the first segment's headers with the IP length of the
// whole, PSH and FIN of the last segment, then every segment's payload.
func coalesce(run [][]byte, first, last *seg, total int) *stack.PacketBuffer {
	f := run[0]
	hl := first.ip + first.tcp
	var hdr [ipv6HeaderLen + header.TCPHeaderMaximumSize]byte
	h := hdr[:hl]
	copy(h, f)
	if first.ip == ipv6HeaderLen {
		header.IPv6(h).SetPayloadLength(uint16(total - ipv6HeaderLen))
	} else {
		ip := header.IPv4(h)
		ip.SetTotalLength(uint16(total))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	tcp := header.TCP(h[first.ip:])
	tcp.SetFlags(first.flags | last.flags&uint8(header.TCPFlagFin|header.TCPFlagPsh))
	// The TCP checksum stays the first segment's: gVisor does not verify it (the packet is
	// marked validated, see linkEndpoint.Capabilities), as after its own GRO.

	v := buffer.NewView(total)
	v.Write(h)
	v.Write(f[hl:])
	for _, p := range run[1:] {
		v.Write(p[hl:])
	}
	return stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
}
