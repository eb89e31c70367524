package webui

import (
	"errors"
	"net/http"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// deletePeerPage is the data of the page that confirms deleting a peer.
type deletePeerPage struct {
	Peer   control.PeerInfo
	Errors formErrors
}

// confirmDeletePeer serves GET /tenants/{tenant}/peers/{peer}/delete: the confirmation,
// which works without JavaScript.
func (u *UI) confirmDeletePeer(w http.ResponseWriter, r *http.Request) {
	u.renderDeletePeer(w, r, http.StatusOK, nil)
}

func (u *UI) renderDeletePeer(w http.ResponseWriter, r *http.Request, code int, errs formErrors) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.changeTenant(w, r, t) {
		return
	}
	pi, err := u.ctrl.Peer(r.Context(), t, name)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, code, "peer_delete", view{Title: "Delete " + name, Nav: "peers", Data: deletePeerPage{Peer: pi, Errors: errs}})
}

// deletePeer serves POST /tenants/{tenant}/peers/{peer}/delete: the peer loses access at once.
// A site connector whose site routes still use is not deleted.
func (u *UI) deletePeer(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if err := u.ctrl.RemovePeer(r.Context(), t, name); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			u.renderDeletePeer(w, r, http.StatusUnprocessableEntity, formErrors{"": err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, peersOf(t), "peer-deleted")
}
