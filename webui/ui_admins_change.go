package webui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
)

// secretPage is the data of the page that shows a generated password or API token, once.
type secretPage struct {
	Kind   string // "admin" (a new admin), "password" (a new password) or "token"
	Name   string
	Role   string // roleName's words
	Secret string
	Self   bool // the password of the signed-in admin, whose session just ended
	Token  store.APIToken
	Back   string // where the page leads afterwards
}

// adminEditPage is the data of one admin's page.
type adminEditPage struct {
	Admin   store.Admin
	Path    string
	Self    bool
	Tenants []string
	Roles   []roleOption
	Form    adminForm
	Errors  formErrors
}

// removePage is the data of the page that confirms removing an admin or an API token.
type removePage struct {
	Kind   string // "admin" or "token"
	Name   string
	Role   string // roleName's words
	Action string // the form's POST path
	Back   string
	Self   bool
	Errors formErrors
}

// manageAdmins returns the admin manager after checking that the principal is an owner; false
// when it answered the request.
func (u *UI) manageAdmins(w http.ResponseWriter, r *http.Request) (adminManager, bool) {
	if !u.ownerOnly(w, r) {
		return nil, false
	}
	m := u.adminManager()
	if m == nil {
		u.RenderError(w, r, http.StatusNotImplemented, "Managing admins is not available in this version of popgate: use 'popgate admin'.")
		return nil, false
	}
	return m, true
}

// pathAdmin returns the admin manager, as manageAdmins, and the admin the path names
// ({admin}); false when it answered the request, 404 when there is no such admin.
func (u *UI) pathAdmin(w http.ResponseWriter, r *http.Request) (adminManager, store.Admin, bool) {
	m, ok := u.manageAdmins(w, r)
	if !ok {
		return nil, store.Admin{}, false
	}
	a, err := m.Admin(r.Context(), r.PathValue("admin"))
	if err != nil {
		u.fail(w, r, err)
		return nil, store.Admin{}, false
	}
	return m, a, true
}

// addAdmin serves POST /admins (owners): fields name, role and tenant. The answer shows the
// generated password this once. Bad input is shown next to its field and nothing is stored.
func (u *UI) addAdmin(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	m, ok := u.manageAdmins(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	f := adminForm{
		Name:   strings.TrimSpace(r.PostForm.Get("name")),
		Role:   strings.TrimSpace(r.PostForm.Get("role")),
		Tenant: strings.TrimSpace(r.PostForm.Get("tenant")),
	}
	tf := tokenForm{Role: store.RoleViewer, Days: "90"}
	tenants, err := u.tenantNames(ctx)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	errs := checkRole(f.Role, f.Tenant, tenants)
	if err := store.ValidateAdminName(f.Name); err != nil {
		if errs == nil {
			errs = formErrors{}
		}
		errs["name"] = nameError(err)
	}
	if errs != nil {
		u.renderAdmins(w, r, http.StatusUnprocessableEntity, f, errs, tf, nil)
		return
	}
	a, password, err := addAdmin(ctx, m, store.NewAdmin{Name: f.Name, Role: f.Role, Tenant: f.Tenant})
	if err != nil {
		if field, ok := fieldOf(err); ok {
			msg := sentence(err.Error())
			if errors.Is(err, store.ErrExists) {
				msg = "An admin with this name already exists: choose another name, or reset that admin's password."
			}
			u.renderAdmins(w, r, http.StatusUnprocessableEntity, f, formErrors{field: msg}, tf, nil)
			return
		}
		u.fail(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "admins_secret", view{Title: "Admin " + a.Name + " added", Nav: "admins",
		Data: secretPage{Kind: "admin", Name: a.Name, Role: roleName(a.Role, a.TenantName), Secret: password, Back: adminPath(a.Name)}})
}

// fieldOf names the form field a controller error of adding or changing an admin or token
// belongs to: the name when it is taken, the tenant when it went away meanwhile, the form
// ("") for other refusals (the last owner stays one). False: not the user's to fix.
func fieldOf(err error) (string, bool) {
	switch {
	case errors.Is(err, store.ErrExists):
		return "name", true
	case errors.Is(err, store.ErrNotFound):
		return "tenant", true
	case errors.Is(err, store.ErrInvalid):
		return "", true
	}
	return "", false
}

// adminEdit serves GET /admins/{admin} (owners): the admin's role and tenant, status, password,
// second factor, and the way to remove it.
func (u *UI) adminEdit(w http.ResponseWriter, r *http.Request) {
	u.renderAdminEdit(w, r, http.StatusOK, nil, nil)
}

// renderAdminEdit writes the page of the admin of the path; f, when set, refills the role
// form.
func (u *UI) renderAdminEdit(w http.ResponseWriter, r *http.Request, code int, f *adminForm, errs formErrors) {
	_, a, ok := u.pathAdmin(w, r)
	if !ok {
		return
	}
	tenants, err := u.tenantNames(r.Context())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := adminEditPage{Admin: a, Path: adminPath(a.Name), Self: a.ID == principal(r).AdminID, Tenants: tenants,
		Roles: roleOptions, Form: adminForm{Name: a.Name, Role: a.Role, Tenant: a.TenantName}, Errors: errs}
	if f != nil {
		p.Form = *f
	}
	u.render(w, r, code, "admins_edit", view{Title: "Admin " + a.Name, Nav: "admins", Flash: adminFlash(r), Data: p})
}

// setAdminRole serves POST /admins/{admin}/role (owners): fields role and tenant. The last
// enabled owner stays one: the controller's refusal is shown on the form.
func (u *UI) setAdminRole(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	m, a, ok := u.pathAdmin(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	f := adminForm{Name: a.Name, Role: strings.TrimSpace(r.PostForm.Get("role")), Tenant: strings.TrimSpace(r.PostForm.Get("tenant"))}
	tenants, err := u.tenantNames(ctx)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if errs := checkRole(f.Role, f.Tenant, tenants); errs != nil {
		u.renderAdminEdit(w, r, http.StatusUnprocessableEntity, &f, errs)
		return
	}
	if f.Role == a.Role && f.Tenant == a.TenantName {
		redirect(w, r, adminPath(a.Name), "")
		return
	}
	if a, err = m.SetAdminRole(ctx, a.Name, f.Role, f.Tenant); err != nil {
		if field, ok := fieldOf(err); ok {
			u.renderAdminEdit(w, r, http.StatusUnprocessableEntity, &f, formErrors{field: sentence(err.Error())})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, adminPath(a.Name), "admin-role")
}

// disableAdmin serves POST /admins/{admin}/disable (owners): its sessions end and it cannot
// sign in. The last enabled owner is not disabled.
func (u *UI) disableAdmin(w http.ResponseWriter, r *http.Request) { u.setAdminDisabled(w, r, true) }

// enableAdmin serves POST /admins/{admin}/enable (owners).
func (u *UI) enableAdmin(w http.ResponseWriter, r *http.Request) { u.setAdminDisabled(w, r, false) }

func (u *UI) setAdminDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	m, a, ok := u.pathAdmin(w, r)
	if !ok {
		return
	}
	if a.Disabled == disabled {
		redirect(w, r, adminPath(a.Name), "")
		return
	}
	a, err := m.SetAdminDisabled(r.Context(), a.Name, disabled)
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			u.renderAdminEdit(w, r, http.StatusUnprocessableEntity, nil, formErrors{"": sentence(err.Error())})
			return
		}
		u.fail(w, r, err)
		return
	}
	ok2 := "admin-enabled"
	if disabled {
		ok2 = "admin-disabled"
	}
	redirect(w, r, adminPath(a.Name), ok2)
}

// resetAdminPassword serves POST /admins/{admin}/password (owners): a generated password,
// shown this once; the admin's sessions end, and so do the waits of addresses that failed to sign in as it.
func (u *UI) resetAdminPassword(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	m, ok := u.manageAdmins(w, r)
	if !ok {
		return
	}
	a, password, err := setAdminPassword(r.Context(), m, r.PathValue("admin"), "")
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "admins_secret", view{Title: "New password for " + a.Name, Nav: "admins",
		Data: secretPage{Kind: "password", Name: a.Name, Role: roleName(a.Role, a.TenantName), Secret: password,
			Self: a.ID == principal(r).AdminID, Back: adminPath(a.Name)}})
}

// disableAdminTOTP serves POST /admins/{admin}/totp/disable (owners): for an admin who lost
// their authenticator, sign-in asks for the password alone until they enrol again.
func (u *UI) disableAdminTOTP(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	m, a, ok := u.pathAdmin(w, r)
	if !ok {
		return
	}
	if !a.TOTPEnabled {
		redirect(w, r, adminPath(a.Name), "")
		return
	}
	a, err := m.DisableAdminTOTP(r.Context(), a.Name)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	redirect(w, r, adminPath(a.Name), "admin-totp-off")
}

// confirmRemoveAdmin serves GET /admins/{admin}/delete (owners): the confirmation, which works
// without JavaScript.
func (u *UI) confirmRemoveAdmin(w http.ResponseWriter, r *http.Request) {
	u.renderRemoveAdmin(w, r, http.StatusOK, nil)
}

func (u *UI) renderRemoveAdmin(w http.ResponseWriter, r *http.Request, code int, errs formErrors) {
	_, a, ok := u.pathAdmin(w, r)
	if !ok {
		return
	}
	path := adminPath(a.Name)
	u.render(w, r, code, "admins_delete", view{Title: "Remove " + a.Name, Nav: "admins", Data: removePage{
		Kind: "admin", Name: a.Name, Role: roleName(a.Role, a.TenantName), Action: path + "/delete", Back: path, Self: a.ID == principal(r).AdminID,
		Errors: errs}})
}

// removeAdmin serves POST /admins/{admin}/delete (owners): the admin and its sessions go. The
// last enabled owner stays: the controller's refusal is shown on the confirmation.
func (u *UI) removeAdmin(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	m, ok := u.manageAdmins(w, r)
	if !ok {
		return
	}
	if _, err := m.RemoveAdmin(r.Context(), r.PathValue("admin")); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			u.renderRemoveAdmin(w, r, http.StatusUnprocessableEntity, formErrors{"": sentence(err.Error())})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, "/admins", "admin-removed")
}
