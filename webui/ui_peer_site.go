package webui

import (
	"net/http"
)

// setPeerSite serves POST /tenants/{tenant}/peers/{peer}/site: fields site and
// site_prefixes; both empty make the peer an ordinary peer again.
func (u *UI) setPeerSite(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	form := map[string]string{"site": r.PostForm.Get("site"), "site_prefixes": r.PostForm.Get("site_prefixes")}
	site, prefixes, errs := parseSite(form["site"], form["site_prefixes"])
	if errs != nil {
		u.renderPeer(w, r, http.StatusUnprocessableEntity, form, errs)
		return
	}
	if _, err := u.ctrl.SetPeerSite(r.Context(), t, name, site, prefixes); err != nil {
		if f, ok := peerErrorField(err); ok && f != "tenant" {
			if f != "site_prefixes" {
				f = "site"
			}
			u.renderPeer(w, r, http.StatusUnprocessableEntity, form, formErrors{f: err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, peerPath(t, name), "peer-site")
}
