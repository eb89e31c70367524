package store

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	ctx := context.Background()
	s, clock := openClocked(t)
	a := mustAdmin(t, s, "root", RoleOwner, "")
	b := mustAdmin(t, s, "bob", RoleViewer, "")
	now := clock.Now()
	const idle = 12 * time.Hour

	_, _, err := s.CreateSession(ctx, NewSession{AdminID: a.ID, Now: now, ExpiresAt: now})
	wantErr(t, err, ErrInvalid, "expire after")
	_, _, err = s.CreateSession(ctx, NewSession{AdminID: 999, Now: now, ExpiresAt: now.Add(time.Hour)})
	wantErr(t, err, ErrNotFound, "not found")

	sess, token, err := s.CreateSession(ctx, NewSession{AdminID: a.ID, Now: now, ExpiresAt: now.Add(7 * 24 * time.Hour),
		RemoteAddr: "192.0.2.1", UserAgent: "Mozilla/5.0 " + strings.Repeat("x", 300) + "\n"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "pgs_") || len(token) != 47 {
		t.Errorf("token %q", token)
	}
	if len([]rune(sess.UserAgent)) != 256 || strings.Contains(sess.UserAgent, "\n") {
		t.Errorf("user agent not cut: %d characters", len([]rune(sess.UserAgent)))
	}
	// Only the hash is stored.
	var stored []byte
	if err := s.db.QueryRowContext(ctx, "SELECT token_hash FROM sessions WHERE id = ?", sess.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256([]byte(token)); string(stored) != string(h[:]) {
		t.Error("stored hash is not the SHA-256 of the token")
	}

	got, err := s.SessionByToken(ctx, token)
	if err != nil || got.ID != sess.ID || got.Admin.Name != "root" || got.RemoteAddr != "192.0.2.1" || !got.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Fatalf("SessionByToken = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "pgs_", token[:len(token)-1] + "A", token + "A", strings.ToUpper(token)} {
		if bad == token {
			continue
		}
		_, err := s.SessionByToken(ctx, bad)
		wantErr(t, err, ErrNotFound, "sign in again")
	}

	if err := s.TouchSession(ctx, sess.ID, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSession(ctx, sess.ID, now.Add(time.Minute)); err != nil { // never backwards
		t.Fatal(err)
	}
	if got, _ := s.SessionByToken(ctx, token); !got.LastSeen.Equal(now.Add(time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("last seen %v", got.LastSeen)
	}

	// A second session of root and one of bob; prune and delete per admin.
	_, token2, err := s.CreateSession(ctx, NewSession{AdminID: a.ID, Now: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	_, tokenB, err := s.CreateSession(ctx, NewSession{AdminID: b.ID, Now: now, ExpiresAt: now.Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountAdminSessions(ctx, a.ID, now.Add(time.Minute), idle); n != 2 || err != nil {
		t.Errorf("CountAdminSessions = %d, %v", n, err)
	}
	// At +12h30m: token2 is past its expiry, bob's idle since +0, root's first active at +1h.
	if n, err := s.PruneSessions(ctx, now.Add(12*time.Hour+30*time.Minute), idle); n != 2 || err != nil {
		t.Errorf("PruneSessions = %d, %v; want 2", n, err)
	}
	for _, tok := range []string{token2, tokenB} {
		if _, err := s.SessionByToken(ctx, tok); err == nil {
			t.Error("pruned session still there")
		}
	}
	if n, err := s.DeleteAdminSessions(ctx, a.ID); n != 1 || err != nil {
		t.Errorf("DeleteAdminSessions = %d, %v", n, err)
	}
	if _, err := s.SessionByToken(ctx, token); err == nil {
		t.Error("session of root survived DeleteAdminSessions")
	}

	// Removing an admin, changing its password or disabling it ends its sessions.
	for _, change := range []func() error{
		func() error { _, err := s.SetAdminPassword(ctx, "bob", "another good password"); return err },
		func() error { _, err := s.SetAdminDisabled(ctx, "bob", true); return err },
		func() error { _, err := s.RemoveAdmin(ctx, "bob"); return err },
	} {
		sess, tok, err := s.CreateSession(ctx, NewSession{AdminID: b.ID, Now: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SessionByToken(ctx, tok); err == nil {
			t.Errorf("session %d survived", sess.ID)
		}
	}
	if err := s.DeleteSession(ctx, 12345); err != nil {
		t.Errorf("DeleteSession of a missing session: %v", err)
	}
}

// TestAuthWritesKeepGeneration: admins, sessions, tokens and the audit log are not network
// state, so writing them does not make nodes reconcile.
func TestAuthWritesKeepGeneration(t *testing.T) {
	ctx := context.Background()
	s, clock := openClocked(t)
	mustTenant(t, s, "acme")
	before, err := s.Generation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := mustAdmin(t, s, "root", RoleOwner, "")
	now := clock.Now()
	sess, _, err := s.CreateSession(ctx, NewSession{AdminID: a.ID, Now: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSession(ctx, sess.ID, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddAPIToken(ctx, NewAPIToken{Name: "ci", Role: RoleViewer}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, AuditEntry{Actor: "root", Action: "test"}); err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Generation(ctx); after != before {
		t.Errorf("generation moved from %d to %d", before, after)
	}
}
