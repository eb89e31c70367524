package webui

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestUIAuthorization walks every page route as each kind of principal: a tenant admin sees
// and changes only its tenant and gets 404 (not 403) for another tenant's objects, viewers
// only read, nobody signed in is sent to sign in.
func TestUIAuthorization(t *testing.T) {
	h := newUIHarness(t)
	type call struct {
		who          *Principal
		method, path string
		code         int
		want         string
	}
	var calls []call
	// Every page route, as each principal, with the code it must answer.
	for _, rt := range []struct {
		method, path string
		// codes for owner, acme admin, bravo admin, viewer, acme viewer
		codes [5]int
	}{
		{"GET", "/", [5]int{200, 200, 200, 200, 200}},
		{"GET", "/tenants", [5]int{200, 200, 200, 200, 200}},
		{"POST", "/tenants", [5]int{422, 403, 403, 403, 403}},
		{"GET", "/tenants/acme", [5]int{302, 302, 404, 302, 302}},
		{"POST", "/tenants/acme/split-tunnel", [5]int{400, 400, 404, 403, 403}},
		{"GET", "/tenants/acme/delete", [5]int{200, 403, 403, 403, 403}},
		{"POST", "/tenants/acme/delete", [5]int{422, 403, 403, 403, 403}},
		{"GET", "/tenants/acme/policy", [5]int{200, 200, 404, 200, 200}},
		{"POST", "/tenants/acme/policy", [5]int{422, 422, 404, 403, 403}},
		{"GET", "/tenants/acme/routes", [5]int{200, 200, 404, 200, 200}},
		{"POST", "/tenants/acme/routes", [5]int{422, 422, 404, 403, 403}},
		{"POST", "/tenants/acme/routes/remove", [5]int{422, 422, 404, 403, 403}},
		{"GET", "/tenants/acme/dns", [5]int{200, 200, 404, 200, 200}},
		{"POST", "/tenants/acme/dns/zones", [5]int{422, 422, 404, 403, 403}},
		{"POST", "/tenants/acme/dns/zones/remove", [5]int{422, 422, 404, 403, 403}},
		{"POST", "/tenants/acme/dns/upstreams", [5]int{422, 422, 404, 403, 403}},
		{"POST", "/tenants/acme/dns/upstreams/reset", [5]int{303, 303, 404, 403, 403}},
		{"POST", "/tenants/acme/dns/blocklists", [5]int{422, 422, 404, 403, 403}},
		{"POST", "/tenants/acme/dns/blocklists/refresh", [5]int{422, 422, 404, 403, 403}},
		{"POST", "/tenants/acme/dns/blocklists/remove", [5]int{422, 422, 404, 403, 403}},
		{"POST", "/tenants/acme/dns/log/enable", [5]int{303, 303, 404, 403, 403}},
		{"POST", "/tenants/acme/dns/log/disable", [5]int{303, 303, 404, 403, 403}},
		{"GET", "/tenants/acme/regions", [5]int{200, 200, 404, 200, 200}},
		{"POST", "/tenants/acme/regions", [5]int{400, 403, 403, 403, 403}},
		{"GET", "/regions", [5]int{200, 200, 200, 200, 200}},
		{"POST", "/regions", [5]int{422, 403, 403, 403, 403}},
		{"GET", "/regions/local", [5]int{200, 200, 200, 200, 200}},
		{"POST", "/regions/local/endpoint", [5]int{422, 403, 403, 403, 403}},
		{"GET", "/regions/local/delete", [5]int{200, 403, 403, 403, 403}},
		{"POST", "/regions/local/delete", [5]int{422, 403, 403, 403, 403}},
		{"GET", "/nodes", [5]int{200, 403, 403, 403, 403}},
		{"POST", "/nodes/tokens", [5]int{422, 403, 403, 403, 403}},
		{"GET", "/nodes/p1/delete", [5]int{404, 403, 403, 403, 403}},
		{"POST", "/nodes/p1/delete", [5]int{404, 403, 403, 403, 403}},
		{"GET", "/peers", [5]int{200, 200, 200, 200, 200}},
		{"GET", "/peers?tenant=acme", [5]int{200, 200, 404, 200, 200}},
		{"GET", "/peers/table?tenant=acme", [5]int{200, 200, 404, 200, 200}},
		{"GET", "/peers/new", [5]int{200, 200, 200, 403, 403}},
		{"GET", "/peers/new?tenant=acme", [5]int{200, 200, 404, 403, 403}},
		{"POST", "/peers", [5]int{422, 422, 422, 403, 403}},
		{"GET", "/tenants/acme/peers/laptop", [5]int{200, 200, 404, 200, 200}},
		{"POST", "/tenants/acme/peers/laptop/groups", [5]int{303, 303, 404, 403, 403}},
		{"POST", "/tenants/acme/peers/laptop/site", [5]int{303, 303, 404, 403, 403}},
		{"POST", "/tenants/acme/peers/laptop/rename", [5]int{422, 422, 404, 403, 403}},
		{"POST", "/tenants/acme/peers/laptop/expiry", [5]int{303, 303, 404, 403, 403}},
		{"GET", "/tenants/acme/peers/laptop/delete", [5]int{200, 200, 404, 403, 403}},
		{"GET", "/tenants/acme/peers/laptop/config", [5]int{200, 200, 404, 403, 403}},
		{"GET", "/tenants/acme/peers/laptop/config/download?region=local", [5]int{200, 200, 404, 403, 403}},
		{"GET", "/tenants/acme/peers/laptop/config/qr.png?region=local", [5]int{200, 200, 404, 403, 403}},
		{"POST", "/tenants/acme/peers/laptop/config/link", [5]int{400, 400, 404, 403, 403}},
		{"POST", "/tenants/acme/peers/laptop/disable", [5]int{303, 303, 404, 403, 403}},
		{"POST", "/tenants/acme/peers/laptop/enable", [5]int{303, 303, 404, 403, 403}},
		{"GET", "/audit", [5]int{200, 200, 200, 200, 200}},
		{"GET", "/audit?tenant=acme", [5]int{200, 200, 404, 200, 200}},
		{"GET", "/events", [5]int{200, 200, 200, 200, 200}},
		{"GET", "/events?tenant=acme", [5]int{200, 200, 404, 200, 200}},
		{"GET", "/admins", [5]int{200, 403, 403, 403, 403}},
		{"GET", "/nowhere", [5]int{404, 404, 404, 404, 404}},
	} {
		for i, who := range []*Principal{owner, acmeAdmin, bravoAdmin, viewer, acmeViewer} {
			calls = append(calls, call{who, rt.method, rt.path, rt.codes[i], ""})
		}
		if !strings.HasPrefix(rt.path, "/nowhere") {
			calls = append(calls, call{anonymous, rt.method, rt.path, http.StatusSeeOther, ""})
		}
	}
	for _, c := range calls {
		var f map[string][]string
		if c.method == "POST" {
			f = form()
		}
		w := h.do(c.who, c.method, c.path, f)
		if w.Code != c.code {
			t.Errorf("%s %s as %s: %d, want %d\n%s", c.method, c.path, name(c.who), w.Code, c.code, excerpt(w.Body.String()))
		}
		if c.who == nil && !strings.HasPrefix(w.Header().Get("Location"), "/login?next=") {
			t.Errorf("%s %s as nobody: Location %q, want the sign-in page", c.method, c.path, w.Header().Get("Location"))
		}
	}

	// Another tenant's admin cannot fetch or remove a tenant's blocklist, nor read it.
	if _, err := h.ctrl.UploadBlocklist(setup(), "acme", "acme-only", strings.NewReader("ads.example.com\n"), true); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/tenants/acme/dns/blocklists/refresh", "/tenants/acme/dns/blocklists/remove"} {
		h.check(bravoAdmin, "POST", path, form("name", "acme-only"), http.StatusNotFound)
	}
	if body := h.check(bravoAdmin, "GET", "/tenants/bravo/dns", nil, http.StatusOK); strings.Contains(body, "acme-only") {
		t.Error("bravo's DNS tab shows acme's blocklist")
	}
	if bs, _ := h.ctrl.Blocklists(context.Background(), "acme"); len(bs) != 1 {
		t.Errorf("acme's blocklists after bravo's admin tried: %+v", bs)
	}

	// Another tenant's peer looks exactly like one that does not exist.
	other := h.check(acmeAdmin, "GET", "/tenants/bravo/peers/phone", nil, http.StatusNotFound)
	missing := h.check(acmeAdmin, "GET", "/tenants/acme/peers/nobody", nil, http.StatusNotFound)
	noTenant := h.check(acmeAdmin, "GET", "/tenants/nope/peers/phone", nil, http.StatusNotFound)
	if other != missing || other != noTenant {
		t.Errorf("404 pages differ between another tenant's peer, a missing peer and a missing tenant")
	}
	// Refused changes changed nothing: bravo's phone is still enabled, in no group.
	for _, p := range []string{"disable", "groups", "delete"} {
		h.check(acmeAdmin, "POST", "/tenants/bravo/peers/phone/"+p, form("groups", "pwned"), http.StatusNotFound)
	}
	h.check(viewer, "POST", "/tenants/bravo/peers/phone/disable", form(), http.StatusForbidden)
	ph, err := h.ctrl.Peer(context.Background(), "bravo", "phone")
	if err != nil || !ph.Enabled || len(ph.Groups) != 0 {
		t.Errorf("bravo/phone after refused changes: %+v, %v", ph, err)
	}
	// A tenant admin's lists hold only its tenant.
	for _, p := range []string{"/", "/peers", "/peers/table", "/tenants", "/peers/new", "/audit", "/events"} {
		body := h.check(acmeAdmin, "GET", p, nil, http.StatusOK, "acme")
		if strings.Contains(body, "bravo") || strings.Contains(body, ">phone<") {
			t.Errorf("GET %s as acme's admin shows bravo's data:\n%s", p, excerpt(body))
		}
	}
	// A tenant admin cannot create a peer in another tenant through the form field.
	h.check(acmeAdmin, "POST", "/peers", form("tenant", "bravo", "name", "sneaky"), http.StatusNotFound)
	if _, err := h.ctrl.Peer(context.Background(), "bravo", "sneaky"); err == nil {
		t.Error("acme's admin created a peer in bravo")
	}
	// Viewers get no config: it holds the private key.
	h.check(viewer, "GET", "/tenants/acme/peers/laptop/config", nil, http.StatusForbidden)
}
