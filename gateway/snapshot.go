package gateway

import (
	"net/netip"

	"github.com/popgate/popgate/store"
)

// peerEntry is what the packet path knows of one peer. Immutable once published.
type peerEntry struct {
	tenantID  int64
	tenant    string
	name      string
	publicKey store.Key
	ipv4      netip.Addr
	ipv6      netip.Addr
}

// snapshot is the packet path's view of desired state: built off the hot path, published with
// an atomic pointer swap, never modified afterwards.
type snapshot struct {
	// byAddr maps every overlay address of an enabled peer to the peer.
	byAddr map[netip.Addr]*peerEntry
	// byKey maps public keys to the same entries.
	byKey map[store.Key]*peerEntry
	// local holds the node's own overlay addresses.
	local [2]netip.Addr
	// overlay holds the overlay prefixes (v4, v6); an address inside them that is neither a peer
	// nor local goes nowhere.
	overlay [2]netip.Prefix
}

func newSnapshot(peers []store.Peer, ov overlay) *snapshot {
	s := &snapshot{
		byAddr:  make(map[netip.Addr]*peerEntry, 2*len(peers)),
		byKey:   make(map[store.Key]*peerEntry, len(peers)),
		local:   [2]netip.Addr{ov.gw4, ov.gw6},
		overlay: [2]netip.Prefix{ov.v4, ov.v6},
	}
	for i := range peers {
		p := &peers[i]
		if !p.Enabled {
			continue
		}
		e := &peerEntry{
			tenantID:  p.TenantID,
			tenant:    p.TenantName,
			name:      p.Name,
			publicKey: p.PublicKey,
			ipv4:      p.IPv4,
			ipv6:      p.IPv6,
		}
		s.byAddr[p.IPv4] = e
		s.byAddr[p.IPv6] = e
		s.byKey[p.PublicKey] = e
	}
	return s
}

func (s *snapshot) isLocal(a netip.Addr) bool { return a == s.local[0] || a == s.local[1] }

func (s *snapshot) inOverlay(a netip.Addr) bool {
	return s.overlay[0].Contains(a) || s.overlay[1].Contains(a)
}

// overlay is the installation's overlay addressing.
type overlay struct {
	v4, v6   netip.Prefix
	gw4, gw6 netip.Addr
}
