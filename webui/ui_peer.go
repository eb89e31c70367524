package webui

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/popgate/popgate/gateway/control"
)

// peerPage is the data of a peer's page.
type peerPage struct {
	Peer         control.PeerInfo
	CanChange    bool
	HasLifecycle bool      // rename and expiry are available
	Expires      time.Time // zero: never
	Expired      bool
	// Regions are the regions the peer may connect in, each with its config page.
	Regions []regionChoice
	// Form refills the form that was refused; Errors holds its inline errors by field.
	Form   map[string]string
	Errors formErrors
	// Chart is the peer's traffic over the last day, at every node it connected to.
	Chart trafficChart
}

// peer serves GET /tenants/{tenant}/peers/{peer}: the peer, its live state and the forms that
// change it.
func (u *UI) peer(w http.ResponseWriter, r *http.Request) {
	u.renderPeer(w, r, http.StatusOK, nil, nil)
}

// renderPeer writes the peer's page, with form and errs for a refused form.
func (u *UI) renderPeer(w http.ResponseWriter, r *http.Request, code int, form map[string]string, errs formErrors) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.seeTenant(w, r, t) {
		return
	}
	pi, err := u.ctrl.Peer(r.Context(), t, name)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := peerPage{Peer: pi, CanChange: principal(r).CanChangeTenant(t), HasLifecycle: u.lifecycle != nil,
		Form: form, Errors: errs}
	// A refused form keeps what was typed; the other forms show the peer as it is.
	if p.Form == nil {
		p.Form = map[string]string{}
	}
	for k, v := range map[string]string{
		"name":          pi.Name,
		"groups":        strings.Join(pi.Groups, ", "),
		"site":          pi.Site,
		"site_prefixes": joinPrefixes(pi),
	} {
		if _, ok := p.Form[k]; !ok {
			p.Form[k] = v
		}
	}
	rs, _, err := u.configRegions(r.Context(), t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	for _, rg := range rs {
		p.Regions = append(p.Regions, regionChoice{Name: rg.Name, Endpoint: rg.Endpoint, Home: rg.Home,
			URL: peerPath(t, name) + "/config?region=" + url.QueryEscape(rg.Name)})
	}
	p.Chart = u.peerChart(r, t, name)
	p.Expires = pi.ExpiresAt
	p.Expired = pi.Expired(u.now())
	if _, ok := p.Form["expires"]; !ok && !p.Expires.IsZero() {
		// The form names the last day the peer works; it stops at the end of it.
		p.Form["expires"] = p.Expires.Add(-time.Second).UTC().Format(time.DateOnly)
	}
	u.render(w, r, code, "peer", view{Title: name + " · " + t, Nav: "peers", Data: p})
}

func joinPrefixes(p control.PeerInfo) string {
	s := make([]string, len(p.SitePrefixes))
	for i, pf := range p.SitePrefixes {
		s[i] = pf.String()
	}
	return strings.Join(s, "\n")
}

// peerChart draws the traffic of peer name of tenant over the last day, like tenantChart.
func (u *UI) peerChart(r *http.Request, tenant, name string) trafficChart {
	const id = "traffic-peer"
	s, err := u.ctrl.PeerTraffic(r.Context(), tenant, name, chartDay)
	if err != nil {
		u.log.Error("cannot read a peer's traffic history", "tenant", tenant, "peer", name, "err", err)
		return trafficChart{ID: id, Err: "The traffic history could not be read; the details are in the popgate log."}
	}
	return newTrafficChart(id, name, "the last 24 hours", s, u.now())
}
