package webui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestAPIDNSZones: a tenant's admins manage its split zones and see no other tenant's; a
// server out of the tenant's reach is refused saying what to do; a viewer changes nothing;
// every change is audited.
func TestAPIDNSZones(t *testing.T) {
	e := newAuthEnv(t, nil)
	owner := e.addToken("ops", store.RoleOwner, "", time.Time{})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/v1/tenants", `{"name":"acme"}`},
		{"POST", "/api/v1/tenants", `{"name":"globex"}`},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"gw","site":"office","site_prefixes":["10.10.0.0/24"]}`},
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"10.10.0.0/24","via":"site:office"}`},
		{"POST", "/api/v1/tenants/globex/peers", `{"name":"gw","site":"office","site_prefixes":["10.10.0.0/24"]}`},
		{"POST", "/api/v1/tenants/globex/routes", `{"prefix":"10.10.0.0/24","via":"site:office"}`},
		{"POST", "/api/v1/tenants/globex/dns/zones", `{"zone":"globex.example","servers":["10.10.0.53"]}`},
	} {
		if code, body := e.call(owner, c.method, c.path, c.body); code/100 != 2 {
			t.Fatalf("owner %s %s: %d %s", c.method, c.path, code, body)
		}
	}
	acme := e.addToken("acme-ci", store.RoleTenantAdmin, "acme", time.Time{})
	viewer := e.addToken("acme-view", store.RoleViewer, "acme", time.Time{})
	for _, c := range []struct {
		tok                string
		method, path, body string
		code               int
		want               string
	}{
		{acme, "POST", "/api/v1/tenants/acme/dns/zones", `{"zone":"Corp.Example.COM.","servers":["10.10.0.53","[fd00::53]:5353"]}`, 400, "fd00::53 is routed via internet (acme's route ::/0)"},
		{acme, "POST", "/api/v1/tenants/acme/dns/zones", `{"zone":"Corp.Example.COM.","servers":["10.10.0.53","10.10.0.54:5353"]}`, 201, `"servers": [
    "10.10.0.53:53",
    "10.10.0.54:5353"
  ]`},
		{acme, "POST", "/api/v1/tenants/acme/dns/zones", `{"zone":"corp.example.com","servers":["10.10.0.53"]}`, 409, "already has DNS zone corp.example.com"},
		{acme, "POST", "/api/v1/tenants/acme/dns/zones", `{"zone":"lab.example","servers":["10.9.0.53"]}`, 400, "10.9.0.53 is routed via internet (acme's route 0.0.0.0/0), not to one of its sites"},
		{acme, "POST", "/api/v1/tenants/acme/dns/zones", `{"zone":"lab.example","servers":["dns.lab.example"]}`, 400, "give an IP address with an optional port"},
		{acme, "POST", "/api/v1/tenants/acme/dns/zones", `{"zone":"lab.example","servers":[]}`, 400, "0 servers"},
		{acme, "POST", "/api/v1/tenants/acme/dns/zones", `{"zone":"lab.example","servers":["10.10.0.1","10.10.0.2","10.10.0.3","10.10.0.4","10.10.0.5"]}`, 400, "has 5 servers: give 1 to 4"},
		{acme, "POST", "/api/v1/tenants/acme/dns/zones", `{"zone":"lab example","servers":["10.10.0.53"]}`, 400, `has \" \" in label`},
		{acme, "POST", "/api/v1/tenants/acme/dns/zones", `{"zone":"lab.example","servers":["10.10.0.53"],"bogus":1}`, 400, "unknown field"},
		{acme, "POST", "/api/v1/tenants/globex/dns/zones", `{"zone":"lab.example","servers":["10.10.0.53"]}`, 403, "limited to tenant"},
		{acme, "GET", "/api/v1/tenants/globex/dns/zones", "", 403, "limited to tenant"},
		{acme, "GET", "/api/v1/tenants/acme/dns/zones", "", 200, `"zone": "corp.example.com"`},
		{viewer, "GET", "/api/v1/tenants/acme/dns/zones", "", 200, `"zone": "corp.example.com"`},
		{viewer, "DELETE", "/api/v1/tenants/acme/dns/zones?zone=corp.example.com", "", 403, "may only read"},
		{acme, "DELETE", "/api/v1/tenants/acme/dns/zones?zone=globex.example", "", 404, `tenant \"acme\" has no DNS zone globex.example`},
		{acme, "DELETE", "/api/v1/tenants/acme/dns/zones?zone=CORP.example.com.", "", 204, ""},
		{acme, "DELETE", "/api/v1/tenants/acme/dns/zones", "", 400, "DNS zone is missing"},
	} {
		code, body := e.call(c.tok, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s\nwant %d with %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
		if strings.Contains(body, "globex") && !strings.Contains(c.path, "globex") {
			t.Errorf("%s %s: the answer to acme's token names globex: %s", c.method, c.path, body)
		}
	}
	code, body := e.call(owner, "GET", "/api/v1/tenants/globex/dns/zones", "")
	var zs APIDNSZones
	if code != http.StatusOK || json.Unmarshal([]byte(body), &zs) != nil || len(zs.Zones) != 1 || zs.Zones[0].Zone != "globex.example" {
		t.Errorf("globex's zones: %d %s", code, body)
	}
	e.wantAudit("token:ops dns.zone.add dnszone:globex/globex.example",
		"token:acme-ci dns.zone.add dnszone:acme/corp.example.com",
		"token:acme-ci dns.zone.remove dnszone:acme/corp.example.com")
}
