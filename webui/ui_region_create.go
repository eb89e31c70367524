package webui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
)

// createRegion serves POST /regions (owners): fields name and endpoint. A bad name or
// endpoint, or a name taken, is shown next to its field and nothing is stored.
func (u *UI) createRegion(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	if principal(r).Role != RoleOwner {
		u.forbid(w, r, "Only owners add regions.")
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	endpoint := strings.TrimSpace(r.PostForm.Get("endpoint"))
	errs := formErrors{}
	if err := store.ValidateRegionName(name); err != nil {
		errs["name"] = nameError(err)
	}
	if err := store.ValidateEndpoint(endpoint); err != nil {
		errs["endpoint"] = endpointError(endpoint, err)
	}
	if len(errs) > 0 {
		u.renderRegions(w, r, http.StatusUnprocessableEntity, name, endpoint, errs)
		return
	}
	if _, err := u.ctrl.AddRegion(r.Context(), name, endpoint); err != nil {
		switch {
		case errors.Is(err, store.ErrExists):
			u.renderRegions(w, r, http.StatusUnprocessableEntity, name, endpoint, formErrors{"name": sentence(err.Error())})
		case errors.Is(err, store.ErrInvalid):
			u.renderRegions(w, r, http.StatusUnprocessableEntity, name, endpoint, formErrors{"": sentence(err.Error())})
		default:
			u.fail(w, r, err)
		}
		return
	}
	redirect(w, r, regionPath(name), "region-created")
}

// setRegionEndpoint serves POST /regions/{region}/endpoint (owners): field endpoint. Configs
// already handed out keep the old endpoint until they are imported again.
func (u *UI) setRegionEndpoint(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	if principal(r).Role != RoleOwner {
		u.forbid(w, r, "Only owners change regions.")
		return
	}
	rg, ok := u.findRegion(w, r, r.PathValue("region"))
	if !ok {
		return
	}
	endpoint := strings.TrimSpace(r.PostForm.Get("endpoint"))
	if rg.Home {
		u.renderRegion(w, r, http.StatusUnprocessableEntity, &endpoint, formErrors{"endpoint": "This is the controller's own region: its endpoint is popgate serve's --public-endpoint (public_endpoint in the config file). Change that and restart popgate."})
		return
	}
	if err := store.ValidateEndpoint(endpoint); err != nil {
		u.renderRegion(w, r, http.StatusUnprocessableEntity, &endpoint, formErrors{"endpoint": endpointError(endpoint, err)})
		return
	}
	if _, err := u.ctrl.SetRegion(r.Context(), rg.Name, endpoint); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			u.renderRegion(w, r, http.StatusUnprocessableEntity, &endpoint, formErrors{"endpoint": sentence(err.Error())})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, regionPath(rg.Name), "region-endpoint")
}

// endpointError is the inline error of a refused endpoint.
func endpointError(endpoint string, err error) string {
	if endpoint == "" {
		return "Enter the host:port the region's clients connect to, e.g. vpn-fra.example.com:51820."
	}
	return sentence(err.Error())
}
