package webui

import (
	"errors"
	"net/http"

	"github.com/popgate/popgate/store"
)

// linkPage is the data of a one-time link's landing page.
type linkPage struct {
	Link  store.DownloadLink
	Token string
	// Regions the config may be for, the node's own first; the page offers a choice when
	// there are several.
	Regions []store.Region
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
	rs, err := u.links.ConfigRegions(r.Context(), l.TenantName)
	if err != nil {
		u.linkGone(w, r)
		return
	}
	u.execute(w, r, http.StatusOK, "link", "layout", view{Title: "Download your VPN config", Data: linkPage{Link: l, Token: token, Regions: rs}})
}

// redeemLink serves POST /dl/{token} (public): the config, once.
func (u *UI) redeemLink(w http.ResponseWriter, r *http.Request) {
	linkHeaders(w)
	if u.links == nil {
		u.linkGone(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	region := r.PostFormValue("region")
	l, cfg, err := u.links.RedeemDownloadLink(r.Context(), r.PathValue("token"), u.now(), region)
	if errors.Is(err, store.ErrInvalid) {
		// The link stays usable: the region was the wrong one.
		u.RenderError(w, r, http.StatusBadRequest, "Your organisation may not use region "+region+": go back and pick another region.")
		return
	}
	if err != nil {
		u.linkGone(w, r)
		return
	}
	writeConfig(w, l.TenantName, l.PeerName, cfg)
}
