package webui

import (
	"fmt"
	"net/http"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// policyPage is the data of a tenant's policy editor.
type policyPage struct {
	Tenant    *control.TenantInfo
	Text      string
	IsDefault bool // the tenant never set a policy: Text is the node's default
	CanChange bool
	// Problems are the refused policy's, in line order; nothing was saved.
	Problems []policyProblem
	// Warnings, shown with the stored policy, name what it refers to that the tenant does not
	// have (yet): those rules match nothing until it exists.
	Warnings []firewall.Problem
	// Rules are the applied policy's rules with their hits.
	Rules []firewall.RuleStat
}

// policyProblem is one problem of a refused policy with the line it is about.
type policyProblem struct {
	Line   int // 0: about the whole file
	Msg    string
	Source string // the text of that line
}

// policy serves GET /tenants/{tenant}/policy: the policy file in an editor and the hits of
// each rule.
func (u *UI) policy(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.seeTenant(w, r, t) {
		return
	}
	text, isDefault, err := u.ctrl.Policy(r.Context(), t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	warnings, err := u.ctrl.PolicyWarnings(r.Context(), t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.renderPolicy(w, r, http.StatusOK, policyPage{Text: text, IsDefault: isDefault, Warnings: warnings})
}

// renderPolicy writes the editor with p's text and problems, adding the tenant, the rule
// statistics and whether the principal may save.
func (u *UI) renderPolicy(w http.ResponseWriter, r *http.Request, code int, p policyPage) {
	t := r.PathValue("tenant")
	tenant, err := u.tenantInfo(r, t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	st, err := u.ctrl.Status(r.Context())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	for _, ts := range st.Tenants {
		if ts.Name == t {
			p.Rules = ts.Rules
		}
	}
	p.Tenant = tenant
	p.CanChange = principal(r).CanChangeTenant(t)
	u.render(w, r, code, "policy", view{Title: t + " · Policy", Nav: "tenants", Data: p})
}

// tenantInfo returns tenant t; the error wraps store.ErrNotFound when there is none.
func (u *UI) tenantInfo(r *http.Request, t string) (*control.TenantInfo, error) {
	ts, err := u.ctrl.ListTenants(r.Context())
	if err != nil {
		return nil, err
	}
	for i := range ts {
		if ts[i].Name == t {
			return &ts[i], nil
		}
	}
	return nil, fmt.Errorf("tenant %q: %w", t, store.ErrNotFound)
}
