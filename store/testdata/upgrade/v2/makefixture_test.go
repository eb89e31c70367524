package store

// This file makes the schema version 2 fixture. make.sh copies it into an export of the last
// commit with schema version 2 (see README.md) and runs it there, with that commit's store.

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
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
	pfx := netip.MustParsePrefix
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
	must(s.SetPeerSite(ctx, "beta", "lab-gw", "lab", []netip.Prefix{pfx("10.1.0.0/16")})) // the same LAN as acme's office
	must(s.AddRoute(ctx, "acme", pfx("10.1.0.0/16"), "site:office"))
	must(s.AddRoute(ctx, "acme", pfx("fd00:1::/64"), "site:office"))
	must(s.AddRoute(ctx, "beta", pfx("10.1.0.0/16"), "site:lab"))
	must(s.RemoveRoute(ctx, "beta", pfx("::/0")))
	must(s.SetTenantSplitTunnel(ctx, "beta", true))
	// Non-ASCII text, so that the byte-length CHECK of the policy text is exercised.
	must(nil, s.SetPolicy(ctx, "acme", "# Büro → Labor\nallow group:eng -> site:office tcp/22,443\nallow any -> internet\n"))
	must(nil, s.SetPolicy(ctx, "beta", "allow any -> any\n"))
}
