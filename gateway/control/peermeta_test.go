package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane/planetest"
	"github.com/popgate/popgate/store"
)

// newTestController returns a started controller on a store in a temporary directory and an
// in-memory data plane, closed at the end of the test.
func newTestController(t *testing.T) (*Controller, *planetest.DataPlane) {
	t.Helper()
	c, dp, _ := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820"})
	return c, dp
}

// newTestControllerStore is newTestController with cfg (MTU 1420 and region local unless
// set) that also returns the store.
func newTestControllerStore(t *testing.T, cfg Config) (*Controller, *planetest.DataPlane, *store.Store) {
	t.Helper()
	if cfg.MTU == 0 {
		cfg.MTU = 1420
	}
	if cfg.Region == "" {
		cfg.Region = "local"
	}
	if cfg.TrafficSampleEvery == 0 {
		cfg.TrafficSampleEvery = time.Hour // tests that count reports see none of its own
	}
	st, dp := openTestStore(t), &planetest.DataPlane{}
	return startController(t, st, dp, cfg), dp, st
}

// startController starts a controller on st and dp, closed at the end of the test.
func startController(t *testing.T, st *store.Store, dp DataPlane, cfg Config) *Controller {
	t.Helper()
	c, err := New(cfg, st, dp, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// openTestStore opens a store in a temporary directory, closed when the test ends.
func openTestStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "popgate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// desiredHasKey reports whether the data plane's desired state has a peer with key k.
func desiredHasKey(dp *planetest.DataPlane, k store.Key) bool {
	for _, p := range dp.Desired().Peers {
		if p.PublicKey == k {
			return true
		}
	}
	return false
}

func TestControllerPeerRenameAndExpiry(t *testing.T) {
	ctx := context.Background()
	c, _ := newTestController(t)
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"laptop", "phone"} {
		if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := c.SetPolicy(ctx, "acme", "default allow\ndeny peer:phone -> any udp 53\n"); err != nil {
		t.Fatal(err)
	}

	// A peer the policy names keeps its name: the deny rule would stop matching it.
	_, err := c.RenamePeer(ctx, "acme", "phone", "mobile")
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), `peer "phone" is named in the policy of tenant "acme" (line 2)`) {
		t.Fatalf("renaming a peer the policy names: %v", err)
	}
	p, err := c.RenamePeer(ctx, "acme", "laptop", "notebook")
	if err != nil || p.Name != "notebook" {
		t.Fatalf("RenamePeer = %+v, %v", p, err)
	}
	if _, err := c.PeerConfig(ctx, "acme", "notebook", ""); err != nil {
		t.Errorf("config of the renamed peer: %v", err)
	}

	past := time.Now().Add(-time.Minute)
	_, err = c.SetPeerExpiry(ctx, "acme", "notebook", &past)
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "not in the future") {
		t.Errorf("expiry in the past: %v", err)
	}
	future := time.Now().Add(24 * time.Hour)
	if p, err := c.SetPeerExpiry(ctx, "acme", "notebook", &future); err != nil || p.ExpiresAt.IsZero() {
		t.Errorf("SetPeerExpiry = %+v, %v", p, err)
	}
	if p, err := c.SetPeerExpiry(ctx, "acme", "notebook", nil); err != nil || !p.ExpiresAt.IsZero() {
		t.Errorf("clearing the expiry = %+v, %v", p, err)
	}
}

// TestControllerDownloadLinks: a one-time link gives the config once.
func TestControllerDownloadLinks(t *testing.T) {
	ctx := context.Background()
	c, _ := newTestController(t)
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "laptop"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l, token, err := c.CreateDownloadLink(ctx, "acme", "laptop", "admin", now, time.Hour)
	if err != nil || l.PeerName != "laptop" {
		t.Fatalf("CreateDownloadLink = %+v, %v", l, err)
	}
	if _, err := c.DownloadLink(ctx, token, now); err != nil {
		t.Errorf("peeking at the link: %v", err)
	}
	_, cfg, err := c.RedeemDownloadLink(ctx, token, now, "")
	if err != nil || !strings.Contains(cfg, "PrivateKey = ") {
		t.Fatalf("RedeemDownloadLink = %q, %v", cfg, err)
	}
	if _, _, err := c.RedeemDownloadLink(ctx, token, now, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second download: %v", err)
	}
}

// TestControllerAuditsWhatItDid: the controller's changes reach the audit log with the
// context's actor and what it did (for a policy: the rules it compiled and the text's
// digest); a policy over store.MaxPolicySize is refused before it is parsed, naming the limit.
func TestControllerAuditsWhatItDid(t *testing.T) {
	c, _ := newTestController(t)
	ctx := store.WithActor(context.Background(), store.Actor{Name: "alice", Remote: "192.0.2.7"})
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	text := "default deny\n# two rules\nallow any -> any tcp 443\nallow any -> any icmp\n"
	if _, _, err := c.SetPolicy(ctx, "acme", text); err != nil {
		t.Fatal(err)
	}
	es, _, err := c.store.ListAudit(ctx, store.AuditQuery{Action: "policy"})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("2 rules, %d bytes, sha256 %s", len(text), store.PolicyDigest(text))
	if len(es) != 1 || es[0].Actor != "alice" || es[0].Remote != "192.0.2.7" || es[0].Target != "policy:acme" || es[0].Detail != want {
		t.Errorf("policy.set entries %+v, want one by alice with %q", es, want)
	}

	huge := "default deny\n" + strings.Repeat("#\n", store.MaxPolicySize/2)
	_, _, err = c.SetPolicy(ctx, "acme", huge)
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "at most 4194304 (4 MiB) are allowed") {
		t.Errorf("a policy over the limit: %v", err)
	}
	if es, _, _ := c.store.ListAudit(ctx, store.AuditQuery{Action: "policy"}); len(es) != 1 {
		t.Errorf("a refused policy was recorded: %+v", es)
	}
}
