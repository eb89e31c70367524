package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRegions(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	home, err := s.EnsureHomeRegion(ctx, "local", "vpn.example.com:51820")
	if err != nil || !home.Home || home.PublicKey != s.NodePublicKey() {
		t.Fatalf("EnsureHomeRegion: %+v, %v", home, err)
	}
	fra, err := s.AddRegion(ctx, "fra", "vpn-fra.example.com:51820")
	if err != nil || fra.Home || fra.PublicKey.IsZero() || fra.PublicKey == s.NodePublicKey() {
		t.Fatalf("AddRegion: %+v, %v", fra, err)
	}
	k, err := s.RegionPrivateKey(ctx, "fra")
	if err != nil || k.PublicKey() != fra.PublicKey {
		t.Fatalf("RegionPrivateKey(fra): %v; public %s want %s", err, k.PublicKey(), fra.PublicKey)
	}
	nk, _ := s.NodePrivateKey(ctx)
	if k, err := s.RegionPrivateKey(ctx, "local"); err != nil || k != nk {
		t.Fatalf("RegionPrivateKey(local) is not the node key: %v", err)
	}
	if _, err := s.AddRegion(ctx, "ams", "[2001:db8::1]:51820"); err != nil {
		t.Fatal(err)
	}

	// Bad input: one clear error, nothing stored.
	for _, c := range []struct{ name, ep, kind, contains string }{
		{"Fra", "a:1", "invalid", "region name"},
		{"-x", "a:1", "invalid", "region name"},
		{strings.Repeat("a", 33), "a:1", "invalid", "at most 32"},
		{"x", "nohost", "invalid", "not host:port"},
		{"x", "a:0", "invalid", "bad port"},
		{"x", "a:65536", "invalid", "bad port"},
		{"x", "a b:1", "invalid", "bad host"},
		{"x", ":51820", "invalid", "not host:port"},
		{"fra", "a:1", "exists", "already exists"},
		{"local", "a:1", "exists", "already exists"},
	} {
		_, err := s.AddRegion(ctx, c.name, c.ep)
		kind := map[string]error{"invalid": ErrInvalid, "exists": ErrExists}[c.kind]
		wantErr(t, err, kind, c.contains)
	}
	rs, err := s.Regions(ctx)
	if err != nil || len(rs) != 3 || rs[0].Name != "ams" || rs[1].Name != "fra" || rs[2].Name != "local" || !rs[2].Home || rs[2].PublicKey != s.NodePublicKey() {
		t.Fatalf("Regions: %+v, %v", rs, err)
	}

	// Tenants limited to regions.
	mustTenant(t, s, "acme")
	mustTenant(t, s, "beta")
	if got, err := s.SetTenantRegions(ctx, "acme", []string{"fra", "ams", "fra"}); err != nil || !slices.Equal(got, []string{"ams", "fra"}) {
		t.Fatalf("SetTenantRegions: %q, %v", got, err)
	}
	if _, err := s.SetTenantRegions(ctx, "beta", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.SetTenantRegions(ctx, "beta", []string{"fra", "nope"})
	wantErr(t, err, ErrNotFound, `region "nope" not found`)
	if got, _ := s.TenantRegions(ctx, "beta"); !slices.Equal(got, []string{"fra"}) {
		t.Fatalf("beta's regions after a refused change: %q", got)
	}
	r, err := s.Region(ctx, "fra")
	if err != nil || !slices.Equal(r.Tenants, []string{"acme", "beta"}) {
		t.Fatalf("Region(fra): %+v, %v", r, err)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil || len(snap.Regions) != 3 || len(snap.TenantRegions) != 2 {
		t.Fatalf("Snapshot regions %+v, tenant regions %v, %v", snap.Regions, snap.TenantRegions, err)
	}

	// Removing: not the home region, not a tenant's only region.
	wantErr(t, s.RemoveRegion(ctx, "local"), ErrInvalid, "controller's own")
	wantErr(t, s.RemoveRegion(ctx, "fra"), ErrInvalid, "only region of tenant beta")
	wantErr(t, s.RemoveRegion(ctx, "nope"), ErrNotFound, "not found")
	if _, err := s.SetTenantRegions(ctx, "beta", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.TenantRegions(ctx, "beta"); got != nil {
		t.Fatalf("beta's regions after all: %q", got)
	}
	if err := s.RemoveRegion(ctx, "fra"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.TenantRegions(ctx, "acme"); !slices.Equal(got, []string{"ams"}) {
		t.Fatalf("acme's regions after fra went: %q", got)
	}
	if _, err := s.RegionPrivateKey(ctx, "fra"); err == nil {
		t.Fatal("fra's key outlived it")
	}

	// Endpoints.
	_, err = s.SetRegionEndpoint(ctx, "local", "x.example:1")
	wantErr(t, err, ErrInvalid, "--public-endpoint")
	if r, err := s.SetRegionEndpoint(ctx, "ams", "vpn-ams.example.com:443"); err != nil || r.Endpoint != "vpn-ams.example.com:443" || !slices.Equal(r.Tenants, []string{"acme"}) {
		t.Fatalf("SetRegionEndpoint: %+v, %v", r, err)
	}
	_, err = s.SetRegionEndpoint(ctx, "ams", "bad")
	wantErr(t, err, ErrInvalid, "not host:port")

	// The home region follows serve's --region and --public-endpoint; a region with a key
	// of its own cannot become it.
	_, err = s.EnsureHomeRegion(ctx, "ams", "vpn.example.com:51820")
	wantErr(t, err, ErrExists, "key of its own")
	if h, err := s.EnsureHomeRegion(ctx, "par", "vpn2.example.com:51820"); err != nil || h.Name != "par" || h.ID != home.ID || h.Endpoint != "vpn2.example.com:51820" {
		t.Fatalf("EnsureHomeRegion rename: %+v, %v", h, err)
	}
	gen, _ := s.Generation(ctx)
	if _, err := s.EnsureHomeRegion(ctx, "par", "vpn2.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.Generation(ctx); g != gen {
		t.Error("EnsureHomeRegion with nothing to change wrote")
	}

	// Removing a tenant takes its regions along.
	if err := s.RemoveTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Region(ctx, "ams"); len(r.Tenants) != 0 {
		t.Errorf("ams still lists %q", r.Tenants)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := Check(ctx, opts.Path, ""); err != nil || !rep.OK() {
		t.Fatalf("Check: %+v, %v", rep, err)
	}
}

// TestCheckFindsBadRegionKey: a region key moved to another region's row does not open.
func TestCheckFindsBadRegionKey(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	if _, err := s.AddRegion(ctx, "fra", "a.example:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRegion(ctx, "ams", "b.example:1"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := rawDB(t, opts.Path)
	if _, err := db.Exec("UPDATE regions SET private_key_enc = (SELECT private_key_enc FROM regions WHERE name = 'fra'), public_key = (SELECT public_key FROM regions WHERE name = 'fra') || x'' WHERE name = 'ams'"); err == nil {
		t.Fatal("two regions with one public key were stored")
	}
	if _, err := db.Exec("UPDATE regions SET private_key_enc = (SELECT private_key_enc FROM regions WHERE name = 'fra') WHERE name = 'ams'"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	rep, err := Check(ctx, opts.Path, "")
	if err != nil || rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "region ams: its private key") {
		t.Fatalf("Check: %+v, %v", rep, err)
	}
}

func TestSchemaRefusesBadRegionRows(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if _, err := s.EnsureHomeRegion(ctx, "local", "a.example:1"); err != nil {
		t.Fatal(err)
	}
	sealed, err := s.sealKey(mustKey(t), regionAD("x"))
	if err != nil {
		t.Fatal(err)
	}
	pub := mustKey(t).PublicKey()
	good := func() map[string]any {
		return map[string]any{"name": "x", "endpoint": "vpn.example.com:51820", "private_key_enc": sealed, "public_key": pub[:], "created_at": 1}
	}
	with := func(row map[string]any, col string, v any) map[string]any { row[col] = v; return row }
	for _, c := range []struct {
		name string
		row  map[string]any
	}{
		{"name upper case", with(good(), "name", "Fra")},
		{"name too long", with(good(), "name", strings.Repeat("a", 33))},
		{"name underscore", with(good(), "name", "a_b")},
		{"endpoint without port", with(good(), "endpoint", "vpn.example.com")},
		{"endpoint space", with(good(), "endpoint", "vpn example:1")},
		{"endpoint comma", with(good(), "endpoint", "a,b:1")},
		{"endpoint empty", with(good(), "endpoint", "")},
		{"key without public key", with(good(), "public_key", nil)},
		{"second home region", with(with(good(), "private_key_enc", nil), "public_key", nil)},
		{"short key", with(good(), "private_key_enc", sealed[:72])},
		{"created_at zero", with(good(), "created_at", 0)},
	} {
		if err := insertRow(ctx, s, "regions", c.row); err == nil {
			t.Errorf("%s: stored; the schema must refuse it", c.name)
		}
	}
	if err := insertRow(ctx, s, "regions", good()); err != nil {
		t.Errorf("control row refused: %v", err)
	}
	if err := insertRow(ctx, s, "tenant_regions", map[string]any{"tenant_id": 999, "region_id": 1}); err == nil {
		t.Error("a tenant region of a missing tenant was stored")
	}
}

// TestRemoveRegionServedByNodes: a region its PoPs still serve is not removed; once the node
// is removed, it is.
func TestRemoveRegionServedByNodes(t *testing.T) {
	s, _ := openTest(t)
	ctx := WithActor(context.Background(), Actor{Name: "root"})
	if _, err := s.AddRegion(ctx, "fra", "vpn-fra.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	tok, secret := joinToken(t, s, NewJoinToken{Roles: "pop", Region: "fra", ExpiresAt: s.now().Add(time.Hour)})
	if _, err := s.RedeemJoinToken(ctx, Redemption{TokenID: tok.ID, Secret: secret, Name: "p1", Pin: [32]byte{9}}); err != nil {
		t.Fatal(err)
	}
	err := s.RemoveRegion(ctx, "fra")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "still served by node p1") || !strings.Contains(err.Error(), "popgate node remove p1") {
		t.Fatalf("RemoveRegion of a served region: %v", err)
	}
	if _, err := s.Region(ctx, "fra"); err != nil {
		t.Fatalf("the refused removal lost the region: %v", err)
	}
	if _, _, err := s.RemoveNode(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveRegion(ctx, "fra"); err != nil {
		t.Fatalf("RemoveRegion with no node left: %v", err)
	}
}
