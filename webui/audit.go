package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/popgate/popgate/store"
)

// Changes are recorded in the audit log by the store, in the transaction that makes them
// (store.WithActor says who): the web server only puts the actor into each request's
// context. What changes nothing the store keeps is recorded here: sign-ins and sign-outs
// (auth*.go, session.go), the pages' reads of a private key (a config shown or downloaded),
// and refused attempts (403), rate-limited.

// withActor puts the request's address into its context as the store's actor, named
// "anonymous" until WithPrincipal names it.
func withActor(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := store.WithActor(r.Context(), store.Actor{Name: "anonymous", Remote: remoteAddr(r)})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Audit records that the request's principal did action (a dotted verb: "peer.config.show")
// to target (one of the store's targets: store.PeerTarget(…)) with detail (free text, never
// a secret), from the request's address, for the tenant of the route's {tenant} path value
// or else the principal's. It is for what changes nothing in the store: the store records
// its changes itself. A failure to write is logged, not returned: what it records has
// happened.
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
	s.appendAudit(r.Context(), store.AuditEntry{At: s.now(), Actor: actor, Remote: remoteAddr(r), Tenant: tenant,
		Action: action, Target: target, Detail: detail})
}

// appendAudit writes e, logging a failure.
func (s *Server) appendAudit(ctx context.Context, e store.AuditEntry) {
	// Without the request's cancellation: a client that hangs up does not erase its trace.
	if err := s.store.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("cannot write the audit log", "actor", e.Actor, "action", e.Action, "target", e.Target, "err", err)
		return
	}
	s.log.Info("audit", "actor", e.Actor, "remote", e.Remote, "tenant", e.Tenant, "action", e.Action, "target", e.Target, "detail", e.Detail)
}

// deniedEvery bounds the audit entries of refused attempts: one per actor and operation
// (method and route) in this interval; the refusals in between are counted, and the count
// goes into the next entry, or into an entry of its own when the interval has passed
// (housekeep). So a principal hammering a route it may not use costs one entry a minute
// per route, and the routes and principals are few.
const deniedEvery = time.Minute

// maxDenials bounds the actors and operations the rate limit remembers; beyond it, refusals
// of new ones are counted together under one key until housekeeping makes room.
const maxDenials = 10_000

// denialKey is what the rate limit of refusals counts by.
type denialKey struct{ actor, op string }

// denialWindow is one actor's refusals of one operation since the last entry.
type denialWindow struct {
	since time.Time // the last entry
	more  int       // refusals since, not recorded
	entry store.AuditEntry
}

// denials rate-limits the audit entries of refused attempts.
type denials struct {
	mu   sync.Mutex
	seen map[denialKey]*denialWindow // guarded by mu
}

// note counts a refusal of op by actor at now and returns whether it gets an entry (the
// first in deniedEvery), and how many refusals went unrecorded since the last entry, made
// at since.
func (d *denials) note(k denialKey, now time.Time, e store.AuditEntry) (record bool, more int, since time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seen = map[denialKey]*denialWindow{}
	}
	w := d.seen[k]
	if w == nil && len(d.seen) >= maxDenials {
		k = denialKey{"(many)", "(many)"}
		w = d.seen[k]
	}
	if w != nil && now.Sub(w.since) < deniedEvery {
		w.more++
		w.entry = e
		return false, 0, time.Time{}
	}
	if w != nil {
		more, since = w.more, w.since
	}
	d.seen[k] = &denialWindow{since: now, entry: e}
	return true, more, since
}

// expired removes the windows older than deniedEvery at now and returns the last refusal of
// each that has unrecorded ones, with their count in its detail.
func (d *denials) expired(now time.Time) []store.AuditEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []store.AuditEntry
	for k, w := range d.seen {
		if now.Sub(w.since) < deniedEvery {
			continue
		}
		if w.more > 0 {
			e := w.entry
			e.At = now
			e.Detail = moreDenied(e.Detail, w.more, w.since)
			out = append(out, e)
		}
		delete(d.seen, k)
	}
	return out
}

// moreDenied adds the count of unrecorded refusals to an entry's detail.
func moreDenied(detail string, n int, since time.Time) string {
	return fmt.Sprintf("%s (and %d more denied since %s)", detail, n, since.UTC().Format(time.RFC3339))
}

// Denied records in the audit log that the request's principal was refused (403) with why,
// rate-limited (deniedEvery). The action is "denied"; the target is what the route names
// (a peer, a tenant, an admin, a token), the tenant the principal's own, so that a tenant's
// audit log never shows who tried to reach it from another tenant. A request without a
// principal (a cross-origin refusal) is only logged.
func (s *Server) Denied(r *http.Request, why string) {
	p := PrincipalFrom(r.Context())
	op := r.Method + " " + r.URL.Path
	if r.Pattern != "" {
		op = r.Pattern
	}
	if p == nil {
		s.log.Info("request refused", "remote", remoteAddr(r), "op", op, "why", why)
		return
	}
	now := s.now()
	e := store.AuditEntry{At: now, Actor: p.Name, Remote: remoteAddr(r), Tenant: p.Tenant, Action: "denied",
		Target: pathTarget(r), Detail: r.Method + " " + r.URL.Path + ": " + why}
	record, more, since := s.denials.note(denialKey{p.Name, op}, now, e)
	if !record {
		return
	}
	if more > 0 {
		e.Detail = moreDenied(e.Detail, more, since)
	}
	s.appendAudit(r.Context(), e)
}

// flushDenials writes the counts of refusals that no later entry carried.
func (s *Server) flushDenials(ctx context.Context, now time.Time) {
	for _, e := range s.denials.expired(now) {
		s.appendAudit(ctx, e)
	}
}

// pathTarget names what the request's route acts on, in the store's target format: its
// {peer}, {admin} or {token}, else its {tenant}, else "".
func pathTarget(r *http.Request) string {
	t := r.PathValue("tenant")
	switch {
	case t != "" && r.PathValue("peer") != "":
		return store.PeerTarget(t, r.PathValue("peer"))
	case t != "" && r.URL.Query().Get("prefix") != "":
		if p, err := netip.ParsePrefix(r.URL.Query().Get("prefix")); err == nil {
			return store.RouteTarget(t, p)
		}
		return store.TenantTarget(t)
	case t != "":
		return store.TenantTarget(t)
	case r.PathValue("admin") != "":
		return store.AdminTarget(r.PathValue("admin"))
	case r.PathValue("token") != "":
		return store.TokenTarget(r.PathValue("token"))
	}
	return ""
}

// controlHandler is the API on the control socket, every request made by the principal and
// actor "cli".
func (s *Server) controlHandler() http.Handler {
	// The socket's file mode makes whoever reaches it the node's owner.
	cli := &Principal{Name: "cli", Role: RoleOwner}
	return withActor(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.api.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), cli)))
	}))
}
