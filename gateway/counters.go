package gateway

import (
	"sync/atomic"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// Counters never go back while the node runs (issue 16): a peer's live in its peerCounters,
// which outlive snapshots, devices and the peer being disabled; the bytes a device counted
// for a peer are added to them when the peer leaves the device (leftDevice); a peer that
// leaves the desired state adds all it counted to its tenant's retired totals
// (forgetLocked); a tenant's packet path drops live in tenantDrops, across its devices.
// Report reads a device's state and the bases of its peers under the device's mu, which
// every departure from a device holds, so that no byte is counted twice or missed by a
// later report.

// leftDevice takes the last device state of peers that left tenant tenantID's device: their
// bytes go to their counters' bases, their endpoint and last handshake to lastSeen. The
// caller holds the device's mu.
func (n *Node) leftDevice(tenantID int64, gone map[store.Key]peerStats) {
	if len(gone) == 0 {
		return
	}
	n.ctrMu.Lock()
	for k, st := range gone {
		if c := n.counters[k]; c != nil {
			c.wireRx.Add(st.rxBytes)
			c.wireTx.Add(st.txBytes)
		} else {
			// Held without counters: not served since the node started. Cannot happen
			// (a device takes in only served peers), but the bytes stay counted.
			n.retiredOf(tenantID).Add(plane.Traffic{RxBytes: st.rxBytes, TxBytes: st.txBytes})
		}
	}
	n.ctrMu.Unlock()
	n.lastSeenMu.Lock()
	for k, st := range gone {
		n.lastSeen[k] = peerStats{endpoint: st.endpoint, lastHandshake: st.lastHandshake}
	}
	n.lastSeenMu.Unlock()
}

// retiredOf returns tenant id's retired totals. Must hold ctrMu.
func (n *Node) retiredOf(id int64) *plane.Traffic {
	t := n.retired[id]
	if t == nil {
		t = new(plane.Traffic)
		n.retired[id] = t
	}
	return t
}

// tenantDropsOf returns the packet path's drop counters of tenant id, the same for each of
// its devices.
func (n *Node) tenantDropsOf(id int64) *[numDropReasons]atomic.Uint64 {
	n.ctrMu.Lock()
	defer n.ctrMu.Unlock()
	d := n.tenantDrops[id]
	if d == nil {
		d = new([numDropReasons]atomic.Uint64)
		n.tenantDrops[id] = d
	}
	return d
}

// forgetLocked forgets the counters and last states of peers that left the desired state d,
// adding what they counted to their tenant's retired totals, and the drop counters of
// tenants that left it. Called after the devices let those peers go (their bytes are in
// their counters by then). Must hold n.mu.
func (n *Node) forgetLocked(d *plane.Desired) {
	keys := make(map[store.Key]struct{}, len(d.Peers))
	for i := range d.Peers {
		keys[d.Peers[i].PublicKey] = struct{}{}
	}
	tenants := make(map[int64]struct{}, len(d.Tenants))
	for _, t := range d.Tenants {
		tenants[t.ID] = struct{}{}
	}
	n.ctrMu.Lock()
	for k, c := range n.counters {
		if _, ok := keys[k]; !ok {
			n.retiredOf(c.tenantID).Add(c.traffic(0, 0))
			delete(n.counters, k)
		}
	}
	for id := range n.tenantDrops {
		if _, ok := tenants[id]; !ok {
			delete(n.tenantDrops, id)
		}
	}
	n.ctrMu.Unlock()
	n.lastSeenMu.Lock()
	for k := range n.lastSeen {
		if _, ok := keys[k]; !ok {
			delete(n.lastSeen, k)
		}
	}
	n.lastSeenMu.Unlock()
}

// traffic is what c counted, with the bytes a device counts now for the peer.
func (c *peerCounters) traffic(devRx, devTx uint64) plane.Traffic {
	return plane.Traffic{
		RxBytes: c.wireRx.Load() + devRx, TxBytes: c.wireTx.Load() + devTx,
		RxPackets: c.rxPackets.Load(), TxPackets: c.txPackets.Load(),
	}
}

// livePeer is a peer's state for Report: its device's, or its last when no device holds
// it, with its bytes since the node started.
type livePeer struct {
	peerStats
	held                 bool // a device holds the peer
	rxPackets, txPackets uint64
	tenant, name         string
}

// liveState reads the state of every peer a device holds, and of every other peer the node
// has counters or a last state of. Bytes include the counters' bases, read under each
// device's mu (see the comment at the top of the file).
func (n *Node) liveState() map[store.Key]livePeer {
	n.mu.Lock()
	devs := make([]*tenantDevice, 0, len(n.devs))
	for _, td := range n.devs {
		devs = append(devs, td)
	}
	n.mu.Unlock()
	out := map[store.Key]livePeer{}
	for _, td := range devs {
		td.readState(n, out)
	}
	n.lastSeenMu.Lock()
	for k, st := range n.lastSeen {
		if _, ok := out[k]; !ok {
			out[k] = livePeer{peerStats: st}
		}
	}
	n.lastSeenMu.Unlock()
	n.ctrMu.Lock()
	for k, c := range n.counters {
		if l, ok := out[k]; !ok || !l.held {
			l.rxBytes, l.txBytes = c.wireRx.Load(), c.wireTx.Load()
			out[k] = l
		}
	}
	n.ctrMu.Unlock()
	return out
}

// readState adds the state of the peers td holds to out, their bytes with their counters'
// bases, under td.mu.
func (td *tenantDevice) readState(n *Node, out map[store.Key]livePeer) {
	td.mu.Lock()
	defer td.mu.Unlock()
	text, err := td.dev.IpcGet()
	if err != nil {
		n.log.Warn("read device state", "tenant_id", td.id, "err", err)
		return
	}
	stats := map[store.Key]peerStats{}
	parsePeerStats(text, stats)
	n.ctrMu.Lock()
	for k, st := range stats {
		if c := n.counters[k]; c != nil {
			st.rxBytes += c.wireRx.Load()
			st.txBytes += c.wireTx.Load()
		}
		out[k] = livePeer{peerStats: st, held: true}
	}
	n.ctrMu.Unlock()
}
