package webui

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// call sends an API request with the token (none when "") and returns status and body.
func (e *authEnv) call(token, method, path, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
		if method == http.MethodPut && strings.HasSuffix(path, "/policy") {
			req.Header.Set("Content-Type", "text/plain")
		}
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestAPITokens walks the API on the web address with tokens of every scope: each sees and
// changes only what its role and tenant allow.
func TestAPITokens(t *testing.T) {
	e := newAuthEnvNode(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	owner := e.addToken("ops", store.RoleOwner, "", time.Time{})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/v1/tenants", `{"name":"acme"}`},
		{"POST", "/api/v1/tenants", `{"name":"bravo"}`},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"laptop"}`},
		{"POST", "/api/v1/tenants/bravo/peers", `{"name":"phone"}`},
	} {
		if code, body := e.call(owner, c.method, c.path, c.body); code != http.StatusCreated {
			t.Fatalf("owner %s %s: %d %s", c.method, c.path, code, body)
		}
	}
	acme := e.addToken("acme-ci", store.RoleTenantAdmin, "acme", time.Time{})
	view := e.addToken("monitor", store.RoleViewer, "", time.Time{})
	acmeView := e.addToken("acme-monitor", store.RoleViewer, "acme", time.Time{})
	expired := e.addToken("old", store.RoleOwner, "", time.Now().Add(time.Hour))
	e.clock.Advance(2 * time.Hour)

	// Without a valid token: 401 with a challenge, whatever the route.
	b := e.browser()
	b.mustSignIn("root")
	for _, tc := range []struct{ token, want string }{
		{"", "missing API token"},
		{"pgt_" + strings.Repeat("x", 43), "unknown API token"},
		{"garbage", "unknown API token"},
		{expired, `API token \"old\" expired at`},
	} {
		code, body := e.call(tc.token, "GET", "/api/v1/tenants", "")
		if code != http.StatusUnauthorized || !strings.Contains(body, tc.want) {
			t.Errorf("token %q: %d %s", tc.token, code, body)
		}
	}
	// A signed-in browser's cookie is no API credential.
	resp, body := b.get("/api/v1/tenants")
	want(t, "cookie on the API", resp, body, http.StatusUnauthorized, "missing API token")
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	if code, body := e.call(owner, "GET", "/api/v1/nope", ""); code != http.StatusNotFound || !strings.Contains(body, "no such API route") {
		t.Errorf("unknown route: %d %s", code, body)
	}

	type check struct {
		method, path, body string
		want               int
	}
	for _, tc := range []struct {
		who    string
		token  string
		checks []check
	}{
		{"tenant admin of acme", acme, []check{
			{"GET", "/api/v1/tenants/acme/peers/laptop", "", 200},
			{"GET", "/api/v1/tenants/acme/peers/laptop/config", "", 200},
			{"GET", "/api/v1/tenants/bravo/peers/phone", "", 403},
			{"GET", "/api/v1/tenants/bravo/peers/phone/config", "", 403},
			{"GET", "/api/v1/tenants/bravo/policy", "", 403},
			{"GET", "/api/v1/tenants/nope/routes", "", 403}, // no telling which tenants exist
			{"GET", "/api/v1/peers?tenant=bravo", "", 403},
			{"GET", "/api/v1/audit?tenant=bravo", "", 403},
			{"POST", "/api/v1/tenants/acme/peers", `{"name":"tablet"}`, 201},
			{"POST", "/api/v1/tenants/bravo/peers", `{"name":"tablet"}`, 403},
			{"POST", "/api/v1/tenants/acme/peers/tablet/disable", "", 200},
			{"POST", "/api/v1/tenants/bravo/peers/phone/disable", "", 403},
			{"PATCH", "/api/v1/tenants/acme", `{"split_tunnel":true}`, 200},
			{"PATCH", "/api/v1/tenants/bravo", `{"split_tunnel":true}`, 403},
			{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flows":1000000}`, 403}, // its share is the operator's to set
			{"PUT", "/api/v1/tenants/bravo/policy", "default deny\n", 403},
			{"POST", "/api/v1/tenants/acme/peers/tablet/rename", `{"name":"slate"}`, 200},
			{"PUT", "/api/v1/tenants/acme/peers/slate/expiry", `{"expires_at":"2099-01-01T00:00:00Z"}`, 200},
			{"POST", "/api/v1/tenants/acme/peers/slate/links", `{"valid_seconds":3600}`, 201},
			{"POST", "/api/v1/tenants/bravo/peers/phone/links", `{}`, 403},
			{"DELETE", "/api/v1/tenants/acme/peers/slate", "", 204},
			{"DELETE", "/api/v1/tenants/bravo/peers/phone", "", 403},
			{"POST", "/api/v1/tenants", `{"name":"mine"}`, 403},
			{"DELETE", "/api/v1/tenants/acme", "", 403},
			{"GET", "/api/v1/admins", "", 403},
			{"POST", "/api/v1/admins", `{"name":"eve","role":"owner"}`, 403},
			{"POST", "/api/v1/tokens", `{"name":"eve","role":"owner"}`, 403},
		}},
		{"viewer", view, []check{
			{"GET", "/api/v1/tenants/bravo/peers/phone", "", 200},
			{"GET", "/api/v1/tenants/bravo/policy", "", 200},
			{"GET", "/api/v1/audit", "", 200},
			{"GET", "/api/v1/tenants/bravo/peers/phone/config", "", 403},
			{"POST", "/api/v1/tenants/acme/peers", `{"name":"x"}`, 403},
			{"POST", "/api/v1/tenants/bravo/peers/phone/enable", "", 403},
			{"PUT", "/api/v1/tenants/acme/policy", "default deny\n", 403},
			{"GET", "/api/v1/tokens", "", 403},
		}},
		{"viewer of acme", acmeView, []check{
			{"GET", "/api/v1/tenants/acme/peers/laptop", "", 200},
			{"GET", "/api/v1/tenants/bravo/peers/phone", "", 403},
			{"GET", "/api/v1/tenants/acme/peers/laptop/config", "", 403},
			{"DELETE", "/api/v1/tenants/acme/peers/laptop", "", 403},
		}},
		{"owner", owner, []check{
			{"GET", "/api/v1/tenants/bravo/peers/phone/config", "", 200},
			{"GET", "/api/v1/admins", "", 200},
			{"GET", "/api/v1/tokens", "", 200},
			{"PUT", "/api/v1/admins/root/password", `{"password":"short"}`, 400},
			{"POST", "/api/v1/tenants/bravo/peers/phone/disable", "", 200},
			{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flows_per_peer":500}`, 200},
		}},
	} {
		for _, c := range tc.checks {
			code, body := e.call(tc.token, c.method, c.path, c.body)
			if code != c.want {
				t.Errorf("%s: %s %s = %d, want %d: %s", tc.who, c.method, c.path, code, c.want, body)
			}
			if code == http.StatusForbidden && !strings.Contains(body, "token:") {
				t.Errorf("%s: %s %s: refusal does not say who: %s", tc.who, c.method, c.path, body)
			}
		}
	}

	// Lists show only the token's tenant.
	var ts APITenants
	getJSON(t, e, acme, "/api/v1/tenants", &ts)
	if len(ts.Tenants) != 1 || ts.Tenants[0].Name != "acme" {
		t.Errorf("tenants of acme's token: %+v", ts.Tenants)
	}
	getJSON(t, e, view, "/api/v1/tenants", &ts)
	if len(ts.Tenants) != 2 {
		t.Errorf("tenants of the viewer: %+v", ts.Tenants)
	}
	var ps APIPeers
	getJSON(t, e, acmeView, "/api/v1/peers", &ps)
	if len(ps.Peers) != 1 || ps.Peers[0].Tenant != "acme" {
		t.Errorf("peers of acme's viewer: %+v", ps.Peers)
	}
	getJSON(t, e, acme, "/api/v1/peers?tenant=acme", &ps)
	if len(ps.Peers) != 1 {
		t.Errorf("peers?tenant=acme of acme's token: %+v", ps.Peers)
	}
	// A handshake initiation (its mac1 wrong) reaches the node: the node's counters are not
	// acme's to see.
	var st APIStatus
	getJSON(t, e, owner, "/api/v1/status", &st)
	udp, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", st.Device.ListenPort))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	initiation := make([]byte, 148)
	initiation[0] = 1
	for deadline := time.Now().Add(5 * time.Second); st.Device.Handshakes.Initiations == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the node counted no initiation: %+v", st.Device.Handshakes)
		}
		if _, err := udp.Write(initiation); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		getJSON(t, e, owner, "/api/v1/status", &st)
	}
	st = APIStatus{}
	getJSON(t, e, acme, "/api/v1/status", &st)
	if len(st.Tenants) != 1 || st.Tenants[0].Name != "acme" || st.Peers.Total != 1 || st.Peers.Enabled != 1 || st.Device.Drops != nil {
		t.Errorf("status of acme's token: tenants %+v, peers %+v", st.Tenants, st.Peers)
	}
	if st.Device.Handshakes.Initiations != 0 || st.Device.Handshakes.Drops != nil {
		t.Errorf("status of acme's token shows the node's handshakes: %+v", st.Device.Handshakes)
	}
	if st.Desired != nil {
		t.Errorf("status of acme's token shows the desired state of every tenant: %+v", st.Desired)
	}
	getJSON(t, e, owner, "/api/v1/status", &st)
	if len(st.Tenants) != 2 || st.Peers.Total != 2 {
		t.Errorf("status of the owner: tenants %+v, peers %+v", st.Tenants, st.Peers)
	}
	if d := st.Desired; d == nil || d.Generation == 0 || d.Applied != d.Generation || d.Error != "" {
		t.Errorf("status of the owner: desired state %+v", d)
	}
	var log APIAuditLog
	getJSON(t, e, acme, "/api/v1/audit", &log)
	if len(log.Entries) == 0 {
		t.Error("acme's token sees no audit entries")
	}
	for _, en := range log.Entries {
		if en.Tenant != "acme" {
			t.Errorf("acme's token sees %+v", en)
		}
	}

	// Changes are in the audit log under the token's name; refusals only as such.
	e.wantAudit("token:ops tenant.add tenant:acme", "token:ops peer.add peer:acme/laptop",
		"token:acme-ci peer.add peer:acme/tablet", "token:acme-ci peer.rename peer:acme/tablet",
		"token:acme-ci peer.remove peer:acme/slate", "token:ops peer.disable peer:bravo/phone",
		"token:acme-ci denied peer:bravo/phone")
	for _, a := range e.auditActions() {
		if strings.Contains(a, "bravo") && strings.Contains(a, "acme-ci") && !strings.Contains(a, " denied ") {
			t.Errorf("a refused change was recorded: %s", a)
		}
	}
}

func getJSON(t *testing.T, e *authEnv, token, path string, v any) {
	t.Helper()
	code, body := e.call(token, "GET", path, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// TestAPIRoutesTable: every route of the access table exists in the API, once. (A route of
// the API missing from the table is refused on the web address: closed by default.)
func TestAPIRoutesTable(t *testing.T) {
	e := newAuthEnv(t, nil)
	seen := map[string]bool{}
	for _, rt := range apiRoutes() {
		if seen[rt.pattern] {
			t.Errorf("%s twice", rt.pattern)
		}
		seen[rt.pattern] = true
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = strings.NewReplacer("{tenant}", "t", "{peer}", "p", "{admin}", "a", "{token}", "k").Replace(path)
		_, pattern := e.srv.api.mux.Handler(httptest.NewRequest(method, path, nil))
		if pattern != rt.pattern {
			t.Errorf("%s: the API routes %s %s to %q", rt.pattern, method, path, pattern)
		}
		if (rt.action == "") != (method == http.MethodGet) {
			t.Errorf("%s: audit action %q", rt.pattern, rt.action)
		}
	}
	for _, p := range []string{"GET /api/v1/status", "POST /api/v1/admins", "GET /api/v1/audit"} {
		if !slices.ContainsFunc(apiRoutes(), func(rt apiRoute) bool { return rt.pattern == p }) {
			t.Errorf("%s missing", p)
		}
	}
}

// TestAPIRoutesScoping: a read route without a {tenant} in its path must filter its answer
// for a principal limited to a tenant; changes without one are for unlimited principals.
func TestAPIRoutesScoping(t *testing.T) {
	scoped := &Principal{Name: "token:x", Role: RoleTenantAdmin, Tenant: "acme"}
	for _, rt := range apiRoutes() {
		hasTenant := strings.Contains(rt.pattern, "{tenant}")
		if rt.access == accessRead && !hasTenant && rt.scoped == nil {
			t.Errorf("%s: a read of every tenant without a filter", rt.pattern)
		}
		if rt.access != accessRead && !hasTenant && rt.refusal(scoped, "") == "" {
			t.Errorf("%s: a change without a tenant is allowed to %s", rt.pattern, scoped.Name)
		}
	}
}
