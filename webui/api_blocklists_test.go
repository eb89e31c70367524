package webui

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

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
