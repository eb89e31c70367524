package gateway

import (
	"maps"
	"time"

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
		r.Node.ExitTCPRetransmits, r.Node.ExitTCPTimeouts = es.TCPRetransmits, es.TCPTimeouts
	}
	if n.mux != nil {
		r.Node.Handshakes = handshakeStatus(n.mux.Stats())
	}
	if n.dns != nil {
		s := n.dns.Stats()
		r.Node.DNS = plane.DNSStats{Queries: s.Queries, Local: s.Local, CacheHits: s.CacheHits, Forwarded: s.Forwarded, Blocked: s.Blocked,
			Split: s.Split, Failed: s.Failed, RateLimited: s.RateLimited, Malformed: s.Malformed, LogDropped: s.LogDropped}
	}
	for _, l := range n.BackboneLinks() {
		r.Links = append(r.Links, plane.LinkState{Node: uint32(l.Node), Name: l.Name, State: l.State.String(), RTT: l.SmoothedRTT, Loss: l.Loss(), Since: l.Since,
			Ups: l.Ups, Downs: l.Downs})
	}

	if n.checks != nil {
		r.Checks = n.checks.Results()
	}

	snap := n.snap.Load()
	if snap == nil { // before Start
		return r
	}
	now := n.cfg.now()
	live := n.liveState()
	totals := map[int64]*plane.Traffic{}
	n.ctrMu.Lock()
	for k, c := range n.counters {
		l, ok := live[k]
		t := c.traffic(0, 0)
		if ok { // its bytes as read with the device's state
			t.RxBytes, t.TxBytes = l.rxBytes, l.txBytes
		}
		tt := totals[c.tenantID]
		if tt == nil {
			tt = new(plane.Traffic)
			totals[c.tenantID] = tt
		}
		tt.Add(t)
		if ok {
			l.rxPackets, l.txPackets = t.RxPackets, t.TxPackets
			l.tenant, l.name = c.tenant, c.name
			live[k] = l
		}
	}
	for id, t := range n.retired {
		tt := totals[id]
		if tt == nil {
			tt = new(plane.Traffic)
			totals[id] = tt
		}
		tt.Add(*t)
	}
	tenantDrops := make(map[int64]map[string]uint64, len(n.tenantDrops))
	for id, d := range n.tenantDrops {
		tenantDrops[id] = dropCounts(d)
	}
	n.ctrMu.Unlock()
	for _, t := range totals {
		r.Node.Traffic.Add(*t)
	}
	for k, l := range live {
		if !l.held && l.lastHandshake.IsZero() && l.rxBytes == 0 && l.txBytes == 0 && l.rxPackets == 0 && l.txPackets == 0 {
			continue
		}
		r.Peers = append(r.Peers, l.state(k, now))
	}

	var exitFlows map[int64]netstack.TenantFlows
	if n.exit != nil {
		exitFlows = n.exit.TenantFlows()
	}
	r.Tenants = make([]plane.TenantState, 0, len(snap.tenants))
	for id, t := range snap.tenants {
		ts := plane.TenantState{ID: id, Name: t.name, Drops: map[string]uint64{}, Evicted: map[string]uint64{}}
		if tt := totals[id]; tt != nil {
			ts.Traffic = *tt
		}
		if fs, ok := n.filter.TenantStats(id); ok {
			ts.Flows = fs.Flows
			ts.Rules = make([]plane.RuleStat, len(fs.Rules))
			for i, rs := range fs.Rules {
				ts.Rules[i] = plane.RuleStat{Line: rs.Line, Rule: rs.Rule, Hits: rs.Hits, Since: rs.Since}
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
		for reason, v := range tenantDrops[id] {
			if v > 0 {
				ts.Drops[reason] = v
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
	l := livePeer{}
	l.peerStats, l.held = n.devicePeerStats(k, snap.byKey[k])
	if !l.held {
		n.lastSeenMu.Lock()
		l.peerStats = n.lastSeen[k]
		n.lastSeenMu.Unlock()
	}
	n.ctrMu.Lock()
	c := n.counters[k]
	if c != nil {
		l.tenant, l.name = c.tenant, c.name
		l.rxPackets, l.txPackets = c.rxPackets.Load(), c.txPackets.Load()
		if !l.held {
			l.rxBytes, l.txBytes = c.wireRx.Load(), c.wireTx.Load()
		}
	}
	n.ctrMu.Unlock()
	if !l.held && l.lastHandshake.IsZero() && l.rxBytes == 0 && l.txBytes == 0 && l.rxPackets == 0 && l.txPackets == 0 {
		return plane.PeerState{}, false
	}
	return l.state(k, now), true
}

// state is l as the report says it of peer k at now: online only while a device holds it.
func (l livePeer) state(k store.Key, now time.Time) plane.PeerState {
	return plane.PeerState{PublicKey: k, Tenant: l.tenant, Name: l.name, Online: l.held && l.online(now), Endpoint: l.endpoint, LastHandshake: l.lastHandshake,
		RxBytes: l.rxBytes, TxBytes: l.txBytes, RxPackets: l.rxPackets, TxPackets: l.txPackets}
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
		out := map[store.Key]livePeer{}
		td.mu.Lock()
		_, held := td.peers[k]
		td.mu.Unlock()
		if !held {
			continue
		}
		td.readState(n, out) // the bytes with the counters' bases, under the device's mu
		l, ok := out[k]
		return l.peerStats, ok
	}
	return peerStats{}, false
}
