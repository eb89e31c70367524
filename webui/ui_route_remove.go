package webui

import (
	"errors"
	"net/http"

	"github.com/popgate/popgate/store"
)

// removeRoute serves POST /tenants/{tenant}/routes/remove: field prefix.
func (u *UI) removeRoute(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	prefix, msg := parsePrefix(r.PostForm.Get("prefix"))
	if msg != "" {
		u.renderRoutes(w, r, http.StatusUnprocessableEntity, "", "", formErrors{"": msg})
		return
	}
	if err := u.ctrl.RemoveRoute(r.Context(), t, prefix); err != nil {
		if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) && u.tenantExists(r, t) {
			u.renderRoutes(w, r, http.StatusUnprocessableEntity, "", "", formErrors{"": err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, tenantPath(t)+"/routes", "route-removed")
}

// tenantExists reports whether tenant t exists.
func (u *UI) tenantExists(r *http.Request, t string) bool {
	_, err := u.tenantInfo(r, t)
	return err == nil
}
