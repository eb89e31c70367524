package netstack

import (
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Transmit segmentation: linkEndpoint advertises host GSO, so gVisor's TCP builds one packet
// per up to 64 KiB of payload instead of one per MSS, and WritePackets splits it here. What
// gVisor hands over (transport/tcp/connect.go buildTCPHdr, endpoint.go initHostGSO):
//   - IP and TCP headers of the whole segment: IPv4 total length or IPv6 payload length of
//     the whole, one IPv4 ID, the segment's first sequence number, all its flags;
//   - a TCP checksum field holding only the pseudo-header sum over the whole TCP length
//     (Linux's CHECKSUM_PARTIAL), whatever the link's TX checksum capability;
//   - GSOOptions.MSS: the sender's maximum payload per packet (the peer's MSS less room for
//     the largest TCP options), zero before the handshake completes. Segments no larger than
//     it are marked too and need their checksum finished all the same.

const (
	// outBatchMax is the most packets handed to linkEndpoint.out in one call: wireguard-go's
	// batch size (conn.IdealBatchSize).
	outBatchMax = 128
	// outArenaSize holds the copies of one batch: outBatchMax packets of up to 2 KiB (the
	// default MTU is 1,420), fewer when the MTU is larger. It must hold the largest packet.
	outArenaSize = outBatchMax * 2048
)

// outBatch collects the packets of one WritePackets call for out. Not safe for concurrent
// use; each call takes its own from linkEndpoint.outPool.
type outBatch struct {
	pkts  [][]byte // copies in arena, or gVisor's own bytes; valid until flush
	arena []byte   // backs the copies; len is the part in use
}

func newOutBatch() *outBatch {
	return &outBatch{
		pkts:  make([][]byte, 0, outBatchMax),
		arena: make([]byte, 0, outArenaSize),
	}
}

// flush hands what b holds to out and empties b.
func (b *outBatch) flush(out func([][]byte)) {
	if len(b.pkts) > 0 {
		out(b.pkts)
	}
	clear(b.pkts) // drop references to gVisor's buffers while pooled
	b.pkts = b.pkts[:0]
	b.arena = b.arena[:0]
}

// alloc appends a packet of n bytes (n ≤ outArenaSize) to b and returns it for the caller to
// fill, first handing the batch to out when it has no room.
func (b *outBatch) alloc(n int, out func([][]byte)) []byte {
	if len(b.pkts) == outBatchMax || cap(b.arena)-len(b.arena) < n {
		b.flush(out)
	}
	start := len(b.arena)
	b.arena = b.arena[:start+n]
	p := b.arena[start : start+n : start+n]
	b.pkts = append(b.pkts, p)
	return p
}

// add appends p, which the caller keeps valid until b is flushed.
func (b *outBatch) add(p []byte, out func([][]byte)) {
	if len(b.pkts) == outBatchMax {
		b.flush(out)
	}
	b.pkts = append(b.pkts, p)
}

// addPacket appends a packet gVisor finished (anything but a GSO TCP segment): its own bytes
// when they lie in one view, else a copy.
func (b *outBatch) addPacket(pkt *stack.PacketBuffer, out func([][]byte)) {
	if p := contiguous(pkt); p != nil {
		b.add(p, out)
		return
	}
	r := newViewReader(pkt, 0)
	r.read(b.alloc(pkt.Size(), out))
}

// addTCPSegments splits pkt, a TCP segment gVisor built for host GSO, into packets of at most
// mtu bytes and payloads of at most GSOOptions.MSS, and appends them. Each packet gets the IP
// and TCP headers of pkt with: the IPv4 total length, an ID incremented per packet and the
// header checksum, or the IPv6 payload length; the sequence number of its first byte; FIN
// and PSH only on the last packet, CWR only on the first; a complete TCP checksum. It
// returns false, adding nothing, when pkt's headers are not what gVisor builds.
func (b *outBatch) addTCPSegments(pkt *stack.PacketBuffer, mtu int, out func([][]byte)) bool {
	nh := pkt.NetworkHeader().Slice()
	th := pkt.TransportHeader().Slice()
	v4 := pkt.GSOOptions.Type == stack.GSOTCPv4
	var addrSum uint16 // of the source and destination addresses, for the pseudo-header
	switch {
	case v4 && len(nh) >= header.IPv4MinimumSize && header.IPVersion(nh) == header.IPv4Version &&
		int(header.IPv4(nh).HeaderLength()) == len(nh):
		ip := header.IPv4(nh)
		addrSum = checksum.Checksum(ip.DestinationAddressSlice(), checksum.Checksum(ip.SourceAddressSlice(), 0))
	case !v4 && len(nh) >= header.IPv6MinimumSize && header.IPVersion(nh) == header.IPv6Version:
		// nh includes any extension headers; none of them is a routing header (gVisor
		// sends none), so the pseudo-header's destination is the header's.
		ip := header.IPv6(nh)
		addrSum = checksum.Checksum(ip.DestinationAddressSlice(), checksum.Checksum(ip.SourceAddressSlice(), 0))
	default:
		return false
	}
	if len(th) < header.TCPMinimumSize || int(header.TCP(th).DataOffset()) != len(th) {
		return false
	}
	hdrLen := len(nh) + len(th)
	// The MSS comes from the peer, the MTU is ours: gVisor's TCP does not lower the one to
	// the other, and with GSO its IP layer no longer fragments, so honour both.
	mss := mtu - hdrLen
	if m := int(pkt.GSOOptions.MSS); m > 0 && m < mss {
		mss = m
	}
	if mss <= 0 {
		return false
	}
	addrSum = checksum.Combine(addrSum, uint16(header.TCPProtocolNumber))

	seq := header.TCP(th).SequenceNumber()
	flags := uint8(header.TCP(th).Flags())
	var id uint16
	if v4 {
		id = header.IPv4(nh).ID()
	}
	r := newViewReader(pkt, pkt.HeaderSize())
	total := pkt.Data().Size()
	for off := 0; ; off += mss {
		n := min(mss, total-off)
		first, last := off == 0, off+n == total
		p := b.alloc(hdrLen+n, out)
		copy(p, nh)
		copy(p[len(nh):], th)
		r.read(p[hdrLen:])

		if v4 {
			ip := header.IPv4(p)
			ip.SetTotalLength(uint16(len(p)))
			ip.SetID(id)
			id++
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		} else {
			header.IPv6(p).SetPayloadLength(uint16(len(p) - header.IPv6MinimumSize))
		}

		tcp := header.TCP(p[len(nh):])
		tcp.SetSequenceNumber(seq + uint32(off))
		f := flags
		if !first {
			f &^= uint8(header.TCPFlagCwr)
		}
		if !last {
			f &^= uint8(header.TCPFlagFin | header.TCPFlagPsh)
		}
		tcp.SetFlags(f)
		tcp.SetChecksum(0)
		xsum := checksum.Combine(addrSum, uint16(len(tcp)))
		tcp.SetChecksum(^checksum.Checksum(tcp, xsum))

		if last {
			return true
		}
	}
}

// viewReader reads a packet's bytes in order straight out of gVisor's views.
type viewReader struct {
	v   *buffer.View // nil at the end
	off int          // into v
}

// newViewReader returns a reader of pkt's bytes from offset skip (0: the first header byte).
func newViewReader(pkt *stack.PacketBuffer, skip int) viewReader {
	vl, off := pkt.AsViewList()
	r := viewReader{v: vl.Front()}
	r.skip(off + skip)
	return r
}

func (r *viewReader) skip(n int) {
	for r.v != nil {
		left := r.v.Size() - r.off
		if n < left {
			r.off += n
			return
		}
		n -= left
		r.v, r.off = r.v.Next(), 0
	}
}

// read fills dst and returns how many bytes it had (fewer only at the end).
func (r *viewReader) read(dst []byte) int {
	n := 0
	for n < len(dst) && r.v != nil {
		s := r.v.AsSlice()
		c := copy(dst[n:], s[r.off:])
		n += c
		r.off += c
		if r.off == len(s) {
			r.v, r.off = r.v.Next(), 0
		}
	}
	return n
}
