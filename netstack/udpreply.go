package netstack

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// Reply packets of the UDP relay: a datagram read from a flow's host socket becomes an IP
// packet from the destination to the client, its headers written in place in the headroom
// before the payload, or IP fragments when it exceeds the MTU (the client reassembles).

const (
	// udpRoom is the headroom before each received payload: the largest IP and UDP headers.
	udpRoom = ipv6HeaderLen + udpHeaderLen
	// udpMaxPayload is the largest datagram a host socket delivers (IPv6: 65,535 − 8).
	udpMaxPayload = 0xffff - udpHeaderLen
	// udpSlotSize is the buffer of one received datagram: headroom, then the payload.
	udpSlotSize = udpRoom + udpMaxPayload

	fragHeaderLen = 8 // IPv6 fragment extension header
	protoFragment = 44
	// maxFragments is the most fragments of one datagram: the largest, at the smallest MTU
	// (1,280), carries at least 1,232 bytes a fragment.
	maxFragments = (udpMaxPayload + udpHeaderLen + 1231) / 1232
	// fragBufSize holds every fragment of one datagram, back to back.
	fragBufSize = udpHeaderLen + udpMaxPayload + maxFragments*(ipv6HeaderLen+fragHeaderLen)
)

// replyHeader is what a flow's reply packets share: built once per flow.
type replyHeader struct {
	v6 bool
	hl int // IP header length
	// tmpl is the IP header (lengths and IPv4 checksum zero), then the UDP header (ports).
	tmpl [udpRoom]byte
	// pseudo is the checksum of the pseudo-header's addresses and protocol.
	pseudo uint16
}

// newReplyHeader prepares the headers of datagrams from → to (destination → client).
func newReplyHeader(from, to netip.AddrPort) replyHeader {
	h := replyHeader{v6: from.Addr().Is6(), hl: ipv4HeaderLen}
	var sum uint16
	if h.v6 {
		h.hl = ipv6HeaderLen
		s, d := from.Addr().As16(), to.Addr().As16()
		sum = checksum.Checksum(d[:], checksum.Checksum(s[:], 0))
	} else {
		s, d := from.Addr().As4(), to.Addr().As4()
		sum = checksum.Checksum(d[:], checksum.Checksum(s[:], 0))
	}
	h.pseudo = checksum.Combine(sum, protoUDP)
	putIPHeader(h.tmpl[:], from.Addr(), to.Addr(), protoUDP, 0)
	if !h.v6 {
		h.tmpl[10], h.tmpl[11] = 0, 0 // computed per packet
	}
	binary.BigEndian.PutUint16(h.tmpl[h.hl:], from.Port())
	binary.BigEndian.PutUint16(h.tmpl[h.hl+2:], to.Port())
	return h
}

// maxPayload is the largest datagram one IP packet of this family carries.
func (h *replyHeader) maxPayload() int { return 0xffff - udpHeaderLen - (ipv6HeaderLen - h.hl) }

// appendReply turns the n-byte payload at slot[udpRoom:] (n ≤ maxPayload) into packets
// for the client and appends them to pkts: one, built in place in slot, when it fits mtu;
// else fragments, written into frag (fragBufSize bytes). id identifies the fragments.
func (h *replyHeader) appendReply(pkts [][]byte, slot []byte, n, mtu int, frag []byte, id uint32) [][]byte {
	d := slot[udpRoom-udpHeaderLen : udpRoom+n]
	h.putUDP(d)
	if h.hl+len(d) <= mtu {
		pkt := slot[udpRoom-udpHeaderLen-h.hl : udpRoom+n]
		h.putIP(pkt, len(d), 0, 0)
		return append(pkts, pkt)
	}
	return h.fragment(pkts, d, mtu, frag, id)
}

// fits reports whether a datagram of n bytes goes out unfragmented.
func (h *replyHeader) fits(n, mtu int) bool { return h.hl+udpHeaderLen+n <= mtu }

// putUDP writes the UDP header of datagram d (header and payload) with its checksum.
func (h *replyHeader) putUDP(d []byte) {
	copy(d[:udpHeaderLen], h.tmpl[h.hl:])
	binary.BigEndian.PutUint16(d[4:6], uint16(len(d)))
	sum := ^checksum.Checksum(d, checksum.Combine(h.pseudo, uint16(len(d))))
	if sum == 0 {
		sum = 0xffff // zero means "no checksum" (and is not allowed over IPv6)
	}
	binary.BigEndian.PutUint16(d[6:8], sum)
}

// putIP writes the IP header at b[:h.hl] for payloadLen bytes; for IPv4 with the given
// identification and flags/fragment offset field.
func (h *replyHeader) putIP(b []byte, payloadLen int, id uint16, frag uint16) {
	copy(b[:h.hl], h.tmpl[:h.hl])
	if h.v6 {
		binary.BigEndian.PutUint16(b[4:6], uint16(payloadLen))
		return
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(ipv4HeaderLen+payloadLen))
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], frag)
	binary.BigEndian.PutUint16(b[10:12], ^checksum.Checksum(b[:ipv4HeaderLen], 0))
}

// fragment splits datagram d into fragments of at most mtu bytes written into buf.
func (h *replyHeader) fragment(pkts [][]byte, d []byte, mtu int, buf []byte, id uint32) [][]byte {
	const moreFragments = 1 // IPv6's M flag; IPv4's MF is 0x2000
	per := (mtu - h.hl) &^ 7
	if h.v6 {
		per = (mtu - h.hl - fragHeaderLen) &^ 7
	}
	for off := 0; off < len(d); off += per {
		chunk := d[off:min(off+per, len(d))]
		more := off+len(chunk) < len(d)
		var pkt []byte
		if h.v6 {
			pkt = buf[:h.hl+fragHeaderLen+len(chunk)]
			h.putIP(pkt, fragHeaderLen+len(chunk), 0, 0)
			pkt[6] = protoFragment
			fh := pkt[h.hl : h.hl+fragHeaderLen]
			fh[0], fh[1] = protoUDP, 0
			field := uint16(off) // the offset in 8-byte units, shifted left by 3
			if more {
				field |= moreFragments
			}
			binary.BigEndian.PutUint16(fh[2:4], field)
			binary.BigEndian.PutUint32(fh[4:8], id)
		} else {
			pkt = buf[:h.hl+len(chunk)]
			field := uint16(off / 8)
			if more {
				field |= 0x2000
			}
			h.putIP(pkt, len(chunk), uint16(id), field)
		}
		copy(pkt[len(pkt)-len(chunk):], chunk)
		pkts = append(pkts, pkt)
		buf = buf[len(pkt):]
	}
	return pkts
}
