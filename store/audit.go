package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"
)

// Every change to what admins manage is recorded in the audit log by the store method that
// makes it, in the transaction that makes it: the change and its entry commit together or
// not at all (a full disk, a crash), and the entry says what the method did, from its own
// values, not what a request asked for. Who made the change comes from the context
// (WithActor). Sign-ins, sign-outs and reads change nothing an admin manages; their callers
// record them with AppendAudit.

// auditVersion is the schema version that added the audit log.
const auditVersion = 3

// Actor is who makes a change, as the audit log records it.
type Actor struct {
	// Name is the admin's name, "token:NAME" for an API token, "cli" for the control
	// socket. Empty: "unknown".
	Name string
	// Remote is the client's IP address, or "control socket".
	Remote string
}

type actorKey struct{}

// WithActor returns ctx carrying a: the store's writes made with it record a as who made
// the change.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the Actor ctx carries; the zero Actor when it carries none.
func ActorFrom(ctx context.Context) Actor {
	a, _ := ctx.Value(actorKey{}).(Actor)
	return a
}

// Targets name what an entry's action was done to, one format for every caller:
// "KIND:NAME", where the name of something that belongs to a tenant starts with the
// tenant ("peer:acme/laptop", "route:acme/10.0.0.0/8"). Tenant, peer, admin and token names
// hold neither ':' nor '/', so a target reads back unambiguously.

// TenantTarget names tenant t: "tenant:acme".
func TenantTarget(t string) string { return "tenant:" + t }

// PeerTarget names peer p of tenant t: "peer:acme/laptop".
func PeerTarget(t, p string) string { return "peer:" + t + "/" + p }

// RouteTarget names the route for prefix of tenant t: "route:acme/10.0.0.0/8".
func RouteTarget(t string, prefix netip.Prefix) string { return "route:" + t + "/" + prefix.String() }

// PolicyTarget names the policy of tenant t: "policy:acme".
func PolicyTarget(t string) string { return "policy:" + t }

// AdminTarget names admin a: "admin:alice".
func AdminTarget(a string) string { return "admin:" + a }

// TokenTarget names API token k: "token:ci".
func TokenTarget(k string) string { return "token:" + k }

// SettingTarget names node setting key: "setting:web.public_url".
func SettingTarget(key string) string { return "setting:" + key }

// PolicyDigest identifies a policy text in the audit log: the first 12 hex digits of its
// SHA-256 (sha256sum FILE | cut -c1-12 gives the same).
func PolicyDigest(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:6])
}

// AuditEntry is one line of the audit log: who did what, when, from where.
type AuditEntry struct {
	ID int64
	At time.Time
	// Actor is the admin's name, "token:NAME" for an API token, "cli" for the control socket,
	// or the name someone tried to sign in as.
	Actor string
	// Remote is the client's IP address, or "control socket".
	Remote string
	// Tenant is the tenant the action concerned, "" for none.
	Tenant string
	// Action is a dotted verb such as "signin", "signin.failed", "peer.add".
	Action string
	// Target names what was acted on, e.g. "acme/laptop".
	Target string
	// Detail is free text; never a secret.
	Detail string
}

// Limits of audit entries; AppendAudit cuts longer values.
const (
	maxAuditActor  = 128
	maxAuditRemote = 64
	maxAuditAction = 64
	maxAuditTarget = 256
	maxAuditDetail = 1024
)

// AppendAudit adds e to the audit log; e.ID is ignored, and a zero e.At is the store's clock.
// Values are cut to the column limits and control characters replaced, so that an entry made
// from hostile input is still stored (and cannot forge a line of its own when printed). A
// tenant that is not a valid tenant name is dropped. The audit log cannot be changed or
// deleted.
func (s *Store) AppendAudit(ctx context.Context, e AuditEntry) error {
	at := e.At
	if at.IsZero() {
		at = s.now()
	}
	actor := clean(e.Actor, maxAuditActor)
	if actor == "" {
		actor = "unknown"
	}
	action := clean(e.Action, maxAuditAction)
	if action == "" {
		return errorf(ErrInvalid, "an audit entry needs an action")
	}
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		return insertAudit(ctx, tx, at, actor, e.Remote, e.Tenant, action, e.Target, e.Detail)
	})
}

// insertAudit adds one entry in tx, cut and cleaned as AppendAudit describes.
func insertAudit(ctx context.Context, tx *sql.Tx, at time.Time, actor, remote, tenant, action, target, detail string) error {
	var tenantArg any
	if tenant != "" && ValidateTenantName(tenant) == nil {
		tenantArg = tenant
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO audit_log (at, actor, remote, tenant, action, target, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, micros(at), actor, clean(remote, maxAuditRemote), tenantArg, action,
		clean(target, maxAuditTarget), clean(detail, maxAuditDetail))
	if err != nil {
		return fmt.Errorf("store: append to the audit log: %w", err)
	}
	return nil
}

// logChange records, inside tx (the write transaction that makes the change), that ctx's
// actor did action to target of tenant ("" for none) with detail, at the store's clock. An
// error fails the transaction: the change is not made without its entry. Writes of the
// desired state must call it once they changed something (see write).
func (s *Store) logChange(ctx context.Context, tx *sql.Tx, tenant, action, target, detail string) error {
	if s.version < auditVersion {
		return nil // a test's older schema: no audit log yet
	}
	a := ActorFrom(ctx)
	actor := clean(a.Name, maxAuditActor)
	if actor == "" {
		actor = "unknown"
	}
	if err := insertAudit(ctx, tx, s.now(), actor, a.Remote, tenant, action, target, detail); err != nil {
		return err
	}
	s.logged = true
	return nil
}

// AuditQuery selects audit entries. Zero fields select everything.
type AuditQuery struct {
	// Tenant keeps the entries of one tenant.
	Tenant string
	// Actor keeps the entries of one actor.
	Actor string
	// Action keeps one action ("peer.add") and the actions below it ("peer.config" keeps
	// peer.config.show too), so that a bare word keeps its family ("route": route.add,
	// route.remove); ending in '.' ("peer.") keeps only the actions below it.
	Action string
	// Since and Until keep entries at or after Since and before Until.
	Since, Until time.Time
	// Offset skips that many entries of the answer; Limit returns at most that many
	// (default 50, at most MaxAuditPage).
	Offset, Limit int
}

// MaxAuditPage is the most entries ListAudit returns at once.
const MaxAuditPage = 1000

// ListAudit returns the entries q selects, newest first, and whether there are more after
// them (for paging with q.Offset).
func (s *Store) ListAudit(ctx context.Context, q AuditQuery) ([]AuditEntry, bool, error) {
	var f logFilter
	f.equal("tenant", q.Tenant)
	f.equal("actor", q.Actor)
	f.family("action", q.Action)
	f.window(q.Since, q.Until)
	return logPage(ctx, s.db, auditSelect, f, q.Offset, q.Limit, MaxAuditPage, "audit log", scanAuditEntry)
}

const auditSelect = "SELECT id, at, actor, remote, coalesce(tenant, ''), action, target, detail FROM audit_log "

func scanAuditEntry(scan func(...any) error) (AuditEntry, error) {
	var e AuditEntry
	var at int64
	if err := scan(&e.ID, &at, &e.Actor, &e.Remote, &e.Tenant, &e.Action, &e.Target, &e.Detail); err != nil {
		return e, fmt.Errorf("store: read the audit log: %w", err)
	}
	e.At = fromMicros(at)
	return e, nil
}
