package gateway

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// Traffic that crosses the backbone has less room than a client's tunnel: a client config
// says MTU 1,420 (configs issued before the backbone existed too), the backbone carries
// inner packets of at most backbone.Device.MTU() (1,396 over an IPv6 underlay). Nothing is
// fragmented on the way: the ingress PoP lowers the MSS that TCP SYNs announce (clampMSS),
// so TCP never sends a segment that does not fit, and answers any other packet that does not
// fit with ICMP "fragmentation needed" / "packet too big" (tooBig), so UDP senders and TCP
// with path-MTU discovery learn the size. docs/architecture.md has the arithmetic.

const (
	ipv4HeaderMin = 20
	ipv6Header    = 40
	tcpHeaderMin  = 20
	protoTCP      = 6
	protoUDP      = 17
	protoICMP     = 1
	protoICMPv6   = 58
	tcpOptMSS     = 2
	tcpOptEnd     = 0
	tcpOptNOP     = 1
)

// MSSFor returns the TCP MSS that keeps a segment within mtu: the MTU less the IP and TCP
// headers (20 + 20 for IPv4, 40 + 20 for IPv6).
func MSSFor(mtu int, v6 bool) uint16 {
	if v6 {
		return uint16(mtu - ipv6Header - tcpHeaderMin)
	}
	return uint16(mtu - ipv4HeaderMin - tcpHeaderMin)
}

// clampMSS lowers the MSS option of the TCP SYN (or SYN-ACK) in the IP packet pkt to at most
// mss, updating the TCP checksum in place. It reports whether it changed the packet. Anything
// else — not TCP, not a SYN, a fragment, no MSS option, a malformed header — is left alone.
func clampMSS(pkt []byte, mss uint16) bool {
	if len(pkt) < 1 {
		return false
	}
	var l4 int
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < ipv4HeaderMin {
			return false
		}
		ihl := int(pkt[0]&0x0f) * 4
		// A later fragment has no TCP header; the first one does and is clamped.
		if pkt[9] != protoTCP || ihl < ipv4HeaderMin || binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
			return false
		}
		l4 = ihl
	case 6:
		// Extension headers before TCP are rare on SYNs; such packets keep their MSS.
		if len(pkt) < ipv6Header || pkt[6] != protoTCP {
			return false
		}
		l4 = ipv6Header
	default:
		return false
	}
	if len(pkt) < l4+tcpHeaderMin {
		return false
	}
	tcp := pkt[l4:]
	const flagSYN = 0x02
	if tcp[13]&flagSYN == 0 {
		return false
	}
	off := int(tcp[12]>>4) * 4
	if off < tcpHeaderMin || off > len(tcp) {
		return false
	}
	for i := tcpHeaderMin; i < off; {
		switch kind := tcp[i]; kind {
		case tcpOptEnd:
			return false
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= off {
			return false
		}
		n := int(tcp[i+1])
		if n < 2 || i+n > off {
			return false
		}
		if tcp[i] == tcpOptMSS && n == 4 {
			old := binary.BigEndian.Uint16(tcp[i+2:])
			if old <= mss {
				return false
			}
			binary.BigEndian.PutUint16(tcp[i+2:], mss)
			// RFC 1624: HC' = ~(~HC + ~m + m').
			sum := ^binary.BigEndian.Uint16(tcp[16:18])
			sum = checksum.Combine(sum, ^old)
			sum = checksum.Combine(sum, mss)
			binary.BigEndian.PutUint16(tcp[16:18], ^sum)
			return true
		}
		i += n
	}
	return false
}

// ICMP sizes: an ICMPv4 error quotes the IP header and at least 8 bytes of what follows
// (RFC 792), up to a 576-byte datagram in all (RFC 1812 4.3.2.3); an ICMPv6 error quotes as
// much as fits in the minimum IPv6 MTU, 1,280 (RFC 4443 2.4).
const (
	icmpHeader     = 8
	icmpv4MaxTotal = 576
	icmpv6MaxTotal = 1280
	icmpTTL        = 64
)

// tooBig writes into buf (at least icmpv6MaxTotal bytes) the ICMP error that tells the
// sender of pkt, a packet too big for a link of mtu bytes, to send smaller: "fragmentation
// needed" (type 3 code 4) for IPv4, "packet too big" (type 2) for IPv6, from src (the
// node's overlay address of the same family). It returns the packet, or nil when none is
// due: an IPv4 packet that allows fragmentation (DF clear: the backbone carries it, the
// caller fragments or drops it), an ICMP error (never answered with another), or a packet
// too short to quote.
func tooBig(buf, pkt []byte, mtu int, src netip.Addr) []byte {
	if len(pkt) < 1 {
		return nil
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < ipv4HeaderMin || !src.Is4() {
			return nil
		}
		ihl := int(pkt[0]&0x0f) * 4
		const flagDF = 0x40
		if ihl < ipv4HeaderMin || len(pkt) < ihl || pkt[6]&flagDF == 0 || isICMPError4(pkt, ihl) {
			return nil
		}
		quote := min(len(pkt), icmpv4MaxTotal-ipv4HeaderMin-icmpHeader)
		total := ipv4HeaderMin + icmpHeader + quote
		out := buf[:total]
		clear(out[:ipv4HeaderMin+icmpHeader])
		out[0] = 0x45
		binary.BigEndian.PutUint16(out[2:], uint16(total))
		out[8] = icmpTTL
		out[9] = protoICMP
		s := src.As4()
		copy(out[12:16], s[:])
		copy(out[16:20], pkt[12:16]) // to the sender
		checksum.Put(out[10:12], ^checksum.Checksum(out[:ipv4HeaderMin], 0))
		icmp := out[ipv4HeaderMin:]
		icmp[0], icmp[1] = 3, 4
		binary.BigEndian.PutUint16(icmp[6:8], uint16(mtu))
		copy(icmp[icmpHeader:], pkt[:quote])
		checksum.Put(icmp[2:4], ^checksum.Checksum(icmp, 0))
		return out
	case 6:
		if len(pkt) < ipv6Header || !src.Is6() || isICMPError6(pkt) {
			return nil
		}
		quote := min(len(pkt), icmpv6MaxTotal-ipv6Header-icmpHeader)
		total := ipv6Header + icmpHeader + quote
		out := buf[:total]
		clear(out[:ipv6Header+icmpHeader])
		out[0] = 0x60
		binary.BigEndian.PutUint16(out[4:], uint16(icmpHeader+quote))
		out[6] = protoICMPv6
		out[7] = icmpTTL
		s := src.As16()
		copy(out[8:24], s[:])
		copy(out[24:40], pkt[8:24]) // to the sender
		icmp := out[ipv6Header:]
		icmp[0] = 2
		binary.BigEndian.PutUint32(icmp[4:8], uint32(mtu))
		copy(icmp[icmpHeader:], pkt[:quote])
		// The ICMPv6 checksum covers a pseudo-header: addresses, length, next header.
		var pseudo [40]byte
		copy(pseudo[0:32], out[8:40])
		binary.BigEndian.PutUint32(pseudo[32:], uint32(len(icmp)))
		pseudo[39] = protoICMPv6
		checksum.Put(icmp[2:4], ^checksum.Checksum(icmp, checksum.Checksum(pseudo[:], 0)))
		return out
	}
	return nil
}

// isICMPError4 reports whether the IPv4 packet (header length ihl) is an ICMP error: not
// echo request or reply, which are the queries hosts send.
func isICMPError4(pkt []byte, ihl int) bool {
	if pkt[9] != protoICMP {
		return false
	}
	if len(pkt) <= ihl {
		return true
	}
	t := pkt[ihl]
	return t != 0 && t != 8 && t != 13 && t != 14
}

// isICMPError6 reports whether the IPv6 packet is an ICMPv6 error (types below 128).
func isICMPError6(pkt []byte) bool {
	if pkt[6] != protoICMPv6 {
		return false
	}
	return len(pkt) <= ipv6Header || pkt[ipv6Header] < 128
}
