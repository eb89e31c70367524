package webui

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/popgate/popgate/store"
)

// Regions: a region has a public endpoint and a WireGuard key of its own; client configs
// take a region (the region query parameter or body field; default the controller's own).

func (a *API) listRegions(w http.ResponseWriter, r *http.Request) error {
	rs, err := a.ctrl.Regions(r.Context())
	if err != nil {
		return err
	}
	out := APIRegions{Regions: make([]APIRegion, len(rs))}
	for i, rg := range rs {
		out.Regions[i] = apiRegion(rg)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) addRegion(w http.ResponseWriter, r *http.Request) error {
	var req APINewRegion
	if err := decode(r, &req); err != nil {
		return err
	}
	rg, err := a.ctrl.AddRegion(r.Context(), req.Name, req.Endpoint)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiRegion(rg))
	return nil
}

func (a *API) updateRegion(w http.ResponseWriter, r *http.Request) error {
	var req APIRegionUpdate
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Endpoint == nil {
		return fmt.Errorf("%w: nothing to change: send endpoint", errBadRequest)
	}
	rg, err := a.ctrl.SetRegion(r.Context(), r.PathValue("region"), *req.Endpoint)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiRegion(rg))
	return nil
}

func (a *API) removeRegion(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctrl.RemoveRegion(r.Context(), r.PathValue("region")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func apiRegion(r store.Region) APIRegion {
	ts := r.Tenants
	if ts == nil {
		ts = []string{}
	}
	return APIRegion{Name: r.Name, Endpoint: r.Endpoint, PublicKey: r.PublicKey.String(), Home: r.Home,
		CreatedAt: r.CreatedAt.UTC(), Tenants: ts}
}

// scopedRegions answers GET /api/v1/regions for a principal limited to a tenant: every
// region, but of the tenants limited to each only its own.
func (s *Server) scopedRegions(w http.ResponseWriter, r *http.Request, p *Principal) {
	var rs APIRegions
	if !s.apiJSON(w, r, &rs) {
		return
	}
	for i := range rs.Regions {
		rs.Regions[i].Tenants = slices.DeleteFunc(rs.Regions[i].Tenants, func(t string) bool { return !p.CanSeeTenant(t) })
	}
	writeJSON(w, http.StatusOK, rs)
}
