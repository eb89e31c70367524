package webui

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

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
	page := h.check(owner, "GET", "/tenants/acme/peers/laptop/config", nil, 200, "Region local", "Region fra", "vpn-fra.example.com:51820",
		"/config/download?region=fra", "/config/qr.png?region=fra")
	if strings.Index(page, "Region local") > strings.Index(page, "Region fra") {
		t.Error("the node's own region is not first")
	}
	dl := h.check(owner, "GET", "/tenants/acme/peers/laptop/config/download?region=fra", nil, 200, "Endpoint = vpn-fra.example.com:51820\n", "PublicKey = "+fra.PublicKey.String()+"\n")
	if !strings.Contains(dl, "region fra\n") {
		t.Errorf("download for fra:\n%s", dl)
	}
	h.check(owner, "GET", "/tenants/acme/peers/laptop/config/download?region=nope", nil, 404)

	// Limited to fra: only fra's config is offered, and local's is refused.
	if _, err := h.ctrl.SetTenantRegions(ctx, "acme", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	if page := h.check(owner, "GET", "/tenants/acme/peers/laptop/config", nil, 200, "Region fra"); strings.Contains(page, "Region local") {
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
	h.check(nil, "GET", "/dl/"+token, nil, 200, `<label for="region">`, `<option value="local">local (`, `<option value="fra">fra (vpn-fra.example.com:51820)</option>`)
	if _, err := h.ctrl.SetTenantRegions(ctx, "acme", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	h.check(nil, "POST", "/dl/"+token, url.Values{"region": {"local"}}, 400, "may not use region local")
	h.check(nil, "POST", "/dl/"+token, url.Values{"region": {"fra"}}, 200, "Endpoint = vpn-fra.example.com:51820\n")
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
