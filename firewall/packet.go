package firewall

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// IP protocol numbers the filter looks at.
const (
	ipprotoICMP   = 1
	ipprotoTCP    = 6
	ipprotoUDP    = 17
	ipprotoICMPv6 = 58
)

// TCP flags as they appear in Packet.TCPFlags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// FragKind says whether a packet is a fragment and which.
type FragKind uint8

const (
	// NotFragment: a whole packet (an IPv6 "atomic fragment", offset 0 and no more
	// fragments, counts as whole).
	NotFragment FragKind = iota
	// FirstFragment: offset 0 with more to come; it carries the transport header.
	FirstFragment
	// LaterFragment: offset > 0; no transport header, so no ports, flags or ICMP fields.
	LaterFragment
)

// maxExtHeaders bounds the IPv6 extension headers Parse walks through.
const maxExtHeaders = 8

// Errors of Packet.Parse. The packet path drops such packets as malformed.
var (
	ErrPacketTruncated = errors.New("packet truncated")
	ErrPacketVersion   = errors.New("not an IPv4 or IPv6 packet")
	ErrPacketHeader    = errors.New("invalid IP header")
	ErrPacketExtHeader = errors.New("too many or invalid IPv6 extension headers")
	ErrPacketFragment  = errors.New("fragment too small or overlapping the transport header")
)

// Quoted is the header of the packet an ICMP error quotes: the packet that could not be
// delivered. Ports (or the echo identifier in both SrcPort and DstPort for an ICMP echo)
// are set when the quote holds them.
type Quoted struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	ICMPType         uint8
}

// Packet is the parse of one IP packet's headers: everything the filter decides on. Parse
// fills it from raw bytes without allocating; reuse one Packet per goroutine or pool them.
type Packet struct {
	Src, Dst netip.Addr
	// Proto is the transport protocol: after IPv6 extension headers, the upper-layer one.
	Proto uint8
	// Len is the IP packet's length from its header (trailing bytes beyond it are ignored).
	Len int
	// Frag says whether this is a fragment; FragID is the fragment identification (IPv4's
	// 16 bits, IPv6's 32) when it is.
	Frag   FragKind
	FragID uint32
	// SrcPort and DstPort are set for TCP and UDP (zero in later fragments).
	SrcPort, DstPort uint16
	// TCPFlags holds the TCP flag bits (TCPSyn, ...).
	TCPFlags uint8
	// ICMPType and ICMPCode are set for ICMPv4 and ICMPv6; ICMPID is the identifier of echo
	// requests and replies.
	ICMPType, ICMPCode uint8
	ICMPID             uint16
	// Quoted is the header quoted by an ICMP error (destination unreachable, time exceeded,
	// parameter problem, packet too big); HasQuoted tells whether it was parsed.
	Quoted    Quoted
	HasQuoted bool
}

// Parse fills p from the IP packet b, which it does not keep. It returns an Err... value
// when b is not a well-formed IPv4 or IPv6 packet whose transport header (when it is the
// first or only fragment of TCP, UDP or ICMP) is complete. It never allocates.
func (p *Packet) Parse(b []byte) error {
	*p = Packet{}
	payload, err := p.parseIP(b, false)
	if err != nil {
		return err
	}
	if p.Frag == LaterFragment {
		return nil
	}
	return p.parseTransport(payload)
}

// parseIP reads the IP header (and IPv6 extension headers) and returns the transport
// payload. quoted relaxes the length checks for the truncated packet inside an ICMP error.
func (p *Packet) parseIP(b []byte, quoted bool) ([]byte, error) {
	if len(b) < 1 {
		return nil, ErrPacketTruncated
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return nil, ErrPacketTruncated
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl {
			return nil, ErrPacketHeader
		}
		if len(b) < ihl {
			return nil, ErrPacketTruncated
		}
		if total > len(b) {
			if !quoted {
				return nil, ErrPacketTruncated
			}
			total = len(b)
		}
		p.Len = total
		p.Proto = b[9]
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		fo := binary.BigEndian.Uint16(b[6:8])
		offset, more := fo&0x1fff, fo&0x2000 != 0
		switch {
		case offset > 0:
			// RFC 1858: a TCP fragment at offset 8 can only be meant to overwrite the header.
			if offset == 1 && p.Proto == ipprotoTCP {
				return nil, ErrPacketFragment
			}
			p.Frag = LaterFragment
		case more:
			p.Frag = FirstFragment
		}
		if p.Frag != NotFragment {
			p.FragID = uint32(binary.BigEndian.Uint16(b[4:6]))
		}
		return b[ihl:total], nil
	case 6:
		if len(b) < 40 {
			return nil, ErrPacketTruncated
		}
		total := 40 + int(binary.BigEndian.Uint16(b[4:6]))
		if total > len(b) {
			if !quoted {
				return nil, ErrPacketTruncated // includes jumbograms (payload length 0 is fine)
			}
			total = len(b)
		}
		p.Len = total
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		next := b[6]
		rest := b[40:total]
		for range maxExtHeaders + 1 {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(rest) < 8 {
					return nil, ErrPacketTruncated
				}
				n := (int(rest[1]) + 1) * 8
				if len(rest) < n {
					return nil, ErrPacketTruncated
				}
				next, rest = rest[0], rest[n:]
			case 51: // authentication header
				if len(rest) < 8 {
					return nil, ErrPacketTruncated
				}
				n := (int(rest[1]) + 2) * 4
				if len(rest) < n {
					return nil, ErrPacketTruncated
				}
				next, rest = rest[0], rest[n:]
			case 44: // fragment
				if len(rest) < 8 {
					return nil, ErrPacketTruncated
				}
				fo := binary.BigEndian.Uint16(rest[2:4])
				offset, more := fo>>3, fo&1 != 0
				id := binary.BigEndian.Uint32(rest[4:8])
				next, rest = rest[0], rest[8:]
				switch {
				case offset > 0:
					p.Proto, p.Frag, p.FragID = next, LaterFragment, id
					return nil, nil
				case more:
					p.Frag, p.FragID = FirstFragment, id
				}
			default:
				p.Proto = next
				return rest, nil
			}
		}
		return nil, ErrPacketExtHeader
	}
	return nil, ErrPacketVersion
}

func (p *Packet) parseTransport(t []byte) error {
	switch p.Proto {
	case ipprotoTCP:
		if len(t) < 20 {
			// A first fragment must carry the whole minimal TCP header (RFC 1858).
			if p.Frag == FirstFragment {
				return ErrPacketFragment
			}
			return ErrPacketTruncated
		}
		p.SrcPort = binary.BigEndian.Uint16(t[0:2])
		p.DstPort = binary.BigEndian.Uint16(t[2:4])
		p.TCPFlags = t[13] & 0x3f
	case ipprotoUDP:
		if len(t) < 8 {
			if p.Frag == FirstFragment {
				return ErrPacketFragment
			}
			return ErrPacketTruncated
		}
		p.SrcPort = binary.BigEndian.Uint16(t[0:2])
		p.DstPort = binary.BigEndian.Uint16(t[2:4])
	case ipprotoICMP, ipprotoICMPv6:
		if len(t) < 8 {
			if p.Frag == FirstFragment {
				return ErrPacketFragment
			}
			return ErrPacketTruncated
		}
		p.ICMPType, p.ICMPCode = t[0], t[1]
		switch {
		case isEcho(p.Proto, p.ICMPType):
			p.ICMPID = binary.BigEndian.Uint16(t[4:6])
		case isICMPError(p.Proto, p.ICMPType):
			p.HasQuoted = p.parseQuoted(t[8:])
		}
	}
	return nil
}

// parseQuoted reads the packet an ICMP error quotes. It reports false when the quote is too
// short to name a flow (an IP header plus 8 bytes, RFC 792), is itself an ICMP error, or
// does not match the family of the error.
func (p *Packet) parseQuoted(b []byte) bool {
	var in Packet
	t, err := in.parseIP(b, true)
	if err != nil || in.Frag == LaterFragment || in.Src.Is4() != p.Src.Is4() {
		return false
	}
	q := Quoted{Src: in.Src, Dst: in.Dst, Proto: in.Proto}
	switch in.Proto {
	case ipprotoTCP, ipprotoUDP:
		if len(t) < 4 {
			return false
		}
		q.SrcPort = binary.BigEndian.Uint16(t[0:2])
		q.DstPort = binary.BigEndian.Uint16(t[2:4])
	case ipprotoICMP, ipprotoICMPv6:
		if len(t) < 8 || !isEcho(in.Proto, t[0]) {
			return false
		}
		q.ICMPType = t[0]
		q.SrcPort = binary.BigEndian.Uint16(t[4:6])
		q.DstPort = q.SrcPort
	}
	p.Quoted = q
	return true
}

// ICMP types the filter treats specially.
const (
	icmp4EchoReply   = 0
	icmp4Unreachable = 3
	icmp4Echo        = 8
	icmp4TimeExceed  = 11
	icmp4ParamProb   = 12
	icmp6Unreachable = 1
	icmp6TooBig      = 2
	icmp6TimeExceed  = 3
	icmp6ParamProb   = 4
	icmp6Echo        = 128
	icmp6EchoReply   = 129
)

func isEcho(proto, typ uint8) bool {
	if proto == ipprotoICMP {
		return typ == icmp4Echo || typ == icmp4EchoReply
	}
	return typ == icmp6Echo || typ == icmp6EchoReply
}

func isEchoRequest(proto, typ uint8) bool {
	if proto == ipprotoICMP {
		return typ == icmp4Echo
	}
	return typ == icmp6Echo
}

func isICMPError(proto, typ uint8) bool {
	if proto == ipprotoICMP {
		return typ == icmp4Unreachable || typ == icmp4TimeExceed || typ == icmp4ParamProb
	}
	return typ == icmp6Unreachable || typ == icmp6TooBig || typ == icmp6TimeExceed || typ == icmp6ParamProb
}
