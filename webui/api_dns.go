package webui

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/popgate/popgate/gateway/blocklist"
	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// A tenant's settings of the in-tunnel resolver (issue 17) under
// /api/v1/tenants/{tenant}/dns/: its split zones, its own upstreams, its blocklists and its
// query log.

func apiDNSZone(z store.DNSZone) APIDNSZone {
	out := APIDNSZone{Zone: z.Name, Servers: make([]string, len(z.Servers))}
	for i, s := range z.Servers {
		out.Servers[i] = s.String()
	}
	return out
}

func (a *API) dnsZones(w http.ResponseWriter, r *http.Request) error {
	zs, err := a.ctrl.DNSZones(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	out := APIDNSZones{Zones: make([]APIDNSZone, len(zs))}
	for i, z := range zs {
		out.Zones[i] = apiDNSZone(z)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) addDNSZone(w http.ResponseWriter, r *http.Request) error {
	var req APIDNSZone
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Servers) > store.MaxDNSZoneServers {
		return fmt.Errorf("%w: DNS zone %s has %d servers: give 1 to %d", errBadRequest, quoteInput(req.Zone), len(req.Servers), store.MaxDNSZoneServers)
	}
	servers := make([]netip.AddrPort, len(req.Servers))
	for i, s := range req.Servers {
		ap, err := store.ParseDNSServer(s)
		if err != nil {
			return err
		}
		servers[i] = ap
	}
	z, err := a.ctrl.AddDNSZone(r.Context(), r.PathValue("tenant"), req.Zone, servers)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiDNSZone(z))
	return nil
}

func (a *API) removeDNSZone(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctrl.RemoveDNSZone(r.Context(), r.PathValue("tenant"), r.URL.Query().Get("zone")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) dnsUpstreams(w http.ResponseWriter, r *http.Request) error {
	ups, err := a.ctrl.DNSUpstreams(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDNSUpstreams(r.PathValue("tenant"), ups))
	return nil
}

func (a *API) setDNSUpstreams(w http.ResponseWriter, r *http.Request) error {
	var req APIDNSUpstreamsSet
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Upstreams) == 0 {
		return fmt.Errorf("%w: no upstreams: give 1 to %d, or DELETE to go back to the node's", errBadRequest, store.MaxDNSUpstreams)
	}
	ups, err := a.ctrl.SetDNSUpstreams(r.Context(), r.PathValue("tenant"), req.Upstreams)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDNSUpstreams(r.PathValue("tenant"), ups))
	return nil
}

func (a *API) resetDNSUpstreams(w http.ResponseWriter, r *http.Request) error {
	ups, err := a.ctrl.SetDNSUpstreams(r.Context(), r.PathValue("tenant"), nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDNSUpstreams(r.PathValue("tenant"), ups))
	return nil
}

func apiDNSUpstreams(tenant string, ups []store.DNSUpstream) APIDNSUpstreams {
	out := APIDNSUpstreams{Tenant: tenant, Upstreams: make([]string, len(ups)), NodeDefault: len(ups) == 0}
	for i, u := range ups {
		out.Upstreams[i] = u.String()
	}
	return out
}

func (a *API) dnsLog(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	p, err := logPageQuery(v, store.MaxDNSLogPage, "entries")
	if err != nil {
		return err
	}
	tenant := r.PathValue("tenant")
	set, err := a.ctrl.DNSLogSettings(r.Context(), tenant)
	if err != nil {
		return err
	}
	es, more, err := a.ctrl.DNSLog(r.Context(), store.DNSLogQuery{Tenant: tenant, Peer: v.Get("peer"), Since: p.Since, Until: p.Until,
		Offset: p.Offset, Limit: p.Limit})
	if err != nil {
		return err
	}
	s := apiDNSLogSettings(tenant, set)
	out := APIDNSLog{Tenant: tenant, Enabled: s.Enabled, KeepSeconds: s.KeepSeconds, EnabledAt: s.EnabledAt,
		Entries: make([]APIDNSLogEntry, len(es)), More: more}
	for i, e := range es {
		client := ""
		if e.Client.IsValid() {
			client = e.Client.String()
		}
		out.Entries[i] = APIDNSLogEntry{Time: e.At.UTC(), Node: e.Node, Peer: e.Peer, Client: client, Name: e.Name, Type: e.Type,
			Outcome: e.Outcome, Rcode: e.Rcode, LatencyMicros: e.Latency.Microseconds()}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) enableDNSLog(w http.ResponseWriter, r *http.Request) error {
	var req APIDNSLogEnable
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	if req.KeepSeconds < 0 || req.KeepSeconds > int64(store.MaxDNSLogKeep/time.Second) {
		return fmt.Errorf("%w: keep_seconds %d is out of range: give %d (1 hour) to %d (7 days), or nothing for a day",
			errBadRequest, req.KeepSeconds, int64(store.MinDNSLogKeep/time.Second), int64(store.MaxDNSLogKeep/time.Second))
	}
	set, err := a.ctrl.EnableDNSLog(r.Context(), r.PathValue("tenant"), time.Duration(req.KeepSeconds)*time.Second)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDNSLogSettings(r.PathValue("tenant"), set))
	return nil
}

func (a *API) disableDNSLog(w http.ResponseWriter, r *http.Request) error {
	n, err := a.ctrl.DisableDNSLog(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	out := APIDNSLogSettings{Tenant: r.PathValue("tenant"), Deleted: n}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func apiDNSLogSettings(tenant string, set store.DNSLogSettings) APIDNSLogSettings {
	out := APIDNSLogSettings{Tenant: tenant, Enabled: set.Enabled}
	if set.Enabled {
		out.KeepSeconds = int64(set.Keep / time.Second)
		out.EnabledAt = optTime(set.EnabledAt)
	}
	return out
}

// A tenant's DNS blocklists, at /api/v1/tenants/{tenant}/dns/blocklists: a list from a URL is
// added with POST (the controller fetches it at once), a list from a file is uploaded with PUT
// …/{blocklist}/content (?create=true to add it), and refreshed the same way.

// blocklistPutPattern is the route that uploads a list, whose body may be up to
// store.MaxBlocklistSize.
const blocklistPutPattern = "PUT /api/v1/tenants/{tenant}/dns/blocklists/{blocklist}/content"

func (a *API) listBlocklists(w http.ResponseWriter, r *http.Request) error {
	bs, err := a.ctrl.Blocklists(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	out := APIBlocklists{Blocklists: make([]APIBlocklist, len(bs))}
	for i, b := range bs {
		out.Blocklists[i] = apiBlocklist(b)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) blocklist(w http.ResponseWriter, r *http.Request) error {
	b, err := a.ctrl.Blocklist(r.Context(), r.PathValue("tenant"), r.PathValue("blocklist"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiBlocklist(b))
	return nil
}

func (a *API) addBlocklist(w http.ResponseWriter, r *http.Request) error {
	var req APINewBlocklist
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.EverySeconds < 0 || req.EverySeconds > int(store.MaxBlocklistEvery/time.Second) {
		return fmt.Errorf("%w: every_seconds %d is out of range: give %d to %d", errBadRequest, req.EverySeconds,
			int(store.MinBlocklistEvery/time.Second), int(store.MaxBlocklistEvery/time.Second))
	}
	// Only an owner's list may be on a private address: a tenant's admin must not make the
	// controller reach what only it reaches.
	p := PrincipalFrom(r.Context())
	b, err := a.ctrl.AddBlocklist(r.Context(), control.AddBlocklistRequest{Tenant: r.PathValue("tenant"), Name: req.Name, URL: req.URL,
		Every: time.Duration(req.EverySeconds) * time.Second, PrivateOK: p != nil && p.Role == RoleOwner && p.Tenant == ""})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiBlocklist(b))
	return nil
}

func (a *API) uploadBlocklist(w http.ResponseWriter, r *http.Request) error {
	create := false
	if v := r.URL.Query().Get("create"); v != "" {
		var err error
		if create, err = strconv.ParseBool(v); err != nil {
			return fmt.Errorf("%w: create=%s: give true (add the list) or false (replace an uploaded list's content)", errBadRequest, quoteInput(v))
		}
	}
	b, err := a.ctrl.UploadBlocklist(r.Context(), r.PathValue("tenant"), r.PathValue("blocklist"), r.Body, create)
	if berr := bodyError(err, "the list", "use a smaller list, or split it into several"); berr != nil {
		return berr
	}
	if errors.Is(err, blocklist.ErrTooLarge) {
		return fmt.Errorf("%w: %v", errTooLarge, err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiBlocklist(b))
	return nil
}

func (a *API) refreshBlocklist(w http.ResponseWriter, r *http.Request) error {
	b, err := a.ctrl.RefreshBlocklist(r.Context(), r.PathValue("tenant"), r.PathValue("blocklist"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiBlocklist(b))
	return nil
}

func (a *API) removeBlocklist(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctrl.RemoveBlocklist(r.Context(), r.PathValue("tenant"), r.PathValue("blocklist")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func apiBlocklist(b store.Blocklist) APIBlocklist {
	out := APIBlocklist{Name: b.Name, Tenant: b.TenantName, URL: b.URL, EverySeconds: int(b.Every / time.Second),
		SHA256: hex.EncodeToString(b.SHA256[:]), Names: b.Names, Skipped: b.Skipped,
		UpdatedAt: b.UpdatedAt.UTC(), CheckedAt: b.CheckedAt.UTC(), Error: b.Error, CreatedAt: b.CreatedAt.UTC()}
	if !b.Uploaded() {
		next := b.CheckedAt.Add(b.Every).UTC()
		out.NextFetchAt = &next
	}
	if !b.ErrorAt.IsZero() {
		at := b.ErrorAt.UTC()
		out.ErrorAt = &at
	}
	return out
}
