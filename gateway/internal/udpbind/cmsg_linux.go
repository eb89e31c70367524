package udpbind

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Control messages (cmsg(3)): a header (length, level, type; the length a C long on this
// platform) and data, each message padded to the alignment of a long.

const (
	cmsgAlign = unix.SizeofPtr // sizeof(long) on Linux

	sizeofPktinfo4 = 12 // struct in_pktinfo: ifindex, spec_dst, addr
	sizeofPktinfo6 = 20 // struct in6_pktinfo: addr, ifindex
	sizeofGSO      = 2  // UDP_SEGMENT: a u16
)

func cmsgAlignUp(n int) int { return (n + cmsgAlign - 1) &^ (cmsgAlign - 1) }

func cmsgSpace(data int) int { return cmsgAlignUp(unix.SizeofCmsghdr) + cmsgAlignUp(data) }

// Space for what the bind asks to receive (a PKTINFO of either family and UDP_GRO's int)
// and for what it sends (a PKTINFO and UDP_SEGMENT), with room to spare.
var (
	rxControlLen = cmsgSpace(sizeofPktinfo6) + cmsgSpace(4) + 64
	txControlLen = cmsgSpace(sizeofPktinfo6) + cmsgSpace(sizeofGSO)
)

// rxMeta is what a received datagram's control messages say.
type rxMeta struct {
	local   netip.Addr // the local address it arrived at (PKTINFO); zero when absent
	ifindex int32      // the interface it arrived on
	gso     int        // UDP_GRO: the size of each coalesced datagram but the last; 0: one datagram
}

// parseControl reads the control messages of one received datagram. It takes only what it
// understands and stops at the first malformed header; it never fails.
func parseControl(b []byte) (m rxMeta) {
	hdr := cmsgAlignUp(unix.SizeofCmsghdr)
	for len(b) >= unix.SizeofCmsghdr {
		var l int
		if unix.SizeofCmsghdr == 16 {
			l64 := binary.NativeEndian.Uint64(b)
			if l64 > uint64(len(b)) {
				return m
			}
			l = int(l64)
		} else {
			l = int(binary.NativeEndian.Uint32(b))
		}
		if l < unix.SizeofCmsghdr || l > len(b) {
			return m
		}
		level := int32(binary.NativeEndian.Uint32(b[unix.SizeofCmsghdr-8:]))
		typ := int32(binary.NativeEndian.Uint32(b[unix.SizeofCmsghdr-4:]))
		var data []byte
		if l >= hdr {
			data = b[hdr:l]
		}
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= sizeofPktinfo4:
			m.ifindex = int32(binary.NativeEndian.Uint32(data))
			m.local = netip.AddrFrom4([4]byte(data[4:8])) // ipi_spec_dst: the local address
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= sizeofPktinfo6:
			m.local = netip.AddrFrom16([16]byte(data[:16])).Unmap()
			m.ifindex = int32(binary.NativeEndian.Uint32(data[16:]))
		case level == unix.IPPROTO_UDP && typ == unix.UDP_GRO && len(data) >= 4:
			if g := int32(binary.NativeEndian.Uint32(data)); g > 0 {
				m.gso = int(g)
			}
		}
		next := cmsgAlignUp(l)
		if next >= len(b) {
			return m
		}
		b = b[next:]
	}
	return m
}

// putCmsg writes a control message header for data bytes at the start of b and returns the
// data part. b must hold cmsgSpace(data).
func putCmsg(b []byte, level, typ, data int) []byte {
	l := cmsgAlignUp(unix.SizeofCmsghdr) + data
	if unix.SizeofCmsghdr == 16 {
		binary.NativeEndian.PutUint64(b, uint64(l))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(l))
	}
	binary.NativeEndian.PutUint32(b[unix.SizeofCmsghdr-8:], uint32(level))
	binary.NativeEndian.PutUint32(b[unix.SizeofCmsghdr-4:], uint32(typ))
	d := b[cmsgAlignUp(unix.SizeofCmsghdr):l]
	clear(d)
	clear(b[l:cmsgSpace(data)])
	return d
}

// putControl writes the control messages for sending from src (if valid) on interface ifindex
// with segments of gso bytes (if gso > 0) into b, which holds txControlLen, and returns
// their length.
func putControl(b []byte, src netip.Addr, ifindex int32, gso int) int {
	n := 0
	switch {
	case src.Is4():
		d := putCmsg(b, unix.IPPROTO_IP, unix.IP_PKTINFO, sizeofPktinfo4)
		binary.NativeEndian.PutUint32(d, uint32(ifindex))
		a := src.As4()
		copy(d[4:8], a[:])
		n += cmsgSpace(sizeofPktinfo4)
	case src.Is6():
		d := putCmsg(b, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, sizeofPktinfo6)
		a := src.As16()
		copy(d, a[:])
		binary.NativeEndian.PutUint32(d[16:], uint32(ifindex))
		n += cmsgSpace(sizeofPktinfo6)
	}
	if gso > 0 {
		d := putCmsg(b[n:], unix.IPPROTO_UDP, unix.UDP_SEGMENT, sizeofGSO)
		binary.NativeEndian.PutUint16(d, uint16(gso))
		n += cmsgSpace(sizeofGSO)
	}
	return n
}
