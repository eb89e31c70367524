package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
)

// Audit records that the request's principal did action (a dotted verb: "peer.add") to
// target ("acme/laptop") with detail (free text, never a secret), from the request's address,
// for the tenant of the route's {tenant} path value or else the principal's. A failure to
// write is logged, not returned: the change it records has happened.
func (s *Server) Audit(r *http.Request, action, target, detail string) {
	actor := "anonymous"
	if p := PrincipalFrom(r.Context()); p != nil {
		actor = p.Name
	}
	s.audit(r, actor, action, target, detail)
}

// audit is Audit with the actor given, for requests without a principal (failed sign-ins).
func (s *Server) audit(r *http.Request, actor, action, target, detail string) {
	tenant := r.PathValue("tenant")
	if p := PrincipalFrom(r.Context()); tenant == "" && p != nil {
		tenant = p.Tenant
	}
	e := store.AuditEntry{At: s.now(), Actor: actor, Remote: remoteAddr(r), Tenant: tenant, Action: action, Target: target, Detail: detail}
	// Without the request's cancellation: a client that hangs up does not erase its trace.
	if err := s.ctrl.AppendAudit(context.WithoutCancel(r.Context()), e); err != nil {
		s.log.Error("cannot write the audit log", "actor", actor, "action", action, "target", target, "err", err)
		return
	}
	s.log.Info("audit", "actor", actor, "remote", e.Remote, "tenant", tenant, "action", action, "target", target, "detail", detail)
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// auditTarget names what an API request acts on: its path below /api/v1/, for a creation
// with the "name" of its JSON body, and its query ("tenants/acme/peers/laptop",
// "tenants/acme/routes?prefix=10.0.0.0%2F8"). It reads the body and puts it back for the
// handler.
func auditTarget(r *http.Request) string {
	target := strings.TrimPrefix(r.URL.Path, "/api/v1/")
	if r.Method == http.MethodPost && r.Body != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
		var named struct {
			Name string `json:"name"`
		}
		if err == nil && json.Unmarshal(body, &named) == nil && named.Name != "" {
			target += "/" + named.Name
		}
	}
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	return target
}

// auditedAPI calls the API with r and records the change when it succeeded.
func (s *Server) auditedAPI(w http.ResponseWriter, r *http.Request, action string) {
	if action == "" {
		s.api.ServeHTTP(w, r)
		return
	}
	target := auditTarget(r)
	rec := &statusRecorder{ResponseWriter: w}
	s.api.ServeHTTP(rec, r)
	if rec.status == 0 || rec.status < 400 {
		s.Audit(r, action, target, "")
	}
}

// controlHandler is the API on the control socket, with every successful change audited as
// actor "cli".
func (s *Server) controlHandler() http.Handler {
	// The socket's file mode makes whoever reaches it the node's owner.
	cli := &Principal{Name: "cli", Role: RoleOwner}
	mux := http.NewServeMux()
	for _, rt := range apiRoutes() {
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			s.auditedAPI(w, r, rt.action)
		})
	}
	mux.Handle("/", s.api)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), cli)))
	})
}
