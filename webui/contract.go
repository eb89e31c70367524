package webui

// The web UI is built by two engineers at once; this file is their contract. It holds only
// declarations; the auth side (auth*.go, session*.go, token*.go, audit*.go, tls*.go) and the
// pages side (ui*.go, templates/, static/) implement them.

import (
	"context"
	"net/http"
)

// Role is what an admin may do.
type Role string

const (
	RoleOwner       Role = "owner"        // everything, every tenant
	RoleTenantAdmin Role = "tenant_admin" // everything within one tenant
	RoleViewer      Role = "viewer"       // read-only, every tenant (or one, when Tenant is set)
)

// Principal is who makes a request: a signed-in admin (browser session) or an API token.
type Principal struct {
	AdminID   int64
	Name      string // admin name, or "token:<name>"
	Role      Role
	Tenant    string // set: limited to this tenant
	SessionID string // browser sessions only
	CSRFToken string // browser sessions only: put in every form as hidden field "csrf"
	FromToken bool
}

// CanSeeTenant reports whether p may read tenant t.
func (p *Principal) CanSeeTenant(t string) bool { return p.Tenant == "" || p.Tenant == t }

// CanChangeTenant reports whether p may change tenant t.
func (p *Principal) CanChangeTenant(t string) bool {
	return p.Role != RoleViewer && p.CanSeeTenant(t)
}

type principalKey struct{}

// PrincipalFrom returns the request's principal; nil when not signed in.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// WithPrincipal attaches p to ctx (the auth middleware does this).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// Auditor records who did what, when and from where (the audit log page lists it).
type Auditor interface {
	Audit(r *http.Request, action, target, detail string)
}
