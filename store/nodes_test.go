package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestParseNodeRoles(t *testing.T) {
	for in, want := range map[string]string{"pop": "pop", "exit": "exit", "exit,pop": "pop,exit", "pop, exit": "pop,exit", "pop,pop": "pop"} {
		if got, err := ParseNodeRoles(in); err != nil || got != want {
			t.Errorf("ParseNodeRoles(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "controller", "pop,", "pop,exit,x"} {
		if _, err := ParseNodeRoles(in); err == nil {
			t.Errorf("ParseNodeRoles(%q): no error", in)
		}
	}
}

func joinToken(t *testing.T, s *Store, nt NewJoinToken) (JoinToken, [JoinSecretLen]byte) {
	t.Helper()
	tok, secret, err := s.CreateJoinToken(WithActor(context.Background(), Actor{Name: "root"}), nt)
	if err != nil {
		t.Fatal(err)
	}
	return tok, secret
}

func TestJoinTokens(t *testing.T) {
	ctx := WithActor(context.Background(), Actor{Name: "root"})
	clock := newClock()
	s := openOpts(t, Options{Path: t.TempDir() + "/popgate.db", Now: clock.Now})
	soon := clock.Now().Add(time.Hour)

	tok, secret := joinToken(t, s, NewJoinToken{Roles: "pop", Region: "fra", ExpiresAt: soon})
	if tok.CreatedBy != "root" {
		t.Errorf("CreatedBy %q", tok.CreatedBy)
	}
	var hash []byte
	if err := s.db.QueryRow("SELECT secret_hash FROM join_tokens WHERE id = ?", tok.ID).Scan(&hash); err != nil || string(hash) == string(secret[:]) {
		t.Fatalf("stored %x, %v: want the hash of the secret", hash, err)
	}
	gen0, _ := s.Generation(ctx)

	// A forged secret, an unknown id.
	forged := secret
	forged[0] ^= 1
	_, err := s.RedeemJoinToken(ctx, Redemption{TokenID: tok.ID, Secret: forged, Name: "p1", Pin: [32]byte{1}})
	wantErr(t, err, ErrTokenUnknown, "does not know this join token")
	_, err = s.RedeemJoinToken(ctx, Redemption{TokenID: 99, Secret: secret, Name: "p1", Pin: [32]byte{1}})
	wantErr(t, err, ErrTokenUnknown, "does not know this join token")
	// No name.
	_, err = s.RedeemJoinToken(ctx, Redemption{TokenID: tok.ID, Secret: secret, Pin: [32]byte{1}})
	wantErr(t, err, ErrInvalid, "give it one (--node-name)")

	n, err := s.RedeemJoinToken(ctx, Redemption{TokenID: tok.ID, Secret: secret, Name: "p1", Pin: [32]byte{1},
		BackboneEndpoint: "192.0.2.1:51821", BackbonePublicKey: Key{9}, Version: "v1.2"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Roles != "pop" || n.Region != "fra" || n.Name != "p1" || n.ID == 0 {
		t.Errorf("node %+v", n)
	}
	if gen, _ := s.Generation(ctx); gen <= gen0 {
		t.Errorf("a join left the generation at %d", gen)
	}

	// Used.
	_, err = s.RedeemJoinToken(ctx, Redemption{TokenID: tok.ID, Secret: secret, Name: "p2", Pin: [32]byte{2}})
	wantErr(t, err, ErrTokenUsed, `by node "p1"`)

	// Expired.
	tok2, secret2 := joinToken(t, s, NewJoinToken{Roles: "exit", ExpiresAt: clock.Now().Add(time.Minute)})
	clock.Advance(time.Minute)
	_, err = s.RedeemJoinToken(ctx, Redemption{TokenID: tok2.ID, Secret: secret2, Name: "x1", Pin: [32]byte{2}})
	wantErr(t, err, ErrTokenExpired, "expired at")

	// Name taken, pin taken, name the token does not allow: nothing stored, the token stays usable.
	tok3, secret3 := joinToken(t, s, NewJoinToken{Roles: "pop,exit", ExpiresAt: clock.Now().Add(time.Hour)})
	_, err = s.RedeemJoinToken(ctx, Redemption{TokenID: tok3.ID, Secret: secret3, Name: "p1", Pin: [32]byte{3}})
	wantErr(t, err, ErrExists, `a node named "p1" has joined already`)
	_, err = s.RedeemJoinToken(ctx, Redemption{TokenID: tok3.ID, Secret: secret3, Name: "p3", Pin: [32]byte{1}})
	wantErr(t, err, ErrExists, `joined already as node "p1"`)
	tok4, secret4 := joinToken(t, s, NewJoinToken{Roles: "exit", Name: "x9", ExpiresAt: clock.Now().Add(time.Hour)})
	_, err = s.RedeemJoinToken(ctx, Redemption{TokenID: tok4.ID, Secret: secret4, Name: "x8", Pin: [32]byte{4}})
	wantErr(t, err, ErrInvalid, `for a node named "x9"`)
	if n, err := s.RedeemJoinToken(ctx, Redemption{TokenID: tok4.ID, Secret: secret4, Pin: [32]byte{4}}); err != nil || n.Name != "x9" {
		t.Fatalf("join with the token's name: %+v, %v", n, err)
	}
	if _, err := s.RedeemJoinToken(ctx, Redemption{TokenID: tok3.ID, Secret: secret3, Name: "p3", Pin: [32]byte{3}}); err != nil {
		t.Fatal(err)
	}

	// A token for a name that is taken is refused when made.
	_, _, err = s.CreateJoinToken(ctx, NewJoinToken{Roles: "pop", Name: "p1", ExpiresAt: soon.Add(time.Hour)})
	wantErr(t, err, ErrExists, "p1")
	_, _, err = s.CreateJoinToken(ctx, NewJoinToken{Roles: "pop", ExpiresAt: clock.Now()})
	wantErr(t, err, ErrInvalid, "not in the future")
	_, _, err = s.CreateJoinToken(ctx, NewJoinToken{Roles: "controller", ExpiresAt: soon})
	wantErr(t, err, ErrInvalid, "give pop, exit or pop,exit")
	_, _, err = s.CreateJoinToken(ctx, NewJoinToken{Roles: "pop", Name: "P1", ExpiresAt: soon})
	wantErr(t, err, ErrInvalid, "node name")

	nodes, err := s.Nodes(ctx)
	if err != nil || len(nodes) != 3 || nodes[0].Name != "p1" || nodes[0].BackbonePublicKey != (Key{9}) || nodes[0].BackboneEndpoint != "192.0.2.1:51821" || nodes[1].Name != "p3" {
		t.Fatalf("Nodes = %+v, %v", nodes, err)
	}
	byPin, err := s.NodeByPin(ctx, [32]byte{1})
	if err != nil || byPin.Name != "p1" {
		t.Fatalf("NodeByPin = %+v, %v", byPin, err)
	}

	// Reports: no generation change, no audit entry.
	gen1, _ := s.Generation(ctx)
	if err := s.RecordNodeReport(ctx, byPin.ID, NodeReport{At: clock.Now(), Version: "v1.3", AppliedGeneration: gen1, Report: `{"ok":true}`}); err != nil {
		t.Fatal(err)
	}
	if gen, _ := s.Generation(ctx); gen != gen1 {
		t.Errorf("a report moved the generation %d → %d", gen1, gen)
	}
	byPin, _ = s.NodeByPin(ctx, [32]byte{1})
	if byPin.Version != "v1.3" || byPin.AppliedGeneration != gen1 || !byPin.LastSeen.Equal(fromMicros(micros(clock.Now()))) || byPin.LastReport != `{"ok":true}` {
		t.Errorf("after a report: %+v", byPin)
	}

	// Removal deletes the pin; the token row stays.
	if _, _, err := s.RemoveNode(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	_, err = s.NodeByPin(ctx, [32]byte{1})
	wantErr(t, err, ErrNotFound, "was removed")
	err = s.RecordNodeReport(ctx, byPin.ID, NodeReport{At: clock.Now()})
	wantErr(t, err, ErrNotFound, "")
	_, _, err = s.RemoveNode(ctx, "p1")
	wantErr(t, err, ErrNotFound, "popgate node list")
	if n := countRows(t, s, "join_tokens"); n != 4 {
		t.Errorf("%d join tokens after the removal, want 4", n)
	}
	entries, _, err := s.ListAudit(ctx, AuditQuery{Action: "node"})
	if err != nil || len(entries) != 8 { // 4 tokens, 3 joins, 1 removal
		t.Errorf("audit: %d entries, %v", len(entries), err)
	}
}

func TestMembershipAndDesiredCache(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	if _, err := s.Membership(ctx); !isNotFound(err) {
		t.Fatalf("Membership of a fresh store: %v", err)
	}
	if _, _, _, err := s.LoadDesired(ctx); !isNotFound(err) {
		t.Fatalf("LoadDesired of a fresh store: %v", err)
	}
	m := Membership{ControllerAddr: "192.0.2.10:7443", ControllerPin: [32]byte{5}, NodeName: "p1", Roles: "exit,pop", Region: "fra"}
	if err := s.SetMembership(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := s.Membership(ctx)
	if err != nil || got.ControllerAddr != m.ControllerAddr || got.ControllerPin != m.ControllerPin || got.Roles != "pop,exit" || got.NodeName != "p1" || got.JoinedAt.IsZero() {
		t.Fatalf("Membership = %+v, %v", got, err)
	}
	body := []byte(`{"format":1,"generation":12}`)
	if err := s.SaveDesired(ctx, 12, body); err != nil {
		t.Fatal(err)
	}
	var sealed []byte
	if err := s.db.QueryRow("SELECT sealed FROM desired_cache").Scan(&sealed); err != nil || len(sealed) < len(body) || string(sealed[len(sealed)-len(body):]) == string(body) {
		t.Fatalf("sealed %q, %v", sealed, err)
	}
	s.Close()
	s = openOpts(t, opts)
	gen, got2, saved, err := s.LoadDesired(ctx)
	if err != nil || gen != 12 || string(got2) != string(body) || saved.IsZero() {
		t.Fatalf("LoadDesired = %d, %q, %v, %v", gen, got2, saved, err)
	}
	// A row moved to another generation does not open.
	if _, err := s.db.Exec("UPDATE desired_cache SET generation = 13"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.LoadDesired(ctx); err == nil {
		t.Fatal("a kept state moved to another generation opened")
	}
	if err := s.ClearDesired(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.LoadDesired(ctx); !isNotFound(err) {
		t.Fatalf("LoadDesired after ClearDesired: %v", err)
	}
	if err := s.SaveDesired(ctx, 14, body); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRemoved(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Membership(ctx); err != nil || m.RemovedAt.IsZero() {
		t.Errorf("Membership after MarkRemoved: %+v, %v", m, err)
	}
	if _, _, _, err := s.LoadDesired(ctx); !isNotFound(err) {
		t.Errorf("LoadDesired after MarkRemoved: %v", err)
	}
	// Joining again makes it a member again.
	if err := s.SetMembership(ctx, m); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Membership(ctx); err != nil || !m.RemovedAt.IsZero() {
		t.Errorf("Membership after joining again: %+v, %v", m, err)
	}
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
