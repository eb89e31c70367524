package webui

import (
	"encoding/json"
	"net/http"
	"net/netip"
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

// TestAPIDNSLog: a tenant's query log over the web address: its admins turn it on and off;
// it reads only its own entries, never another tenant's; the answers match the API document.
func TestAPIDNSLog(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addTenant("acme")
	e.addTenant("other")
	acmeAdmin := e.addToken("acme-admin", "tenant_admin", "acme", time.Time{})
	otherAdmin := e.addToken("other-admin", "tenant_admin", "other", time.Time{})
	viewer := e.addToken("viewer", "viewer", "", time.Time{})
	doc := openAPIDoc(t)
	schema := func(name string) map[string]any { return obj(obj(obj(doc, "components"), "schemas"), name) }

	if code, body := e.call(viewer, "POST", "/api/v1/tenants/acme/dns/log/enable", ""); code != 403 {
		t.Errorf("a viewer turned the log on: %d %s", code, body)
	}
	if code, body := e.call(otherAdmin, "POST", "/api/v1/tenants/acme/dns/log/enable", ""); code != 403 {
		t.Errorf("another tenant's admin turned acme's log on: %d %s", code, body)
	}
	for _, tok := range []string{acmeAdmin, otherAdmin} {
		tenant := "acme"
		if tok == otherAdmin {
			tenant = "other"
		}
		code, body := e.call(tok, "POST", "/api/v1/tenants/"+tenant+"/dns/log/enable", `{"keep_seconds":7200}`)
		var set APIDNSLogSettings
		if err := json.Unmarshal([]byte(body), &set); code != 200 || err != nil || !set.Enabled || set.KeepSeconds != 7200 {
			t.Fatalf("%s's admin turned its log on: %d %s", tenant, code, body)
		}
	}
	if code, body := e.call(acmeAdmin, "POST", "/api/v1/tenants/acme/dns/log/enable", `{"keep_seconds":60}`); code != 400 || !strings.Contains(body, "1h to 7d") {
		t.Errorf("keep 60 s: %d %s", code, body)
	}

	ids := map[string]int64{}
	for _, name := range []string{"acme", "other"} {
		tn, err := e.store.Tenant(setup(), name)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = tn.ID
	}
	now := time.Now()
	entry := func(tenant, peer, name string, at time.Time) store.DNSLogEntry {
		return store.DNSLogEntry{TenantID: ids[tenant], At: at, Node: "controller", Peer: peer, Client: netip.MustParseAddr("100.64.0.2"),
			Name: name, Type: "A", Outcome: "forwarded", Rcode: "NOERROR", Latency: 2 * time.Millisecond}
	}
	if _, err := e.store.AddDNSLog(setup(), []store.DNSLogEntry{
		entry("acme", "laptop", "intranet.acme.example", now.Add(-time.Minute)), entry("acme", "phone", "mail.acme.example", now),
		entry("other", "laptop", "secret.other.example", now),
	}); err != nil {
		t.Fatal(err)
	}
	code, body := e.call(acmeAdmin, "GET", "/api/v1/tenants/acme/dns/log", "")
	var log APIDNSLog
	if err := json.Unmarshal([]byte(body), &log); code != 200 || err != nil {
		t.Fatalf("GET acme's log: %d %s", code, body)
	}
	if len(log.Entries) != 2 || log.Entries[0].Name != "mail.acme.example" || log.Entries[1].Peer != "laptop" || !log.Enabled || log.More {
		t.Errorf("acme's log: %s", body)
	}
	var v any
	json.Unmarshal([]byte(body), &v)
	validateJSON(t, doc, schema("APIDNSLog"), v, "APIDNSLog")
	if strings.Contains(body, "secret.other.example") {
		t.Error("acme's log shows another tenant's query")
	}
	if code, body := e.call(acmeAdmin, "GET", "/api/v1/tenants/other/dns/log", ""); code != 403 || strings.Contains(body, "secret") {
		t.Errorf("acme's admin read other's log: %d %s", code, body)
	}
	if code, body := e.call(acmeAdmin, "GET", "/api/v1/tenants/acme/dns/log?peer=phone&limit=1", ""); code != 200 || !strings.Contains(body, "mail.acme.example") || strings.Contains(body, "intranet") {
		t.Errorf("acme's log of phone: %d %s", code, body)
	}
	if code, body := e.call(acmeAdmin, "GET", "/api/v1/tenants/acme/dns/log?since=an-hour-ago", ""); code != 400 {
		t.Errorf("a bad since: %d %s", code, body)
	}

	// Off: the entries go, the other tenant's stay.
	code, body = e.call(acmeAdmin, "POST", "/api/v1/tenants/acme/dns/log/disable", "")
	var set APIDNSLogSettings
	if err := json.Unmarshal([]byte(body), &set); code != 200 || err != nil || set.Enabled || set.Deleted != 2 {
		t.Errorf("turning acme's log off: %d %s", code, body)
	}
	json.Unmarshal([]byte(body), &v)
	validateJSON(t, doc, schema("APIDNSLogSettings"), v, "APIDNSLogSettings")
	if code, body := e.call(otherAdmin, "GET", "/api/v1/tenants/other/dns/log", ""); code != 200 || !strings.Contains(body, "secret.other.example") {
		t.Errorf("other's log after acme's went: %d %s", code, body)
	}
	e.wantAudit("token:acme-admin dns.log.enable dnslog:acme", "token:other-admin dns.log.enable dnslog:other", "token:acme-admin dns.log.disable dnslog:acme")
}
