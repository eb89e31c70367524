package webui

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"

	"github.com/popgate/popgate/store"
)

//go:embed templates/*.html
var templateFS embed.FS

// templates holds every page parsed once at start: each page file parsed into its own copy
// of the layout and the shared partials.
type templates struct {
	pages map[string]*template.Template
}

// layoutFiles are parsed into every page; the other files are pages named by their base name.
var layoutFiles = []string{"templates/layout.html", "templates/partials.html"}

func (u *UI) parseTemplatesInto() error {
	base, err := template.New("").Funcs(u.templateFuncs()).ParseFS(templateFS, layoutFiles...)
	if err != nil {
		return fmt.Errorf("webui: parse layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	t := &templates{pages: map[string]*template.Template{}}
	for _, name := range names {
		if name == layoutFiles[0] || name == layoutFiles[1] {
			continue
		}
		page, err := template.Must(base.Clone()).ParseFS(templateFS, name)
		if err != nil {
			return fmt.Errorf("webui: parse %s: %w", name, err)
		}
		t.pages[strings.TrimSuffix(path.Base(name), ".html")] = page
	}
	u.tmpl = t
	return nil
}

// view is what the layout renders: the page's own data is Data.
type view struct {
	Title string
	Nav   string // the main navigation item to mark: dashboard, tenants, regions, network, nodes, peers, audit, admins
	Me    *Principal
	Flash string
	Data  any
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// render writes page with the layout. The page is rendered into a buffer first so that a
// template error becomes a clean 500 instead of half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, code int, page string, v view) {
	v.Me = PrincipalFrom(r.Context())
	if v.Flash == "" {
		v.Flash = flashes[r.URL.Query().Get("ok")]
	}
	u.execute(w, r, code, page, "layout", v)
}

// renderFragment writes one named template of page without the layout (an htmx swap).
func (u *UI) renderFragment(w http.ResponseWriter, r *http.Request, page, name string, v view) {
	v.Me = PrincipalFrom(r.Context())
	u.execute(w, r, http.StatusOK, page, name, v)
}

func (u *UI) execute(w http.ResponseWriter, r *http.Request, code int, page, name string, v view) {
	t := u.tmpl.pages[page]
	if t == nil {
		u.log.Error("web UI page has no template", "page", page)
		http.Error(w, "internal error: the page has no template", http.StatusInternalServerError)
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if err := t.ExecuteTemplate(buf, name, v); err != nil {
		u.log.Error("web UI page failed to render", "page", page, "path", r.URL.Path, "err", err)
		if page != "error" {
			u.RenderError(w, r, http.StatusInternalServerError, "")
		} else {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages show private keys and other tenants' data: keep them out of caches and the
	// back button after signing out.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// errorPage is the data of the error page.
type errorPage struct {
	Code    int
	Heading string
	Msg     string
}

// RenderError writes the error page with code and msg (see Pages). An empty msg gets the
// usual one for code.
func (u *UI) RenderError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	heading := http.StatusText(code)
	if msg == "" {
		switch code {
		case http.StatusNotFound:
			msg = "There is nothing here, or your account may not see it. Check the address, or start again from the dashboard."
		case http.StatusForbidden:
			msg = "Your account may not do this. Ask an owner of this popgate installation if you need to."
		case http.StatusTooManyRequests:
			msg = "Too many attempts. Wait a minute, then try again."
		case http.StatusInternalServerError:
			msg = "Something went wrong on the server. The details are in the popgate log; try again, and tell your operator if it keeps happening."
		default:
			msg = heading + "."
		}
	}
	switch code {
	case http.StatusNotFound:
		heading = "Not found"
	case http.StatusForbidden:
		heading = "Not allowed"
	case http.StatusTooManyRequests:
		heading = "Slow down"
	case http.StatusInternalServerError:
		heading = "Server error"
	}
	u.render(w, r, code, "error", view{Title: heading, Data: errorPage{Code: code, Heading: heading, Msg: msg}})
}

// RenderLogin writes the sign-in page (see Pages).
func (u *UI) RenderLogin(w http.ResponseWriter, r *http.Request, code int, page LoginPage) {
	if !localPath(page.Next) {
		page.Next = ""
	}
	// The sign-in page never shows the navigation, even for a session that is signing in
	// again for its second factor.
	u.execute(w, r, code, "login", "layout", view{Title: "Sign in", Data: page})
}

// localPath reports whether next is a path on this site (no scheme, host or "//").
func localPath(next string) bool {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return false
	}
	u, err := url.Parse(next)
	return err == nil && u.Scheme == "" && u.Host == ""
}

// redirect answers a successful form with 303 to where, adding the flash message key ok.
func redirect(w http.ResponseWriter, r *http.Request, where, ok string) {
	if ok != "" {
		sep := "?"
		if strings.Contains(where, "?") {
			sep = "&"
		}
		where += sep + "ok=" + url.QueryEscape(ok)
	}
	http.Redirect(w, r, where, http.StatusSeeOther)
}

// flashes are the messages a redirect may ask for with ?ok=KEY; only these, so that a link
// cannot put words into the page.
var flashes = map[string]string{
	"tenant-created":      "Tenant created.",
	"tenant-deleted":      "Tenant deleted.",
	"split-on":            "Split tunnel is on: new configs route only the tenant's routes through popgate. Configs already handed out change when they are imported again.",
	"split-off":           "Split tunnel is off: new configs route all traffic through popgate. Configs already handed out change when they are imported again.",
	"peer-created":        "Peer created. Import its config on the device: scan the QR code with the WireGuard app, or download the file.",
	"peer-enabled":        "Peer enabled: it can connect again. A device that was connected when it was disabled is reconnected at once.",
	"peer-disabled":       "Peer disabled: it was disconnected and cannot connect until it is enabled again.",
	"peer-renamed":        "Peer renamed.",
	"peer-expiry":         "Expiry saved.",
	"peer-groups":         "Groups saved; policy rules that name them apply at once.",
	"peer-site":           "Site connector settings saved.",
	"peer-deleted":        "Peer deleted: it lost access at once.",
	"peer-rotated":        "Key replaced: the old key stopped working at once. Import this new config on the device.",
	"policy-saved":        "Policy saved and applied.",
	"route-added":         "Route added.",
	"route-removed":       "Route removed.",
	"region-created":      "Region added with a WireGuard key of its own. Its clients connect once a PoP serves it.",
	"region-endpoint":     "Endpoint saved: new configs use it. Configs already handed out change when they are imported again.",
	"region-deleted":      "Region removed: its configs no longer connect.",
	"tenant-regions":      "Regions saved: the tenant's devices connect only where it is allowed from now on.",
	"tenant-domain":       "Domain saved: the PoPs answer the peers' names under it within seconds.",
	"dns-zone-added":      "Zone added: the PoPs send its names to its servers within seconds.",
	"dns-zone-removed":    "Zone removed: its names go to the upstream resolvers again.",
	"dns-upstreams-set":   "Upstreams saved: the PoPs forward the tenant's queries to them within seconds.",
	"dns-upstreams-reset": "The tenant's queries go to the node's upstream resolvers again within seconds.",
	"blocklist-added":     "Blocklist added: the PoPs answer its names NXDOMAIN to the tenant's devices within seconds.",
	"blocklist-fetched":   "Blocklist fetched: the PoPs block what it holds now within seconds.",
	"blocklist-removed":   "Blocklist removed: its names resolve again within seconds (devices may keep a blocked answer for a minute).",
	"dns-log-enabled":     "Query log on: the PoPs log the tenant's queries within seconds. Tell its users: the log records which names they look up.",
	"dns-log-disabled":    "Query log off: its entries were deleted, and the PoPs stop logging within seconds.",
	"node-removed":        "Node removed: its sync stream closed at once. When it next reaches this controller it drops the state it kept and serves nothing.",
}

// principal returns the request's principal; protect guarantees one, but a page never
// trusts that blindly.
func principal(r *http.Request) *Principal {
	if p := PrincipalFrom(r.Context()); p != nil {
		return p
	}
	return &Principal{Role: RoleViewer, Tenant: "\x00"} // sees nothing
}

// seeTenant reports whether the principal may read tenant. When not, it answers 404 as for a
// tenant that does not exist, so that tenants cannot probe each other.
func (u *UI) seeTenant(w http.ResponseWriter, r *http.Request, tenant string) bool {
	if !principal(r).CanSeeTenant(tenant) {
		u.RenderError(w, r, http.StatusNotFound, "")
		return false
	}
	return true
}

// changeTenant reports whether the principal may change tenant: 404 when it may not even see
// it, 403 when it may only read it.
func (u *UI) changeTenant(w http.ResponseWriter, r *http.Request, tenant string) bool {
	if !u.seeTenant(w, r, tenant) {
		return false
	}
	if !principal(r).CanChangeTenant(tenant) {
		u.forbid(w, r, "Your account may read this tenant but not change it.")
		return false
	}
	return true
}

// fail answers err of the controller: not found 404 (with the same words as any other 404),
// bad input 400, conflicts 409, everything else 500 with the detail in the log.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		u.RenderError(w, r, http.StatusNotFound, "")
	case errors.Is(err, store.ErrInvalid):
		u.RenderError(w, r, http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrExists):
		u.RenderError(w, r, http.StatusConflict, err.Error())
	case errors.Is(err, store.ErrExhausted):
		u.RenderError(w, r, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, store.ErrDiskFull):
		u.log.Error("web UI request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		u.RenderError(w, r, http.StatusInsufficientStorage, sentence(err.Error()))
	default:
		u.log.Error("web UI request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		u.RenderError(w, r, http.StatusInternalServerError, "")
	}
}

// maxForm bounds form bodies other than the policy's.
const maxForm = 64 << 10

// parseForm reads a urlencoded form of at most limit bytes; a bigger one is answered 413.
func (u *UI) parseForm(w http.ResponseWriter, r *http.Request, limit int64) bool {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			u.RenderError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form is larger than %d bytes.", limit))
			return false
		}
		u.RenderError(w, r, http.StatusBadRequest, "The form could not be read: send it again from the page.")
		return false
	}
	return true
}

// formErrors are inline errors by field name; "" is the form's own line at its top.
type formErrors map[string]string

// tenantPath and peerPath build page paths from names (which need no escaping: tenant and
// peer names are URL-safe by their rules, and PathEscape keeps it so if the rules change).
func tenantPath(tenant string) string { return "/tenants/" + url.PathEscape(tenant) }

func peerPath(tenant, peer string) string {
	return tenantPath(tenant) + "/peers/" + url.PathEscape(peer)
}

func peersOf(tenant string) string { return "/peers?tenant=" + url.QueryEscape(tenant) }
