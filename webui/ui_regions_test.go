package webui

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestUIRegions adds a region, changes its endpoint and removes it through the forms; bad
// input is shown next to its field, and the store's refusals (the controller's own region,
// the only region of a tenant) are the page's error with nothing lost.
func TestUIRegions(t *testing.T) {
	h := newUIHarness(t)
	ctx := context.Background()
	home, err := h.store.HomeRegion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.check(owner, "GET", "/regions", nil, http.StatusOK, "<h1>Regions</h1>", ">local<", "this controller", home.Endpoint, inHTML(shortKey(home.PublicKey)), `action="/regions"`)

	long := strings.Repeat("x", 40)
	for _, c := range []struct {
		form []string
		want []string
	}{
		{[]string{"name", "Fra", "endpoint", "vpn-fra.example.com:51820"}, []string{`aria-describedby="region-name-error"`, "is not allowed", `value="Fra"`, `value="vpn-fra.example.com:51820"`}},
		{[]string{"name", long, "endpoint", "vpn-fra.example.com:51820"}, []string{"at most 32 are allowed"}},
		{[]string{"name", "fra", "endpoint", "vpn-fra.example.com"}, []string{`aria-describedby="region-endpoint-error"`, "is not host:port", `value="fra"`}},
		{[]string{"name", "fra", "endpoint", "vpn.example.com:99999"}, []string{"bad port: use 1-65535"}},
		{[]string{"name", "fra", "endpoint", ""}, []string{"Enter the host:port"}},
		{[]string{"name", "", "endpoint", "bad"}, []string{"region-name-error", "region-endpoint-error"}},
		{[]string{"name", "local", "endpoint", "vpn.example.com:51820"}, []string{"region-name-error", "already exists"}},
	} {
		h.check(owner, "POST", "/regions", form(c.form...), http.StatusUnprocessableEntity, c.want...)
	}
	if rs, _ := h.ctrl.Regions(ctx); len(rs) != 1 {
		t.Fatalf("refused forms stored regions: %+v", rs)
	}

	w := h.do(owner, "POST", "/regions", form("name", "fra", "endpoint", " vpn-fra.example.com:51820 "))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/regions/fra?ok=region-created" {
		t.Fatalf("add region: %d %q\n%s", w.Code, w.Header().Get("Location"), excerpt(w.Body.String()))
	}
	fra, err := h.ctrl.Region(ctx, "fra")
	if err != nil || fra.Endpoint != "vpn-fra.example.com:51820" {
		t.Fatalf("region fra: %+v, %v", fra, err)
	}
	h.check(owner, "GET", "/regions/fra?ok=region-created", nil, http.StatusOK, "Region added", inHTML(fra.PublicKey.String()), "vpn-fra.example.com:51820", `action="/regions/fra/endpoint"`)

	// The endpoint: bad, the controller's own, then a good one.
	h.check(owner, "POST", "/regions/fra/endpoint", form("endpoint", "nope"), http.StatusUnprocessableEntity, `aria-describedby="endpoint-error"`, `value="nope"`)
	h.check(owner, "POST", "/regions/local/endpoint", form("endpoint", "other.example.com:1"), http.StatusUnprocessableEntity, "--public-endpoint")
	h.check(owner, "POST", "/regions/mars/endpoint", form("endpoint", "mars.example.com:1"), http.StatusNotFound)
	w = h.do(owner, "POST", "/regions/fra/endpoint", form("endpoint", "[2001:db8::1]:51820"))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/regions/fra?ok=region-endpoint" {
		t.Fatalf("set endpoint: %d %q\n%s", w.Code, w.Header().Get("Location"), excerpt(w.Body.String()))
	}
	if fra, _ = h.ctrl.Region(ctx, "fra"); fra.Endpoint != "[2001:db8::1]:51820" {
		t.Errorf("endpoint after the form: %q", fra.Endpoint)
	}

	// Removing: the confirmation, the store's refusals, then for real.
	h.check(owner, "GET", "/regions/fra/delete", nil, http.StatusOK, "Type <strong class=\"mono\">fra</strong>")
	h.check(owner, "POST", "/regions/fra/delete", form("confirm", "fr"), http.StatusUnprocessableEntity, "Type the region&#39;s name, fra")
	h.check(owner, "POST", "/regions/local/delete", form("confirm", "local"), http.StatusUnprocessableEntity, "controller&#39;s own", `class="flash err"`)
	if _, err := h.ctrl.SetTenantRegions(setup(), "acme", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	h.check(owner, "POST", "/regions/fra/delete", form("confirm", "fra"), http.StatusUnprocessableEntity, "only region of tenant acme", `class="flash err"`)
	if _, err := h.ctrl.Region(ctx, "fra"); err != nil {
		t.Fatalf("a refused removal removed the region: %v", err)
	}
	if _, err := h.ctrl.SetTenantRegions(setup(), "acme", nil); err != nil {
		t.Fatal(err)
	}
	w = h.do(owner, "POST", "/regions/fra/delete", form("confirm", "fra"))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/regions?ok=region-deleted" {
		t.Fatalf("remove: %d %q\n%s", w.Code, w.Header().Get("Location"), excerpt(w.Body.String()))
	}
	if _, err := h.ctrl.Region(ctx, "fra"); err == nil {
		t.Error("region fra is still there")
	}

	want := "region.add region:fra ;region.update region:fra ;region.remove region:fra "
	if got := strings.Join(h.audit.actions(), ";"); got != want {
		t.Errorf("audit: %s\nwant %s", got, want)
	}
}

// TestUIRegionsScoped: a principal limited to a tenant sees the regions its tenant may use
// and no other tenant's name; only owners change regions.
func TestUIRegionsScoped(t *testing.T) {
	h := newUIHarness(t)
	ctx := setup()
	for _, r := range [][2]string{{"fra", "vpn-fra.example.com:51820"}, {"ams", "vpn-ams.example.com:51820"}} {
		if _, err := h.ctrl.AddRegion(ctx, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.ctrl.SetTenantRegions(ctx, "acme", []string{"fra", "ams"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ctrl.SetTenantRegions(ctx, "bravo", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	// The owner sees every region and tenant.
	h.check(owner, "GET", "/regions", nil, http.StatusOK, ">local<", ">fra<", ">ams<", ">acme<", ">bravo<")
	// acme's admin: fra and ams, not local; acme, never bravo.
	for _, p := range []string{"/regions", "/regions/fra", "/regions/ams"} {
		body := h.check(acmeAdmin, "GET", p, nil, http.StatusOK, "acme")
		if strings.Contains(body, "bravo") || strings.Contains(body, ">local<") || strings.Contains(body, `action="/regions`) {
			t.Errorf("GET %s as acme's admin shows another tenant, a region acme may not use, or a form:\n%s", p, excerpt(body))
		}
	}
	other := h.check(acmeAdmin, "GET", "/regions/local", nil, http.StatusNotFound)
	missing := h.check(acmeAdmin, "GET", "/regions/mars", nil, http.StatusNotFound)
	if other != missing {
		t.Error("a region acme may not use looks different from one that does not exist")
	}
	// A viewer of every tenant sees everything but changes nothing.
	h.check(viewer, "GET", "/regions", nil, http.StatusOK, ">local<", ">bravo<")
	for _, who := range []*Principal{acmeAdmin, viewer, acmeViewer} {
		h.check(who, "POST", "/regions", form("name", "x", "endpoint", "x.example.com:1"), http.StatusForbidden)
		h.check(who, "POST", "/regions/fra/endpoint", form("endpoint", "x.example.com:1"), http.StatusForbidden)
		h.check(who, "GET", "/regions/fra/delete", nil, http.StatusForbidden)
		h.check(who, "POST", "/regions/ams/delete", form("confirm", "ams"), http.StatusForbidden)
	}
	if rs, _ := h.ctrl.Regions(ctx); len(rs) != 3 || rs[1].Endpoint != "vpn-fra.example.com:51820" {
		t.Errorf("refused changes changed regions: %+v", rs)
	}
}

// inHTML is s as html/template writes it in text: keys' '+' become "&#43;".
func inHTML(s string) string { return strings.ReplaceAll(template.HTMLEscapeString(s), "+", "&#43;") }

// TestUIRegionConfigs: the peer's config page offers a config per region its tenant may use,
// the node's own first; the one-time link lets its user pick the region, and a region the
// tenant may not use leaves the link usable.
func TestUIRegionConfigs(t *testing.T) {
	h := newUIHarness(t)
	ctx := setup()
	fra, err := h.ctrl.AddRegion(ctx, "fra", "vpn-fra.example.com:51820")
	if err != nil {
		t.Fatal(err)
	}
	page := h.check(owner, "GET", "/tenants/acme/peers/laptop/config", nil, 200, "Region local", `config?region=fra">fra<`,
		"/config/download?region=local", "/config/qr.png?region=local")
	if strings.Index(page, `config?region=local" aria-current="page">local<`) > strings.Index(page, `config?region=fra">fra<`) {
		t.Error("the node's own region is not first")
	}
	h.check(owner, "GET", "/tenants/acme/peers/laptop/config?region=fra", nil, 200, "Region fra", "vpn-fra.example.com:51820",
		"/config/download?region=fra", "/config/qr.png?region=fra")
	dl := h.check(owner, "GET", "/tenants/acme/peers/laptop/config/download?region=fra", nil, 200, "Endpoint = vpn-fra.example.com:51820\n", "PublicKey = "+fra.PublicKey.String()+"\n")
	if !strings.Contains(dl, "region fra\n") {
		t.Errorf("download for fra:\n%s", dl)
	}
	// The files of two regions import side by side: another region's carries its name.
	for region, want := range map[string]string{"local": "acme-laptop.conf", "fra": "acme-laptop-fra.conf"} {
		w := h.do(owner, "GET", "/tenants/acme/peers/laptop/config/download?region="+region, nil)
		if got := w.Header().Get("Content-Disposition"); got != `attachment; filename="`+want+`"` {
			t.Errorf("download for %s: Content-Disposition %q, want %s", region, got, want)
		}
	}
	h.check(owner, "GET", "/tenants/acme/peers/laptop/config?region=fra", nil, 200, "Download acme-laptop-fra.conf", "wg-quick up ./acme-laptop-fra.conf")
	h.check(owner, "GET", "/tenants/acme/peers/laptop/config/download?region=nope", nil, 404)

	// Limited to fra: only fra's config is offered, and local's is refused.
	if _, err := h.ctrl.SetTenantRegions(ctx, "acme", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	if page := h.check(owner, "GET", "/tenants/acme/peers/laptop/config", nil, 200, "Region fra"); strings.Contains(page, "region=local") {
		t.Error("the page offers a region the tenant may not use")
	}
	h.check(owner, "GET", "/tenants/acme/peers/laptop/config/download?region=local", nil, 404)
	if _, err := h.ctrl.SetTenantRegions(ctx, "acme", nil); err != nil {
		t.Fatal(err)
	}

	// The one-time link: a choice of region, the config for the one picked.
	_, token, err := h.ctrl.CreateDownloadLink(ctx, "acme", "laptop", "olivia", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h.check(nil, "GET", "/dl/"+token, nil, 200, `<label for="region">`, `<option value="local" selected>local (`, `<option value="fra">fra (vpn-fra.example.com:51820)</option>`)
	if _, err := h.ctrl.SetTenantRegions(ctx, "acme", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	h.check(nil, "POST", "/dl/"+token, url.Values{"region": {"local"}}, 422, "There is no config for that region")
	h.check(nil, "GET", "/dl/"+token, nil, 200, "wg-quick up ./acme-laptop-fra.conf")
	if w := h.do(nil, "POST", "/dl/"+token, url.Values{"region": {"fra"}}); w.Code != 200 ||
		!strings.Contains(w.Body.String(), "Endpoint = vpn-fra.example.com:51820\n") ||
		w.Header().Get("Content-Disposition") != `attachment; filename="acme-laptop-fra.conf"` {
		t.Errorf("redeem for fra: %d %q\n%s", w.Code, w.Header().Get("Content-Disposition"), w.Body.String())
	}
	h.check(nil, "POST", "/dl/"+token, url.Values{"region": {"fra"}}, 404)

	// With one region there is no choice: the page is as before.
	if _, err := h.ctrl.SetTenantRegions(ctx, "acme", nil); err != nil {
		t.Fatal(err)
	}
	if err := h.ctrl.RemoveRegion(ctx, "fra"); err != nil {
		t.Fatal(err)
	}
	_, token, err = h.ctrl.CreateDownloadLink(ctx, "acme", "laptop", "olivia", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if page := h.check(nil, "GET", "/dl/"+token, nil, 200, "Download acme-laptop.conf"); strings.Contains(page, `name="region"`) {
		t.Error("the link page offers a choice of one region")
	}
	h.check(nil, "POST", "/dl/"+token, url.Values{}, 200, "region local\n")
}

// TestUITenantRegions limits a tenant to some regions and allows it everywhere again through
// its Regions tab; only owners change it, and a tenant admin reads only its own.
func TestUITenantRegions(t *testing.T) {
	h := newUIHarness(t)
	ctx := setup()
	if _, err := h.ctrl.AddRegion(ctx, "fra", "vpn-fra.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	regionsOf := func(tenant string) string {
		t.Helper()
		rs, err := h.store.TenantRegions(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(rs, ",")
	}
	h.check(owner, "GET", "/tenants/acme/regions", nil, http.StatusOK, "every region", `name="scope" value="all" checked`, `value="fra">`, `aria-current="page">Regions</a>`)

	h.check(owner, "POST", "/tenants/acme/regions", form("scope", "some"), http.StatusUnprocessableEntity, "Tick at least one region", `id="region-error"`, `name="scope" value="some" checked`)
	h.check(owner, "POST", "/tenants/acme/regions", form("scope", "some", "region", "mars"), http.StatusUnprocessableEntity, "A region ticked does not exist")
	h.check(owner, "POST", "/tenants/acme/regions", form("scope", "most"), http.StatusBadRequest)
	h.check(owner, "POST", "/tenants/nope/regions", form("scope", "all"), http.StatusNotFound)
	if got := regionsOf("acme"); got != "" {
		t.Fatalf("refused forms limited acme to %s", got)
	}

	w := h.do(owner, "POST", "/tenants/acme/regions", form("scope", "some", "region", "fra"))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/tenants/acme/regions?ok=tenant-regions" {
		t.Fatalf("limit acme: %d %q\n%s", w.Code, w.Header().Get("Location"), excerpt(w.Body.String()))
	}
	if got := regionsOf("acme"); got != "fra" {
		t.Errorf("acme's regions: %q, want fra", got)
	}
	h.check(owner, "GET", "/tenants/acme/regions", nil, http.StatusOK, "limited to the regions marked", `name="scope" value="some" checked`, `value="fra" checked`)
	h.check(owner, "GET", "/tenants", nil, http.StatusOK, `/tenants/acme/regions">fra</a>`, `/tenants/bravo/regions">all</a>`)
	h.check(owner, "GET", "/regions/fra", nil, http.StatusOK, `href="/tenants/acme/regions">acme</a>`)

	// Tenant admins read their own tenant's tab, without the form, and change nothing.
	body := h.check(acmeAdmin, "GET", "/tenants/acme/regions", nil, http.StatusOK, ">fra<")
	if strings.Contains(body, `name="scope"`) || strings.Contains(body, ">local<") {
		t.Errorf("acme's admin gets the form or a region acme may not use:\n%s", excerpt(body))
	}
	h.check(acmeAdmin, "POST", "/tenants/acme/regions", form("scope", "all"), http.StatusForbidden)
	h.check(bravoAdmin, "GET", "/tenants/acme/regions", nil, http.StatusNotFound)

	w = h.do(owner, "POST", "/tenants/acme/regions", form("scope", "all", "region", "fra"))
	if w.Code != http.StatusSeeOther {
		t.Fatalf("allow acme everywhere: %d\n%s", w.Code, excerpt(w.Body.String()))
	}
	if got := regionsOf("acme"); got != "" {
		t.Errorf("acme's regions after 'every region': %q", got)
	}
	want := "tenant.update tenant:acme acme;tenant.update tenant:acme acme"
	if got := strings.Join(h.audit.actions(), ";"); !strings.HasSuffix(got, want) {
		t.Errorf("audit: %s\nwant it to end %s", got, want)
	}
}
