package backbone

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The encapsulation: an outer IPv4 header (20 bytes, no options) and a 4-byte label in front
// of the tenant's packet. See the package doc for why.
const (
	ipv4HeaderLen = 20
	labelLen      = 4
	// Overhead is what the backbone adds to each tenant packet inside WireGuard.
	Overhead = ipv4HeaderLen + labelLen

	// protocol is the outer header's protocol number: 253, reserved for experimentation
	// (RFC 3692). The header never leaves the in-memory TUN, so no middlebox sees it.
	protocol = 253
	ttl      = 64
)

// ProbeTenant is the label of the backbone's own probes; no tenant has it.
const ProbeTenant uint32 = 0

// Node addresses: the outer header's source and destination are the nodes' backbone
// addresses, 240.0.0.0/4 plus the node ID. The class E range is reserved and routed nowhere,
// and no tenant may use it (the tenants' overlay pool is 100.64.0.0/10, their sites any
// private range), so a backbone address in `wg show` or a capture is never mistaken for one
// of theirs. It never leaves the in-memory TUN.
const (
	addrBase = 0xF0000000
	addrMask = 0xF0000000
	// MaxNodeID is the largest node ID with a backbone address (255.255.255.254).
	MaxNodeID NodeID = 1<<28 - 2
)

// NodeID identifies a node on the backbone; its backbone address is derived from it. 0 is
// no node.
type NodeID uint32

// Addr is node n's backbone address.
func (n NodeID) Addr() netip.Addr {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], addrBase|uint32(n))
	return netip.AddrFrom4(a)
}

func (n NodeID) valid() bool { return n >= 1 && n <= MaxNodeID }

func (n NodeID) String() string { return fmt.Sprintf("node %d", uint32(n)) }

// nodeOf returns the node whose backbone address is the 4 bytes b, or 0.
func nodeOf(b []byte) NodeID {
	a := binary.BigEndian.Uint32(b)
	if a&addrMask != addrBase {
		return 0
	}
	if n := NodeID(a &^ addrMask); n.valid() {
		return n
	}
	return 0
}

// header is the precomputed outer header from one node to another: everything but the total
// length, and the checksum's sum over the fixed words.
type header struct {
	b   [Overhead]byte
	sum uint32
}

func makeHeader(from, to NodeID) header {
	var h header
	b := h.b[:]
	b[0] = 0x45 // version 4, 5 words
	binary.BigEndian.PutUint16(b[6:], 0x4000)
	b[8] = ttl
	b[9] = protocol
	binary.BigEndian.PutUint32(b[12:], addrBase|uint32(from))
	binary.BigEndian.PutUint32(b[16:], addrBase|uint32(to))
	for i := 0; i < ipv4HeaderLen; i += 2 {
		h.sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return h
}

// put writes the header with tenant's label for a payload of n bytes into dst, which must
// hold Overhead bytes. The checksum is filled in although nothing checks it (WireGuard's
// AEAD protects the header): a capture of the TUN should look right.
func (h *header) put(dst []byte, tenant uint32, n int) {
	_ = dst[Overhead-1]
	copy(dst, h.b[:])
	total := uint32(Overhead + n)
	binary.BigEndian.PutUint16(dst[2:], uint16(total))
	s := h.sum + total
	s = (s >> 16) + (s & 0xffff)
	s += s >> 16
	binary.BigEndian.PutUint16(dst[10:], ^uint16(s))
	binary.BigEndian.PutUint32(dst[ipv4HeaderLen:], tenant)
}

// Drop says why the receive path dropped a packet.
type Drop uint8

const (
	DropMalformed Drop = iota // not an outer header of ours: short, options, fragment, other protocol, a length that does not match
	DropNotPeer               // its outer source is not a current backbone peer (a removed node, or not a node address)
	DropNotForUs              // its outer destination is not this node's address
	DropBadProbe              // label 0 with a payload that is not a probe, or a reply that is late, repeated or to no probe of ours
	DropNoTenant              // a tenant label with an empty packet
	numDrops
)

func (d Drop) String() string {
	switch d {
	case DropMalformed:
		return "malformed"
	case DropNotPeer:
		return "not_peer"
	case DropNotForUs:
		return "not_for_us"
	case DropBadProbe:
		return "bad_probe"
	case DropNoTenant:
		return "empty"
	}
	return "unknown"
}

// decoded is what decode finds in a packet from the backbone.
type decoded struct {
	from, to NodeID
	tenant   uint32
	payload  []byte
}

// decode parses the outer header and the label of pkt as wireguard-go wrote it (already
// truncated to the outer total length). It checks the form only; whether from may send
// (is a peer) and to is this node are the caller's checks. The checksum is not verified:
// the header was authenticated by WireGuard.
func decode(pkt []byte) (decoded, bool) {
	if len(pkt) < Overhead || pkt[0] != 0x45 || pkt[9] != protocol ||
		int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) ||
		binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 { // MF or a fragment offset
		return decoded{}, false
	}
	d := decoded{
		from:    nodeOf(pkt[12:16]),
		to:      nodeOf(pkt[16:20]),
		tenant:  binary.BigEndian.Uint32(pkt[ipv4HeaderLen:]),
		payload: pkt[Overhead:],
	}
	if d.from == 0 || d.to == 0 {
		return decoded{}, false
	}
	return d, true
}

// Probes travel with label 0. Payload: kind (1 byte), 3 zero bytes, sequence (4 bytes), the
// sender's send time (8 bytes, nanoseconds on its own clock, echoed back untouched).
const (
	probeLen   = 16
	probeEcho  = 1
	probeReply = 2
)

type probeMsg struct {
	kind uint8
	seq  uint32
	sent int64
}

func (m probeMsg) put(dst []byte) {
	_ = dst[probeLen-1]
	dst[0] = m.kind
	dst[1], dst[2], dst[3] = 0, 0, 0
	binary.BigEndian.PutUint32(dst[4:], m.seq)
	binary.BigEndian.PutUint64(dst[8:], uint64(m.sent))
}

func decodeProbe(b []byte) (probeMsg, bool) {
	if len(b) != probeLen || (b[0] != probeEcho && b[0] != probeReply) || b[1]|b[2]|b[3] != 0 {
		return probeMsg{}, false
	}
	return probeMsg{
		kind: b[0],
		seq:  binary.BigEndian.Uint32(b[4:]),
		sent: int64(binary.BigEndian.Uint64(b[8:])),
	}, true
}
