package webui

import "net/http"

var _ AccountPages = (*UI)(nil)

// RenderAccount writes the signed-in admin's own page (see AccountPages); its forms post to
// the auth side.
func (u *UI) RenderAccount(w http.ResponseWriter, r *http.Request, code int, page AccountPage) {
	v := view{Title: "Your account", Nav: "account", Data: page}
	if page.Notice != "" {
		v.Flash = page.Notice
	}
	u.render(w, r, code, "account", v)
}
