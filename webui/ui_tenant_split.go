package webui

import "net/http"

// setSplitTunnel serves POST /tenants/{tenant}/split-tunnel: field split_tunnel "on" or
// "off".
func (u *UI) setSplitTunnel(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.parseForm(w, r, maxForm) || !u.changeTenant(w, r, t) {
		return
	}
	var on bool
	switch r.PostForm.Get("split_tunnel") {
	case "on":
		on = true
	case "off":
	default:
		u.RenderError(w, r, http.StatusBadRequest, `split_tunnel must be "on" or "off".`)
		return
	}
	if _, err := u.ctrl.SetTenantSplitTunnel(r.Context(), t, on); err != nil {
		u.fail(w, r, err)
		return
	}
	state := map[bool]string{true: "on", false: "off"}[on]
	back := "/tenants"
	if r.PostForm.Get("back") == "peers" {
		back = peersOf(t)
	}
	redirect(w, r, back, "split-"+state)
}
