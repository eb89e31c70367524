package webui

import (
	"net/http"
	"time"
)

// linkTTL is a lifetime a one-time link may have.
type linkTTL struct {
	Value string
	Label string
	d     time.Duration
}

var linkTTLs = []linkTTL{
	{"1h", "1 hour", time.Hour},
	{"24h", "24 hours", 24 * time.Hour},
	{"168h", "7 days", 7 * 24 * time.Hour},
}

// createLink serves POST /tenants/{tenant}/peers/{peer}/config/link: field ttl (1h, 24h or
// 168h), and region, that of the config page it was made on (the link's user picks theirs).
// The answer is the config page showing the new link, this once: only the token's hash is
// kept.
func (u *UI) createLink(w http.ResponseWriter, r *http.Request) {
	t, name := r.PathValue("tenant"), r.PathValue("peer")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	var ttl time.Duration
	for _, l := range linkTTLs {
		if l.Value == r.PostForm.Get("ttl") {
			ttl = l.d
		}
	}
	if ttl == 0 {
		u.RenderError(w, r, http.StatusBadRequest, "Choose how long the link works: 1 hour, 24 hours or 7 days.")
		return
	}
	if u.links == nil {
		u.RenderError(w, r, http.StatusNotImplemented, "One-time links are not available in this version of popgate.")
		return
	}
	ctx := r.Context()
	p, err := u.configPageData(r, t, name, r.PostForm.Get("region"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	l, token, err := u.links.CreateDownloadLink(ctx, t, name, principal(r).Name, u.now(), ttl)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p.Link = u.linkBase(r) + DownloadPathPrefix + token
	p.LinkExpires = l.ExpiresAt
	u.render(w, r, http.StatusOK, "peer_config", view{Title: "Config of " + name, Nav: "peers", Data: p})
}

// siteURL is the scheme and host the request came to, for links that leave the browser.
func siteURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
