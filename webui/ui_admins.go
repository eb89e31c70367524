package webui

import (
	"net/http"

	"github.com/popgate/popgate/store"
)

// adminsPage is the data of the admins page.
type adminsPage struct {
	Connected bool // the admins can be listed
	Admins    []store.Admin
}

// adminsPage serves GET /admins (owners): who may sign in, with which role and tenant, and
// whether they use a second factor or are locked out.
func (u *UI) adminsPage(w http.ResponseWriter, r *http.Request) {
	if principal(r).Role != RoleOwner {
		u.RenderError(w, r, http.StatusForbidden, "Only owners see the admins.")
		return
	}
	p := adminsPage{Connected: u.admins != nil}
	if u.admins != nil {
		var err error
		if p.Admins, err = u.admins.ListAdmins(r.Context()); err != nil {
			u.fail(w, r, err)
			return
		}
	}
	u.render(w, r, http.StatusOK, "admins", view{Title: "Admins", Nav: "admins", Data: p})
}
