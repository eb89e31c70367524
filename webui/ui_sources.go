package webui

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// The pages also show and change what the auth side keeps: admins and the audit log (in the
// store), one-time download links, and the peer's name and expiry (the controller). These
// interfaces are what the pages use of them, so that tests can stand in for a part.

// adminLister lists the admins (the admins page, owners only).
type adminLister interface {
	ListAdmins(ctx context.Context) ([]store.Admin, error)
}

// auditReader reads the audit log back (the audit page): entries newest first, and whether
// more follow.
type auditReader interface {
	ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, bool, error)
}

// linkStore keeps one-time links to a peer's config.
type linkStore interface {
	// CreateDownloadLink returns a new link to the config of peer of tenant, valid from now
	// for validFor, with its secret token.
	CreateDownloadLink(ctx context.Context, tenant, peer, createdBy string, now time.Time, validFor time.Duration) (store.DownloadLink, string, error)
	// DownloadLink returns the link of token still usable at now, without using it. The
	// error wraps store.ErrNotFound for an unknown, used or expired token.
	DownloadLink(ctx context.Context, token string, now time.Time) (store.DownloadLink, error)
	// RedeemDownloadLink uses the link of token up and returns it with the config for
	// region ("": the node's own); a second call fails like an unknown token, a region the
	// tenant may not use (store.ErrInvalid) leaves the link usable.
	RedeemDownloadLink(ctx context.Context, token string, now time.Time, region string) (store.DownloadLink, string, error)
}

// peerLifecycle renames peers and sets when they expire (nil: never).
type peerLifecycle interface {
	RenamePeer(ctx context.Context, tenant, old, new string) (control.PeerInfo, error)
	SetPeerExpiry(ctx context.Context, tenant, name string, at *time.Time) (control.PeerInfo, error)
}

var (
	_ adminLister   = (*store.Store)(nil)
	_ auditReader   = (*store.Store)(nil)
	_ linkStore     = (*control.Controller)(nil)
	_ peerLifecycle = (*control.Controller)(nil)
)

// sources replace parts of what the pages get from the store and the controller (tests); nil
// fields keep it.
type sources struct {
	Admins    adminLister
	AuditLog  auditReader
	Links     linkStore
	Lifecycle peerLifecycle
}

// setSources replaces the sources s names. Call it before Routes.
func (u *UI) setSources(s sources) {
	if s.Admins != nil {
		u.admins = s.Admins
	}
	if s.AuditLog != nil {
		u.auditLog = s.AuditLog
	}
	if s.Links != nil {
		u.links = s.Links
	}
	if s.Lifecycle != nil {
		u.lifecycle = s.Lifecycle
	}
}

// findSources takes each source the backend and the store provide.
func (u *UI) findSources(b uiBackend, st adminLister) {
	u.admins = st
	u.auditLog, _ = st.(auditReader)
	u.links, _ = b.(linkStore)
	u.lifecycle, _ = b.(peerLifecycle)
}

// SetAuditor makes a the pages' Auditor (see AuditorSetter): the server records the pages'
// changes with the actor, address and tenant of each request. Call it before Routes.
func (u *UI) SetAuditor(a Auditor) {
	if a != nil {
		u.audit = a
	}
}

var _ AuditorSetter = (*UI)(nil)

// record puts an event that changes nothing in the store (a config shown) in the audit log;
// changes the store records itself. The Auditor takes the tenant from the route's {tenant};
// routes that carry it elsewhere (a form field, a link) set it first.
func (u *UI) record(r *http.Request, tenant, action, target, detail string) {
	if r.PathValue("tenant") == "" && tenant != "" {
		r.SetPathValue("tenant", tenant)
	}
	u.audit.Audit(r, action, target, detail)
}

// logAuditor writes audit entries to the log: the Auditor until the server hands over its own.
type logAuditor struct{ log *slog.Logger }

func (a logAuditor) Audit(r *http.Request, action, target, detail string) {
	actor := ""
	if p := PrincipalFrom(r.Context()); p != nil {
		actor = p.Name
	}
	a.log.Info("audit", "actor", actor, "remote", r.RemoteAddr, "tenant", r.PathValue("tenant"),
		"action", action, "target", target, "detail", detail)
}
