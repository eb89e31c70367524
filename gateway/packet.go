package gateway

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the packet path looks at.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// header is the part of an IP packet the fast path decides on, parsed once.
type header struct {
	src, dst netip.Addr
	proto    uint8
}

// parseHeader reads the addresses and protocol of an IPv4 or IPv6 packet. It reports false for
// anything too short or of another version; it does not allocate.
func parseHeader(pkt []byte, h *header) bool {
	if len(pkt) < 1 {
		return false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return false
		}
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || len(pkt) < ihl || int(binary.BigEndian.Uint16(pkt[2:4])) > len(pkt) {
			return false
		}
		h.proto = pkt[9]
		h.src = netip.AddrFrom4([4]byte(pkt[12:16]))
		h.dst = netip.AddrFrom4([4]byte(pkt[16:20]))
		return true
	case 6:
		if len(pkt) < 40 {
			return false
		}
		h.proto = pkt[6]
		h.src = netip.AddrFrom16([16]byte(pkt[8:24]))
		h.dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		return true
	}
	return false
}
