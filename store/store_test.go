package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/store/clocktest"
)

// newClock returns a settable clock for Options.Now.
func newClock() *clocktest.Clock {
	return clocktest.New(time.Date(2026, 11, 24, 9, 30, 0, 123456000, time.UTC))
}

// openTest opens a store in a new directory and closes it when the test ends.
func openTest(t testing.TB) (*Store, Options) {
	t.Helper()
	opts := Options{Path: filepath.Join(t.TempDir(), "popgate.db"), Now: newClock().Now}
	return openOpts(t, opts), opts
}

func openOpts(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawDB opens the database file directly, bypassing the store, with foreign keys on.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func wantErr(t testing.TB, err, kind error, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v containing %q", kind, contains)
	}
	if kind != nil && !errors.Is(err, kind) {
		t.Fatalf("error %q does not wrap %v", err, kind)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("error %q does not contain %q", err, contains)
	}
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpenFresh(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data") // Open creates the directory
	s := openOpts(t, Options{Path: filepath.Join(dir, "popgate.db")})

	for _, name := range []string{"popgate.db", "secret.key", "popgate.db-wal"} {
		if m := fileMode(t, filepath.Join(dir, name)); m != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", name, m)
		}
	}
	if m := fileMode(t, dir); m != 0o700 {
		t.Errorf("data directory has mode %04o, want 0700", m)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "secret.key")); err != nil || len(b) != 32 {
		t.Errorf("secret.key: %d bytes, %v; want 32 bytes", len(b), err)
	}

	var journal string
	var fk, sync, busy int
	for q, dst := range map[string]any{
		"PRAGMA journal_mode": &journal, "PRAGMA foreign_keys": &fk,
		"PRAGMA synchronous": &sync, "PRAGMA busy_timeout": &busy,
	} {
		if err := s.db.QueryRowContext(ctx, q).Scan(dst); err != nil {
			t.Fatal(err)
		}
	}
	if journal != "wal" || fk != 1 || sync != 2 || busy != 5000 {
		t.Errorf("pragmas: journal_mode=%s foreign_keys=%d synchronous=%d busy_timeout=%d; want wal 1 2 (FULL) 5000", journal, fk, sync, busy)
	}

	nodeKey, err := s.NodePrivateKey(ctx)
	if err != nil || nodeKey.IsZero() {
		t.Fatalf("NodePrivateKey = %v, %v", nodeKey, err)
	}
	if nodeKey.PublicKey() != s.NodePublicKey() {
		t.Errorf("NodePublicKey does not match NodePrivateKey")
	}
	v4, v6 := s.OverlayPrefixes()
	if v4 != netip.MustParsePrefix("100.64.0.0/10") {
		t.Errorf("v4 overlay = %v", v4)
	}
	if !validULAPrefix(v6) || !netip.MustParsePrefix("fd00::/8").Overlaps(v6) {
		t.Errorf("v6 overlay = %v, want a ULA /48", v6)
	}
	g4, g6 := s.GatewayAddrs()
	if g4 != netip.MustParseAddr("100.64.0.1") || !v6.Contains(g6) || g6.As16()[15] != 1 || g6 != v6.Addr().Next() {
		t.Errorf("GatewayAddrs = %v, %v", g4, g6)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.ListTenants(ctx); err == nil {
		t.Errorf("ListTenants after Close succeeded")
	}
}

func TestOpenTwoULAsDiffer(t *testing.T) {
	a, _ := openTest(t)
	b, _ := openTest(t)
	_, pa := a.OverlayPrefixes()
	_, pb := b.OverlayPrefixes()
	if pa == pb {
		t.Errorf("two installations chose the same ULA %v", pa)
	}
	if a.NodePublicKey() == b.NodePublicKey() {
		t.Errorf("two installations have the same node key")
	}
}

func TestReopenKeepsState(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	nodeKey, err := s.NodePrivateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, ula := s.OverlayPrefixes()
	mustTenant(t, s, "acme")
	priv := mustKey(t)
	added := mustPeer(t, s, NewPeer{TenantName: "acme", Name: "laptop", PrivateKey: &priv})
	if err := s.SetSetting(ctx, "ui.banner", "hello"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openOpts(t, opts)
	if k, err := s2.NodePrivateKey(ctx); err != nil || k != nodeKey {
		t.Errorf("node key changed across reopen: %v", err)
	}
	if _, ula2 := s2.OverlayPrefixes(); ula2 != ula {
		t.Errorf("ULA changed across reopen: %v → %v", ula, ula2)
	}
	got, err := s2.Peer(ctx, "acme", "laptop")
	if err != nil || !reflect.DeepEqual(got, added) {
		t.Errorf("peer after reopen = %+v, %v; want %+v", got, err, added)
	}
	if k, err := s2.PeerPrivateKey(ctx, "acme", "laptop"); err != nil || k != priv {
		t.Errorf("peer private key after reopen: %v", err)
	}
	if v, err := s2.Setting(ctx, "ui.banner"); err != nil || v != "hello" {
		t.Errorf("Setting after reopen = %q, %v", v, err)
	}
}

func TestOpenRefusesReadableKeyFile(t *testing.T) {
	s, opts := openTest(t)
	s.Close()
	keyPath := filepath.Join(filepath.Dir(opts.Path), "secret.key")
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Open(context.Background(), opts)
		wantErr(t, err, ErrInvalid, "chmod 600 "+keyPath)
	}
	if err := os.Chmod(keyPath, 0o400); err != nil { // owner-only is fine
		t.Fatal(err)
	}
	openOpts(t, opts)
}

func TestOpenRefusesMissingKeyFile(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	mustTenant(t, s, "acme")
	priv := mustKey(t)
	mustPeer(t, s, NewPeer{TenantName: "acme", Name: "laptop", PrivateKey: &priv})
	s.Close()
	keyPath := filepath.Join(filepath.Dir(opts.Path), "secret.key")
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, opts)
	wantErr(t, err, fs.ErrNotExist, "secret key file "+keyPath+" is missing")
	wantErr(t, err, nil, "restore the file from a backup")
	if _, statErr := os.Stat(keyPath); !errors.Is(statErr, fs.ErrNotExist) {
		t.Errorf("Open created a new key file over encrypted data: %v", statErr)
	}
}

func TestOpenRefusesWrongKeyFile(t *testing.T) {
	_, opts := openTest(t)
	other, otherOpts := openTest(t)
	other.Close()
	opts.KeyPath = filepath.Join(filepath.Dir(otherOpts.Path), "secret.key")
	_, err := Open(context.Background(), opts)
	wantErr(t, err, ErrInvalid, "is not the key file this database was created with")
}

func TestOpenRefusesDamagedKeyFile(t *testing.T) {
	s, opts := openTest(t)
	s.Close()
	keyPath := filepath.Join(filepath.Dir(opts.Path), "secret.key")
	if err := os.WriteFile(keyPath, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), opts)
	wantErr(t, err, ErrInvalid, "must hold exactly 32 bytes")
}

func TestOpenKeyPathOption(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "db", "popgate.db"), KeyPath: filepath.Join(dir, "secret")}
	openOpts(t, opts)
	if m := fileMode(t, opts.KeyPath); m != 0o600 {
		t.Errorf("key file mode %04o", m)
	}
	if _, err := os.Stat(filepath.Join(dir, "db", "secret.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("default key file created although KeyPath was set: %v", err)
	}
}

func TestOpenPathWithSpecialCharacters(t *testing.T) {
	ctx := context.Background()
	opts := Options{Path: filepath.Join(t.TempDir(), "a dir?x=1#frag%41", "pop gate.db")}
	s := openOpts(t, opts)
	mustTenant(t, s, "acme")
	s.Close()
	s = openOpts(t, opts)
	if _, err := s.Tenant(ctx, "acme"); err != nil {
		t.Fatalf("tenant lost: %v", err)
	}
	if _, err := os.Stat(opts.Path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
}

func TestOpenEmptyPath(t *testing.T) {
	_, err := Open(context.Background(), Options{})
	wantErr(t, err, ErrInvalid, "Options.Path is empty")
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	s, opts := openTest(t)
	var version, appID int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != len(ms) {
		t.Errorf("user_version = %d, want %d", version, len(ms))
	}
	if err := s.db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil || appID != applicationID {
		t.Errorf("application_id = %#x, %v", appID, err)
	}
	schema := func() string {
		var b strings.Builder
		rows, err := rawDB(t, opts.Path).QueryContext(ctx, "SELECT type, name, coalesce(sql, '') FROM sqlite_schema ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var typ, name, sql string
			if err := rows.Scan(&typ, &name, &sql); err != nil {
				t.Fatal(err)
			}
			b.WriteString(typ + " " + name + " " + sql + "\n")
		}
		return b.String()
	}
	before := schema()
	s.Close()
	// Opening again applies nothing: same version, same schema.
	openOpts(t, opts).Close()
	openOpts(t, opts).Close()
	if after := schema(); after != before {
		t.Errorf("schema changed by reopening:\n%s\nvs\n%s", before, after)
	}
	for _, table := range []string{"tenants", "peers", "settings", "peer_groups", "sites", "site_prefixes", "routes", "policies", "generation"} {
		if !strings.Contains(before, "table "+table+" ") {
			t.Errorf("table %s missing from schema:\n%s", table, before)
		}
	}
}

func TestMigrationFilesWellFormed(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.version != i+1 || !strings.HasPrefix(m.name, fmt.Sprintf("%04d_", i+1)) || strings.TrimSpace(m.sql) == "" {
			t.Errorf("migration %d: %+v", i, m.name)
		}
	}
}

func TestMigrationsNewerDatabaseRefused(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	s.Close()
	if _, err := rawDB(t, opts.Path).ExecContext(ctx, "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	ms, _ := loadMigrations(migrationFiles)
	_, err := Open(ctx, opts)
	want := fmt.Sprintf("database schema version 99 is newer than this popgate (%d): upgrade popgate", len(ms))
	wantErr(t, err, nil, want)
}

func TestMigrationFailureRollsBack(t *testing.T) {
	// A migration that fails halfway leaves neither its first statement nor a new
	// user_version behind.
	ctx := context.Background()
	s, _ := openTest(t)
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	next := len(ms) + 1
	name := fmt.Sprintf("%04d_bad.sql", next)
	bad := migration{version: next, name: name, sql: "CREATE TABLE later (x INTEGER); INSERT INTO nonexistent VALUES (1);"}
	err = s.write(ctx, func(tx *sql.Tx) error { return applyMigration(ctx, tx, bad) })
	wantErr(t, err, nil, "migration "+name)
	var version, n int
	s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version)
	s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name = 'later'").Scan(&n)
	if version != len(ms) || n != 0 {
		t.Errorf("after failed migration: user_version=%d, table later exists=%v", version, n == 1)
	}
}

func TestOpenRefusesForeignDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "other.db")
	db := rawDB(t, path)
	if _, err := db.ExecContext(ctx, "CREATE TABLE notes (x TEXT)"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, Options{Path: path})
	wantErr(t, err, ErrInvalid, "is not a popgate database")
	if _, err := db.ExecContext(ctx, "PRAGMA application_id = 42"); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, Options{Path: path})
	wantErr(t, err, ErrInvalid, "application_id 0x2a")
}

func TestSettings(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	_, err := s.Setting(ctx, "ui.banner")
	wantErr(t, err, ErrNotFound, `setting "ui.banner" is not set`)
	for _, v := range []string{"one", "", "two"} {
		if err := s.SetSetting(ctx, "ui.banner", v); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Setting(ctx, "ui.banner"); err != nil || got != v {
			t.Errorf("Setting = %q, %v; want %q", got, err, v)
		}
	}
	for _, key := range []string{"", "UI", "1abc", "a b", strings.Repeat("a", 65)} {
		wantErr(t, s.SetSetting(ctx, key, "x"), ErrInvalid, "setting name")
		_, err := s.Setting(ctx, key)
		wantErr(t, err, ErrInvalid, "setting name")
	}
	for _, key := range []string{settingNodePrivateKey, settingIPv6Prefix, settingIPv4HighWater} {
		wantErr(t, s.SetSetting(ctx, key, "x"), ErrInvalid, "managed by popgate")
	}
	if v, err := s.Setting(ctx, settingIPv6Prefix); err != nil || v != s.ula.String() {
		t.Errorf("Setting(%s) = %q, %v", settingIPv6Prefix, v, err)
	}
}

func TestWriteHonoursContext(t *testing.T) {
	s, _ := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.AddTenant(ctx, "acme"); !errors.Is(err, context.Canceled) {
		t.Errorf("AddTenant with a cancelled context = %v", err)
	}
	if _, err := s.Tenant(context.Background(), "acme"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tenant stored despite cancelled context: %v", err)
	}
}

func TestConcurrentFirstOpen(t *testing.T) {
	// Two processes (here: two Stores) starting on a fresh directory agree on one key file,
	// one node key and one ULA.
	ctx := context.Background()
	opts := Options{Path: filepath.Join(t.TempDir(), "popgate.db")}
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(ctx, opts) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	want, err := stores[0].NodePrivateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stores[1:] {
		if k, err := s.NodePrivateKey(ctx); err != nil || k != want || s.ula != stores[0].ula {
			t.Errorf("stores disagree: %v", err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(opts.Path))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".secret.key-") {
			t.Errorf("temporary key file %s left behind", e.Name())
		}
	}
}

// TestTenantDomain: a tenant's DNS domain is set, kept lower case, refused when bad or
// another tenant's (its own domain or its default), and reset to the default with "".
func TestTenantDomain(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, n := range []string{"acme", "globex"} {
		if _, err := s.AddTenant(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if tn, err := s.SetTenantDomain(ctx, "acme", "Corp.Example.COM."); err != nil || tn.Domain != "corp.example.com" {
		t.Fatalf("set: %+v, %v", tn, err)
	}
	for _, c := range []struct{ tenant, domain, want string }{
		{"globex", "corp.example.com", "another tenant's"},
		{"globex", "acme.internal", "another tenant's"},
		{"globex", "localhost", "one label"},
		{"globex", "a..b", "bad label"},
		{"globex", "-a.example", "bad label"},
		{"globex", "a_b.example", `"_"`},
		{"nobody", "x.example", "not found"},
	} {
		if _, err := s.SetTenantDomain(ctx, c.tenant, c.domain); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %q: %v, want %q", c.tenant, c.domain, err, c.want)
		}
	}
	ts, _ := s.ListTenants(ctx)
	if ts[0].Domain != "corp.example.com" || ts[1].Domain != "" {
		t.Errorf("listed domains %q %q", ts[0].Domain, ts[1].Domain)
	}
	if tn, err := s.SetTenantDomain(ctx, "acme", ""); err != nil || tn.Domain != "" {
		t.Errorf("reset: %+v, %v", tn, err)
	}
	if tn, err := s.SetTenantDomain(ctx, "globex", "globex.internal"); err != nil || tn.Domain != "" {
		t.Errorf("the default given: %+v, %v", tn, err)
	}
}
