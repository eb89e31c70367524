package webui

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// addDNSBlocklist serves POST /tenants/{tenant}/dns/blocklists: fields name, url and every
// (how often the controller fetches it, "" for a day). The controller fetches the list at
// once; nothing is added when that fails.
func (u *UI) addDNSBlocklist(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	name, src, every := strings.TrimSpace(r.PostForm.Get("name")), strings.TrimSpace(r.PostForm.Get("url")), strings.TrimSpace(r.PostForm.Get("every"))
	refuse := func(field, msg string) {
		u.renderTenantDNSWith(w, r, http.StatusUnprocessableEntity, func(p *tenantDNSPage) {
			p.BlocklistForm.Name, p.BlocklistForm.URL, p.BlocklistForm.Every = name, src, every
			p.BlocklistErrors = formErrors{field: sentence(msg)}
		})
	}
	if err := store.ValidateBlocklistName(name); err != nil {
		refuse("name", err.Error())
		return
	}
	if src == "" {
		refuse("url", "Give the list's http or https URL, such as https://example.com/hosts.txt.")
		return
	}
	if err := store.ValidateBlocklistURL(src); err != nil {
		refuse("url", err.Error())
		return
	}
	d, err := parseDNSDuration(every, store.ValidateBlocklistEvery)
	if err != nil {
		refuse("every", fmt.Sprintf("%s is not how often a list may be fetched: give 1h to 7d, such as 12h, 24h or 7d.", quoteInput(every)))
		return
	}
	// Only an owner's list may be on a private address, as in the API (addBlocklist).
	p := principal(r)
	req := control.AddBlocklistRequest{Tenant: t, Name: name, URL: src, Every: d, PrivateOK: p != nil && p.Role == RoleOwner && p.Tenant == ""}
	if _, err := u.ctrl.AddBlocklist(r.Context(), req); err != nil {
		switch {
		case errors.Is(err, control.ErrFetch):
			refuse("url", err.Error()+"; nothing was added")
		case errors.Is(err, store.ErrExists):
			refuse("name", err.Error())
		case errors.Is(err, store.ErrInvalid):
			refuse("", err.Error()) // the tenant's bounds
		default:
			u.fail(w, r, err)
		}
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "blocklist-added")
}

// refreshDNSBlocklist serves POST /tenants/{tenant}/dns/blocklists/refresh: field name. A
// failed fetch is answered 502 with the tab, the list keeping its content.
func (u *UI) refreshDNSBlocklist(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	name := r.PostForm.Get("name")
	if _, err := u.ctrl.RefreshBlocklist(r.Context(), t, name); err != nil {
		code := http.StatusUnprocessableEntity
		switch {
		case errors.Is(err, control.ErrFetch):
			code = http.StatusBadGateway
			err = fmt.Errorf("blocklist %s: %w; it keeps its last content", name, err)
		case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrNotFound) && u.tenantExists(r, t):
		default:
			u.fail(w, r, err)
			return
		}
		u.renderTenantDNSWith(w, r, code, func(p *tenantDNSPage) { p.BlocklistErrors = formErrors{"": sentence(err.Error())} })
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "blocklist-fetched")
}

// removeDNSBlocklist serves POST /tenants/{tenant}/dns/blocklists/remove: field name.
func (u *UI) removeDNSBlocklist(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	if err := u.ctrl.RemoveBlocklist(r.Context(), t, r.PostForm.Get("name")); err != nil {
		if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) && u.tenantExists(r, t) {
			u.renderTenantDNSWith(w, r, http.StatusUnprocessableEntity, func(p *tenantDNSPage) { p.BlocklistErrors = formErrors{"": sentence(err.Error())} })
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, tenantPath(t)+"/dns", "blocklist-removed")
}
