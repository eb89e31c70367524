package webui

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/popgate/popgate/store"
)

// addDNSZone serves POST /tenants/{tenant}/dns/zones: fields zone and servers (addresses
// with an optional port, separated by commas or spaces).
func (u *UI) addDNSZone(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	zone, list := strings.TrimSpace(r.PostForm.Get("zone")), strings.TrimSpace(r.PostForm.Get("servers"))
	refuse := func(field, msg string) {
		u.renderTenantDNSWith(w, r, http.StatusUnprocessableEntity, func(p *tenantDNSPage) {
			p.ZoneForm.Zone, p.ZoneForm.Servers = zone, list
			p.ZoneErrors = formErrors{field: sentence(msg)}
		})
	}
	if _, err := store.CanonicalDNSZone(zone); err != nil {
		refuse("zone", err.Error())
		return
	}
	var servers []netip.AddrPort
	for _, s := range strings.FieldsFunc(list, func(c rune) bool { return c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t' }) {
		ap, err := store.ParseDNSServer(s)
		if err != nil {
			refuse("servers", err.Error())
			return
		}
		servers = append(servers, ap)
	}
	if len(servers) == 0 {
		refuse("servers", "Give the address of at least one DNS server in one of the tenant's sites, such as 10.10.0.53.")
		return
	}
	if _, err := u.ctrl.AddDNSZone(r.Context(), t, zone, servers); err != nil {
		switch {
		case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrInvalid) && strings.HasPrefix(err.Error(), "DNS zone"):
			refuse("zone", err.Error())
		case errors.Is(err, store.ErrInvalid):
			refuse("servers", err.Error())
		default:
			u.fail(w, r, err)
		}
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "dns-zone-added")
}

// removeDNSZone serves POST /tenants/{tenant}/dns/zones/remove: field zone.
func (u *UI) removeDNSZone(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if err := u.ctrl.RemoveDNSZone(r.Context(), t, r.PostForm.Get("zone")); err != nil {
		if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) && u.tenantExists(r, t) {
			u.renderTenantDNSWith(w, r, http.StatusUnprocessableEntity, func(p *tenantDNSPage) { p.ZoneErrors = formErrors{"": err.Error()} })
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "dns-zone-removed")
}
