package webui

import (
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/popgate/popgate/store"
)

// regionsPage is the data of the regions page.
type regionsPage struct {
	Regions   []store.Region
	CanChange bool // owners add, change and remove regions
	// ShowPoPs: the principal may see nodes, and PoPs holds each region's by name.
	ShowPoPs bool
	PoPs     map[string]*regionPoPs
	Form     struct{ Name, Endpoint string }
	Errors   formErrors
}

// regions serves GET /regions: every region the principal may see, with its endpoint, key,
// the tenants limited to it and (owners) its PoPs, and the form that adds one (owners).
func (u *UI) regions(w http.ResponseWriter, r *http.Request) {
	u.renderRegions(w, r, http.StatusOK, "", "", nil)
}

// renderRegions writes the regions page; name, endpoint and errs refill the add form.
func (u *UI) renderRegions(w http.ResponseWriter, r *http.Request, code int, name, endpoint string, errs formErrors) {
	rs, err := u.visibleRegions(r.Context(), principal(r))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	home := ""
	if i := slices.IndexFunc(rs, func(rg store.Region) bool { return rg.Home }); i >= 0 {
		home = rs[i].Name
	}
	pops, show, err := u.popsByRegion(r, home)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := regionsPage{Regions: rs, CanChange: principal(r).Role == RoleOwner, ShowPoPs: show, PoPs: pops, Errors: errs}
	p.Form.Name, p.Form.Endpoint = name, endpoint
	u.render(w, r, code, "regions", view{Title: "Regions", Nav: "regions", Data: p})
}

// regionPage is the data of one region's page.
type regionPage struct {
	Region    store.Region
	CanChange bool
	// ShowPoPs: the principal may see nodes, and PoPs are the region's (nil: none).
	ShowPoPs bool
	PoPs     *regionPoPs
	Form     struct{ Endpoint string }
	Errors   formErrors
}

// region serves GET /regions/{region}: the region's endpoint, full key, tenants and (owners)
// PoPs with their state, and the form that changes its endpoint (owners).
func (u *UI) region(w http.ResponseWriter, r *http.Request) {
	u.renderRegion(w, r, http.StatusOK, nil, nil)
}

// renderRegion writes a region's page; endpoint, when not nil, refills the refused form.
func (u *UI) renderRegion(w http.ResponseWriter, r *http.Request, code int, endpoint *string, errs formErrors) {
	rg, ok := u.findRegion(w, r, r.PathValue("region"))
	if !ok {
		return
	}
	home := ""
	if rg.Home {
		home = rg.Name
	}
	pops, show, err := u.popsByRegion(r, home)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := regionPage{Region: rg, CanChange: principal(r).Role == RoleOwner, ShowPoPs: show, PoPs: pops[rg.Name], Errors: errs}
	p.Form.Endpoint = rg.Endpoint
	if endpoint != nil {
		p.Form.Endpoint = *endpoint
	}
	u.render(w, r, code, "region", view{Title: "Region " + rg.Name, Nav: "regions", Data: p})
}

// findRegion returns the region name as the principal may see it, or answers 404 (for a
// region that does not exist and for one the principal's tenant may not use alike).
func (u *UI) findRegion(w http.ResponseWriter, r *http.Request, name string) (store.Region, bool) {
	rs, err := u.visibleRegions(r.Context(), principal(r))
	if err != nil {
		u.fail(w, r, err)
		return store.Region{}, false
	}
	i := slices.IndexFunc(rs, func(rg store.Region) bool { return rg.Name == name })
	if i < 0 {
		u.RenderError(w, r, http.StatusNotFound, "")
		return store.Region{}, false
	}
	return rs[i], true
}

// visibleRegions returns the regions p may see, ordered by name: every region, or for a
// principal limited to a tenant the regions that tenant may use. Each region's tenants are
// cut to those p may see.
func (u *UI) visibleRegions(ctx context.Context, p *Principal) ([]store.Region, error) {
	rs, err := u.ctrl.Regions(ctx)
	if err != nil {
		return nil, err
	}
	if p.Tenant != "" {
		rs = tenantRegions(rs, p.Tenant)
	}
	for i := range rs {
		rs[i].Tenants = slices.DeleteFunc(slices.Clone(rs[i].Tenants), func(t string) bool { return !p.CanSeeTenant(t) })
	}
	return rs, nil
}

// tenantRegions returns the regions of rs that tenant may use: those that list it among
// the tenants limited to them or, when none does, every one.
func tenantRegions(rs []store.Region, tenant string) []store.Region {
	var out []store.Region
	for _, r := range rs {
		if slices.Contains(r.Tenants, tenant) {
			out = append(out, r)
		}
	}
	if out == nil {
		return rs
	}
	return out
}

// regionPath is the page of region name.
func regionPath(name string) string { return "/regions/" + url.PathEscape(name) }
