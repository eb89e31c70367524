package webui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
)

// addRoute serves POST /tenants/{tenant}/routes: fields prefix (CIDR) and via ("internet" or
// "site:NAME").
func (u *UI) addRoute(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	field, via := strings.TrimSpace(r.PostForm.Get("prefix")), strings.TrimSpace(r.PostForm.Get("via"))
	prefix, msg := parsePrefix(field)
	if msg != "" {
		u.renderRoutes(w, r, http.StatusUnprocessableEntity, field, via, formErrors{"prefix": msg})
		return
	}
	if via == "" {
		u.renderRoutes(w, r, http.StatusUnprocessableEntity, field, via, formErrors{"via": "Choose where the traffic goes: the internet, or one of the tenant's sites."})
		return
	}
	if _, err := u.ctrl.AddRoute(r.Context(), t, prefix, via); err != nil {
		var f string
		switch {
		case errors.Is(err, store.ErrExists):
			f = "prefix"
		case errors.Is(err, store.ErrNotFound) && strings.HasPrefix(err.Error(), "site"):
			f = "via"
		case errors.Is(err, store.ErrInvalid):
			f = "prefix"
			if strings.Contains(err.Error(), "via") {
				f = "via"
			}
		default:
			u.fail(w, r, err)
			return
		}
		u.renderRoutes(w, r, http.StatusUnprocessableEntity, field, via, formErrors{f: err.Error()})
		return
	}
	redirect(w, r, tenantPath(t)+"/routes", "route-added")
}
