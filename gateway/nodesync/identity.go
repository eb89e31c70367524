// Package nodesync is the wire between a controller and the nodes that joined it: node
// identities, join tokens, and the sync stream (HTTP/2 over mutual TLS) that carries desired
// states to a node and its reports back.
//
// Why HTTPS and not gRPC or Connect: both need generated code, and their code generators are
// not on these machines, for what is one stream of one message type each way. net/http gives
// HTTP/2 (flow control, pings, deadlines), crypto/tls mutual authentication with pinned
// self-signed certificates, so there is no CA to run and no new dependency.
package nodesync

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// IdentityFileName is the identity key's file in a data dir.
const IdentityFileName = "identity.key"

// Pin is the SHA-256 of a certificate's SubjectPublicKeyInfo: what a controller and its
// nodes trust each other by (never a CA or validity dates).
type Pin [32]byte

// String returns the pin in unpadded base64url.
func (p Pin) String() string { return base64.RawURLEncoding.EncodeToString(p[:]) }

// PinOf returns the pin of cert.
func PinOf(cert *x509.Certificate) Pin { return sha256.Sum256(cert.RawSubjectPublicKeyInfo) }

// Identity is a popgate's Ed25519 key and a self-signed certificate of it.
type Identity struct {
	cert tls.Certificate
	pin  Pin
}

// Pin returns the pin of the identity's certificate.
func (id *Identity) Pin() Pin { return id.pin }

// Certificate returns the identity's TLS certificate.
func (id *Identity) Certificate() tls.Certificate { return id.cert }

// LoadIdentity reads the identity key at path, creating it (mode 0600) when it is missing,
// and makes a certificate of it. It refuses a key file that others may read.
func LoadIdentity(path string) (*Identity, error) {
	key, err := readKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createKey(path)
	}
	if err != nil {
		return nil, err
	}
	return newIdentity(key)
}

func readKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the identity key %s has mode %04o: others may read it; make it private (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the identity key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("the identity key %s is not a PEM private key: restore it from a backup of the data dir, or remove it and join the node again", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the identity key %s does not parse (%v): restore it from a backup, or remove it and join the node again", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the identity key %s is not an Ed25519 key: restore it from a backup, or remove it and join the node again", path)
	}
	return ek, nil
}

func createKey(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the identity key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode the identity key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create the data dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process made it meanwhile
		return readKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create the identity key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write the identity key: %w", err)
	}
	return key, nil
}

// newIdentity makes a self-signed certificate of key. Its dates are wide: nobody checks
// them, the pin is what is trusted.
func newIdentity(key ed25519.PrivateKey) (*Identity, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("make the identity certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "popgate"},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"popgate"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("make the identity certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("make the identity certificate: %w", err)
	}
	return &Identity{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pin: PinOf(leaf)}, nil
}

// peerPin returns the pin of the first certificate a TLS peer presented.
func peerPin(cs *tls.ConnectionState) (Pin, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Pin{}, false
	}
	return PinOf(cs.PeerCertificates[0]), true
}
