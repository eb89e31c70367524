package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// The operator's webhook: one URL that every event is sent to, signed with a secret that
// the store generates, shows once and keeps sealed with the key file's secret (as region
// keys are), and how its delivery goes.

// adWebhook is the additional data of the sealed webhook secret.
const adWebhook = "popgate webhook secret v1"

// WebhookTarget names the webhook in the audit log.
const WebhookTarget = "webhook:events"

// maxWebhookURL bounds the URL (the column's CHECK).
const maxWebhookURL = 2048

// ValidateWebhookURL reports whether u can be the webhook: an absolute http or https URL
// with a host, no user name or password, no fragment, at most 2,048 bytes. The error wraps
// ErrInvalid and says what to fix.
func ValidateWebhookURL(u string) error {
	if len(u) > maxWebhookURL {
		return errorf(ErrInvalid, "the webhook URL is %d bytes long: give one of at most %d", len(u), maxWebhookURL)
	}
	p, err := url.Parse(u)
	switch {
	case err != nil || strings.TrimSpace(u) != u || strings.ContainsAny(u, " \t\r\n"):
		return errorf(ErrInvalid, "the webhook URL %q does not parse: give an absolute URL such as https://alerts.example.com/popgate", truncate(u, 80))
	case p.Scheme != "https" && p.Scheme != "http":
		return errorf(ErrInvalid, "the webhook URL %q is not http or https: give an absolute URL such as https://alerts.example.com/popgate", truncate(u, 80))
	case p.Host == "" || p.Hostname() == "":
		return errorf(ErrInvalid, "the webhook URL %q has no host: give an absolute URL such as https://alerts.example.com/popgate", truncate(u, 80))
	case p.User != nil:
		return errorf(ErrInvalid, "the webhook URL %q carries a user name or password: leave them out; the receiver checks the signature instead", truncate(p.Redacted(), 80))
	case p.Fragment != "" || strings.Contains(u, "#"):
		return errorf(ErrInvalid, "the webhook URL %q has a fragment (#…), which is never sent: leave it out", truncate(u, 80))
	}
	return nil
}

// WebhookOrigin is the scheme and host of u, what the audit log records of a webhook: its
// path may hold a secret of the receiver's (many services put one there).
func WebhookOrigin(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

// Webhook is the webhook and how its delivery goes.
type Webhook struct {
	URL       string
	CreatedAt time.Time
	// SentID is the newest event done with: events up to it were delivered, given up or
	// dropped.
	SentID int64
	// Delivered, Failed, GivenUp and Dropped count the events delivered, the attempts that
	// failed, the events given up after failing for a day, and those dropped from a backlog
	// too long, since the webhook was set.
	Delivered, Failed, GivenUp, Dropped int64
	// LastAttempt is when an event was last sent, LastOK when one was last delivered;
	// LastError says why the latest attempt failed, "" when it succeeded.
	LastAttempt, LastOK time.Time
	LastError           string
}

// SetWebhook makes u the webhook, with a new secret, which it returns: the only time the
// secret leaves the store but to sign. Delivery starts with the events recorded after now.
// The audit log records the URL's scheme and host.
func (s *Store) SetWebhook(ctx context.Context, u string) (Webhook, string, error) {
	if err := ValidateWebhookURL(u); err != nil {
		return Webhook{}, "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Webhook{}, "", fmt.Errorf("store: generate the webhook secret: %w", err)
	}
	secret := hex.EncodeToString(raw[:])
	sealed, err := s.sealBytes([]byte(secret), []byte(adWebhook))
	if err != nil {
		return Webhook{}, "", err
	}
	w := Webhook{URL: u, CreatedAt: fromMicros(micros(s.now()))}
	err = s.writeAuth(ctx, func(tx *sql.Tx) error {
		var err error
		if w.SentID, err = lastEventID(ctx, tx); err != nil {
			return err
		}
		var had int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM webhook").Scan(&had); err != nil {
			return fmt.Errorf("store: read the webhook: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO webhook (id, url, secret_enc, created_at, sent_id) VALUES (1, ?, ?, ?, ?)`,
			u, sealed, micros(w.CreatedAt), w.SentID)
		if err != nil {
			return fmt.Errorf("store: set the webhook: %w", err)
		}
		detail := "events go to " + WebhookOrigin(u) + " (a new secret)"
		if had > 0 {
			detail = "events go to " + WebhookOrigin(u) + " instead (a new secret)"
		}
		return s.logChange(ctx, tx, "", "webhook.set", WebhookTarget, detail)
	})
	if err != nil {
		return Webhook{}, "", err
	}
	return w, secret, nil
}

// Webhook returns the webhook; an error wrapping ErrNotFound when none is set.
func (s *Store) Webhook(ctx context.Context) (Webhook, error) {
	var w Webhook
	var created, attempt, ok int64
	err := s.db.QueryRowContext(ctx, `SELECT url, created_at, sent_id, delivered, failed, given_up, dropped,
		coalesce(last_attempt_at, 0), coalesce(last_ok_at, 0), last_error FROM webhook WHERE id = 1`).Scan(
		&w.URL, &created, &w.SentID, &w.Delivered, &w.Failed, &w.GivenUp, &w.Dropped, &attempt, &ok, &w.LastError)
	if errors.Is(err, sql.ErrNoRows) {
		return Webhook{}, errorf(ErrNotFound, "no webhook is set: set one with 'popgate event webhook set URL'")
	}
	if err != nil {
		return Webhook{}, fmt.Errorf("store: read the webhook: %w", err)
	}
	w.CreatedAt, w.LastAttempt, w.LastOK = fromMicros(created), optMicros(attempt), optMicros(ok)
	return w, nil
}

// WebhookSecret returns the webhook's secret; an error wrapping ErrNotFound when none is
// set.
func (s *Store) WebhookSecret(ctx context.Context) (string, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, "SELECT secret_enc FROM webhook WHERE id = 1").Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errorf(ErrNotFound, "no webhook is set")
	}
	if err != nil {
		return "", fmt.Errorf("store: read the webhook: %w", err)
	}
	plain, err := s.openBytes(sealed, []byte(adWebhook))
	if err != nil {
		return "", fmt.Errorf("store: the webhook's secret: %w: set the webhook again ('popgate event webhook set URL') for a new one", err)
	}
	return string(plain), nil
}

// RemoveWebhook removes the webhook: no event is sent any more. The error wraps ErrNotFound
// when none is set.
func (s *Store) RemoveWebhook(ctx context.Context) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		var u string
		err := tx.QueryRowContext(ctx, "DELETE FROM webhook WHERE id = 1 RETURNING url").Scan(&u)
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(ErrNotFound, "no webhook is set: nothing to remove")
		}
		if err != nil {
			return fmt.Errorf("store: remove the webhook: %w", err)
		}
		return s.logChange(ctx, tx, "", "webhook.remove", WebhookTarget, "events went to "+WebhookOrigin(u))
	})
}

// WebhookDelivery is what happened to events the webhook sends, to add to its record.
type WebhookDelivery struct {
	// Webhook is the CreatedAt of the webhook it happened to: a webhook set again meanwhile
	// is not touched.
	Webhook time.Time
	// SentID is the newest event now done with (it only moves forward).
	SentID int64
	// Counts to add.
	Delivered, Failed, GivenUp, Dropped int64
	// Attempt is when an event was sent (zero: none was); OK says whether it was
	// delivered, Error why not.
	Attempt time.Time
	OK      bool
	Error   string
}

// RecordWebhookDelivery adds d to the webhook's record. It is bookkeeping, not audited. No
// webhook, or another one than d's, is no error: nothing is recorded.
func (s *Store) RecordWebhookDelivery(ctx context.Context, d WebhookDelivery) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		q := `UPDATE webhook SET sent_id = max(sent_id, ?), delivered = delivered + ?, failed = failed + ?,
			given_up = given_up + ?, dropped = dropped + ?`
		args := []any{d.SentID, d.Delivered, d.Failed, d.GivenUp, d.Dropped}
		if !d.Attempt.IsZero() {
			q += ", last_attempt_at = ?, last_error = ?"
			args = append(args, micros(d.Attempt), clean(d.Error, 300))
			if d.OK {
				q += ", last_ok_at = ?"
				args = append(args, micros(d.Attempt))
			}
		}
		q += " WHERE id = 1 AND created_at = ?"
		args = append(args, micros(d.Webhook))
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("store: record the webhook's delivery: %w", err)
		}
		return nil
	})
}
