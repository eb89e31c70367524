package webui

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestUIConfigRegions: the config page, its download and QR code are for the region picked
// among those the peer's tenant may use; other regions are 404, like a missing peer. A
// tenant that may not use the controller's own region still gets peers, keys and configs.
func TestUIConfigRegions(t *testing.T) {
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
	ams, err := h.ctrl.Region(context.Background(), "ams")
	if err != nil {
		t.Fatal(err)
	}
	peer := "/tenants/acme/peers/laptop"

	// The peer page offers a config per region the tenant may use.
	body := h.check(acmeAdmin, "GET", peer, nil, http.StatusOK, `href="`+peer+`/config?region=ams"`, `href="`+peer+`/config?region=fra"`)
	if strings.Contains(body, "config?region=local") {
		t.Errorf("the peer page offers region local, which acme may not use:\n%s", excerpt(body))
	}
	h.check(owner, "GET", "/tenants/bravo/peers/phone", nil, http.StatusOK, "config?region=local", "config?region=fra", "config?region=ams")

	// The config page: the first region acme may use by default, then the one picked.
	body = h.check(acmeAdmin, "GET", peer+"/config", nil, http.StatusOK, "<h2>Region ams</h2>", `aria-label="Config for region"`,
		`href="`+peer+`/config?region=ams" aria-current="page">ams<`, "Endpoint = vpn-ams.example.com:51820", `qr.png?region=ams"`, `download?region=ams"`)
	if strings.Contains(body, "region=local") {
		t.Errorf("the config page offers region local:\n%s", excerpt(body))
	}
	h.check(acmeAdmin, "GET", peer+"/config?region=fra", nil, http.StatusOK, "<h2>Region fra</h2>", `aria-current="page">fra<`,
		"Endpoint = vpn-fra.example.com:51820", `name="region" value="fra"`)
	h.check(acmeAdmin, "GET", peer+"/config?region=ams", nil, http.StatusOK, inHTML("PublicKey = "+ams.PublicKey.String()))
	for _, p := range []string{"/config?region=local", "/config?region=mars", "/config/download?region=local", "/config/qr.png?region=local", "/config/download"} {
		h.check(acmeAdmin, "GET", peer+p, nil, http.StatusNotFound)
	}
	h.check(bravoAdmin, "GET", peer+"/config?region=fra", nil, http.StatusNotFound)

	w := h.do(acmeAdmin, "GET", peer+"/config/download?region=ams", nil)
	if cfg := w.Body.String(); w.Code != http.StatusOK || !strings.Contains(cfg, "Endpoint = vpn-ams.example.com:51820") || !strings.Contains(cfg, "PublicKey = "+ams.PublicKey.String()) {
		t.Errorf("download for ams: %d\n%s", w.Code, cfg)
	}
	w = h.do(acmeAdmin, "GET", peer+"/config/qr.png?region=fra", nil)
	if _, err := png.Decode(bytes.NewReader(w.Body.Bytes())); w.Code != http.StatusOK || err != nil {
		t.Errorf("QR code for fra: %d, %v", w.Code, err)
	}

	// New peers and new keys of acme, whose configs cannot be for region local.
	w = h.do(acmeAdmin, "POST", "/peers", form("tenant", "acme", "name", "tablet"))
	if w.Code != http.StatusSeeOther {
		t.Fatalf("new peer in acme: %d\n%s", w.Code, excerpt(w.Body.String()))
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/tablet/config", nil, http.StatusOK, "Endpoint = vpn-ams.example.com:51820")
	w = h.do(acmeAdmin, "POST", peer+"/rotate", form())
	if w.Code != http.StatusSeeOther {
		t.Fatalf("new key for acme/laptop: %d\n%s", w.Code, excerpt(w.Body.String()))
	}
}

// TestUIOneTimeLinkRegion: the one-time link's user picks among the regions the peer may
// connect in; a region it may not is refused and leaves the link usable; one download, of
// the region picked, uses it up.
func TestUIOneTimeLinkRegion(t *testing.T) {
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
	// Made on the page of region fra, which stays on it.
	body := h.check(acmeAdmin, "POST", "/tenants/acme/peers/laptop/config/link", form("ttl", "1h", "region", "fra"), http.StatusOK, "<h2>Region fra</h2>", "works <strong>once</strong>")
	link := regexp.MustCompile(`/dl/[A-Za-z0-9_-]+`).FindString(body)
	if link == "" {
		t.Fatalf("no link in\n%s", excerpt(body))
	}
	body = h.check(anonymous, "GET", link, nil, http.StatusOK, `<select id="region" name="region"`, `<option value="ams" selected>ams (vpn-ams.example.com:51820)`, `<option value="fra">`)
	if strings.Contains(body, `value="local"`) {
		t.Errorf("the link's page offers region local:\n%s", excerpt(body))
	}
	h.check(anonymous, "POST", link, form("region", "local"), http.StatusUnprocessableEntity, "There is no config for that region", `class="flash err"`)
	h.check(anonymous, "GET", link, nil, http.StatusOK) // still usable
	w := h.do(anonymous, "POST", link, form("region", "fra"))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Endpoint = vpn-fra.example.com:51820") {
		t.Fatalf("POST %s for fra: %d\n%s", link, w.Code, w.Body.String())
	}
	h.check(anonymous, "POST", link, form("region", "ams"), http.StatusNotFound, "was used already")

	// A tenant in one region: no choice, the download is for it.
	if _, err := h.ctrl.SetTenantRegions(ctx, "bravo", []string{"ams"}); err != nil {
		t.Fatal(err)
	}
	body = h.check(owner, "POST", "/tenants/bravo/peers/phone/config/link", form("ttl", "1h"), http.StatusOK, "<h2>Region ams</h2>")
	link = regexp.MustCompile(`/dl/[A-Za-z0-9_-]+`).FindString(body)
	// The region is not the controller's own: the file's name says which it is.
	body = h.check(anonymous, "GET", link, nil, http.StatusOK, "Download bravo-phone-ams.conf")
	if strings.Contains(body, `name="region"`) {
		t.Errorf("a choice of one region:\n%s", excerpt(body))
	}
	w = h.do(anonymous, "POST", link, form())
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Endpoint = vpn-ams.example.com:51820") ||
		w.Header().Get("Content-Disposition") != `attachment; filename="bravo-phone-ams.conf"` {
		t.Fatalf("POST %s without a region: %d %q\n%s", link, w.Code, w.Header().Get("Content-Disposition"), w.Body.String())
	}
}
