package gateway

import (
	"errors"
	"fmt"
	"math"
	"net/netip"

	"github.com/popgate/popgate/gateway/backbone"
	"github.com/popgate/popgate/gateway/resolver"
)

// The node's own overlay address (plane.Overlay.NodeAddrs) in the packet path. The resolver
// sends its queries to a tenant's split zone servers from it (sendSplit), as the tenant's
// traffic from the node itself: towards the tenant's sites and peers only, without the
// tenant's policy (which is for its peers' traffic, as the node's own services are not
// under it either). What comes back for it — from a site or peer at this node, or over
// the backbone from the node a site is attached at — goes to the resolver (toNodeAddr),
// and what comes for another node's address goes over the backbone to that node. A
// packet that is not for a node address costs nothing more: the check sits where the
// packet path had found an overlay address that is no peer's, which it used to drop.

// errNodeAddr: this node has no overlay address of its own.
var errNodeAddr = errors.New("this node has no overlay address of its own")

// sendSplit routes pkt, an IP packet from the node's own address that the resolver built, as
// tenant's traffic: to the tenant's peer it is addressed to, or to the site its longest
// route names, here or over the backbone at the node that peer or site is at. The error says
// why it went nowhere (the server is out of the tenant's reach now).
func (n *Node) sendSplit(tenant int64, pkt []byte) error {
	snap := n.snap.Load()
	ts := snap.tenants[tenant]
	if ts == nil {
		return fmt.Errorf("tenant %d is not served at this node", tenant)
	}
	if !snap.nodeAddr[0].IsValid() {
		return errNodeAddr
	}
	var dst netip.Addr
	switch {
	case len(pkt) >= ipv6Header && pkt[0]>>4 == 6:
		dst = netip.AddrFrom16([16]byte(pkt[24:40]))
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		dst = netip.AddrFrom4([4]byte(pkt[16:20]))
	default:
		return errors.New("not an IP packet")
	}
	to := snap.byAddr[dst]
	switch {
	case to != nil && to.tenantID != tenant, to == nil && snap.inOverlay(dst):
		return fmt.Errorf("%s is no peer of tenant %s", dst, ts.name)
	case to == nil:
		r := ts.lookupRoute(dst)
		switch {
		case r == nil:
			return fmt.Errorf("%s is in none of tenant %s's routes", dst, ts.name)
		case r.siteName == "":
			return fmt.Errorf("%s is routed to the internet or exits by tenant %s's route %s, not to a site", dst, ts.name, r.prefix)
		case r.site == nil:
			return fmt.Errorf("site %s of tenant %s has no enabled connector", r.siteName, ts.name)
		}
		to = r.site
	}
	if via := to.where(snap.self); via != 0 {
		dev := n.bb.dev.Load()
		if dev == nil || tenant <= 0 || tenant > math.MaxUint32 {
			return fmt.Errorf("%s is at node %d and this node has no backbone", to.name, via)
		}
		if err := dev.Send(via, uint32(tenant), [][]byte{pkt}); err != nil {
			return fmt.Errorf("over the backbone to node %d: %w", via, err)
		}
		return nil
	}
	if to.tenant.tun == nil {
		return fmt.Errorf("tenant %s has no device at this node", ts.name)
	}
	to.ctr.txPackets.Add(1)
	to.ctr.txBytes.Add(uint64(len(pkt)))
	to.tenant.tun.enqueue([][]byte{pkt})
	return nil
}

// toNodeAddr decides a packet of tenant for dst, an address in the nodes' block: this
// node's own goes to the resolver dns (true when it took it: the answer of a query in
// flight); another node's is returned as where to send it over the backbone (0: nowhere, it
// is dropped). udp says whether it is a UDP packet and no fragment, all the resolver takes.
func toNodeAddr(snap *snapshot, dns *resolver.Resolver, tenant int64, dst netip.Addr, raw []byte, udp bool) (taken bool, via backbone.NodeID) {
	id, ok := snap.ov.NodeOf(dst)
	switch {
	case !ok:
		return false, 0
	case id == snap.addrID:
		return udp && dns != nil && dns.Deliver(tenant, raw), 0
	case snap.self == 0:
		return false, 0 // no backbone to send it over
	}
	return false, backbone.NodeID(id)
}
