package webui

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/popgate/popgate/store"
)

// The /api/v1 routes of admins, API tokens, the audit log and the peer changes of the web UI
// (rename, expiry, one-time download links). On the control socket they are open to its
// owner like every route; on the web address the admin and token routes are for owners only
// (see apiRoutes).
//
//	GET    /api/v1/admins                                   → APIAdmins
//	POST   /api/v1/admins                   APINewAdmin     → 201 APIAdminCreated (password
//	                                                           only when generated)
//	PATCH  /api/v1/admins/{admin}           APIAdminUpdate  → APIAdmin
//	PUT    /api/v1/admins/{admin}/password  APIAdminPassword → APIAdminCreated; ends the
//	                                                           admin's sessions
//	DELETE /api/v1/admins/{admin}/totp                      → APIAdmin (second factor off)
//	DELETE /api/v1/admins/{admin}                           → 204
//	GET    /api/v1/tokens                                   → APITokens
//	POST   /api/v1/tokens                   APINewToken     → 201 APITokenCreated
//	DELETE /api/v1/tokens/{token}                           → 204
//	GET    /api/v1/audit[?limit=N&offset=N&tenant=T&actor=A&action=X&since=RFC3339&until=RFC3339]
//	                                                        → APIAuditLog, newest first
//	POST   /api/v1/tenants/{tenant}/peers/{peer}/rename  APIPeerRename → APIPeer
//	PUT    /api/v1/tenants/{tenant}/peers/{peer}/expiry  APIPeerExpiry → APIPeer
//	POST   /api/v1/tenants/{tenant}/peers/{peer}/links   APINewDownloadLink
//	                                                        → 201 APIDownloadLink

// APIAdmin is one admin. Secrets (password hash, TOTP secret) never leave the server.
type APIAdmin struct {
	Name string `json:"name"`
	// Role is owner, tenant_admin or viewer; Tenant limits it to one tenant.
	Role     string `json:"role"`
	Tenant   string `json:"tenant,omitempty"`
	TOTP     bool   `json:"totp"`
	Disabled bool   `json:"disabled"`
	// FailedSignIns counts failed sign-ins since the last successful one, from any address.
	// They slow down the addresses that made them and never lock the admin out.
	FailedSignIns int        `json:"failed_sign_ins"`
	CreatedAt     time.Time  `json:"created_at"`
	LastSignIn    *time.Time `json:"last_sign_in,omitempty"`
}

// APIAdmins answers GET /api/v1/admins.
type APIAdmins struct {
	Admins []APIAdmin `json:"admins"`
}

// APINewAdmin is the body of POST /api/v1/admins. Password empty: the server generates one
// and answers it once.
type APINewAdmin struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Tenant   string `json:"tenant,omitempty"`
	Password string `json:"password,omitempty"`
}

// APIAdminUpdate is the body of PATCH /api/v1/admins/{admin}; nil fields stay. Tenant
// changes only with Role; with Role and no Tenant, the admin keeps its tenant (an owner has
// none), so that a change of role never widens what it sees; "" removes the tenant.
type APIAdminUpdate struct {
	Role     *string `json:"role,omitempty"`
	Tenant   *string `json:"tenant,omitempty"`
	Disabled *bool   `json:"disabled,omitempty"`
}

// APIAdminPassword is the body of PUT /api/v1/admins/{admin}/password. Password empty: the
// server generates one.
type APIAdminPassword struct {
	Password string `json:"password,omitempty"`
}

// APIAdminCreated answers the creation of an admin or a new password. Password is set only
// when the server generated it; it is shown this once.
type APIAdminCreated struct {
	Admin    APIAdmin `json:"admin"`
	Password string   `json:"password,omitempty"`
}

// APIToken is one API token, without its secret.
type APIToken struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Tenant    string     `json:"tenant,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	LastUsed  *time.Time `json:"last_used,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// APITokens answers GET /api/v1/tokens.
type APITokens struct {
	Tokens []APIToken `json:"tokens"`
}

// APINewToken is the body of POST /api/v1/tokens. ExpiresAt nil: never.
type APINewToken struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Tenant    string     `json:"tenant,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// APITokenCreated answers POST /api/v1/tokens. Secret ("pgt_…") is shown this once; send it
// as "Authorization: Bearer <secret>".
type APITokenCreated struct {
	Token  APIToken `json:"token"`
	Secret string   `json:"secret"`
}

// APIAuditEntry is one line of the audit log.
type APIAuditEntry struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Remote string    `json:"remote"`
	Tenant string    `json:"tenant,omitempty"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// APIAuditLog answers GET /api/v1/audit; More: another page follows (offset += limit).
type APIAuditLog struct {
	Entries []APIAuditEntry `json:"entries"`
	More    bool            `json:"more"`
}

// APIPeerRename is the body of POST /api/v1/tenants/{tenant}/peers/{peer}/rename.
type APIPeerRename struct {
	Name string `json:"name"`
}

// APIPeerExpiry is the body of PUT /api/v1/tenants/{tenant}/peers/{peer}/expiry; null: the
// peer never expires.
type APIPeerExpiry struct {
	ExpiresAt *time.Time `json:"expires_at"`
}

// APINewDownloadLink is the body of POST /api/v1/tenants/{tenant}/peers/{peer}/links.
// ValidSeconds defaults to one day, at most seven.
type APINewDownloadLink struct {
	ValidSeconds int64 `json:"valid_seconds,omitempty"`
}

// APIDownloadLink answers POST .../links. Path (DownloadPathPrefix + token) is relative to the
// web UI's address; it works once, until ExpiresAt.
type APIDownloadLink struct {
	Path      string    `json:"path"`
	ExpiresAt time.Time `json:"expires_at"`
}

func apiAdmin(a store.Admin) APIAdmin {
	out := APIAdmin{Name: a.Name, Role: a.Role, Tenant: a.TenantName, TOTP: a.TOTPEnabled, Disabled: a.Disabled,
		FailedSignIns: a.FailedSignIns, CreatedAt: a.CreatedAt.UTC()}
	if !a.LastSignIn.IsZero() {
		t := a.LastSignIn.UTC()
		out.LastSignIn = &t
	}
	return out
}

func apiToken(k store.APIToken) APIToken {
	out := APIToken{Name: k.Name, Role: k.Role, Tenant: k.TenantName, CreatedAt: k.CreatedAt.UTC()}
	if !k.LastUsed.IsZero() {
		t := k.LastUsed.UTC()
		out.LastUsed = &t
	}
	if !k.ExpiresAt.IsZero() {
		t := k.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	return out
}

func (a *API) listAdmins(w http.ResponseWriter, r *http.Request) error {
	as, err := a.store.ListAdmins(r.Context())
	if err != nil {
		return err
	}
	out := APIAdmins{Admins: make([]APIAdmin, len(as))}
	for i, ad := range as {
		out.Admins[i] = apiAdmin(ad)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) addAdmin(w http.ResponseWriter, r *http.Request) error {
	var req APINewAdmin
	if err := decode(r, &req); err != nil {
		return err
	}
	ad, generated, err := addAdmin(r.Context(), a.store, store.NewAdmin{Name: req.Name, Role: req.Role, Tenant: req.Tenant, Password: req.Password})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, APIAdminCreated{Admin: apiAdmin(ad), Password: generated})
	return nil
}

func (a *API) updateAdmin(w http.ResponseWriter, r *http.Request) error {
	var req APIAdminUpdate
	if err := decode(r, &req); err != nil {
		return err
	}
	name := r.PathValue("admin")
	if req.Role == nil && req.Tenant == nil && req.Disabled == nil {
		return fmt.Errorf("%w: nothing to change: send role (and tenant) or disabled", errBadRequest)
	}
	if req.Tenant != nil && req.Role == nil {
		return fmt.Errorf("%w: tenant changes only together with role: send both", errBadRequest)
	}
	ad, err := a.store.Admin(r.Context(), name)
	if err != nil {
		return err
	}
	if req.Role != nil {
		tenant := ad.TenantName
		switch {
		case req.Tenant != nil:
			tenant = *req.Tenant
		case *req.Role == store.RoleOwner:
			tenant = ""
		}
		if ad, err = a.store.SetAdminRole(r.Context(), name, *req.Role, tenant); err != nil {
			return err
		}
	}
	if req.Disabled != nil {
		if ad, err = a.store.SetAdminDisabled(r.Context(), name, *req.Disabled); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, apiAdmin(ad))
	return nil
}

func (a *API) setAdminPassword(w http.ResponseWriter, r *http.Request) error {
	var req APIAdminPassword
	if err := decode(r, &req); err != nil {
		return err
	}
	ad, generated, err := setAdminPassword(r.Context(), a.store, r.PathValue("admin"), req.Password)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, APIAdminCreated{Admin: apiAdmin(ad), Password: generated})
	return nil
}

func (a *API) disableAdminTOTP(w http.ResponseWriter, r *http.Request) error {
	ad, err := a.store.DisableAdminTOTP(r.Context(), r.PathValue("admin"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiAdmin(ad))
	return nil
}

func (a *API) removeAdmin(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.store.RemoveAdmin(r.Context(), r.PathValue("admin")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	ks, err := a.store.ListAPITokens(r.Context())
	if err != nil {
		return err
	}
	out := APITokens{Tokens: make([]APIToken, len(ks))}
	for i, k := range ks {
		out.Tokens[i] = apiToken(k)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) addToken(w http.ResponseWriter, r *http.Request) error {
	var req APINewToken
	if err := decode(r, &req); err != nil {
		return err
	}
	nt := store.NewAPIToken{Name: req.Name, Role: req.Role, Tenant: req.Tenant}
	if req.ExpiresAt != nil {
		nt.ExpiresAt = *req.ExpiresAt
	}
	k, secret, err := a.store.AddAPIToken(r.Context(), nt)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, APITokenCreated{Token: apiToken(k), Secret: secret})
	return nil
}

func (a *API) removeToken(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.store.RemoveAPIToken(r.Context(), r.PathValue("token")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// logPage is the page and time window of a list of a log: what GET /api/v1/audit and GET
// /api/v1/events share.
type logPage struct {
	Limit, Offset int
	Since, Until  time.Time
}

// logPageQuery reads the limit, offset, since and until of a log's list: limit and offset
// whole numbers ≥ 0, limit at most maxLimit (of what, such as "entries"), times in RFC 3339.
func logPageQuery(v url.Values, maxLimit int, what string) (logPage, error) {
	var p logPage
	for _, f := range []struct {
		name string
		dst  *int
	}{{"limit", &p.Limit}, {"offset", &p.Offset}} {
		if s := v.Get(f.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return p, fmt.Errorf("%w: %s=%s is not a whole number ≥ 0", errBadRequest, f.name, quoteInput(s))
			}
			*f.dst = n
		}
	}
	if p.Limit > maxLimit {
		return p, fmt.Errorf("%w: limit=%d is too large: ask for at most %d %s and page with offset", errBadRequest, p.Limit, maxLimit, what)
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &p.Since}, {"until", &p.Until}} {
		if s := v.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return p, fmt.Errorf("%w: %s=%s is not an RFC 3339 time such as 2026-11-24T09:30:00Z", errBadRequest, f.name, quoteInput(s))
			}
			*f.dst = t
		}
	}
	return p, nil
}

// auditQuery parses the filters of GET /api/v1/audit.
func auditQuery(v url.Values) (store.AuditQuery, error) {
	p, err := logPageQuery(v, store.MaxAuditPage, "entries")
	if err != nil {
		return store.AuditQuery{}, err
	}
	return store.AuditQuery{Tenant: v.Get("tenant"), Actor: v.Get("actor"), Action: v.Get("action"),
		Since: p.Since, Until: p.Until, Offset: p.Offset, Limit: p.Limit}, nil
}

func (a *API) auditLog(w http.ResponseWriter, r *http.Request) error {
	q, err := auditQuery(r.URL.Query())
	if err != nil {
		return err
	}
	es, more, err := a.store.ListAudit(r.Context(), q)
	if err != nil {
		return err
	}
	out := APIAuditLog{Entries: make([]APIAuditEntry, len(es)), More: more}
	for i, e := range es {
		out.Entries[i] = APIAuditEntry{Time: e.At.UTC(), Actor: e.Actor, Remote: e.Remote, Tenant: e.Tenant,
			Action: e.Action, Target: e.Target, Detail: e.Detail}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) renamePeer(w http.ResponseWriter, r *http.Request) error {
	var req APIPeerRename
	if err := decode(r, &req); err != nil {
		return err
	}
	p, err := a.ctrl.RenamePeer(r.Context(), r.PathValue("tenant"), r.PathValue("peer"), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiPeer(p))
	return nil
}

func (a *API) setPeerExpiry(w http.ResponseWriter, r *http.Request) error {
	var req APIPeerExpiry
	if err := decode(r, &req); err != nil {
		return err
	}
	p, err := a.ctrl.SetPeerExpiry(r.Context(), r.PathValue("tenant"), r.PathValue("peer"), req.ExpiresAt)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiPeer(p))
	return nil
}

// defaultLinkLife is how long a download link stays valid unless asked otherwise.
const defaultLinkLife = 24 * time.Hour

func (a *API) addDownloadLink(w http.ResponseWriter, r *http.Request) error {
	var req APINewDownloadLink
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	life := defaultLinkLife
	if req.ValidSeconds != 0 {
		if req.ValidSeconds < 60 || req.ValidSeconds > int64(store.MaxDownloadLinkLife/time.Second) {
			return fmt.Errorf("%w: valid_seconds=%d is out of range: give 60 to %d (seven days)", errBadRequest, req.ValidSeconds, int64(store.MaxDownloadLinkLife/time.Second))
		}
		life = time.Duration(req.ValidSeconds) * time.Second
	}
	by := "cli"
	if p := PrincipalFrom(r.Context()); p != nil {
		by = p.Name
	}
	l, token, err := a.ctrl.CreateDownloadLink(r.Context(), r.PathValue("tenant"), r.PathValue("peer"), by, time.Now(), life)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, APIDownloadLink{Path: DownloadPathPrefix + token, ExpiresAt: l.ExpiresAt.UTC()})
	return nil
}
