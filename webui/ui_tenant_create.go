package webui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
)

// createTenant serves POST /tenants (owners): field name. Bad names and duplicates are
// shown next to the field and nothing is stored.
func (u *UI) createTenant(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	if principal(r).Role != RoleOwner {
		u.forbid(w, r, "Only owners create tenants.")
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if err := store.ValidateTenantName(name); err != nil {
		u.renderTenants(w, r, http.StatusUnprocessableEntity, name, formErrors{"name": nameError(err)})
		return
	}
	if _, err := u.ctrl.AddTenant(r.Context(), name); err != nil {
		if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrInvalid) {
			u.renderTenants(w, r, http.StatusUnprocessableEntity, name, formErrors{"name": err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, peersOf(name), "tenant-created")
}
