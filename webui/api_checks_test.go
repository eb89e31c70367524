package webui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestAPIChecks: owners manage the operator's checks, a tenant's admins their tenant's; a
// token limited to a tenant sees only its tenant's checks and not the operator's, may not
// make the PoPs reach private addresses, and a viewer changes nothing.
func TestAPIChecks(t *testing.T) {
	e := newAuthEnv(t, nil)
	owner := e.addToken("ops", store.RoleOwner, "", time.Time{})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/v1/tenants", `{"name":"acme"}`},
		{"POST", "/api/v1/tenants", `{"name":"globex"}`},
		{"POST", "/api/v1/checks", `{"name":"resolver","kind":"dns","target":"www.example.com","expect":"192.0.2.10"}`},
		{"POST", "/api/v1/checks", `{"name":"intranet","kind":"http","target":"http://10.0.0.1/","every_seconds":30,"from":"region:local"}`},
		{"POST", "/api/v1/tenants/globex/checks", `{"name":"shop","kind":"http","target":"https://shop.globex.example/"}`},
	} {
		if code, body := e.call(owner, c.method, c.path, c.body); code/100 != 2 {
			t.Fatalf("owner %s %s: %d %s", c.method, c.path, code, body)
		}
	}
	code, body := e.call(owner, "GET", "/api/v1/checks", "")
	var cs APIChecks
	if code != http.StatusOK || json.Unmarshal([]byte(body), &cs) != nil || len(cs.Checks) != 4 {
		t.Fatalf("GET checks: %d %s", code, body)
	}
	if c := cs.Checks[0]; c.Name != "region:local" || c.Kind != "handshake" || c.From != "other-regions" || len(c.Runners) != 0 {
		t.Errorf("the region's check: %+v", c)
	}
	if c := cs.Checks[2]; c.Name != "resolver" || c.Expect != "192.0.2.10" || c.EverySeconds != 60 || c.From != "all" ||
		strings.Join(c.Runners, ",") != "controller" || c.Day.UptimePercent != nil || c.Week != nil {
		t.Errorf("resolver: %+v", c)
	}
	code, body = e.call(owner, "GET", "/api/v1/checks/resolver", "")
	var one APICheck
	if code != http.StatusOK || json.Unmarshal([]byte(body), &one) != nil || one.Week == nil {
		t.Errorf("GET one check: %d %s", code, body)
	}
	if code, body := e.call(owner, "GET", "/api/v1/checks?tenant=globex", ""); code != 200 || strings.Contains(body, "resolver") || !strings.Contains(body, `"shop"`) {
		t.Errorf("GET checks?tenant=globex: %d %s", code, body)
	}

	acme := e.addToken("acme-ci", store.RoleTenantAdmin, "acme", time.Time{})
	viewer := e.addToken("acme-view", store.RoleViewer, "acme", time.Time{})
	for _, c := range []struct {
		tok                string
		method, path, body string
		code               int
		want               string
	}{
		{acme, "POST", "/api/v1/tenants/acme/checks", `{"name":"site","kind":"http","target":"https://www.acme.example/","expect":"204"}`, 201, `"tenant": "acme"`},
		{acme, "POST", "/api/v1/tenants/acme/checks", `{"name":"site","kind":"http","target":"https://www.acme.example/"}`, 409, "exists already"},
		{acme, "POST", "/api/v1/tenants/acme/checks", `{"name":"lan","kind":"http","target":"http://192.168.1.1/"}`, 400, "not a public address"},
		{acme, "POST", "/api/v1/tenants/acme/checks", `{"name":"meta","kind":"http","target":"http://169.254.169.254/"}`, 400, "not a public address"},
		{acme, "POST", "/api/v1/tenants/acme/checks", `{"name":"x","kind":"ping","target":"a.example"}`, 400, "use dns or http"},
		{acme, "POST", "/api/v1/tenants/acme/checks", `{"name":"x","kind":"dns","target":"a.example","every_seconds":5}`, 400, "every 10s to 1h0m0s"},
		{acme, "POST", "/api/v1/tenants/acme/checks", `{"name":"x","kind":"dns","target":"a.example","every_seconds":99999}`, 400, "every_seconds 99999 is out of range"},
		{acme, "POST", "/api/v1/tenants/acme/checks", `{"name":"x","kind":"dns","target":"a.example","from":"node:p9"}`, 400, "there is no node p9"},
		{acme, "POST", "/api/v1/tenants/acme/checks", `{"name":"x","kind":"dns","target":"a.example","bogus":1}`, 400, "unknown field"},
		{acme, "POST", "/api/v1/tenants/globex/checks", `{"name":"x","kind":"dns","target":"a.example"}`, 403, "limited to tenant"},
		{acme, "POST", "/api/v1/checks", `{"name":"x","kind":"dns","target":"a.example"}`, 403, "may not"},
		{acme, "GET", "/api/v1/checks", "", 200, `"site"`},
		{acme, "GET", "/api/v1/checks?tenant=globex", "", 403, "may not see tenant"},
		{acme, "GET", "/api/v1/checks/resolver", "", 404, "not found"},
		{acme, "GET", "/api/v1/checks/region:local", "", 404, "not found"},
		{acme, "GET", "/api/v1/tenants/acme/checks/site", "", 200, `"expect": "204"`},
		{acme, "GET", "/api/v1/tenants/globex/checks/shop", "", 403, "limited to tenant"},
		{acme, "DELETE", "/api/v1/checks/resolver", "", 403, "may not"},
		{viewer, "DELETE", "/api/v1/tenants/acme/checks/site", "", 403, "may only read"},
		{viewer, "GET", "/api/v1/tenants/acme/checks/site", "", 200, `"name": "site"`},
		{acme, "DELETE", "/api/v1/tenants/acme/checks/nope", "", 404, "not found"},
		{acme, "DELETE", "/api/v1/tenants/acme/checks/site", "", 204, ""},
	} {
		code, body := e.call(c.tok, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s\nwant %d with %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
		for _, other := range []string{"globex", "resolver", "intranet", "region:"} {
			if strings.Contains(body, other) && !strings.Contains(c.path, other) {
				t.Errorf("%s %s: the answer to acme's token names %q: %s", c.method, c.path, other, body)
			}
		}
	}
	for _, c := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"DELETE", "/api/v1/checks/region:local", 400, "goes when the region is removed"},
		{"DELETE", "/api/v1/checks/intranet", 204, ""},
		{"GET", "/api/v1/checks/intranet", 404, "not found"},
		{"GET", "/api/v1/checks?tenant=nope", 404, "not found"},
	} {
		if code, body := e.call(owner, c.method, c.path, ""); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("owner %s %s: %d %s, want %d with %q", c.method, c.path, code, body, c.code, c.want)
		}
	}
	e.wantAudit("token:ops check.add check:resolver")
	e.wantAudit("token:acme-ci check.add check:acme/site")
	e.wantAudit("token:acme-ci check.remove check:acme/site")
}
