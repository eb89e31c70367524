package webui

import (
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
)

// rotatePeerKey serves POST /tenants/{tenant}/peers/{peer}/rotate: the peer gets a new key
// and the old one is refused at once. Field public_key: the public key of a new key pair the
// user made, required for a peer whose user brought its key; empty: popgate generates the key
// pair. The config page with the new config follows.
func (u *UI) rotatePeerKey(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	pub := strings.TrimSpace(r.PostForm.Get("public_key"))
	if pub != "" {
		if _, err := store.ParseKey(pub); err != nil {
			u.renderPeer(w, r, http.StatusUnprocessableEntity, map[string]string{"public_key": pub}, formErrors{"public_key": err.Error()})
			return
		}
	}
	region, err := u.defaultRegion(r.Context(), t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if _, _, err := u.ctrl.RotatePeerKey(r.Context(), t, name, pub, region); err != nil {
		if field, ok := peerErrorField(err); ok && field != "tenant" {
			u.renderPeer(w, r, http.StatusUnprocessableEntity, map[string]string{"public_key": pub}, formErrors{"public_key": err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, peerPath(t, name)+"/config", "peer-rotated")
}
