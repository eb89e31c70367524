package webui

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/popgate/popgate/store"
)

// The tenant's DNS: its split zones.

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
