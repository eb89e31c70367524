package resolver

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

const (
	protoUDP     = 17
	ipv4Header   = 20
	ipv6Header   = 40
	udpHeaderLen = 8
)

// UDPPayload returns the UDP payload of raw, an IPv4 or IPv6 packet the packet path parsed
// as UDP and no fragment; false when it has options the resolver does not take (IPv6
// extension headers) or its lengths disagree: such a query goes to the userspace stack.
func UDPPayload(raw []byte) ([]byte, bool) {
	if len(raw) < ipv4Header {
		return nil, false
	}
	var hl, total int
	switch raw[0] >> 4 {
	case 4:
		hl, total = int(raw[0]&0x0f)*4, int(binary.BigEndian.Uint16(raw[2:]))
		if raw[9] != protoUDP {
			return nil, false
		}
	case 6:
		if len(raw) < ipv6Header || raw[6] != protoUDP {
			return nil, false
		}
		hl, total = ipv6Header, ipv6Header+int(binary.BigEndian.Uint16(raw[4:]))
	default:
		return nil, false
	}
	if total > len(raw) || hl+udpHeaderLen > total {
		return nil, false
	}
	udp := raw[hl:total]
	if ul := int(binary.BigEndian.Uint16(udp[4:])); ul < udpHeaderLen || ul > len(udp) {
		return nil, false
	} else {
		udp = udp[:ul]
	}
	return udp[udpHeaderLen:], true
}

// AppendReply appends to dst the IP packet answering query (an IPv4 or IPv6 UDP packet
// UDPPayload took, or only its headers) with payload: addresses and ports swapped, TTL or hop
// limit 64, checksums filled in.
func AppendReply(dst, query, payload []byte) []byte {
	if query[0]>>4 == 6 {
		u := query[ipv6Header:]
		return appendIPUDP(dst, true, query[24:40], query[8:24], u[2:4], u[0:2], payload)
	}
	u := query[int(query[0]&0x0f)*4:]
	return appendIPUDP(dst, false, query[16:20], query[12:16], u[2:4], u[0:2], payload)
}

// appendUDP appends to dst the IP packet of one UDP datagram from from to to (both IPv4 or
// both IPv6) carrying payload: TTL or hop limit 64, DF, checksums filled in.
func appendUDP(dst []byte, from, to netip.AddrPort, payload []byte) []byte {
	var sport, dport [2]byte
	binary.BigEndian.PutUint16(sport[:], from.Port())
	binary.BigEndian.PutUint16(dport[:], to.Port())
	if to.Addr().Is6() {
		s, d := from.Addr().As16(), to.Addr().As16()
		return appendIPUDP(dst, true, s[:], d[:], sport[:], dport[:], payload)
	}
	s, d := from.Addr().As4(), to.Addr().As4()
	return appendIPUDP(dst, false, s[:], d[:], sport[:], dport[:], payload)
}

// appendIPUDP appends the IPv4 (v6: IPv6) packet of a UDP datagram from address src and
// port sport (big-endian) to dst's dstIP and dport carrying payload: TTL or hop limit 64, DF,
// checksums filled in.
func appendIPUDP(dst []byte, v6 bool, srcIP, dstIP, sport, dport, payload []byte) []byte {
	hl := ipv4Header
	if v6 {
		hl = ipv6Header
	}
	start := len(dst)
	dst = append(dst, make([]byte, hl+udpHeaderLen)...)
	dst = append(dst, payload...)
	p := dst[start:]
	udpLen := udpHeaderLen + len(payload)
	addrs := p[12:20]
	if v6 {
		p[0] = 6 << 4
		binary.BigEndian.PutUint16(p[4:], uint16(udpLen))
		p[6], p[7] = protoUDP, 64
		copy(p[8:24], srcIP)
		copy(p[24:40], dstIP)
		addrs = p[8:40]
	} else {
		p[0] = 4<<4 | 5
		binary.BigEndian.PutUint16(p[2:], uint16(hl+udpLen))
		p[6] = 0x40 // DF
		p[8], p[9] = 64, protoUDP
		copy(p[12:16], srcIP)
		copy(p[16:20], dstIP)
		checksum.Put(p[10:], ^checksum.Checksum(p[:ipv4Header], 0))
	}
	u := p[hl:]
	copy(u[0:2], sport)
	copy(u[2:4], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen))
	// The pseudo-header: addresses, protocol and UDP length.
	pseudo := checksum.Combine(checksum.Checksum(addrs, 0), protoUDP+uint16(udpLen))
	c := ^checksum.Checksum(u[:udpLen], pseudo)
	if c == 0 {
		c = 0xffff
	}
	checksum.Put(u[6:], c)
	return dst
}

// parseUDP returns the addresses, ports and payload of raw, an IPv4 or IPv6 UDP packet (as
// UDPPayload takes them); false for anything else.
func parseUDP(raw []byte) (from, to netip.AddrPort, payload []byte, ok bool) {
	payload, ok = UDPPayload(raw)
	if !ok {
		return netip.AddrPort{}, netip.AddrPort{}, nil, false
	}
	var src, dst netip.Addr
	hl := ipv6Header
	if raw[0]>>4 == 4 {
		hl = int(raw[0]&0x0f) * 4
		src, dst = netip.AddrFrom4([4]byte(raw[12:16])), netip.AddrFrom4([4]byte(raw[16:20]))
	} else {
		src, dst = netip.AddrFrom16([16]byte(raw[8:24])), netip.AddrFrom16([16]byte(raw[24:40]))
	}
	if hl < ipv4Header {
		return netip.AddrPort{}, netip.AddrPort{}, nil, false
	}
	u := raw[hl:]
	return netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:])), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:])), payload, true
}
