package webui

import (
	"net/http"
)

// setPeerGroups serves POST /tenants/{tenant}/peers/{peer}/groups: field groups, names
// separated by commas or spaces (empty: none).
func (u *UI) setPeerGroups(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	field := r.PostForm.Get("groups")
	groups, msg := parseGroups(field)
	if msg != "" {
		u.renderPeer(w, r, http.StatusUnprocessableEntity, map[string]string{"groups": field}, formErrors{"groups": msg})
		return
	}
	if _, err := u.ctrl.SetPeerGroups(r.Context(), t, name, groups); err != nil {
		if f, ok := peerErrorField(err); ok && f != "tenant" {
			u.renderPeer(w, r, http.StatusUnprocessableEntity, map[string]string{"groups": field}, formErrors{"groups": err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, peerPath(t, name), "peer-groups")
}
