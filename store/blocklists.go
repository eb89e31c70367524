package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DNS blocklists (issue 17): a tenant's lists of names the in-tunnel resolver answers NXDOMAIN.
// A list is desired state (adding and removing one, and new content, advance the generation
// and are audited); the outcome of each fetch is bookkeeping. Contents are kept once per
// SHA-256 (dns_blobs), shared by the lists that hold the same names; a joined node keeps the
// contents it serves in its own database (SaveBlob, KeepBlobs).

// blocklistsVersion is the schema version that added blocklists.
const blocklistsVersion = 16

// Bounds of blocklists. A node holds every list of every tenant it serves in memory (about
// 28 bytes a name), so that no tenant may make it hold more than
// MaxTenantBlocklistNames names.
const (
	// MaxBlocklists bounds a tenant's lists.
	MaxBlocklists = 8
	// MaxBlocklistNames bounds the names of one list; MaxTenantBlocklistNames those of all of
	// a tenant's lists together.
	MaxBlocklistNames       = 1_000_000
	MaxTenantBlocklistNames = 2_000_000
	// MaxBlocklistSize bounds what is read of a list's source (a fetched URL, an uploaded
	// file), and so its content.
	MaxBlocklistSize = 64 << 20
	// MinBlocklistEvery and MaxBlocklistEvery bound how often a list is fetched;
	// DefaultBlocklistEvery is the default.
	MinBlocklistEvery     = time.Hour
	MaxBlocklistEvery     = 7 * 24 * time.Hour
	DefaultBlocklistEvery = 24 * time.Hour
	// BlocklistRetry is how soon a list whose last fetch failed is fetched again, when its
	// interval is longer.
	BlocklistRetry = time.Hour
	// MaxBlocklistURL bounds a list's URL.
	MaxBlocklistURL = 2048
	// maxBlocklistError bounds the error kept of a failed fetch.
	maxBlocklistError = 300
)

// Blocklist is one of a tenant's DNS blocklists.
type Blocklist struct {
	ID         int64
	TenantID   int64
	TenantName string
	Name       string
	// URL is where the controller fetches it, every Every; "" for an uploaded list (Every 0).
	URL   string
	Every time.Duration
	// PrivateOK: an owner added it, and its URL may lead to a private address; a tenant
	// admin's list is fetched from public addresses only.
	PrivateOK bool
	// SHA256 names its content (the canonical list of Names names); Skipped is how many
	// entries of its source were no name to block.
	SHA256  [32]byte
	Names   int
	Skipped int
	// UpdatedAt is when its content last changed; CheckedAt when it was last fetched or
	// uploaded, whatever came of it.
	UpdatedAt time.Time
	CheckedAt time.Time
	// Error is why the last fetch failed, at ErrorAt; "" when it succeeded. The content is
	// then the last one fetched well.
	Error     string
	ErrorAt   time.Time
	CreatedAt time.Time
}

// Uploaded reports whether b's content came from a file rather than a URL.
func (b *Blocklist) Uploaded() bool { return b.URL == "" }

// BlocklistContent is a list's content in the canonical form (gateway/blocklist.List).
type BlocklistContent struct {
	Body    []byte
	SHA256  [32]byte
	Names   int
	Skipped int
}

// NewBlocklist is a list to add, with its first content.
type NewBlocklist struct {
	Tenant string
	Name   string
	// URL and Every: where it is fetched from, and how often (0: DefaultBlocklistEvery);
	// URL "" for an uploaded list.
	URL       string
	Every     time.Duration
	PrivateOK bool
	Content   BlocklistContent
}

// BlocklistTarget names a tenant's list in the audit log.
func BlocklistTarget(tenant, name string) string { return "blocklist:" + tenant + "/" + name }

const blocklistNameRule = "use 1-32 lower-case letters, digits and '-', starting with a letter or digit"

// ValidateBlocklistName reports whether name is a valid blocklist name. The error wraps
// ErrInvalid.
func ValidateBlocklistName(name string) error {
	if problem := nameProblem(name, 32, isTenantNameByte); problem != "" {
		return errorf(ErrInvalid, "blocklist name %q is invalid: %s; %s", truncate(name, 80), problem, blocklistNameRule)
	}
	return nil
}

// ValidateBlocklistURL checks the URL of a list: http or https, a host, no credentials, at
// most MaxBlocklistURL printable ASCII characters. The error wraps ErrInvalid.
func ValidateBlocklistURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case len(raw) > MaxBlocklistURL || strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r > '~' }):
		return errorf(ErrInvalid, "the URL %q is longer than %d characters or holds spaces or other than printable ASCII: escape them (%%20)", truncate(raw, 80), MaxBlocklistURL)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errorf(ErrInvalid, "%q is not an http or https URL: give e.g. https://example.com/hosts.txt", truncate(raw, 80))
	case u.User != nil:
		return errorf(ErrInvalid, "the URL %q holds credentials, which every admin who lists blocklists would see: use a URL that needs none", truncate(raw, 80))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errorf(ErrInvalid, "the URL %q has a bad port: use 1-65535", truncate(raw, 80))
		}
	}
	return nil
}

// ValidateBlocklistEvery checks how often a list is fetched. The error wraps ErrInvalid.
func ValidateBlocklistEvery(d time.Duration) error {
	if d < MinBlocklistEvery || d > MaxBlocklistEvery || d%time.Second != 0 {
		return errorf(ErrInvalid, "a blocklist is fetched every %s to %s, not every %s", durationText(MinBlocklistEvery), durationText(MaxBlocklistEvery), d)
	}
	return nil
}

// durationText writes whole hours as "24h" rather than "24h0m0s".
func durationText(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

func (c *BlocklistContent) validate() error {
	if sha256.Sum256(c.Body) != c.SHA256 {
		return errorf(ErrInvalid, "blocklist content does not match its SHA-256 (a bug in popgate)")
	}
	if c.Names < 0 || c.Skipped < 0 {
		return errorf(ErrInvalid, "blocklist content has %d names and %d skipped", c.Names, c.Skipped)
	}
	if c.Names > MaxBlocklistNames {
		return errorf(ErrInvalid, "the list has %d names, more than %d, the most one list may have: use a smaller list, or split it into several", c.Names, MaxBlocklistNames)
	}
	return nil
}

func blocklistNotFound(tenant, name string) error {
	return errorf(ErrNotFound, "blocklist %q of tenant %q not found: list them with 'popgate dns blocklist list --tenant %s'", truncate(name, 80), truncate(tenant, 80), truncate(tenant, 80))
}

// AddBlocklist adds a list with its first content, audited as dns.blocklist.add (from a URL)
// or dns.blocklist.upload (from a file). The error wraps ErrInvalid for a bad
// name, URL or interval, or when the tenant has as many lists or names as it may; ErrNotFound
// for an unknown tenant; ErrExists when the name is taken.
func (s *Store) AddBlocklist(ctx context.Context, nb NewBlocklist) (Blocklist, error) {
	if err := ValidateBlocklistName(nb.Name); err != nil {
		return Blocklist{}, err
	}
	if nb.URL != "" {
		if err := ValidateBlocklistURL(nb.URL); err != nil {
			return Blocklist{}, err
		}
		if nb.Every == 0 {
			nb.Every = DefaultBlocklistEvery
		}
		if err := ValidateBlocklistEvery(nb.Every); err != nil {
			return Blocklist{}, err
		}
	} else {
		nb.Every, nb.PrivateOK = 0, false
	}
	if err := nb.Content.validate(); err != nil {
		return Blocklist{}, err
	}
	now := fromMicros(micros(s.now()))
	b := Blocklist{TenantName: nb.Tenant, Name: nb.Name, URL: nb.URL, Every: nb.Every, PrivateOK: nb.PrivateOK,
		SHA256: nb.Content.SHA256, Names: nb.Content.Names, Skipped: nb.Content.Skipped, UpdatedAt: now, CheckedAt: now, CreatedAt: now}
	err := s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, nb.Tenant)
		if err != nil {
			return err
		}
		b.TenantID = t.ID
		var n, names int
		if err := tx.QueryRowContext(ctx, `SELECT count(*), ifnull(sum(o.names), 0) FROM dns_blocklists AS l
			JOIN dns_blobs AS o ON o.sha256 = l.sha256 WHERE l.tenant_id = ?`, t.ID).Scan(&n, &names); err != nil {
			return fmt.Errorf("store: count blocklists: %w", err)
		}
		if n >= MaxBlocklists {
			return errorf(ErrInvalid, "tenant %s has %d blocklists, the most it may have: remove one first ('popgate dns blocklist remove')", nb.Tenant, n)
		}
		if err := tenantNamesBound(nb.Tenant, names, nb.Content.Names); err != nil {
			return err
		}
		var taken bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM dns_blocklists WHERE tenant_id = ? AND name = ?)", t.ID, nb.Name).Scan(&taken); err != nil {
			return fmt.Errorf("store: read blocklists: %w", err)
		}
		if taken {
			return errorf(ErrExists, "blocklist %q of tenant %s exists already: choose another name, or remove it first", nb.Name, nb.Tenant)
		}
		if err := s.putBlob(ctx, tx, nb.Content); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO dns_blocklists (tenant_id, name, url, every_s, private_ok, sha256, skipped,
			updated_at, checked_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, b.Name, b.URL, int64(b.Every/time.Second), b.PrivateOK, b.SHA256[:], b.Skipped, micros(now), micros(now), micros(now))
		if err != nil {
			return fmt.Errorf("store: add blocklist %s: %w", nb.Name, err)
		}
		if b.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: add blocklist %s: %w", nb.Name, err)
		}
		action := "dns.blocklist.add"
		if b.Uploaded() {
			action = "dns.blocklist.upload"
		}
		return s.logChange(ctx, tx, nb.Tenant, action, BlocklistTarget(nb.Tenant, nb.Name), blocklistDetail(&b))
	})
	if err != nil {
		return Blocklist{}, err
	}
	return b, nil
}

// blocklistDetail is what the audit log says of a list's content and source.
func blocklistDetail(b *Blocklist) string {
	from := "uploaded"
	if b.URL != "" {
		from = fmt.Sprintf("from %s every %s", truncate(b.URL, 200), durationText(b.Every))
	}
	return fmt.Sprintf("%d names (%d skipped), sha256 %x, %s", b.Names, b.Skipped, b.SHA256[:8], from)
}

// tenantNamesBound refuses content of add names when the tenant's other lists hold others.
func tenantNamesBound(tenant string, others, add int) error {
	if others+add > MaxTenantBlocklistNames {
		return errorf(ErrInvalid, "tenant %s's blocklists would hold %d names, more than %d, the most a tenant's lists may hold together: remove a list, or use smaller ones", tenant, others+add, MaxTenantBlocklistNames)
	}
	return nil
}

// putBlob stores content c once (a blob with its hash may be there already).
func (s *Store) putBlob(ctx context.Context, tx *sql.Tx, c BlocklistContent) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO dns_blobs (sha256, names, body, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (sha256) DO NOTHING`, c.SHA256[:], c.Names, c.Body, micros(s.now()))
	if err != nil {
		return fmt.Errorf("store: keep a blocklist's content: %w", err)
	}
	return nil
}

// ReplaceBlocklistContent gives an uploaded list new content. The error wraps ErrNotFound when
// there is no such list, ErrInvalid when it is fetched from a URL or the tenant's lists would
// hold more names than they may.
func (s *Store) ReplaceBlocklistContent(ctx context.Context, tenant, name string, c BlocklistContent) (Blocklist, error) {
	if err := c.validate(); err != nil {
		return Blocklist{}, err
	}
	b, err := s.Blocklist(ctx, tenant, name)
	if err != nil {
		return Blocklist{}, err
	}
	if !b.Uploaded() {
		return Blocklist{}, errorf(ErrInvalid, "blocklist %q of tenant %s is fetched from %s: refresh it ('popgate dns blocklist refresh'), or remove it and add it again from a file", name, tenant, truncate(b.URL, 200))
	}
	return s.setContent(ctx, b, c, "dns.blocklist.upload")
}

// RefreshedBlocklist records a fetch of list id that brought content c: new content is
// stored (advancing the generation, audited as dns.blocklist.refresh), the same content only
// notes the time; either clears the list's error. The error wraps ErrNotFound when the list
// was removed meanwhile, ErrInvalid when the tenant's lists would hold more names than they
// may (then the list keeps its content; record that with FailedBlocklist).
func (s *Store) RefreshedBlocklist(ctx context.Context, id int64, c BlocklistContent) (b Blocklist, changed bool, err error) {
	if err := c.validate(); err != nil {
		return Blocklist{}, false, err
	}
	b, err = s.blocklistByID(ctx, id)
	if err != nil {
		return Blocklist{}, false, err
	}
	now := s.now()
	if b.SHA256 == c.SHA256 {
		var res sql.Result
		err := s.writeAuth(ctx, func(tx *sql.Tx) error {
			var err error
			res, err = tx.ExecContext(ctx, "UPDATE dns_blocklists SET checked_at = ?, error = '', error_at = 0, skipped = ? WHERE id = ? AND sha256 = ?",
				micros(now), c.Skipped, id, c.SHA256[:])
			return err
		})
		if err != nil {
			return Blocklist{}, false, fmt.Errorf("store: note a blocklist's fetch: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			b.CheckedAt, b.Error, b.ErrorAt, b.Skipped = fromMicros(micros(now)), "", time.Time{}, c.Skipped
			return b, false, nil
		}
		// Changed meanwhile: store it as new content.
		if b, err = s.blocklistByID(ctx, id); err != nil {
			return Blocklist{}, false, err
		}
	}
	b, err = s.setContent(ctx, b, c, "dns.blocklist.refresh")
	return b, err == nil, err
}

// setContent gives list b content c, audited as action.
func (s *Store) setContent(ctx context.Context, b Blocklist, c BlocklistContent, action string) (Blocklist, error) {
	now := fromMicros(micros(s.now()))
	err := s.write(ctx, func(tx *sql.Tx) error {
		var others int
		if err := tx.QueryRowContext(ctx, `SELECT ifnull(sum(o.names), 0) FROM dns_blocklists AS l
			JOIN dns_blobs AS o ON o.sha256 = l.sha256 WHERE l.tenant_id = ? AND l.id <> ?`, b.TenantID, b.ID).Scan(&others); err != nil {
			return fmt.Errorf("store: count blocklist names: %w", err)
		}
		if err := tenantNamesBound(b.TenantName, others, c.Names); err != nil {
			return err
		}
		if err := s.putBlob(ctx, tx, c); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE dns_blocklists SET sha256 = ?, skipped = ?, updated_at = ?, checked_at = ?, error = '', error_at = 0
			WHERE id = ?`, c.SHA256[:], c.Skipped, micros(now), micros(now), b.ID)
		if err := oneRow(res, err, "blocklist", b.ID); err != nil {
			return blocklistNotFound(b.TenantName, b.Name)
		}
		b.SHA256, b.Names, b.Skipped, b.UpdatedAt, b.CheckedAt, b.Error, b.ErrorAt = c.SHA256, c.Names, c.Skipped, now, now, "", time.Time{}
		return s.logChange(ctx, tx, b.TenantName, action, BlocklistTarget(b.TenantName, b.Name), blocklistDetail(&b))
	})
	if err != nil {
		return Blocklist{}, err
	}
	return b, nil
}

// FailedBlocklist records that fetching list id failed with msg: the list keeps its content.
// Bookkeeping: the generation stays and nothing is audited. A removed list is no error.
func (s *Store) FailedBlocklist(ctx context.Context, id int64, msg string) error {
	now := micros(s.now())
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE dns_blocklists SET checked_at = ?, error = ?, error_at = ? WHERE id = ?",
			now, clean(msg, maxBlocklistError), now, id); err != nil {
			return fmt.Errorf("store: note a blocklist's failed fetch: %w", err)
		}
		return nil
	})
}

// RemoveBlocklist removes tenant's list name; its content goes when no other list holds
// it. The error wraps ErrNotFound when there is no such list.
func (s *Store) RemoveBlocklist(ctx context.Context, tenant, name string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		b, err := s.getBlocklist(ctx, tx, blocklistNotFound(tenant, name), "WHERE t.name = ? AND l.name = ?", tenant, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM dns_blocklists WHERE id = ?", b.ID); err != nil {
			return fmt.Errorf("store: remove blocklist %s: %w", name, err)
		}
		return s.logChange(ctx, tx, tenant, "dns.blocklist.remove", BlocklistTarget(tenant, name), blocklistDetail(&b))
	})
}

// Blocklist returns tenant's list name; the error wraps ErrNotFound when there is none (or
// no such tenant).
func (s *Store) Blocklist(ctx context.Context, tenant, name string) (Blocklist, error) {
	b, err := s.getBlocklist(ctx, s.db, blocklistNotFound(tenant, name), "WHERE t.name = ? AND l.name = ?", tenant, name)
	if errors.Is(err, ErrNotFound) {
		if _, terr := getTenant(ctx, s.db, tenant); terr != nil {
			return Blocklist{}, terr
		}
	}
	return b, err
}

func (s *Store) blocklistByID(ctx context.Context, id int64) (Blocklist, error) {
	return s.getBlocklist(ctx, s.db, errorf(ErrNotFound, "blocklist #%d not found: it was removed meanwhile", id), "WHERE l.id = ?", id)
}

// getBlocklist returns the one list where selects (blocklistSelect's l, t), or notFound.
func (s *Store) getBlocklist(ctx context.Context, q querier, notFound error, where string, args ...any) (Blocklist, error) {
	bs, err := s.queryBlocklists(ctx, q, where, args...)
	if err != nil {
		return Blocklist{}, err
	}
	if len(bs) == 0 {
		return Blocklist{}, notFound
	}
	return bs[0], nil
}

// Blocklists returns tenant's lists by name, or (tenant "") every tenant's by tenant and
// name. The error wraps ErrNotFound for an unknown tenant.
func (s *Store) Blocklists(ctx context.Context, tenant string) ([]Blocklist, error) {
	if tenant == "" {
		return s.queryBlocklists(ctx, s.db, "")
	}
	if _, err := getTenant(ctx, s.db, tenant); err != nil {
		return nil, err
	}
	return s.queryBlocklists(ctx, s.db, "WHERE t.name = ?", tenant)
}

// DueBlocklists returns the lists fetched from URLs whose next fetch is due at now: their
// interval has passed since the last fetch, or BlocklistRetry since one that failed.
func (s *Store) DueBlocklists(ctx context.Context, now time.Time) ([]Blocklist, error) {
	return s.queryBlocklists(ctx, s.db, `WHERE l.url <> '' AND (l.checked_at + l.every_s * 1000000 <= ?1
		OR (l.error <> '' AND l.checked_at + ?2 <= ?1))`, micros(now), BlocklistRetry.Microseconds())
}

const blocklistSelect = `SELECT l.id, l.tenant_id, t.name, l.name, l.url, l.every_s, l.private_ok, l.sha256, o.names, l.skipped,
	l.updated_at, l.checked_at, l.error, l.error_at, l.created_at
	FROM dns_blocklists AS l JOIN tenants AS t ON t.id = l.tenant_id JOIN dns_blobs AS o ON o.sha256 = l.sha256 `

func (s *Store) queryBlocklists(ctx context.Context, q querier, where string, args ...any) ([]Blocklist, error) {
	if s.version < blocklistsVersion {
		return nil, nil // a test's older schema
	}
	rows, err := q.QueryContext(ctx, blocklistSelect+where+" ORDER BY t.name, l.name", args...)
	if err != nil {
		return nil, fmt.Errorf("store: list blocklists: %w", err)
	}
	defer rows.Close()
	var out []Blocklist
	for rows.Next() {
		var b Blocklist
		var every, updated, checked, errAt, created int64
		var sum []byte
		if err := rows.Scan(&b.ID, &b.TenantID, &b.TenantName, &b.Name, &b.URL, &every, &b.PrivateOK, &sum, &b.Names, &b.Skipped,
			&updated, &checked, &b.Error, &errAt, &created); err != nil {
			return nil, fmt.Errorf("store: list blocklists: %w", err)
		}
		copy(b.SHA256[:], sum)
		b.Every = time.Duration(every) * time.Second
		b.UpdatedAt, b.CheckedAt, b.CreatedAt = fromMicros(updated), fromMicros(checked), fromMicros(created)
		if errAt != 0 {
			b.ErrorAt = fromMicros(errAt)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// Blob returns the content whose SHA-256 is sum; the error wraps ErrNotFound when the store
// holds none.
func (s *Store) Blob(ctx context.Context, sum [32]byte) ([]byte, error) {
	if s.version < blocklistsVersion {
		return nil, errorf(ErrNotFound, "no blocklist content %x", sum[:8])
	}
	var body []byte
	err := s.db.QueryRowContext(ctx, "SELECT body FROM dns_blobs WHERE sha256 = ?", sum[:]).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errorf(ErrNotFound, "no blocklist content %x", sum[:8])
	}
	if err != nil {
		return nil, fmt.Errorf("store: read blocklist content: %w", err)
	}
	if body == nil {
		body = []byte{} // the empty list: no error, and not nil
	}
	return body, nil
}

// SaveBlob keeps content body, of names names, on a node (which fetched it from its
// controller), unless it is there already. The body must hash to sum. Bookkeeping: the
// generation stays.
func (s *Store) SaveBlob(ctx context.Context, sum [32]byte, body []byte, names int) error {
	c := BlocklistContent{Body: body, SHA256: sum, Names: names}
	if err := c.validate(); err != nil {
		return err
	}
	return s.writeAuth(ctx, func(tx *sql.Tx) error { return s.putBlob(ctx, tx, c) })
}

// KeepBlobs deletes the contents a node keeps that are not among keep and that no list of
// this store holds. Bookkeeping: the generation stays.
func (s *Store) KeepBlobs(ctx context.Context, keep [][32]byte) error {
	if s.version < blocklistsVersion {
		return nil
	}
	wanted := make(map[[32]byte]bool, len(keep))
	for _, k := range keep {
		wanted[k] = true
	}
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT sha256 FROM dns_blobs AS o
			WHERE NOT EXISTS (SELECT 1 FROM dns_blocklists AS l WHERE l.sha256 = o.sha256)`)
		if err != nil {
			return fmt.Errorf("store: read blocklist contents: %w", err)
		}
		var gone [][]byte
		for rows.Next() {
			var sum []byte
			if err := rows.Scan(&sum); err != nil {
				rows.Close()
				return fmt.Errorf("store: read blocklist contents: %w", err)
			}
			if len(sum) != 32 || !wanted[[32]byte(sum)] {
				gone = append(gone, sum)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: read blocklist contents: %w", err)
		}
		for _, sum := range gone {
			if _, err := tx.ExecContext(ctx, "DELETE FROM dns_blobs WHERE sha256 = ?", sum); err != nil {
				return fmt.Errorf("store: drop blocklist content: %w", err)
			}
		}
		return nil
	})
}
