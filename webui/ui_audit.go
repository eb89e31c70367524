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

// auditPage is the data of the audit log page.
type auditPage struct {
	Connected bool // the audit log can be read
	Entries   []store.AuditEntry
	Tenant    string // the filter; forced for a principal limited to one tenant
	Actor     string
	Scoped    bool
	Tenants   []string
	NewerURL  string // "" on the first page
	OlderURL  string // "" on the last page
}

// auditPage serves GET /audit[?tenant=T][&actor=A][&page=N]: who did what, when and from
// where, newest first. A principal limited to one tenant sees only that tenant's entries.
func (u *UI) auditPage(w http.ResponseWriter, r *http.Request) {
	me := principal(r)
	qv := r.URL.Query()
	p := auditPage{Connected: u.auditLog != nil, Tenant: qv.Get("tenant"), Actor: strings.TrimSpace(qv.Get("actor")), Scoped: me.Tenant != ""}
	if p.Tenant != "" && !u.seeTenant(w, r, p.Tenant) {
		return
	}
	if p.Scoped {
		p.Tenant = me.Tenant
	}
	page, _ := strconv.Atoi(qv.Get("page"))
	page = max(page, 1)
	if u.auditLog != nil {
		es, more, err := u.auditLog.ListAudit(r.Context(), store.AuditQuery{
			Tenant: p.Tenant, Actor: p.Actor, Offset: (page - 1) * auditPerPage, Limit: auditPerPage,
		})
		if err != nil {
			u.fail(w, r, err)
			return
		}
		p.Entries = es
		pageURL := func(n int) string {
			v := url.Values{}
			if p.Tenant != "" && !p.Scoped {
				v.Set("tenant", p.Tenant)
			}
			if p.Actor != "" {
				v.Set("actor", p.Actor)
			}
			if n > 1 {
				v.Set("page", strconv.Itoa(n))
			}
			if len(v) == 0 {
				return "/audit"
			}
			return "/audit?" + v.Encode()
		}
		if more {
			p.OlderURL = pageURL(page + 1)
		}
		if page > 1 {
			p.NewerURL = pageURL(page - 1)
		}
	}
	if !p.Scoped {
		ts, err := u.ctrl.ListTenants(r.Context())
		if err != nil {
			u.fail(w, r, err)
			return
		}
		for _, t := range ts {
			if me.CanSeeTenant(t.Name) {
				p.Tenants = append(p.Tenants, t.Name)
			}
		}
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
