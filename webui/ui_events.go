package webui

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// eventsPerPage is how many events one page of the event log shows.
const eventsPerPage = 100

// eventKind is a family of events the Events page filters by.
type eventKind struct{ Value, Label string }

// eventKinds are the families the Events page filters by.
var eventKinds = []eventKind{
	{"", "Every kind"},
	{"failover", "Failovers"},
	{"link", "Backbone links"},
	{"node", "Nodes"},
	{"peer", "Peers"},
	{"check", "Checks"},
}

// eventWindow is a time the Events page looks back: d, 0 for any time.
type eventWindow struct {
	Value, Label string
	d            time.Duration
}

// eventWindows are the times the Events page looks back.
var eventWindows = []eventWindow{
	{"", "Any time", 0},
	{"1h", "Last hour", time.Hour},
	{"24h", "Last day", 24 * time.Hour},
	{"7d", "Last week", 7 * 24 * time.Hour},
}

// eventsPage is the data of the Events page.
type eventsPage struct {
	logFilter
	Events  []store.Event
	Kind    string
	Since   string
	Kinds   []eventKind
	Windows []eventWindow
	// Webhook is where events go, for owners; nil: none set, or not an owner.
	Webhook  *control.WebhookInfo
	SeesHook bool // an owner: the webhook's card shows
}

// eventsPage serves GET /events[?tenant=T][&kind=K][&since=W][&page=N]: the state changes
// an operator wants to hear of, newest first. A principal limited to one tenant sees only
// that tenant's events (not the network's); owners see where the webhook stands.
func (u *UI) eventsPage(w http.ResponseWriter, r *http.Request) {
	f, ok := u.readLogFilter(w, r)
	if !ok {
		return
	}
	qv := r.URL.Query()
	p := eventsPage{logFilter: f, Kind: qv.Get("kind"), Since: qv.Get("since"), SeesHook: seesNodes(principal(r)), Kinds: eventKinds, Windows: eventWindows}
	q := store.EventQuery{Tenant: p.Tenant, Offset: p.offset(eventsPerPage), Limit: eventsPerPage}
	if !slices.ContainsFunc(eventKinds, func(k eventKind) bool { return k.Value == p.Kind }) {
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
	es, more, err := u.ctrl.Events(r.Context(), q)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p.Events = es
	p.setPager("/events", map[string]string{"kind": p.Kind, "since": p.Since}, more)
	if err := u.offerTenants(r, &p.logFilter); err != nil {
		u.fail(w, r, err)
		return
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
