package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestMigrateFromVersion1 upgrades a database as popgate left it at schema version 1: its
// tenants get the default routes, its peers no groups or sites, and everything else works.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	opts := Options{Path: filepath.Join(t.TempDir(), "popgate.db"), Now: clock.Now, migrateTo: 1}
	old := openOpts(t, opts)
	var version int
	if err := old.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != 1 {
		t.Fatalf("user_version = %d, %v; want 1", version, err)
	}
	if _, err := old.Generation(ctx); err == nil {
		t.Fatal("a version 1 database has a generation")
	}
	// What version 1 wrote, by hand: the store's own methods now use version 2's tables.
	created := map[string]int64{"acme": micros(clock.Now()), "beta": micros(clock.Now().Add(time.Hour))}
	for _, name := range []string{"acme", "beta"} { // IDs 1 and 2
		if err := insertRow(ctx, old, "tenants", map[string]any{"name": name, "created_at": created[name]}); err != nil {
			t.Fatal(err)
		}
	}
	pub := mustKey(t).PublicKey()
	v6 := old.ipv6For(ipv4First).As16()
	if err := insertRow(ctx, old, "peers", map[string]any{
		"tenant_id": 1, "name": "laptop", "public_key": pub[:], "ipv4": ipv4First, "ipv6": v6[:],
		"enabled": 1, "created_at": 1, "updated_at": 1,
	}); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	opts.migrateTo = 0
	s := openOpts(t, opts)
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version < 2 || version != s.version {
		t.Fatalf("user_version after upgrade = %d, %v; want the newest, %d", version, err, s.version)
	}
	for _, check := range []string{"PRAGMA foreign_key_check", "PRAGMA integrity_check"} {
		var problem string
		if err := s.db.QueryRowContext(ctx, check).Scan(&problem); err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("%s: %v", check, err)
		} else if err == nil && problem != "ok" {
			t.Errorf("%s after upgrade: %s", check, problem)
		}
	}
	rs, err := s.ListRoutes(ctx, "")
	want := []Route{
		{TenantID: 1, TenantName: "acme", Prefix: pfx("0.0.0.0/0"), Via: "internet", CreatedAt: fromMicros(created["acme"])},
		{TenantID: 1, TenantName: "acme", Prefix: pfx("::/0"), Via: "internet", CreatedAt: fromMicros(created["acme"])},
		{TenantID: 2, TenantName: "beta", Prefix: pfx("0.0.0.0/0"), Via: "internet", CreatedAt: fromMicros(created["beta"])},
		{TenantID: 2, TenantName: "beta", Prefix: pfx("::/0"), Via: "internet", CreatedAt: fromMicros(created["beta"])},
	}
	if err != nil || !reflect.DeepEqual(rs, want) {
		t.Errorf("routes after the upgrade = %+v, %v\nwant %+v", rs, err, want)
	}
	acme, err := s.Tenant(ctx, "acme")
	if err != nil || acme.SplitTunnel {
		t.Errorf("Tenant after upgrade = %+v, %v", acme, err)
	}
	p, err := s.PeerByPublicKey(ctx, pub)
	if err != nil || p.Groups != nil || p.Site != "" || p.SitePrefixes != nil {
		t.Errorf("peer after upgrade = %+v, %v", p, err)
	}
	g, err := s.Generation(ctx)
	if err != nil || g < 1 {
		t.Errorf("Generation after upgrade = %d, %v", g, err)
	}

	// The upgraded database takes the new data.
	if _, err := s.SetPeerGroups(ctx, p.TenantName, "laptop", []string{"eng"}); err != nil {
		t.Error(err)
	}
	if _, err := s.SetPeerSite(ctx, p.TenantName, "laptop", "home", pfxs("192.168.1.0/24")); err != nil {
		t.Error(err)
	}
	if _, err := s.AddRoute(ctx, p.TenantName, pfx("192.168.1.0/24"), "site:home"); err != nil {
		t.Error(err)
	}
	if g2, err := s.Generation(ctx); err != nil || g2 <= g {
		t.Errorf("Generation after writes = %d, %v; was %d", g2, err, g)
	}
	// Opening again applies nothing more and keeps the routes.
	s.Close()
	s = openOpts(t, opts)
	if rs, err := s.ListRoutes(ctx, ""); err != nil || len(rs) != 5 {
		t.Errorf("routes after reopening = %q, %v", routeStrings(rs), err)
	}
}

// TestMigrateFromDNSVersions upgrades databases as popgate left them at schema version 13
// (before issue 17's DNS tables), 14 (split zones, before upstreams and the query log) and
// 15 (before blocklists): what they held stays, and the tenants get zones, upstreams, a
// query log and blocklists.
func TestMigrateFromDNSVersions(t *testing.T) {
	for _, from := range []int{13, 14, 15} {
		t.Run(fmt.Sprint(from), func(t *testing.T) {
			ctx := context.Background()
			opts := Options{Path: filepath.Join(t.TempDir(), "popgate.db"), migrateTo: from}
			old := openOpts(t, opts)
			var version int
			if err := old.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != from {
				t.Fatalf("user_version = %d, %v; want %d", version, err, from)
			}
			if _, err := old.AddTenant(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
			if _, err := old.AddPeer(ctx, newPeer(t, "acme", "gw")); err != nil {
				t.Fatal(err)
			}
			if _, err := old.SetPeerSite(ctx, "acme", "gw", "office", pfxs("10.10.0.0/24")); err != nil {
				t.Fatal(err)
			}
			if _, err := old.AddRoute(ctx, "acme", pfx("10.10.0.0/24"), "site:office"); err != nil {
				t.Fatal(err)
			}
			if from >= dnsZonesVersion {
				if _, err := old.AddDNSZone(ctx, "acme", "corp.example", aps("10.10.0.53:53")); err != nil {
					t.Fatal(err)
				}
			}
			if from >= dnsUpstreamsVersion {
				if _, err := old.SetDNSUpstreams(ctx, "acme", []string{"tls://dns.quad9.net@9.9.9.9"}); err != nil {
					t.Fatal(err)
				}
				if _, err := old.EnableDNSLog(ctx, "acme", 0); err != nil {
					t.Fatal(err)
				}
			}
			snap, err := old.Snapshot(ctx)
			if err != nil || len(snap.Tenants) != 1 || snap.Blocklists != nil || (from < dnsUpstreamsVersion) != (snap.DNSUpstreams == nil) ||
				(from < dnsUpstreamsVersion) != (snap.DNSLogs == nil) || (from < dnsZonesVersion) != (snap.DNSZones == nil) {
				t.Fatalf("Snapshot at version %d = %+v, %v", from, snap, err)
			}
			if _, err := old.Blocklists(ctx, "acme"); err != nil {
				t.Errorf("Blocklists at version %d: %v, want none", from, err)
			}
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}

			opts.migrateTo = 0
			s := openOpts(t, opts)
			if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != s.version || version < blocklistsVersion {
				t.Fatalf("user_version after upgrade = %d, %v; want the newest, %d", version, err, s.version)
			}
			for _, check := range []string{"PRAGMA foreign_key_check", "PRAGMA integrity_check"} {
				var problem string
				if err := s.db.QueryRowContext(ctx, check).Scan(&problem); err != nil && !errors.Is(err, sql.ErrNoRows) {
					t.Fatalf("%s: %v", check, err)
				} else if err == nil && problem != "ok" {
					t.Errorf("%s after upgrade: %s", check, problem)
				}
			}
			wantZones := 0
			if from >= dnsZonesVersion {
				wantZones = 1 // kept
			}
			zones, err := s.DNSZones(ctx, "acme")
			if err != nil || len(zones) != wantZones {
				t.Errorf("zones after the upgrade = %+v, %v", zones, err)
			}
			if from < dnsZonesVersion {
				if _, err := s.AddDNSZone(ctx, "acme", "corp.example", aps("10.10.0.53:53")); err != nil {
					t.Fatal(err)
				}
			}
			wantUps := 0
			if from >= dnsUpstreamsVersion {
				wantUps = 1 // kept, and the log stays on
				if set, err := s.DNSLogSettings(ctx, "acme"); err != nil || !set.Enabled {
					t.Errorf("the query log after the upgrade = %+v, %v; want on", set, err)
				}
			}
			if ups, err := s.DNSUpstreams(ctx, "acme"); err != nil || len(ups) != wantUps {
				t.Errorf("upstreams after the upgrade = %+v, %v", ups, err)
			}
			if _, err := s.SetDNSUpstreams(ctx, "acme", []string{"tls://dns.quad9.net@9.9.9.9"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.EnableDNSLog(ctx, "acme", 0); err != nil {
				t.Fatal(err)
			}
			if bs, err := s.Blocklists(ctx, "acme"); err != nil || len(bs) != 0 {
				t.Errorf("blocklists after the upgrade = %+v, %v", bs, err)
			}
			ads := content(0, "ads.example.com")
			if _, err := s.AddBlocklist(ctx, NewBlocklist{Tenant: "acme", Name: "ads", Content: ads}); err != nil {
				t.Fatal(err)
			}
			snap, err = s.Snapshot(ctx)
			acme := snap.Tenants[0].ID
			if err != nil || len(snap.DNSZones) != 1 || snap.DNSZones[0].Name != "corp.example" || len(snap.DNSUpstreams[acme]) != 1 || !snap.DNSLogs[acme].Enabled {
				t.Errorf("Snapshot after the upgrade: zones %+v, upstreams %+v, logs %+v, %v", snap.DNSZones, snap.DNSUpstreams, snap.DNSLogs, err)
			}
			if len(snap.Blocklists) != 1 || snap.Blocklists[0].TenantID != acme || snap.Blocklists[0].SHA256 != ads.SHA256 || snap.Blocklists[0].Names != 1 {
				t.Errorf("Snapshot after the upgrade: blocklists %+v", snap.Blocklists)
			}
			if body, err := s.Blob(ctx, ads.SHA256); err != nil || string(body) != string(ads.Body) {
				t.Errorf("the list's content after the upgrade = %q, %v", body, err)
			}
		})
	}
}
