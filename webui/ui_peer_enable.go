package webui

import "net/http"

// enablePeer serves POST /tenants/{tenant}/peers/{peer}/enable.
func (u *UI) enablePeer(w http.ResponseWriter, r *http.Request) { u.setPeerEnabled(w, r, true) }

// disablePeer serves POST /tenants/{tenant}/peers/{peer}/disable: the peer is disconnected at
// once and keeps its addresses and keys.
func (u *UI) disablePeer(w http.ResponseWriter, r *http.Request) { u.setPeerEnabled(w, r, false) }

func (u *UI) setPeerEnabled(w http.ResponseWriter, r *http.Request, on bool) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if _, err := u.ctrl.SetPeerEnabled(r.Context(), t, name, on); err != nil {
		u.fail(w, r, err)
		return
	}
	ok := "peer-disabled"
	if on {
		ok = "peer-enabled"
	}
	back := peerPath(t, name)
	if r.PostForm.Get("back") == "peers" {
		back = peersOf(t)
	}
	redirect(w, r, back, ok)
}
