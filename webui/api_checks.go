package webui

import (
	"fmt"
	"net/http"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// Checks: the operator's at /api/v1/checks/{check} (a region's handshake check is
// "region:NAME"), a tenant's at /api/v1/tenants/{tenant}/checks/{check}; the list of both at
// GET /api/v1/checks, ?tenant= keeping one tenant's.

func (a *API) listChecks(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.ctrl.Checks(r.Context(), r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	out := APIChecks{Checks: make([]APICheck, len(cs))}
	for i, c := range cs {
		out.Checks[i] = apiCheck(c, false)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) check(w http.ResponseWriter, r *http.Request) error {
	c, err := a.ctrl.Check(r.Context(), r.PathValue("tenant"), r.PathValue("check"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiCheck(c, true))
	return nil
}

func (a *API) addCheck(w http.ResponseWriter, r *http.Request) error {
	var req APINewCheck
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.EverySeconds < 0 || req.EverySeconds > int(store.MaxCheckEvery/time.Second) {
		return fmt.Errorf("%w: every_seconds %d is out of range: give %d to %d", errBadRequest, req.EverySeconds,
			int(store.MinCheckEvery/time.Second), int(store.MaxCheckEvery/time.Second))
	}
	c, err := a.ctrl.AddCheck(r.Context(), control.AddCheckRequest{Tenant: r.PathValue("tenant"), Name: req.Name, Kind: req.Kind,
		Target: req.Target, Expect: req.Expect, Every: time.Duration(req.EverySeconds) * time.Second, From: req.From})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiCheck(c, false))
	return nil
}

func (a *API) removeCheck(w http.ResponseWriter, r *http.Request) error {
	if err := a.ctrl.RemoveCheck(r.Context(), r.PathValue("tenant"), r.PathValue("check")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func apiCheck(c control.CheckInfo, week bool) APICheck {
	out := APICheck{Name: c.Name, Tenant: c.TenantName, Kind: c.Kind, Target: c.Target, Expect: c.Expect,
		EverySeconds: int(c.Every / time.Second), From: c.From, Region: c.Region, CreatedAt: c.CreatedAt.UTC(),
		Runners: c.Runners, Day: apiCheckWindow(c.Summary.Day), Latest: []APICheckLatest{}}
	if out.Runners == nil {
		out.Runners = []string{}
	}
	if week {
		wk := apiCheckWindow(c.Summary.Week)
		out.Week = &wk
	}
	for _, l := range c.Summary.Latest {
		out.Latest = append(out.Latest, APICheckLatest{Node: l.Node, Minute: l.Minute.UTC(), OK: l.OK, Failed: l.Failed,
			LatencyMicros: l.LatencyP50.Microseconds(), LatencyMaxMicros: l.LatencyMax.Microseconds(), Error: l.Error, Detail: l.Detail})
	}
	return out
}

func apiCheckWindow(cw control.CheckWindow) APICheckWindow {
	out := APICheckWindow{OK: cw.OK, Failed: cw.Failed, P50Micros: cw.P50.Microseconds(), P95Micros: cw.P95.Microseconds()}
	if u := cw.Uptime(); u >= 0 {
		out.UptimePercent = &u
	}
	return out
}

// scopedOperatorCheck answers a tenant-limited principal's request for one of the operator's
// checks as if there were none: the operator's checks are no tenant's to see.
func (s *Server) scopedOperatorCheck(w http.ResponseWriter, r *http.Request, p *Principal) {
	writeJSON(w, http.StatusNotFound, APIError{Error: fmt.Sprintf("check %q not found: %s is limited to tenant %q, whose checks are at /api/v1/tenants/%s/checks", clipText(r.PathValue("check"), 80), p.Name, p.Tenant, p.Tenant)})
}
