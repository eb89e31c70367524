package store

import (
	"context"
	"maps"
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
