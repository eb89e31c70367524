package store

// This file makes the schema version 1 fixture. make.sh copies it into an export of the last
// commit with schema version 1 (see README.md) and runs it there, with that commit's store.

import (
	"context"
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
		{TenantName: "acme", Name: "tablet.home-1", PrivateKey: server()},
		{TenantName: "beta", Name: "laptop", PrivateKey: server()},
	} {
		must(s.AddPeer(ctx, p))
	}
	must(s.SetPeerEnabled(ctx, "acme", "printer", false))
	must(s.RemovePeer(ctx, "acme", "removed"))
	must(nil, s.RemoveTenant(ctx, "gone"))
}
