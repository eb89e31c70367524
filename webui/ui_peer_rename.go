package webui

import (
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
)

// renamePeer serves POST /tenants/{tenant}/peers/{peer}/rename: field name.
func (u *UI) renamePeer(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if u.lifecycle == nil {
		u.RenderError(w, r, http.StatusNotImplemented, "Renaming peers is not available in this version of popgate.")
		return
	}
	newName := strings.TrimSpace(r.PostForm.Get("name"))
	form := map[string]string{"name": newName}
	if err := store.ValidatePeerName(newName); err != nil {
		u.renderPeer(w, r, http.StatusUnprocessableEntity, form, formErrors{"name": nameError(err)})
		return
	}
	if newName == name {
		redirect(w, r, peerPath(t, name), "")
		return
	}
	if _, err := u.lifecycle.RenamePeer(r.Context(), t, name, newName); err != nil {
		if field, ok := peerErrorField(err); ok && field != "tenant" {
			u.renderPeer(w, r, http.StatusUnprocessableEntity, form, formErrors{"name": err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, peerPath(t, newName), "peer-renamed")
}
