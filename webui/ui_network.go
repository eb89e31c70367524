package webui

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// networkPage is the data of the Network page: the network as its PoPs see it.
type networkPage struct {
	// Regions with whether the PoPs of the other regions reach each by handshake (shown to
	// principals who may see the operator's checks: not to one limited to a tenant).
	Regions      []networkRegion
	ShowRegionUp bool
	// ShowPoPs: the principal may see nodes; PoPs are the controller's own node and the
	// joined PoPs; Links the backbone as their probes see it (nil: no link reported).
	ShowPoPs bool
	PoPs     []networkPoP
	Links    *linkMatrix
	// Checks are the checks the principal may see, but the regions' (which are above).
	Checks []networkCheck
	// Scoped: the principal is limited to a tenant, whose checks alone it sees.
	Scoped bool
}

// networkRegion is a region and how its endpoint is reached.
type networkRegion struct {
	store.Region
	// State is in words (reachable, unreachable, partly reachable, not checked, no result)
	// and Badge its colour; Detail says from where.
	State, Badge, Detail string
	Uptime               string // over 24 hours; "—" without a run
	Latency              string // median handshake time over 24 hours
	Chart                checkChart
	PoPs                 []string
}

// networkPoP is one PoP: its state, and for how much of the last 24 hours it reported.
type networkPoP struct {
	Name, Region, Roles string
	State, Badge        string
	Since               time.Time // connected since, or last seen; zero: never
	Connected           bool
	// Reported is the share of the last 24 hours it reported check results in, "—" when
	// it runs no check.
	Reported string
}

// networkCheck is one check with its chart.
type networkCheck struct {
	control.CheckInfo
	State, Badge string
	Uptime       string
	P50, P95     string
	Latest       string // the newest answer or failure
	Chart        checkChart
}

// network serves GET /network: the regions and whether the other regions' PoPs reach them
// by handshake, the PoPs and the backbone's latency matrix (principals who see nodes), and
// every check the principal may see with its last 24 hours as a chart.
func (u *UI) network(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	me := principal(r)
	now := u.now()
	p := networkPage{Scoped: me.Tenant != "", ShowRegionUp: me.Tenant == "", ShowPoPs: seesNodes(me)}

	rs, err := u.visibleRegions(ctx, me)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	checks, err := u.ctrl.Checks(ctx, me.Tenant)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	regionCheck := map[string]control.CheckInfo{}
	for _, c := range checks {
		if c.Kind == store.CheckHandshake {
			regionCheck[c.Region] = c
		}
	}
	home := ""
	if i := slices.IndexFunc(rs, func(rg store.Region) bool { return rg.Home }); i >= 0 {
		home = rs[i].Name
	}
	pops, _, err := u.popsByRegion(r, home)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	for i, rg := range rs {
		nr := networkRegion{Region: rg}
		if pp := pops[rg.Name]; pp != nil {
			if pp.Self {
				nr.PoPs = append(nr.PoPs, u.ctrl.OwnNodeName())
			}
			for _, n := range pp.Nodes {
				nr.PoPs = append(nr.PoPs, n.Name)
			}
		}
		if c, ok := regionCheck[rg.Name]; ok && p.ShowRegionUp {
			nr.State, nr.Badge, nr.Detail = checkState(c, now)
			nr.Uptime = uptimePercent(c.Summary.Day.Uptime())
			nr.Latency = latencyText(c.Summary.Day.P50)
			if len(c.Runners) > 0 || c.Summary.Day.OK+c.Summary.Day.Failed > 0 {
				if nr.Chart, err = u.chartOf(r, fmt.Sprintf("region-%d", i), "Handshakes with "+rg.Name, c, now); err != nil {
					u.fail(w, r, err)
					return
				}
			}
		}
		p.Regions = append(p.Regions, nr)
	}

	if p.ShowPoPs {
		if p.PoPs, err = u.networkPoPs(r, home, now); err != nil {
			u.fail(w, r, err)
			return
		}
		rows, err := u.nodeRows(r)
		if err != nil {
			u.fail(w, r, err)
			return
		}
		p.Links = u.backboneLinks(rows)
	}

	for i, c := range checks {
		if c.Kind == store.CheckHandshake {
			continue
		}
		nc := networkCheck{CheckInfo: c, Uptime: uptimePercent(c.Summary.Day.Uptime()),
			P50: latencyText(c.Summary.Day.P50), P95: latencyText(c.Summary.Day.P95)}
		nc.State, nc.Badge, nc.Latest = checkState(c, now)
		if c.Summary.Day.OK+c.Summary.Day.Failed == 0 && len(c.Runners) > 0 {
			nc.Latest = "" // the chart says there is no result
		}
		title := c.Name
		if c.TenantName != "" {
			title = c.TenantName + "/" + c.Name
		}
		if nc.Chart, err = u.chartOf(r, fmt.Sprintf("check-%d", i), title, c, now); err != nil {
			u.fail(w, r, err)
			return
		}
		p.Checks = append(p.Checks, nc)
	}
	u.render(w, r, http.StatusOK, "network", view{Title: "Network", Nav: "network", Data: p})
}

// chartOf draws check c's last 24 hours.
func (u *UI) chartOf(r *http.Request, id, title string, c control.CheckInfo, now time.Time) (checkChart, error) {
	bins, err := u.ctrl.CheckHistory(r.Context(), c.ID, now.Add(-chartSpan).Truncate(chartBin), chartBin)
	if err != nil {
		return checkChart{}, err
	}
	return buildChart(id, title, bins, now), nil
}

// staleResult is how old a node's latest minute may be and still tell a check's state.
const staleResult = 5 * time.Minute

// checkState says how check c stands now, from each node's latest minute within staleResult:
// its state in words, the badge's colour, and the newest answer or failure.
func checkState(c control.CheckInfo, now time.Time) (state, badge, latest string) {
	var passing, failing []string
	var newest *control.CheckLatest
	for i := range c.Summary.Latest {
		l := &c.Summary.Latest[i]
		if now.Sub(l.Minute) > staleResult {
			continue
		}
		if newest == nil || l.Minute.After(newest.Minute) {
			newest = l
		}
		if l.Failed > 0 && l.OK == 0 {
			failing = append(failing, l.Node)
		} else {
			passing = append(passing, l.Node)
		}
	}
	switch {
	case newest == nil && len(c.Runners) == 0 && c.Kind == store.CheckHandshake:
		return "not checked", "off", "No PoP of another region with a backbone checks it."
	case newest == nil && len(c.Runners) == 0:
		return "not checked", "off", "No node runs it: its from names none."
	case newest == nil:
		return "no result", "off", "No result in the last 5 minutes."
	}
	latest = newest.Detail
	if len(failing) > 0 {
		for _, l := range c.Summary.Latest {
			if l.Node == failing[0] {
				latest = "From " + l.Node + ": " + l.Error
			}
		}
	}
	pass, fail := "passing", "failing"
	if c.Kind == store.CheckHandshake {
		pass, fail = "reachable", "unreachable"
	}
	switch {
	case len(failing) == 0:
		return pass, "ok", fromText(latest, passing)
	case len(passing) == 0:
		return fail, "bad", latest
	}
	return "partly " + fail, "warn", fmt.Sprintf("%s; passing from %s.", strings.TrimSuffix(latest, "."), strings.Join(passing, ", "))
}

// fromText adds where an answer came from: "192.0.2.10 (from p1, p2)".
func fromText(detail string, nodes []string) string {
	from := "from " + strings.Join(nodes, ", ")
	if detail == "" {
		return strings.ToUpper(from[:1]) + from[1:] + "."
	}
	return detail + " (" + from + ")"
}

// networkPoPs are the PoPs: the controller's own node when it serves clients, and the joined
// nodes with the pop role, each with the share of the last 24 hours it reported in.
func (u *UI) networkPoPs(r *http.Request, home string, now time.Time) ([]networkPoP, error) {
	rows, err := u.nodeRows(r)
	if err != nil {
		return nil, err
	}
	since := now.Add(-24 * time.Hour)
	minutes, err := u.ctrl.ReportedMinutes(r.Context(), since)
	if err != nil {
		return nil, err
	}
	reported := func(id uint32, joined time.Time) string {
		n, ok := minutes[id]
		if !ok {
			return "—"
		}
		span := 24 * 60.0
		if !joined.IsZero() && joined.After(since) {
			span = max(now.Sub(joined).Minutes(), 1)
		}
		return uptimePercent(min(100*float64(n)/span, 100))
	}
	var out []networkPoP
	if st, err := u.ctrl.Status(r.Context()); err == nil && slices.Contains(st.Roles, store.RolePop) {
		out = append(out, networkPoP{Name: u.ctrl.OwnNodeName(), Region: home, Roles: strings.Join(st.Roles, ","),
			State: "this controller", Badge: "info", Connected: true, Since: st.StartedAt,
			Reported: reported(plane.ControllerNode, st.StartedAt)})
	}
	for _, n := range rows {
		if !slices.Contains(strings.Split(n.Roles, ","), store.RolePop) {
			continue
		}
		p := networkPoP{Name: n.Name, Region: n.Region, Roles: n.Roles, State: n.Sync, Badge: n.Badge, Connected: n.Connected,
			Reported: reported(n.BackboneID, n.JoinedAt)}
		if n.Connected {
			p.Since = n.ConnectedSince
		} else {
			p.Since = n.LastSeen
			p.State, p.Badge = "offline", "bad"
			if n.LastSeen.IsZero() {
				p.State, p.Badge = "never connected", "off"
			}
		}
		out = append(out, p)
	}
	return out, nil
}
