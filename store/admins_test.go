package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popgate/popgate/store/clocktest"
)

// openClocked opens a store in a new directory with a fake clock it returns.
func openClocked(t testing.TB) (*Store, *clocktest.Clock) {
	t.Helper()
	clock := newClock()
	return openOpts(t, Options{Path: filepath.Join(t.TempDir(), "popgate.db"), Now: clock.Now}), clock
}

const testPassword = "correct horse battery staple"

func mustAdmin(t testing.TB, s *Store, name, role, tenant string) Admin {
	t.Helper()
	a, err := s.AddAdmin(context.Background(), NewAdmin{Name: name, Role: role, Tenant: tenant, Password: testPassword})
	if err != nil {
		t.Fatalf("AddAdmin(%s): %v", name, err)
	}
	return a
}

func countRows(t testing.TB, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAdmins(t *testing.T) {
	ctx := context.Background()
	s, _ := openClocked(t)
	mustTenant(t, s, "acme")
	owner := mustAdmin(t, s, "root", RoleOwner, "")
	ta := mustAdmin(t, s, "alice@acme", RoleTenantAdmin, "acme")
	if ta.TenantName != "acme" || ta.TenantID == 0 || ta.Role != RoleTenantAdmin {
		t.Errorf("tenant admin = %+v", ta)
	}

	// Refused additions store nothing.
	for _, tc := range []struct {
		na   NewAdmin
		kind error
		want string
	}{
		{NewAdmin{Name: "root", Role: RoleOwner, Password: testPassword}, ErrExists, `admin "root" already exists`},
		{NewAdmin{Name: "Root", Role: RoleOwner, Password: testPassword}, ErrInvalid, `'R' at position 1 is not allowed`},
		{NewAdmin{Name: strings.Repeat("a", 65), Role: RoleOwner, Password: testPassword}, ErrInvalid, "at most 64"},
		{NewAdmin{Name: "-bob", Role: RoleOwner, Password: testPassword}, ErrInvalid, "starts with"},
		{NewAdmin{Name: "bob", Role: "root", Password: testPassword}, ErrInvalid, `role "root" is unknown`},
		{NewAdmin{Name: "bob", Role: RoleTenantAdmin, Password: testPassword}, ErrInvalid, "needs a tenant"},
		{NewAdmin{Name: "bob", Role: RoleOwner, Tenant: "acme", Password: testPassword}, ErrInvalid, "cannot be limited"},
		{NewAdmin{Name: "bob", Role: RoleViewer, Tenant: "nope", Password: testPassword}, ErrNotFound, `tenant "nope" not found`},
		{NewAdmin{Name: "bob", Role: RoleViewer, Password: "short"}, ErrInvalid, "too short"},
	} {
		_, err := s.AddAdmin(ctx, tc.na)
		wantErr(t, err, tc.kind, tc.want)
	}
	if n := countRows(t, s, "admins"); n != 2 {
		t.Fatalf("%d admins after refused additions, want 2", n)
	}

	list, err := s.ListAdmins(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "alice@acme" || list[1].Name != "root" {
		t.Fatalf("ListAdmins = %+v, %v", list, err)
	}
	if got, err := s.Admin(ctx, "root"); err != nil || got.ID != owner.ID || got.Role != RoleOwner || got.TenantName != "" {
		t.Errorf("Admin(root) = %+v, %v", got, err)
	}
	_, err = s.Admin(ctx, "nobody")
	wantErr(t, err, ErrNotFound, `admin "nobody" not found`)

	// Passwords.
	if a, ok, err := s.CheckAdminPassword(ctx, "root", testPassword); !ok || err != nil || a.ID != owner.ID {
		t.Errorf("CheckAdminPassword(right) = %+v, %v, %v", a, ok, err)
	}
	if _, ok, err := s.CheckAdminPassword(ctx, "root", "wrong password!"); ok || err != nil {
		t.Errorf("CheckAdminPassword(wrong) = %v, %v", ok, err)
	}
	_, ok, err := s.CheckAdminPassword(ctx, "nobody", testPassword)
	if ok {
		t.Error("unknown admin accepted")
	}
	wantErr(t, err, ErrNotFound, "not found")
	_, err = s.SetAdminPassword(ctx, "root", "short")
	wantErr(t, err, ErrInvalid, "too short")
	if _, err := s.SetAdminPassword(ctx, "root", "a brand new password"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.CheckAdminPassword(ctx, "root", "a brand new password"); !ok {
		t.Error("new password refused")
	}

	// The last enabled owner stays.
	_, err = s.RemoveAdmin(ctx, "root")
	wantErr(t, err, ErrInvalid, "last enabled owner")
	_, err = s.SetAdminRole(ctx, "root", RoleViewer, "")
	wantErr(t, err, ErrInvalid, "last enabled owner")
	_, err = s.SetAdminDisabled(ctx, "root", true)
	wantErr(t, err, ErrInvalid, "last enabled owner")
	if _, err := s.SetAdminRole(ctx, "alice@acme", RoleOwner, ""); err != nil {
		t.Fatal(err)
	}
	if a, err := s.SetAdminDisabled(ctx, "root", true); err != nil || !a.Disabled {
		t.Fatalf("disable root = %+v, %v", a, err)
	}
	_, err = s.SetAdminRole(ctx, "alice@acme", RoleTenantAdmin, "acme")
	wantErr(t, err, ErrInvalid, "last enabled owner")
	if _, err := s.SetAdminDisabled(ctx, "root", false); err != nil {
		t.Fatal(err)
	}
	if a, err := s.SetAdminRole(ctx, "alice@acme", RoleViewer, "acme"); err != nil || a.TenantName != "acme" || a.Role != RoleViewer {
		t.Fatalf("SetAdminRole = %+v, %v", a, err)
	}
	if _, err := s.RemoveAdmin(ctx, "alice@acme"); err != nil {
		t.Fatal(err)
	}
	_, err = s.RemoveAdmin(ctx, "alice@acme")
	wantErr(t, err, ErrNotFound, "not found")

	// An admin of a removed tenant goes with it.
	mustTenant(t, s, "beta")
	mustAdmin(t, s, "bob", RoleTenantAdmin, "beta")
	if err := s.RemoveTenant(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Admin(ctx, "bob")
	wantErr(t, err, ErrNotFound, "not found")
}

func TestAddFirstAdmin(t *testing.T) {
	ctx := context.Background()
	s, _ := openClocked(t)
	created, err := s.AddFirstAdmin(ctx, "admin", testPassword)
	if err != nil || !created {
		t.Fatalf("AddFirstAdmin = %v, %v", created, err)
	}
	if a, err := s.Admin(ctx, "admin"); err != nil || a.Role != RoleOwner {
		t.Errorf("first admin = %+v, %v", a, err)
	}
	if created, err := s.AddFirstAdmin(ctx, "other", testPassword); err != nil || created {
		t.Errorf("second AddFirstAdmin = %v, %v", created, err)
	}
	if n := countRows(t, s, "admins"); n != 1 {
		t.Errorf("%d admins, want 1", n)
	}
}

// TestSignInAccounting: failures are counted for owners to see and never lock the admin; a
// sign-in clears the count.
func TestSignInAccounting(t *testing.T) {
	ctx := context.Background()
	s, clock := openClocked(t)
	a := mustAdmin(t, s, "root", RoleOwner, "")
	for i := 1; i <= 50; i++ {
		got, err := s.RecordSignInFailure(ctx, a.ID)
		if err != nil || got.FailedSignIns != i || got.Name != "root" {
			t.Fatalf("failure %d: %+v, %v", i, got, err)
		}
	}
	if _, err := s.RecordSignInFailure(ctx, a.ID+100); !errors.Is(err, ErrNotFound) {
		t.Errorf("failure of an unknown admin: %v", err)
	}
	if err := s.RecordSignIn(ctx, a.ID, clock.Now()); err != nil {
		t.Fatal(err)
	}
	if stored, _ := s.Admin(ctx, "root"); stored.FailedSignIns != 0 || stored.LastSignIn.IsZero() {
		t.Errorf("after sign-in: %+v", stored)
	}
}

// schema's own constraints refuse them.
func TestSchemaRefusesBadAuthRows(t *testing.T) {
	ctx := context.Background()
	s, _ := openClocked(t)
	acme := mustTenant(t, s, "acme")
	owner := mustAdmin(t, s, "root", RoleOwner, "")
	hash, _ := HashPassword(testPassword)
	admin := func(change map[string]any) map[string]any {
		row := map[string]any{"name": "ok", "password_hash": hash, "role": "viewer", "created_at": 1, "password_set_at": 1}
		for k, v := range change {
			row[k] = v
		}
		return row
	}
	h32 := make([]byte, 32)
	for _, tc := range []struct {
		name, table string
		row         map[string]any
	}{
		{"admin name upper case", "admins", admin(map[string]any{"name": "Root2"})},
		{"admin name slash", "admins", admin(map[string]any{"name": "a/b"})},
		{"admin name too long", "admins", admin(map[string]any{"name": strings.Repeat("a", 65)})},
		{"admin name duplicate", "admins", admin(map[string]any{"name": "root"})},
		{"admin plain password", "admins", admin(map[string]any{"password_hash": "hunter2"})},
		{"admin bcrypt hash", "admins", admin(map[string]any{"password_hash": "$2y$10$abcdefghijklmnopqrstuv"})},
		{"admin unknown role", "admins", admin(map[string]any{"role": "root"})},
		{"admin owner with tenant", "admins", admin(map[string]any{"role": "owner", "tenant_id": acme.ID})},
		{"admin tenant admin without tenant", "admins", admin(map[string]any{"role": "tenant_admin"})},
		{"admin unknown tenant", "admins", admin(map[string]any{"tenant_id": 999})},
		{"admin short TOTP ciphertext", "admins", admin(map[string]any{"totp_secret_enc": []byte{1, 2, 3}})},
		{"admin disabled 2", "admins", admin(map[string]any{"disabled": 2})},
		{"admin negative failures", "admins", admin(map[string]any{"failed_signins": -1})},
		{"session short hash", "sessions", map[string]any{"token_hash": []byte("x"), "admin_id": owner.ID, "created_at": 1, "last_seen": 1, "expires_at": 2, "remote_addr": "", "user_agent": ""}},
		{"session unknown admin", "sessions", map[string]any{"token_hash": h32, "admin_id": 999, "created_at": 1, "last_seen": 1, "expires_at": 2, "remote_addr": "", "user_agent": ""}},
		{"session expires before it starts", "sessions", map[string]any{"token_hash": h32, "admin_id": owner.ID, "created_at": 5, "last_seen": 5, "expires_at": 5, "remote_addr": "", "user_agent": ""}},
		{"token tenant admin without tenant", "api_tokens", map[string]any{"name": "ci", "token_hash": h32, "role": "tenant_admin", "created_at": 1}},
		{"token expires before creation", "api_tokens", map[string]any{"name": "ci", "token_hash": h32, "role": "viewer", "created_at": 5, "expires_at": 4}},
		{"audit without action", "audit_log", map[string]any{"at": 1, "actor": "a", "remote": "", "action": "", "target": "", "detail": ""}},
		{"audit bad tenant", "audit_log", map[string]any{"at": 1, "actor": "a", "remote": "", "tenant": "", "action": "x", "target": "", "detail": ""}},
	} {
		if err := insertRow(ctx, s, tc.table, tc.row); err == nil {
			t.Errorf("%s: row accepted", tc.name)
		}
	}
	// The audit log is append-only, even for raw SQL.
	if err := s.AppendAudit(ctx, AuditEntry{Actor: "root", Action: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"} {
		if _, err := s.db.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v", q, err)
		}
	}
}

func TestAddFirstAdminHash(t *testing.T) {
	s, _ := openClocked(t)
	ctx := context.Background()
	if _, err := s.AddFirstAdminHash(ctx, "admin", "$argon2id$nope"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a malformed hash: err = %v, want ErrInvalid", err)
	}
	hash, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	created, err := s.AddFirstAdminHash(ctx, "admin", hash)
	if err != nil || !created {
		t.Fatalf("AddFirstAdminHash = %v, %v; want created", created, err)
	}
	a, ok, err := s.CheckAdminPassword(ctx, "admin", "correct horse battery staple")
	if err != nil || !ok || a.Role != RoleOwner {
		t.Fatalf("signing in with the preset password: %+v, %v, %v; want an owner", a, ok, err)
	}
	if created, err := s.AddFirstAdminHash(ctx, "admin2", hash); created || err != nil {
		t.Errorf("a second first admin: %v, %v; want not created", created, err)
	}
}
