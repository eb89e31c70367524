package webui

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/popgate/popgate/store"
)

// setPeerExpiry serves POST /tenants/{tenant}/peers/{peer}/expiry: field expires, a date
// (YYYY-MM-DD, the last day the peer works, in UTC) or empty for never.
func (u *UI) setPeerExpiry(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if u.lifecycle == nil {
		u.RenderError(w, r, http.StatusNotImplemented, "Peer expiry is not available in this version of popgate.")
		return
	}
	field := strings.TrimSpace(r.PostForm.Get("expires"))
	if r.PostForm.Has("never") {
		field = ""
	}
	form := map[string]string{"expires": field}
	var expires *time.Time
	if field != "" {
		day, err := time.Parse(time.DateOnly, field)
		if err != nil {
			u.renderPeer(w, r, http.StatusUnprocessableEntity, form, formErrors{"expires": "Give the last day the peer may connect as a date, e.g. 2027-03-31, or leave it empty for never."})
			return
		}
		end := day.Add(24 * time.Hour) // the end of that day
		if !end.After(u.now()) {
			u.renderPeer(w, r, http.StatusUnprocessableEntity, form, formErrors{"expires": "That day is over: choose today or a later day, or disable the peer instead."})
			return
		}
		expires = &end
	}
	if _, err := u.lifecycle.SetPeerExpiry(r.Context(), t, name, expires); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			u.renderPeer(w, r, http.StatusUnprocessableEntity, form, formErrors{"expires": err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, peerPath(t, name), "peer-expiry")
}
