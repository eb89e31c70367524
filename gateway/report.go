package gateway

import (
	"maps"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/netstack"
	"github.com/popgate/popgate/store"
)

// Report returns the node's live state and counters: the generation applied (or why the last
// apply failed), every peer with something to report, every tenant's counters and the node's
// status. It reads the devices' state; it is safe to call at any time, also while an Apply
// runs or after Close.
func (n *Node) Report() plane.Report {
	st := n.applied.Load()
	r := plane.Report{
		Format:     plane.Format,
		Generation: st.gen,
		ApplyError: st.err,
		Failed:     st.failed,
		Node: plane.NodeStatus{
			Name:       n.cfg.NodeName,
			Version:    n.cfg.Version,
			Region:     n.cfg.Region,
			StartedAt:  n.startedAt,
			Interface:  n.cfg.Interface,
			UAPISocket: n.uapiPath,
			ListenPort: n.cfg.ListenPort,
			MTU:        n.cfg.MTU,
			ExitMode:   n.cfg.ExitMode,
			Drops:      map[string]uint64{},
		},
	}
	for reason := dropReason(0); reason < numDropReasons; reason++ {
		if v := n.drops[reason].Load(); v > 0 {
			r.Node.Drops[reason.String()] = v
		}
	}
	if n.exit != nil {
		es := n.exit.Stats()
		r.Node.ExitSockets, r.Node.ExitSocketBudget = es.HostSockets, es.FDBudget
	}
	if n.mux != nil {
		r.Node.Handshakes = handshakeStatus(n.mux.Stats())
	}

	snap := n.snap.Load()
	if snap == nil { // before Start
		return r
	}
	now := n.cfg.now()
	stats := n.peerStats()
	for k, e := range snap.byKey {
		ps := plane.PeerState{PublicKey: k, RxPackets: e.ctr.rxPackets.Load(), TxPackets: e.ctr.txPackets.Load()}
		s, ok := stats[k]
		if !ok && ps.RxPackets == 0 && ps.TxPackets == 0 {
			continue
		}
		delete(stats, k)
		ps.Online, ps.Endpoint, ps.LastHandshake = s.online(now), s.endpoint, s.lastHandshake
		ps.RxBytes, ps.TxBytes = s.rxBytes, s.txBytes
		r.Peers = append(r.Peers, ps)
	}
	for k, s := range stats { // in a device, but no longer served (an apply is under way)
		r.Peers = append(r.Peers, plane.PeerState{PublicKey: k, Online: s.online(now), Endpoint: s.endpoint,
			LastHandshake: s.lastHandshake, RxBytes: s.rxBytes, TxBytes: s.txBytes})
	}

	var exitFlows map[int64]netstack.TenantFlows
	if n.exit != nil {
		exitFlows = n.exit.TenantFlows()
	}
	r.Tenants = make([]plane.TenantState, 0, len(snap.tenants))
	for id, t := range snap.tenants {
		ts := plane.TenantState{ID: id, Drops: map[string]uint64{}, Evicted: map[string]uint64{}}
		if fs, ok := n.filter.TenantStats(id); ok {
			ts.Flows = fs.Flows
			ts.Rules = make([]plane.RuleStat, len(fs.Rules))
			for i, rs := range fs.Rules {
				ts.Rules[i] = plane.RuleStat{Line: rs.Line, Rule: rs.Rule, Hits: rs.Hits}
			}
			for dir, m := range fs.Drops {
				for reason, v := range m {
					if v > 0 {
						ts.Drops[dir+"."+reason] = v
					}
				}
			}
			if fs.Evicted > 0 {
				ts.Evicted["conntrack"] = fs.Evicted
			}
		}
		if ef, ok := exitFlows[id]; ok {
			ts.ExitTCP, ts.ExitUDP, ts.ExitICMP = ef.TCP, ef.UDP, ef.ICMP
			maps.Copy(ts.Drops, ef.Refused)
			maps.Copy(ts.Evicted, ef.Evicted)
		}
		if t.tun != nil {
			for reason, v := range t.tun.dropCounts() {
				if v > 0 {
					ts.Drops[reason] = v
				}
			}
		}
		r.Tenants = append(r.Tenants, ts)
	}
	return r
}

// PeerState returns what Report says of the peer with public key k, and whether it says
// anything, without building the whole report: the peer's entry in the snapshot, its last
// state when it left its device and, when a device holds it, that device's state (reading
// it costs as much as the peers that device holds; every other device is left alone).
func (n *Node) PeerState(k store.Key) (plane.PeerState, bool) {
	snap := n.snap.Load()
	if snap == nil { // before Start
		return plane.PeerState{}, false
	}
	now := n.cfg.now()
	ps := plane.PeerState{PublicKey: k}
	e := snap.byKey[k]
	if e != nil {
		ps.RxPackets, ps.TxPackets = e.ctr.rxPackets.Load(), e.ctr.txPackets.Load()
	}
	s, ok := n.devicePeerStats(k, e)
	if !ok {
		n.lastSeenMu.Lock()
		s, ok = n.lastSeen[k]
		n.lastSeenMu.Unlock()
	}
	if !ok && ps.RxPackets == 0 && ps.TxPackets == 0 {
		return plane.PeerState{}, false
	}
	ps.Online, ps.Endpoint, ps.LastHandshake = s.online(now), s.endpoint, s.lastHandshake
	ps.RxBytes, ps.TxBytes = s.rxBytes, s.txBytes
	return ps, true
}

// devicePeerStats reads the live state of peer k from the device that holds it, if one does:
// that of e's tenant (e is k's entry in the snapshot) or, for a peer no longer served (an
// apply is under way), whichever holds it.
func (n *Node) devicePeerStats(k store.Key, e *peerEntry) (peerStats, bool) {
	n.mu.Lock()
	var devs []*tenantDevice
	if e != nil {
		if td := n.devs[e.tenantID]; td != nil {
			devs = append(devs, td)
		}
	} else {
		for _, td := range n.devs {
			devs = append(devs, td)
		}
	}
	n.mu.Unlock()
	for _, td := range devs {
		td.mu.Lock()
		_, held := td.peers[k]
		td.mu.Unlock()
		if !held {
			continue
		}
		text, err := td.dev.IpcGet()
		if err != nil {
			n.log.Warn("read device state", "tenant_id", td.id, "err", err)
			return peerStats{}, false
		}
		stats := map[store.Key]peerStats{}
		parsePeerStats(text, stats)
		s, ok := stats[k]
		return s, ok
	}
	return peerStats{}, false
}
