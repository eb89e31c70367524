package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Policy returns the policy text of tenant exactly as SetPolicy stored it and when it was
// set; "" and the zero time when none was ever set. The error wraps ErrNotFound when the
// tenant does not exist.
func (s *Store) Policy(ctx context.Context, tenant string) (text string, updated time.Time, err error) {
	err = s.read(ctx, func(q querier) error {
		t, err := getTenant(ctx, q, tenant)
		if err != nil {
			return err
		}
		var us int64
		err = q.QueryRowContext(ctx, "SELECT source, updated_at FROM policies WHERE tenant_id = ?", t.ID).Scan(&text, &us)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: read policy of tenant %s: %w", tenant, err)
		}
		updated = fromMicros(us)
		return nil
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return text, updated, nil
}

// SetPolicy stores text as the policy of tenant, verbatim, replacing the previous one. The
// store does not parse it: the caller checks it first (firewall.Parse) and gives the number
// of rules it holds, which the audit log records with the text's size and PolicyDigest.
// Storing the text that is already stored changes nothing, not even the time Policy
// returns. The error wraps ErrInvalid when text is larger than MaxPolicySize and ErrNotFound
// when the tenant does not exist.
func (s *Store) SetPolicy(ctx context.Context, tenant, text string, rules int) error {
	if len(text) > MaxPolicySize {
		return errorf(ErrInvalid, "the policy of tenant %q has %d bytes, at most %d (%d MiB) are allowed: shorten it, e.g. by writing rules for groups instead of single peers",
			tenant, len(text), MaxPolicySize, MaxPolicySize>>20)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		var same bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM policies WHERE tenant_id = ? AND source = ?)",
			t.ID, text).Scan(&same); err != nil {
			return fmt.Errorf("store: read policy of tenant %s: %w", tenant, err)
		}
		if same {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO policies (tenant_id, source, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (tenant_id) DO UPDATE SET source = excluded.source, updated_at = excluded.updated_at`,
			t.ID, text, micros(s.now())); err != nil {
			return fmt.Errorf("store: write policy of tenant %s: %w", tenant, err)
		}
		return s.logChange(ctx, tx, tenant, "policy.set", PolicyTarget(tenant),
			fmt.Sprintf("%d %s, %d bytes, sha256 %s", rules, plural(rules, "rule", "rules"), len(text), PolicyDigest(text)))
	})
}

// Policies returns the policy text of every tenant that has one set, by tenant ID. A
// tenant missing from the map has none, as if its text were "".
func (s *Store) Policies(ctx context.Context) (map[int64]string, error) {
	return policies(ctx, s.db)
}

func policies(ctx context.Context, q querier) (map[int64]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT tenant_id, source FROM policies")
	if err != nil {
		return nil, fmt.Errorf("store: read policies: %w", err)
	}
	defer rows.Close()
	m := map[int64]string{}
	for rows.Next() {
		var id int64
		var text string
		if err := rows.Scan(&id, &text); err != nil {
			return nil, fmt.Errorf("store: read policies: %w", err)
		}
		m[id] = text
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read policies: %w", err)
	}
	return m, nil
}
