package plane

import (
	"encoding/hex"
	"fmt"

	"github.com/popgate/popgate/store"
)

// TenantDNS is a tenant's settings of the in-tunnel resolver beyond its peers' names.
type TenantDNS struct {
	// Blocklists are the tenant's blocklists, by name: a name one of them lists, or a
	// subdomain of it, is answered NXDOMAIN to the tenant's peers. The names themselves are
	// not in the desired state (which goes whole to every node at each change): a node gets
	// each list's content by its SHA256, from its own store or its controller (nodesync's
	// GET /v1/blob/{sha256}), and keeps one copy of a content however many tenants list it.
	Blocklists []BlocklistRef `json:"blocklists,omitempty"`
}

// BlocklistRef is one blocklist of a tenant: its name and the hash of its content in the
// canonical form (gateway/blocklist: sorted names, one a line).
type BlocklistRef struct {
	Name   string `json:"name"`
	SHA256 Digest `json:"sha256"`
	// Names is how many names the content holds.
	Names int `json:"names"`
}

// Digest is a SHA-256, written in hex.
type Digest [32]byte

// String is d in lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is all zeros: no content.
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText writes d in hex.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads d from 64 hex digits.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// ParseDigest reads a SHA-256 from 64 hex digits.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, fmt.Errorf("a SHA-256 is 64 hex digits, not %d characters", len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return Digest{}, fmt.Errorf("a SHA-256 is 64 hex digits: %v", err)
	}
	return d, nil
}

// validate checks a tenant's DNS settings: at most store.MaxBlocklists blocklists with valid
// unique names, each with a content hash and at most store.MaxBlocklistNames names, together
// at most store.MaxTenantBlocklistNames.
func (dns *TenantDNS) validate(tenant string) error {
	if len(dns.Blocklists) > store.MaxBlocklists {
		return invalid("tenant %q: %d blocklists, at most %d", tenant, len(dns.Blocklists), store.MaxBlocklists)
	}
	total := 0
	for i, b := range dns.Blocklists {
		if err := store.ValidateBlocklistName(b.Name); err != nil {
			return invalid("tenant %q: blocklist %d: %v", tenant, i, err)
		}
		for _, o := range dns.Blocklists[:i] {
			if o.Name == b.Name {
				return invalid("tenant %q: blocklist %q is there twice", tenant, b.Name)
			}
		}
		if b.SHA256.IsZero() || b.Names < 0 || b.Names > store.MaxBlocklistNames {
			return invalid("tenant %q: blocklist %q: no content hash, or %d names (at most %d)", tenant, b.Name, b.Names, store.MaxBlocklistNames)
		}
		total += b.Names
	}
	if total > store.MaxTenantBlocklistNames {
		return invalid("tenant %q: its blocklists hold %d names, at most %d", tenant, total, store.MaxTenantBlocklistNames)
	}
	return nil
}
