package webui

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
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

// TestAPIBlocklists: a tenant's blocklists through the control socket (an owner) and the web
// address (tokens), every answer as openapi.json documents it: a list from a URL (an
// owner's may be on loopback, a tenant admin's may not), from a file, refreshed when its
// source fails and when it changes, and removed; no tenant reaches another's.
func TestAPIBlocklists(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addTenant("acme")
	e.addTenant("other")
	scoped := e.addToken("acme-admin", "tenant_admin", "acme", time.Time{})
	viewer := e.addToken("viewer", "viewer", "", time.Time{})

	var mu sync.Mutex
	source, status := "0.0.0.0 ads.example.com tracker.example.net\n127.0.0.1 localhost\n", http.StatusOK
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
		w.Write([]byte(source))
	}))
	defer src.Close()
	setSource := func(text string, code int) {
		mu.Lock()
		source, status = text, code
		mu.Unlock()
	}

	doc := openAPIDoc(t)
	byRoute := map[string]openAPIOp{}
	for _, o := range openAPIOps(t, doc) {
		byRoute[o.route] = o
	}
	const base = "/api/v1/tenants/acme/dns/blocklists"
	call := func(method, path, body, token string, want int) map[string]any {
		t.Helper()
		req := httptest.NewRequest(method, "http://localhost"+path, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:1234"
		h := e.srv.ControlHandler()
		if token != "" {
			h = e.srv.Handler()
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			ctype := "application/json"
			if strings.HasSuffix(req.URL.Path, "/content") {
				ctype = "text/plain"
			}
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		name := method + " " + path
		if rec.Code != want {
			t.Fatalf("%s: %d %s, want %d", name, rec.Code, rec.Body, want)
		}
		_, pattern := e.srv.api.mux.Handler(req)
		o, ok := byRoute[pattern]
		if !ok {
			t.Fatalf("%s: route %q is not documented", name, pattern)
		}
		r := obj(o.op, "responses")[strconv.Itoa(rec.Code)]
		if r == nil {
			t.Fatalf("%s: answer %d is not documented", name, rec.Code)
		}
		var v map[string]any
		if rec.Body.Len() > 0 {
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			validateJSON(t, doc, obj(obj(obj(deref(t, doc, r), "content"), "application/json"), "schema"), any(v), name)
		}
		if rec.Code >= 400 {
			t.Logf("%s: %d %s", name, rec.Code, v["error"])
		}
		return v
	}
	url := src.URL + "/hosts"

	b := call("POST", base, `{"name":"ads","url":"`+url+`"}`, "", 201)
	if b["names"] != 2.0 || b["skipped"] != 1.0 || b["every_seconds"] != 86400.0 || b["next_fetch_at"] == nil {
		t.Errorf("added %v", b)
	}
	call("POST", base, `{"name":"ads","url":"`+url+`"}`, "", 409)
	call("POST", base, `{"name":"Bad!","url":"`+url+`"}`, "", 400)
	call("POST", base, `{"name":"x","url":"`+url+`","every_seconds":60}`, "", 400)
	call("POST", base, `{"name":"x","url":"`+src.URL+`","every_seconds":9999999}`, "", 400)
	call("POST", "/api/v1/tenants/nope/dns/blocklists", `{"name":"x","url":"`+url+`"}`, "", 404)
	// A tenant admin's list may not be on loopback: the fetch is refused, nothing added.
	if v := call("POST", base, `{"name":"mine","url":"`+url+`"}`, scoped, 502); !strings.Contains(v["error"].(string), "not a public address") {
		t.Errorf("a tenant admin's loopback list: %v", v["error"])
	}
	call("POST", base, `{"name":"mine","url":"`+url+`"}`, viewer, 403)
	call("GET", "/api/v1/tenants/other/dns/blocklists", "", scoped, 403)
	call("GET", base, "", scoped, 200)

	// The source fails: the list keeps its content and says why.
	setSource("", http.StatusNotFound)
	call("POST", base+"/ads/refresh", "", "", 502)
	got := call("GET", base+"/ads", "", scoped, 200)
	if got["names"] != 2.0 || !strings.Contains(got["error"].(string), "404") || got["error_at"] == nil || got["sha256"] != b["sha256"] {
		t.Errorf("after a failed refresh: %v", got)
	}
	setSource("||ads.example.com^\n", http.StatusOK)
	if got := call("POST", base+"/ads/refresh", "", scoped, 200); got["names"] != 1.0 || got["error"] != nil || got["sha256"] == b["sha256"] {
		t.Errorf("after a good refresh: %v", got)
	}

	// From a file.
	file := "# mine\nmine.example.com\n0.0.0.0 other.example.com\n"
	if got := call("PUT", base+"/mine/content?create=true", file, scoped, 200); got["names"] != 2.0 || got["url"] != nil || got["next_fetch_at"] != nil {
		t.Errorf("uploaded %v", got)
	}
	call("PUT", base+"/mine/content?create=true", file, "", 409)
	call("PUT", base+"/mine/content?create=maybe", file, "", 400)
	call("PUT", base+"/mine/content", "one.example.com\n", "", 200)
	call("PUT", base+"/ads/content", "one.example.com\n", "", 400) // fetched from a URL
	call("PUT", base+"/none/content", "one.example.com\n", "", 404)
	call("POST", base+"/mine/refresh", "", "", 400) // uploaded
	call("PUT", "/api/v1/tenants/other/dns/blocklists/x/content?create=true", file, scoped, 403)
	list := call("GET", base, "", "", 200)["blocklists"].([]any)
	if len(list) != 2 || list[0].(map[string]any)["name"] != "ads" || list[1].(map[string]any)["names"] != 1.0 {
		t.Errorf("the list: %v", list)
	}

	call("DELETE", base+"/mine", "", viewer, 403)
	call("DELETE", base+"/mine", "", scoped, 204)
	call("DELETE", base+"/mine", "", "", 404)
	call("GET", base+"/mine", "", "", 404)
	if got := call("GET", "/api/v1/tenants/other/dns/blocklists", "", "", 200); len(got["blocklists"].([]any)) != 0 {
		t.Errorf("other's lists: %v", got)
	}
}
