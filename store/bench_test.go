package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"testing"
)

const (
	benchTenants = 100
	benchPeers   = 100_000
)

// bulkAddPeers inserts n peers spread over tenants t000…, with user-brought random public
// keys and consecutive addresses from the bottom of the pool, in one transaction. It is the
// fast way to a large database; AddPeer does one durable commit per peer.
func bulkAddPeers(tb testing.TB, s *Store, tenants, n int) {
	tb.Helper()
	ctx := context.Background()
	ids := make([]int64, tenants)
	for i := range tenants {
		ids[i] = mustTenant(tb, s, fmt.Sprintf("t%03d", i)).ID
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO peers
			(tenant_id, name, public_key, ipv4, ipv6, enabled, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, 1, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		now := micros(s.now())
		for i := range n {
			var pub Key
			rand.Read(pub[:])
			v4 := s.v4First + uint32(i)
			v6 := s.ipv6For(v4).As16()
			if _, err := stmt.ExecContext(ctx, ids[i%tenants], fmt.Sprintf("peer%06d", i), pub[:], int64(v4), v6[:], now, now); err != nil {
				return err
			}
		}
		return s.logChange(ctx, tx, "", "test.bulk", "", fmt.Sprintf("%d peers", n))
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func TestBulkAddPeersMatchesAddPeer(t *testing.T) {
	// The benchmarks' helper writes what AddPeer would: the store reads it back and
	// allocates after it.
	ctx := context.Background()
	s, _ := openTest(t)
	bulkAddPeers(t, s, 3, 30)
	ps, err := s.ListPeers(ctx, "")
	if err != nil || len(ps) != 30 || ps[0].TenantName != "t000" || ps[29].TenantName != "t002" {
		t.Fatalf("ListPeers after bulk insert: %d peers, %v", len(ps), err)
	}
	if p := mustPeer(t, s, newPeer(t, "t000", "next")); p.IPv4.String() != "100.64.0.32" {
		t.Errorf("next address after 30 bulk peers = %v, want 100.64.0.32", p.IPv4)
	}
}

// BenchmarkAddPeer times AddPeer, one durable transaction each, in a store that already
// holds 100,000 peers: "next" takes the address above the highest; "gap" has reached the
// top of the pool and searches the lowest free address, half-way up the index.
func BenchmarkAddPeer(b *testing.B) {
	ctx := context.Background()
	b.Run("next", func(b *testing.B) {
		s, _ := openTest(b)
		bulkAddPeers(b, s, benchTenants, benchPeers)
		i := 0
		for b.Loop() {
			if _, err := s.AddPeer(ctx, newPeer(b, "t000", fmt.Sprint("new", i))); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("gap", func(b *testing.B) {
		s, _ := openTest(b)
		bulkAddPeers(b, s, benchTenants, benchPeers)
		s.v4Last = s.v4First + benchPeers - 1 // the pool is full
		middle := fmt.Sprintf("peer%06d", benchPeers/2)
		tenant := fmt.Sprintf("t%03d", (benchPeers/2)%benchTenants)
		if _, err := s.RemovePeer(ctx, tenant, middle); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			p, err := s.AddPeer(ctx, newPeer(b, "t000", "new"))
			if err != nil {
				b.Fatal(err)
			}
			if got, want := p.IPv4, addrFromUint32(s.v4First+benchPeers/2); got != want {
				b.Fatalf("got %v, want the gap %v", got, want)
			}
			if _, err := s.RemovePeer(ctx, "t000", "new"); err != nil { // reopen the gap
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkListPeers lists 100,000 peers of 100 tenants, all at once and one tenant's.
func BenchmarkListPeers(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b)
	bulkAddPeers(b, s, benchTenants, benchPeers)
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ps, err := s.ListPeers(ctx, "")
			if err != nil || len(ps) != benchPeers {
				b.Fatalf("%d peers, %v", len(ps), err)
			}
		}
	})
	b.Run("tenant", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ps, err := s.ListPeers(ctx, "t042")
			if err != nil || len(ps) != benchPeers/benchTenants {
				b.Fatalf("%d peers, %v", len(ps), err)
			}
		}
	})
}

// bulkAddGroupsAndSites puts every peer bulkAddPeers made into two groups, "all" and one of
// 20 others, and makes every 101st (spread over the tenants) a site connector with an IPv4 and an IPv6 prefix, in one
// transaction.
func bulkAddGroupsAndSites(tb testing.TB, s *Store) {
	tb.Helper()
	ctx := context.Background()
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO peer_groups (peer_id, name)
			SELECT id, 'all' FROM peers UNION ALL SELECT id, printf('g%02d', id % 20) FROM peers`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sites (peer_id, tenant_id, name)
			SELECT id, tenant_id, 'site-' || name FROM peers WHERE id % 101 = 0`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO site_prefixes (tenant_id, site, addr, bits)
			SELECT tenant_id, name, unhex(printf('0a%04x00', peer_id / 101)), 24 FROM sites
			UNION ALL
			SELECT tenant_id, name, unhex(printf('fd10%08x00000000000000000000', peer_id)), 64 FROM sites`)
		if err != nil {
			return err
		}
		return s.logChange(ctx, tx, "", "test.bulk", "", "groups and sites")
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func TestBulkAddGroupsAndSites(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	bulkAddPeers(t, s, 3, 300)
	bulkAddGroupsAndSites(t, s)
	ps, err := s.ListPeers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var sites int
	for _, p := range ps {
		if len(p.Groups) != 2 || p.Groups[0] != "all" {
			t.Fatalf("peer %s has groups %q", p.Name, p.Groups)
		}
		if p.Site != "" {
			sites++
			if len(p.SitePrefixes) != 2 || !p.SitePrefixes[0].Addr().Is4() {
				t.Fatalf("site %s has prefixes %v", p.Site, p.SitePrefixes)
			}
		}
	}
	if sites != 2 {
		t.Errorf("%d sites, want 2", sites)
	}
}

// BenchmarkListPeersWithGroups lists 100,000 peers of 100 tenants, each in two groups, one in
// a hundred a site connector: all at once, one tenant's, and one peer.
func BenchmarkListPeersWithGroups(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b)
	bulkAddPeers(b, s, benchTenants, benchPeers)
	bulkAddGroupsAndSites(b, s)
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ps, err := s.ListPeers(ctx, "")
			if err != nil || len(ps) != benchPeers || len(ps[0].Groups) != 2 {
				b.Fatalf("%d peers, %v", len(ps), err)
			}
		}
	})
	b.Run("tenant", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ps, err := s.ListPeers(ctx, "t042")
			if err != nil || len(ps) != benchPeers/benchTenants || len(ps[0].Groups) != 2 {
				b.Fatalf("%d peers, %v", len(ps), err)
			}
		}
	})
	b.Run("peer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if p, err := s.Peer(ctx, "t000", "peer000100"); err != nil || p.Site == "" {
				b.Fatalf("%+v, %v", p, err)
			}
		}
	})
}
