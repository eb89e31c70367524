package webui

import (
	"cmp"
	"net/http"
	"slices"
	"time"
)

// dashboardPage is the data of the dashboard.
type dashboardPage struct {
	Regions []regionHealth
	// Peers and traffic: the node's, or only the principal's tenant's when it is limited to
	// one.
	Scoped                            bool
	PeersTotal, PeersOn, PeersEnabled int
	RxBytes, TxBytes                  uint64
	Tenants                           []tenantSummary
	MaxTraffic                        uint64 // of the busiest tenant, for the bars
	Drops                             []dropCount
	// Charts are the traffic of the last day of the busiest tenants (dashboardCharts of
	// them), busiest first; ChartsOf is how many tenants there are.
	Charts   []trafficChart
	ChartsOf int
}

// dashboardCharts bounds the tenants whose traffic the dashboard draws: it reads their
// history at every refresh.
const dashboardCharts = 6

// regionHealth is one region's node. There is one region, "local", for now.
type regionHealth struct {
	Region, Node, Version string
	StartedAt             time.Time
	ExitMode              string
	Endpoint              string
	ListenPort            int
	Interface             string
	PublicKey             string
	Addresses             []string
	Up                    bool
}

type tenantSummary struct {
	Name             string
	Peers, Online    int
	RxBytes, TxBytes uint64
	Traffic          uint64
	Flows            int64
	Drops            uint64
}

type dropCount struct {
	Reason string
	Count  uint64
}

// dashboard serves GET /: the node's health, peers online and traffic, and a line per
// tenant. htmx refreshes it every 5 s.
func (u *UI) dashboard(w http.ResponseWriter, r *http.Request) {
	st, err := u.ctrl.Status(r.Context())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	me := principal(r)
	d := dashboardPage{Scoped: me.Tenant != ""}
	rh := regionHealth{
		Region: st.Region, Node: st.NodeName, Version: st.Version, StartedAt: st.StartedAt,
		ExitMode: st.ExitMode, Endpoint: st.PublicEndpoint, ListenPort: st.ListenPort,
		Interface: st.Interface, PublicKey: st.PublicKey.String(), Up: true,
	}
	for _, a := range st.Addresses {
		rh.Addresses = append(rh.Addresses, a.String())
	}
	d.Regions = []regionHealth{rh}
	drops := map[string]uint64{}
	for _, t := range st.Tenants {
		if !me.CanSeeTenant(t.Name) {
			continue
		}
		ts := tenantSummary{Name: t.Name, Peers: t.Peers, Online: t.Online, RxBytes: t.RxBytes, TxBytes: t.TxBytes,
			Traffic: t.RxBytes + t.TxBytes, Flows: t.Flows}
		for reason, n := range t.Drops {
			ts.Drops += n
			drops[reason] += n
		}
		d.MaxTraffic = max(d.MaxTraffic, ts.Traffic)
		d.Tenants = append(d.Tenants, ts)
		if d.Scoped {
			d.PeersTotal += t.Peers
			d.PeersOn += t.Online
			d.RxBytes += t.RxBytes
			d.TxBytes += t.TxBytes
		}
	}
	if !d.Scoped {
		d.PeersTotal, d.PeersOn, d.PeersEnabled = st.PeersTotal, st.PeersOnline, st.PeersEnabled
		d.RxBytes, d.TxBytes = st.RxBytes, st.TxBytes
		for reason, n := range st.Drops {
			drops["node."+reason] += n
		}
	}
	for reason, n := range drops {
		d.Drops = append(d.Drops, dropCount{reason, n})
	}
	slices.SortFunc(d.Drops, func(a, b dropCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Reason, b.Reason))
	})
	// The charts: the tenants that carried the most since the node started.
	busiest := slices.Clone(d.Tenants)
	slices.SortFunc(busiest, func(a, b tenantSummary) int {
		return cmp.Or(cmp.Compare(b.Traffic, a.Traffic), cmp.Compare(a.Name, b.Name))
	})
	d.ChartsOf = len(busiest)
	for _, t := range busiest[:min(len(busiest), dashboardCharts)] {
		d.Charts = append(d.Charts, u.tenantChart(r, t.Name))
	}
	slices.SortFunc(d.Tenants, func(a, b tenantSummary) int {
		return cmp.Or(cmp.Compare(b.Online, a.Online), cmp.Compare(b.Peers, a.Peers), cmp.Compare(a.Name, b.Name))
	})
	u.render(w, r, http.StatusOK, "dashboard", view{Title: "Dashboard", Nav: "dashboard", Data: d})
}

// chartDay is the range of the charts of the dashboard and the peer page.
const chartDay = 24 * time.Hour

// tenantChart draws the traffic of tenant over the last day; a history that cannot be read
// is said in the chart, and logged, rather than failing the page.
func (u *UI) tenantChart(r *http.Request, tenant string) trafficChart {
	id := "traffic-" + tenant
	s, err := u.ctrl.TenantTraffic(r.Context(), tenant, chartDay)
	if err != nil {
		u.log.Error("cannot read a tenant's traffic history", "tenant", tenant, "err", err)
		return trafficChart{ID: id, Label: tenant, Href: peersOf(tenant), Err: "The traffic history could not be read; the details are in the popgate log."}
	}
	c := newTrafficChart(id, tenant, "the last 24 hours", s, u.now())
	c.Label, c.Href = tenant, peersOf(tenant)
	return c
}
