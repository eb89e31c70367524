package webui

// The web UI is built by two engineers at once; this file is their contract. It holds only
// declarations; the auth side (auth*.go, session*.go, token*.go, audit*.go, tls*.go) and the
// pages side (ui*.go, templates/, static/) implement them.

import (
	"context"
	"net/http"

	"github.com/popgate/popgate/store"
)

// Role is what an admin may do: one of the store's roles (store.RoleOwner…), their one home.
type Role string

const (
	RoleOwner       Role = store.RoleOwner       // everything, every tenant
	RoleTenantAdmin Role = store.RoleTenantAdmin // everything within one tenant
	RoleViewer      Role = store.RoleViewer      // read-only, every tenant (or one, when Tenant is set)
)

// Principal is who makes a request: a signed-in admin (browser session) or an API token.
type Principal struct {
	AdminID   int64
	Name      string // admin name, or "token:<name>"
	Role      Role
	Tenant    string // set: limited to this tenant
	SessionID string // browser sessions only
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

// WithPrincipal attaches p to ctx (the auth middleware does this). It also names p as the
// store's actor (store.WithActor, keeping the address already there), so that the audit
// entries of the changes the request makes name it.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	if p != nil {
		a := store.ActorFrom(ctx)
		a.Name = p.Name
		ctx = store.WithActor(ctx, a)
	}
	return context.WithValue(ctx, principalKey{}, p)
}

// Auditor records who did what, when and from where (the audit log page lists it), for what
// changes nothing in the store: the store records every change itself, in the change's
// transaction, with the actor WithPrincipal put in the context. The pages record through it
// what they show of a secret (a config shown or downloaded).
type Auditor interface {
	Audit(r *http.Request, action, target, detail string)
}

// LoginPage is what the sign-in page shows; the pages side renders it, the auth side handles
// the form (POST /login with fields name, password, totp, next).
type LoginPage struct {
	Name     string // prefilled admin name
	Error    string // one line, shown above the form
	Next     string // where to go after signing in (a local path)
	NeedTOTP bool   // show the one-time code field
}

// Pages is the pages side as the auth side sees it. Cross-origin state changes are refused by
// http.CrossOriginProtection in front of everything (no CSRF tokens in forms); cookies are
// SameSite=Strict.
type Pages interface {
	// Routes registers every page on mux. protect wraps a handler so that it runs only for a
	// signed-in principal of at least role min (owner > tenant_admin > viewer for changes;
	// tenant scoping is the handler's job via Principal.CanSeeTenant/CanChangeTenant);
	// otherwise it redirects browsers to /login?next=... or answers 403.
	Routes(mux *http.ServeMux, protect func(min Role, h http.HandlerFunc) http.Handler)
	// RenderLogin writes the sign-in page with status code.
	RenderLogin(w http.ResponseWriter, r *http.Request, code int, page LoginPage)
	// RenderError writes an error page (403, 404, 429, 500 ...) with one line for the user.
	RenderError(w http.ResponseWriter, r *http.Request, code int, msg string)
}

// ---- Appended by the auth side: the account page, auditing by the pages side, and the
// one-time download links. ----

// AccountPage is the signed-in admin's own page, GET /account: served by the auth side,
// rendered by the pages side (AccountPages). Its forms post to the auth side, which answers
// with this page again (Error or Notice set) or a redirect:
//
//	POST /account/password      fields current, new, confirm (other sessions end)
//	POST /account/totp/enrol    no fields; the answer has Enrolling set
//	POST /account/totp/confirm  field code: a code from the app turns TOTP on
//	POST /account/totp/disable  fields password, code
//	POST /logout, POST /logout-everywhere (no fields; redirect to /login)
type AccountPage struct {
	Name   string
	Role   Role
	Tenant string // "" unless limited to one tenant
	// Sessions is how many browsers are signed in as this admin, this one included.
	Sessions int
	// TOTPEnabled: sign-in asks for a one-time code; offer the disable form, else enrol.
	TOTPEnabled bool
	// Enrolling: show the QR code (<img src="{{.TOTPQRPath}}">, a PNG), TOTPSecret for typing
	// in by hand, and the confirm form with its code field.
	Enrolling  bool
	TOTPSecret string
	TOTPQRPath string
	Error      string // one line, shown above the forms
	Notice     string // one line: what just succeeded
}

// AccountPages is implemented by a Pages that renders the account page; without it the auth
// side renders a plain built-in one.
type AccountPages interface {
	RenderAccount(w http.ResponseWriter, r *http.Request, code int, page AccountPage)
}

// AuditorSetter is implemented by a Pages that records events in the audit log: NewServer
// hands it the server (an Auditor, which also records refusals: Denied) before it calls
// Routes. Audit takes the actor and address from the request, and the tenant from the
// route's {tenant} path value, else the principal's tenant.
type AuditorSetter interface {
	SetAuditor(a Auditor)
}

// DownloadPathPrefix starts the path of a one-time config download link: DownloadPathPrefix
// followed by the link's token (control.Controller.CreateDownloadLink). The pages side serves
// it without sign-in: GET shows a page with a download button (Controller.DownloadLink; so
// that link previewers do not spend the link), POST answers the config once
// (Controller.RedeemDownloadLink, which records "link.use" in the audit log).
const DownloadPathPrefix = "/dl/"
