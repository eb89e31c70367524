package control

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// Status describes the running node: the controller's facts and the node's report.
type Status struct {
	NodeName       string
	Version        string
	Roles          []string
	Region         string
	StartedAt      time.Time
	Interface      string
	PublicKey      store.Key
	ListenPort     int
	PublicEndpoint string
	MTU            int
	ExitMode       string
	Addresses      []netip.Addr
	UAPISocket     string
	PeersTotal     int
	PeersEnabled   int
	PeersOnline    int
	// RxBytes and TxBytes are what the node's devices carried since it started, for every
	// peer it served, disabled and removed ones included.
	RxBytes uint64
	TxBytes uint64
	// Drops counts packets towards peers that found no peer (node level).
	Drops map[string]uint64
	// ExitSockets are the host sockets the userspace exit's flows hold now, at most
	// ExitSocketBudget (the open files limit less a reserve).
	ExitSockets, ExitSocketBudget int
	// Handshakes are the shared socket's handshake counters (a flood shows here).
	Handshakes plane.HandshakeStatus
	// Generation is that of the desired state last published, Applied that of the last
	// one the node applied in full; ApplyError says why the last one did not reach the
	// data plane ("" when it did). A change is stored even then: it applies once the cause
	// is gone (the controller publishes again every Config.RetryEvery).
	Generation, Applied int64
	ApplyError          string
	Tenants             []TenantStatus
}

// TenantStatus holds one tenant's counters. Traffic counts since the node started, for
// every peer of the tenant it served, disabled and removed ones included.
type TenantStatus struct {
	Name                 string
	Peers, Online        int
	RxBytes, TxBytes     uint64
	RxPackets, TxPackets uint64
	Flows                int64
	// ExitTCP, ExitUDP and ExitICMP are the tenant's flows through the userspace exit now
	// (echo requests waiting for a reply for ICMP).
	ExitTCP, ExitUDP, ExitICMP int
	// MaxFlowsPerPeer and MaxFlows are the tenant's bounds in force.
	MaxFlowsPerPeer, MaxFlows int
	// Drops by reason: the packet path's, the exit's refusals at a bound
	// (flow_limit_peer, flow_limit_tenant, flow_limit_node, fd_budget), and the firewall's
	// as "<direction>.<reason>".
	Drops map[string]uint64
	// Evicted counts the tenant's flows that never got a reply, closed early to make room
	// for a new flow: in the exit by the bound that needed room, in the firewall's table as
	// "conntrack".
	Evicted map[string]uint64
	Rules   []firewall.RuleStat
}

// Status reports the node, its device and its peers.
func (c *Controller) Status(ctx context.Context) (Status, error) {
	rep := c.dp.Report()
	pub := c.published.Load()
	ps := c.storedPeers("")
	st := Status{
		NodeName:         rep.Node.Name,
		Version:          rep.Node.Version,
		Roles:            slices.Clone(c.cfg.Roles),
		Region:           rep.Node.Region,
		StartedAt:        rep.Node.StartedAt,
		Interface:        rep.Node.Interface,
		PublicKey:        c.serverKey,
		ListenPort:       rep.Node.ListenPort,
		PublicEndpoint:   c.cfg.PublicEndpoint,
		MTU:              c.cfg.MTU,
		ExitMode:         rep.Node.ExitMode,
		Addresses:        []netip.Addr{c.overlay.Gateway4, c.overlay.Gateway6},
		UAPISocket:       rep.Node.UAPISocket,
		PeersTotal:       len(ps),
		Drops:            map[string]uint64{},
		ExitSockets:      rep.Node.ExitSockets,
		ExitSocketBudget: rep.Node.ExitSocketBudget,
		Handshakes:       rep.Node.Handshakes,
		RxBytes:          rep.Node.Traffic.RxBytes,
		TxBytes:          rep.Node.Traffic.TxBytes,
		Generation:       pub.gen,
		Applied:          rep.Generation,
		ApplyError:       rep.ApplyError,
	}
	if pub.err != nil {
		st.ApplyError = pub.err.Error()
	}
	for k, v := range rep.Node.Drops {
		st.Drops[k] = v
	}
	tenants, err := c.store.ListTenants(ctx)
	if err != nil {
		return Status{}, err
	}
	reported := make(map[int64]int, len(rep.Tenants))
	for i, t := range rep.Tenants {
		reported[t.ID] = i
	}
	st.Tenants = make([]TenantStatus, 0, len(tenants)) // byID points into it: no reallocation
	byID := map[int64]*TenantStatus{}
	for _, t := range tenants {
		ts := TenantStatus{Name: t.Name, Drops: map[string]uint64{}, Evicted: map[string]uint64{}}
		ts.MaxFlowsPerPeer, ts.MaxFlows = flowLimits(t)
		if i, ok := reported[t.ID]; ok {
			r := &rep.Tenants[i]
			ts.RxBytes, ts.TxBytes = r.Traffic.RxBytes, r.Traffic.TxBytes
			ts.RxPackets, ts.TxPackets = r.Traffic.RxPackets, r.Traffic.TxPackets
			ts.Flows = r.Flows
			ts.ExitTCP, ts.ExitUDP, ts.ExitICMP = r.ExitTCP, r.ExitUDP, r.ExitICMP
			for k, v := range r.Drops {
				ts.Drops[k] = v
			}
			for k, v := range r.Evicted {
				ts.Evicted[k] = v
			}
			if r.Rules != nil {
				ts.Rules = make([]firewall.RuleStat, len(r.Rules))
				for j, rs := range r.Rules {
					ts.Rules[j] = firewall.RuleStat{Line: rs.Line, Rule: rs.Rule, Hits: rs.Hits, Since: rs.Since}
				}
			}
		}
		st.Tenants = append(st.Tenants, ts)
		byID[t.ID] = &st.Tenants[len(st.Tenants)-1]
	}
	live := liveOf(rep.Peers)
	for _, p := range ps {
		ts := byID[p.TenantID]
		s := live.peers[p.PublicKey]
		if ts != nil {
			ts.Peers++
		}
		if !p.Enabled || p.Expired(live.now) {
			continue
		}
		st.PeersEnabled++
		if s == nil || !s.Online {
			continue
		}
		st.PeersOnline++
		if ts != nil {
			ts.Online++
		}
	}
	return st, nil
}

// Published returns the generation of the desired state last published to the data plane
// and why it did not reach it (nil when it did): what readiness compares the node's report
// with.
func (c *Controller) Published() (generation int64, err error) {
	p := c.published.Load()
	return p.gen, p.err
}
