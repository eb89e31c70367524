package store

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func routeStrings(rs []Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %s %s", r.TenantName, r.Prefix, r.Via))
	}
	return out
}

func TestDefaultRoutesOfNewTenant(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s, _ := openTest(t)
	s.now = clock.Now
	acme := mustTenant(t, s, "acme")
	rs, err := s.ListRoutes(ctx, "acme")
	want := []Route{
		{TenantID: acme.ID, TenantName: "acme", Prefix: pfx("0.0.0.0/0"), Via: "internet", CreatedAt: clock.Now()},
		{TenantID: acme.ID, TenantName: "acme", Prefix: pfx("::/0"), Via: "internet", CreatedAt: clock.Now()},
	}
	if err != nil || !reflect.DeepEqual(rs, want) {
		t.Errorf("routes of a new tenant = %+v, %v\nwant %+v", rs, err, want)
	}
}

func TestRoutes(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s, _ := openTest(t)
	s.now = clock.Now
	acme := mustTenant(t, s, "acme")
	mustTenant(t, s, "beta")
	np := newPeer(t, "acme", "router")
	np.Site, np.SitePrefixes = "office", pfxs("10.10.0.0/24")
	mustPeer(t, s, np)

	clock.Advance(time.Minute)
	r, err := s.AddRoute(ctx, "acme", pfx("10.10.0.0/24"), "site:office")
	want := Route{TenantID: acme.ID, TenantName: "acme", Prefix: pfx("10.10.0.0/24"), Via: "site:office", CreatedAt: clock.Now()}
	if err != nil || r != want {
		t.Fatalf("AddRoute = %+v, %v; want %+v", r, err, want)
	}
	for _, a := range []struct{ tenant, prefix, via string }{
		{"acme", "10.0.0.0/8", "internet"},
		{"acme", "fd10::/64", "site:office"},
		{"acme", "10.10.0.128/25", "internet"}, // longer than the site's route: an exception
		{"acme", "1.1.1.1/32", "internet"},
		{"acme", "100.0.0.0/8", "site:office"}, // around the overlay is fine: peers' addresses are longer
		{"beta", "10.10.0.0/24", "internet"},   // another tenant, the same prefix
	} {
		if _, err := s.AddRoute(ctx, a.tenant, pfx(a.prefix), a.via); err != nil {
			t.Fatalf("AddRoute(%v): %v", a, err)
		}
	}
	all, err := s.ListRoutes(ctx, "")
	wantAll := []string{
		"acme fd10::/64 site:office",
		"acme 1.1.1.1/32 internet",
		"acme 10.10.0.128/25 internet",
		"acme 10.10.0.0/24 site:office",
		"acme 10.0.0.0/8 internet",
		"acme 100.0.0.0/8 site:office",
		"acme 0.0.0.0/0 internet",
		"acme ::/0 internet",
		"beta 10.10.0.0/24 internet",
		"beta 0.0.0.0/0 internet",
		"beta ::/0 internet",
	}
	if got := routeStrings(all); err != nil || !reflect.DeepEqual(got, wantAll) {
		t.Errorf("ListRoutes(\"\") = %q, %v\nwant %q", got, err, wantAll)
	}
	beta, err := s.ListRoutes(ctx, "beta")
	if got := routeStrings(beta); err != nil || !reflect.DeepEqual(got, wantAll[8:]) {
		t.Errorf("ListRoutes(beta) = %q, %v", got, err)
	}

	removed, err := s.RemoveRoute(ctx, "acme", pfx("10.10.0.0/24"))
	if err != nil || removed != want {
		t.Errorf("RemoveRoute = %+v, %v; want %+v", removed, err, want)
	}
	_, err = s.RemoveRoute(ctx, "acme", pfx("10.10.0.0/24"))
	wantErr(t, err, ErrNotFound, `tenant "acme" has no route for 10.10.0.0/24: list its routes with 'popgate route list --tenant acme'`)
	// The default routes may go too.
	for _, p := range []string{"0.0.0.0/0", "::/0"} {
		if _, err := s.RemoveRoute(ctx, "beta", pfx(p)); err != nil {
			t.Errorf("RemoveRoute(beta, %s): %v", p, err)
		}
	}
	if rs, err := s.ListRoutes(ctx, "beta"); err != nil || len(rs) != 1 {
		t.Errorf("ListRoutes(beta) = %v, %v", routeStrings(rs), err)
	}
	mustTenant(t, s, "empty")
	if _, err := s.RemoveRoute(ctx, "empty", pfx("0.0.0.0/0")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveRoute(ctx, "empty", pfx("::/0")); err != nil {
		t.Fatal(err)
	}
	if rs, err := s.ListRoutes(ctx, "empty"); err != nil || rs == nil || len(rs) != 0 {
		t.Errorf("ListRoutes of a tenant without routes = %#v, %v; want an empty list", rs, err)
	}
}

func TestAddRouteRefused(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "beta")
	np := newPeer(t, "beta", "router")
	np.Site, np.SitePrefixes = "office", pfxs("10.10.0.0/24")
	mustPeer(t, s, np)
	if _, err := s.AddRoute(ctx, "acme", pfx("10.0.0.0/8"), "internet"); err != nil {
		t.Fatal(err)
	}
	_, ula := s.OverlayPrefixes()
	inULA := netip.PrefixFrom(ula.Addr(), 64)

	tests := []struct {
		name   string
		tenant string
		prefix netip.Prefix
		via    string
		kind   error
		msg    string
	}{
		{"host bits", "acme", pfx("10.10.0.1/24"), "internet", ErrInvalid,
			`route prefix 10.10.0.1/24 has host bits set: use 10.10.0.0/24`},
		{"host bits of a default route", "acme", pfx("1.2.3.4/0"), "internet", ErrInvalid,
			`route prefix 1.2.3.4/0 has host bits set: use 0.0.0.0/0`},
		{"invalid prefix", "acme", netip.Prefix{}, "internet", ErrInvalid,
			`route prefix is missing or invalid: give one such as 10.10.0.0/24 or fd00:10::/64`},
		{"IPv4-mapped", "acme", pfx("::ffff:10.20.0.0/112"), "internet", ErrInvalid,
			`route prefix ::ffff:10.20.0.0/112 is an IPv4-mapped IPv6 prefix: use 10.20.0.0/16`},
		{"inside the IPv4 overlay", "acme", pfx("100.64.1.0/24"), "internet", ErrInvalid,
			`route prefix 100.64.1.0/24 lies inside the overlay network 100.64.0.0/10, whose addresses belong to peers: route a prefix outside it`},
		{"the IPv4 overlay", "acme", pfx("100.64.0.0/10"), "internet", ErrInvalid, `lies inside the overlay network 100.64.0.0/10`},
		{"inside the IPv6 overlay", "acme", inULA, "internet", ErrInvalid,
			fmt.Sprintf(`route prefix %s lies inside the overlay network %s`, inULA, ula)},
		{"empty via", "acme", pfx("10.20.0.0/16"), "", ErrInvalid,
			`route via "" is invalid: use "internet", "site:" followed by the name of one of the tenant's sites (e.g. "site:office"), or exit nodes in order (e.g. "exit:x1,exit:x2")`},
		{"via upper case", "acme", pfx("10.20.0.0/16"), "Internet", ErrInvalid, `route via "Internet" is invalid: use "internet", "site:"`},
		{"via site without name", "acme", pfx("10.20.0.0/16"), "site:", ErrInvalid,
			`route via "site:" is invalid: site name "" is invalid: it is empty`},
		{"via bad site name", "acme", pfx("10.20.0.0/16"), "site:my office", ErrInvalid,
			`route via "site:my office" is invalid: site name "my office" is invalid: ' ' at position 3 is not allowed`},
		{"via unknown kind", "acme", pfx("10.20.0.0/16"), "gw:fra", ErrInvalid, `route via "gw:fra" is invalid`},
		{"missing site", "acme", pfx("10.20.0.0/16"), "site:office", ErrNotFound,
			`site "office" not found in tenant "acme": make one of its peers the site's connector first, or route via internet`},
		{"another tenant's site", "acme", pfx("10.10.0.0/24"), "site:office", ErrNotFound, `site "office" not found in tenant "acme"`},
		{"duplicate", "acme", pfx("10.0.0.0/8"), "internet", ErrExists,
			`tenant "acme" already has a route for 10.0.0.0/8 (via internet): remove it first to send 10.0.0.0/8 elsewhere`},
		{"duplicate default", "acme", pfx("::/0"), "internet", ErrExists, `tenant "acme" already has a route for ::/0 (via internet)`},
		{"unknown tenant", "nope", pfx("10.20.0.0/16"), "internet", ErrNotFound, `tenant "nope" not found`},
		{"bad tenant name", "No pe", pfx("10.20.0.0/16"), "internet", ErrInvalid, `tenant name "No pe" is invalid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rowCounts(t, s)
			_, err := s.AddRoute(ctx, tt.tenant, tt.prefix, tt.via)
			wantErr(t, err, tt.kind, tt.msg)
			if after := rowCounts(t, s); after != before {
				t.Errorf("refused AddRoute wrote rows: %s → %s", before, after)
			}
		})
	}
	_, err := s.RemoveRoute(ctx, "acme", pfx("10.0.0.1/8"))
	wantErr(t, err, ErrInvalid, `route prefix 10.0.0.1/8 has host bits set: use 10.0.0.0/8`)
	_, err = s.RemoveRoute(ctx, "nope", pfx("10.0.0.0/8"))
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
	_, err = s.ListRoutes(ctx, "nope")
	wantErr(t, err, ErrNotFound, `tenant "nope" not found`)
}

// joinNode joins a node named name with roles through a fresh token.
func joinNode(t *testing.T, s *Store, name, roles string, pin byte) Node {
	t.Helper()
	tok, secret := joinToken(t, s, NewJoinToken{Roles: roles, ExpiresAt: s.now().Add(time.Hour)})
	n, err := s.RedeemJoinToken(context.Background(), Redemption{TokenID: tok.ID, Secret: secret, Name: name, Pin: [32]byte{pin}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRoutesViaExits: a route lists exit nodes in order; only nodes with the exit role are
// accepted; removing a node drops it from every route, and removes a route it was the last
// exit of, in one generation.
func TestRoutesViaExits(t *testing.T) {
	ctx := WithActor(context.Background(), Actor{Name: "root"})
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "bravo")
	joinNode(t, s, "x1", "exit", 1)
	joinNode(t, s, "x2", "pop,exit", 2)
	joinNode(t, s, "p1", "pop", 3)

	_, err := s.AddRoute(ctx, "acme", pfx("10.0.0.0/8"), "exit:x9")
	wantErr(t, err, ErrNotFound, `exit node "x9" not found`)
	_, err = s.AddRoute(ctx, "acme", pfx("10.0.0.0/8"), "exit:x1,exit:p1")
	wantErr(t, err, ErrInvalid, `node "p1" is not an exit (its roles: pop)`)
	_, err = s.AddRoute(ctx, "acme", pfx("10.0.0.0/8"), "exit:x1,exit:x1")
	wantErr(t, err, ErrInvalid, `names exit "x1" twice`)
	if _, err := s.AddRoute(ctx, "acme", pfx("10.0.0.0/8"), "exit:x2,exit:x1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRoute(ctx, "bravo", pfx("192.0.2.0/24"), "exit:x1"); err != nil {
		t.Fatal(err)
	}
	rs, err := s.ListRoutes(ctx, "")
	want := []string{"acme 10.0.0.0/8 exit:x2,exit:x1", "acme 0.0.0.0/0 internet", "acme ::/0 internet",
		"bravo 192.0.2.0/24 exit:x1", "bravo 0.0.0.0/0 internet", "bravo ::/0 internet"}
	if got := routeStrings(rs); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %q, %v\nwant %q", got, err, want)
	}
	snap, err := s.Snapshot(ctx)
	if got := routeStrings(snap.Routes); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("snapshot routes = %q, %v", got, err)
	}

	gen, _ := s.Generation(ctx)
	_, dropped, err := s.RemoveNode(ctx, "x1")
	if err != nil {
		t.Fatal(err)
	}
	wantDropped := []ExitDropped{{Route: rs[0], Removed: false}, {Route: rs[3], Removed: true}}
	wantDropped[0].Route.Via = "exit:x2"
	if !reflect.DeepEqual(dropped, wantDropped) {
		t.Errorf("dropped = %+v\nwant %+v", dropped, wantDropped)
	}
	if g, _ := s.Generation(ctx); g != gen+1 {
		t.Errorf("generation %d → %d, want one step", gen, g)
	}
	rs, err = s.ListRoutes(ctx, "")
	want = []string{"acme 10.0.0.0/8 exit:x2", "acme 0.0.0.0/0 internet", "acme ::/0 internet", "bravo 0.0.0.0/0 internet", "bravo ::/0 internet"}
	if got := routeStrings(rs); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("routes after removing x1 = %q, %v\nwant %q", got, err, want)
	}
	entries, _, err := s.ListAudit(ctx, AuditQuery{Tenant: "bravo", Action: "route"})
	if err != nil || len(entries) == 0 || entries[0].Action != "route.remove" {
		t.Errorf("bravo's audit: %+v, %v", entries, err)
	}
	// A removed tenant takes its routes' exits along.
	if err := s.RemoveTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, "route_exits"); n != 0 {
		t.Errorf("%d route exits left", n)
	}
}
