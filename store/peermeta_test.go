package store

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRenamePeer(t *testing.T) {
	ctx := context.Background()
	s, _ := openClocked(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "beta")
	laptop := mustPeer(t, s, NewPeer{TenantName: "acme", Name: "laptop", PrivateKey: ptr(mustKey(t)), Groups: []string{"eng"}})
	mustPeer(t, s, newPeer(t, "acme", "phone"))
	mustPeer(t, s, newPeer(t, "beta", "notebook"))
	g0, _ := s.Generation(ctx)

	for _, tc := range []struct {
		tenant, old, new string
		kind             error
		want             string
	}{
		{"acme", "laptop", "phone", ErrExists, `peer "phone" already exists in tenant "acme"`},
		{"acme", "laptop", "bad name", ErrInvalid, "peer name"},
		{"acme", "laptop", strings.Repeat("x", 65), ErrInvalid, "at most 64"},
		{"acme", "nope", "other", ErrNotFound, `peer "nope" not found`},
		{"nope", "laptop", "other", ErrNotFound, `tenant "nope" not found`},
	} {
		_, err := s.RenamePeer(ctx, tc.tenant, tc.old, tc.new)
		wantErr(t, err, tc.kind, tc.want)
	}
	if g, _ := s.Generation(ctx); g != g0 {
		t.Errorf("refused renames moved the generation %d → %d", g0, g)
	}
	// A name used in another tenant is free here.
	p, err := s.RenamePeer(ctx, "acme", "laptop", "notebook")
	if err != nil || p.Name != "notebook" || p.ID != laptop.ID || p.PublicKey != laptop.PublicKey || p.IPv4 != laptop.IPv4 {
		t.Fatalf("RenamePeer = %+v, %v", p, err)
	}
	if got, err := s.Peer(ctx, "acme", "notebook"); err != nil || len(got.Groups) != 1 || got.Groups[0] != "eng" {
		t.Errorf("renamed peer = %+v, %v", got, err)
	}
	if _, err := s.Peer(ctx, "acme", "laptop"); err == nil {
		t.Error("old name still found")
	}
	if g, _ := s.Generation(ctx); g <= g0 {
		t.Error("rename did not move the generation")
	}
	if _, err := s.RenamePeer(ctx, "acme", "notebook", "notebook"); err != nil {
		t.Errorf("rename to the same name: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestPeerExpiry(t *testing.T) {
	ctx := context.Background()
	s, clock := openClocked(t)
	mustTenant(t, s, "acme")
	mustPeer(t, s, newPeer(t, "acme", "laptop"))
	mustPeer(t, s, newPeer(t, "acme", "phone"))
	now := clock.Now()

	at := now.Add(48 * time.Hour)
	p, err := s.SetPeerExpiry(ctx, "acme", "laptop", &at)
	if err != nil || !p.ExpiresAt.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("SetPeerExpiry = %+v, %v", p, err)
	}
	if p.Expired(now) || !p.Expired(at) || !p.Expired(at.Add(time.Second)) {
		t.Error("Expired is wrong")
	}
	ps, _ := s.ListPeers(ctx, "acme")
	if !ps[0].ExpiresAt.Equal(p.ExpiresAt) || !ps[1].ExpiresAt.IsZero() || ps[1].Expired(now.Add(1000*time.Hour)) {
		t.Errorf("listed expiry: %v, %v", ps[0].ExpiresAt, ps[1].ExpiresAt)
	}
	if p, err := s.SetPeerExpiry(ctx, "acme", "laptop", nil); err != nil || !p.ExpiresAt.IsZero() {
		t.Errorf("clearing the expiry = %+v, %v", p, err)
	}
	old := time.Unix(0, 0)
	_, err = s.SetPeerExpiry(ctx, "acme", "laptop", &old)
	wantErr(t, err, ErrInvalid, "before 1970")
	_, err = s.SetPeerExpiry(ctx, "acme", "nope", nil)
	wantErr(t, err, ErrNotFound, "not found")
}
