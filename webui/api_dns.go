package webui

import (
	"fmt"
	"net/http"

	"github.com/popgate/popgate/store"
)

// A tenant's settings of the in-tunnel resolver (issue 17) under
// /api/v1/tenants/{tenant}/dns/: its own upstreams.

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
