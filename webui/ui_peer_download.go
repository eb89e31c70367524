package webui

import (
	"net/http"

	"github.com/popgate/popgate/store"
)

// downloadConfig serves GET /tenants/{tenant}/peers/{peer}/config/download?region=R: the
// wg-quick file as an attachment named after the peer and, but for the controller's own
// region, the region (configFileNameIn).
func (u *UI) downloadConfig(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.changeTenant(w, r, t) {
		return
	}
	region := r.URL.Query().Get("region")
	cfg, file, err := u.regionConfig(r.Context(), t, name, region)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.record(r, t, "peer.config.download", store.PeerTarget(t, name), "region "+region)
	writeConfig(w, file, cfg)
}
