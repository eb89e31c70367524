package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/crypto/chacha20poly1305"
)

// TOTPSecretLen is the length of TOTP secrets in bytes (160 bits, as RFC 4226 recommends).
const TOTPSecretLen = 20

// Sealed secrets of sealBytes: version, nonce, ciphertext and tag.
const sealedTOTPLen = 1 + chacha20poly1305.NonceSizeX + TOTPSecretLen + chacha20poly1305.Overhead // 61

func totpAD(adminID int64) []byte {
	return binary.BigEndian.AppendUint64([]byte("popgate admin totp secret v1\x00"), uint64(adminID))
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
