package webui

import (
	"net/http"
	"slices"

	"github.com/popgate/popgate/store"
)

// linkPage is the data of a one-time link's landing page.
type linkPage struct {
	Link  store.DownloadLink
	Token string
	// Regions are those the peer may connect in; the user picks one (Region, by default
	// the controller's own when the tenant may use it) and downloads its config.
	Regions []store.Region
	Region  string
	// FileName is what the config of Region is saved as; with more than one region the
	// name carries the region picked (configFileNameIn).
	FileName string
	Error    string
}

// linkHeaders keep a token out of referrers and search engines.
func linkHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Robots-Tag", "noindex, nofollow")
}

// linkGone answers a token that is unknown, used or expired.
func (u *UI) linkGone(w http.ResponseWriter, r *http.Request) {
	u.RenderError(w, r, http.StatusNotFound, "This download link is unknown, was used already, or has expired. Ask your admin for a new one.")
}

// linkPage serves GET /dl/{token} (public: the token is the authorisation): what the link is
// for and a button that downloads it. Opening the link does not use it up, so that chat apps
// that preview links do not spend it; the button does.
func (u *UI) linkPage(w http.ResponseWriter, r *http.Request) {
	linkHeaders(w)
	token := r.PathValue("token")
	if u.links == nil {
		u.linkGone(w, r)
		return
	}
	l, err := u.links.DownloadLink(r.Context(), token, u.now())
	if err != nil {
		u.linkGone(w, r)
		return
	}
	u.renderLink(w, r, http.StatusOK, l, token, "", "")
}

// renderLink writes a link's landing page with region picked and error, when not "", above
// the button.
func (u *UI) renderLink(w http.ResponseWriter, r *http.Request, code int, l store.DownloadLink, token, region, msg string) {
	rs, def, err := u.configRegions(r.Context(), l.TenantName)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if region == "" {
		region = def
	}
	u.execute(w, r, code, "link", "layout", view{Title: "Download your VPN config",
		Data: linkPage{Link: l, Token: token, Regions: rs, Region: region, FileName: configNameIn(rs, l.TenantName, l.PeerName, region), Error: msg}})
}

// redeemLink serves POST /dl/{token} (public): field region (empty: the default). The
// config of that region, once: the link is used up by the one download, whichever region it
// is for. A region the peer may not connect in is refused and leaves the link usable.
func (u *UI) redeemLink(w http.ResponseWriter, r *http.Request) {
	linkHeaders(w)
	if u.links == nil {
		u.linkGone(w, r)
		return
	}
	if !u.parseForm(w, r, maxForm) {
		return
	}
	token, ctx := r.PathValue("token"), r.Context()
	l, err := u.links.DownloadLink(ctx, token, u.now())
	if err != nil {
		u.linkGone(w, r)
		return
	}
	rs, def, err := u.configRegions(ctx, l.TenantName)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	region := r.PostForm.Get("region")
	if region == "" {
		region = def
	} else if !slices.ContainsFunc(rs, func(rg store.Region) bool { return rg.Name == region }) {
		u.renderLink(w, r, http.StatusUnprocessableEntity, l, token, "", "There is no config for that region: pick one of the list.")
		return
	}
	l, cfg, err := u.links.RedeemDownloadLink(ctx, token, u.now(), region)
	if err != nil {
		u.linkGone(w, r)
		return
	}
	writeConfig(w, configNameIn(rs, l.TenantName, l.PeerName, region), cfg)
}
