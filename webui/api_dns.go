package webui

import (
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/popgate/popgate/store"
)

// A tenant's settings of the in-tunnel resolver (issue 17) under
// /api/v1/tenants/{tenant}/dns/: its split zones, its own upstreams, and its query log.

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
