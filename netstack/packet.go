package netstack

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers and ICMP types the classifier knows.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	icmpv4EchoReply   = 0
	icmpv4Unreachable = 3
	icmpv4Echo        = 8
	icmpv6Unreachable = 1
	icmpv6Echo        = 128
	icmpv6EchoReply   = 129

	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	icmpHeaderLen = 8
	udpHeaderLen  = 8

	// maxExtHeaders bounds the IPv6 extension headers walked before giving up.
	maxExtHeaders = 8
)

// pktInfo is what the classifier learns from one client packet. Parsed once, on the stack.
type pktInfo struct {
	v6       bool
	length   int // the IP packet's own length; bytes beyond it are link padding
	src, dst netip.Addr
	echo     bool // an unfragmented ICMP(v6) echo request whose header starts at l4
	// udp: an unfragmented UDP datagram right after a plain IP header (no IPv4 options, no
	// IPv6 extension headers), its header at l4, its length field checked against length.
	// Other UDP (fragments, options, extension headers) goes to gVisor, which reassembles.
	udp bool
	l4  int
}

// parsePacket validates the IP header of a client packet, rejects addresses that must
// never be dialled, and finds echo requests and the UDP datagrams of the direct relay. It
// never reads beyond len(p).
func parsePacket(p []byte, pi *pktInfo) DropReason {
	if len(p) < 1 {
		return DropMalformed
	}
	switch p[0] >> 4 {
	case 4:
		return parse4(p, pi)
	case 6:
		return parse6(p, pi)
	}
	return DropMalformed
}

func parse4(p []byte, pi *pktInfo) DropReason {
	if len(p) < ipv4HeaderLen {
		return DropMalformed
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < ipv4HeaderLen || total < ihl || total > len(p) {
		return DropMalformed
	}
	if r := martian4(p[12:16]); r != dropNone {
		return r
	}
	if r := martian4(p[16:20]); r != dropNone {
		return r
	}
	pi.v6 = false
	pi.length = total
	pi.src = netip.AddrFrom4([4]byte(p[12:16]))
	pi.dst = netip.AddrFrom4([4]byte(p[16:20]))
	pi.echo, pi.udp = false, false
	fragment := binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 // more fragments, or an offset
	switch {
	case p[9] == protoUDP && !fragment && ihl == ipv4HeaderLen:
		return parseUDP(p, ihl, total, pi)
	case p[9] != protoICMP:
		return dropNone
	case fragment:
		return DropICMPFragment
	}
	if total > ihl && p[ihl] == icmpv4Echo {
		if total < ihl+icmpHeaderLen {
			return DropMalformed
		}
		pi.echo = true
		pi.l4 = ihl
	}
	return dropNone
}

// parseUDP checks the header of an unfragmented UDP datagram at p[l4:total] and marks it
// for the direct relay.
func parseUDP(p []byte, l4, total int, pi *pktInfo) DropReason {
	if l4+udpHeaderLen > total {
		return DropMalformed
	}
	n := int(binary.BigEndian.Uint16(p[l4+4 : l4+6]))
	if n < udpHeaderLen || l4+n > total {
		return DropMalformed
	}
	pi.udp = true
	pi.l4 = l4
	return dropNone
}

// martian4 classifies an IPv4 address (source or destination) that must not pass.
func martian4(a []byte) DropReason {
	switch {
	case a[0] == 127:
		return DropLoopback
	case a[0] == 0, // "this network": connecting to 0.0.0.0 reaches the host itself
		a[0] >= 224,                // multicast, reserved, limited broadcast
		a[0] == 169 && a[1] == 254: // link-local, including cloud metadata services
		return DropMartian
	}
	return dropNone
}

func parse6(p []byte, pi *pktInfo) DropReason {
	if len(p) < ipv6HeaderLen {
		return DropMalformed
	}
	total := ipv6HeaderLen + int(binary.BigEndian.Uint16(p[4:6]))
	if total > len(p) {
		return DropMalformed
	}
	src := netip.AddrFrom16([16]byte(p[8:24]))
	dst := netip.AddrFrom16([16]byte(p[24:40]))
	if r := martian6(src); r != dropNone {
		return r
	}
	if r := martian6(dst); r != dropNone {
		return r
	}
	pi.v6 = true
	pi.length = total
	pi.src, pi.dst = src, dst
	pi.echo, pi.udp = false, false

	next, off := p[6], ipv6HeaderLen
	for range maxExtHeaders {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if off+8 > total {
				return DropMalformed
			}
			next = p[off]
			off += (int(p[off+1]) + 1) * 8
		case 44: // fragment
			if off+8 > total {
				return DropMalformed
			}
			if p[off] == protoICMPv6 {
				return DropICMPFragment
			}
			return dropNone
		case protoICMPv6:
			if off < total && p[off] == icmpv6Echo {
				if off+icmpHeaderLen > total {
					return DropMalformed
				}
				pi.echo = true
				pi.l4 = off
			}
			return dropNone
		case protoUDP:
			if off == ipv6HeaderLen {
				return parseUDP(p, off, total, pi)
			}
			return dropNone
		default:
			return dropNone
		}
	}
	return dropNone
}

// martian6 classifies an IPv6 address (source or destination) that must not pass.
func martian6(a netip.Addr) DropReason {
	if a.Is4In6() {
		// A dial to ::ffff:127.0.0.1 reaches the host's IPv4 loopback.
		if a.Unmap().IsLoopback() {
			return DropLoopback
		}
		return DropMartian
	}
	if a.IsLoopback() {
		return DropLoopback
	}
	b := a.As16()
	switch {
	case b[0] == 0xff, // multicast
		b[0] == 0xfe && b[1]&0xc0 == 0x80: // link-local
		return DropMartian
	}
	// ::/96: the unspecified address and the deprecated IPv4-compatible addresses.
	for _, x := range b[:12] {
		if x != 0 {
			return dropNone
		}
	}
	return DropMartian
}
