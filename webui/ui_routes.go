package webui

import (
	"net/http"
	"slices"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// routesPage is the data of a tenant's routes editor.
type routesPage struct {
	Tenant    *control.TenantInfo
	Routes    []store.Route
	Sites     []string // the tenant's sites, for "via site:NAME"
	CanChange bool
	// Form refills the add form that was refused; Errors holds its inline errors.
	Form   struct{ Prefix, Via string }
	Errors formErrors
}

// routes serves GET /tenants/{tenant}/routes: the routes, longest prefix first, and the
// forms that add and remove them.
func (u *UI) routes(w http.ResponseWriter, r *http.Request) {
	u.renderRoutes(w, r, http.StatusOK, "", "", nil)
}

func (u *UI) renderRoutes(w http.ResponseWriter, r *http.Request, code int, prefix, via string, errs formErrors) {
	t := r.PathValue("tenant")
	if !u.seeTenant(w, r, t) {
		return
	}
	ctx := r.Context()
	tenant, err := u.tenantInfo(r, t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	rs, err := u.ctrl.Routes(ctx, t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	peers, err := u.ctrl.ListPeers(ctx, t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := routesPage{Tenant: tenant, Routes: rs, CanChange: principal(r).CanChangeTenant(t), Errors: errs}
	p.Form.Prefix, p.Form.Via = prefix, via
	for _, pi := range peers {
		if pi.Site != "" {
			p.Sites = append(p.Sites, pi.Site)
		}
	}
	slices.Sort(p.Sites)
	u.render(w, r, code, "routes", view{Title: t + " · Routes", Nav: "tenants", Data: p})
}
