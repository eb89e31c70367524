package store

import (
	"fmt"
	"net/netip"
	"slices"
)

// prefixArgs returns the schema's form of the valid prefix p: the address in network byte
// order (4 bytes for IPv4, 16 for IPv6) and the length in bits.
func prefixArgs(p netip.Prefix) ([]byte, int) { return p.Addr().AsSlice(), p.Bits() }

// prefixFromRow converts the schema's form back; ok is false for a malformed row.
func prefixFromRow(addr []byte, bits int64) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(addr)
	if !ok || bits < 0 || bits > int64(a.BitLen()) {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(a, int(bits))
	return p, p.Masked() == p
}

// prefixFormatError says what is wrong with the form of p, described as what ("site
// prefix", "route prefix"), or returns nil: p must be valid, IPv4 written as IPv4, and
// without host bits. These are the rules the schema's CHECKs repeat. The error wraps
// ErrInvalid.
func prefixFormatError(what string, p netip.Prefix) error {
	if !p.IsValid() {
		return errorf(ErrInvalid, "%s is missing or invalid: give one such as 10.10.0.0/24 or fd00:10::/64", what)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() >= 96 {
			return errorf(ErrInvalid, "%s %s is an IPv4-mapped IPv6 prefix: use %s", what, p, netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked())
		}
		return errorf(ErrInvalid, "%s %s is an IPv4-mapped IPv6 address: write IPv4 prefixes as IPv4, e.g. 10.10.0.0/24", what, p)
	}
	if m := p.Masked(); m != p {
		return errorf(ErrInvalid, "%s %s has host bits set: use %s", what, p, m)
	}
	return nil
}

// sortPrefixes sorts ps by netip.Prefix.Compare and drops duplicates.
func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, netip.Prefix.Compare)
	return slices.Compact(ps)
}

// formatPrefixes lists up to limit prefixes, "and N more" for the rest.
func formatPrefixes(ps []netip.Prefix, limit int) string {
	s := ""
	for i, p := range ps {
		if i == limit {
			return s + fmt.Sprintf(" and %d more", len(ps)-limit)
		}
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}

// ValidatePrefix reports what is wrong with the form of p, described as what ("site prefix",
// "--site-prefix"), as the store would refuse it: IPv4 written as IPv6, or host bits set. The
// error wraps ErrInvalid. Callers check input with it before they send it.
func ValidatePrefix(what string, p netip.Prefix) error { return prefixFormatError(what, p) }
