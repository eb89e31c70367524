package store

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func pfxs(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, pfx(s))
	}
	return ps
}

// rowCounts returns the number of rows of every table of desired state, to prove that a
// refused call wrote nothing.
func rowCounts(t testing.TB, s *Store) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"tenants", "peers", "peer_groups", "sites", "site_prefixes", "routes", "policies"} {
		var n int
		if err := s.db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%d ", table, n)
	}
	return b.String()
}

func TestSetPeerSite(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s, _ := openTest(t)
	s.now = clock.Now
	mustTenant(t, s, "acme")
	p := mustPeer(t, s, newPeer(t, "acme", "router1"))
	if p.Site != "" || p.SitePrefixes != nil {
		t.Fatalf("new peer is a site connector: %+v", p)
	}

	clock.Advance(time.Minute)
	given := pfxs("fd10::/64", "10.20.0.0/16", "10.10.0.0/24", "10.20.0.0/16")
	got, err := s.SetPeerSite(ctx, "acme", "router1", "office", given)
	if err != nil {
		t.Fatal(err)
	}
	want := p
	want.Site, want.SitePrefixes, want.UpdatedAt = "office", pfxs("10.10.0.0/24", "10.20.0.0/16", "fd10::/64"), clock.Now()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SetPeerSite = %+v\nwant %+v", got, want)
	}
	if given[0] != pfx("fd10::/64") {
		t.Errorf("SetPeerSite reordered the caller's slice: %v", given)
	}
	if stored, err := s.Peer(ctx, "acme", "router1"); err != nil || !reflect.DeepEqual(stored, got) {
		t.Errorf("stored %+v, %v", stored, err)
	}
	sites, err := s.Sites(ctx, "acme")
	wantSites := []Site{{TenantID: p.TenantID, TenantName: "acme", Name: "office", PeerID: p.ID, PeerName: "router1", Prefixes: want.SitePrefixes}}
	if err != nil || !reflect.DeepEqual(sites, wantSites) {
		t.Errorf("Sites = %+v, %v; want %+v", sites, err, wantSites)
	}

	// The same again changes nothing.
	clock.Advance(time.Minute)
	g0, _ := s.Generation(ctx)
	if again, err := s.SetPeerSite(ctx, "acme", "router1", "office", pfxs("fd10::/64", "10.10.0.0/24", "10.20.0.0/16")); err != nil || !reflect.DeepEqual(again, got) {
		t.Errorf("SetPeerSite with no change = %+v, %v", again, err)
	}
	if g, _ := s.Generation(ctx); g != g0 {
		t.Errorf("SetPeerSite with no change advanced the generation")
	}

	// New prefixes, one of them kept; then a rename (no route uses the site); then clear.
	for _, step := range []struct {
		site     string
		prefixes []netip.Prefix
	}{
		{"office", pfxs("10.10.0.0/24", "192.168.7.0/24")},
		{"hq", pfxs("10.10.0.0/24")},
		{"", nil},
		{"hq", pfxs("10.10.0.0/23")},
	} {
		clock.Advance(time.Minute)
		got, err := s.SetPeerSite(ctx, "acme", "router1", step.site, step.prefixes)
		if err != nil || got.Site != step.site || !slices.Equal(got.SitePrefixes, step.prefixes) || !got.UpdatedAt.Equal(clock.Now()) {
			t.Fatalf("SetPeerSite(%q, %v) = %+v, %v", step.site, step.prefixes, got, err)
		}
		if stored, err := s.Peer(ctx, "acme", "router1"); err != nil || !reflect.DeepEqual(stored, got) {
			t.Errorf("stored %+v, %v; returned %+v", stored, err, got)
		}
	}
	if sites, err := s.Sites(ctx, ""); err != nil || len(sites) != 1 || sites[0].Name != "hq" {
		t.Errorf("Sites(\"\") = %+v, %v", sites, err)
	}

	// RemovePeer takes the site and its prefixes with it.
	if _, err := s.RemovePeer(ctx, "acme", "router1"); err != nil {
		t.Fatal(err)
	}
	if sites, err := s.Sites(ctx, "acme"); err != nil || sites == nil || len(sites) != 0 {
		t.Errorf("Sites after RemovePeer = %#v, %v; want an empty list", sites, err)
	}
	if c := rowCounts(t, s); !strings.Contains(c, "sites=0 site_prefixes=0") {
		t.Errorf("rows left after RemovePeer: %s", c)
	}
	_, err = s.Sites(ctx, "nope")
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
}

func TestSetPeerSiteRefused(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	mustPeer(t, s, newPeer(t, "acme", "router1"))
	np := newPeer(t, "acme", "router2")
	np.Site, np.SitePrefixes = "branch", pfxs("10.20.0.0/16", "fd20::/48")
	mustPeer(t, s, np)
	_, ula := s.OverlayPrefixes()
	inULA := netip.PrefixFrom(ula.Addr(), 64)
	var many []netip.Prefix
	for i := range MaxSitePrefixes + 1 {
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100, byte(i), 0}), 24))
	}

	tests := []struct {
		name     string
		site     string
		prefixes []netip.Prefix
		kind     error
		msg      string
	}{
		{"prefixes without a name", "", pfxs("10.10.0.0/24"), ErrInvalid,
			`peer "router1" has site prefixes but no site name: name the site, or give no prefixes to make it an ordinary peer`},
		{"name without prefixes", "office", nil, ErrInvalid,
			`site "office" has no prefixes: give the LAN prefixes behind its connector, e.g. 10.10.0.0/24`},
		{"bad name", "my office", pfxs("10.10.0.0/24"), ErrInvalid,
			`site name "my office" is invalid: ' ' at position 3 is not allowed; use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"name too long", strings.Repeat("s", 65), pfxs("10.10.0.0/24"), ErrInvalid, `it has 65 characters, at most 64 are allowed`},
		{"invalid prefix", "office", []netip.Prefix{{}}, ErrInvalid,
			`site prefix is missing or invalid: give one such as 10.10.0.0/24 or fd00:10::/64`},
		{"host bits", "office", pfxs("10.10.0.1/24"), ErrInvalid, `site prefix 10.10.0.1/24 has host bits set: use 10.10.0.0/24`},
		{"host bits IPv6", "office", pfxs("fd10::1/64"), ErrInvalid, `site prefix fd10::1/64 has host bits set: use fd10::/64`},
		{"IPv4-mapped", "office", pfxs("::ffff:10.0.0.0/104"), ErrInvalid,
			`site prefix ::ffff:10.0.0.0/104 is an IPv4-mapped IPv6 prefix: use 10.0.0.0/8`},
		{"IPv4-mapped short", "office", []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("::ffff:0.0.0.0"), 95)}, ErrInvalid,
			`is an IPv4-mapped IPv6 address: write IPv4 prefixes as IPv4, e.g. 10.10.0.0/24`},
		{"IPv4 /0", "office", pfxs("0.0.0.0/0"), ErrInvalid,
			`site prefix 0.0.0.0/0 of site "office" covers every address: give the LAN prefixes behind its connector, e.g. 10.10.0.0/24`},
		{"IPv6 /0", "office", pfxs("::/0"), ErrInvalid, `site prefix ::/0 of site "office" covers every address`},
		{"inside the IPv4 overlay", "office", pfxs("100.64.8.0/24"), ErrInvalid,
			`site prefix 100.64.8.0/24 of site "office" overlaps the overlay network 100.64.0.0/10, whose addresses belong to peers: choose a LAN prefix outside it`},
		{"around the IPv4 overlay", "office", pfxs("100.0.0.0/8"), ErrInvalid,
			`site prefix 100.0.0.0/8 of site "office" overlaps the overlay network 100.64.0.0/10`},
		{"inside the IPv6 overlay", "office", []netip.Prefix{inULA}, ErrInvalid,
			fmt.Sprintf(`site prefix %s of site "office" overlaps the overlay network %s`, inULA, ula)},
		{"around the IPv6 overlay", "office", pfxs("fd00::/8"), ErrInvalid,
			fmt.Sprintf(`site prefix fd00::/8 of site "office" overlaps the overlay network %s`, ula)},
		{"too many", "office", many, ErrInvalid,
			`site "office" has 65 prefixes, at most 64 are allowed: summarise them into fewer, larger prefixes`},
		{"overlapping each other", "office", pfxs("10.1.0.0/16", "10.0.0.0/8"), ErrInvalid,
			`site prefixes 10.0.0.0/8 and 10.1.0.0/16 of site "office" overlap: give only 10.0.0.0/8, which contains 10.1.0.0/16`},
		{"name of another peer's site", "branch", pfxs("10.10.0.0/24"), ErrExists,
			`site "branch" already exists in tenant "acme", connected by peer "router2": choose another name, or remove the site from that peer first`},
		{"inside another site", "office", pfxs("10.10.0.0/24", "10.20.30.0/24"), ErrExists,
			`site prefix 10.20.30.0/24 of site "office" overlaps 10.20.0.0/16 of site "branch" (connector peer "router2") in tenant "acme": the sites of a tenant may not share addresses; choose another prefix, or change site "branch" first`},
		{"around another site", "office", pfxs("10.0.0.0/8"), ErrExists,
			`site prefix 10.0.0.0/8 of site "office" overlaps 10.20.0.0/16 of site "branch"`},
		{"same as another site", "office", pfxs("fd20::/48"), ErrExists,
			`site prefix fd20::/48 of site "office" overlaps fd20::/48 of site "branch"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rowCounts(t, s)
			_, err := s.SetPeerSite(ctx, "acme", "router1", tt.site, tt.prefixes)
			wantErr(t, err, tt.kind, tt.msg)
			// AddPeer checks the same way.
			np := newPeer(t, "acme", "router1")
			np.Name, np.Site, np.SitePrefixes = "router3", tt.site, tt.prefixes
			_, err = s.AddPeer(ctx, np)
			wantErr(t, err, tt.kind, strings.ReplaceAll(tt.msg, `"router1"`, `"router3"`))
			if after := rowCounts(t, s); after != before {
				t.Errorf("refused call wrote rows: %s → %s", before, after)
			}
		})
	}
	// 64 prefixes are fine.
	if _, err := s.SetPeerSite(ctx, "acme", "router1", "office", many[:MaxSitePrefixes]); err != nil {
		t.Errorf("SetPeerSite with %d prefixes: %v", MaxSitePrefixes, err)
	}
	_, err := s.SetPeerSite(ctx, "acme", "ghost", "", nil)
	wantErr(t, err, ErrNotFound, `peer "ghost" not found in tenant "acme"`)
	_, err = s.SetPeerSite(ctx, "nope", "router1", "", nil)
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
}

func TestSitesPerTenant(t *testing.T) {
	// Each tenant is its own routing domain: two tenants may put the same prefix, and the
	// same site name, behind their own connectors. Within one tenant they may not.
	ctx := context.Background()
	s, _ := openTest(t)
	for _, tn := range []string{"acme", "globex"} {
		mustTenant(t, s, tn)
		np := newPeer(t, tn, "router")
		np.Site, np.SitePrefixes = "office", pfxs("10.10.0.0/24", "fd10::/64")
		p := mustPeer(t, s, np)
		if p.Site != "office" || len(p.SitePrefixes) != 2 {
			t.Fatalf("AddPeer in %s = %+v", tn, p)
		}
		if _, err := s.AddRoute(ctx, tn, pfx("10.10.0.0/24"), "site:office"); err != nil {
			t.Fatalf("AddRoute in %s: %v", tn, err)
		}
	}
	sites, err := s.Sites(ctx, "")
	if err != nil || len(sites) != 2 || sites[0].TenantName != "acme" || sites[1].TenantName != "globex" ||
		!slices.Equal(sites[0].Prefixes, sites[1].Prefixes) {
		t.Errorf("Sites(\"\") = %+v, %v", sites, err)
	}
	np := newPeer(t, "acme", "router2")
	np.Site, np.SitePrefixes = "branch", pfxs("10.10.0.128/25")
	_, err = s.AddPeer(ctx, np)
	wantErr(t, err, ErrExists, `site prefix 10.10.0.128/25 of site "branch" overlaps 10.10.0.0/24 of site "office" (connector peer "router") in tenant "acme"`)
}

func TestSiteRemovalBlockedByRoutes(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	np := newPeer(t, "acme", "router1")
	np.Site, np.SitePrefixes = "office", pfxs("10.10.0.0/24")
	mustPeer(t, s, np)
	if _, err := s.AddRoute(ctx, "acme", pfx("10.10.0.0/24"), "site:office"); err != nil {
		t.Fatal(err)
	}

	const one = `route 10.10.0.0/24 uses site "office" of tenant "acme": remove it first (popgate route remove --tenant acme 10.10.0.0/24)`
	tests := []struct {
		name string
		call func() error
		msg  string
	}{
		{"clear", func() error { _, err := s.SetPeerSite(ctx, "acme", "router1", "", nil); return err }, one},
		{"rename", func() error {
			_, err := s.SetPeerSite(ctx, "acme", "router1", "hq", pfxs("10.10.0.0/24"))
			return err
		}, one},
		{"remove the peer", func() error { _, err := s.RemovePeer(ctx, "acme", "router1"); return err }, one},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rowCounts(t, s)
			wantErr(t, tt.call(), ErrInvalid, tt.msg)
			if after := rowCounts(t, s); after != before {
				t.Errorf("refused call wrote rows: %s → %s", before, after)
			}
		})
	}
	// Changing the prefixes keeps the site, so the routes may stay.
	if _, err := s.SetPeerSite(ctx, "acme", "router1", "office", pfxs("10.10.0.0/23", "fd10::/64")); err != nil {
		t.Errorf("changing the prefixes of a site in use: %v", err)
	}
	// More routes: all are named, longest first.
	for _, p := range []string{"0.0.0.0/1", "fd99::/64", "192.168.0.0/16", "10.99.0.0/16", "172.16.0.0/12", "10.98.0.0/16"} {
		if _, err := s.AddRoute(ctx, "acme", pfx(p), "site:office"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.RemovePeer(ctx, "acme", "router1")
	wantErr(t, err, ErrInvalid, `routes fd99::/64, 10.10.0.0/24, 10.98.0.0/16, 10.99.0.0/16, 192.168.0.0/16 and 2 more use site "office" of tenant "acme": remove them first (popgate route remove --tenant acme fd99::/64, and so on)`)

	// The schema refuses it too, even by hand.
	if _, err := s.db.ExecContext(ctx, "DELETE FROM peers WHERE name = 'router1'"); err == nil {
		t.Error("deleting a connector whose site routes use succeeded")
	}
	if _, err := s.db.ExecContext(ctx, "UPDATE sites SET name = 'hq'"); err == nil {
		t.Error("renaming a site that routes use succeeded")
	}

	// Once the routes are gone, the site can go.
	rs, err := s.ListRoutes(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Via == "site:office" {
			if _, err := s.RemoveRoute(ctx, "acme", r.Prefix); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.SetPeerSite(ctx, "acme", "router1", "hq", pfxs("10.10.0.0/24")); err != nil {
		t.Errorf("rename after removing the routes: %v", err)
	}
	if _, err := s.RemovePeer(ctx, "acme", "router1"); err != nil {
		t.Errorf("RemovePeer after removing the routes: %v", err)
	}
}
