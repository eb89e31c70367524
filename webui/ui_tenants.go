package webui

import (
	"net/http"
	"time"
)

// tenantsPage is the data of the tenants page.
type tenantsPage struct {
	Tenants   []tenantRow
	CanCreate bool
	Form      struct{ Name string }
	Errors    formErrors
}

type tenantRow struct {
	Name             string
	CreatedAt        time.Time
	Peers, Online    int
	SplitTunnel      bool
	Regions          []string // nil: every region
	RxBytes, TxBytes uint64
	CanChange        bool
}

// tenants serves GET /tenants: the tenants the principal may see, and the form that creates
// one (owners).
func (u *UI) tenants(w http.ResponseWriter, r *http.Request) {
	u.renderTenants(w, r, http.StatusOK, "", nil)
}

// renderTenants writes the tenants page; name and errs refill the create form.
func (u *UI) renderTenants(w http.ResponseWriter, r *http.Request, code int, name string, errs formErrors) {
	ctx := r.Context()
	ts, err := u.ctrl.ListTenants(ctx)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	st, err := u.ctrl.Status(ctx)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	live := map[string]int{}
	rx, tx := map[string]uint64{}, map[string]uint64{}
	for _, t := range st.Tenants {
		live[t.Name], rx[t.Name], tx[t.Name] = t.Online, t.RxBytes, t.TxBytes
	}
	me := principal(r)
	p := tenantsPage{CanCreate: me.Role == RoleOwner, Errors: errs}
	p.Form.Name = name
	for _, t := range ts {
		if !me.CanSeeTenant(t.Name) {
			continue
		}
		p.Tenants = append(p.Tenants, tenantRow{
			Name: t.Name, CreatedAt: t.CreatedAt, Peers: t.Peers, Online: live[t.Name],
			SplitTunnel: t.SplitTunnel, Regions: t.Regions, RxBytes: rx[t.Name], TxBytes: tx[t.Name],
			CanChange: me.CanChangeTenant(t.Name),
		})
	}
	u.render(w, r, code, "tenants", view{Title: "Tenants", Nav: "tenants", Data: p})
}

// tenant serves GET /tenants/{tenant}: a tenant's home is its peers.
func (u *UI) tenant(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	if !u.seeTenant(w, r, t) {
		return
	}
	http.Redirect(w, r, peersOf(t), http.StatusFound)
}
