package webui

import (
	"context"
	"time"

	"github.com/popgate/popgate/store"
)

// Store is what the web server keeps in the store itself, without the controller: admins and
// their sign-in state, one-time-code secrets, sessions, API tokens, the audit log, and the
// pruning of expired download links. *store.Store is one. None of it is desired network
// state, so none of it goes to the data plane.
type Store interface {
	adminStore
	sessionStore
	tokenStore
	auditStore
	// PruneDownloadLinks deletes the links expired at now.
	PruneDownloadLinks(ctx context.Context, now time.Time) (int, error)
}

var _ Store = (*store.Store)(nil)

// adminStore keeps the admins, their passwords and second factors.
type adminStore interface {
	adminLister
	Admin(ctx context.Context, name string) (store.Admin, error)
	AdminByID(ctx context.Context, id int64) (store.Admin, error)
	AddAdmin(ctx context.Context, na store.NewAdmin) (store.Admin, error)
	RemoveAdmin(ctx context.Context, name string) (store.Admin, error)
	SetAdminPassword(ctx context.Context, name, password string) (store.Admin, error)
	SetAdminRole(ctx context.Context, name, role, tenant string) (store.Admin, error)
	SetAdminDisabled(ctx context.Context, name string, disabled bool) (store.Admin, error)
	DisableAdminTOTP(ctx context.Context, name string) (store.Admin, error)
	// CheckAdminPassword costs one argon2id hash, also for an unknown name: callers bound
	// how many run at once (withHashSlot).
	CheckAdminPassword(ctx context.Context, name, password string) (store.Admin, bool, error)
	RecordSignInFailure(ctx context.Context, id int64) (store.Admin, error)
	RecordSignIn(ctx context.Context, id int64, now time.Time) error
	SetAdminTOTPPending(ctx context.Context, id int64, secret []byte) error
	AdminTOTPSecret(ctx context.Context, id int64, pending bool) ([]byte, error)
	EnableAdminTOTP(ctx context.Context, id int64, step int64) error
	UseAdminTOTPStep(ctx context.Context, id int64, step int64) (bool, error)
}

// sessionStore keeps the browser sessions.
type sessionStore interface {
	CreateSession(ctx context.Context, ns store.NewSession) (store.Session, string, error)
	SessionByToken(ctx context.Context, token string) (store.Session, error)
	TouchSession(ctx context.Context, id int64, now time.Time) error
	DeleteSession(ctx context.Context, id int64) error
	DeleteAdminSessions(ctx context.Context, adminID int64) (int, error)
	CountAdminSessions(ctx context.Context, adminID int64, now time.Time, idle time.Duration) (int, error)
	PruneSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error)
}

// tokenStore keeps the API tokens.
type tokenStore interface {
	tokenManager
	APITokenBySecret(ctx context.Context, secret string) (store.APIToken, error)
	TouchAPIToken(ctx context.Context, id int64, now time.Time) error
}

// auditStore keeps the audit log.
type auditStore interface {
	auditReader
	AppendAudit(ctx context.Context, e store.AuditEntry) error
}

// addAdmin adds an admin with password, or (password "") a generated one, which it returns;
// nobody can see the password again.
func addAdmin(ctx context.Context, st adminManager, na store.NewAdmin) (store.Admin, string, error) {
	generated := ""
	if na.Password == "" {
		var err error
		if generated, err = store.GeneratePassword(); err != nil {
			return store.Admin{}, "", err
		}
		na.Password = generated
	}
	a, err := st.AddAdmin(ctx, na)
	if err != nil {
		return store.Admin{}, "", err
	}
	return a, generated, nil
}

// setAdminPassword sets the password of admin name, or (password "") a generated one, which it
// returns, and ends the admin's sessions. The server forgets the sign-in failures counted
// against the old password, so this also lifts the throttle of every address on this admin.
func setAdminPassword(ctx context.Context, st adminManager, name, password string) (store.Admin, string, error) {
	generated := ""
	if password == "" {
		var err error
		if generated, err = store.GeneratePassword(); err != nil {
			return store.Admin{}, "", err
		}
		password = generated
	}
	a, err := st.SetAdminPassword(ctx, name, password)
	if err != nil {
		return store.Admin{}, "", err
	}
	return a, generated, nil
}
