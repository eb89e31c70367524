package webui

import (
	"bytes"
	"context"
	"html"
	"image/png"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
)

// TestUIConfigDownload checks the config as a file and as a QR code.
func TestUIConfigDownload(t *testing.T) {
	h := newUIHarness(t)
	w := h.do(acmeAdmin, "GET", "/tenants/acme/peers/laptop/config/download?region=local", nil)
	hd := w.Header()
	if w.Code != http.StatusOK ||
		hd.Get("Content-Disposition") != `attachment; filename="acme-laptop.conf"` ||
		hd.Get("Content-Type") != "text/plain; charset=utf-8" ||
		hd.Get("Cache-Control") != "no-store" ||
		hd.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("download: %d %v", w.Code, hd)
	}
	cfg := w.Body.String()
	for _, s := range []string{"[Interface]", "PrivateKey = ", "Address = 100.64.0.", "[Peer]", "Endpoint = vpn.example.net:", "AllowedIPs = 0.0.0.0/0, ::/0"} {
		if !strings.Contains(cfg, s) {
			t.Errorf("downloaded config lacks %q:\n%s", s, cfg)
		}
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/laptop/config/download?region=mars", nil, http.StatusNotFound)
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/laptop/config/download", nil, http.StatusNotFound)

	w = h.do(acmeAdmin, "GET", "/tenants/acme/peers/laptop/config/qr.png?region=local", nil)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "image/png" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("QR code: %d %v", w.Code, w.Header())
	}
	img, err := png.Decode(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatalf("QR code is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 200 || b.Dx() != b.Dy() {
		t.Errorf("QR code is %v", b)
	}
	if got := qrContent(cfg); strings.Contains(got, "#") || !strings.Contains(got, "PrivateKey = ") {
		t.Errorf("QR content keeps comments or loses the key:\n%s", got)
	}
	if got := strings.Join(h.audit.actions(), ";"); got != "peer.config.download peer:acme/laptop acme" {
		t.Errorf("audit: %s", got)
	}
}

// TestUIOneTimeLink creates a link, opens it without signing in (which does not use it),
// downloads once, and finds it gone; an expired link is gone too.
func TestUIOneTimeLink(t *testing.T) {
	h := newUIHarness(t)
	h.check(acmeAdmin, "POST", "/tenants/acme/peers/laptop/config/link", form("ttl", "1w"), http.StatusBadRequest)
	body := h.check(acmeAdmin, "POST", "/tenants/acme/peers/laptop/config/link", form("ttl", "1h"), http.StatusOK, "works <strong>once</strong>", "http://example.com/dl/")
	link := regexp.MustCompile(`/dl/[A-Za-z0-9_-]+`).FindString(body)
	if link == "" {
		t.Fatalf("no link in\n%s", excerpt(body))
	}
	// Opening it shows what it is for; twice is fine.
	for range 2 {
		w := h.do(anonymous, "GET", link, nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Download acme-laptop.conf") || w.Header().Get("Referrer-Policy") != "no-referrer" {
			t.Fatalf("GET %s: %d %v\n%s", link, w.Code, w.Header(), excerpt(w.Body.String()))
		}
		if strings.Contains(w.Body.String(), "PrivateKey") {
			t.Fatal("the link's page shows the config before the button is pressed")
		}
	}
	w := h.do(anonymous, "POST", link, form())
	if w.Code != http.StatusOK || w.Header().Get("Content-Disposition") != `attachment; filename="acme-laptop.conf"` || !strings.Contains(w.Body.String(), "PrivateKey = ") {
		t.Fatalf("POST %s: %d %v", link, w.Code, w.Header())
	}
	h.check(anonymous, "POST", link, form(), http.StatusNotFound, "was used already")
	h.check(anonymous, "GET", link, nil, http.StatusNotFound, "was used already")
	h.check(anonymous, "GET", "/dl/pgd_nonsense", nil, http.StatusNotFound)

	body = h.check(acmeAdmin, "POST", "/tenants/acme/peers/laptop/config/link", form("ttl", "1h"), http.StatusOK)
	link = regexp.MustCompile(`/dl/[A-Za-z0-9_-]+`).FindString(body)
	h.ui.now = func() time.Time { return time.Now().Add(61 * time.Minute) }
	h.check(anonymous, "GET", link, nil, http.StatusNotFound)
	h.check(anonymous, "POST", link, form(), http.StatusNotFound)

	want := "link.create peer:acme/laptop acme;link.use peer:acme/laptop acme;link.create peer:acme/laptop acme"
	if got := strings.Join(h.audit.actions(), ";"); got != want {
		t.Errorf("audit: %s\nwant %s", got, want)
	}
}

// TestUIConfigFileNames: the download, the config page, the one-time link's page and its
// download all name the file so that `wg-quick up ./FILE` takes it as it is, however long
// the peer's name.
func TestUIConfigFileNames(t *testing.T) {
	h := newUIHarness(t)
	if _, _, err := h.ctrl.AddPeer(context.Background(), control.AddPeerRequest{Tenant: "acme", Name: "alice-laptop-work"}); err != nil {
		t.Fatal(err)
	}
	want := configFileName("acme", "alice-laptop-work")
	if !wgQuickFile.MatchString(want) {
		t.Fatalf("configFileName gives %q, which wg-quick refuses", want)
	}
	disposition := `attachment; filename="` + want + `"`
	peer := "/tenants/acme/peers/alice-laptop-work"
	w := h.do(acmeAdmin, "GET", peer+"/config/download?region=local", nil)
	if w.Code != http.StatusOK || w.Header().Get("Content-Disposition") != disposition {
		t.Errorf("download: %d, Content-Disposition %q, want %q", w.Code, w.Header().Get("Content-Disposition"), disposition)
	}
	// The pages name the file on the button and in the wg-quick command ('+' is written
	// as &#43;).
	shows := func(path, body string) {
		t.Helper()
		text := html.UnescapeString(body)
		for _, s := range []string{"Download " + want + "<", "wg-quick up ./" + want + "<"} {
			if !strings.Contains(text, s) {
				t.Errorf("%s lacks %q\n%s", path, s, excerpt(body))
			}
		}
	}
	shows(peer+"/config", h.check(acmeAdmin, "GET", peer+"/config", nil, http.StatusOK))
	body := h.check(acmeAdmin, "POST", peer+"/config/link", form("ttl", "1h"), http.StatusOK)
	link := regexp.MustCompile(`/dl/[A-Za-z0-9_-]+`).FindString(body)
	shows(link, h.check(anonymous, "GET", link, nil, http.StatusOK))
	w = h.do(anonymous, "POST", link, form())
	if w.Code != http.StatusOK || w.Header().Get("Content-Disposition") != disposition {
		t.Errorf("one-time link: %d, Content-Disposition %q, want %q", w.Code, w.Header().Get("Content-Disposition"), disposition)
	}
}
