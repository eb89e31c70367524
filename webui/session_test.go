package webui

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestProtect: who gets which page, and where the others are sent.
func TestProtect(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addTenant("acme")
	e.addTenant("bravo")
	e.addAdmin("root", store.RoleOwner, "")
	e.addAdmin("alice", store.RoleTenantAdmin, "acme")
	e.addAdmin("victor", store.RoleViewer, "")
	e.addAdmin("vera", store.RoleViewer, "acme")

	anon := e.browser()
	resp, _ := anon.get("/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("anonymous /: %d → %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = anon.get("/owners?x=1")
	if loc := resp.Header.Get("Location"); loc != "/login?next=%2Fowners%3Fx%3D1" {
		t.Errorf("anonymous /owners: → %s", loc)
	}
	resp, _ = anon.get("/owners", "HX-Request", "true", "HX-Current-URL", e.ts.URL+"/owners")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("HX-Redirect") != "/login?next=%2Fowners" {
		t.Errorf("anonymous htmx request: %d, HX-Redirect %q", resp.StatusCode, resp.Header.Get("HX-Redirect"))
	}
	resp, _ = anon.post("/tenants/acme/things", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("anonymous POST: %d → %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := anon.get("/static/app.js")
	want(t, "public static file", resp, body, http.StatusOK, "// app")

	for _, tc := range []struct {
		admin        string
		home, owners int
		acme, bravo  int // POST /tenants/{t}/things
	}{
		{"root", 200, 200, 200, 200},
		{"alice", 200, 403, 200, 403},
		{"victor", 200, 403, 403, 403},
		{"vera", 200, 403, 403, 403},
	} {
		b := e.browser()
		b.mustSignIn(tc.admin)
		for _, c := range []struct {
			method, path string
			want         int
		}{
			{"GET", "/", tc.home}, {"GET", "/owners", tc.owners},
			{"POST", "/tenants/acme/things", tc.acme}, {"POST", "/tenants/bravo/things", tc.bravo},
		} {
			resp, body := b.do(c.method, c.path, url.Values{})
			if resp.StatusCode != c.want {
				t.Errorf("%s: %s %s = %d, want %d: %s", tc.admin, c.method, c.path, resp.StatusCode, c.want, body)
			}
		}
	}
	e.wantAudit("root thing.add acme/thing", "root thing.add bravo/thing", "alice thing.add acme/thing")
	es, _, _ := e.store.ListAudit(t.Context(), store.AuditQuery{Action: "thing.add", Actor: "alice"})
	if len(es) != 1 || es[0].Tenant != "acme" || es[0].Remote != "127.0.0.1" {
		t.Errorf("alice's audit entries: %+v", es)
	}
	// protect's refusals are recorded, one per admin and route a minute (victor's two
	// refused things are one route).
	es, _, _ = e.store.ListAudit(t.Context(), store.AuditQuery{Action: "denied"})
	var denied []string
	for _, en := range slices.Backward(es) {
		denied = append(denied, en.Actor+" "+en.Target+" "+en.Tenant+" "+en.Detail)
	}
	wantDenied := []string{
		"alice  acme GET /owners: your role (tenant_admin) may not do this: ask an owner",
		"victor   GET /owners: your role (viewer) may not do this: ask an owner",
		"victor tenant:acme  POST /tenants/acme/things: your role (viewer) may not do this: ask an owner",
		"vera  acme GET /owners: your role (viewer) may not do this: ask an owner",
		"vera tenant:acme acme POST /tenants/acme/things: your role (viewer) may not do this: ask an owner",
	}
	if !slices.Equal(denied, wantDenied) {
		t.Errorf("denied entries:\n%s\nwant\n%s", strings.Join(denied, "\n"), strings.Join(wantDenied, "\n"))
	}
}

// TestCrossOrigin: every unsafe method from another site is refused before it reaches a
// handler; the session stays.
func TestCrossOrigin(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addTenant("acme")
	e.addAdmin("root", store.RoleOwner, "")
	b := e.browser()
	b.mustSignIn("root")
	for _, tc := range []struct {
		path    string
		headers []string
		want    int
	}{
		{"/tenants/acme/things", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"/tenants/acme/things", []string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"/tenants/acme/things", []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}, http.StatusForbidden},
		{"/logout", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"/logout-everywhere", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"/account/password", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"/login", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"/api/v1/tenants", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"/tenants/acme/things", []string{"Sec-Fetch-Site", "same-origin"}, http.StatusOK},
		{"/tenants/acme/things", []string{"Sec-Fetch-Site", "", "Origin", e.ts.URL}, http.StatusOK},
		{"/tenants/acme/things", []string{"Sec-Fetch-Site", "none"}, http.StatusOK}, // typed in by the user
	} {
		resp, body := b.do(http.MethodPost, tc.path, url.Values{"name": {"root"}, "password": {authPassword}}, tc.headers...)
		if resp.StatusCode != tc.want {
			t.Errorf("POST %s with %q: %d, want %d: %s", tc.path, tc.headers, resp.StatusCode, tc.want, body)
		}
		if tc.want == http.StatusForbidden && tc.path != "/api/v1/tenants" {
			want(t, "refusal", resp, body, http.StatusForbidden, "cross-origin request refused")
		}
	}
	// Still signed in, and only the two same-origin changes happened.
	if resp, _ := b.get("/"); resp.StatusCode != http.StatusOK {
		t.Errorf("signed out by a cross-origin request: %d", resp.StatusCode)
	}
	n := 0
	for _, a := range e.auditActions() {
		if a == "root thing.add acme/thing" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d changes recorded, want 3", n)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")

	// Idle: 12 hours without a request end the session; activity keeps it going.
	b := e.browser()
	b.mustSignIn("root")
	for range 3 {
		e.clock.Advance(11 * time.Hour)
		if resp, _ := b.get("/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("active session ended after %v", 11*time.Hour)
		}
	}
	e.clock.Advance(sessionIdle)
	resp, _ := b.get("/")
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("idle session still works: %d", resp.StatusCode)
	}
	if resp.Cookies() == nil || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("dead session's cookie not cleared: %v", resp.Cookies())
	}

	// Absolute: 7 days, however active.
	b = e.browser()
	b.mustSignIn("root")
	for elapsed := time.Duration(0); elapsed+10*time.Hour < sessionLifetime; elapsed += 10 * time.Hour {
		e.clock.Advance(10 * time.Hour)
		if resp, _ := b.get("/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("session ended after %v", elapsed+10*time.Hour)
		}
	}
	e.clock.Advance(10 * time.Hour)
	if resp, _ := b.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("session outlived %v: %d", sessionLifetime, resp.StatusCode)
	}
	// Dead sessions are pruned.
	if n, err := e.store.PruneSessions(t.Context(), e.clock.Now(), sessionIdle); err != nil || n != 0 {
		t.Errorf("PruneSessions = %d, %v (the dead sessions should be gone already)", n, err)
	}
}

func TestLogout(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	e.addAdmin("bob", store.RoleViewer, "")
	b1, b2, b3, bob := e.browser(), e.browser(), e.browser(), e.browser()
	for _, b := range []*browser{b1, b2, b3} {
		b.mustSignIn("root")
	}
	bob.mustSignIn("bob")

	resp, _ := b1.post("/logout", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("logout: %d → %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := b1.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Error("signed out browser still signed in")
	}
	if resp, _ := b2.get("/"); resp.StatusCode != http.StatusOK {
		t.Error("logout ended another session")
	}

	resp, _ = b2.post("/logout-everywhere", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout-everywhere: %d", resp.StatusCode)
	}
	for i, b := range []*browser{b2, b3} {
		if resp, _ := b.get("/"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("browser %d still signed in after logout-everywhere", i+2)
		}
	}
	if resp, _ := bob.get("/"); resp.StatusCode != http.StatusOK {
		t.Error("logout-everywhere ended another admin's session")
	}
	resp, _ = e.browser().post("/logout-everywhere", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("logout-everywhere without a session: %d", resp.StatusCode)
	}
	e.wantAudit("root signout admin:root", "root signout.everywhere admin:root")
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/": "/", "/peers?tenant=acme": "/peers?tenant=acme", "//evil.example": "/", "/\\evil": "/",
		"https://evil.example/": "/", "peers": "/", "/a\nb": "/", "/%2F%2Fevil": "/%2F%2Fevil",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzSafeNext: whatever comes in, what goes out is a path on this site.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/peers?x=1", "//evil", "/\\evil", "https://evil/", "/%2F%2F", "/\tx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := safeNext(in)
		if out != "/" && out != in {
			t.Fatalf("safeNext(%q) = %q", in, out)
		}
		u, err := url.Parse(out)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.ContainsAny(out, "\\\r\n\t") {
			t.Fatalf("safeNext(%q) = %q leaves the site", in, out)
		}
	})
}
