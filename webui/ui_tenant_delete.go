package webui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// deleteTenantPage is the data of the page that confirms deleting a tenant.
type deleteTenantPage struct {
	Tenant  control.TenantInfo
	Confirm string
	Errors  formErrors
}

// confirmDeleteTenant serves GET /tenants/{tenant}/delete (owners): the confirmation, which
// works without JavaScript.
func (u *UI) confirmDeleteTenant(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.changeTenant(w, r, t) {
		return
	}
	u.renderDeleteTenant(w, r, http.StatusOK, t, "", nil)
}

func (u *UI) renderDeleteTenant(w http.ResponseWriter, r *http.Request, code int, name, confirm string, errs formErrors) {
	ts, err := u.ctrl.ListTenants(r.Context())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	for _, t := range ts {
		if t.Name == name {
			u.render(w, r, code, "tenant_delete", view{Title: "Delete " + name, Nav: "tenants",
				Data: deleteTenantPage{Tenant: t, Confirm: confirm, Errors: errs}})
			return
		}
	}
	u.RenderError(w, r, http.StatusNotFound, "")
}

// deleteTenant serves POST /tenants/{tenant}/delete (owners): field confirm must repeat the
// tenant's name. A tenant that still has peers is not deleted.
func (u *UI) deleteTenant(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if principal(r).Role != RoleOwner {
		u.forbid(w, r, "Only owners delete tenants.")
		return
	}
	confirm := strings.TrimSpace(r.PostForm.Get("confirm"))
	if confirm != t {
		u.renderDeleteTenant(w, r, http.StatusUnprocessableEntity, t, confirm,
			formErrors{"confirm": "Type the tenant's name, " + t + ", to confirm."})
		return
	}
	if err := u.ctrl.RemoveTenant(r.Context(), t); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			u.renderDeleteTenant(w, r, http.StatusUnprocessableEntity, t, confirm, formErrors{"": err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, "/tenants", "tenant-deleted")
}
