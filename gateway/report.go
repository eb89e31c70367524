package gateway

import (
	"maps"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/netstack"
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
