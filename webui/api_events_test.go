package webui

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestAPIEvents: the event log on the API, newest first, filtered by kind, tenant and time;
// a token limited to a tenant gets its tenant's events only (not the network's, not
// another tenant's); the webhook is the owners': set answers the secret once, show never
// has it, and both are audited without the URL's path.
func TestAPIEvents(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addTenant("acme")
	e.addTenant("bravo")
	owner := e.addToken("ops", store.RoleOwner, "", time.Time{})
	acme := e.addToken("acme-ci", store.RoleTenantAdmin, "acme", time.Time{})
	viewer := e.addToken("monitor", store.RoleViewer, "", time.Time{})
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	if _, err := e.store.AddEvents(context.Background(), []store.Event{
		{At: t0, Kind: "link.down", Node: "p1", Subject: "link:p1/x1", Message: "x1 down"},
		{At: t0.Add(time.Second), Kind: "failover", Node: "p1", Tenant: "acme", Subject: "route:acme/10.99.0.0/16", Message: "x1 → x2", Data: map[string]string{"to": "x2"}},
		{At: t0.Add(2 * time.Second), Kind: "peer.expiring", Node: "controller", Tenant: "bravo", Subject: "peer:bravo/laptop"},
	}); err != nil {
		t.Fatal(err)
	}
	list := func(token, query string) []string {
		t.Helper()
		code, body := e.call(token, "GET", "/api/v1/events"+query, "")
		if code != http.StatusOK {
			t.Fatalf("GET /api/v1/events%s: %d %s", query, code, body)
		}
		var out APIEvents
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, ev := range out.Events {
			kinds = append(kinds, ev.Kind)
		}
		return kinds
	}
	for _, c := range []struct {
		token, query, want string
	}{
		{owner, "", "peer.expiring failover link.down"},
		{viewer, "?kind=link", "link.down"},
		{owner, "?tenant=acme", "failover"},
		{owner, "?since=" + t0.Add(time.Second).UTC().Format(time.RFC3339), "peer.expiring failover"},
		{owner, "?limit=1&offset=1", "failover"},
		// A tenant's token: its own events alone, asked or not.
		{acme, "", "failover"},
		{acme, "?tenant=acme&kind=failover", "failover"},
	} {
		if got := strings.Join(list(c.token, c.query), " "); got != c.want {
			t.Errorf("GET /api/v1/events%s: %q, want %q", c.query, got, c.want)
		}
	}
	if code, _ := e.call(acme, "GET", "/api/v1/events?tenant=bravo", ""); code != http.StatusForbidden {
		t.Errorf("acme's token asking for bravo's events: %d, want 403", code)
	}
	_, body := e.call(owner, "GET", "/api/v1/events?kind=failover", "")
	var page APIEvents
	json.Unmarshal([]byte(body), &page)
	if ev := page.Events[0]; ev.ID != 2 || ev.Node != "p1" || ev.Tenant != "acme" || ev.Data["to"] != "x2" || !ev.Time.Equal(t0.Add(time.Second)) {
		t.Errorf("event %+v", ev)
	}

	// The webhook: owners only.
	for _, token := range []string{acme, viewer} {
		if code, _ := e.call(token, "PUT", "/api/v1/events/webhook", `{"url":"https://alerts.example.com/x"}`); code != http.StatusForbidden {
			t.Errorf("a non-owner sets the webhook: %d", code)
		}
		if code, _ := e.call(token, "GET", "/api/v1/events/webhook", ""); code != http.StatusForbidden {
			t.Errorf("a non-owner reads the webhook: %d", code)
		}
	}
	code, body := e.call(owner, "PUT", "/api/v1/events/webhook", `{"url":"https://alerts.example.com/hooks/SECRETPATH"}`)
	var created APIWebhookCreated
	if code != http.StatusOK || json.Unmarshal([]byte(body), &created) != nil || len(created.Secret) != 64 || created.Webhook.URL != "https://alerts.example.com/hooks/SECRETPATH" {
		t.Fatalf("PUT /api/v1/events/webhook: %d %s", code, body)
	}
	code, body = e.call(owner, "GET", "/api/v1/events/webhook", "")
	if code != http.StatusOK || strings.Contains(body, created.Secret) || !strings.Contains(body, `"queued": 0`) {
		t.Errorf("GET /api/v1/events/webhook: %d %s", code, body)
	}
	if code, body := e.call(owner, "PUT", "/api/v1/events/webhook", `{"url":"https://user:pw@alerts.example.com/"}`); code != http.StatusBadRequest || !strings.Contains(body, "user name or password") {
		t.Errorf("a URL with a password: %d %s", code, body)
	}
	if code, _ := e.call(owner, "DELETE", "/api/v1/events/webhook", ""); code != http.StatusNoContent {
		t.Errorf("DELETE: %d", code)
	}
	e.wantAudit("token:ops webhook.set webhook:events", "token:ops webhook.remove webhook:events",
		"token:acme-ci denied", "token:monitor denied")
	es, _, _ := e.store.ListAudit(context.Background(), store.AuditQuery{Action: "webhook"})
	for _, a := range es {
		if strings.Contains(a.Detail, "SECRETPATH") {
			t.Errorf("the audit log has the URL's path: %+v", a)
		}
	}
}
