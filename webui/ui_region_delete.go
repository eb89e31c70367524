package webui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
)

// deleteRegionPage is the data of the page that confirms removing a region.
type deleteRegionPage struct {
	Region  store.Region
	Confirm string
	Errors  formErrors
}

// confirmDeleteRegion serves GET /regions/{region}/delete (owners): the confirmation, which
// works without JavaScript.
func (u *UI) confirmDeleteRegion(w http.ResponseWriter, r *http.Request) {
	u.renderDeleteRegion(w, r, http.StatusOK, "", nil)
}

func (u *UI) renderDeleteRegion(w http.ResponseWriter, r *http.Request, code int, confirm string, errs formErrors) {
	rg, ok := u.findRegion(w, r, r.PathValue("region"))
	if !ok {
		return
	}
	u.render(w, r, code, "region_delete", view{Title: "Remove " + rg.Name, Nav: "regions",
		Data: deleteRegionPage{Region: rg, Confirm: confirm, Errors: errs}})
}

// deleteRegion serves POST /regions/{region}/delete (owners): field confirm must repeat the
// region's name. The store refuses the controller's own region and the only region of a
// tenant; the page then says why, and nothing is removed.
func (u *UI) deleteRegion(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	if principal(r).Role != RoleOwner {
		u.forbid(w, r, "Only owners remove regions.")
		return
	}
	name := r.PathValue("region")
	confirm := strings.TrimSpace(r.PostForm.Get("confirm"))
	if confirm != name {
		u.renderDeleteRegion(w, r, http.StatusUnprocessableEntity, confirm,
			formErrors{"confirm": "Type the region's name, " + name + ", to confirm."})
		return
	}
	if err := u.ctrl.RemoveRegion(r.Context(), name); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			u.renderDeleteRegion(w, r, http.StatusUnprocessableEntity, confirm, formErrors{"": sentence(err.Error())})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, "/regions", "region-deleted")
}
