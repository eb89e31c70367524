package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/backbone"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// The node's side of the backbone (gateway/backbone): which node a route's traffic crosses
// to, as the links' health allows, and what arrives from other nodes.
//
// Policy is enforced once, at the ingress PoP (tunDevice.Write): what it sends over the
// backbone is accepted by the exit without a second check, and replies an exit sends back
// meet the PoP's firewall towards the peer (deliverBackbone), whose connection tracking has
// the flow from the way out, or takes a mid-flow TCP packet the policy allows (a client
// that moved PoP keeps its flows through a shared exit).

// backboneTuning shortens the backbone's timers in tests; zero fields: its defaults.
type backboneTuning struct {
	probeEvery, probeTimeout, upAfter time.Duration
}

// bbHeadroom is the headroom in front of packets the backbone delivers into an exit (the
// kernel exit's TUN writes need some; wireguard-go's own reads keep 16 bytes).
const bbHeadroom = 16

// tooBigEvery paces the ICMP "too big" answers of one tenant device: 100 a second at most.
const tooBigEvery = 10 * time.Millisecond

// bbPath is what the packet path reads of the backbone: the device and the current view
// of the links. Both are swapped whole, never edited.
type bbPath struct {
	dev  atomic.Pointer[backbone.Device]
	view atomic.Pointer[bbView]

	// mu serialises rebuilds (Apply, link changes) and guards nodes and watch.
	mu     sync.Mutex
	nodes  []plane.Node // the other nodes, from the last desired state
	self   backbone.NodeID
	noExit bool
	region string
	watch  eventWatch // what the last view showed, for events (events.go)
}

// bbView is where traffic that crosses the backbone goes now: which links are Up, and the
// exit that "internet" means on a node without the exit role. Immutable once published.
type bbView struct {
	// up holds the nodes whose links are Up, and this node itself.
	up   map[backbone.NodeID]bool
	self backbone.NodeID
	// lossy holds the links that are not Up but answered some of their latest probes, with
	// the share they missed: where traffic goes when none of its candidates is Up.
	lossy map[backbone.NodeID]float64
	// internet is the exit ViaInternet uses on a node without the exit role: the first Up
	// exit of the node's region by ID, else the Up exit with the lowest smoothed RTT, else
	// (none Up) the least lossy exit; 0: none.
	internet backbone.NodeID
}

// maxFallbackLoss is the share of missed probes above which a link that is not Up carries
// no traffic even when no candidate is Up: it is dead, not lossy.
const maxFallbackLoss = 0.9

// firstUp returns the first node of ids whose link is Up. When none is, it returns the one
// whose link missed the fewest of its latest probes (lossy), or 0 when every link is
// dead: a link Down after three probes missed in a row may still carry most packets (heavy
// loss, a congested path), and dropping everything would be a sure loss where sending
// through the least bad link is not.
func (v *bbView) firstUp(ids []backbone.NodeID) backbone.NodeID {
	for _, id := range ids {
		if v.up[id] {
			return id
		}
	}
	return v.leastLossy(ids)
}

// leastLossy returns the node of ids whose link is in lossy with the lowest loss (the first
// of equals), or 0.
func (v *bbView) leastLossy(ids []backbone.NodeID) backbone.NodeID {
	var best backbone.NodeID
	for _, id := range ids {
		if l, ok := v.lossy[id]; ok && (best == 0 || l < v.lossy[best]) {
			best = id
		}
	}
	return best
}

// rebuild makes a new view from the nodes and the device's links, and publishes it.
func (p *bbPath) rebuild() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rebuildLocked()
}

// rebuildLocked is rebuild; it returns the view it published and the links it was made of.
// Must hold p.mu.
func (p *bbPath) rebuildLocked() (*bbView, []backbone.LinkState) {
	var links []backbone.LinkState
	if d := p.dev.Load(); d != nil {
		links = d.Links()
	}
	v := makeView(p.self, p.nodes, p.noExit, p.region, links)
	p.view.Store(v)
	return v, links
}

// makeView builds the view of node self (of region, without the exit role when noExit)
// from the other nodes (ordered by ID) and its links.
func makeView(self backbone.NodeID, nodes []plane.Node, noExit bool, region string, links []backbone.LinkState) *bbView {
	v := &bbView{up: map[backbone.NodeID]bool{}, lossy: map[backbone.NodeID]float64{}, self: self}
	if self != 0 {
		v.up[self] = true
	}
	rtt := map[backbone.NodeID]time.Duration{}
	for _, l := range links {
		switch {
		case l.State == backbone.StateUp:
			v.up[l.Node] = true
			rtt[l.Node] = l.SmoothedRTT
		case l.Probes > l.Lost && l.Loss() <= maxFallbackLoss:
			v.lossy[l.Node] = l.Loss()
		}
	}
	if !noExit {
		return v
	}
	var best backbone.NodeID
	var exits []backbone.NodeID // the region's first, then the others, by ID
	for _, n := range nodes {
		id := backbone.NodeID(n.ID)
		if !slices.Contains(n.Roles, plane.RoleExit) {
			continue
		}
		if n.Region == region {
			exits = append(exits, id)
		}
		if !v.up[id] {
			continue
		}
		if n.Region == region {
			best = id
			break
		}
		if best == 0 || rtt[id] < rtt[best] {
			best = id
		}
	}
	if best == 0 {
		for _, n := range nodes {
			if slices.Contains(n.Roles, plane.RoleExit) && n.Region != region {
				exits = append(exits, backbone.NodeID(n.ID))
			}
		}
		best = v.leastLossy(exits)
	}
	v.internet = best
	return v
}

// onLinkChange moves the routes that depend on a link whose state changed, and tells of the
// change and of the routes it moved (events.go). It runs on the backbone's prober goroutine.
func (n *Node) onLinkChange(s backbone.LinkState) {
	n.linkEvent(s)
	n.rebuildBB()
}

// applyBackboneLocked brings the backbone in line with d: started at the first Self, its
// peers the nodes of d (a node missing is dropped at once). Must hold n.mu.
func (n *Node) applyBackboneLocked(ctx context.Context, d *plane.Desired) error {
	if d.Self == 0 || n.cfg.BackboneKey.IsZero() {
		if d.Self != 0 && n.bbWarned.CompareAndSwap(false, true) {
			n.log.Warn("the desired state gives this node a backbone, but it has no backbone key: nothing crosses to other nodes")
		}
		return nil
	}
	dev := n.bb.dev.Load()
	if dev != nil && n.bb.self != backbone.NodeID(d.Self) {
		return fmt.Errorf("backbone: this node is %d on the backbone and the desired state says %d: restart the node", n.bb.self, d.Self)
	}
	if dev == nil {
		cfg := backbone.Config{
			Node:         backbone.NodeID(d.Self),
			PrivateKey:   n.cfg.BackboneKey,
			ListenPort:   n.cfg.BackbonePort,
			AnyPort:      n.cfg.AnyPort,
			ProbeEvery:   n.cfg.backboneTuning.probeEvery,
			ProbeTimeout: n.cfg.backboneTuning.probeTimeout,
			UpAfter:      n.cfg.backboneTuning.upAfter,
			Deliver:      n.deliverBackbone,
			OnLinkChange: n.onLinkChange,
		}
		var err error
		if dev, err = backbone.New(cfg, n.log.With("component", "backbone")); err != nil {
			return err
		}
		n.bb.mu.Lock()
		n.bb.self = cfg.Node
		n.bb.mu.Unlock()
		n.bb.dev.Store(dev)
		if err := dev.Start(n.bbCtx); err != nil {
			n.bb.dev.Store(nil)
			dev.Close()
			return fmt.Errorf("backbone: listen on UDP port %d: %w: choose another --backbone-port", n.cfg.BackbonePort, err)
		}
		n.cfg.BackbonePort = dev.Port()
		n.log.Info("the backbone is up", "node_id", d.Self, "port", dev.Port(), "public_key", n.cfg.BackboneKey.PublicKey().String())
	}
	var peers []backbone.Peer
	for _, nd := range d.Nodes {
		if nd.ID == d.Self || nd.BackboneKey.IsZero() || nd.BackboneEndpoint == "" {
			continue
		}
		ep, err := resolveEndpoint(ctx, nd.BackboneEndpoint)
		if err != nil {
			n.log.Warn("backbone: a node's endpoint does not resolve; no link to it", "node", nd.Name, "endpoint", nd.BackboneEndpoint, "err", err)
			continue
		}
		peers = append(peers, backbone.Peer{Node: backbone.NodeID(nd.ID), Name: nd.Name, PublicKey: nd.BackboneKey, Endpoint: ep})
	}
	if err := dev.SetPeers(peers); err != nil {
		return fmt.Errorf("backbone: %w", err)
	}
	n.bb.mu.Lock()
	n.bb.nodes = slices.Clone(d.Nodes)
	slices.SortFunc(n.bb.nodes, func(a, b plane.Node) int { return cmp.Compare(a.ID, b.ID) })
	n.bb.noExit, n.bb.region = n.cfg.NoExit, n.cfg.Region
	n.bb.rebuildLocked() // the routes note their exits with the new snapshot (applyLocked)
	n.bb.mu.Unlock()
	return nil
}

// resolveEndpoint turns "host:port" into an address, looking the host up when it is a name.
func resolveEndpoint(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("look up %s: %v", host, err)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(pn)), nil
}

// bbBatch is one Write's packets towards one node.
type bbBatch struct {
	node backbone.NodeID
	pkts [][]byte
}

// addBB appends raw to the batch towards node.
func (wb *writeBatches) addBB(node backbone.NodeID, raw []byte) {
	for i := range wb.bb {
		if wb.bb[i].node == node {
			wb.bb[i].pkts = append(wb.bb[i].pkts, raw)
			return
		}
	}
	for i := range wb.bb {
		if wb.bb[i].node == 0 {
			wb.bb[i].node = node
			wb.bb[i].pkts = append(wb.bb[i].pkts, raw)
			return
		}
	}
	wb.bb = append(wb.bb, bbBatch{node: node, pkts: append(make([][]byte, 0, 16), raw)})
}

// sendBB sends the batches towards other nodes and empties them.
func (t *tunDevice) sendBB(wb *writeBatches) {
	dev := t.bb.dev.Load()
	for i := range wb.bb {
		b := &wb.bb[i]
		if b.node == 0 {
			continue
		}
		bbSend(dev, b.node, t.tenantID, b.pkts, t.drops)
		clear(b.pkts)
		b.pkts = b.pkts[:0]
		b.node = 0
	}
}

// bbSend sends pkts of tenant to node over dev and counts what it did not send: all of them
// when the node is no peer (any more) or the device is closed or missing, those larger
// than its MTU (ErrTooBig: the others were sent).
func bbSend(dev *backbone.Device, node backbone.NodeID, tenant int64, pkts [][]byte, drops *[numDropReasons]atomic.Uint64) {
	if dev == nil || tenant <= 0 || tenant > math.MaxUint32 {
		drops[dropNoRoute].Add(uint64(len(pkts)))
		return
	}
	switch err := dev.Send(node, uint32(tenant), pkts); {
	case err == nil:
	case errors.Is(err, backbone.ErrTooBig):
		mtu := dev.MTU()
		for _, p := range pkts {
			if len(p) > mtu {
				drops[dropTooBig].Add(1)
			}
		}
	default:
		drops[dropNoRoute].Add(uint64(len(pkts)))
	}
}

// tooBig answers a packet too big for the backbone with ICMP, at most every tooBigEvery.
func (t *tunDevice) tooBig(wb *writeBatches, snap *snapshot, raw []byte, mtu int, now time.Duration) {
	next := t.tooBigNext.Load()
	if int64(now) < next || !t.tooBigNext.CompareAndSwap(next, int64(now+tooBigEvery)) {
		return
	}
	src := snap.local[0]
	if raw[0]>>4 == 6 {
		src = snap.local[1]
	}
	if out := tooBig(wb.icmp[:], raw, mtu, src); out != nil {
		wb.one[0] = out
		t.enqueue(wb.one[:])
		wb.one[0] = nil
	}
}

// bbDeliver is scratch for deliverBackbone.
type bbDeliver struct {
	pkt          firewall.Packet
	exit4, exit6 [][]byte // slices of bufs
	bufs         [][]byte // headroom + MTU long each, with room for a GRO super-packet
	used         int
	db           deliverBatch
}

// bbDeliverCap is the capacity of a deliver buffer: the kernel exit's TUN writes coalesce
// the TCP segments of one flow into the first one's buffer (wireguard-go's GRO), which
// needs room for up to 64 KiB. With MTU-sized buffers nothing coalesced and every segment
// cost a write(2): the two-hop bench measured the kernel exit's TCP upload at 0.56–0.63×
// stock, and 1.37× with this room (CPU per GB 20.6 → 13.7). A scratch holds one batch (at
// most 128 buffers, 8 MiB), one per concurrent backbone receive, reused from a pool.
const bbDeliverCap = bbHeadroom + 65535

var bbDelivers = sync.Pool{New: func() any { return new(bbDeliver) }}

// take returns a copy of raw with bbHeadroom in front, in the scratch's next buffer.
func (s *bbDeliver) take(raw []byte, mtu int) []byte {
	if s.used == len(s.bufs) {
		s.bufs = append(s.bufs, make([]byte, bbHeadroom+max(mtu, backbone.DefaultMTU), bbDeliverCap))
	}
	b := s.bufs[s.used]
	if len(raw) > len(b)-bbHeadroom {
		return nil
	}
	s.used++
	n := copy(b[bbHeadroom:], raw)
	return b[:bbHeadroom+n]
}

// deliverBackbone takes tenant packets from another node: for a peer or site connector of
// this node, towards its device once the firewall accepts it (replies of the flows this PoP
// sent, mid-flow TCP the policy allows, traffic of other peers); for anything else, into
// this node's exit when it has one, without a second policy check (the ingress PoP made
// it). A label of a tenant this node does not serve is dropped. The sending peer, or site,
// is taken to be at node from (peerEntry.seenAt).
func (n *Node) deliverBackbone(from backbone.NodeID, tenant uint32, pkts [][]byte) {
	snap := n.snap.Load()
	ts := snap.tenants[int64(tenant)]
	if ts == nil {
		n.drops[dropBackboneTenant].Add(uint64(len(pkts)))
		return
	}
	dev := n.bb.dev.Load()
	mtu := backbone.DefaultMTU
	if dev != nil {
		mtu = dev.MTU()
	}
	s := bbDelivers.Get().(*bbDeliver)
	now := n.filter.Now()
	for _, raw := range pkts {
		pkt := &s.pkt
		if pkt.Parse(raw) != nil {
			n.drops[dropMalformed].Add(1)
			continue
		}
		// The sender, a peer or a site's LAN of the tenant, is at node from: its replies
		// go there from now on (a client that moved PoP is followed at its first packet).
		peer := snap.byAddr[pkt.Src]
		if peer != nil && peer.tenantID != ts.id {
			peer = nil
		}
		if peer != nil {
			peer.seenAt(from)
		} else if conn := ts.siteSource(pkt.Src); conn != nil {
			conn.seenAt(from)
		}
		to := snap.byAddr[pkt.Dst]
		switch {
		case to != nil && to.tenantID != ts.id:
			n.drops[dropCrossTenant].Add(1)
			continue
		case to == nil && (snap.inOverlay(pkt.Dst) || snap.isLocal(pkt.Dst)):
			// This node's own address takes the answers to its queries into sites
			// (nodeaddr.go); another node's is not forwarded again (no second hop).
			if !snap.isNodeAddr(pkt.Dst) {
				n.drops[dropNoRoute].Add(1)
				continue
			}
			if taken, _ := toNodeAddr(snap, n.dns, ts.id, pkt.Dst, raw, pkt.Proto == protoUDP && pkt.Frag == firewall.NotFragment); !taken {
				n.drops[dropNoRoute].Add(1)
			}
			continue
		case to == nil:
			if r := ts.lookupRoute(pkt.Dst); r != nil && r.siteName != "" {
				to = r.site
				if to == nil {
					n.drops[dropNoRoute].Add(1)
					continue
				}
			}
		}
		if to != nil {
			// Here, not elsewhere: a packet is never sent on a second hop.
			if to.where(snap.self) != 0 || to.tenant.tun == nil {
				n.drops[dropNoRoute].Add(1)
				continue
			}
			// A node's own traffic (a query of its resolver into a site) is not under the
			// tenant's policy.
			if !snap.isNodeAddr(pkt.Src) {
				if v, _ := n.filter.CheckAt(ts.id, &to.ctr.flows, pkt, firewall.ToPeer, now); v != firewall.Accept {
					continue
				}
			}
			clampMSS(raw, MSSFor(mtu, pkt.Dst.Is6()))
			to.ctr.txPackets.Add(1)
			to.ctr.txBytes.Add(uint64(len(raw)))
			s.db.add(to.tenant.tun, raw)
			continue
		}
		// The internet, through this node's exit.
		if n.cfg.NoExit || peer == nil {
			n.drops[dropNoRoute].Add(1)
			continue
		}
		b := s.take(raw, mtu)
		switch {
		case b == nil:
			n.drops[dropMalformed].Add(1)
		case pkt.Dst.Is4():
			s.exit4 = append(s.exit4, b)
		default:
			s.exit6 = append(s.exit6, b)
		}
	}
	s.db.flush()
	for _, x := range [...]struct {
		w     exitWriter
		batch *[][]byte
	}{{n.exit4, &s.exit4}, {n.exit6, &s.exit6}} {
		if len(*x.batch) > 0 {
			x.w.Write(*x.batch, bbHeadroom)
			clear(*x.batch)
			*x.batch = (*x.batch)[:0]
		}
	}
	s.used = 0
	bbDelivers.Put(s)
}

// BackboneLinks returns the state of the node's backbone links, by node ID; nil when the
// node has no backbone.
func (n *Node) BackboneLinks() []backbone.LinkState {
	if d := n.bb.dev.Load(); d != nil {
		return d.Links()
	}
	return nil
}

// BackbonePublicKey is the public key of the node's backbone key; zero without one.
func (n *Node) BackbonePublicKey() store.Key {
	if n.cfg.BackboneKey.IsZero() {
		return store.Key{}
	}
	return n.cfg.BackboneKey.PublicKey()
}
