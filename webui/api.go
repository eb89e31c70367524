// Package webui serves popgate's admin interfaces over HTTP: the JSON API (on the control
// socket and, later, the web address) and the web UI.
package webui

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// maxBody bounds request bodies but the policy's (store.MaxPolicySize); every other API body
// is small.
const maxBody = 64 << 10

// API serves /api/v1 on top of the controller and, for admins, API tokens and the audit log,
// the store. Authentication is the caller's business: on the control socket it is the
// socket's file mode.
type API struct {
	ctrl  *control.Controller
	store Store
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewAPI returns the /api/v1 handler.
func NewAPI(ctrl *control.Controller, st Store, log *slog.Logger) *API {
	a := &API{ctrl: ctrl, store: st, log: log, mux: http.NewServeMux()}
	for _, r := range []struct {
		pattern string
		h       func(w http.ResponseWriter, r *http.Request) error
	}{
		{"GET /api/v1/status", a.status},
		{"GET /api/v1/tenants", a.listTenants},
		{"POST /api/v1/tenants", a.addTenant},
		{"DELETE /api/v1/tenants/{tenant}", a.removeTenant},
		{"GET /api/v1/peers", a.listPeers},
		{"POST /api/v1/tenants/{tenant}/peers", a.addPeer},
		{"GET /api/v1/tenants/{tenant}/peers/{peer}", a.peer},
		{"GET /api/v1/tenants/{tenant}/peers/{peer}/config", a.peerConfig},
		{"POST /api/v1/tenants/{tenant}/peers/{peer}/enable", a.enablePeer},
		{"POST /api/v1/tenants/{tenant}/peers/{peer}/disable", a.disablePeer},
		{"DELETE /api/v1/tenants/{tenant}/peers/{peer}", a.removePeer},
		{"PATCH /api/v1/tenants/{tenant}/peers/{peer}", a.updatePeer},
		{"PATCH /api/v1/tenants/{tenant}", a.updateTenant},
		{"PATCH /api/v1/tenants/{tenant}/limits", a.updateTenantLimits},
		{"GET /api/v1/tenants/{tenant}/policy", a.policy},
		{"PUT /api/v1/tenants/{tenant}/policy", a.setPolicy}, // policyPutPattern
		{"GET /api/v1/tenants/{tenant}/routes", a.routes},
		{"POST /api/v1/tenants/{tenant}/routes", a.addRoute},
		{"DELETE /api/v1/tenants/{tenant}/routes", a.removeRoute},
		{"GET /api/v1/tenants/{tenant}/dns/zones", a.dnsZones},
		{"POST /api/v1/tenants/{tenant}/dns/zones", a.addDNSZone},
		{"DELETE /api/v1/tenants/{tenant}/dns/zones", a.removeDNSZone},
		{"GET /api/v1/tenants/{tenant}/dns/upstreams", a.dnsUpstreams},
		{"PUT /api/v1/tenants/{tenant}/dns/upstreams", a.setDNSUpstreams},
		{"DELETE /api/v1/tenants/{tenant}/dns/upstreams", a.resetDNSUpstreams},
		{"GET /api/v1/tenants/{tenant}/dns/blocklists", a.listBlocklists},
		{"POST /api/v1/tenants/{tenant}/dns/blocklists", a.addBlocklist},
		{"GET /api/v1/tenants/{tenant}/dns/blocklists/{blocklist}", a.blocklist},
		{"PUT /api/v1/tenants/{tenant}/dns/blocklists/{blocklist}/content", a.uploadBlocklist}, // blocklistPutPattern
		{"POST /api/v1/tenants/{tenant}/dns/blocklists/{blocklist}/refresh", a.refreshBlocklist},
		{"DELETE /api/v1/tenants/{tenant}/dns/blocklists/{blocklist}", a.removeBlocklist},
		{"GET /api/v1/tenants/{tenant}/dns/log", a.dnsLog},
		{"POST /api/v1/tenants/{tenant}/dns/log/enable", a.enableDNSLog},
		{"POST /api/v1/tenants/{tenant}/dns/log/disable", a.disableDNSLog},
		{"GET /api/v1/tenants/{tenant}/traffic", a.tenantTraffic},
		{"GET /api/v1/tenants/{tenant}/peers/{peer}/traffic", a.peerTraffic},
		{"GET /api/v1/regions", a.listRegions},
		{"POST /api/v1/regions", a.addRegion},
		{"PATCH /api/v1/regions/{region}", a.updateRegion},
		{"DELETE /api/v1/regions/{region}", a.removeRegion},
		{"GET /api/v1/nodes", a.listNodes},
		{"POST /api/v1/nodes/tokens", a.addNodeToken},
		{"DELETE /api/v1/nodes/{node}", a.removeNode},
		{"GET /api/v1/events", a.listEvents},
		{"GET /api/v1/events/webhook", a.webhook},
		{"PUT /api/v1/events/webhook", a.setWebhook},
		{"DELETE /api/v1/events/webhook", a.removeWebhook},
		{"GET /api/v1/checks", a.listChecks},
		{"POST /api/v1/checks", a.addCheck},
		{"GET /api/v1/checks/{check}", a.check},
		{"DELETE /api/v1/checks/{check}", a.removeCheck},
		{"POST /api/v1/tenants/{tenant}/checks", a.addCheck},
		{"GET /api/v1/tenants/{tenant}/checks/{check}", a.check},
		{"DELETE /api/v1/tenants/{tenant}/checks/{check}", a.removeCheck},

		// ---- admins, API tokens, the audit log, and peer rename, expiry and download
		// links (handlers and types in auth_api.go; on the web address apiRoutes in token.go
		// decides who may call each) ----
		{"GET /api/v1/admins", a.listAdmins},
		{"POST /api/v1/admins", a.addAdmin},
		{"PATCH /api/v1/admins/{admin}", a.updateAdmin},
		{"PUT /api/v1/admins/{admin}/password", a.setAdminPassword},
		{"DELETE /api/v1/admins/{admin}/totp", a.disableAdminTOTP},
		{"DELETE /api/v1/admins/{admin}", a.removeAdmin},
		{"GET /api/v1/tokens", a.listTokens},
		{"POST /api/v1/tokens", a.addToken},
		{"DELETE /api/v1/tokens/{token}", a.removeToken},
		{"GET /api/v1/audit", a.auditLog},
		{"POST /api/v1/tenants/{tenant}/peers/{peer}/rename", a.renamePeer},
		{"PUT /api/v1/tenants/{tenant}/peers/{peer}/expiry", a.setPeerExpiry},
		{"POST /api/v1/tenants/{tenant}/peers/{peer}/links", a.addDownloadLink},
		{"POST /api/v1/tenants/{tenant}/peers/{peer}/rotate", a.rotatePeerKey},
	} {
		limit := int64(maxBody)
		switch r.pattern { // the bodies that are not small: a policy file, a blocklist
		case policyPutPattern:
			limit = store.MaxPolicySize
		case blocklistPutPattern:
			limit = store.MaxBlocklistSize
		}
		a.mux.Handle(r.pattern, a.wrapLimit(limit, r.h))
	}
	a.mux.HandleFunc("/api/", noSuchRoute)
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// noSuchRoute answers a request that matches no API route, quoting a bounded part of it.
func noSuchRoute(w http.ResponseWriter, r *http.Request) {
	msg := fmt.Sprintf("no such API route: %s %s", clipText(r.Method, 20), clipText(r.URL.EscapedPath(), 200))
	writeJSON(w, http.StatusNotFound, APIError{Error: msg})
}

// policyPutPattern is the route that sets a policy, whose body may be up to
// store.MaxPolicySize.
const policyPutPattern = "PUT /api/v1/tenants/{tenant}/policy"

// wrapLimit turns a handler's error into the status and message a client can act on. The
// request body is bounded by limit bytes: reading beyond it fails with an
// *http.MaxBytesError (→ 413), and the server closes the connection after answering, without
// reading the rest (a client still sending gets the answer, not a broken pipe).
func (a *API) wrapLimit(limit int64, h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		err := h(w, r)
		if err == nil {
			return
		}
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, errTooLarge):
			code = http.StatusRequestEntityTooLarge
		case errors.Is(err, store.ErrInvalid), errors.Is(err, errBadRequest):
			code = http.StatusBadRequest
		case errors.Is(err, store.ErrNotFound):
			code = http.StatusNotFound
		case errors.Is(err, errForbidden):
			code = http.StatusForbidden
		case errors.Is(err, store.ErrExists):
			code = http.StatusConflict
		case errors.Is(err, store.ErrExhausted):
			code = http.StatusServiceUnavailable
		case errors.Is(err, control.ErrFetch):
			code = http.StatusBadGateway
		case errors.Is(err, store.ErrDiskFull):
			code = http.StatusInsufficientStorage
			a.log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "err", err, "cause", errors.Unwrap(err))
		}
		msg := err.Error()
		if code == http.StatusInternalServerError {
			a.log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			msg = "internal error: " + msg + " (details in the popgate serve log)"
		}
		writeJSON(w, code, APIError{Error: msg})
	})
}

var (
	errBadRequest = errors.New("bad request")
	// errForbidden: the principal may not make this change (→ 403).
	errForbidden = errors.New("forbidden")
	// errTooLarge: the request body is larger than the route takes (→ 413).
	errTooLarge = errors.New("request body too large")
)

// bodyError is the error of reading a request body that failed with err: errTooLarge,
// saying the limit and what to do, when it hit the body's limit; nil otherwise.
func bodyError(err error, what, advice string) error {
	var mbe *http.MaxBytesError
	if !errors.As(err, &mbe) {
		return nil
	}
	return fmt.Errorf("%w: %s is larger than %s (%d bytes), the most this API takes: %s", errTooLarge, what, sizeText(mbe.Limit), mbe.Limit, advice)
}

// sizeText words a byte count that is a whole number of KiB or MiB.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// clipText cuts s to at most n bytes at a character boundary, marking the cut with "…": an
// error quotes a bounded part of what it refuses, whatever its size.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// quoteInput quotes (%q) at most the first 60 bytes of s, for an error message.
func quoteInput(s string) string { return strconv.Quote(clipText(s, 60)) }

// decode reads a JSON body, exactly one JSON value, into v, refusing unknown fields, data
// after the value and bodies over the route's limit (413).
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if err := bodyError(err, "the request body", "every JSON body of this API is small: check what is being sent"); err != nil {
			return err
		}
		// The message may quote a field name of any length.
		return fmt.Errorf("%w: request body is not the expected JSON: %s", errBadRequest, clipText(err.Error(), 200))
	}
	// Only white space may follow: {"name":"a"} {"name":"b"} must not create a and
	// silently drop b.
	if _, err := dec.Token(); err != io.EOF {
		if err := bodyError(err, "the request body", "every JSON body of this API is small: check what is being sent"); err != nil {
			return err
		}
		return fmt.Errorf("%w: the request body holds more than one JSON value: send exactly one JSON object, with nothing after it", errBadRequest)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (a *API) status(w http.ResponseWriter, r *http.Request) error {
	st, err := a.ctrl.Status(r.Context())
	if err != nil {
		return err
	}
	tenants := make([]APITenantStatus, len(st.Tenants))
	for i, t := range st.Tenants {
		ts := APITenantStatus{Name: t.Name, Peers: t.Peers, Online: t.Online, RxBytes: t.RxBytes, TxBytes: t.TxBytes,
			RxPackets: t.RxPackets, TxPackets: t.TxPackets,
			Flows: int(t.Flows), ExitFlows: APIExitFlows{TCP: t.ExitTCP, UDP: t.ExitUDP, ICMP: t.ExitICMP},
			MaxFlowsPerPeer: t.MaxFlowsPerPeer, MaxFlows: t.MaxFlows,
			Drops: t.Drops, Evicted: t.Evicted, Rules: make([]APIRuleStat, len(t.Rules))}
		for j, r := range t.Rules {
			ts.Rules[j] = APIRuleStat{Line: r.Line, Rule: r.Rule, Hits: r.Hits}
			if !r.Since.IsZero() {
				since := r.Since.UTC()
				ts.Rules[j].Since = &since
			}
		}
		tenants[i] = ts
	}
	addrs := make([]string, len(st.Addresses))
	for i, ad := range st.Addresses {
		addrs[i] = ad.String()
	}
	writeJSON(w, http.StatusOK, APIStatus{
		Node: APINode{
			Name: st.NodeName, Version: st.Version, Roles: st.Roles, Region: st.Region,
			StartedAt: st.StartedAt.UTC(), UptimeSeconds: int64(time.Since(st.StartedAt).Seconds()),
			Goroutines: runtime.NumGoroutine(), RSSBytes: rssBytes(),
		},
		Device: APIDevice{
			Interface: st.Interface, PublicKey: st.PublicKey.String(), ListenPort: st.ListenPort,
			PublicEndpoint: st.PublicEndpoint, MTU: st.MTU, ExitMode: st.ExitMode, Addresses: addrs,
			UAPISocket: st.UAPISocket, RxBytes: st.RxBytes, TxBytes: st.TxBytes, Drops: st.Drops,
			ExitSockets: st.ExitSockets, ExitSocketBudget: st.ExitSocketBudget,
			Handshakes: APIHandshakes{
				Initiations: st.Handshakes.Initiations, Routed: st.Handshakes.Routed,
				CookieReplies: st.Handshakes.CookieReplies, UnderLoad: st.Handshakes.UnderLoad,
				Queued: st.Handshakes.Queued, Drops: st.Handshakes.Drops,
			},
		},
		Peers:   APIPeerCounts{Total: st.PeersTotal, Enabled: st.PeersEnabled, Online: st.PeersOnline},
		Desired: &APIDesiredState{Generation: st.Generation, Applied: st.Applied, Error: st.ApplyError},
		Tenants: tenants,
	})
	return nil
}

func (a *API) listTenants(w http.ResponseWriter, r *http.Request) error {
	ts, err := a.ctrl.ListTenants(r.Context())
	if err != nil {
		return err
	}
	out := APITenants{Tenants: make([]APITenant, len(ts))}
	for i, t := range ts {
		out.Tenants[i] = apiTenant(t)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) addTenant(w http.ResponseWriter, r *http.Request) error {
	var req APINewTenant
	if err := decode(r, &req); err != nil {
		return err
	}
	t, err := a.ctrl.AddTenant(r.Context(), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, APITenant{Name: t.Name, CreatedAt: t.CreatedAt.UTC(),
		MaxFlowsPerPeer: plane.DefaultMaxFlowsPerPeer, MaxFlows: plane.DefaultMaxFlowsPerTenant})
	return nil
}

func (a *API) removeTenant(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctrl.RemoveTenant(r.Context(), r.PathValue("tenant")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listPeers answers APIPeers, written peer by peer from the controller's copy of the store.
func (a *API) listPeers(w http.ResponseWriter, r *http.Request) error {
	peers, err := a.ctrl.Peers(r.Context(), r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	err = writeJSONList(w, "peers", func(yield func(APIPeer) bool) {
		for p := range peers {
			if !yield(apiPeer(p)) {
				return
			}
		}
	})
	if err != nil {
		// The status is out: the client sees a cut answer, or has gone away.
		a.log.Debug("peer list cut short", "err", err)
	}
	return nil
}

func (a *API) addPeer(w http.ResponseWriter, r *http.Request) error {
	var req APINewPeer
	if err := decode(r, &req); err != nil {
		return err
	}
	prefixes, err := parsePrefixes("site_prefixes", req.SitePrefixes)
	if err != nil {
		return err
	}
	p, cfg, err := a.ctrl.AddPeer(r.Context(), control.AddPeerRequest{
		Tenant: r.PathValue("tenant"), Name: req.Name, PublicKey: req.PublicKey,
		Groups: req.Groups, Site: req.Site, SitePrefixes: prefixes, Region: req.Region,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, APIPeerCreated{Peer: apiPeer(p), Config: cfg})
	return nil
}

func (a *API) peer(w http.ResponseWriter, r *http.Request) error {
	p, err := a.ctrl.Peer(r.Context(), r.PathValue("tenant"), r.PathValue("peer"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiPeer(p))
	return nil
}

func (a *API) peerConfig(w http.ResponseWriter, r *http.Request) error {
	cfg, err := a.ctrl.PeerConfig(r.Context(), r.PathValue("tenant"), r.PathValue("peer"), r.URL.Query().Get("region"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, cfg)
	return nil
}

func (a *API) enablePeer(w http.ResponseWriter, r *http.Request) error {
	return a.setEnabled(w, r, true)
}

func (a *API) disablePeer(w http.ResponseWriter, r *http.Request) error {
	return a.setEnabled(w, r, false)
}

func (a *API) setEnabled(w http.ResponseWriter, r *http.Request, on bool) error {
	p, err := a.ctrl.SetPeerEnabled(r.Context(), r.PathValue("tenant"), r.PathValue("peer"), on)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiPeer(p))
	return nil
}

func (a *API) removePeer(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctrl.RemovePeer(r.Context(), r.PathValue("tenant"), r.PathValue("peer")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rotatePeerKey gives the peer a new key: generated by the server, or the public key of the
// body (required for a peer whose user brought its key). The old key is refused at once.
func (a *API) rotatePeerKey(w http.ResponseWriter, r *http.Request) error {
	var req APIPeerRotate
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	p, cfg, err := a.ctrl.RotatePeerKey(r.Context(), r.PathValue("tenant"), r.PathValue("peer"), req.PublicKey, req.Region)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, APIPeerCreated{Peer: apiPeer(p), Config: cfg})
	return nil
}

func apiPeer(p control.PeerInfo) APIPeer {
	out := APIPeer{
		Tenant: p.TenantName, Name: p.Name, PublicKey: p.PublicKey.String(),
		IPv4: p.IPv4.String(), IPv6: p.IPv6.String(), Enabled: p.Enabled,
		CreatedAt: p.CreatedAt.UTC(), ServerKey: p.HasPrivateKey,
		Online: p.Online, Endpoint: p.Endpoint, RxBytes: p.RxBytes, TxBytes: p.TxBytes,
		Groups: p.Groups, Site: p.Site, RxPackets: p.RxPackets, TxPackets: p.TxPackets,
	}
	if !p.ExpiresAt.IsZero() {
		t := p.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	for _, pf := range p.SitePrefixes {
		out.SitePrefixes = append(out.SitePrefixes, pf.String())
	}
	if !p.LastHandshake.IsZero() {
		t := p.LastHandshake.UTC()
		out.LastHandshake = &t
	}
	return out
}

// parsePrefixes parses CIDR prefixes of a request field.
func parsePrefixes(field string, in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %s is not a CIDR prefix: use e.g. 10.10.0.0/24 or fd00:1::/64", errBadRequest, field, quoteInput(s))
		}
		out = append(out, p)
	}
	return out, nil
}

func (a *API) updatePeer(w http.ResponseWriter, r *http.Request) error {
	var req APIPeerUpdate
	if err := decode(r, &req); err != nil {
		return err
	}
	tenant, name := r.PathValue("tenant"), r.PathValue("peer")
	if req.Groups == nil && req.Site == nil && req.SitePrefixes == nil {
		return fmt.Errorf("%w: nothing to change: send groups, or site and site_prefixes", errBadRequest)
	}
	// Two store writes: everything the user can get wrong is checked before the first, and the
	// site (which can clash with other sites and routes) goes first, so a refused request
	// changes nothing.
	if req.Groups != nil {
		if len(*req.Groups) > store.MaxPeerGroups {
			return fmt.Errorf("%w: %d groups: a peer may be in at most %d", store.ErrInvalid, len(*req.Groups), store.MaxPeerGroups)
		}
		for _, g := range *req.Groups {
			if err := store.ValidateGroupName(g); err != nil {
				return err
			}
		}
	}
	var err error
	var p control.PeerInfo
	if req.Site != nil || req.SitePrefixes != nil {
		var site string
		var prefixes []string
		if req.Site != nil {
			site = *req.Site
		}
		if req.SitePrefixes != nil {
			prefixes = *req.SitePrefixes
		}
		pfs, err := parsePrefixes("site_prefixes", prefixes)
		if err != nil {
			return err
		}
		if p, err = a.ctrl.SetPeerSite(r.Context(), tenant, name, site, pfs); err != nil {
			return err
		}
	}
	if req.Groups != nil {
		if p, err = a.ctrl.SetPeerGroups(r.Context(), tenant, name, *req.Groups); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, apiPeer(p))
	return nil
}

func (a *API) updateTenant(w http.ResponseWriter, r *http.Request) error {
	var req APITenantUpdate
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.SplitTunnel == nil && req.Regions == nil && req.Domain == nil {
		return fmt.Errorf("%w: nothing to change: send split_tunnel, regions or domain", errBadRequest)
	}
	tenant := r.PathValue("tenant")
	if req.Regions != nil {
		// Which regions a tenant may use is the operator's to decide, like its flow bounds.
		if p := PrincipalFrom(r.Context()); p != nil && (p.Role != RoleOwner || p.Tenant != "") {
			return fmt.Errorf("%w: %s (role %s) may not change the regions of tenant %s: only owners do", errForbidden, p.Name, p.Role, tenant)
		}
	}
	var t control.TenantInfo
	var err error
	if req.Regions != nil {
		regions := *req.Regions
		if len(regions) == 1 && regions[0] == "all" {
			regions = nil
		}
		if t, err = a.ctrl.SetTenantRegions(r.Context(), tenant, regions); err != nil {
			return err
		}
	}
	if req.SplitTunnel != nil {
		if t, err = a.ctrl.SetTenantSplitTunnel(r.Context(), tenant, *req.SplitTunnel); err != nil {
			return err
		}
	}
	if req.Domain != nil {
		if t, err = a.ctrl.SetTenantDomain(r.Context(), tenant, *req.Domain); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, apiTenant(t))
	return nil
}

func (a *API) updateTenantLimits(w http.ResponseWriter, r *http.Request) error {
	var req APITenantLimits
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.MaxFlowsPerPeer == nil && req.MaxFlows == nil {
		return fmt.Errorf("%w: nothing to change: send max_flows_per_peer, max_flows or both", errBadRequest)
	}
	t, err := a.ctrl.SetTenantLimits(r.Context(), r.PathValue("tenant"), store.TenantLimits{MaxFlowsPerPeer: req.MaxFlowsPerPeer, MaxFlows: req.MaxFlows})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiTenant(t))
	return nil
}

func apiTenant(t control.TenantInfo) APITenant {
	return APITenant{Name: t.Name, CreatedAt: t.CreatedAt.UTC(), Peers: t.Peers, SplitTunnel: t.SplitTunnel,
		MaxFlowsPerPeer: t.MaxFlowsPerPeer, MaxFlows: t.MaxFlows, Regions: t.Regions, Domain: cmp.Or(t.Domain, store.DefaultTenantDomain(t.Name))}
}

func (a *API) policy(w http.ResponseWriter, r *http.Request) error {
	text, isDefault, err := a.ctrl.Policy(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if isDefault {
		w.Header().Set("Popgate-Policy-Default", "true")
	}
	io.WriteString(w, text)
	return nil
}

func (a *API) setPolicy(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body) // bounded by store.MaxPolicySize (see NewAPI)
	if err != nil {
		if err := bodyError(err, "the policy", "say the same with fewer rules, using groups and CIDRs"); err != nil {
			return err
		}
		return fmt.Errorf("%w: reading the policy: %v", errBadRequest, err)
	}
	rs, warnings, err := a.ctrl.SetPolicy(r.Context(), r.PathValue("tenant"), string(body))
	if err != nil {
		return err
	}
	out := APIPolicySet{Rules: rs.Len(), Default: rs.Default().String()}
	for _, w := range warnings {
		out.Warnings = append(out.Warnings, APIPolicyWarning{Line: w.Line, Message: w.Msg})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) routes(w http.ResponseWriter, r *http.Request) error {
	rs, err := a.ctrl.RoutesWithExits(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	out := APIRoutes{Routes: make([]APIRoute, len(rs))}
	for i, rt := range rs {
		out.Routes[i] = APIRoute{Prefix: rt.Prefix.String(), Via: rt.Via}
		for _, e := range rt.Exits {
			out.Routes[i].Exits = append(out.Routes[i].Exits, APIRouteExit{Name: e.Name, State: e.State, InUse: e.InUse})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) addRoute(w http.ResponseWriter, r *http.Request) error {
	var req APIRoute
	if err := decode(r, &req); err != nil {
		return err
	}
	pfs, err := parsePrefixes("prefix", []string{req.Prefix})
	if err != nil {
		return err
	}
	rt, err := a.ctrl.AddRoute(r.Context(), r.PathValue("tenant"), pfs[0], req.Via)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, APIRoute{Prefix: rt.Prefix.String(), Via: rt.Via})
	return nil
}

func (a *API) removeRoute(w http.ResponseWriter, r *http.Request) error {
	pfs, err := parsePrefixes("prefix", []string{r.URL.Query().Get("prefix")})
	if err != nil {
		return err
	}
	if err := a.ctrl.RemoveRoute(r.Context(), r.PathValue("tenant"), pfs[0]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rssBytes is the process's resident set size (Linux), 0 when unknown.
func rssBytes() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
