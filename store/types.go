// Package store keeps popgate's desired state in SQLite: tenants and their networks, node settings and keys.
package store

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/curve25519"
)

// Errors callers branch on. Returned errors wrap one of these and carry a message that says
// what is wrong and what to do.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
	// ErrNoPrivateKey: the peer was created from a public key the user brought; the server never
	// saw its private key and so cannot print a complete config.
	ErrNoPrivateKey = errors.New("private key not held by the server")
	// ErrExhausted: the overlay address pool has no free address left.
	ErrExhausted = errors.New("address pool exhausted")
	// ErrDiskFull: a write failed because the disk holding the database is full (or, for
	// an I/O error, may be); nothing was changed, and the same write can succeed once
	// there is space.
	ErrDiskFull = errors.New("disk full")
)

// KeyLen is the length of a WireGuard (Curve25519) key.
const KeyLen = 32

// Key is a WireGuard private or public key.
type Key [KeyLen]byte

// ParseKey parses a base64 WireGuard key as printed by `wg genkey` / `wg pubkey`. Leading and
// trailing white space (a pasted newline) is ignored; anything else must be the canonical 44
// characters, so that a parsed key prints back exactly as it was given. Errors wrap ErrInvalid.
func ParseKey(s string) (Key, error) {
	var k Key
	t := strings.TrimSpace(s)
	const want = 44 // base64.StdEncoding.EncodedLen(KeyLen)
	if len(t) != want {
		return k, errorf(ErrInvalid, "%q is not a WireGuard key: it has %d characters, a key has %d characters of base64 as printed by 'wg genkey' or 'wg pubkey'", truncate(s, 60), len(t), want)
	}
	var buf [KeyLen + 1]byte // DecodedLen(44) is 33
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(t))
	if err != nil || n != KeyLen || strings.ContainsAny(t, "\r\n") {
		return k, errorf(ErrInvalid, "%q is not a WireGuard key: it is not valid base64; copy the key exactly as printed by 'wg genkey' or 'wg pubkey'", truncate(s, 60))
	}
	copy(k[:], buf[:KeyLen])
	return k, nil
}

// GeneratePrivateKey returns a new clamped Curve25519 private key.
func GeneratePrivateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("store: generate private key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// PublicKey derives the public key of private key k.
func (k Key) PublicKey() Key {
	var pub Key
	curve25519.ScalarBaseMult((*[32]byte)(&pub), (*[32]byte)(&k))
	return pub
}

// String returns the base64 form used by wg(8) and wg-quick(8).
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether k is all zeros.
func (k Key) IsZero() bool { return k == Key{} }

// MarshalText writes the base64 form (String), so that a Key in JSON is the string wg(8)
// prints.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads what MarshalText wrote, as ParseKey does.
func (k *Key) UnmarshalText(text []byte) error {
	parsed, err := ParseKey(string(text))
	if err != nil {
		return err
	}
	*k = parsed
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// clean makes s fit a text column of at most n characters: invalid UTF-8 and control
// characters become U+FFFD, and the end is cut at a character boundary.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || 0x80 <= r && r < 0xa0 || r == '\u2028' || r == '\u2029' {
			return '\uFFFD'
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// Tenant is one customer organisation: its own network of peers, sites, routes and policy.
type Tenant struct {
	ID        int64
	Name      string
	CreatedAt time.Time
	// SplitTunnel is true when the client configs of the tenant's peers list only the
	// tenant's routes (and the overlay) as AllowedIPs instead of all traffic. Default false.
	SplitTunnel bool
	// MaxFlowsPerPeer and MaxFlows bound the flows one peer of the tenant, and all of them
	// together, may have open at once (1 to MaxFlowLimit). 0: the node's default.
	MaxFlowsPerPeer, MaxFlows int
	// Domain is the DNS domain of its peers' names, lower case without the final dot; "":
	// the default, DefaultTenantDomain.
	Domain string
}

// MaxFlowLimit is the largest flow bound a tenant may set.
const MaxFlowLimit = 1 << 20

// Peer is one client device of a tenant.
type Peer struct {
	ID         int64
	TenantID   int64
	TenantName string
	Name       string
	PublicKey  Key
	// HasPrivateKey is true when the server generated the key pair and holds the private key
	// (encrypted at rest); false when the user brought their own public key.
	HasPrivateKey bool
	IPv4          netip.Addr // from 100.64.0.0/10
	IPv6          netip.Addr // from the installation's ULA /48
	Enabled       bool
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// Groups are the names of the groups the peer is in, sorted bytewise, without
	// duplicates; nil when it is in none.
	Groups []string
	// Site is the name of the site the peer connects to the overlay, "" when the peer is not
	// a site connector. Site names are unique within a tenant.
	Site string
	// SitePrefixes are the LAN prefixes behind the site, sorted by netip.Prefix.Compare
	// (IPv4 first); nil when Site is "".
	SitePrefixes []netip.Prefix
	// ExpiresAt is when the peer expires, zero for never. From then on it is treated like a
	// disabled peer (see Expired and SetPeerExpiry).
	ExpiresAt time.Time
}

// NewPeer is what AddPeer needs. Exactly one of PrivateKey (server-generated) or PublicKey
// (brought by the user) is set.
type NewPeer struct {
	TenantName string
	Name       string
	PrivateKey *Key
	PublicKey  *Key
	// Groups, optional, are the peer's groups: at most MaxPeerGroups names of the peer-name
	// format; duplicates are dropped.
	Groups []string
	// Site and SitePrefixes, optional, make the peer a site connector (see SetPeerSite):
	// both set or both empty.
	Site         string
	SitePrefixes []netip.Prefix
}

// Limits on what one peer, site or tenant may hold.
const (
	// MaxPeerGroups is the most groups one peer may be in.
	MaxPeerGroups = 32
	// MaxSitePrefixes is the most LAN prefixes one site may have.
	MaxSitePrefixes = 64
	// MaxPolicySize is the largest policy text of a tenant, in bytes.
	MaxPolicySize = 4 << 20
)

// Site is a network behind one peer of a tenant, its connector, reached through the overlay.
type Site struct {
	TenantID   int64
	TenantName string
	Name       string
	PeerID     int64
	PeerName   string // the connector
	// Prefixes are the site's LAN prefixes, sorted by netip.Prefix.Compare; never empty.
	Prefixes []netip.Prefix
}

// Route sends a tenant's traffic for Prefix to an exit. The longest matching prefix wins.
type Route struct {
	TenantID   int64
	TenantName string
	Prefix     netip.Prefix // masked; 0.0.0.0/0 and ::/0 are the default routes
	// Via is the exit: ViaInternet or ViaSitePrefix followed by the name of one of the tenant's
	// sites.
	Via       string
	CreatedAt time.Time
}

// ViaInternet is the Route.Via of routes that leave through the node's internet exit.
const ViaInternet = "internet"

// ViaSitePrefix starts the Route.Via of routes that go to a site: "site:office".
const ViaSitePrefix = "site:"
