package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// APIToken is a bearer token of the JSON API, scoped like an admin's role. The secret is shown
// once when the token is made; the database keeps its SHA-256.
type APIToken struct {
	ID   int64
	Name string
	// Role and TenantID/TenantName follow the rules of Admin's.
	Role       string
	TenantID   int64
	TenantName string
	CreatedAt  time.Time
	// LastUsed is zero when the token was never used (it is updated at most once a minute).
	LastUsed time.Time
	// ExpiresAt is zero when the token never expires.
	ExpiresAt time.Time
}

// Expired reports whether the token has expired at now.
func (t APIToken) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// NewAPIToken is what AddAPIToken needs.
type NewAPIToken struct {
	Name   string
	Role   string
	Tenant string
	// ExpiresAt, optional, must be in the future and no later than the year 9999.
	ExpiresAt time.Time
}

// TokenPrefix starts every API token, so that a leaked one is recognisable (secret scanners
// can look for it).
const TokenPrefix = "pgt_"

// TokenLen is the length of an API token: the prefix and 32 bytes of unpadded base64url.
const TokenLen = len(TokenPrefix) + 43

// AddAPIToken creates an API token and returns it with its secret, which only the caller sees.
// The error wraps ErrInvalid for a bad name, role or expiry, ErrNotFound for an unknown tenant
// and ErrExists when the name is taken; then nothing is stored.
func (s *Store) AddAPIToken(ctx context.Context, nt NewAPIToken) (APIToken, string, error) {
	if err := ValidateTokenName(nt.Name); err != nil {
		return APIToken{}, "", err
	}
	if err := ValidateRole(nt.Role, nt.Tenant); err != nil {
		return APIToken{}, "", err
	}
	now := fromMicros(micros(s.now()))
	tok := APIToken{Name: nt.Name, Role: nt.Role, TenantName: nt.Tenant, CreatedAt: now}
	if !nt.ExpiresAt.IsZero() {
		if nt.ExpiresAt.After(latestExpiry) {
			return APIToken{}, "", errorf(ErrInvalid, "the token would expire at %s, after the year 9999: give an earlier time, or none for a token that never expires", nt.ExpiresAt.UTC().Format(time.RFC3339))
		}
		tok.ExpiresAt = fromMicros(micros(nt.ExpiresAt))
		if !tok.ExpiresAt.After(now) {
			return APIToken{}, "", errorf(ErrInvalid, "the token would expire at %s, which is not in the future: give a later time", tok.ExpiresAt.Format(time.RFC3339))
		}
	}
	secret, hash, err := newSecret(TokenPrefix)
	if err != nil {
		return APIToken{}, "", err
	}
	err = s.writeAuth(ctx, func(tx *sql.Tx) error {
		var tenantID any
		if nt.Tenant != "" {
			t, err := getTenant(ctx, tx, nt.Tenant)
			if err != nil {
				return err
			}
			tok.TenantID, tenantID = t.ID, t.ID
		}
		var taken bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = ?)", nt.Name).Scan(&taken); err != nil {
			return fmt.Errorf("store: add API token %s: %w", nt.Name, err)
		}
		if taken {
			return errorf(ErrExists, "API token %q already exists: choose another name, or remove it first ('popgate token remove %s')", nt.Name, nt.Name)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (name, token_hash, role, tenant_id, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)`, nt.Name, hash[:], nt.Role, tenantID, micros(now), optTime(tok.ExpiresAt))
		if err != nil {
			return fmt.Errorf("store: add API token %s: %w", nt.Name, err)
		}
		if tok.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: add API token %s: %w", nt.Name, err)
		}
		detail := roleDetail(tok.Role, tok.TenantName) + "; never expires"
		if !tok.ExpiresAt.IsZero() {
			detail = roleDetail(tok.Role, tok.TenantName) + "; expires " + tok.ExpiresAt.Format(time.RFC3339)
		}
		return s.logChange(ctx, tx, "", "token.add", TokenTarget(tok.Name), detail)
	})
	if err != nil {
		return APIToken{}, "", err
	}
	return tok, secret, nil
}

const tokenSelect = `SELECT k.id, k.name, k.role, coalesce(k.tenant_id, 0), coalesce(t.name, ''), k.created_at,
	coalesce(k.last_used, 0), coalesce(k.expires_at, 0), k.token_hash
	FROM api_tokens AS k LEFT JOIN tenants AS t ON t.id = k.tenant_id `

func scanToken(scan func(dest ...any) error) (APIToken, []byte, error) {
	var k APIToken
	var created, used, expires int64
	var hash []byte
	if err := scan(&k.ID, &k.Name, &k.Role, &k.TenantID, &k.TenantName, &created, &used, &expires, &hash); err != nil {
		return APIToken{}, nil, err
	}
	k.CreatedAt, k.LastUsed, k.ExpiresAt = fromMicros(created), optMicros(used), optMicros(expires)
	return k, hash, nil
}

// APITokenBySecret returns the token whose secret is secret. It does not check expiry: the
// caller's clock decides. The error wraps ErrNotFound for an unknown secret.
func (s *Store) APITokenBySecret(ctx context.Context, secret string) (APIToken, error) {
	unknown := errorf(ErrNotFound, "unknown API token: check that it was copied completely, or make a new one ('popgate token add')")
	if len(secret) != TokenLen || !strings.HasPrefix(secret, TokenPrefix) {
		return APIToken{}, unknown
	}
	hash := sha256.Sum256([]byte(secret))
	k, stored, err := scanToken(s.db.QueryRowContext(ctx, tokenSelect+"WHERE k.token_hash = ?", hash[:]).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, unknown
	}
	if err != nil {
		return APIToken{}, fmt.Errorf("store: read API token: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, hash[:]) != 1 {
		return APIToken{}, unknown
	}
	return k, nil
}

// ListAPITokens returns every API token ordered by name.
func (s *Store) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := s.db.QueryContext(ctx, tokenSelect+"ORDER BY k.name")
	if err != nil {
		return nil, fmt.Errorf("store: list API tokens: %w", err)
	}
	defer rows.Close()
	out := []APIToken{}
	for rows.Next() {
		k, _, err := scanToken(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("store: list API tokens: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list API tokens: %w", err)
	}
	return out, nil
}

// TouchAPIToken records that token id was used at now.
func (s *Store) TouchAPIToken(ctx context.Context, id int64, now time.Time) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE api_tokens SET last_used = ? WHERE id = ?", micros(now), id)
		if err != nil {
			return fmt.Errorf("store: update API token: %w", err)
		}
		return nil
	})
}

// RemoveAPIToken deletes the API token name; it stops working at once. The error wraps
// ErrNotFound when there is none.
func (s *Store) RemoveAPIToken(ctx context.Context, name string) (APIToken, error) {
	var k APIToken
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		var err error
		k, _, err = scanToken(tx.QueryRowContext(ctx, tokenSelect+"WHERE k.name = ?", name).Scan)
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(ErrNotFound, "API token %q not found: list tokens with 'popgate token list'", truncate(name, 80))
		}
		if err != nil {
			return fmt.Errorf("store: remove API token %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM api_tokens WHERE id = ?", k.ID); err != nil {
			return fmt.Errorf("store: remove API token %s: %w", name, err)
		}
		return s.logChange(ctx, tx, "", "token.remove", TokenTarget(k.Name), roleDetail(k.Role, k.TenantName))
	})
	return k, err
}

// DownloadLink is a one-time link to download a peer's config.
type DownloadLink struct {
	ID         int64
	TenantName string
	PeerName   string
	CreatedBy  string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	// UsedAt is zero until the one download.
	UsedAt time.Time
}

// downloadPrefix starts every download link token.
const downloadPrefix = "pgd_"

// MaxDownloadLinkLife is the longest a download link may stay valid.
const MaxDownloadLinkLife = 7 * 24 * time.Hour

// CreateDownloadLink makes a one-time link to the config of peer of tenant, valid from now
// until expires (at most MaxDownloadLinkLife later), and returns it with its secret token,
// which only the caller sees. createdBy names who asked, for the record.
func (s *Store) CreateDownloadLink(ctx context.Context, tenant, peer, createdBy string, now, expires time.Time) (DownloadLink, string, error) {
	now, expires = fromMicros(micros(now)), fromMicros(micros(expires))
	switch {
	case !expires.After(now):
		return DownloadLink{}, "", errorf(ErrInvalid, "a download link must expire after it is made: give a validity of a minute or more")
	case expires.Sub(now) > MaxDownloadLinkLife:
		return DownloadLink{}, "", errorf(ErrInvalid, "a download link may be valid for at most %d days: give a shorter validity", int(MaxDownloadLinkLife/(24*time.Hour)))
	}
	token, hash, err := newSecret(downloadPrefix)
	if err != nil {
		return DownloadLink{}, "", err
	}
	l := DownloadLink{TenantName: tenant, PeerName: peer, CreatedBy: clean(createdBy, 128), CreatedAt: now, ExpiresAt: expires}
	if l.CreatedBy == "" {
		l.CreatedBy = "unknown"
	}
	err = s.writeAuth(ctx, func(tx *sql.Tx) error {
		p, err := getPeer(ctx, tx, tenant, peer)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO download_links (token_hash, peer_id, tenant_id, created_by, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)`, hash[:], p.ID, p.TenantID, l.CreatedBy, micros(now), micros(expires))
		if err != nil {
			return fmt.Errorf("store: create download link: %w", err)
		}
		if l.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: create download link: %w", err)
		}
		return s.logChange(ctx, tx, tenant, "link.create", PeerTarget(tenant, peer),
			"one-time config link valid until "+expires.Format(time.RFC3339))
	})
	if err != nil {
		return DownloadLink{}, "", err
	}
	return l, token, nil
}

// errNoLink is what every failed link lookup returns: the holder of a bad link learns nothing
// more.
func errNoLink() error {
	return errorf(ErrNotFound, "this download link is unknown, expired or already used: ask your admin for a new one")
}

// DownloadLinkByToken returns the unused, unexpired link with token at now. The error wraps
// ErrNotFound, with one message for unknown, expired and used links.
func (s *Store) DownloadLinkByToken(ctx context.Context, token string, now time.Time) (DownloadLink, error) {
	if len(token) != len(downloadPrefix)+43 || !strings.HasPrefix(token, downloadPrefix) {
		return DownloadLink{}, errNoLink()
	}
	hash := sha256.Sum256([]byte(token))
	var l DownloadLink
	var stored []byte
	var created, expires, used int64
	err := s.db.QueryRowContext(ctx, `SELECT d.id, t.name, p.name, d.created_by, d.created_at, d.expires_at,
		coalesce(d.used_at, 0), d.token_hash
		FROM download_links AS d JOIN peers AS p ON p.id = d.peer_id JOIN tenants AS t ON t.id = d.tenant_id
		WHERE d.token_hash = ?`, hash[:]).Scan(&l.ID, &l.TenantName, &l.PeerName, &l.CreatedBy, &created, &expires, &used, &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return DownloadLink{}, errNoLink()
	}
	if err != nil {
		return DownloadLink{}, fmt.Errorf("store: read download link: %w", err)
	}
	l.CreatedAt, l.ExpiresAt, l.UsedAt = fromMicros(created), fromMicros(expires), optMicros(used)
	if subtle.ConstantTimeCompare(stored, hash[:]) != 1 || !l.UsedAt.IsZero() || !now.Before(l.ExpiresAt) {
		return DownloadLink{}, errNoLink()
	}
	return l, nil
}

// UseDownloadLink marks link id used at now. Only one call succeeds, and only before the link
// expires; the others get an error wrapping ErrNotFound. The audit log records the use (a
// peer's config went out) with who made the link.
func (s *Store) UseDownloadLink(ctx context.Context, id int64, now time.Time) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE download_links SET used_at = ? WHERE id = ? AND used_at IS NULL AND expires_at > ?",
			micros(now), id, micros(now))
		if err != nil {
			return fmt.Errorf("store: use download link: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errors.Join(errNoLink(), err)
		}
		var tenant, peer, by string
		if err := tx.QueryRowContext(ctx, `SELECT t.name, p.name, d.created_by FROM download_links AS d
			JOIN peers AS p ON p.id = d.peer_id JOIN tenants AS t ON t.id = d.tenant_id WHERE d.id = ?`, id).Scan(&tenant, &peer, &by); err != nil {
			return fmt.Errorf("store: use download link: %w", err)
		}
		return s.logChange(ctx, tx, tenant, "link.use", PeerTarget(tenant, peer), "one-time config link made by "+by)
	})
}

// PruneDownloadLinks deletes the links that expired before now and returns how many.
func (s *Store) PruneDownloadLinks(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM download_links WHERE expires_at <= ?", micros(now))
		if err != nil {
			return fmt.Errorf("store: prune download links: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
