package webui

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
)

// setDNSUpstreams serves POST /tenants/{tenant}/dns/upstreams: field upstreams, 1 to
// store.MaxDNSUpstreams separated by commas or spaces, in the order they are tried.
func (u *UI) setDNSUpstreams(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	list := strings.TrimSpace(r.PostForm.Get("upstreams"))
	refuse := func(msg string) {
		u.renderTenantDNSWith(w, r, http.StatusUnprocessableEntity, func(p *tenantDNSPage) {
			p.UpstreamForm.Upstreams = list
			p.UpstreamErrors = formErrors{"upstreams": sentence(msg)}
		})
	}
	ups := strings.FieldsFunc(list, func(c rune) bool { return c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t' })
	if len(ups) == 0 {
		refuse(fmt.Sprintf("Give 1 to %d upstreams, such as tls://dns.quad9.net@9.9.9.9, or use the node's with the button below.", store.MaxDNSUpstreams))
		return
	}
	if _, err := store.ParseDNSUpstreams(ups); err != nil {
		refuse(err.Error())
		return
	}
	if _, err := u.ctrl.SetDNSUpstreams(r.Context(), t, ups); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			refuse(err.Error())
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "dns-upstreams-set")
}

// resetDNSUpstreams serves POST /tenants/{tenant}/dns/upstreams/reset: the tenant's queries
// go to the node's upstreams again.
func (u *UI) resetDNSUpstreams(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if _, err := u.ctrl.SetDNSUpstreams(r.Context(), t, nil); err != nil {
		u.fail(w, r, err)
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "dns-upstreams-reset")
}
