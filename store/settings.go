package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// Settings the store manages itself; SetSetting refuses to change them.
const (
	// settingNodePrivateKey is the node's WireGuard private key, sealed (base64).
	settingNodePrivateKey = "node.private_key"
	// settingIPv6Prefix is the installation's ULA /48, e.g. "fd12:3456:789a::/48".
	settingIPv6Prefix = "overlay.ipv6_prefix"
	// settingIPv4HighWater is the highest IPv4 address (as an integer) ever assigned, so that
	// an address freed by RemovePeer is not handed to the next peer while never-used ones
	// remain.
	settingIPv4HighWater = "overlay.ipv4_high_water"
)

func managedSetting(key string) bool {
	switch key {
	case settingNodePrivateKey, settingBackbonePrivateKey, settingIPv6Prefix, settingIPv4HighWater:
		return true
	}
	return false
}

const maxSettingKey = 64

// validateSettingKey mirrors the CHECK on settings.key: ^[a-z][a-z0-9._-]{0,63}$.
func validateSettingKey(key string) error {
	ok := key != "" && len(key) <= maxSettingKey && 'a' <= key[0] && key[0] <= 'z'
	for i := 0; ok && i < len(key); i++ {
		c := key[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return errorf(ErrInvalid, "setting name %q is invalid: use 1-64 lower-case letters, digits, '.', '_' and '-', starting with a letter", truncate(key, 80))
	}
	return nil
}

// Setting returns the value of the node setting key. The error wraps ErrNotFound when the
// setting was never set, ErrInvalid when key is not a valid setting name.
func (s *Store) Setting(ctx context.Context, key string) (string, error) {
	if err := validateSettingKey(key); err != nil {
		return "", err
	}
	v, ok, err := getSetting(ctx, s.db, key)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errorf(ErrNotFound, "setting %q is not set", key)
	}
	return v, nil
}

// SetSetting stores value under the node setting key, replacing any previous value. Keys are
// 1-64 lower-case letters, digits, '.', '_' and '-', starting with a letter; settings the
// store manages itself (the node key, the overlay prefix) are refused with ErrInvalid. The
// audit log records the new value: never keep a secret in a setting.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	if err := validateSettingKey(key); err != nil {
		return err
	}
	if managedSetting(key) {
		return errorf(ErrInvalid, "setting %q is managed by popgate itself and cannot be set", key)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		old, ok, err := getSetting(ctx, tx, key)
		if err != nil || ok && old == value {
			return err
		}
		if err := putSetting(ctx, tx, key, value, micros(s.now())); err != nil {
			return err
		}
		return s.logChange(ctx, tx, "", "setting.set", SettingTarget(key), fmt.Sprintf("%q", value))
	})
}

// getSetting returns the value of key and whether it exists.
func getSetting(ctx context.Context, q querier, key string) (string, bool, error) {
	var v string
	err := q.QueryRowContext(ctx, "SELECT value FROM settings WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: read setting %s: %w", key, err)
	}
	return v, true, nil
}

// putSetting inserts or replaces key.
func putSetting(ctx context.Context, q querier, key, value string, now int64) error {
	_, err := q.ExecContext(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		key, value, now)
	if err != nil {
		return fmt.Errorf("store: write setting %s: %w", key, err)
	}
	return nil
}

// initNode creates the node's private key and IPv6 prefix when missing, then checks that the
// key file opens the node key and caches the node's public key and prefix.
func (s *Store) initNode(ctx context.Context) error {
	var sealedB64, prefix string
	err := s.writeTx(ctx, kindNode, func(tx *sql.Tx) error {
		now := micros(s.now())
		var err error
		if sealedB64, err = s.ensureNodeKey(ctx, tx, now); err != nil {
			return err
		}
		prefix, err = s.ensureULAPrefix(ctx, tx, now)
		return err
	})
	if err != nil {
		return err
	}
	k, err := s.openNodeKey(sealedB64)
	if err != nil {
		return err
	}
	s.nodePub = k.PublicKey()
	p, err := netip.ParsePrefix(prefix)
	if err != nil || !validULAPrefix(p) {
		return errorf(ErrInvalid, "database %s: setting %s is %q, not a ULA /48 like fd12:3456:789a::/48: restore the database from a backup", s.path, settingIPv6Prefix, prefix)
	}
	s.ula = p
	return nil
}

// ensureNodeKey returns the sealed node private key, generating and storing one if missing.
func (s *Store) ensureNodeKey(ctx context.Context, tx *sql.Tx, now int64) (string, error) {
	v, ok, err := getSetting(ctx, tx, settingNodePrivateKey)
	if err != nil || ok {
		return v, err
	}
	k, err := GeneratePrivateKey()
	if err != nil {
		return "", err
	}
	sealed, err := s.sealKey(k, []byte(adNode))
	if err != nil {
		return "", err
	}
	v = base64.StdEncoding.EncodeToString(sealed)
	return v, putSetting(ctx, tx, settingNodePrivateKey, v, now)
}

// ensureULAPrefix returns the installation's IPv6 prefix, choosing and storing one if
// missing. It refuses to choose one while peers exist: their addresses came from the lost one.
func (s *Store) ensureULAPrefix(ctx context.Context, tx *sql.Tx, now int64) (string, error) {
	v, ok, err := getSetting(ctx, tx, settingIPv6Prefix)
	if err != nil || ok {
		return v, err
	}
	var peers int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM peers").Scan(&peers); err != nil {
		return "", fmt.Errorf("store: count peers: %w", err)
	}
	if peers > 0 {
		return "", errorf(ErrInvalid, "database %s has peers but no setting %s: restore the database from a backup", s.path, settingIPv6Prefix)
	}
	p, err := newULAPrefix()
	if err != nil {
		return "", err
	}
	v = p.String()
	return v, putSetting(ctx, tx, settingIPv6Prefix, v, now)
}

func (s *Store) openNodeKey(sealedB64 string) (Key, error) {
	sealed, err := base64.StdEncoding.DecodeString(sealedB64)
	if err == nil {
		var k Key
		if k, err = s.openKey(sealed, []byte(adNode)); err == nil {
			return k, nil
		}
	}
	return Key{}, errorf(ErrInvalid, "secret key file %s does not open the node private key in %s (%v): it is not the key file this database was created with; restore the right file from a backup", s.keyPath, s.path, err)
}

// newULAPrefix returns fdXX:XXXX:XXXX::/48 with a random 40-bit global ID (RFC 4193 3.2).
func newULAPrefix() (netip.Prefix, error) {
	var b [16]byte
	b[0] = 0xfd
	if _, err := rand.Read(b[1:6]); err != nil {
		return netip.Prefix{}, fmt.Errorf("store: generate IPv6 prefix: %w", err)
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), 48), nil
}

func validULAPrefix(p netip.Prefix) bool {
	a := p.Addr()
	return a.Is6() && !a.Is4In6() && p.Bits() == 48 && p.Masked() == p && a.As16()[0] == 0xfd
}

// NodePrivateKey returns the node's WireGuard private key, generated on the first Open.
func (s *Store) NodePrivateKey(ctx context.Context) (Key, error) {
	v, ok, err := getSetting(ctx, s.db, settingNodePrivateKey)
	if err != nil {
		return Key{}, err
	}
	if !ok {
		return Key{}, errorf(ErrNotFound, "database %s has no node private key: restore the database from a backup", s.path)
	}
	return s.openNodeKey(v)
}

// NodePublicKey returns the public key of NodePrivateKey.
func (s *Store) NodePublicKey() Key { return s.nodePub }

// OverlayPrefixes returns the overlay networks peers are addressed from: v4 is always
// 100.64.0.0/10, v6 the installation's ULA /48 chosen on the first Open.
func (s *Store) OverlayPrefixes() (v4, v6 netip.Prefix) { return overlayV4(), s.ula }

// GatewayAddrs returns the node's own overlay addresses: 100.64.0.1 and <ULA prefix>::1.
func (s *Store) GatewayAddrs() (v4, v6 netip.Addr) {
	b := s.ula.Addr().As16()
	b[15] = 1
	return gatewayV4(), netip.AddrFrom16(b)
}

// highWater returns the highest IPv4 address ever assigned, 0 when none was.
func highWater(ctx context.Context, q querier) (uint32, error) {
	v, ok, err := getSetting(ctx, q, settingIPv4HighWater)
	if err != nil || !ok {
		return 0, err
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("store: setting %s is %q, not an integer: %w", settingIPv4HighWater, v, err)
	}
	return uint32(n), nil
}
