package webui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/popgate/popgate/store"
)

// apiAccess is who may call an API route on the web address.
type apiAccess int

const (
	// accessRead: every role; a principal limited to a tenant sees only that tenant.
	accessRead apiAccess = iota
	// accessChange: owners, and tenant admins within their tenant; never viewers.
	accessChange
	// accessOwner: owners only (admins, tokens, creating and removing tenants).
	accessOwner
)

// apiRoute is the authorisation of one API route on the web address.
type apiRoute struct {
	pattern string // as in NewAPI's table
	access  apiAccess
	// action names the change in the store's audit log entry; "" for reads. (The store
	// writes the entry; this names it for the API document.)
	action string
	// hashes: the route hashes a password; it takes one of the bounded hashing slots.
	hashes bool
	// scoped serves a principal limited to one tenant, filtering the API's answer; nil: the
	// API's answer is already limited by the {tenant} in the path.
	scoped func(s *Server, w http.ResponseWriter, r *http.Request, p *Principal)
}

// apiRoutes lists every API route with who may call it. A route missing here is refused on
// the web address (404), so a new API route stays closed until someone decides its access.
func apiRoutes() []apiRoute {
	const (
		tenant = "/api/v1/tenants/{tenant}"
		peer   = tenant + "/peers/{peer}"
	)
	return []apiRoute{
		{pattern: "GET /api/v1/status", access: accessRead, scoped: (*Server).scopedStatus},
		{pattern: "GET /api/v1/tenants", access: accessRead, scoped: (*Server).scopedTenants},
		{pattern: "POST /api/v1/tenants", access: accessOwner, action: "tenant.add"},
		{pattern: "DELETE " + tenant, access: accessOwner, action: "tenant.remove"},
		{pattern: "PATCH " + tenant, access: accessChange, action: "tenant.update"},
		// A tenant's fair share of the node is the operator's to set, not the tenant's.
		{pattern: "PATCH " + tenant + "/limits", access: accessOwner, action: "tenant.limits"},
		{pattern: "GET /api/v1/peers", access: accessRead, scoped: (*Server).scopedQuery},
		{pattern: "POST " + tenant + "/peers", access: accessChange, action: "peer.add"},
		{pattern: "GET " + peer, access: accessRead},
		// A config holds the peer's private key: whoever has it can be the peer.
		{pattern: "GET " + peer + "/config", access: accessChange},
		{pattern: "POST " + peer + "/enable", access: accessChange, action: "peer.enable"},
		{pattern: "POST " + peer + "/disable", access: accessChange, action: "peer.disable"},
		{pattern: "DELETE " + peer, access: accessChange, action: "peer.remove"},
		{pattern: "PATCH " + peer, access: accessChange, action: "peer.update"},
		{pattern: "POST " + peer + "/rename", access: accessChange, action: "peer.rename"},
		{pattern: "PUT " + peer + "/expiry", access: accessChange, action: "peer.expiry"},
		{pattern: "POST " + peer + "/links", access: accessChange, action: "link.create"},
		// A new key: the config it answers holds the private key, like GET .../config.
		{pattern: "POST " + peer + "/rotate", access: accessChange, action: "peer.rotate"},
		{pattern: "GET " + tenant + "/policy", access: accessRead},
		{pattern: "PUT " + tenant + "/policy", access: accessChange, action: "policy.set"},
		{pattern: "GET " + tenant + "/routes", access: accessRead},
		{pattern: "POST " + tenant + "/routes", access: accessChange, action: "route.add"},
		{pattern: "DELETE " + tenant + "/routes", access: accessChange, action: "route.remove"},
		{pattern: "GET " + tenant + "/dns/zones", access: accessRead},
		{pattern: "POST " + tenant + "/dns/zones", access: accessChange, action: "dns.zone.add"},
		{pattern: "DELETE " + tenant + "/dns/zones", access: accessChange, action: "dns.zone.remove"},
		// A tenant's resolver settings are its admins': its upstreams must be public addresses.
		{pattern: "GET " + tenant + "/dns/upstreams", access: accessRead},
		{pattern: "PUT " + tenant + "/dns/upstreams", access: accessChange, action: "dns.upstream.set"},
		{pattern: "DELETE " + tenant + "/dns/upstreams", access: accessChange, action: "dns.upstream.reset"},
		// DNS blocklists: a tenant's admins manage its own; the controller fetches their URLs
		// from public addresses only (an owner's may be private).
		{pattern: "GET " + tenant + "/dns/blocklists", access: accessRead},
		{pattern: "POST " + tenant + "/dns/blocklists", access: accessChange, action: "dns.blocklist.add"},
		{pattern: "GET " + tenant + "/dns/blocklists/{blocklist}", access: accessRead},
		{pattern: "PUT " + tenant + "/dns/blocklists/{blocklist}/content", access: accessChange, action: "dns.blocklist.upload"},
		{pattern: "POST " + tenant + "/dns/blocklists/{blocklist}/refresh", access: accessChange, action: "dns.blocklist.refresh"},
		{pattern: "DELETE " + tenant + "/dns/blocklists/{blocklist}", access: accessChange, action: "dns.blocklist.remove"},
		// A tenant's query log is its own (personal data of its users): its admins turn it
		// on and off; those who may see the tenant read it, no other tenant.
		{pattern: "GET " + tenant + "/dns/log", access: accessRead},
		{pattern: "POST " + tenant + "/dns/log/enable", access: accessChange, action: "dns.log.enable"},
		{pattern: "POST " + tenant + "/dns/log/disable", access: accessChange, action: "dns.log.disable"},
		{pattern: "GET " + tenant + "/traffic", access: accessRead},
		{pattern: "GET " + peer + "/traffic", access: accessRead},
		{pattern: "GET /api/v1/admins", access: accessOwner},
		{pattern: "POST /api/v1/admins", access: accessOwner, action: "admin.add", hashes: true},
		{pattern: "PATCH /api/v1/admins/{admin}", access: accessOwner, action: "admin.update"},
		{pattern: "PUT /api/v1/admins/{admin}/password", access: accessOwner, action: "admin.password", hashes: true},
		{pattern: "DELETE /api/v1/admins/{admin}/totp", access: accessOwner, action: "admin.totp.disable"},
		{pattern: "DELETE /api/v1/admins/{admin}", access: accessOwner, action: "admin.remove"},
		{pattern: "GET /api/v1/tokens", access: accessOwner},
		{pattern: "POST /api/v1/tokens", access: accessOwner, action: "token.add"},
		{pattern: "DELETE /api/v1/tokens/{token}", access: accessOwner, action: "token.remove"},
		// Nodes are the operator's: a join token makes a machine part of the network.
		{pattern: "GET /api/v1/nodes", access: accessOwner},
		{pattern: "POST /api/v1/nodes/tokens", access: accessOwner, action: "node.token"},
		{pattern: "DELETE /api/v1/nodes/{node}", access: accessOwner, action: "node.remove"},
		{pattern: "GET /api/v1/audit", access: accessRead, scoped: (*Server).scopedQuery},
		// Events: everyone reads them, of a tenant only that tenant's; the webhook (where
		// every event goes, signed with its secret) is the operator's.
		{pattern: "GET /api/v1/events", access: accessRead, scoped: (*Server).scopedQuery},
		{pattern: "GET /api/v1/events/webhook", access: accessOwner},
		{pattern: "PUT /api/v1/events/webhook", access: accessOwner, action: "webhook.set"},
		{pattern: "DELETE /api/v1/events/webhook", access: accessOwner, action: "webhook.remove"},
		// Regions are the operator's: everyone may see them (to pick a config), of their
		// tenants limited to each only their own.
		{pattern: "GET /api/v1/regions", access: accessRead, scoped: (*Server).scopedRegions},
		{pattern: "POST /api/v1/regions", access: accessOwner, action: "region.add"},
		{pattern: "PATCH /api/v1/regions/{region}", access: accessOwner, action: "region.update"},
		{pattern: "DELETE /api/v1/regions/{region}", access: accessOwner, action: "region.remove"},
		// Checks: the operator's are owners' to change and no tenant's to see; a tenant's
		// are its admins' (they reach only public addresses).
		{pattern: "GET /api/v1/checks", access: accessRead, scoped: (*Server).scopedQuery},
		{pattern: "POST /api/v1/checks", access: accessOwner, action: "check.add"},
		{pattern: "GET /api/v1/checks/{check}", access: accessRead, scoped: (*Server).scopedOperatorCheck},
		{pattern: "DELETE /api/v1/checks/{check}", access: accessOwner, action: "check.remove"},
		{pattern: "POST " + tenant + "/checks", access: accessChange, action: "check.add"},
		{pattern: "GET " + tenant + "/checks/{check}", access: accessRead},
		{pattern: "DELETE " + tenant + "/checks/{check}", access: accessChange, action: "check.remove"},
	}
}

// refusal says why p may not call rt for tenant (the route's {tenant}, "" for none), or "".
func (rt apiRoute) refusal(p *Principal, tenant string) string {
	switch rt.access {
	case accessOwner:
		if p.Role != RoleOwner || p.Tenant != "" {
			return fmt.Sprintf("%s (role %s) may not do this: only owners manage tenants, regions, nodes, the operator's checks, admins and API tokens", p.Name, p.Role)
		}
	case accessChange:
		if p.Role == RoleViewer {
			return fmt.Sprintf("%s (role viewer) may only read: use a token with role tenant_admin or owner", p.Name)
		}
		if !p.CanChangeTenant(tenant) {
			return fmt.Sprintf("%s is limited to tenant %q and may not change tenant %q", p.Name, p.Tenant, tenant)
		}
	case accessRead:
		if tenant != "" && !p.CanSeeTenant(tenant) {
			return fmt.Sprintf("%s is limited to tenant %q and may not see tenant %q", p.Name, p.Tenant, tenant)
		}
	}
	return ""
}

// apiHandler serves /api/ on the web address: an API token first, then the route's access
// rule (a refusal is audited), then the API (whose changes the store audits).
func (s *Server) apiHandler() http.Handler {
	gate := http.NewServeMux()
	for _, rt := range apiRoutes() {
		gate.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) { s.apiRoute(w, r, rt) })
	}
	gate.HandleFunc("/api/", noSuchRoute)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, status, msg := s.tokenPrincipal(r)
		if p == nil {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="popgate"`)
			}
			writeJSON(w, status, APIError{Error: msg})
			return
		}
		gate.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

func (s *Server) apiRoute(w http.ResponseWriter, r *http.Request, rt apiRoute) {
	p := PrincipalFrom(r.Context())
	if msg := rt.refusal(p, r.PathValue("tenant")); msg != "" {
		s.log.Info("API request refused", "principal", p.Name, "method", r.Method, "path", r.URL.Path)
		s.Denied(r, msg)
		writeJSON(w, http.StatusForbidden, APIError{Error: msg})
		return
	}
	if p.Tenant != "" && rt.scoped != nil {
		rt.scoped(s, w, r, p)
		return
	}
	if !rt.hashes {
		s.api.ServeHTTP(w, r)
		return
	}
	if err := s.withHashSlot(r.Context(), func() { s.api.ServeHTTP(w, r) }); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, APIError{Error: "the server is busy hashing passwords: try again in a moment"})
	}
}

// tokenPrincipal returns the principal of the request's API token, or nil with the status
// and message of the refusal.
func (s *Server) tokenPrincipal(r *http.Request) (*Principal, int, string) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return nil, http.StatusUnauthorized, "missing API token: send the header Authorization: Bearer pgt_… (make a token with 'popgate token add')"
	}
	scheme, secret, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, http.StatusUnauthorized, "the Authorization header must be Bearer pgt_…: the API takes API tokens only"
	}
	ctx := r.Context()
	tok, err := s.store.APITokenBySecret(ctx, strings.TrimSpace(secret))
	if errors.Is(err, store.ErrNotFound) {
		return nil, http.StatusUnauthorized, err.Error()
	}
	if err != nil {
		s.log.Error("cannot read an API token", "err", err)
		return nil, http.StatusInternalServerError, "internal error reading the API token (details in the popgate serve log)"
	}
	now := s.now()
	if tok.Expired(now) {
		return nil, http.StatusUnauthorized, fmt.Sprintf("API token %q expired at %s: make a new one with 'popgate token add'", tok.Name, tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if now.Sub(tok.LastUsed) >= touchEvery {
		if err := s.store.TouchAPIToken(ctx, tok.ID, now); err != nil {
			s.log.Warn("cannot note API token use", "err", err)
		}
	}
	return &Principal{Name: "token:" + tok.Name, Role: Role(tok.Role), Tenant: tok.TenantName, FromToken: true}, 0, ""
}

// scopedQuery serves a list route whose ?tenant= filter (GET /api/v1/peers, /audit) a
// tenant-limited principal may only set to its own tenant: it is set for it.
func (s *Server) scopedQuery(w http.ResponseWriter, r *http.Request, p *Principal) {
	q := r.URL.Query()
	if t := q.Get("tenant"); t != "" && t != p.Tenant {
		msg := fmt.Sprintf("%s is limited to tenant %q and may not see tenant %q", p.Name, p.Tenant, t)
		s.Denied(r, msg)
		writeJSON(w, http.StatusForbidden, APIError{Error: msg})
		return
	}
	q.Set("tenant", p.Tenant)
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = q.Encode()
	s.api.ServeHTTP(w, r2)
}

// scopedTenants answers GET /api/v1/tenants with only the principal's tenant.
func (s *Server) scopedTenants(w http.ResponseWriter, r *http.Request, p *Principal) {
	var ts APITenants
	if !s.apiJSON(w, r, &ts) {
		return
	}
	out := APITenants{Tenants: []APITenant{}}
	for _, t := range ts.Tenants {
		if p.CanSeeTenant(t.Name) {
			out.Tenants = append(out.Tenants, t)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// scopedStatus answers GET /api/v1/status with only the principal's tenant: its counters, and
// none of the node-wide ones that would tell about other tenants.
func (s *Server) scopedStatus(w http.ResponseWriter, r *http.Request, p *Principal) {
	var st APIStatus
	if !s.apiJSON(w, r, &st) {
		return
	}
	var mine []APITenantStatus
	for _, t := range st.Tenants {
		if p.CanSeeTenant(t.Name) {
			mine = append(mine, t)
		}
	}
	st.Tenants = mine
	st.Peers = APIPeerCounts{}
	peers, err := s.ctrl.ListPeers(r.Context(), p.Tenant)
	if err != nil {
		s.log.Error("cannot count a tenant's peers", "tenant", p.Tenant, "err", err)
		writeJSON(w, http.StatusInternalServerError, APIError{Error: "internal error counting the peers (details in the popgate serve log)"})
		return
	}
	for _, pi := range peers {
		st.Peers.Total++
		if pi.Enabled {
			st.Peers.Enabled++
		}
		if pi.Online {
			st.Peers.Online++
		}
	}
	st.Device.RxBytes, st.Device.TxBytes, st.Device.Drops = 0, 0, nil
	st.Device.ExitSockets, st.Device.ExitSocketBudget = 0, 0 // every tenant's flows
	st.Device.Handshakes = APIHandshakes{}                   // every tenant's initiations
	st.Node.Goroutines, st.Node.RSSBytes = 0, 0
	st.Desired = nil // counts every tenant's changes; an error may name another tenant
	writeJSON(w, http.StatusOK, st)
}

// apiJSON calls the API with r and decodes a 200 answer into v; any other answer is passed
// on as it is and apiJSON returns false.
func (s *Server) apiJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	var b bufferedResponse
	s.api.ServeHTTP(&b, r)
	if b.code == 0 {
		b.code = http.StatusOK
	}
	if b.code == http.StatusOK {
		if err := json.Unmarshal(b.body.Bytes(), v); err == nil {
			return true
		}
		s.log.Error("cannot filter an API answer", "path", r.URL.Path)
		writeJSON(w, http.StatusInternalServerError, APIError{Error: "internal error filtering the answer (details in the popgate serve log)"})
		return false
	}
	for k, vs := range b.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(b.code)
	w.Write(b.body.Bytes())
	return false
}

// bufferedResponse keeps a handler's answer for filtering.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header {
	if b.header == nil {
		b.header = http.Header{}
	}
	return b.header
}

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}
