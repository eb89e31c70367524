package webui

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestUIEventsPage: the Events page lists the events, newest first, filtered by kind,
// tenant and time; a tenant's admin sees only the tenant's (never the network's, never
// another tenant's, whatever the query says); owners see where the webhook stands, others
// not at all.
func TestUIEventsPage(t *testing.T) {
	h := newUIHarness(t)
	ctx := context.Background()
	now := time.Now()
	if _, err := h.store.AddEvents(ctx, []store.Event{
		{At: now.Add(-48 * time.Hour), Kind: "link.down", Node: "p1", Subject: "link:p1/x1", Message: "backbone link p1 → x1 is down"},
		{At: now.Add(-time.Minute), Kind: "failover", Node: "p1", Tenant: "acme", Subject: "route:acme/10.99.0.0/16", Message: "p1: route 10.99.0.0/16 of tenant acme now leaves through x2 (was x1)"},
		{At: now, Kind: "peer.expiring", Node: "controller", Tenant: "bravo", Subject: "peer:bravo/phone", Message: "peer phone of tenant bravo expires soon"},
	}); err != nil {
		t.Fatal(err)
	}
	body := h.check(owner, "GET", "/events", nil, http.StatusOK, "<h1>Events</h1>", "link:p1/x1", "now leaves through x2", "peer:bravo/phone",
		`<option value="acme">acme</option>`, "No webhook is set", `aria-current="page">Events</a>`)
	if i, j := strings.Index(body, "peer:bravo/phone"), strings.Index(body, "link:p1/x1"); i > j {
		t.Error("the events are not newest first")
	}
	for _, c := range []struct {
		as      *Principal
		path    string
		want    []string
		notWant []string
	}{
		{owner, "/events?kind=failover", []string{"route:acme/10.99.0.0/16"}, []string{"link:p1/x1", "peer:bravo/phone"}},
		{owner, "/events?tenant=bravo", []string{"peer:bravo/phone"}, []string{"link:p1/x1", "route:acme"}},
		{owner, "/events?since=24h", []string{"route:acme", "peer:bravo/phone"}, []string{"link:p1/x1"}},
		{viewer, "/events", []string{"link:p1/x1", "route:acme"}, []string{"Webhook"}},
		// A tenant's admin: its own events only, whatever it asks.
		{acmeAdmin, "/events", []string{"route:acme/10.99.0.0/16", "in tenant acme"}, []string{"link:p1/x1", "peer:bravo", "Webhook", `name="tenant"`}},
		{owner, "/events?kind=bogus", []string{"link:p1/x1"}, nil},
	} {
		body := h.check(c.as, "GET", c.path, nil, http.StatusOK, c.want...)
		for _, s := range c.notWant {
			if strings.Contains(body, s) {
				t.Errorf("GET %s as %s shows %q", c.path, name(c.as), s)
			}
		}
	}
	h.check(acmeAdmin, "GET", "/events?tenant=bravo", nil, http.StatusNotFound)

	// The webhook, for owners: where it sends, what it delivered; never its secret.
	_, secret, err := h.ctrl.SetWebhook(setup(), "https://alerts.example.com/popgate")
	if err != nil {
		t.Fatal(err)
	}
	body = h.check(owner, "GET", "/events", nil, http.StatusOK, "https://alerts.example.com/popgate", "Delivered")
	if strings.Contains(body, secret) {
		t.Error("the Events page shows the webhook's secret")
	}
}
