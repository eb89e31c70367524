package webui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestAPIRegions: owners manage regions and which regions a tenant may use; a token limited
// to a tenant sees the regions but, of the tenants limited to them, only its own, and cannot
// widen its tenant's regions.
func TestAPIRegions(t *testing.T) {
	e := newAuthEnv(t, nil)
	owner := e.addToken("ops", store.RoleOwner, "", time.Time{})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/v1/tenants", `{"name":"acme"}`},
		{"POST", "/api/v1/tenants", `{"name":"globex"}`},
		{"POST", "/api/v1/regions", `{"name":"fra","endpoint":"vpn-fra.example.com:51820"}`},
		{"PATCH", "/api/v1/tenants/acme", `{"regions":["fra"]}`},
		{"PATCH", "/api/v1/tenants/globex", `{"regions":["fra","local"]}`},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"laptop","region":"fra"}`},
	} {
		if code, body := e.call(owner, c.method, c.path, c.body); code/100 != 2 {
			t.Fatalf("owner %s %s: %d %s", c.method, c.path, code, body)
		}
	}
	code, body := e.call(owner, "GET", "/api/v1/regions", "")
	var rs APIRegions
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rs) != nil || len(rs.Regions) != 2 {
		t.Fatalf("GET regions: %d %s", code, body)
	}
	if fra := rs.Regions[0]; fra.Name != "fra" || fra.Home || strings.Join(fra.Tenants, ",") != "acme,globex" {
		t.Errorf("fra: %+v", fra)
	}
	if local := rs.Regions[1]; local.Name != "local" || !local.Home || strings.Join(local.Tenants, ",") != "globex" {
		t.Errorf("local: %+v", local)
	}
	code, body = e.call(owner, "GET", "/api/v1/tenants/acme/peers/laptop/config?region=fra", "")
	if code != http.StatusOK || !strings.Contains(body, "Endpoint = vpn-fra.example.com:51820\n") || !strings.Contains(body, "PublicKey = "+rs.Regions[0].PublicKey+"\n") {
		t.Errorf("fra config: %d %s", code, body)
	}

	acme := e.addToken("acme-ci", store.RoleTenantAdmin, "acme", time.Time{})
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/api/v1/regions", "", 200, `"acme"`},
		{"PATCH", "/api/v1/tenants/acme", `{"regions":["all"]}`, 403, "may not change the regions of tenant acme"},
		{"GET", "/api/v1/tenants/acme/peers/laptop/config", "", 400, "'popgate tenant set --tenant acme --regions fra,local'"},
		{"POST", "/api/v1/regions", `{"name":"par","endpoint":"x.example.com:1"}`, 403, "may not"},
		{"DELETE", "/api/v1/regions/fra", "", 403, "may not"},
	} {
		code, body := e.call(acme, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s\nwant %d with %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
		if strings.Contains(body, "globex") {
			t.Errorf("%s %s: the answer to acme's token names tenant globex: %s", c.method, c.path, body)
		}
	}
	e.wantAudit("token:ops region.add region:fra")
}
