package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// startTestNode starts a node on a loopback port with the userspace exit.
func startTestNode(t *testing.T) *Node {
	t.Helper()
	port := freeUDPPort(t)
	n, err := New(Config{
		DataDir:        t.TempDir(),
		Interface:      fmt.Sprintf("pgc%d", os.Getpid()%100000),
		ListenPort:     port,
		PublicEndpoint: fmt.Sprintf("127.0.0.1:%d", port),
		ExitMode:       ExitUserspace,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestControllerPeerRenameAndExpiry(t *testing.T) {
	ctx := context.Background()
	c := startTestNode(t).Controller()
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
	if _, err := c.PeerConfig(ctx, "acme", "notebook"); err != nil {
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

func TestControllerAdmins(t *testing.T) {
	ctx := context.Background()
	c := startTestNode(t).Controller()

	pw, created, err := c.EnsureFirstAdmin(ctx)
	if err != nil || !created || len(pw) < 20 {
		t.Fatalf("EnsureFirstAdmin = %q, %v, %v", pw, created, err)
	}
	if a, ok, err := c.CheckAdminPassword(ctx, FirstAdminName, pw); !ok || err != nil || a.Role != store.RoleOwner {
		t.Errorf("first admin's password: %+v, %v, %v", a, ok, err)
	}
	if _, created, err := c.EnsureFirstAdmin(ctx); created || err != nil {
		t.Errorf("second EnsureFirstAdmin = %v, %v", created, err)
	}

	a, generated, err := c.AddAdmin(ctx, AddAdminRequest{Name: "bob", Role: store.RoleViewer})
	if err != nil || generated == "" || a.Name != "bob" {
		t.Fatalf("AddAdmin = %+v, %q, %v", a, generated, err)
	}
	if _, generated, err := c.AddAdmin(ctx, AddAdminRequest{Name: "carol", Role: store.RoleViewer, Password: "carol's own password"}); err != nil || generated != "" {
		t.Errorf("AddAdmin with a password = %q, %v", generated, err)
	}
	if _, newPW, err := c.SetAdminPassword(ctx, "bob", ""); err != nil || newPW == "" || newPW == generated {
		t.Errorf("SetAdminPassword = %q, %v", newPW, err)
	}

	// One-time download links.
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
	_, cfg, err := c.RedeemDownloadLink(ctx, token, now)
	if err != nil || !strings.Contains(cfg, "PrivateKey = ") {
		t.Fatalf("RedeemDownloadLink = %q, %v", cfg, err)
	}
	if _, _, err := c.RedeemDownloadLink(ctx, token, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second download: %v", err)
	}
}

// TestControllerAuditsWhatItDid: the controller's changes reach the audit log with the
// context's actor and what it did (for a policy: the rules it compiled and the text's
// digest); a policy over store.MaxPolicySize is refused before it is parsed, naming the limit.
func TestControllerAuditsWhatItDid(t *testing.T) {
	c := startTestNode(t).Controller()
	ctx := store.WithActor(context.Background(), store.Actor{Name: "alice", Remote: "192.0.2.7"})
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	text := "default deny\n# two rules\nallow any -> any tcp 443\nallow any -> any icmp\n"
	if _, _, err := c.SetPolicy(ctx, "acme", text); err != nil {
		t.Fatal(err)
	}
	es, _, err := c.ListAudit(ctx, store.AuditQuery{Action: "policy"})
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
	if es, _, _ := c.ListAudit(ctx, store.AuditQuery{Action: "policy"}); len(es) != 1 {
		t.Errorf("a refused policy was recorded: %+v", es)
	}
}
