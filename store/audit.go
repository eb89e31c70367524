package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

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
	var tenant any
	if e.Tenant != "" && ValidateTenantName(e.Tenant) == nil {
		tenant = e.Tenant
	}
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_log (at, actor, remote, tenant, action, target, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, micros(at), actor, clean(e.Remote, maxAuditRemote), tenant, action,
			clean(e.Target, maxAuditTarget), clean(e.Detail, maxAuditDetail))
		if err != nil {
			return fmt.Errorf("store: append to the audit log: %w", err)
		}
		return nil
	})
}

// AuditQuery selects audit entries. Zero fields select everything.
type AuditQuery struct {
	// Tenant keeps the entries of one tenant.
	Tenant string
	// Actor keeps the entries of one actor.
	Actor string
	// Action keeps one action ("peer.add"), or every action starting with it when it ends in
	// '.' ("peer.").
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
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, MaxAuditPage)
	var where []string
	var args []any
	if q.Tenant != "" {
		where, args = append(where, "tenant = ?"), append(args, q.Tenant)
	}
	if q.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, q.Actor)
	}
	if len(q.Action) > 1 && strings.HasSuffix(q.Action, ".") {
		// substr instead of LIKE: action text may hold % and _.
		where, args = append(where, "substr(action, 1, ?) = ?"), append(args, len(q.Action), q.Action)
	} else if q.Action != "" {
		where, args = append(where, "action = ?"), append(args, q.Action)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, micros(q.Since))
	}
	if !q.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, micros(q.Until))
	}
	query := "SELECT id, at, actor, remote, coalesce(tenant, ''), action, target, detail FROM audit_log "
	if len(where) > 0 {
		query += "WHERE " + strings.Join(where, " AND ") + " "
	}
	query += "ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
	args = append(args, limit+1, max(q.Offset, 0))
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, false, fmt.Errorf("store: read the audit log: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Remote, &e.Tenant, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, false, fmt.Errorf("store: read the audit log: %w", err)
		}
		e.At = fromMicros(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: read the audit log: %w", err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}
