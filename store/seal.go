package store

import (
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Sealed values (keys, TOTP secrets) are sealVersion, a random nonce, then the ciphertext with
// its tag, encrypted with XChaCha20-Poly1305 under the key file's secret. The version byte
// leaves room for another format or a key rotation later.
const (
	sealVersion = 0x01
	sealedLen   = 1 + chacha20poly1305.NonceSizeX + KeyLen + chacha20poly1305.Overhead // 73: a sealed Key
)

// Additional data of each sealed key: a domain string plus, for peers, the public key of the
// row. A ciphertext moved to another row or setting fails to open. (TOTP secrets: totpAD.)
const (
	adPeerPrefix = "popgate peer private key v1\x00"
	adNode       = "popgate node private key v1"
)

func peerAD(pub Key) []byte { return append([]byte(adPeerPrefix), pub[:]...) }

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
	return s.open(sealed, ad, "secret")
}

// sealKey encrypts k bound to ad.
func (s *Store) sealKey(k Key, ad []byte) ([]byte, error) {
	return s.sealBytes(k[:], ad)
}

// openKey decrypts a value made by sealKey with the same ad. It fails when the value was
// sealed for another row, with another key file, or was changed.
func (s *Store) openKey(sealed, ad []byte) (Key, error) {
	var k Key
	if len(sealed) != sealedLen || sealed[0] != sealVersion {
		return k, errors.New("sealed key has an unknown format")
	}
	plain, err := s.open(sealed, ad, "key")
	if err != nil {
		return k, err
	}
	copy(k[:], plain)
	clear(plain)
	return k, nil
}

// open decrypts sealed, whose format the caller checked; what names it in the error
// ("sealed key …", "sealed secret …": check.go trims that prefix).
func (s *Store) open(sealed, ad []byte, what string) ([]byte, error) {
	nonce := sealed[1 : 1+chacha20poly1305.NonceSizeX]
	plain, err := s.aead.Open(nil, nonce, sealed[1+chacha20poly1305.NonceSizeX:], ad)
	if err != nil {
		return nil, fmt.Errorf("sealed %s does not open with this key file, or belongs to another row", what)
	}
	return plain, nil
}
