package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Expired reports whether peer p has expired at now. An expired peer is treated like a
// disabled one: it may not connect.
func (p Peer) Expired(now time.Time) bool { return !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt) }

// RenamePeer renames the peer old of tenant to new and returns it as stored. Its keys,
// addresses, groups and site stay. Renaming to the same name changes nothing. The error wraps
// ErrInvalid for a bad name, ErrNotFound when the tenant or peer does not exist and ErrExists
// when new is taken in the tenant. A policy naming the peer (peer:old) is the caller's to
// check: the store does not parse policies.
func (s *Store) RenamePeer(ctx context.Context, tenant, old, new string) (Peer, error) {
	if err := ValidatePeerName(new); err != nil {
		return Peer{}, err
	}
	var p Peer
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if p, err = getPeer(ctx, tx, tenant, old); err != nil || old == new {
			return err
		}
		if _, err := getPeer(ctx, tx, tenant, new); err == nil {
			return errorf(ErrExists, "peer %q already exists in tenant %q: choose another name", new, tenant)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		now := fromMicros(micros(s.now()))
		if _, err := tx.ExecContext(ctx, "UPDATE peers SET name = ?, updated_at = ? WHERE id = ?", new, micros(now), p.ID); err != nil {
			return fmt.Errorf("store: rename peer %s: %w", old, err)
		}
		p.Name, p.UpdatedAt = new, now
		return s.logChange(ctx, tx, tenant, "peer.rename", PeerTarget(tenant, old), "renamed to "+new)
	})
	if err != nil {
		return Peer{}, err
	}
	return p, nil
}

// latestExpiry is the latest expiry the store takes: RFC 3339, and with it JSON and the API,
// cannot write a later year than 9999, and a peer or token that could not be listed would
// break every listing it is in.
var latestExpiry = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)

// SetPeerExpiry sets when the peer name of tenant expires (nil: never) and returns it as
// stored. Whether the time is sensible (in the future, say) is the caller's to decide; the
// store refuses only times before 1970 and after the year 9999.
func (s *Store) SetPeerExpiry(ctx context.Context, tenant, name string, at *time.Time) (Peer, error) {
	var v any
	var exp time.Time
	if at != nil {
		if at.After(latestExpiry) {
			return Peer{}, errorf(ErrInvalid, "expiry %s is after the year 9999: give an earlier date, or none for a peer that never expires", at.UTC().Format(time.RFC3339))
		}
		if at.UnixMicro() <= 0 {
			return Peer{}, errorf(ErrInvalid, "expiry %s is before 1970: give a date in the future", at.UTC().Format(time.RFC3339))
		}
		exp = fromMicros(micros(*at))
		v = micros(exp)
	}
	var p Peer
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if p, err = getPeer(ctx, tx, tenant, name); err != nil || p.ExpiresAt.Equal(exp) {
			return err
		}
		now := fromMicros(micros(s.now()))
		if _, err := tx.ExecContext(ctx, "UPDATE peers SET expires_at = ?, updated_at = ? WHERE id = ?", v, micros(now), p.ID); err != nil {
			return fmt.Errorf("store: set expiry of peer %s: %w", name, err)
		}
		p.ExpiresAt, p.UpdatedAt = exp, now
		detail := "never expires"
		if !exp.IsZero() {
			detail = "expires " + exp.Format(time.RFC3339)
		}
		return s.logChange(ctx, tx, tenant, "peer.expiry", PeerTarget(tenant, name), detail)
	})
	if err != nil {
		return Peer{}, err
	}
	return p, nil
}
