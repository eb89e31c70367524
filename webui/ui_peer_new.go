package webui

import "net/http"

// newPeerPage is the data of the create-peer form.
type newPeerPage struct {
	Tenants []string // the tenants the principal may add peers to
	Form    peerForm
	Errors  formErrors
}

// peerForm is the create-peer form as submitted.
type peerForm struct {
	Tenant, Name, PublicKey, Groups, Site, SitePrefixes string
}

// newPeer serves GET /peers/new[?tenant=T]: the create-peer form.
func (u *UI) newPeer(w http.ResponseWriter, r *http.Request) {
	f := peerForm{Tenant: r.URL.Query().Get("tenant")}
	if f.Tenant != "" && !u.changeTenant(w, r, f.Tenant) {
		return
	}
	u.renderNewPeer(w, r, http.StatusOK, f, nil)
}

func (u *UI) renderNewPeer(w http.ResponseWriter, r *http.Request, code int, f peerForm, errs formErrors) {
	ts, err := u.ctrl.ListTenants(r.Context())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	me := principal(r)
	p := newPeerPage{Form: f, Errors: errs}
	for _, t := range ts {
		if me.CanChangeTenant(t.Name) {
			p.Tenants = append(p.Tenants, t.Name)
		}
	}
	if p.Form.Tenant == "" && len(p.Tenants) == 1 {
		p.Form.Tenant = p.Tenants[0]
	}
	u.render(w, r, code, "peer_new", view{Title: "New peer", Nav: "peers", Data: p})
}
