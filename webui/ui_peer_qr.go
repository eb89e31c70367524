package webui

import (
	"net/http"
	"strconv"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// qrModule is the size of one QR module in pixels: a ~400-byte config becomes a ~500 px
// image that phones read from across a desk.
const qrModule = 6

// configQR serves GET /tenants/{tenant}/peers/{peer}/config/qr.png?region=R: the config as
// a QR code for the WireGuard apps. It is part of the config page, which records the view in
// the audit log.
func (u *UI) configQR(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.changeTenant(w, r, t) {
		return
	}
	cfg, _, err := u.regionConfig(r.Context(), t, name, r.URL.Query().Get("region"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	qr, err := qrcode.New(qrContent(cfg), qrcode.Medium)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	png, err := qr.PNG(-qrModule)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(png)))
	w.Write(png)
}

// qrContent is cfg without its comment lines: the apps ignore them, and a shorter text makes
// a coarser code that scans more easily.
func qrContent(cfg string) string {
	var b strings.Builder
	for line := range strings.Lines(cfg) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}
