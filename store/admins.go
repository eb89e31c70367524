package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Admin is a person who may sign in to the web UI. The password hash and TOTP secret never
// leave the store.
type Admin struct {
	ID   int64
	Name string
	// Role is RoleOwner, RoleTenantAdmin or RoleViewer.
	Role string
	// TenantID and TenantName limit the admin to one tenant; 0 and "" for none. Set for every
	// tenant admin, never for an owner.
	TenantID   int64
	TenantName string
	// TOTPEnabled: signing in needs a one-time code besides the password.
	TOTPEnabled bool
	// FailedSignIns counts failed sign-ins since the last success, from any address. It never
	// locks the admin out: the web server slows down the addresses that fail instead.
	FailedSignIns int
	Disabled      bool
	CreatedAt     time.Time
	// PasswordSetAt is when the password was last set.
	PasswordSetAt time.Time
	// LastSignIn is zero when the admin never signed in.
	LastSignIn time.Time
}

// NewAdmin is what AddAdmin needs.
type NewAdmin struct {
	Name string
	// Role is RoleOwner, RoleTenantAdmin or RoleViewer.
	Role string
	// Tenant is the tenant a tenant admin (required) or a viewer (optional) is limited to.
	Tenant string
	// Password in the clear; AddAdmin stores its argon2id hash. See ValidatePassword.
	Password string
}

// Name rules of admins and API tokens (the schema repeats them).
const (
	maxAdminName  = 64
	adminNameRule = "use 1-64 lower-case letters, digits, '.', '_', '@' and '-', starting with a letter or digit"
)

func isAdminNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-'
}

// ValidateAdminName reports whether name is a valid admin name. The error wraps ErrInvalid.
func ValidateAdminName(name string) error {
	if problem := adminNameProblem(name); problem != "" {
		return errorf(ErrInvalid, "admin name %q is invalid: %s; %s", truncate(name, 80), problem, adminNameRule)
	}
	return nil
}

// ValidateTokenName reports whether name is a valid API token name (the admin-name rule). The
// error wraps ErrInvalid.
func ValidateTokenName(name string) error {
	if problem := adminNameProblem(name); problem != "" {
		return errorf(ErrInvalid, "API token name %q is invalid: %s; %s", truncate(name, 80), problem, adminNameRule)
	}
	return nil
}

func adminNameProblem(name string) string {
	p := nameProblem(name, maxAdminName, isAdminNameByte)
	if p == "" && !('a' <= name[0] && name[0] <= 'z' || '0' <= name[0] && name[0] <= '9') {
		p = fmt.Sprintf("it starts with %q", name[0])
	}
	return p
}

func adminNotFound(name string) error {
	return errorf(ErrNotFound, "admin %q not found: list admins with 'popgate admin list'", truncate(name, 80))
}

// AddAdmin creates an admin with the hash of na.Password. The error wraps ErrInvalid for a
// bad name, role or password, ErrNotFound for an unknown tenant and ErrExists when the name
// is taken; then nothing is stored.
func (s *Store) AddAdmin(ctx context.Context, na NewAdmin) (Admin, error) {
	if err := ValidateAdminName(na.Name); err != nil {
		return Admin{}, err
	}
	if err := ValidateRole(na.Role, na.Tenant); err != nil {
		return Admin{}, err
	}
	if err := ValidatePassword(na.Name, na.Password); err != nil {
		return Admin{}, err
	}
	hash, err := HashPassword(na.Password) // before the transaction: it is slow
	if err != nil {
		return Admin{}, err
	}
	var a Admin
	err = s.writeAuth(ctx, func(tx *sql.Tx) error {
		var err error
		if a, err = insertAdmin(ctx, tx, na, hash, s.now()); err != nil {
			return err
		}
		return s.logChange(ctx, tx, "", "admin.add", AdminTarget(a.Name), roleDetail(a.Role, a.TenantName))
	})
	return a, err
}

// AddFirstAdmin creates the owner name with password when there is no admin at all, and
// reports whether it did. The check and the insert are one transaction.
func (s *Store) AddFirstAdmin(ctx context.Context, name, password string) (bool, error) {
	if err := ValidateAdminName(name); err != nil {
		return false, err
	}
	if err := ValidatePassword(name, password); err != nil {
		return false, err
	}
	if n, err := s.countAdmins(ctx); err != nil || n > 0 {
		return false, err // the common case, without hashing
	}
	hash, err := HashPassword(password)
	if err != nil {
		return false, err
	}
	return s.addFirstAdminHash(ctx, name, hash)
}

// AddFirstAdminHash is AddFirstAdmin with the password's argon2id hash (PHC string, as
// HashPassword makes) instead of the password: for a password chosen before the first start,
// e.g. in a VM image's seed.
func (s *Store) AddFirstAdminHash(ctx context.Context, name, hash string) (bool, error) {
	if err := ValidateAdminName(name); err != nil {
		return false, err
	}
	if err := ValidatePasswordHash(hash); err != nil {
		return false, err
	}
	return s.addFirstAdminHash(ctx, name, hash)
}

func (s *Store) countAdmins(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM admins").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count admins: %w", err)
	}
	return n, nil
}

func (s *Store) addFirstAdminHash(ctx context.Context, name, hash string) (bool, error) {
	created := false
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM admins").Scan(&n); err != nil || n > 0 {
			return err
		}
		if _, err := insertAdmin(ctx, tx, NewAdmin{Name: name, Role: RoleOwner}, hash, s.now()); err != nil {
			return err
		}
		created = true
		return s.logChange(ctx, tx, "", "admin.add", AdminTarget(name), "role owner; the first admin")
	})
	return created, err
}

func insertAdmin(ctx context.Context, tx *sql.Tx, na NewAdmin, hash string, now time.Time) (Admin, error) {
	now = fromMicros(micros(now))
	a := Admin{Name: na.Name, Role: na.Role, TenantName: na.Tenant, CreatedAt: now, PasswordSetAt: now}
	var tenantID any
	if na.Tenant != "" {
		t, err := getTenant(ctx, tx, na.Tenant)
		if err != nil {
			return Admin{}, err
		}
		a.TenantID, tenantID = t.ID, t.ID
	}
	var taken bool
	if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM admins WHERE name = ?)", na.Name).Scan(&taken); err != nil {
		return Admin{}, fmt.Errorf("store: add admin %s: %w", na.Name, err)
	}
	if taken {
		return Admin{}, errorf(ErrExists, "admin %q already exists: choose another name, or set its password with 'popgate admin passwd %s'", na.Name, na.Name)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO admins (name, password_hash, role, tenant_id, created_at, password_set_at)
		VALUES (?, ?, ?, ?, ?, ?)`, na.Name, hash, na.Role, tenantID, micros(now), micros(now))
	if err != nil {
		return Admin{}, fmt.Errorf("store: add admin %s: %w", na.Name, err)
	}
	if a.ID, err = res.LastInsertId(); err != nil {
		return Admin{}, fmt.Errorf("store: add admin %s: %w", na.Name, err)
	}
	return a, nil
}

// adminColumns are the columns scanAdmin reads, of admins AS a and tenants AS t.
const adminColumns = `a.id, a.name, a.role, coalesce(a.tenant_id, 0), coalesce(t.name, ''),
	a.totp_secret_enc IS NOT NULL, a.failed_signins, a.disabled, a.created_at,
	a.password_set_at, coalesce(a.last_signin_at, 0) `

// adminSelect is the start of every admin query; callers append WHERE and ORDER BY.
const adminSelect = "SELECT " + adminColumns + "FROM admins AS a LEFT JOIN tenants AS t ON t.id = a.tenant_id "

// scanAdmin reads one row of adminSelect with scan, the Scan of a row or rows.
func scanAdmin(scan func(dest ...any) error) (Admin, error) {
	var a Admin
	var created, pwSet, lastSignIn int64
	if err := scan(&a.ID, &a.Name, &a.Role, &a.TenantID, &a.TenantName, &a.TOTPEnabled,
		&a.FailedSignIns, &a.Disabled, &created, &pwSet, &lastSignIn); err != nil {
		return Admin{}, err
	}
	a.LastSignIn = optMicros(lastSignIn)
	a.CreatedAt, a.PasswordSetAt = fromMicros(created), fromMicros(pwSet)
	return a, nil
}

// optMicros is fromMicros with 0 as the zero time.
func optMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return fromMicros(us)
}

// optTime is micros with the zero time as SQL NULL.
func optTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return micros(t)
}

func getAdmin(ctx context.Context, q querier, where string, arg any, name string) (Admin, error) {
	a, err := scanAdmin(q.QueryRowContext(ctx, adminSelect+where, arg).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Admin{}, adminNotFound(name)
	}
	if err != nil {
		return Admin{}, fmt.Errorf("store: read admin %s: %w", name, err)
	}
	return a, nil
}

// Admin returns the admin name; the error wraps ErrNotFound when there is none.
func (s *Store) Admin(ctx context.Context, name string) (Admin, error) {
	return getAdmin(ctx, s.db, "WHERE a.name = ?", name, name)
}

// AdminByID returns the admin with id; the error wraps ErrNotFound when there is none.
func (s *Store) AdminByID(ctx context.Context, id int64) (Admin, error) {
	return getAdmin(ctx, s.db, "WHERE a.id = ?", id, "#"+strconv.FormatInt(id, 10))
}

// ListAdmins returns every admin ordered by name.
func (s *Store) ListAdmins(ctx context.Context) ([]Admin, error) {
	rows, err := s.db.QueryContext(ctx, adminSelect+"ORDER BY a.name")
	if err != nil {
		return nil, fmt.Errorf("store: list admins: %w", err)
	}
	defer rows.Close()
	out := []Admin{}
	for rows.Next() {
		a, err := scanAdmin(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("store: list admins: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list admins: %w", err)
	}
	return out, nil
}

// lastOwnerCheck refuses a change that would leave no enabled owner: a is the admin about to
// lose being one.
func lastOwnerCheck(ctx context.Context, tx *sql.Tx, a Admin, what string) error {
	if a.Role != RoleOwner || a.Disabled {
		return nil
	}
	var others int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM admins WHERE role = 'owner' AND disabled = 0 AND id != ?", a.ID).Scan(&others); err != nil {
		return fmt.Errorf("store: count owners: %w", err)
	}
	if others == 0 {
		return errorf(ErrInvalid, "cannot %s admin %q: it is the last enabled owner; add another owner first ('popgate admin add --role owner NAME')", what, a.Name)
	}
	return nil
}

// RemoveAdmin deletes the admin name with its sessions and returns it as it was. It refuses
// (ErrInvalid) to remove the last enabled owner; the error wraps ErrNotFound when there is no
// such admin.
func (s *Store) RemoveAdmin(ctx context.Context, name string) (Admin, error) {
	var a Admin
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		var err error
		if a, err = getAdmin(ctx, tx, "WHERE a.name = ?", name, name); err != nil {
			return err
		}
		if err := lastOwnerCheck(ctx, tx, a, "remove"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM admins WHERE id = ?", a.ID); err != nil {
			return fmt.Errorf("store: remove admin %s: %w", name, err)
		}
		return s.logChange(ctx, tx, "", "admin.remove", AdminTarget(a.Name), roleDetail(a.Role, a.TenantName))
	})
	return a, err
}

// SetAdminPassword replaces the password of admin name, ends all of its sessions and clears
// its failure count. The error wraps ErrInvalid for a bad password and ErrNotFound for an unknown admin.
func (s *Store) SetAdminPassword(ctx context.Context, name, password string) (Admin, error) {
	if err := ValidatePassword(name, password); err != nil {
		return Admin{}, err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return Admin{}, err
	}
	var a Admin
	err = s.writeAuth(ctx, func(tx *sql.Tx) error {
		if a, err = getAdmin(ctx, tx, "WHERE a.name = ?", name, name); err != nil {
			return err
		}
		now := fromMicros(micros(s.now()))
		if _, err := tx.ExecContext(ctx, `UPDATE admins SET password_hash = ?, password_set_at = ?,
			failed_signins = 0 WHERE id = ?`, hash, micros(now), a.ID); err != nil {
			return fmt.Errorf("store: set password of admin %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE admin_id = ?", a.ID); err != nil {
			return fmt.Errorf("store: end sessions of admin %s: %w", name, err)
		}
		a.PasswordSetAt, a.FailedSignIns = now, 0
		return s.logChange(ctx, tx, "", "admin.password", AdminTarget(a.Name), "new password; its sessions ended")
	})
	return a, err
}

// SetAdminRole changes the role and tenant of admin name (see ValidateRole). It refuses
// (ErrInvalid) to demote the last enabled owner.
func (s *Store) SetAdminRole(ctx context.Context, name, role, tenant string) (Admin, error) {
	if err := ValidateRole(role, tenant); err != nil {
		return Admin{}, err
	}
	var a Admin
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		var err error
		if a, err = getAdmin(ctx, tx, "WHERE a.name = ?", name, name); err != nil {
			return err
		}
		if role != RoleOwner {
			if err := lastOwnerCheck(ctx, tx, a, "demote"); err != nil {
				return err
			}
		}
		var tenantID any
		a.TenantID, a.TenantName = 0, ""
		if tenant != "" {
			t, err := getTenant(ctx, tx, tenant)
			if err != nil {
				return err
			}
			tenantID, a.TenantID, a.TenantName = t.ID, t.ID, t.Name
		}
		if _, err := tx.ExecContext(ctx, "UPDATE admins SET role = ?, tenant_id = ? WHERE id = ?", role, tenantID, a.ID); err != nil {
			return fmt.Errorf("store: set role of admin %s: %w", name, err)
		}
		a.Role = role
		return s.logChange(ctx, tx, "", "admin.update", AdminTarget(a.Name), roleDetail(a.Role, a.TenantName))
	})
	return a, err
}

// SetAdminDisabled disables (ending all of its sessions) or enables admin name. It refuses
// (ErrInvalid) to disable the last enabled owner.
func (s *Store) SetAdminDisabled(ctx context.Context, name string, disabled bool) (Admin, error) {
	var a Admin
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		var err error
		if a, err = getAdmin(ctx, tx, "WHERE a.name = ?", name, name); err != nil || a.Disabled == disabled {
			return err
		}
		if disabled {
			if err := lastOwnerCheck(ctx, tx, a, "disable"); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE admin_id = ?", a.ID); err != nil {
				return fmt.Errorf("store: end sessions of admin %s: %w", name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE admins SET disabled = ?, failed_signins = 0 WHERE id = ?", disabled, a.ID); err != nil {
			return fmt.Errorf("store: update admin %s: %w", name, err)
		}
		a.Disabled, a.FailedSignIns = disabled, 0
		detail := "enabled"
		if disabled {
			detail = "disabled; its sessions ended"
		}
		return s.logChange(ctx, tx, "", "admin.update", AdminTarget(a.Name), detail)
	})
	return a, err
}

// CheckAdminPassword reports whether password is the password of admin name. For an unknown
// name it spends the same time and returns an error wrapping ErrNotFound. It does not look at
// throttling or disabled: the caller decides what a match means. It costs one argon2id hash.
func (s *Store) CheckAdminPassword(ctx context.Context, name, password string) (Admin, bool, error) {
	var hash string
	a, err := scanAdmin(s.db.QueryRowContext(ctx, adminSelect+"WHERE a.name = ?", name).Scan)
	if err == nil {
		err = s.db.QueryRowContext(ctx, "SELECT password_hash FROM admins WHERE id = ?", a.ID).Scan(&hash)
	}
	if errors.Is(err, sql.ErrNoRows) {
		VerifyPassword(dummyPasswordHash, password)
		return Admin{}, false, adminNotFound(name)
	}
	if err != nil {
		return Admin{}, false, fmt.Errorf("store: read admin %s: %w", name, err)
	}
	ok, err := VerifyPassword(hash, password)
	if err != nil {
		return Admin{}, false, fmt.Errorf("admin %s: %w", name, err)
	}
	return a, ok, nil
}

// RecordSignInFailure counts a failed sign-in of admin id and returns the admin as stored
// afterwards. It never locks the admin: whom to slow down is the web server's to decide, per
// address (see webui's signinThrottle).
func (s *Store) RecordSignInFailure(ctx context.Context, id int64) (Admin, error) {
	var a Admin
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE admins SET failed_signins = failed_signins + 1 WHERE id = ?", id)
		if err := oneRow(res, err, "admin", id); err != nil {
			return err
		}
		a, err = getAdmin(ctx, tx, "WHERE a.id = ?", id, "#"+strconv.FormatInt(id, 10))
		return err
	})
	return a, err
}

// RecordSignIn notes a successful sign-in of admin id at now: the failure count is cleared.
func (s *Store) RecordSignIn(ctx context.Context, id int64, now time.Time) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE admins SET failed_signins = 0, last_signin_at = ? WHERE id = ?",
			micros(now), id)
		if err != nil {
			return fmt.Errorf("store: update admin: %w", err)
		}
		return nil
	})
}
