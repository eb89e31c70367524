package plane

import (
	"encoding/binary"
	"net/netip"
)

// Every node has an overlay address of its own, besides the anycast gateway addresses
// (Gateway4, Gateway6) that every node answers at: the address its own traffic into a
// tenant's packet path comes from (the resolver's queries to a split zone's server in a
// site), so that the answers find their way back to this node and not to whichever node
// owns the gateway address nearest the site. The addresses come from a block the store
// never gives to peers: the top /16 of the IPv4 overlay, 100.127.0.0/16, and the IPv6
// addresses that go with them (the overlay's /48, subnet 0, the IPv4 address in the low
// 32 bits, as peers' IPv6 addresses go with their IPv4 ones). Node ID n (Desired.Self;
// ControllerNode for the appliance, whose Self is 0) has 100.127.0.0 + n.

// NodeBlock4 is the IPv4 block of the nodes' own addresses.
var NodeBlock4 = netip.MustParsePrefix("100.127.0.0/16")

// MaxNodeAddrID is the highest node ID with an overlay address of its own: the block's
// last address (100.127.255.255) is nobody's. A node above it has none, and cannot send
// queries into sites (split DNS zones answer SERVFAIL there).
const MaxNodeAddrID uint32 = 1<<16 - 2

// NodeBlocks returns the blocks of the nodes' own addresses in this overlay; invalid
// prefixes when the overlay holds none (an IPv4 overlay without 100.127.0.0/16, an IPv6
// one longer than /96).
func (ov Overlay) NodeBlocks() (v4, v6 netip.Prefix) {
	if !ov.V4.IsValid() || !ov.V6.IsValid() || ov.V4.Bits() > NodeBlock4.Bits() || !ov.V4.Contains(NodeBlock4.Addr()) || ov.V6.Bits() > 96 {
		return netip.Prefix{}, netip.Prefix{}
	}
	b := ov.V6.Addr().As16()
	copy(b[12:], NodeBlock4.Addr().AsSlice())
	return NodeBlock4, netip.PrefixFrom(netip.AddrFrom16(b), 128-32+NodeBlock4.Bits())
}

// NodeAddrs returns the overlay addresses of node id; invalid ones when it has none (id 0,
// above MaxNodeAddrID, an overlay without the block).
func (ov Overlay) NodeAddrs(id uint32) (v4, v6 netip.Addr) {
	b4, b6 := ov.NodeBlocks()
	if id == 0 || id > MaxNodeAddrID || !b4.IsValid() {
		return netip.Addr{}, netip.Addr{}
	}
	a4 := b4.Addr().As4()
	binary.BigEndian.PutUint32(a4[:], binary.BigEndian.Uint32(a4[:])+id)
	a6 := b6.Addr().As16()
	copy(a6[12:], a4[:])
	return netip.AddrFrom4(a4), netip.AddrFrom16(a6)
}

// NodeOf returns the ID of the node whose overlay address a is; false when a is none's
// (outside the blocks, the block's first or last address).
func (ov Overlay) NodeOf(a netip.Addr) (uint32, bool) {
	b4, b6 := ov.NodeBlocks()
	var low uint32
	switch {
	case a.Is4() && b4.Contains(a):
		b := a.As4()
		low = binary.BigEndian.Uint32(b[:])
	case a.Is6() && b6.Contains(a):
		b := a.As16()
		low = binary.BigEndian.Uint32(b[12:])
	default:
		return 0, false
	}
	base := b4.Addr().As4()
	id := low - binary.BigEndian.Uint32(base[:])
	return id, id != 0 && id <= MaxNodeAddrID
}

// AddrID is the ID whose overlay address a node uses: Self, or ControllerNode for a node
// without a backbone (the appliance).
func AddrID(self uint32) uint32 {
	if self == 0 {
		return ControllerNode
	}
	return self
}
