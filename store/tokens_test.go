package store

import (
	"context"
	"crypto/sha256"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAPITokens(t *testing.T) {
	ctx := context.Background()
	s, clock := openClocked(t)
	mustTenant(t, s, "acme")
	now := clock.Now()

	tok, secret, err := s.AddAPIToken(ctx, NewAPIToken{Name: "ci", Role: RoleTenantAdmin, Tenant: "acme", ExpiresAt: now.Add(90 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) != TokenLen || tok.TenantName != "acme" {
		t.Errorf("token %+v, secret %q", tok, secret)
	}
	var stored []byte
	if err := s.db.QueryRowContext(ctx, "SELECT token_hash FROM api_tokens WHERE id = ?", tok.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256([]byte(secret)); string(stored) != string(h[:]) {
		t.Error("stored hash is not the SHA-256 of the secret")
	}
	if _, _, err := s.AddAPIToken(ctx, NewAPIToken{Name: "monitor", Role: RoleViewer}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		nt   NewAPIToken
		kind error
		want string
	}{
		{NewAPIToken{Name: "ci", Role: RoleViewer}, ErrExists, `"ci" already exists`},
		{NewAPIToken{Name: "CI", Role: RoleViewer}, ErrInvalid, "API token name"},
		{NewAPIToken{Name: "x", Role: "admin"}, ErrInvalid, "unknown"},
		{NewAPIToken{Name: "x", Role: RoleTenantAdmin}, ErrInvalid, "needs a tenant"},
		{NewAPIToken{Name: "x", Role: RoleViewer, Tenant: "nope"}, ErrNotFound, "not found"},
		{NewAPIToken{Name: "x", Role: RoleViewer, ExpiresAt: now.Add(-time.Second)}, ErrInvalid, "not in the future"},
	} {
		_, _, err := s.AddAPIToken(ctx, tc.nt)
		wantErr(t, err, tc.kind, tc.want)
	}
	if n := countRows(t, s, "api_tokens"); n != 2 {
		t.Errorf("%d tokens after refused additions, want 2", n)
	}

	got, err := s.APITokenBySecret(ctx, secret)
	if err != nil || got.ID != tok.ID || got.Role != RoleTenantAdmin || got.TenantName != "acme" || got.Expired(now) || !got.Expired(now.Add(91*24*time.Hour)) {
		t.Fatalf("APITokenBySecret = %+v, %v", got, err)
	}
	for _, bad := range []string{"", secret[:10], "pgt_" + strings.Repeat("A", 43), strings.Replace(secret, "pgt_", "pgs_", 1)} {
		_, err := s.APITokenBySecret(ctx, bad)
		wantErr(t, err, ErrNotFound, "unknown API token")
	}
	if err := s.TouchAPIToken(ctx, tok.ID, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListAPITokens(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "ci" || list[0].LastUsed.IsZero() || list[1].LastUsed != (time.Time{}) || !list[1].ExpiresAt.IsZero() {
		t.Errorf("ListAPITokens = %+v, %v", list, err)
	}
	if _, err := s.RemoveAPIToken(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.APITokenBySecret(ctx, secret); err == nil {
		t.Error("removed token still works")
	}
	_, err = s.RemoveAPIToken(ctx, "ci")
	wantErr(t, err, ErrNotFound, "not found")

	// A tenant's tokens go with it.
	mustTenant(t, s, "beta")
	_, betaSecret, err := s.AddAPIToken(ctx, NewAPIToken{Name: "beta-ci", Role: RoleTenantAdmin, Tenant: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTenant(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.APITokenBySecret(ctx, betaSecret); err == nil {
		t.Error("token of a removed tenant still works")
	}
}

func TestDownloadLinks(t *testing.T) {
	ctx := context.Background()
	s, clock := openClocked(t)
	mustTenant(t, s, "acme")
	mustPeer(t, s, newPeer(t, "acme", "laptop"))
	now := clock.Now()

	for _, tc := range []struct {
		tenant, peer string
		expires      time.Time
		kind         error
		want         string
	}{
		{"acme", "laptop", now, ErrInvalid, "must expire after"},
		{"acme", "laptop", now.Add(8 * 24 * time.Hour), ErrInvalid, "at most 7 days"},
		{"acme", "nope", now.Add(time.Hour), ErrNotFound, `peer "nope" not found`},
		{"nope", "laptop", now.Add(time.Hour), ErrNotFound, `tenant "nope" not found`},
	} {
		_, _, err := s.CreateDownloadLink(ctx, tc.tenant, tc.peer, "root", now, tc.expires)
		wantErr(t, err, tc.kind, tc.want)
	}
	link, token, err := s.CreateDownloadLink(ctx, "acme", "laptop", "root", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "pgd_") || link.TenantName != "acme" || link.PeerName != "laptop" {
		t.Errorf("link %+v, token %q", link, token)
	}
	// Expired at its expiry.
	_, err = s.DownloadLinkByToken(ctx, token, now.Add(time.Hour))
	wantErr(t, err, ErrNotFound, "unknown, expired or already used")
	if err := s.UseDownloadLink(ctx, link.ID, now.Add(time.Hour)); err == nil {
		t.Error("expired link used")
	}

	got, err := s.DownloadLinkByToken(ctx, token, now.Add(time.Minute))
	if err != nil || got.ID != link.ID || got.PeerName != "laptop" {
		t.Fatalf("DownloadLinkByToken = %+v, %v", got, err)
	}
	// Only one of many concurrent uses succeeds.
	var wg sync.WaitGroup
	var mu sync.Mutex
	used := 0
	for range 8 {
		wg.Go(func() {
			if s.UseDownloadLink(ctx, link.ID, now.Add(time.Minute)) == nil {
				mu.Lock()
				used++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if used != 1 {
		t.Errorf("link used %d times", used)
	}
	_, err = s.DownloadLinkByToken(ctx, token, now.Add(time.Minute))
	wantErr(t, err, ErrNotFound, "already used")

	// A renamed peer keeps its links; a removed one loses them.
	_, token2, err := s.CreateDownloadLink(ctx, "acme", "laptop", "root", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RenamePeer(ctx, "acme", "laptop", "notebook"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.DownloadLinkByToken(ctx, token2, now); err != nil || got.PeerName != "notebook" {
		t.Errorf("link after rename = %+v, %v", got, err)
	}
	mustPeer(t, s, newPeer(t, "acme", "phone"))
	if _, _, err := s.CreateDownloadLink(ctx, "acme", "phone", "root", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemovePeer(ctx, "acme", "notebook"); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, "download_links"); n != 1 {
		t.Errorf("%d links after removing the peer, want 1 (the phone's)", n)
	}
	if n, err := s.PruneDownloadLinks(ctx, now.Add(2*time.Hour)); n != 1 || err != nil {
		t.Errorf("PruneDownloadLinks = %d, %v", n, err)
	}
}
