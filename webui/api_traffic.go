package webui

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/popgate/popgate/gateway/control"
)

// trafficRange is a range of traffic history the API and the pages offer.
type trafficRange struct {
	Name string // as in ?range=
	Span time.Duration
}

// Ranges of a tenant's and a peer's traffic history (control.TenantTrafficKeep…), shortest
// first.
var (
	tenantTrafficRanges = []trafficRange{{"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}
	peerTrafficRanges   = []trafficRange{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"48h", 48 * time.Hour}}
)

// defaultTrafficRange is the range of the history when none is asked for: the last day.
const defaultTrafficRange = "24h"

// parseTrafficRange returns the range named name ("": defaultTrafficRange) among ranges; an
// error wrapping errBadRequest names the ones there are.
func parseTrafficRange(name string, ranges []trafficRange) (trafficRange, error) {
	if name == "" {
		name = defaultTrafficRange
	}
	names := make([]string, len(ranges))
	for i, r := range ranges {
		if r.Name == name {
			return r, nil
		}
		names[i] = r.Name
	}
	return trafficRange{}, fmt.Errorf("%w: range %s is not one the history has: use %s", errBadRequest, quoteInput(name), strings.Join(names, ", "))
}

func (a *API) tenantTraffic(w http.ResponseWriter, r *http.Request) error {
	rg, err := parseTrafficRange(r.URL.Query().Get("range"), tenantTrafficRanges)
	if err != nil {
		return err
	}
	tenant := r.PathValue("tenant")
	s, err := a.ctrl.TenantTraffic(r.Context(), tenant, rg.Span)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiTraffic(tenant, "", rg.Name, s))
	return nil
}

func (a *API) peerTraffic(w http.ResponseWriter, r *http.Request) error {
	rg, err := parseTrafficRange(r.URL.Query().Get("range"), peerTrafficRanges)
	if err != nil {
		return err
	}
	tenant, peer := r.PathValue("tenant"), r.PathValue("peer")
	s, err := a.ctrl.PeerTraffic(r.Context(), tenant, peer, rg.Span)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiTraffic(tenant, peer, rg.Name, s))
	return nil
}

func apiTraffic(tenant, peer, rg string, s control.TrafficSeries) APITraffic {
	out := APITraffic{Tenant: tenant, Peer: peer, Range: rg, StepSeconds: int64(s.Step / time.Second),
		Points:  make([]APITrafficPoint, len(s.Points)),
		RxBytes: s.Total.RxBytes, TxBytes: s.Total.TxBytes, RxPackets: s.Total.RxPackets, TxPackets: s.Total.TxPackets}
	for i, p := range s.Points {
		out.Points[i] = APITrafficPoint{At: p.At.UTC(), RxBytes: p.RxBytes, TxBytes: p.TxBytes, RxPackets: p.RxPackets, TxPackets: p.TxPackets}
	}
	return out
}
