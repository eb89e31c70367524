package webui

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Files of the self-signed certificate in the data dir.
const (
	selfSignedCert = "web-tls.crt"
	selfSignedKey  = "web-tls.key"
)

// selfSignedLife is how long a self-signed certificate is valid; it is replaced when less
// than selfSignedRenew is left.
const (
	selfSignedLife  = 2 * 365 * 24 * time.Hour
	selfSignedRenew = 30 * 24 * time.Hour
)

// IsLoopbackAddr reports whether the host of host:port addr is a loopback address or
// "localhost": the only addresses served over plain HTTP.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// setupTLS decides between plain HTTP (loopback without certificate files), the operator's
// certificate, and the self-signed one.
func (s *Server) setupTLS(cfg ServerConfig) error {
	switch {
	case cfg.TLSCertFile != "":
		cl, err := newCertLoader(cfg.TLSCertFile, cfg.TLSKeyFile, s.now)
		if err != nil {
			return err
		}
		s.tls = tlsConfig(cl.get)
		s.log.Info("web UI serves HTTPS with the configured certificate", "cert", cfg.TLSCertFile, "fingerprint", cl.fingerprint())
	case IsLoopbackAddr(cfg.Addr):
		s.loopbackHTTP = true
	default:
		if cfg.DataDir == "" {
			return errors.New("webui: ServerConfig.DataDir is empty: it keeps the self-signed certificate that a non-loopback web address needs (or give --tls-cert and --tls-key)")
		}
		host, _, _ := net.SplitHostPort(cfg.Addr)
		cert, fp, created, err := loadOrCreateSelfSigned(cfg.DataDir, certHosts(host), s.now())
		if err != nil {
			return err
		}
		s.tls = tlsConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil })
		s.fingerprint = fp
		msg := "web UI serves HTTPS with its self-signed certificate: check this fingerprint when the browser asks"
		if created {
			msg = "created a self-signed certificate for the web UI: check this fingerprint when the browser asks"
		}
		s.log.Info(msg, "fingerprint", fp, "cert", filepath.Join(cfg.DataDir, selfSignedCert))
	}
	return nil
}

func tlsConfig(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: get}
}

// certHosts lists the names the self-signed certificate is for: the listen host when it is
// specific, the host's name, and loopback.
func certHosts(listenHost string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if ip, err := netip.ParseAddr(listenHost); listenHost != "" && (err != nil || !ip.IsUnspecified()) {
		hosts = append(hosts, listenHost)
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return hosts
}

// Fingerprint formats the SHA-256 of a certificate as browsers show it: AB:CD:...
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// loadOrCreateSelfSigned returns the self-signed certificate kept in dir, creating one (ECDSA
// P-256, key file mode 0600) when there is none or the one there expires within
// selfSignedRenew. created reports a new certificate.
func loadOrCreateSelfSigned(dir string, hosts []string, now time.Time) (cert tls.Certificate, fingerprint string, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, selfSignedCert), filepath.Join(dir, selfSignedKey)
	cert, err = loadKeyPair(certPath, keyPath)
	switch {
	case err == nil && now.Add(selfSignedRenew).Before(cert.Leaf.NotAfter):
		return cert, Fingerprint(cert.Leaf.Raw), false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return tls.Certificate{}, "", false, err
	}
	certPEM, keyPEM, err := newSelfSigned(hosts, now)
	if err != nil {
		return tls.Certificate{}, "", false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, "", false, fmt.Errorf("webui: data dir: %w", err)
	}
	// The key first: a certificate without its key would be useless at the next start.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, "", false, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, "", false, err
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, "", false, fmt.Errorf("webui: self-signed certificate: %w", err)
	}
	return cert, Fingerprint(cert.Leaf.Raw), true, nil
}

// loadKeyPair reads a PEM certificate and key, refusing a key file others may read. The
// error wraps fs.ErrNotExist when either file is missing.
func loadKeyPair(certPath, keyPath string) (tls.Certificate, error) {
	fi, err := os.Stat(keyPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, err
		}
		return tls.Certificate{}, fmt.Errorf("webui: TLS key %s: %w", keyPath, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return tls.Certificate{}, fmt.Errorf("webui: TLS key file %s has mode %04o, so other users may read it: make it private with 'chmod 600 %s'", keyPath, perm, keyPath)
	}
	if _, err := os.Stat(certPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, err
		}
		return tls.Certificate{}, fmt.Errorf("webui: TLS certificate %s: %w", certPath, err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("webui: TLS certificate %s with key %s: %w: give a PEM certificate and its matching PEM key", certPath, keyPath, err)
	}
	return cert, nil
}

// newSelfSigned makes an ECDSA P-256 certificate for hosts, valid from an hour before now for
// selfSignedLife, in PEM.
func newSelfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("webui: generate TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("webui: generate serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "popgate web UI (self-signed)", Organization: []string{"popgate"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLife),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("webui: create self-signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("webui: encode TLS key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// writeFileAtomic writes data to path with mode perm: under a temporary name, synced, then
// renamed, so that a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("webui: write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err = f.Chmod(perm); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("webui: write %s: %w", path, err)
	}
	return nil
}

// certLoader serves the operator's certificate and reads the files again when they change,
// checking at most every certCheckEvery.
type certLoader struct {
	certPath, keyPath string
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate // guarded by mu
	mtime   time.Time        // of the two files, the later
	checked time.Time
}

const certCheckEvery = 10 * time.Second

func newCertLoader(certPath, keyPath string, now func() time.Time) (*certLoader, error) {
	cl := &certLoader{certPath: certPath, keyPath: keyPath, now: now}
	if err := cl.load(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("webui: TLS certificate %s or key %s does not exist: check --tls-cert and --tls-key", certPath, keyPath)
		}
		return nil, err
	}
	return cl, nil
}

// load reads the files; call with mu held or before the loader is shared.
func (cl *certLoader) load() error {
	cert, err := loadKeyPair(cl.certPath, cl.keyPath)
	if err != nil {
		return err
	}
	cl.cert, cl.mtime = &cert, cl.filesChanged()
	return nil
}

// filesChanged returns the later modification time of the two files.
func (cl *certLoader) filesChanged() time.Time {
	var t time.Time
	for _, p := range []string{cl.certPath, cl.keyPath} {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

// get is the tls.Config's GetCertificate: the current certificate, re-read when the files
// changed. A failed re-read keeps the old certificate.
func (cl *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if now := cl.now(); now.Sub(cl.checked) >= certCheckEvery {
		cl.checked = now
		if m := cl.filesChanged(); !m.Equal(cl.mtime) {
			cl.load() // on failure (a renewal half written, say) the old certificate stays
		}
	}
	return cl.cert, nil
}

func (cl *certLoader) fingerprint() string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.cert == nil || cl.cert.Leaf == nil {
		return ""
	}
	return Fingerprint(cl.cert.Leaf.Raw)
}
