package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Admin roles; the schema refuses others.
const (
	RoleOwner       = "owner"        // everything, every tenant
	RoleTenantAdmin = "tenant_admin" // everything within one tenant
	RoleViewer      = "viewer"       // read-only: every tenant, or one
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

// ValidateRole checks role and tenant together: role must be one of the three roles, a
// tenant admin needs a tenant, an owner may not have one. The error wraps ErrInvalid.
func ValidateRole(role, tenant string) error {
	switch role {
	case RoleOwner:
		if tenant != "" {
			return errorf(ErrInvalid, "an owner manages every tenant and cannot be limited to tenant %q: use role tenant_admin or viewer", truncate(tenant, 40))
		}
	case RoleTenantAdmin:
		if tenant == "" {
			return errorf(ErrInvalid, "a tenant admin needs a tenant: name it (--tenant T)")
		}
	case RoleViewer:
	default:
		return errorf(ErrInvalid, "role %q is unknown: use owner, tenant_admin or viewer", truncate(role, 40))
	}
	if tenant != "" {
		return ValidateTenantName(tenant)
	}
	return nil
}

// Password rules.
const (
	// MinPasswordLen is the fewest characters a password may have.
	MinPasswordLen = 12
	// MaxPasswordLen is the most bytes a password may have; hashing cost does not depend on
	// it, but a bound keeps request bodies and mistakes small.
	MaxPasswordLen = 256
)

// ValidatePassword reports whether password may be set for the admin name: 12-256 bytes of
// at least 12 characters, no control characters, and not the name itself. The error wraps
// ErrInvalid and says what to do.
func ValidatePassword(name, password string) error {
	n := utf8.RuneCountInString(password)
	switch {
	case password == "":
		return errorf(ErrInvalid, "the password is empty: choose one of at least %d characters (a few random words make a good one), or let popgate generate one", MinPasswordLen)
	case !utf8.ValidString(password):
		return errorf(ErrInvalid, "the password is not valid UTF-8 text: type it again")
	case n < MinPasswordLen:
		return errorf(ErrInvalid, "the password is too short (%d characters): use at least %d (a few random words make a good one), or let popgate generate one", n, MinPasswordLen)
	case len(password) > MaxPasswordLen:
		return errorf(ErrInvalid, "the password is too long (%d bytes): use at most %d", len(password), MaxPasswordLen)
	case strings.ContainsFunc(password, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errorf(ErrInvalid, "the password contains a control character (a line break or tab?): use letters, digits, spaces and punctuation")
	case strings.EqualFold(password, name):
		return errorf(ErrInvalid, "the password is the admin's name: choose another")
	}
	return nil
}

// argon2id parameters (OWASP's minimum: 19 MiB, 2 passes, 1 lane). Changing them leaves old
// hashes valid: each hash carries its own.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
)

// HashPassword returns the argon2id hash of password in PHC string form. It takes ~100 ms
// and 19 MiB: callers that take passwords from the network bound how many run at once.
func HashPassword(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("store: generate salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches the PHC string hash made by HashPassword
// (with whatever parameters it records, within sane bounds). The comparison takes constant
// time. A malformed hash is an error.
func VerifyPassword(hash, password string) (bool, error) {
	p, err := parsePHC(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(got, p.key) == 1, nil
}

// phc is a parsed argon2id PHC string.
type phc struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

// parsePHC parses $argon2id$v=19$m=M,t=T,p=P$salt$key, refusing parameters beyond bounds that
// keep one check under a second and 64 MiB, so that a damaged row cannot stall sign-ins.
func parsePHC(hash string) (phc, error) {
	var p phc
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, errors.New("store: password hash is not an argon2id PHC string")
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || seen[k] {
			return p, fmt.Errorf("store: password hash parameter %q is malformed", kv)
		}
		seen[k] = true
		switch k {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			p.threads = uint8(min(n, 255))
		default:
			return p, fmt.Errorf("store: password hash parameter %q is unknown", kv)
		}
	}
	if p.memory < 8 || p.memory > 64<<10 || p.time < 1 || p.time > 10 || p.threads < 1 || p.threads > 8 {
		return p, fmt.Errorf("store: password hash parameters %s are out of range", parts[3])
	}
	var err1, err2 error
	p.salt, err1 = base64.RawStdEncoding.DecodeString(parts[4])
	p.key, err2 = base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(p.salt) < 8 || len(p.key) < 16 || len(p.key) > 64 {
		return p, errors.New("store: password hash has a malformed salt or key")
	}
	return p, nil
}

// dummyPasswordHash is checked against when an admin name is unknown, so that a wrong name
// takes as long as a wrong password. Its password is random and discarded; a match would not
// count anyway.
const dummyPasswordHash = "$argon2id$v=19$m=19456,t=2,p=1$3vXqKDyFIV0v4Q9a2S0m0g$W8yZ2yJ0n8m1c4v0l3o5Jm6W1KfQvD9yH2s7rT3aPzE"

// passwordAlphabet has the 31 lower-case letters and digits that cannot be mistaken for each
// other (no 0/o, 1/l/i).
const passwordAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// GeneratePassword returns a random password of 24 characters (118 bits) in groups of four,
// "abcd-efgh-...", easy to type from a screen.
func GeneratePassword() (string, error) {
	const n = 24
	var b strings.Builder
	var buf [64]byte
	for count := 0; count < n; {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("store: generate password: %w", err)
		}
		for _, c := range buf {
			// Rejecting the top 8 values keeps every character equally likely.
			if count == n || int(c) >= 256/len(passwordAlphabet)*len(passwordAlphabet) {
				continue
			}
			if count > 0 && count%4 == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(passwordAlphabet[int(c)%len(passwordAlphabet)])
			count++
		}
	}
	return b.String(), nil
}

// writeAuth runs fn in one write transaction that does not advance the generation: admins,
// sessions, tokens, the audit log and download links are not desired network state, and
// nodes need not re-read anything when they change.
func (s *Store) writeAuth(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.writeTx(ctx, kindAuth, fn)
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

// ValidatePasswordHash checks that hash is an argon2id PHC string popgate can verify.
func ValidatePasswordHash(hash string) error {
	if _, err := parsePHC(hash); err != nil {
		return fmt.Errorf("%w: %s: make one with 'popgate admin hash-password' (it reads the password from stdin)",
			ErrInvalid, strings.TrimPrefix(err.Error(), "store: "))
	}
	return nil
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

// TOTPSecretLen is the length of TOTP secrets in bytes (160 bits, as RFC 4226 recommends).
const TOTPSecretLen = 20

// Sealed secrets of sealBytes: version, nonce, ciphertext and tag.
const sealedTOTPLen = 1 + chacha20poly1305.NonceSizeX + TOTPSecretLen + chacha20poly1305.Overhead // 61

func totpAD(adminID int64) []byte {
	return binary.BigEndian.AppendUint64([]byte("popgate admin totp secret v1\x00"), uint64(adminID))
}

// sealBytes encrypts plain bound to ad with the key file's secret.
func (s *Store) sealBytes(plain, ad []byte) ([]byte, error) {
	var nonce [chacha20poly1305.NonceSizeX]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("store: generate nonce: %w", err)
	}
	out := make([]byte, 0, 1+len(nonce)+len(plain)+chacha20poly1305.Overhead)
	out = append(out, sealVersion)
	out = append(out, nonce[:]...)
	return s.aead.Seal(out, nonce[:], plain, ad), nil
}

// openBytes decrypts a value of sealBytes with the same ad.
func (s *Store) openBytes(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < 1+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead || sealed[0] != sealVersion {
		return nil, errors.New("sealed secret has an unknown format")
	}
	nonce := sealed[1 : 1+chacha20poly1305.NonceSizeX]
	plain, err := s.aead.Open(nil, nonce, sealed[1+chacha20poly1305.NonceSizeX:], ad)
	if err != nil {
		return nil, errors.New("sealed secret does not open with this key file, or belongs to another row")
	}
	return plain, nil
}

// SetAdminTOTPPending stores secret (TOTPSecretLen bytes) as the TOTP secret being enrolled
// by admin id, replacing an earlier one; EnableAdminTOTP makes it the admin's.
func (s *Store) SetAdminTOTPPending(ctx context.Context, id int64, secret []byte) error {
	if len(secret) != TOTPSecretLen {
		return errorf(ErrInvalid, "a TOTP secret has %d bytes, not %d", TOTPSecretLen, len(secret))
	}
	sealed, err := s.sealBytes(secret, totpAD(id))
	if err != nil {
		return err
	}
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE admins SET totp_pending_enc = ? WHERE id = ?", sealed, id)
		return oneRow(res, err, "admin", id)
	})
}

// oneRow turns the result of an UPDATE of one row by id into an error: ErrNotFound when no row
// had the id.
func oneRow(res sql.Result, err error, what string, id int64) error {
	if err != nil {
		return fmt.Errorf("store: update %s: %w", what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: update %s: %w", what, err)
	} else if n == 0 {
		return errorf(ErrNotFound, "%s #%d not found: it was removed meanwhile", what, id)
	}
	return nil
}

// AdminTOTPSecret returns the TOTP secret of admin id: the enabled one, or with pending set
// the one being enrolled. The error wraps ErrNotFound when there is none.
func (s *Store) AdminTOTPSecret(ctx context.Context, id int64, pending bool) ([]byte, error) {
	col := "totp_secret_enc"
	if pending {
		col = "totp_pending_enc"
	}
	var sealed []byte
	err := s.db.QueryRowContext(ctx, "SELECT "+col+" FROM admins WHERE id = ?", id).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) || err == nil && sealed == nil {
		return nil, errorf(ErrNotFound, "admin #%d has no TOTP secret: enrol one first", id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: read admin: %w", err)
	}
	secret, err := s.openBytes(sealed, totpAD(id))
	if err == nil && len(sealed) != sealedTOTPLen {
		err = errors.New("it has the wrong length")
	}
	if err != nil {
		return nil, errorf(ErrInvalid, "the TOTP secret of admin #%d cannot be decrypted (%v): disable TOTP for it ('popgate admin disable-totp NAME') and enrol again", id, err)
	}
	return secret, nil
}

// EnableAdminTOTP turns the pending TOTP secret of admin id into its secret, with step as the
// last time step used (the one that confirmed it). The error wraps ErrNotFound when no
// secret is pending.
func (s *Store) EnableAdminTOTP(ctx context.Context, id int64, step int64) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE admins SET totp_secret_enc = totp_pending_enc, totp_pending_enc = NULL,
			totp_last_step = max(totp_last_step, ?) WHERE id = ? AND totp_pending_enc IS NOT NULL`, step, id)
		if err := oneRow(res, err, "admin", id); errors.Is(err, ErrNotFound) {
			return errorf(ErrNotFound, "no TOTP enrolment is pending: start again")
		} else if err != nil {
			return err
		}
		a, err := getAdmin(ctx, tx, "WHERE a.id = ?", id, "#"+strconv.FormatInt(id, 10))
		if err != nil {
			return err
		}
		return s.logChange(ctx, tx, "", "admin.totp.enable", AdminTarget(a.Name), "one-time codes turned on")
	})
}

// DisableAdminTOTP turns off the TOTP second factor of admin name (and drops a pending
// enrolment). The error wraps ErrNotFound for an unknown admin.
func (s *Store) DisableAdminTOTP(ctx context.Context, name string) (Admin, error) {
	var a Admin
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		var err error
		if a, err = getAdmin(ctx, tx, "WHERE a.name = ?", name, name); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE admins SET totp_secret_enc = NULL, totp_pending_enc = NULL WHERE id = ?", a.ID)
		if err != nil {
			return fmt.Errorf("store: update admin %s: %w", name, err)
		}
		if !a.TOTPEnabled {
			return nil // at most a pending enrolment went: nothing an admin would call a change
		}
		a.TOTPEnabled = false
		return s.logChange(ctx, tx, "", "admin.totp.disable", AdminTarget(a.Name), "one-time codes turned off")
	})
	return a, err
}

// UseAdminTOTPStep records that admin id used the TOTP code of time step, and reports false
// when that step or a later one was used already (a replayed code). Check and record are one
// statement, so two requests with the same code cannot both succeed.
func (s *Store) UseAdminTOTPStep(ctx context.Context, id int64, step int64) (bool, error) {
	var ok bool
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE admins SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?", step, id, step)
		if err != nil {
			return fmt.Errorf("store: update admin: %w", err)
		}
		n, err := res.RowsAffected()
		ok = n == 1
		return err
	})
	return ok, err
}

// secretBytes is the number of random bytes in session, API token and download link secrets.
const secretBytes = 32

// newSecret returns prefix followed by secretBytes random bytes in unpadded base64url, and
// the SHA-256 of the whole string, which is what the database keeps.
func newSecret(prefix string) (string, [32]byte, error) {
	var raw [secretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", [32]byte{}, fmt.Errorf("store: generate secret: %w", err)
	}
	s := prefix + base64.RawURLEncoding.EncodeToString(raw[:])
	return s, sha256.Sum256([]byte(s)), nil
}

// clean makes s fit a text column of at most n characters: invalid UTF-8 and control
// characters become U+FFFD, and the end is cut at a character boundary.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || 0x80 <= r && r < 0xa0 || r == '\u2028' || r == '\u2029' {
			return '\uFFFD'
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// roleDetail words a role and tenant for the audit log: "role tenant_admin, tenant acme".
func roleDetail(role, tenant string) string {
	if tenant == "" {
		return "role " + role
	}
	return "role " + role + ", tenant " + tenant
}
