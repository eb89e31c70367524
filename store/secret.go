package store

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeyFileName is the name of the key file beside the database when Options.KeyPath is empty.
const KeyFileName = "secret.key"

// defaultKeyPath is the key file of the database at dbPath when none is named.
func defaultKeyPath(dbPath string) string { return filepath.Join(filepath.Dir(dbPath), KeyFileName) }

// secretLen is the size of the key file: one XChaCha20-Poly1305 key.
const secretLen = chacha20poly1305.KeySize

// loadSecret reads the key file at keyPath. When it does not exist and mayCreate is set (the
// database holds nothing encrypted yet) it creates one with 32 random bytes and mode 0600;
// otherwise a missing file is an error, because a new key could not open the existing rows.
// A file that group or others may access is refused.
func loadSecret(keyPath, dbPath string, mayCreate bool) ([]byte, error) {
	secret, err := readSecret(keyPath)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	if !mayCreate {
		return nil, fmt.Errorf("secret key file %s is missing, but database %s holds private keys encrypted with it: restore the file from a backup (popgate never replaces it while encrypted keys exist): %w", keyPath, dbPath, err)
	}
	secret, err = createSecret(keyPath)
	if errors.Is(err, fs.ErrExist) { // another process created it first: use theirs
		return readSecret(keyPath)
	}
	return secret, err
}

// readSecret reads and checks an existing key file. The error wraps fs.ErrNotExist when
// there is none.
func readSecret(keyPath string) ([]byte, error) {
	f, err := os.Open(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("store: open secret key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat() // of the open file, so a swap after the check cannot fool it
	if err != nil {
		return nil, fmt.Errorf("store: secret key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errorf(ErrInvalid, "secret key file %s is not a regular file: point KeyPath at the 32-byte key file", keyPath)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, errorf(ErrInvalid, "secret key file %s has mode %04o, so other users may read it: make it private with 'chmod 600 %s'", keyPath, perm, keyPath)
	}
	secret, err := io.ReadAll(io.LimitReader(f, secretLen+1))
	if err != nil {
		return nil, fmt.Errorf("store: read secret key file: %w", err)
	}
	if len(secret) != secretLen {
		return nil, errorf(ErrInvalid, "secret key file %s is damaged: it must hold exactly %d bytes; restore it from a backup", keyPath, secretLen)
	}
	return secret, nil
}

// createSecret writes a new random key file at keyPath with mode 0600, durably. The file
// appears complete or not at all: it is written under a temporary name and hard-linked into
// place, which fails (wrapping fs.ErrExist) when keyPath exists.
func createSecret(keyPath string) ([]byte, error) {
	secret := make([]byte, secretLen)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("store: generate secret key: %w", err)
	}
	dir := filepath.Dir(keyPath)
	f, err := os.CreateTemp(dir, ".secret.key-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("store: create secret key file: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(secret)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, fmt.Errorf("store: write secret key file: %w", err)
	}
	if err := os.Link(f.Name(), keyPath); err != nil {
		return nil, fmt.Errorf("store: create secret key file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("store: write secret key file: %w", err)
	}
	return secret, nil
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func newAEAD(secret []byte) (cipher.AEAD, error) {
	aead, err := chacha20poly1305.NewX(secret)
	if err != nil {
		return nil, fmt.Errorf("store: secret key: %w", err)
	}
	return aead, nil
}

// holdsEncryptedKeys reports whether the database holds anything sealed with the key file.
func holdsEncryptedKeys(ctx context.Context, q querier) (bool, error) {
	var held bool
	err := q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM settings WHERE key = ?)
		OR EXISTS (SELECT 1 FROM peers WHERE private_key_enc IS NOT NULL)`, settingNodePrivateKey).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("store: look for encrypted keys: %w", err)
	}
	return held, nil
}
