package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestAuditFromWhatWasDone: the audit entry of an API change says what the handler did,
// whatever the body's content type; route.add records the prefix and via, policy.set the
// rule count and digest; a body that is more than one JSON value is refused and changes
// nothing.
func TestAuditFromWhatWasDone(t *testing.T) {
	e := newAuthEnv(t, nil)
	h := e.srv.ControlHandler()
	e.addTenant("acme")
	policy := "default deny\nallow any -> any tcp 443\nallow any -> any icmp\n"
	for _, c := range []struct {
		method, path, contentType, body string
		code                            int
		want                            string
	}{
		// curl -d sends application/x-www-form-urlencoded: the body is still JSON.
		{"POST", "/api/v1/tenants/acme/peers", "application/x-www-form-urlencoded", `{"name":"curl"}`, 201, `"name": "curl"`},
		{"POST", "/api/v1/tenants/acme/peers", "application/json", `{"name":"api1"} {"name":"api2"}`, 400,
			"the request body holds more than one JSON value: send exactly one JSON object, with nothing after it"},
		{"POST", "/api/v1/tenants/acme/peers", "application/json", `{"name":"api3"}x`, 400, "more than one JSON value"},
		{"POST", "/api/v1/tenants/acme/peers", "application/json", "{\"name\":\"api4\"}\r\n\t ", 201, `"name": "api4"`},
		{"POST", "/api/v1/tenants/acme/routes", "", `{"prefix":"192.0.2.0/24","via":"internet"}`, 201, `"prefix": "192.0.2.0/24"`},
		{"DELETE", "/api/v1/tenants/acme/routes?prefix=192.0.2.0%2F24", "", "", 204, ""},
		{"PUT", "/api/v1/tenants/acme/policy", "text/plain", policy, 200, `"rules": 2`},
	} {
		req := httptest.NewRequest(c.method, "http://popgate"+c.path, strings.NewReader(c.body))
		req.RemoteAddr = "@"
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s %s %q: %d %s\nwant %d with %q", c.method, c.path, c.body, rec.Code, rec.Body, c.code, c.want)
		}
	}
	if _, err := e.ctrl.Peer(context.Background(), "acme", "api1"); err == nil {
		t.Error("peer api1 of a body with two JSON values was created")
	}
	es, _, err := e.store.ListAudit(context.Background(), store.AuditQuery{Actor: "cli", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range slices.Backward(es) {
		got = append(got, en.Action+" "+en.Target+" "+en.Tenant+" "+en.Detail)
	}
	want := []string{
		"peer.add peer:acme/curl acme server-generated key; addresses 100.64.0.2, ",
		"peer.add peer:acme/api4 acme server-generated key; addresses 100.64.0.3, ",
		"route.add route:acme/192.0.2.0/24 acme via internet",
		"route.remove route:acme/192.0.2.0/24 acme was via internet",
		fmt.Sprintf("policy.set policy:acme acme 2 rules, %d bytes, sha256 %s", len(policy), store.PolicyDigest(policy)),
	}
	if len(got) != len(want) {
		t.Fatalf("audit log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("entry %d: %q, want %q", i, got[i], want[i])
		}
	}
	// A bare word finds its family (what popgate audit --action route asks).
	code, body := ctlCall(t, h, "GET", "/api/v1/audit?action=route", "")
	var log APIAuditLog
	if err := json.Unmarshal([]byte(body), &log); code != 200 || err != nil || len(log.Entries) != 2 ||
		log.Entries[0].Action != "route.remove" || log.Entries[1].Action != "route.add" {
		t.Errorf("GET /api/v1/audit?action=route: %d %s", code, body)
	}
}

// TestDeniedAudited: refusals (403) of a signed-in principal are recorded, at most one per
// principal and route a minute; the refusals in between are counted into the next entry, or
// into one of their own when housekeeping finds the minute over. A tenant's log never shows
// who from elsewhere tried to reach it.
func TestDeniedAudited(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addTenant("acme")
	e.addTenant("bravo")
	acme := e.addToken("acme-ci", store.RoleTenantAdmin, "acme", time.Time{})
	call := func(method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, e.ts.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+acme)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 5 {
		if code := call("POST", "/api/v1/tenants/bravo/peers", `{"name":"x"}`); code != 403 {
			t.Fatalf("POST bravo's peers: %d", code)
		}
	}
	if code := call("DELETE", "/api/v1/tenants/bravo/peers/phone", ""); code != 403 {
		t.Fatalf("DELETE bravo's peer: %d", code)
	}
	denied := func() []store.AuditEntry {
		es, _, err := e.store.ListAudit(context.Background(), store.AuditQuery{Action: "denied", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		slices.Reverse(es)
		return es
	}
	es := denied()
	if len(es) != 2 {
		t.Fatalf("%d denied entries, want 2 (one per route): %+v", len(es), es)
	}
	if e0 := es[0]; e0.Actor != "token:acme-ci" || e0.Tenant != "acme" || e0.Target != "tenant:bravo" || e0.Remote != "127.0.0.1" ||
		e0.Detail != `POST /api/v1/tenants/bravo/peers: token:acme-ci is limited to tenant "acme" and may not change tenant "bravo"` {
		t.Errorf("first denied entry: %+v", e0)
	}
	if es[1].Target != "peer:bravo/phone" {
		t.Errorf("second denied entry: %+v", es[1])
	}
	// The next minute: one entry again, carrying the 4 refusals not recorded.
	e.clock.Advance(deniedEvery)
	call("POST", "/api/v1/tenants/bravo/peers", `{"name":"x"}`)
	call("POST", "/api/v1/tenants/bravo/peers", `{"name":"x"}`)
	es = denied()
	if len(es) != 3 || !strings.HasSuffix(es[2].Detail, fmt.Sprintf(" (and 4 more denied since %s)", es[0].At.Format(time.RFC3339))) {
		t.Fatalf("denied entries after a minute: %+v", es)
	}
	// The one refusal after that is written by housekeeping once its minute is over.
	e.srv.flushDenials(context.Background(), e.clock.Now())
	if es = denied(); len(es) != 3 {
		t.Fatalf("flushed before the minute was over: %+v", es[3:])
	}
	e.clock.Advance(deniedEvery)
	e.srv.flushDenials(context.Background(), e.clock.Now())
	es = denied()
	if len(es) != 4 || !strings.Contains(es[3].Detail, "(and 1 more denied since") {
		t.Fatalf("denied entries after housekeeping: %+v", es)
	}
	// bravo's own log does not show acme's attempts.
	if bs, _, _ := e.store.ListAudit(context.Background(), store.AuditQuery{Tenant: "bravo", Action: "denied"}); len(bs) != 0 {
		t.Errorf("bravo's audit log shows refusals of others: %+v", bs)
	}
}
