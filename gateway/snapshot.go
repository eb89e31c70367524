package gateway

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/backbone"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// peerEntry is what the packet path knows of one enabled peer. Immutable once published.
type peerEntry struct {
	tenant    *tenantState
	tenantID  int64
	id        int64 // the peer's in the store
	name      string
	publicKey store.Key
	ipv4      netip.Addr
	ipv6      netip.Addr
	// allowed are the prefixes the peer's device entry carries: its overlay addresses and,
	// for a site connector, its site's LAN prefixes.
	allowed []netip.Prefix
	// ctr counts the peer's packets; it outlives snapshots (see Node.counters).
	ctr *peerCounters
	// node is the other node the desired state places the peer at (plane.Desired.PeerNodes);
	// 0: this one, or none known. The packet path asks where instead.
	node backbone.NodeID
}

// where is the other node the peer is at, 0 when it is here or nowhere known: the node its
// packets came from last (this one: through its own device), which follows a client that
// moved at its first packet; else where the desired state places it, which follows the
// peer's handshakes through the controller, a report and a publication later. self is this
// node's backbone ID.
func (e *peerEntry) where(self backbone.NodeID) backbone.NodeID {
	switch at := backbone.NodeID(e.ctr.at.Load()); at {
	case 0:
		return e.node
	case self:
		return 0
	default:
		return at
	}
}

// seenAt records that the peer's packets came from node (this node's ID: through its own
// device). Nothing without a backbone (node 0).
func (e *peerEntry) seenAt(node backbone.NodeID) {
	if node != 0 && e.ctr.at.Load() != uint32(node) {
		e.ctr.at.Store(uint32(node))
	}
}

// peerCounters count what the packet path passes for one peer: from it (rx) and towards it
// (tx), inner IP packets and bytes; and the flows it opens, in the firewall's table.
type peerCounters struct {
	rxPackets, rxBytes, txPackets, txBytes atomic.Uint64
	flows                                  firewall.Peer
	// wireRx and wireTx are the WireGuard bytes the peer's earlier stints in a device
	// counted (a device's counters start at zero each time it takes the peer in); added
	// under the device's mu when the peer leaves it (Node.leftDevice).
	wireRx, wireTx atomic.Uint64
	tenantID       int64 // the peer's tenant
	// at is the backbone ID of the node the peer's packets came from last (peerEntry.where),
	// 0 when none came since the desired state placed the peer anew; placed is that
	// placement (plane.Desired.PeerNodes, 0: none), which a snapshot compares with its own.
	at, placed atomic.Uint32
	// tenant and name are the peer's as last applied, for Report; guarded by Node.ctrMu.
	tenant, name string
}

// route is one entry of a tenant's routing table. site is nil for the internet exit; for a
// site route it is the connector, or nil with siteName set while the connector is disabled.
type route struct {
	prefix   netip.Prefix
	siteName string
	site     *peerEntry
	// exits are the ordered exits of a route via "exit:x1,exit:x2" (the first Up one carries
	// it); nil otherwise. Empty but not nil when none of them is a node with a backbone.
	exits []backbone.NodeID
}

// siteSource maps a site LAN prefix to its connector: traffic from the LAN enters through it.
type siteSource struct {
	prefix    netip.Prefix
	connector *peerEntry
}

// tenantState is one tenant's routing domain (a VRF) in a snapshot.
type tenantState struct {
	id   int64
	name string
	// maxFlowsPerPeer and maxFlows bound the flows of one peer and of the tenant, through the
	// exit and in the firewall's table: the tenant's own, or the node's defaults.
	maxFlowsPerPeer, maxFlows int
	// tun is the tenant's device's packet path and dev the device; nil while the tenant has
	// no enabled peer.
	tun *tunDevice
	dev *tenantDevice
	// routes, longest prefix first.
	routes []route
	// sites, longest prefix first.
	sites []siteSource
}

// lookupRoute returns the longest route matching a, or nil. Tenants have few routes; a linear
// walk over the sorted table beats a trie at that size and allocates nothing.
func (ts *tenantState) lookupRoute(a netip.Addr) *route {
	for i := range ts.routes {
		if ts.routes[i].prefix.Contains(a) {
			return &ts.routes[i]
		}
	}
	return nil
}

// siteSource returns the connector whose site holds a, or nil.
func (ts *tenantState) siteSource(a netip.Addr) *peerEntry {
	for i := range ts.sites {
		if ts.sites[i].prefix.Contains(a) {
			return ts.sites[i].connector
		}
	}
	return nil
}

// snapshot is the packet path's view of desired state: built off the hot path, published with
// an atomic pointer swap, never modified afterwards.
type snapshot struct {
	// byAddr maps every overlay address of an enabled peer to the peer. Overlay addresses are
	// unique across tenants.
	byAddr map[netip.Addr]*peerEntry
	// byKey maps public keys of enabled peers to the same entries.
	byKey   map[store.Key]*peerEntry
	tenants map[int64]*tenantState
	// local holds the node's own overlay addresses.
	local [2]netip.Addr
	// overlay holds the overlay prefixes (v4, v6); an address inside them that is neither a peer
	// nor local goes nowhere.
	overlay [2]netip.Prefix
	// self is this node's backbone ID, 0 without a backbone.
	self backbone.NodeID
	// ov is the overlay; nodeBlocks are its blocks of the nodes' own addresses (v4, v6),
	// nodeAddr this node's own (plane.Overlay.NodeAddrs), addrID the ID they are of.
	ov         plane.Overlay
	nodeBlocks [2]netip.Prefix
	nodeAddr   [2]netip.Addr
	addrID     uint32
}

func (s *snapshot) isLocal(a netip.Addr) bool { return a == s.local[0] || a == s.local[1] }

// isNodeAddr reports whether a is in the block of the nodes' own addresses.
func (s *snapshot) isNodeAddr(a netip.Addr) bool {
	return s.nodeBlocks[0].Contains(a) || s.nodeBlocks[1].Contains(a)
}

func (s *snapshot) inOverlay(a netip.Addr) bool {
	return s.overlay[0].Contains(a) || s.overlay[1].Contains(a)
}

// desired is what a snapshot is built from: a plane.Desired's parts, the devices, and the
// time its peers' expiry is judged at.
type desired struct {
	tenants []plane.Tenant
	peers   []plane.Peer
	routes  []plane.Route
	tuns    map[int64]*tunDevice
	devs    map[int64]*tenantDevice
	// counters returns the peer's counters, the same across snapshots; nil: fresh ones.
	counters func(*plane.Peer) *peerCounters
	// now is the node's time of the apply: a peer expired by then counts as disabled.
	now time.Time
	// self is this node's backbone ID, 0 without a backbone; nodes and peerNodes are the
	// other nodes and where peers are (plane.Desired). addrID is the ID of the node's own
	// overlay addresses (plane.AddrID of Desired.Self); 0: none.
	self      backbone.NodeID
	addrID    uint32
	selfName  string
	nodes     []plane.Node
	peerNodes []plane.PeerNode
}

func newSnapshot(d desired, ov plane.Overlay) *snapshot {
	s := &snapshot{
		byAddr:  make(map[netip.Addr]*peerEntry, 2*len(d.peers)),
		byKey:   make(map[store.Key]*peerEntry, len(d.peers)),
		tenants: make(map[int64]*tenantState, len(d.tenants)),
		local:   [2]netip.Addr{ov.Gateway4, ov.Gateway6},
		overlay: [2]netip.Prefix{ov.V4, ov.V6},
		self:    d.self,
		ov:      ov,
		addrID:  d.addrID,
	}
	s.nodeBlocks[0], s.nodeBlocks[1] = ov.NodeBlocks()
	s.nodeAddr[0], s.nodeAddr[1] = ov.NodeAddrs(d.addrID)
	for _, t := range d.tenants {
		perPeer, total := t.FlowLimits()
		s.tenants[t.ID] = &tenantState{id: t.ID, name: t.Name, maxFlowsPerPeer: perPeer, maxFlows: total, tun: d.tuns[t.ID], dev: d.devs[t.ID]}
	}
	sites := map[int64]map[string]*peerEntry{}
	placed := map[int64]backbone.NodeID{}
	if d.self != 0 {
		for _, pn := range d.peerNodes {
			placed[pn.Peer] = backbone.NodeID(pn.Node)
		}
	}
	for i := range d.peers {
		p := &d.peers[i]
		ts := s.tenants[p.Tenant]
		if !p.Served(d.now) || ts == nil {
			continue
		}
		e := &peerEntry{
			tenant:    ts,
			tenantID:  p.Tenant,
			id:        p.ID,
			name:      p.Name,
			publicKey: p.PublicKey,
			ipv4:      p.IPv4,
			ipv6:      p.IPv6,
			allowed:   append([]netip.Prefix{netip.PrefixFrom(p.IPv4, 32), netip.PrefixFrom(p.IPv6, 128)}, p.SitePrefixes...),
		}
		if at := placed[p.ID]; at != d.self {
			e.node = at
		}
		if d.counters != nil {
			e.ctr = d.counters(p)
		} else {
			e.ctr = &peerCounters{tenantID: p.Tenant}
		}
		// Placed anew: where its packets came from before is older news.
		if at := uint32(placed[p.ID]); e.ctr.placed.Swap(at) != at {
			e.ctr.at.Store(0)
		}
		e.ctr.flows.SetName(ts.name, p.Name)
		s.byAddr[p.IPv4] = e
		s.byAddr[p.IPv6] = e
		s.byKey[p.PublicKey] = e
		if p.Site != "" {
			if sites[p.Tenant] == nil {
				sites[p.Tenant] = map[string]*peerEntry{}
			}
			sites[p.Tenant][p.Site] = e
			for _, pf := range p.SitePrefixes {
				ts.sites = append(ts.sites, siteSource{prefix: pf, connector: e})
			}
		}
	}
	for _, r := range d.routes {
		ts := s.tenants[r.Tenant]
		if ts == nil {
			continue
		}
		rt := route{prefix: r.Prefix}
		if name, ok := strings.CutPrefix(r.Via, store.ViaSitePrefix); ok {
			rt.siteName = name
			rt.site = sites[r.Tenant][name]
		} else if v, err := plane.ParseVia(r.Via); err == nil && len(v.Exits) > 0 {
			rt.exits = make([]backbone.NodeID, 0, len(v.Exits))
			for _, name := range v.Exits {
				if name == d.selfName && d.self != 0 {
					rt.exits = append(rt.exits, d.self) // this node's own exit
					continue
				}
				for _, nd := range d.nodes {
					if nd.Name == name && backbone.NodeID(nd.ID) != d.self {
						rt.exits = append(rt.exits, backbone.NodeID(nd.ID))
					}
				}
			}
		}
		ts.routes = append(ts.routes, rt)
	}
	for _, ts := range s.tenants {
		sortLongestFirst(ts.routes, func(r route) netip.Prefix { return r.prefix })
		sortLongestFirst(ts.sites, func(s siteSource) netip.Prefix { return s.prefix })
	}
	return s
}
