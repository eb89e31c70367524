package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

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
