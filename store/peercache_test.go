package store

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// TestSnapshotRereadsOnlyChangedTenants changes peers in every way the store offers (and one
// way it does not: another connection's SQL) and checks after each change that Snapshot
// returns what a full ListPeers reads, and that it read only the tenants that changed.
func TestSnapshotRereadsOnlyChangedTenants(t *testing.T) {
	s, opts := openTest(t)
	ctx := context.Background()
	for i := range 12 {
		name := fmt.Sprintf("t%02d", i)
		mustTenant(t, s, name)
		for j := range 3 {
			mustPeer(t, s, newPeer(t, name, fmt.Sprintf("p%d", j)))
		}
	}
	check := func(what string, full, tenants int) {
		t.Helper()
		fullBefore, tenantsBefore := s.peerCache.fullReads, s.peerCache.tenantReads
		snap, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatalf("%s: Snapshot: %v", what, err)
		}
		want, err := s.ListPeers(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(snap.Peers, want) {
			t.Fatalf("%s: Snapshot's peers differ from ListPeers':\n got %v\nwant %v", what, snap.Peers, want)
		}
		if f, n := s.peerCache.fullReads-fullBefore, s.peerCache.tenantReads-tenantsBefore; f != full || n != tenants {
			t.Errorf("%s: Snapshot read the whole table %d times and %d tenants, want %d and %d", what, f, n, full, tenants)
		}
	}
	check("first snapshot", 1, 0)
	check("nothing changed", 0, 0)

	mustPeer(t, s, newPeer(t, "t03", "added"))
	check("a peer added", 0, 1)
	if _, err := s.SetPeerGroups(ctx, "t03", "added", []string{"ops", "dev"}); err != nil {
		t.Fatal(err)
	}
	check("groups set", 0, 1)
	if _, err := s.SetPeerGroups(ctx, "t03", "added", []string{"ops"}); err != nil {
		t.Fatal(err)
	}
	check("a group left", 0, 1)
	if _, err := s.SetPeerSite(ctx, "t05", "p1", "office", []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	check("a site set", 0, 1)
	if _, err := s.SetPeerSite(ctx, "t05", "p1", "office", []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24"), netip.MustParsePrefix("10.8.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	check("a site prefix added", 0, 1)
	// Another process's writes, as SQL: the triggers count them too.
	db := rawDB(t, opts.Path)
	for _, q := range []string{
		"INSERT INTO site_prefixes (tenant_id, site, addr, bits) SELECT tenant_id, 'office', x'0a070000', 24 FROM sites WHERE name = 'office'",
		"UPDATE site_prefixes SET bits = 16, addr = x'0a060000' WHERE addr = x'0a070000'",
		"DELETE FROM site_prefixes WHERE addr = x'0a060000'",
		"UPDATE sites SET name = 'hq' WHERE name = 'office'",
		"INSERT INTO sites (peer_id, tenant_id, name) SELECT p.id, p.tenant_id, 'bare' FROM peers AS p JOIN tenants AS t ON t.id = p.tenant_id WHERE t.name = 't00' AND p.name = 'p2'",
		"UPDATE sites SET name = 'bare2' WHERE name = 'bare'",
		"DELETE FROM sites WHERE name = 'bare2'",
		"UPDATE peer_groups SET name = 'sre' WHERE name = 'ops'",
		"INSERT INTO peer_groups (peer_id, name) SELECT id, 'ops' FROM peers WHERE name = 'added'",
		"DELETE FROM peer_groups WHERE name = 'sre'",
		"UPDATE peers SET name = 'renamed' WHERE name = 'added'",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		check(q, 0, 1)
	}
	if _, err := s.RenamePeer(ctx, "t05", "p2", "p9"); err != nil {
		t.Fatal(err)
	}
	check("a peer renamed", 0, 1)
	if _, err := s.SetPeerEnabled(ctx, "t07", "p0", false); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := s.SetPeerExpiry(ctx, "t08", "p0", &at); err != nil {
		t.Fatal(err)
	}
	check("a peer disabled in one tenant, an expiry set in another", 0, 2)
	k := mustKey(t)
	pub := k.PublicKey()
	if _, err := s.RotatePeerKey(ctx, "t07", "p1", nil, &pub); err != nil {
		t.Fatal(err)
	}
	check("a key rotated", 0, 1)
	if _, err := s.RemovePeer(ctx, "t05", "p1"); err != nil {
		t.Fatal(err)
	}
	check("a site's peer removed", 0, 1)

	// A tenant's peers all removed, then the tenant, then a new tenant in its place.
	for _, p := range []string{"p0", "p1", "p2", "renamed"} {
		if _, err := s.RemovePeer(ctx, "t03", p); err != nil {
			t.Fatal(err)
		}
	}
	check("a tenant's peers removed", 0, 1)
	if err := s.RemoveTenant(ctx, "t03"); err != nil {
		t.Fatal(err)
	}
	check("a tenant removed", 0, 0)
	mustTenant(t, s, "t03")
	mustPeer(t, s, newPeer(t, "t03", "again"))
	check("the tenant added again with a peer", 0, 1)

	// Many tenants changed: one read of the whole table.
	for i := range 12 {
		mustPeer(t, s, newPeer(t, fmt.Sprintf("t%02d", i), "more"))
	}
	check("a peer added to every tenant", 1, 0)
	check("nothing changed", 0, 0)
}
