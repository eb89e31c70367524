package webui

import (
	"errors"
	"net/http"
	"slices"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// tenantRegionsPage is the data of a tenant's regions tab.
type tenantRegionsPage struct {
	Tenant *control.TenantInfo
	// Limited: the tenant may use only the regions marked Allowed; otherwise every region.
	Limited   bool
	Regions   []tenantRegionRow
	CanChange bool // owners decide where a tenant may be, like the API
	// Form refills the refused form: Scope "all" or "some", and the regions ticked.
	Form   struct{ Scope string }
	Errors formErrors
}

type tenantRegionRow struct {
	store.Region
	Allowed bool // the tenant may use the region
	Checked bool // ticked in the form
}

// tenantRegionsTab serves GET /tenants/{tenant}/regions: the regions the tenant may use, and
// (owners) the form that limits it to some or allows it everywhere.
func (u *UI) tenantRegionsTab(w http.ResponseWriter, r *http.Request) {
	u.renderTenantRegions(w, r, http.StatusOK, "", nil, nil)
}

// renderTenantRegions writes the tab; scope and ticked, when scope is set, refill the form.
func (u *UI) renderTenantRegions(w http.ResponseWriter, r *http.Request, code int, scope string, ticked []string, errs formErrors) {
	t := r.PathValue("tenant")
	if !u.seeTenant(w, r, t) {
		return
	}
	tenant, err := u.tenantInfo(r, t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	rs, err := u.visibleRegions(r.Context(), principal(r))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := tenantRegionsPage{Tenant: tenant, CanChange: principal(r).Role == RoleOwner, Errors: errs}
	for _, rg := range rs {
		p.Limited = p.Limited || slices.Contains(rg.Tenants, t)
	}
	for _, rg := range rs {
		row := tenantRegionRow{Region: rg, Allowed: !p.Limited || slices.Contains(rg.Tenants, t)}
		row.Checked = p.Limited && row.Allowed
		if scope != "" {
			row.Checked = slices.Contains(ticked, rg.Name)
		}
		p.Regions = append(p.Regions, row)
	}
	p.Form.Scope = scope
	if scope == "" {
		p.Form.Scope = map[bool]string{true: "some", false: "all"}[p.Limited]
	}
	u.render(w, r, code, "tenant_regions", view{Title: t + " · Regions", Nav: "tenants", Data: p})
}

// setTenantRegions serves POST /tenants/{tenant}/regions (owners): field scope "all" (every
// region, also those added later) or "some" with the regions ticked in field region.
func (u *UI) setTenantRegions(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if principal(r).Role != RoleOwner {
		u.forbid(w, r, "Only owners decide which regions a tenant may use.")
		return
	}
	scope, ticked := r.PostForm.Get("scope"), r.PostForm["region"]
	var regions []string
	switch scope {
	case "all":
	case "some":
		if len(ticked) == 0 {
			u.renderTenantRegions(w, r, http.StatusUnprocessableEntity, scope, ticked,
				formErrors{"region": "Tick at least one region, or allow every region."})
			return
		}
		regions = ticked
	default:
		u.RenderError(w, r, http.StatusBadRequest, `scope must be "all" or "some".`)
		return
	}
	if _, err := u.ctrl.SetTenantRegions(r.Context(), t, regions); err != nil {
		// A region removed since the page was shown, or a made-up name.
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			if _, terr := u.tenantInfo(r, t); terr != nil {
				u.fail(w, r, terr)
				return
			}
			msg := sentence(err.Error())
			if errors.Is(err, store.ErrNotFound) {
				msg = "A region ticked does not exist (any more): tick among the regions listed now."
			}
			u.renderTenantRegions(w, r, http.StatusUnprocessableEntity, scope, ticked, formErrors{"region": msg})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, tenantPath(t)+"/regions", "tenant-regions")
}
