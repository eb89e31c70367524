package store

import (
	"fmt"
	"unicode/utf8"
)

// Name rules. The schema's CHECK constraints repeat them so that rows written by hand obey
// them too; change both together (in a new migration).
const (
	maxTenantName  = 32
	maxPeerName    = 64
	tenantNameRule = "use 1-32 lower-case letters, digits and '-', starting with a letter or digit"
	peerNameRule   = "use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit"
)

// ValidateTenantName reports whether name is a valid tenant name: 1-32 characters of a-z, 0-9
// and '-', not starting with '-' (like a DNS label, so it can appear in host names). The error
// wraps ErrInvalid and says what is wrong and what the rule is.
func ValidateTenantName(name string) error {
	if problem := nameProblem(name, maxTenantName, isTenantNameByte); problem != "" {
		return errorf(ErrInvalid, "tenant name %q is invalid: %s; %s", truncate(name, 80), problem, tenantNameRule)
	}
	return nil
}

// ValidatePeerName reports whether name is a valid peer name: 1-64 characters of A-Z, a-z,
// 0-9, '.', '_' and '-', starting with a letter or digit (safe as a file name, e.g.
// "laptop.conf"). The error wraps ErrInvalid and says what is wrong and what the rule is.
func ValidatePeerName(name string) error {
	if problem := nameProblem(name, maxPeerName, isPeerNameByte); problem != "" {
		return errorf(ErrInvalid, "peer name %q is invalid: %s; %s", truncate(name, 80), problem, peerNameRule)
	}
	return nil
}

// ValidateGroupName reports whether name is a valid group name. Group names follow the
// peer-name rule (see ValidatePeerName). The error wraps ErrInvalid.
func ValidateGroupName(name string) error {
	if problem := nameProblem(name, maxPeerName, isPeerNameByte); problem != "" {
		return errorf(ErrInvalid, "group name %q is invalid: %s; %s", truncate(name, 80), problem, peerNameRule)
	}
	return nil
}

// ValidateSiteName reports whether name is a valid site name. Site names follow the
// peer-name rule (see ValidatePeerName). The error wraps ErrInvalid.
func ValidateSiteName(name string) error {
	if problem := nameProblem(name, maxPeerName, isPeerNameByte); problem != "" {
		return errorf(ErrInvalid, "site name %q is invalid: %s; %s", truncate(name, 80), problem, peerNameRule)
	}
	return nil
}

// nameProblem returns what is wrong with name, or "" when it is valid: at most maxLen bytes,
// every byte allowed by ok, and the first one a letter or digit.
func nameProblem(name string, maxLen int, ok func(byte) bool) string {
	if name == "" {
		return "it is empty"
	}
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		if size != 1 || !ok(name[i]) {
			if r == utf8.RuneError && size == 1 {
				return fmt.Sprintf("byte %#02x at position %d is not allowed", name[i], i+1)
			}
			return fmt.Sprintf("%q at position %d is not allowed", r, i+1)
		}
		i += size
	}
	if !isAlnum(name[0]) {
		return fmt.Sprintf("it starts with %q", name[0])
	}
	if len(name) > maxLen {
		return fmt.Sprintf("it has %d characters, at most %d are allowed", len(name), maxLen)
	}
	return ""
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isTenantNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-'
}

func isPeerNameByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '-'
}
