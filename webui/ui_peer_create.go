package webui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// createPeer serves POST /peers: fields tenant, name, public_key (empty: the server generates
// the key pair), groups, site and site_prefixes. Each bad field gets its error next to it and
// nothing is stored; a new peer leads to its config.
func (u *UI) createPeer(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r, maxForm) {
		return
	}
	f := peerForm{
		Tenant:       strings.TrimSpace(r.PostForm.Get("tenant")),
		Name:         strings.TrimSpace(r.PostForm.Get("name")),
		PublicKey:    strings.TrimSpace(r.PostForm.Get("public_key")),
		Groups:       r.PostForm.Get("groups"),
		Site:         r.PostForm.Get("site"),
		SitePrefixes: r.PostForm.Get("site_prefixes"),
	}
	errs := formErrors{}
	if f.Tenant == "" {
		errs["tenant"] = "Choose the tenant the peer belongs to."
	} else if !u.changeTenant(w, r, f.Tenant) {
		return
	}
	if err := store.ValidatePeerName(f.Name); err != nil {
		errs["name"] = nameError(err)
	}
	if f.PublicKey != "" {
		if _, err := store.ParseKey(f.PublicKey); err != nil {
			errs["public_key"] = err.Error()
		}
	}
	groups, gerr := parseGroups(f.Groups)
	if gerr != "" {
		errs["groups"] = gerr
	}
	site, prefixes, serrs := parseSite(f.Site, f.SitePrefixes)
	for k, v := range serrs {
		errs[k] = v
	}
	if len(errs) > 0 {
		u.renderNewPeer(w, r, http.StatusUnprocessableEntity, f, errs)
		return
	}
	// The config that follows is for a region the tenant may use.
	region, err := u.defaultRegion(r.Context(), f.Tenant)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	_, _, err = u.ctrl.AddPeer(r.Context(), control.AddPeerRequest{
		Tenant: f.Tenant, Name: f.Name, PublicKey: f.PublicKey,
		Groups: groups, Site: site, SitePrefixes: prefixes, Region: region,
	})
	if err != nil {
		if field, ok := peerErrorField(err); ok {
			u.renderNewPeer(w, r, http.StatusUnprocessableEntity, f, formErrors{field: err.Error()})
			return
		}
		u.fail(w, r, err)
		return
	}
	redirect(w, r, peerPath(f.Tenant, f.Name)+"/config", "peer-created")
}

// peerErrorField says which field of a peer form the controller's refusal err is about;
// false when err is not the user's to fix.
func peerErrorField(err error) (string, bool) {
	msg := err.Error()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "tenant", true
	case errors.Is(err, store.ErrExhausted):
		return "", true
	case !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrExists):
		return "", false
	case strings.Contains(msg, "public key"):
		return "public_key", true
	case strings.Contains(msg, "group"):
		return "groups", true
	case strings.Contains(msg, "prefix"):
		return "site_prefixes", true
	case strings.Contains(msg, "site"):
		return "site", true
	case strings.HasPrefix(msg, "peer "):
		return "name", true
	}
	return "", true
}
