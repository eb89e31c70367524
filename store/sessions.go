package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Session is a signed-in browser of an admin. The secret token is only in the browser's
// cookie; the database keeps its SHA-256.
type Session struct {
	ID int64
	// Admin is the admin as stored when the session was read: role, tenant and disabled are
	// current.
	Admin     Admin
	CreatedAt time.Time
	LastSeen  time.Time
	// ExpiresAt ends the session whatever its activity.
	ExpiresAt  time.Time
	RemoteAddr string
	UserAgent  string
}

// NewSession is what CreateSession needs. The caller's clock sets the times, so that the
// web server decides expiry with one clock.
type NewSession struct {
	AdminID    int64
	Now        time.Time
	ExpiresAt  time.Time // after Now
	RemoteAddr string    // cut to 64 characters
	UserAgent  string    // cut to 256 characters
}

// sessionPrefix starts every session token, so that a leaked one is recognisable.
const sessionPrefix = "pgs_"

// CreateSession stores a new session and returns it with its secret token, which only the
// caller sees. The error wraps ErrNotFound when the admin does not exist and ErrInvalid when
// ExpiresAt is not after Now.
func (s *Store) CreateSession(ctx context.Context, ns NewSession) (Session, string, error) {
	now, expires := fromMicros(micros(ns.Now)), fromMicros(micros(ns.ExpiresAt))
	if !expires.After(now) {
		return Session{}, "", errorf(ErrInvalid, "a session must expire after it starts")
	}
	token, hash, err := newSecret(sessionPrefix)
	if err != nil {
		return Session{}, "", err
	}
	sess := Session{CreatedAt: now, LastSeen: now, ExpiresAt: expires,
		RemoteAddr: clean(ns.RemoteAddr, 64), UserAgent: clean(ns.UserAgent, 256)}
	err = s.writeAuth(ctx, func(tx *sql.Tx) error {
		var err error
		if sess.Admin, err = getAdmin(ctx, tx, "WHERE a.id = ?", ns.AdminID, fmt.Sprintf("#%d", ns.AdminID)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO sessions (token_hash, admin_id, created_at, last_seen, expires_at, remote_addr, user_agent)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, hash[:], ns.AdminID, micros(now), micros(now), micros(expires), sess.RemoteAddr, sess.UserAgent)
		if err != nil {
			return fmt.Errorf("store: create session: %w", err)
		}
		sess.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return Session{}, "", err
	}
	return sess, token, nil
}

// errNoSession is what every failed session lookup returns: which part was wrong is nobody's
// business.
func errNoSession() error {
	return errorf(ErrNotFound, "no such session: sign in again")
}

// SessionByToken returns the session whose secret token is token, with its admin. It does not
// check expiry: the caller's clock decides. The error wraps ErrNotFound for an unknown token.
func (s *Store) SessionByToken(ctx context.Context, token string) (Session, error) {
	if len(token) != len(sessionPrefix)+43 {
		return Session{}, errNoSession()
	}
	hash := sha256.Sum256([]byte(token))
	var sess Session
	var stored []byte
	var created, lastSeen, expires int64
	var err error
	sess.Admin, err = scanAdmin(func(dest ...any) error {
		return s.db.QueryRowContext(ctx, `SELECT s.id, s.token_hash, s.created_at, s.last_seen, s.expires_at, s.remote_addr, s.user_agent, `+
			adminColumns+`FROM sessions AS s JOIN admins AS a ON a.id = s.admin_id LEFT JOIN tenants AS t ON t.id = a.tenant_id
			WHERE s.token_hash = ?`, hash[:]).
			Scan(append([]any{&sess.ID, &stored, &created, &lastSeen, &expires, &sess.RemoteAddr, &sess.UserAgent}, dest...)...)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, errNoSession()
	}
	if err != nil {
		return Session{}, fmt.Errorf("store: read session: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, hash[:]) != 1 { // the index found it; say so in constant time
		return Session{}, errNoSession()
	}
	sess.CreatedAt, sess.LastSeen, sess.ExpiresAt = fromMicros(created), fromMicros(lastSeen), fromMicros(expires)
	return sess, nil
}

// TouchSession sets the last activity of session id to now (never backwards).
func (s *Store) TouchSession(ctx context.Context, id int64, now time.Time) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE sessions SET last_seen = max(last_seen, ?) WHERE id = ?", micros(now), id)
		if err != nil {
			return fmt.Errorf("store: update session: %w", err)
		}
		return nil
	})
}

// DeleteSession ends session id; ending one that is gone is no error.
func (s *Store) DeleteSession(ctx context.Context, id int64) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE id = ?", id); err != nil {
			return fmt.Errorf("store: delete session: %w", err)
		}
		return nil
	})
}

// DeleteAdminSessions ends every session of admin id and returns how many there were.
func (s *Store) DeleteAdminSessions(ctx context.Context, adminID int64) (int, error) {
	var n int64
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE admin_id = ?", adminID)
		if err != nil {
			return fmt.Errorf("store: delete sessions: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// CountAdminSessions returns the number of sessions of admin id that are live at now: not
// past their expiry and active within idle.
func (s *Store) CountAdminSessions(ctx context.Context, adminID int64, now time.Time, idle time.Duration) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sessions WHERE admin_id = ? AND expires_at > ? AND last_seen > ?",
		adminID, micros(now), micros(now.Add(-idle))).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count sessions: %w", err)
	}
	return n, nil
}

// PruneSessions deletes the sessions that are dead at now, past their expiry or idle longer
// than idle, and returns how many.
func (s *Store) PruneSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error) {
	var n int64
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at <= ? OR last_seen <= ?",
			micros(now), micros(now.Add(-idle)))
		if err != nil {
			return fmt.Errorf("store: prune sessions: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
