package webui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// tenantDNSPage is the data of a tenant's DNS tab: the domain of its peers' names.
type tenantDNSPage struct {
	Tenant *control.TenantInfo
	// Domain is the domain in force; Default, whether it is the default <tenant>.internal.
	Domain    string
	Default   bool
	CanChange bool
	// Example is a peer's name under the domain, to show what a name looks like.
	Example string
	// Form refills the refused form.
	Form   struct{ Domain string }
	Errors formErrors
	// Zones are the tenant's split zones; ZoneForm refills a refused zone form, whose errors
	// are ZoneErrors (fields zone and servers; "" for a removal).
	Zones      []store.DNSZone
	ZoneForm   struct{ Zone, Servers string }
	ZoneErrors formErrors
	// Upstreams are the tenant's own upstream resolvers (none: the node's); UpstreamForm
	// holds them, or refills a refused form, whose errors are UpstreamErrors (field
	// upstreams).
	Upstreams      []store.DNSUpstream
	UpstreamForm   struct{ Upstreams string }
	UpstreamErrors formErrors
	// Blocklists are the tenant's blocklists; BlocklistForm refills a refused form (Every
	// "24h" unless refilled), whose errors are BlocklistErrors (fields name, url and every;
	// "" for the tenant's bounds, a refresh or a removal).
	Blocklists      []store.Blocklist
	BlocklistForm   struct{ Name, URL, Every string }
	BlocklistErrors formErrors
	// Log says whether the tenant's query log is on, LogKeep how long it keeps entries;
	// LogEntries are its newest dnsLogShown entries, LogMore whether older ones follow.
	// LogForm holds the keep time, or refills a refused form, whose errors are LogErrors
	// (field keep).
	Log        store.DNSLogSettings
	LogKeep    string
	LogEntries []dnsLogRow
	LogMore    bool
	LogForm    struct{ Keep string }
	LogErrors  formErrors
}

// tenantDNSTab serves GET /tenants/{tenant}/dns.
func (u *UI) tenantDNSTab(w http.ResponseWriter, r *http.Request) {
	u.renderTenantDNS(w, r, http.StatusOK, nil, nil)
}

// renderTenantDNS writes the tab; form, when not nil, refills the domain typed.
func (u *UI) renderTenantDNS(w http.ResponseWriter, r *http.Request, code int, form *string, errs formErrors) {
	u.renderTenantDNSWith(w, r, code, func(p *tenantDNSPage) {
		p.Errors = errs
		if form != nil {
			p.Form.Domain = *form
		}
	})
}

// renderTenantDNSWith writes the tab after fill refilled a refused form.
func (u *UI) renderTenantDNSWith(w http.ResponseWriter, r *http.Request, code int, fill func(*tenantDNSPage)) {
	t := r.PathValue("tenant")
	if !u.seeTenant(w, r, t) {
		return
	}
	tenant, err := u.tenantInfo(r, t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p := tenantDNSPage{Tenant: tenant, Domain: tenant.Domain, CanChange: principal(r).CanChangeTenant(t)}
	if p.Domain == "" {
		p.Domain, p.Default = store.DefaultTenantDomain(t), true
	}
	p.Example = "laptop." + p.Domain
	if ps, err := u.ctrl.ListPeers(r.Context(), t); err == nil && len(ps) > 0 {
		p.Example = strings.ToLower(ps[0].Name) + "." + p.Domain
	}
	p.Form.Domain = tenant.Domain
	if p.Zones, err = u.ctrl.DNSZones(r.Context(), t); err != nil {
		u.fail(w, r, err)
		return
	}
	if p.Upstreams, err = u.ctrl.DNSUpstreams(r.Context(), t); err != nil {
		u.fail(w, r, err)
		return
	}
	names := make([]string, len(p.Upstreams))
	for i, up := range p.Upstreams {
		names[i] = up.String()
	}
	p.UpstreamForm.Upstreams = strings.Join(names, ", ")
	if p.Blocklists, err = u.ctrl.Blocklists(r.Context(), t); err != nil {
		u.fail(w, r, err)
		return
	}
	p.BlocklistForm.Every = "24h"
	if p.Log, err = u.ctrl.DNSLogSettings(r.Context(), t); err != nil {
		u.fail(w, r, err)
		return
	}
	p.LogForm.Keep = "24h"
	if p.Log.Enabled {
		p.LogKeep = store.DurationText(p.Log.Keep)
		p.LogForm.Keep = p.LogKeep
		es, more, err := u.ctrl.DNSLog(r.Context(), store.DNSLogQuery{Tenant: t, Limit: dnsLogShown})
		if err != nil {
			u.fail(w, r, err)
			return
		}
		p.LogEntries, p.LogMore = dnsLogRows(es), more
	}
	fill(&p)
	u.render(w, r, code, "tenant_dns", view{Title: t + " · DNS", Nav: "tenants", Data: p})
}

// setTenantDomain serves POST /tenants/{tenant}/dns/domain: field domain, "" for the
// default.
func (u *UI) setTenantDomain(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	domain := strings.TrimSpace(r.PostForm.Get("domain"))
	if _, err := u.ctrl.SetTenantDomain(r.Context(), t, domain); err != nil {
		if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrExists) {
			u.renderTenantDNS(w, r, http.StatusUnprocessableEntity, &domain, formErrors{"domain": sentence(err.Error())})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "tenant-domain")
}
