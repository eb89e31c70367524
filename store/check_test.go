package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkedStore makes a database with a bit of everything Check looks at: peers with and
// without private keys, groups, sites, an owner with TOTP.
func checkedStore(t *testing.T) (*Store, Options) {
	t.Helper()
	ctx := context.Background()
	s, opts := openTest(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "beta")
	mustPeer(t, s, newPeer(t, "acme", "laptop"))
	pub := mustKey(t).PublicKey()
	mustPeer(t, s, NewPeer{TenantName: "acme", Name: "phone", PublicKey: &pub})
	mustPeer(t, s, newPeer(t, "acme", "gw"))
	mustPeer(t, s, newPeer(t, "beta", "gw"))
	if _, err := s.SetPeerGroups(ctx, "acme", "laptop", []string{"eng"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPeerSite(ctx, "acme", "gw", "office", pfxs("10.1.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPeerSite(ctx, "beta", "gw", "lab", pfxs("10.1.0.0/16")); err != nil {
		t.Fatal(err)
	}
	a := mustAdmin(t, s, "root", RoleOwner, "")
	if err := s.SetAdminTOTPPending(ctx, a.ID, []byte("12345678901234567890")); err != nil {
		t.Fatal(err)
	}
	if err := s.EnableAdminTOTP(ctx, a.ID, 1); err != nil {
		t.Fatal(err)
	}
	mustAdmin(t, s, "bob", RoleViewer, "")
	if err := s.SaveDesired(ctx, 7, []byte(`{"format":1}`)); err != nil {
		t.Fatal(err)
	}
	return s, opts
}

func TestCheckHealthy(t *testing.T) {
	ctx := context.Background()
	s, opts := checkedStore(t)
	// While the store has the database open (a running node), then after it closed.
	for _, open := range []bool{true, false} {
		r, err := Check(ctx, opts.Path, "")
		if err != nil || !r.OK() || r.Version != s.version || r.Latest != s.version || len(r.Notes) != 0 {
			t.Fatalf("Check (store open %v) = %+v, %v", open, r, err)
		}
		if r.Rows["peers"] != 4 || r.Rows["admins"] != 2 || r.Rows["site_prefixes"] != 2 {
			t.Errorf("rows %s", r.RowSummary())
		}
		s.Close()
	}
}

// TestCheckFindsProblems damages a healthy database in one way at a time, with raw SQL that
// bypasses the store's and (where needed) SQLite's checks, and expects Check to name it.
func TestCheckFindsProblems(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, db *sql.DB, opts Options)
		want   string
	}{
		{"a CHECK violated", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "PRAGMA ignore_check_constraints = ON", "UPDATE tenants SET name = 'Not A Name' WHERE name = 'beta'")
		}, "SQLite integrity_check: CHECK constraint failed in tenants"},
		{"a dangling foreign key", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "PRAGMA foreign_keys = OFF", "DELETE FROM peers WHERE name = 'laptop'")
		}, "SQLite foreign_key_check: row"},
		{"another key file", func(t *testing.T, _ *sql.DB, opts Options) {
			os.WriteFile(filepath.Join(filepath.Dir(opts.Path), "secret.key"), bytes.Repeat([]byte{7}, 32), 0o600)
		}, "does not open the node private key"},
		{"no key file", func(t *testing.T, _ *sql.DB, opts Options) {
			os.Remove(filepath.Join(filepath.Dir(opts.Path), "secret.key"))
		}, "(it does not exist), so nothing sealed in the database was checked"},
		{"a key file others may read", func(t *testing.T, _ *sql.DB, opts Options) {
			os.Chmod(filepath.Join(filepath.Dir(opts.Path), "secret.key"), 0o644)
		}, "has mode 0644"},
		{"a database others may read", func(t *testing.T, _ *sql.DB, opts Options) {
			os.Chmod(opts.Path, 0o640)
		}, "the database file has mode 0640"},
		{"a private key of another peer", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "UPDATE peers SET private_key_enc = (SELECT private_key_enc FROM peers WHERE name = 'laptop') WHERE tenant_id = 2")
		}, "peer gw of tenant beta: its private key does not open with this key file"},
		{"an IPv6 address of another installation", func(t *testing.T, db *sql.DB, _ Options) {
			var v6 []byte
			if err := db.QueryRow("SELECT ipv6 FROM peers WHERE name = 'laptop'").Scan(&v6); err != nil {
				t.Fatal(err)
			}
			copy(v6, []byte{0xfd, 1, 2, 3, 4, 5})
			if _, err := db.Exec("UPDATE peers SET ipv6 = ? WHERE name = 'laptop'", v6); err != nil {
				t.Fatal(err)
			}
		}, "peer laptop of tenant acme: its IPv6 address fd01:203:405::6440:2 does not go with its IPv4 address 100.64.0.2"},
		{"the high-water mark below a peer", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "UPDATE settings SET value = '1681915906' WHERE key = 'overlay.ipv4_high_water'") // 100.64.0.2
		}, "below the address of a peer (100.64.0.5)"},
		{"no IPv6 prefix", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "DELETE FROM settings WHERE key = 'overlay.ipv6_prefix'")
		}, `setting overlay.ipv6_prefix is "", not a ULA /48`},
		{"overlapping sites", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "INSERT INTO sites (tenant_id, name, peer_id) SELECT 1, 'home', id FROM peers WHERE name = 'phone'",
				"INSERT INTO site_prefixes (tenant_id, site, addr, bits) VALUES (1, 'home', x'0a010200', 24)")
		}, "sites home and office of tenant acme overlap: 10.1.2.0/24 and 10.1.0.0/16"},
		{"a site in the overlay", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "UPDATE site_prefixes SET addr = x'64400000', bits = 24 WHERE site = 'lab'")
		}, "site lab of tenant beta: prefix 100.64.0.0/24 overlaps the overlay network 100.64.0.0/10"},
		{"a site without prefixes", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "DELETE FROM site_prefixes WHERE site = 'lab'")
		}, "site lab of tenant beta has 0 prefixes"},
		{"a TOTP secret of another admin", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "UPDATE admins SET totp_secret_enc = (SELECT totp_secret_enc FROM admins WHERE name = 'root') WHERE name = 'bob'")
		}, "admin bob: its TOTP secret does not open with this key file"},
		{"a kept desired state of another generation", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "UPDATE desired_cache SET generation = 8")
		}, "the kept desired state (generation 8) does not open"},
		{"no enabled owner", func(t *testing.T, db *sql.DB, _ Options) {
			execSQL(t, db, "UPDATE admins SET disabled = 1 WHERE name = 'root'")
		}, "no admin is an enabled owner"},
	}
	healthy, _ := checkedStore(t)
	healthy.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Path: filepath.Join(t.TempDir(), "popgate.db")}
			copyFile(t, healthy.path, opts.Path)
			copyFile(t, healthy.keyPath, filepath.Join(filepath.Dir(opts.Path), "secret.key"))
			db := rawDB(t, opts.Path)
			tc.damage(t, db, opts)
			db.Close()
			r, err := Check(context.Background(), opts.Path, "")
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), tc.want) {
				t.Errorf("problems:\n%s\nwant one containing %q", strings.Join(r.Problems, "\n"), tc.want)
			}
		})
	}
}

func execSQL(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestCheckRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Check(ctx, filepath.Join(dir, "popgate.db"), ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a database, just text that is long enough to look like a page"), 0o600)
	if _, err := Check(ctx, text, ""); err == nil {
		t.Error("a text file passed")
	}
	other := filepath.Join(dir, "other.db")
	db := rawDB(t, other)
	execSQL(t, db, "CREATE TABLE t (x)")
	db.Close()
	if _, err := Check(ctx, other, ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not a popgate database") {
		t.Errorf("another program's database: %v", err)
	}
	if _, err := Check(ctx, dir, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("a directory: %v", err)
	}
}

// TestCheckOlderSchema: a database that serve has yet to upgrade is checked as far as its
// version goes, with a note.
func TestCheckOlderSchema(t *testing.T) {
	opts := Options{Path: filepath.Join(t.TempDir(), "popgate.db"), migrateTo: 2}
	s := openOpts(t, opts)
	// By hand: the store's methods use the newest schema.
	if err := insertRow(context.Background(), s, "tenants", map[string]any{"name": "acme", "created_at": 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r, err := Check(context.Background(), opts.Path, "")
	if err != nil || !r.OK() || r.Version != 2 || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "upgrades it") {
		t.Errorf("Check = %+v, %v", r, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
