package webui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/popgate/popgate/store"
)

// auditPerPage is how many entries one page of the audit log shows.
const auditPerPage = 100

// logFilter is what the Audit log and Events pages share: the tenant filter and the pager.
type logFilter struct {
	Tenant   string   // the filter; forced for a principal limited to one tenant
	Scoped   bool     // the principal is limited to one tenant: no tenant filter
	Tenants  []string // the tenants the filter offers; none when Scoped
	NewerURL string   // "" on the first page
	OlderURL string   // "" on the last page
	page     int      // from 1
}

// readLogFilter reads r's tenant and page. It answers r itself and returns false when the
// principal may not see the tenant asked for.
func (u *UI) readLogFilter(w http.ResponseWriter, r *http.Request) (logFilter, bool) {
	me := principal(r)
	qv := r.URL.Query()
	f := logFilter{Tenant: qv.Get("tenant"), Scoped: me.Tenant != ""}
	if f.Tenant != "" && !u.seeTenant(w, r, f.Tenant) {
		return f, false
	}
	if f.Scoped {
		f.Tenant = me.Tenant
	}
	f.page, _ = strconv.Atoi(qv.Get("page"))
	f.page = max(f.page, 1)
	return f, true
}

// offset is how many rows come before f's page, of perPage rows each.
func (f *logFilter) offset(perPage int) int { return (f.page - 1) * perPage }

// setPager links the page before f's and, when there are more, the one after: path with the
// tenant (unless forced), the other filters ("" not sent) and the page number.
func (f *logFilter) setPager(path string, filters map[string]string, more bool) {
	pageURL := func(n int) string {
		v := url.Values{}
		if f.Tenant != "" && !f.Scoped {
			v.Set("tenant", f.Tenant)
		}
		for k, s := range filters {
			if s != "" {
				v.Set(k, s)
			}
		}
		if n > 1 {
			v.Set("page", strconv.Itoa(n))
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	}
	if more {
		f.OlderURL = pageURL(f.page + 1)
	}
	if f.page > 1 {
		f.NewerURL = pageURL(f.page - 1)
	}
}

// offerTenants sets the tenants f offers: those r's principal may see, none when it is
// limited to one.
func (u *UI) offerTenants(r *http.Request, f *logFilter) error {
	if f.Scoped {
		return nil
	}
	ts, err := u.ctrl.ListTenants(r.Context())
	if err != nil {
		return err
	}
	me := principal(r)
	for _, t := range ts {
		if me.CanSeeTenant(t.Name) {
			f.Tenants = append(f.Tenants, t.Name)
		}
	}
	return nil
}

// auditPage is the data of the audit log page.
type auditPage struct {
	logFilter
	Connected bool // the audit log can be read
	Entries   []store.AuditEntry
	Actor     string
}

// auditPage serves GET /audit[?tenant=T][&actor=A][&page=N]: who did what, when and from
// where, newest first. A principal limited to one tenant sees only that tenant's entries.
func (u *UI) auditPage(w http.ResponseWriter, r *http.Request) {
	f, ok := u.readLogFilter(w, r)
	if !ok {
		return
	}
	p := auditPage{logFilter: f, Connected: u.auditLog != nil, Actor: strings.TrimSpace(r.URL.Query().Get("actor"))}
	if u.auditLog != nil {
		es, more, err := u.auditLog.ListAudit(r.Context(), store.AuditQuery{
			Tenant: p.Tenant, Actor: p.Actor, Offset: p.offset(auditPerPage), Limit: auditPerPage,
		})
		if err != nil {
			u.fail(w, r, err)
			return
		}
		p.Entries = es
		p.setPager("/audit", map[string]string{"actor": p.Actor}, more)
	}
	if err := u.offerTenants(r, &p.logFilter); err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "audit", view{Title: "Audit log", Nav: "audit", Data: p})
}

// deniedRecorder is an Auditor that records refused attempts (the server does, rate-limited).
type deniedRecorder interface {
	Denied(r *http.Request, why string)
}

// forbid answers 403 with msg and records the refusal when the Auditor records refusals.
func (u *UI) forbid(w http.ResponseWriter, r *http.Request, msg string) {
	if d, ok := u.audit.(deniedRecorder); ok {
		d.Denied(r, msg)
	}
	u.RenderError(w, r, http.StatusForbidden, msg)
}
