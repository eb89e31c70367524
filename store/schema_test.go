package store

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestSchemaRefusesBadRows writes rows with raw SQL, bypassing every check in Go, to prove
// the schema's own constraints refuse them.
func TestSchemaRefusesBadRows(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	existing := mustPeer(t, s, newPeer(t, "acme", "existing"))
	existingV6 := existing.IPv6.As16()

	const v4 = 0x64400010 // 100.64.0.16
	goodV6 := withLow32(s.ula, v4)
	topV6 := withLow32(s.ula, 0x647FFFFE)
	sealed, err := s.sealKey(mustKey(t), peerAD(Key{}))
	if err != nil {
		t.Fatal(err)
	}
	pub := mustKey(t).PublicKey()
	goodPeer := func() map[string]any {
		return map[string]any{
			"tenant_id": acme.ID, "name": "ok", "public_key": pub[:], "private_key_enc": sealed,
			"ipv4": v4, "ipv6": goodV6[:], "enabled": 1, "created_at": 1, "updated_at": 1,
		}
	}
	with := func(row map[string]any, col string, v any) map[string]any { row[col] = v; return row }
	mutate := func(b []byte, i int, v byte) []byte { c := slices.Clone(b); c[i] = v; return c }

	tests := []struct {
		name  string
		table string
		row   map[string]any
	}{
		{"tenant name upper case", "tenants", map[string]any{"name": "Acme", "created_at": 1}},
		{"tenant name empty", "tenants", map[string]any{"name": "", "created_at": 1}},
		{"tenant name leading hyphen", "tenants", map[string]any{"name": "-acme", "created_at": 1}},
		{"tenant name underscore", "tenants", map[string]any{"name": "ac_me", "created_at": 1}},
		{"tenant name space", "tenants", map[string]any{"name": "ac me", "created_at": 1}},
		{"tenant name too long", "tenants", map[string]any{"name": strings.Repeat("a", 33), "created_at": 1}},
		{"tenant name NULL", "tenants", map[string]any{"name": nil, "created_at": 1}},
		{"tenant name blob", "tenants", map[string]any{"name": []byte("blob"), "created_at": 1}},
		{"tenant name duplicate", "tenants", map[string]any{"name": "acme", "created_at": 1}},
		{"tenant created_at zero", "tenants", map[string]any{"name": "new", "created_at": 0}},
		{"tenant created_at text", "tenants", map[string]any{"name": "new", "created_at": "yesterday"}},
		{"tenant max_flows_per_peer 0", "tenants", map[string]any{"name": "new", "created_at": 1, "max_flows_per_peer": 0}},
		{"tenant max_flows_per_peer too large", "tenants", map[string]any{"name": "new", "created_at": 1, "max_flows_per_peer": 1<<20 + 1}},
		{"tenant max_flows negative", "tenants", map[string]any{"name": "new", "created_at": 1, "max_flows": -5}},
		{"tenant max_flows text", "tenants", map[string]any{"name": "new", "created_at": 1, "max_flows": "many"}},

		{"peer unknown tenant", "peers", with(goodPeer(), "tenant_id", 9999)},
		{"peer name empty", "peers", with(goodPeer(), "name", "")},
		{"peer name leading dot", "peers", with(goodPeer(), "name", ".ok")},
		{"peer name slash", "peers", with(goodPeer(), "name", "a/b")},
		{"peer name too long", "peers", with(goodPeer(), "name", strings.Repeat("a", 65))},
		{"peer name NULL", "peers", with(goodPeer(), "name", nil)},
		{"peer name duplicate in tenant", "peers", with(goodPeer(), "name", "existing")},
		{"public key short", "peers", with(goodPeer(), "public_key", pub[:31])},
		{"public key long", "peers", with(goodPeer(), "public_key", append(slices.Clone(pub[:]), 0))},
		{"public key text", "peers", with(goodPeer(), "public_key", pub.String())},
		{"public key NULL", "peers", with(goodPeer(), "public_key", nil)},
		{"public key duplicate", "peers", with(goodPeer(), "public_key", existing.PublicKey[:])},
		{"sealed key short", "peers", with(goodPeer(), "private_key_enc", sealed[:72])},
		{"sealed key unknown version", "peers", with(goodPeer(), "private_key_enc", mutate(sealed, 0, 2))},
		{"ipv4 network address", "peers", with(goodPeer(), "ipv4", 0x64400000)},
		{"ipv4 gateway", "peers", with(goodPeer(), "ipv4", 0x64400001)},
		{"ipv4 broadcast", "peers", with(goodPeer(), "ipv4", 0x647FFFFF)},
		{"ipv4 below the /10", "peers", with(goodPeer(), "ipv4", 0x643FFFFF)},
		{"ipv4 above the /10", "peers", with(goodPeer(), "ipv4", 0x64800002)},
		{"ipv4 negative", "peers", with(goodPeer(), "ipv4", -1)},
		{"ipv4 dotted text", "peers", with(goodPeer(), "ipv4", "100.64.0.16")},
		{"ipv4 NULL", "peers", with(goodPeer(), "ipv4", nil)},
		{"ipv4 duplicate", "peers", with(with(goodPeer(), "ipv4", 0x64400002), "ipv6", existingV6[:])},
		{"ipv6 short", "peers", with(goodPeer(), "ipv6", goodV6[:15])},
		{"ipv6 not ULA", "peers", with(goodPeer(), "ipv6", mutate(goodV6[:], 0, 0xfc))},
		{"ipv6 subnet not 0", "peers", with(goodPeer(), "ipv6", mutate(goodV6[:], 7, 1))},
		{"ipv6 interface ID high bits", "peers", with(goodPeer(), "ipv6", mutate(goodV6[:], 8, 1))},
		{"ipv6 does not match ipv4", "peers", with(goodPeer(), "ipv6", mutate(goodV6[:], 15, 0x11))},
		{"ipv6 duplicate", "peers", with(goodPeer(), "ipv6", existingV6[:])},
		{"ipv6 text", "peers", with(goodPeer(), "ipv6", "fd00::6440:10")},
		{"enabled 2", "peers", with(goodPeer(), "enabled", 2)},
		{"enabled NULL", "peers", with(goodPeer(), "enabled", nil)},
		{"created_at zero", "peers", with(goodPeer(), "created_at", 0)},
		{"updated_at NULL", "peers", with(goodPeer(), "updated_at", nil)},

		{"setting key upper case", "settings", map[string]any{"key": "Node.x", "value": "v", "updated_at": 1}},
		{"setting key digit first", "settings", map[string]any{"key": "1x", "value": "v", "updated_at": 1}},
		{"setting key space", "settings", map[string]any{"key": "a b", "value": "v", "updated_at": 1}},
		{"setting key empty", "settings", map[string]any{"key": "", "value": "v", "updated_at": 1}},
		{"setting key too long", "settings", map[string]any{"key": strings.Repeat("a", 65), "value": "v", "updated_at": 1}},
		{"setting value NULL", "settings", map[string]any{"key": "ui.x", "value": nil, "updated_at": 1}},
		{"setting duplicate", "settings", map[string]any{"key": settingIPv6Prefix, "value": "v", "updated_at": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := insertRow(ctx, s, tt.table, tt.row)
			if err == nil {
				t.Fatalf("INSERT INTO %s %v succeeded; the schema must refuse it", tt.table, tt.row)
			}
			// A constraint refused it, not a mistake in the statement.
			if msg := err.Error(); !strings.Contains(msg, "constraint failed") && !strings.Contains(msg, "cannot store") {
				t.Errorf("refused for another reason: %v", err)
			}
			t.Log(err)
		})
	}

	// The controls: the good rows are accepted, so the failures above are the constraints'.
	for _, c := range []struct {
		table string
		row   map[string]any
	}{
		{"tenants", map[string]any{"name": "0k-tenant-", "created_at": 1}},
		{"tenants", map[string]any{"name": "limited", "created_at": 1, "max_flows_per_peer": 1, "max_flows": 1 << 20}},
		{"peers", goodPeer()},
		{"peers", map[string]any{ // a user-brought key: no sealed key
			"tenant_id": acme.ID, "name": "A.b_c-9", "public_key": make([]byte, 32), "private_key_enc": nil,
			"ipv4": 0x647FFFFE, "ipv6": topV6[:], "enabled": 0, "created_at": 1, "updated_at": 1,
		}},
		{"settings", map[string]any{"key": "ui.theme-2_b", "value": "", "updated_at": 1}},
	} {
		if err := insertRow(ctx, s, c.table, c.row); err != nil {
			t.Errorf("control row %v refused: %v", c.row, err)
		}
	}

	// ON DELETE RESTRICT: a tenant with peers cannot be deleted, even directly.
	if _, err := s.db.ExecContext(ctx, "DELETE FROM tenants WHERE id = ?", acme.ID); err == nil {
		t.Error("deleting a tenant with peers succeeded")
	}
	// Nor can a peer be moved to a tenant that does not exist.
	if _, err := s.db.ExecContext(ctx, "UPDATE peers SET tenant_id = 9999"); err == nil {
		t.Error("moving peers to a missing tenant succeeded")
	}
}

func insertRow(ctx context.Context, s *Store, table string, row map[string]any) error {
	cols := slices.Sorted(maps.Keys(row))
	args := make([]any, len(cols))
	for i, c := range cols {
		args[i] = row[c]
	}
	q := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (?" + strings.Repeat(", ?", len(cols)-1) + ")"
	_, err := s.db.ExecContext(ctx, q, args...)
	return err
}

// TestSchemaRefusesBadNetworkRows does for the tables of groups, sites, routes, policies and
// the generation what TestSchemaRefusesBadRows does for tenants and peers.
func TestSchemaRefusesBadNetworkRows(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	beta := mustTenant(t, s, "beta")
	np := newPeer(t, "acme", "router")
	np.Groups, np.Site, np.SitePrefixes = []string{"eng"}, "office", pfxs("10.10.0.0/24")
	router := mustPeer(t, s, np)
	plain := mustPeer(t, s, newPeer(t, "acme", "plain"))
	if err := s.SetPolicy(ctx, "acme", "default deny\n", 0); err != nil {
		t.Fatal(err)
	}

	v4 := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	with := func(row map[string]any, col string, v any) map[string]any { row[col] = v; return row }
	group := func() map[string]any { return map[string]any{"peer_id": plain.ID, "name": "eng"} }
	site := func() map[string]any {
		return map[string]any{"peer_id": plain.ID, "tenant_id": acme.ID, "name": "branch"}
	}
	prefix := func() map[string]any {
		return map[string]any{"tenant_id": acme.ID, "site": "office", "addr": v4("10.20.0.0"), "bits": 16}
	}
	route := func() map[string]any {
		return map[string]any{"tenant_id": acme.ID, "addr": v4("10.20.0.0"), "bits": 16,
			"via_kind": "internet", "via_site": nil, "created_at": 1}
	}
	policy := func() map[string]any { return map[string]any{"tenant_id": beta.ID, "source": "", "updated_at": 1} }
	if _, err := s.db.ExecContext(ctx, "INSERT INTO dns_zones (tenant_id, zone, created_at) VALUES (?, 'corp.example', 1)", acme.ID); err != nil {
		t.Fatal(err)
	}
	zone := func() map[string]any {
		return map[string]any{"tenant_id": acme.ID, "zone": "lab.example", "created_at": 1}
	}
	server := func() map[string]any {
		return map[string]any{"tenant_id": acme.ID, "zone": "corp.example", "position": 0, "addr": v4("10.10.0.53"), "port": 53}
	}

	tests := []struct {
		name  string
		table string
		row   map[string]any
	}{
		{"split_tunnel 2", "tenants", map[string]any{"name": "new", "created_at": 1, "split_tunnel": 2}},
		{"split_tunnel NULL", "tenants", map[string]any{"name": "new", "created_at": 1, "split_tunnel": nil}},

		{"group of unknown peer", "peer_groups", with(group(), "peer_id", 9999)},
		{"group name empty", "peer_groups", with(group(), "name", "")},
		{"group name leading dot", "peer_groups", with(group(), "name", ".eng")},
		{"group name colon", "peer_groups", with(group(), "name", "group:eng")},
		{"group name too long", "peer_groups", with(group(), "name", strings.Repeat("g", 65))},
		{"group name NULL", "peer_groups", with(group(), "name", nil)},
		{"group name blob", "peer_groups", with(group(), "name", []byte("eng"))},
		{"group duplicate", "peer_groups", with(group(), "peer_id", router.ID)},

		{"site of unknown peer", "sites", with(site(), "peer_id", 9999)},
		{"site in another tenant than its peer", "sites", with(site(), "tenant_id", beta.ID)},
		{"site of unknown tenant", "sites", with(site(), "tenant_id", 9999)},
		{"second site of a peer", "sites", with(site(), "peer_id", router.ID)},
		{"site name duplicate in tenant", "sites", with(site(), "name", "office")},
		{"site name space", "sites", with(site(), "name", "my office")},
		{"site name empty", "sites", with(site(), "name", "")},
		{"site name NULL", "sites", with(site(), "name", nil)},

		{"prefix of unknown site", "site_prefixes", with(prefix(), "site", "branch")},
		{"prefix of a site of another tenant", "site_prefixes", with(prefix(), "tenant_id", beta.ID)},
		{"prefix with host bits", "site_prefixes", with(prefix(), "addr", v4("10.20.0.1"))},
		{"prefix with host bits in the boundary nibble", "site_prefixes", with(with(prefix(), "addr", v4("10.20.128.0")), "bits", 15)},
		{"prefix IPv6 host bits", "site_prefixes", with(with(prefix(), "addr", v4("fd10::1")), "bits", 64)},
		{"prefix /0", "site_prefixes", with(with(prefix(), "addr", v4("0.0.0.0")), "bits", 0)},
		{"prefix /33", "site_prefixes", with(prefix(), "bits", 33)},
		{"prefix /129", "site_prefixes", with(with(prefix(), "addr", v4("fd10::")), "bits", 129)},
		{"prefix negative bits", "site_prefixes", with(prefix(), "bits", -8)},
		{"prefix address 5 bytes", "site_prefixes", with(prefix(), "addr", []byte{10, 20, 0, 0, 0})},
		{"prefix address text", "site_prefixes", with(prefix(), "addr", "10.20.0.0")},
		{"prefix address NULL", "site_prefixes", with(prefix(), "addr", nil)},
		{"prefix IPv4-mapped", "site_prefixes", with(with(prefix(), "addr", netip.MustParseAddr("::ffff:10.20.0.0").AsSlice()), "bits", 112)},
		{"prefix address taken in tenant", "site_prefixes", with(prefix(), "addr", v4("10.10.0.0"))},
		{"prefix bits text", "site_prefixes", with(prefix(), "bits", "sixteen")},

		{"route of unknown tenant", "routes", with(route(), "tenant_id", 9999)},
		{"route with host bits", "routes", with(route(), "addr", v4("10.20.0.1"))},
		{"route default with host bits", "routes", with(with(route(), "addr", v4("1.0.0.0")), "bits", 0)},
		{"route /33", "routes", with(route(), "bits", 33)},
		{"route IPv4-mapped", "routes", with(with(route(), "addr", netip.MustParseAddr("::ffff:10.20.0.0").AsSlice()), "bits", 112)},
		{"route duplicate", "routes", with(with(route(), "addr", v4("0.0.0.0")), "bits", 0)},
		{"route via unknown kind", "routes", with(route(), "via_kind", "nexthop")},
		{"route via site without a site", "routes", with(route(), "via_kind", "site")},
		{"route via internet with a site", "routes", with(route(), "via_site", "office")},
		{"route via unknown site", "routes", with(with(route(), "via_kind", "site"), "via_site", "branch")},
		{"route via another tenant's site", "routes", with(with(with(route(), "tenant_id", beta.ID), "via_kind", "site"), "via_site", "office")},
		{"route created_at 0", "routes", with(route(), "created_at", 0)},

		{"policy of unknown tenant", "policies", with(policy(), "tenant_id", 9999)},
		{"policy duplicate", "policies", with(policy(), "tenant_id", acme.ID)},
		{"policy too big", "policies", with(policy(), "source", strings.Repeat("x", MaxPolicySize+1))},
		{"policy NULL", "policies", with(policy(), "source", nil)},
		{"policy blob", "policies", with(policy(), "source", []byte("default deny"))},
		{"policy updated_at 0", "policies", with(policy(), "updated_at", 0)},

		{"zone of unknown tenant", "dns_zones", with(zone(), "tenant_id", 9999)},
		{"zone upper case", "dns_zones", with(zone(), "zone", "Lab.example")},
		{"zone final dot", "dns_zones", with(zone(), "zone", "lab.example.")},
		{"zone leading dot", "dns_zones", with(zone(), "zone", ".lab.example")},
		{"zone empty label", "dns_zones", with(zone(), "zone", "lab..example")},
		{"zone space", "dns_zones", with(zone(), "zone", "lab example")},
		{"zone empty", "dns_zones", with(zone(), "zone", "")},
		{"zone duplicate", "dns_zones", with(zone(), "zone", "corp.example")},
		{"zone created_at 0", "dns_zones", with(zone(), "created_at", 0)},
		{"server of unknown zone", "dns_zone_servers", with(server(), "zone", "lab.example")},
		{"server of another tenant's zone", "dns_zone_servers", with(server(), "tenant_id", beta.ID)},
		{"server position 4", "dns_zone_servers", with(server(), "position", 4)},
		{"server address 5 bytes", "dns_zone_servers", with(server(), "addr", []byte{10, 10, 0, 53, 0})},
		{"server IPv4-mapped", "dns_zone_servers", with(server(), "addr", netip.MustParseAddr("::ffff:10.10.0.53").AsSlice())},
		{"server port 0", "dns_zone_servers", with(server(), "port", 0)},
		{"server port 65536", "dns_zone_servers", with(server(), "port", 65536)},

		{"second generation row", "generation", map[string]any{"id": 2, "value": 5}},
		{"generation zero", "generation", map[string]any{"id": 1, "value": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := insertRow(ctx, s, tt.table, tt.row)
			if err == nil {
				t.Fatalf("INSERT INTO %s %v succeeded; the schema must refuse it", tt.table, tt.row)
			}
			if msg := err.Error(); !strings.Contains(msg, "constraint failed") && !strings.Contains(msg, "cannot store") {
				t.Errorf("refused for another reason: %v", err)
			}
			t.Log(err)
		})
	}

	// The controls: the good rows are accepted, so the failures above are the constraints'.
	for _, c := range []struct {
		table string
		row   map[string]any
	}{
		{"tenants", map[string]any{"name": "new", "created_at": 1, "split_tunnel": 1}},
		{"peer_groups", group()},
		{"sites", site()},
		{"site_prefixes", prefix()},
		{"site_prefixes", with(with(with(prefix(), "site", "branch"), "addr", v4("fd10::")), "bits", 64)},
		{"routes", route()},
		{"routes", with(with(with(route(), "addr", v4("10.10.0.0")), "via_kind", "site"), "via_site", "office")},
		{"routes", with(with(route(), "addr", v4("192.168.128.0")), "bits", 17)},
		{"policies", with(policy(), "source", strings.Repeat("x", MaxPolicySize))},
		{"dns_zones", zone()},
		{"dns_zones", with(zone(), "zone", ".")},
		{"dns_zones", with(zone(), "zone", "_msdcs.10.in-addr.arpa")},
		{"dns_zone_servers", server()},
		{"dns_zone_servers", with(with(server(), "position", 3), "addr", v4("fd10::53"))},
	} {
		if err := insertRow(ctx, s, c.table, c.row); err != nil {
			t.Errorf("control row %s %v refused: %v", c.table, c.row, err)
		}
	}

	// The generation only grows and stays.
	for _, q := range []string{
		"UPDATE generation SET value = value - 1",
		"UPDATE generation SET value = value",
		"UPDATE generation SET id = 2",
		"DELETE FROM generation",
	} {
		if _, err := s.db.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "generation") {
			t.Errorf("%s: %v; want it refused", q, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, "UPDATE generation SET value = value + 10"); err != nil {
		t.Errorf("advancing the generation: %v", err)
	}
	// A tenant with routes and policy goes, with them, once it has no peers; peers hold it.
	if _, err := s.db.ExecContext(ctx, "DELETE FROM tenants WHERE id = ?", acme.ID); err == nil {
		t.Error("deleting a tenant with peers succeeded")
	}
	// Deleting a peer takes its groups, its site and the site's prefixes (no route uses it).
	if _, err := s.db.ExecContext(ctx, "DELETE FROM peers WHERE id = ?", plain.ID); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM peer_groups WHERE peer_id = ?)
		+ (SELECT count(*) FROM sites WHERE peer_id = ?) + (SELECT count(*) FROM site_prefixes WHERE site = 'branch')`,
		plain.ID, plain.ID).Scan(&left); err != nil || left != 0 {
		t.Errorf("rows of a deleted peer left: %d, %v", left, err)
	}
}

// TestSchemaPrefixCheckMatchesGo checks the schema's hex-based CHECK on prefixes against
// netip for every prefix length: the masked form of an address is accepted, the same with
// one host bit set is refused, and Go's prefixFormatError agrees with the schema.
func TestSchemaPrefixCheckMatchesGo(t *testing.T) {
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	ones4, ones6 := netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	odd4, odd6 := netip.MustParseAddr("10.171.205.239"), netip.MustParseAddr("2001:db8:abcd:ef01:2345:6789:abcd:ef01")
	for _, a := range []netip.Addr{ones4, ones6, odd4, odd6} {
		for bits := 0; bits <= a.BitLen(); bits++ {
			masked := netip.PrefixFrom(a, bits).Masked()
			checkPrefixAgrees(t, s, masked.Addr().AsSlice(), bits)
			if bits < a.BitLen() { // set the first host bit
				b := masked.Addr().AsSlice()
				b[bits/8] |= 0x80 >> (bits % 8)
				checkPrefixAgrees(t, s, b, bits)
			}
		}
	}
	for _, c := range []struct {
		addr []byte
		bits int
	}{
		{v4mapped(10, 0, 0, 0), 104}, {v4mapped(0, 0, 0, 0), 96}, {make([]byte, 16), 129},
		{make([]byte, 4), 33}, {make([]byte, 4), -1},
	} {
		checkPrefixAgrees(t, s, c.addr, c.bits)
	}
}

func v4mapped(a, b, c, d byte) []byte {
	m := netip.AddrFrom4([4]byte{a, b, c, d})
	return netip.AddrFrom16(m.As16()).AsSlice()
}

func FuzzSchemaPrefixCheck(f *testing.F) {
	s, _ := openTest(f)
	mustTenant(f, s, "acme")
	f.Add([]byte{10, 10, 0, 0}, 24)
	f.Add([]byte{10, 10, 0, 1}, 24)
	f.Add(make([]byte, 16), 0)
	f.Add(v4mapped(10, 0, 0, 0), 104)
	f.Fuzz(func(t *testing.T, addr []byte, bits int) {
		if len(addr) != 4 && len(addr) != 16 {
			t.Skip()
		}
		checkPrefixAgrees(t, s, addr, bits)
	})
}

// checkPrefixAgrees inserts the route addr/bits of tenant acme (ID 1) in a transaction it
// rolls back, and fails when the schema and prefixFormatError disagree about it.
func checkPrefixAgrees(t *testing.T, s *Store, addr []byte, bits int) {
	t.Helper()
	ctx := context.Background()
	a, _ := netip.AddrFromSlice(addr)
	goOK := prefixFormatError("route prefix", netip.PrefixFrom(a, bits)) == nil
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM routes"); err != nil { // no default route in the way
		t.Fatal(err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO routes (tenant_id, addr, bits, via_kind, created_at)
		VALUES (1, ?, ?, 'internet', 1)`, addr, bits)
	if sqlOK := err == nil; sqlOK != goOK {
		t.Errorf("prefix %x/%d: Go accepts it: %v, the schema: %v (%v)", addr, bits, goOK, sqlOK, err)
	}
}
