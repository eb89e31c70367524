package webui

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// eventsPerPage is how many events one page of the event log shows.
const eventsPerPage = 100

// eventKinds are the families the Events page filters by.
var eventKinds = []struct{ Value, Label string }{
	{"", "Every kind"},
	{"failover", "Failovers"},
	{"link", "Backbone links"},
	{"node", "Nodes"},
	{"peer", "Peers"},
	{"check", "Checks"},
}

// eventWindows are the times the Events page looks back.
var eventWindows = []struct {
	Value, Label string
	d            time.Duration
}{
	{"", "Any time", 0},
	{"1h", "Last hour", time.Hour},
	{"24h", "Last day", 24 * time.Hour},
	{"7d", "Last week", 7 * 24 * time.Hour},
}

// eventsPage is the data of the Events page.
type eventsPage struct {
	Events  []store.Event
	Tenant  string // the filter; forced for a principal limited to one tenant
	Kind    string
	Since   string
	Scoped  bool
	Tenants []string
	Kinds   []struct{ Value, Label string }
	Windows []struct{ Value, Label string }
	// Webhook is where events go, for owners; nil: none set, or not an owner.
	Webhook  *control.WebhookInfo
	SeesHook bool // an owner: the webhook's card shows
	NewerURL string
	OlderURL string
}

// eventsPage serves GET /events[?tenant=T][&kind=K][&since=W][&page=N]: the state changes
// an operator wants to hear of, newest first. A principal limited to one tenant sees only
// that tenant's events (not the network's); owners see where the webhook stands.
func (u *UI) eventsPage(w http.ResponseWriter, r *http.Request) {
	me := principal(r)
	qv := r.URL.Query()
	p := eventsPage{Tenant: qv.Get("tenant"), Kind: qv.Get("kind"), Since: qv.Get("since"), Scoped: me.Tenant != "", SeesHook: seesNodes(me), Kinds: eventKinds}
	for _, win := range eventWindows {
		p.Windows = append(p.Windows, struct{ Value, Label string }{win.Value, win.Label})
	}
	if p.Tenant != "" && !u.seeTenant(w, r, p.Tenant) {
		return
	}
	if p.Scoped {
		p.Tenant = me.Tenant
	}
	q := store.EventQuery{Tenant: p.Tenant, Limit: eventsPerPage}
	known := false
	for _, k := range eventKinds {
		known = known || k.Value == p.Kind
	}
	if !known {
		p.Kind = ""
	}
	q.Kind = p.Kind
	for _, win := range eventWindows {
		if win.Value == p.Since && win.d > 0 {
			q.Since = u.now().Add(-win.d)
		}
	}
	if q.Since.IsZero() {
		p.Since = ""
	}
	page, _ := strconv.Atoi(qv.Get("page"))
	page = max(page, 1)
	q.Offset = (page - 1) * eventsPerPage
	es, more, err := u.ctrl.Events(r.Context(), q)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p.Events = es
	pageURL := func(n int) string {
		v := url.Values{}
		if p.Tenant != "" && !p.Scoped {
			v.Set("tenant", p.Tenant)
		}
		if p.Kind != "" {
			v.Set("kind", p.Kind)
		}
		if p.Since != "" {
			v.Set("since", p.Since)
		}
		if n > 1 {
			v.Set("page", strconv.Itoa(n))
		}
		if len(v) == 0 {
			return "/events"
		}
		return "/events?" + v.Encode()
	}
	if more {
		p.OlderURL = pageURL(page + 1)
	}
	if page > 1 {
		p.NewerURL = pageURL(page - 1)
	}
	if !p.Scoped {
		ts, err := u.ctrl.ListTenants(r.Context())
		if err != nil {
			u.fail(w, r, err)
			return
		}
		for _, t := range ts {
			if me.CanSeeTenant(t.Name) {
				p.Tenants = append(p.Tenants, t.Name)
			}
		}
	}
	if p.SeesHook {
		hook, err := u.ctrl.Webhook(r.Context())
		switch {
		case err == nil:
			p.Webhook = &hook
		case !errors.Is(err, store.ErrNotFound):
			u.fail(w, r, err)
			return
		}
	}
	u.render(w, r, http.StatusOK, "events", view{Title: "Events", Nav: "events", Data: p})
}
