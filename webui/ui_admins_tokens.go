package webui

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/popgate/popgate/store"
)

// maxTokenDays is the longest lifetime the form gives an API token; longer-lived ones are
// better made without expiry on purpose (empty field).
const maxTokenDays = 3650

// manageTokens returns the token manager after checking that the principal is an owner; false
// when it answered the request.
func (u *UI) manageTokens(w http.ResponseWriter, r *http.Request) (tokenManager, bool) {
	if !u.ownerOnly(w, r) {
		return nil, false
	}
	m := u.tokenManager()
	if m == nil {
		u.RenderError(w, r, http.StatusNotImplemented, "API tokens are not available in this version of popgate: use 'popgate token'.")
		return nil, false
	}
	return m, true
}

// parseDays reads the token form's days field: empty for a token that never expires; the
// string is the inline error.
func parseDays(s string) (int, string) {
	if s == "" {
		return 0, ""
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxTokenDays {
		return 0, "Give a whole number of days from 1 to " + strconv.Itoa(maxTokenDays) + ", or leave it empty for a token that never expires."
	}
	return n, ""
}

// addToken serves POST /tokens (owners): fields name, role, tenant and days (empty: never
// expires). The answer shows the token's secret this once. Bad input is shown next to its
// field and nothing is stored.
func (u *UI) addToken(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	m, ok := u.manageTokens(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	f := tokenForm{
		Name:   strings.TrimSpace(r.PostForm.Get("name")),
		Role:   strings.TrimSpace(r.PostForm.Get("role")),
		Tenant: strings.TrimSpace(r.PostForm.Get("tenant")),
		Days:   strings.TrimSpace(r.PostForm.Get("days")),
	}
	af := newAdminForm
	tenants, err := u.tenantNames(ctx)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	errs := checkRole(f.Role, f.Tenant, tenants)
	if errs == nil {
		errs = formErrors{}
	}
	if err := store.ValidateTokenName(f.Name); err != nil {
		errs["name"] = nameError(err)
	}
	days, msg := parseDays(f.Days)
	if msg != "" {
		errs["days"] = msg
	}
	if len(errs) > 0 {
		u.renderAdmins(w, r, http.StatusUnprocessableEntity, af, nil, f, errs)
		return
	}
	nt := store.NewAPIToken{Name: f.Name, Role: f.Role, Tenant: f.Tenant}
	if days > 0 {
		nt.ExpiresAt = u.now().Add(time.Duration(days) * 24 * time.Hour)
	}
	k, secret, err := m.AddAPIToken(ctx, nt)
	if err != nil {
		if field, ok := fieldOf(err); ok {
			msg := sentence(err.Error())
			if errors.Is(err, store.ErrExists) {
				msg = "An API token with this name already exists: choose another name, or remove the old token first."
			}
			u.renderAdmins(w, r, http.StatusUnprocessableEntity, af, nil, f, formErrors{field: msg})
			return
		}
		u.fail(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "admins_secret", view{Title: "API token " + k.Name + " created", Nav: "admins",
		Data: secretPage{Kind: "token", Name: k.Name, Role: roleName(k.Role, k.TenantName), Secret: secret, Token: k, Back: "/admins#tokens"}})
}

// confirmRemoveToken serves GET /tokens/{token}/delete (owners): the confirmation, which works
// without JavaScript.
func (u *UI) confirmRemoveToken(w http.ResponseWriter, r *http.Request) {
	m, ok := u.manageTokens(w, r)
	if !ok {
		return
	}
	ks, err := m.ListAPITokens(r.Context())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	name := r.PathValue("token")
	for _, k := range ks {
		if k.Name == name {
			u.render(w, r, http.StatusOK, "admins_delete", view{Title: "Remove API token " + k.Name, Nav: "admins", Data: removePage{
				Kind: "token", Name: k.Name, Role: roleName(k.Role, k.TenantName), Action: apiTokenPath(k.Name) + "/delete", Back: "/admins#tokens"}})
			return
		}
	}
	u.RenderError(w, r, http.StatusNotFound, "")
}

// removeToken serves POST /tokens/{token}/delete (owners): the token stops working at once.
func (u *UI) removeToken(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	m, ok := u.manageTokens(w, r)
	if !ok {
		return
	}
	if _, err := m.RemoveAPIToken(r.Context(), r.PathValue("token")); err != nil {
		u.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/admins?ok=token-removed#tokens", http.StatusSeeOther)
}
