package store

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// requireTool skips the test when the command tool is missing, or fails it under CI=true,
// where `make test-deps` installed it (as testbed.RequireTools does for the end-to-end tests).
func requireTool(t *testing.T, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("missing %s: run `make test-deps` (as root) to install it", tool)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// debianSQLiteCheck runs the sqlite3 command (Debian 12's is SQLite 3.40, older than the one
// popgate links) on a copy of the closed database at path: integrity_check and
// foreign_key_check, then a .dump loaded into a new database, which evaluates every CHECK
// with that SQLite's functions. Operators use it to look at and repair the database.
func debianSQLiteCheck(t *testing.T, path string) {
	t.Helper()
	sqlite3 := requireTool(t, "sqlite3")
	dir := t.TempDir()
	cp := filepath.Join(dir, "copy.db")
	copyFile(t, path, cp)
	run := func(stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.Command(sqlite3, append([]string{"-bail", "-batch"}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Fatalf("sqlite3 %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	if got := run(nil, cp, "PRAGMA integrity_check; PRAGMA foreign_key_check;"); got != "ok\n" {
		t.Errorf("sqlite3 integrity_check and foreign_key_check of %s:\n%s", path, got)
	}
	dump := run(nil, cp, ".dump")
	run([]byte(dump), filepath.Join(dir, "reloaded.db"))
}

// TestDebianSQLiteReadsDatabase: Debian 12's sqlite3 checks and dumps a database of the
// current schema with a policy in it (0002's CHECK used octet_length(), which it lacks).
func TestDebianSQLiteReadsDatabase(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	mustTenant(t, s, "acme")
	mustPeer(t, s, newPeer(t, "acme", "laptop"))
	if err := s.SetPolicy(ctx, "acme", "# Büro\nallow any -> internet\n", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	debianSQLiteCheck(t, opts.Path)
}

// tableRows reads every row of every table of the database at path (opened read-only, not
// migrated): table → column names, and rows as values in column order.
func tableRows(t *testing.T, path string) map[string]struct {
	cols []string
	rows [][]any
} {
	t.Helper()
	db, _, err := openExisting(path, openReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	rows, err := db.Query("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	out := map[string]struct {
		cols []string
		rows [][]any
	}{}
	for _, table := range tables {
		rows, err := db.Query("SELECT * FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var all [][]any
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			all = append(all, vals)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		out[table] = struct {
			cols []string
			rows [][]any
		}{cols, all}
	}
	return out
}

// Columns dropped by a migration since, which old rows may lack in the new schema.
var droppedColumns = map[string][]string{"admins": {"locked_until"}}

// TestUpgradeFromEveryRelease opens the database of every earlier schema version
// (testdata/upgrade, made by the popgate of that version), migrates it, checks it with
// SQLite, Check and Debian's sqlite3, and checks that every row survived with every value
// in the columns the schema still has, and that the store reads it: keys open, the admin's
// password and TOTP secret work.
func TestUpgradeFromEveryRelease(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	// One fixture per schema version a popgate was released with, up to the one the last
	// release had (testdata/upgrade/README.md).
	for _, v := range []int{1, 2, 3} {
		fixture := filepath.Join("testdata", "upgrade", fmt.Sprintf("v%d", v))
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			db := filepath.Join(dir, "popgate.db")
			copyFile(t, filepath.Join(fixture, "popgate.db"), db)
			copyFile(t, filepath.Join(fixture, "secret.key"), filepath.Join(dir, "secret.key"))
			before := tableRows(t, db)
			if r, err := Check(ctx, db, ""); err != nil || r.Version != v || !r.OK() {
				t.Fatalf("Check of the fixture before the upgrade: %+v, %v", r, err)
			}

			s, err := Open(ctx, Options{Path: db})
			if err != nil {
				t.Fatalf("Open (migrate from %d): %v", v, err)
			}
			defer s.Close()
			if s.version != len(ms) {
				t.Fatalf("schema version %d after the upgrade, want %d", s.version, len(ms))
			}
			checkFixtureContent(t, s, v)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			r, err := Check(ctx, db, "")
			if err != nil || !r.OK() || r.Version != len(ms) || len(r.Notes) != 0 {
				t.Errorf("Check after the upgrade: %+v, %v", r, err)
			}
			after := tableRows(t, db)
			for table, old := range before {
				nu, ok := after[table]
				if !ok {
					t.Errorf("table %s is gone", table)
					continue
				}
				var cols []string
				for _, c := range old.cols {
					if slices.Contains(nu.cols, c) {
						cols = append(cols, c)
					} else if !slices.Contains(droppedColumns[table], c) {
						t.Errorf("column %s.%s is gone", table, c)
					}
				}
				have := map[string]bool{}
				for _, row := range nu.rows {
					have[rowKey(nu.cols, row, cols)] = true
				}
				for _, row := range old.rows {
					if k := rowKey(old.cols, row, cols); !have[k] {
						t.Errorf("row of %s lost or changed: %s", table, k)
					}
				}
				if len(nu.rows) < len(old.rows) {
					t.Errorf("table %s has %d rows, had %d", table, len(nu.rows), len(old.rows))
				}
			}
			debianSQLiteCheck(t, db)

			// Opening again migrates nothing and changes nothing.
			s2, err := Open(ctx, Options{Path: db})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			// The controller makes its region at start: its key is the node key the
			// fixture's clients have.
			nodeKey, err := s2.NodePrivateKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			home, err := s2.EnsureHomeRegion(ctx, "local", "vpn.example.com:51820")
			if err != nil || !home.Home || home.PublicKey != nodeKey.PublicKey() {
				t.Fatalf("EnsureHomeRegion: %+v, %v", home, err)
			}
			if k, err := s2.RegionPrivateKey(ctx, "local"); err != nil || k != nodeKey {
				t.Fatalf("the home region's key is not the node key: %v", err)
			}
			s2.Close()
			if r, err := Check(ctx, db, ""); err != nil || !r.OK() {
				t.Errorf("Check with the home region: %+v, %v", r, err)
			}
		})
	}
}

// rowKey formats the values of row (whose columns are cols) in the columns want.
func rowKey(cols []string, row []any, want []string) string {
	var b strings.Builder
	for _, c := range want {
		i := slices.Index(cols, c)
		fmt.Fprintf(&b, "%s=%#v ", c, row[i])
	}
	return b.String()
}

// checkFixtureContent checks what the fixture of version v holds through the store (see
// testdata/upgrade/v*/makefixture_test.go).
func checkFixtureContent(t *testing.T, s *Store, v int) {
	t.Helper()
	ctx := context.Background()
	ts, err := s.ListTenants(ctx)
	if err != nil || len(ts) != 2 || ts[0].Name != "acme" || ts[1].Name != "beta" {
		t.Fatalf("tenants %+v, %v", ts, err)
	}
	ps, err := s.ListPeers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]Peer{}
	for _, p := range ps {
		names[p.TenantName+"/"+p.Name] = p
		if p.HasPrivateKey {
			k, err := s.PeerPrivateKey(ctx, p.TenantName, p.Name)
			if err != nil || k.PublicKey() != p.PublicKey {
				t.Errorf("private key of %s/%s: %v", p.TenantName, p.Name, err)
			}
		}
		if want := s.ipv6For(binaryIPv4(p.IPv4)); p.IPv6 != want {
			t.Errorf("%s/%s: IPv6 %s, want %s", p.TenantName, p.Name, p.IPv6, want)
		}
	}
	want := map[int][]string{
		1: {"acme/laptop", "acme/phone", "acme/printer", "acme/tablet.home-1", "beta/laptop"},
		2: {"acme/laptop", "acme/office-gw", "acme/phone", "acme/printer", "beta/lab-gw", "beta/laptop"},
		3: {"acme/contractor", "acme/laptop-2", "acme/office-gw", "acme/phone", "acme/printer", "beta/lab-gw", "beta/laptop"},
	}[v]
	if got := slices.Sorted(maps.Keys(names)); !slices.Equal(got, want) {
		t.Errorf("peers %q, want %q", got, want)
	}
	if p := names["acme/printer"]; p.Enabled || names["acme/phone"].HasPrivateKey {
		t.Errorf("printer enabled %v, phone has a private key %v", p.Enabled, names["acme/phone"].HasPrivateKey)
	}
	if v < 2 {
		return
	}
	if p := names["acme/phone"]; !slices.Equal(p.Groups, []string{"eng"}) {
		t.Errorf("groups of acme/phone: %q", p.Groups)
	}
	if p := names["acme/office-gw"]; p.Site != "office" || len(p.SitePrefixes) != 2 {
		t.Errorf("site of acme/office-gw: %q %v", p.Site, p.SitePrefixes)
	}
	text, _, err := s.Policy(ctx, "acme")
	if err != nil || !strings.Contains(text, "Büro → Labor") {
		t.Errorf("policy of acme: %q, %v", text, err)
	}
	if beta, _ := s.Tenant(ctx, "beta"); !beta.SplitTunnel {
		t.Error("beta lost split tunnel")
	}
	rs, err := s.ListRoutes(ctx, "")
	if err != nil || len(rs) != 6 {
		t.Errorf("routes %q, %v", routeStrings(rs), err)
	}
	if v < 3 {
		return
	}
	if p := names["acme/contractor"]; p.ExpiresAt.IsZero() {
		t.Error("acme/contractor lost its expiry")
	}
	a, ok, err := s.CheckAdminPassword(ctx, "admin", "correct horse battery staple")
	if err != nil || !ok || !a.TOTPEnabled || a.Role != RoleOwner {
		t.Errorf("admin: %+v, %v, %v", a, ok, err)
	}
	if secret, err := s.AdminTOTPSecret(ctx, a.ID, false); err != nil || string(secret) != "12345678901234567890" {
		t.Errorf("TOTP secret of admin: %q, %v", secret, err)
	}
	as, err := s.ListAdmins(ctx)
	if err != nil || len(as) != 3 || as[0].Name != "admin" || as[1].TenantName != "acme" || !as[2].Disabled {
		t.Errorf("admins %+v, %v", as, err)
	}
	if ks, err := s.ListAPITokens(ctx); err != nil || len(ks) != 2 {
		t.Errorf("API tokens %+v, %v", ks, err)
	}
	if es, _, err := s.ListAudit(ctx, AuditQuery{Limit: 10}); err != nil || len(es) != 3 {
		t.Errorf("audit %+v, %v", es, err)
	}
	if n, err := s.CountAdminSessions(ctx, a.ID, time.Now(), time.Hour*24*365); err != nil || n != 1 {
		t.Errorf("%d sessions of admin, %v", n, err)
	}
}

func binaryIPv4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
