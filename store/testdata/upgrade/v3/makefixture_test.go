package store

// This file makes the schema version 3 fixture. make.sh copies it into an export of the last
// commit with schema version 3 (see README.md) and runs it there, with that commit's store.

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fixturePassword is the password of every admin in the fixture; fixtureTOTP the TOTP secret
// of admin "admin".
const (
	fixturePassword = "correct horse battery staple"
	fixtureTOTP     = "12345678901234567890"
)

func TestMakeFixture(t *testing.T) {
	out := os.Getenv("POPGATE_FIXTURE_DIR")
	if out == "" {
		t.Skip("POPGATE_FIXTURE_DIR is not set")
	}
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: filepath.Join(out, "popgate.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must3 := func(_, _ any, err error) {
		t.Helper()
		must(nil, err)
	}
	pfx := netip.MustParsePrefix
	now := time.Now()
	for _, name := range []string{"acme", "beta", "gone"} {
		must(s.AddTenant(ctx, name))
	}
	server := func() *Key { k := mustKey(t); return &k }
	brought := func() *Key { k := mustKey(t).PublicKey(); return &k }
	for _, p := range []NewPeer{
		{TenantName: "acme", Name: "laptop", PrivateKey: server()},
		{TenantName: "acme", Name: "phone", PublicKey: brought()},
		{TenantName: "acme", Name: "printer", PrivateKey: server()},
		{TenantName: "acme", Name: "removed", PrivateKey: server()},
		{TenantName: "acme", Name: "office-gw", PrivateKey: server()},
		{TenantName: "acme", Name: "contractor", PrivateKey: server()},
		{TenantName: "beta", Name: "laptop", PrivateKey: server()},
		{TenantName: "beta", Name: "lab-gw", PublicKey: brought()},
	} {
		must(s.AddPeer(ctx, p))
	}
	must(s.SetPeerEnabled(ctx, "acme", "printer", false))
	must(s.RemovePeer(ctx, "acme", "removed"))
	must(nil, s.RemoveTenant(ctx, "gone"))

	must(s.SetPeerGroups(ctx, "acme", "laptop", []string{"eng", "ops"}))
	must(s.SetPeerGroups(ctx, "acme", "phone", []string{"eng"}))
	must(s.SetPeerSite(ctx, "acme", "office-gw", "office", []netip.Prefix{pfx("10.1.0.0/16"), pfx("fd00:1::/64")}))
	must(s.SetPeerSite(ctx, "beta", "lab-gw", "lab", []netip.Prefix{pfx("10.1.0.0/16")}))
	must(s.AddRoute(ctx, "acme", pfx("10.1.0.0/16"), "site:office"))
	must(s.AddRoute(ctx, "acme", pfx("fd00:1::/64"), "site:office"))
	must(s.AddRoute(ctx, "beta", pfx("10.1.0.0/16"), "site:lab"))
	must(s.RemoveRoute(ctx, "beta", pfx("::/0")))
	must(s.SetTenantSplitTunnel(ctx, "beta", true))
	must(nil, s.SetPolicy(ctx, "acme", "# Büro → Labor\nallow group:eng -> site:office tcp/22,443\nallow any -> internet\n"))
	must(nil, s.SetPolicy(ctx, "beta", "allow any -> any\n"))

	// Version 3: peer rename and expiry, admins, sessions, API tokens, audit, download links.
	must(s.RenamePeer(ctx, "acme", "laptop", "laptop-2"))
	expires := now.Add(90 * 24 * time.Hour)
	must(s.SetPeerExpiry(ctx, "acme", "contractor", &expires))

	owner, err := s.AddAdmin(ctx, NewAdmin{Name: "admin", Role: RoleOwner, Password: fixturePassword})
	must(nil, err)
	must(nil, s.SetAdminTOTPPending(ctx, owner.ID, []byte(fixtureTOTP)))
	must(nil, s.EnableAdminTOTP(ctx, owner.ID, now.Unix()/30))
	alice, err := s.AddAdmin(ctx, NewAdmin{Name: "alice", Role: RoleTenantAdmin, Tenant: "acme", Password: fixturePassword})
	must(nil, err)
	must(s.AddAdmin(ctx, NewAdmin{Name: "victor@example.com", Role: RoleViewer, Password: fixturePassword}))
	must(s.SetAdminDisabled(ctx, "victor@example.com", true))
	// Five failures lock alice (the column locked_until, which version 5 drops).
	for range 5 {
		must(s.RecordSignInFailure(ctx, alice.ID, now, 5, 5*time.Minute))
	}
	must(nil, s.RecordSignIn(ctx, owner.ID, now))
	must3(s.CreateSession(ctx, NewSession{AdminID: owner.ID, Now: now, ExpiresAt: now.Add(7 * 24 * time.Hour), RemoteAddr: "192.0.2.10", UserAgent: "Mozilla/5.0 (fixture)"}))
	must3(s.AddAPIToken(ctx, NewAPIToken{Name: "ci-bot", Role: RoleTenantAdmin, Tenant: "acme", ExpiresAt: now.Add(90 * 24 * time.Hour)}))
	must3(s.AddAPIToken(ctx, NewAPIToken{Name: "monitor", Role: RoleViewer}))
	for _, e := range []AuditEntry{
		{At: now, Actor: "cli", Remote: "control socket", Tenant: "acme", Action: "peer.add", Target: "acme/laptop"},
		{At: now, Actor: "admin", Remote: "192.0.2.10", Action: "signin"},
		{At: now, Actor: "alice", Remote: "198.51.100.7", Action: "signin.failed", Target: "alice", Detail: "wrong password"},
	} {
		must(nil, s.AppendAudit(ctx, e))
	}
	must3(s.CreateDownloadLink(ctx, "acme", "phone", "admin", now, now.Add(24*time.Hour)))
	link, _, err := s.CreateDownloadLink(ctx, "acme", "laptop-2", "admin", now, now.Add(24*time.Hour))
	must(nil, err)
	must(nil, s.UseDownloadLink(ctx, link.ID, now))
}
