package store

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password rules.
const (
	// MinPasswordLen is the fewest characters a password may have.
	MinPasswordLen = 12
	// MaxPasswordLen is the most bytes a password may have; hashing cost does not depend on
	// it, but a bound keeps request bodies and mistakes small.
	MaxPasswordLen = 256
)

// ValidatePassword reports whether password may be set for the admin name: 12-256 bytes of
// at least 12 characters, no control characters, and not the name itself. The error wraps
// ErrInvalid and says what to do.
func ValidatePassword(name, password string) error {
	n := utf8.RuneCountInString(password)
	switch {
	case password == "":
		return errorf(ErrInvalid, "the password is empty: choose one of at least %d characters (a few random words make a good one), or let popgate generate one", MinPasswordLen)
	case !utf8.ValidString(password):
		return errorf(ErrInvalid, "the password is not valid UTF-8 text: type it again")
	case n < MinPasswordLen:
		return errorf(ErrInvalid, "the password is too short (%d characters): use at least %d (a few random words make a good one), or let popgate generate one", n, MinPasswordLen)
	case len(password) > MaxPasswordLen:
		return errorf(ErrInvalid, "the password is too long (%d bytes): use at most %d", len(password), MaxPasswordLen)
	case strings.ContainsFunc(password, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errorf(ErrInvalid, "the password contains a control character (a line break or tab?): use letters, digits, spaces and punctuation")
	case strings.EqualFold(password, name):
		return errorf(ErrInvalid, "the password is the admin's name: choose another")
	}
	return nil
}

// argon2id parameters (OWASP's minimum: 19 MiB, 2 passes, 1 lane). Changing them leaves old
// hashes valid: each hash carries its own.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
)

// HashPassword returns the argon2id hash of password in PHC string form. It costs 19 MiB and
// the CPU time BenchmarkHashPassword measures (BENCHMARKS.md): callers that take passwords
// from the network bound how many run at once.
func HashPassword(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("store: generate salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches the PHC string hash made by HashPassword
// (with whatever parameters it records, within sane bounds). The comparison takes constant
// time. A malformed hash is an error.
func VerifyPassword(hash, password string) (bool, error) {
	p, err := parsePHC(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(got, p.key) == 1, nil
}

// phc is a parsed argon2id PHC string.
type phc struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

// parsePHC parses $argon2id$v=19$m=M,t=T,p=P$salt$key, refusing parameters beyond bounds that
// keep one check under a second and 64 MiB, so that a damaged row cannot stall sign-ins.
func parsePHC(hash string) (phc, error) {
	var p phc
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, errors.New("store: password hash is not an argon2id PHC string")
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || seen[k] {
			return p, fmt.Errorf("store: password hash parameter %q is malformed", kv)
		}
		seen[k] = true
		switch k {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			p.threads = uint8(min(n, 255))
		default:
			return p, fmt.Errorf("store: password hash parameter %q is unknown", kv)
		}
	}
	if p.memory < 8 || p.memory > 64<<10 || p.time < 1 || p.time > 10 || p.threads < 1 || p.threads > 8 {
		return p, fmt.Errorf("store: password hash parameters %s are out of range", parts[3])
	}
	var err1, err2 error
	p.salt, err1 = base64.RawStdEncoding.DecodeString(parts[4])
	p.key, err2 = base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(p.salt) < 8 || len(p.key) < 16 || len(p.key) > 64 {
		return p, errors.New("store: password hash has a malformed salt or key")
	}
	return p, nil
}

// dummyPasswordHash is checked against when an admin name is unknown, so that a wrong name
// takes as long as a wrong password. Its password is random and discarded; a match would not
// count anyway.
const dummyPasswordHash = "$argon2id$v=19$m=19456,t=2,p=1$3vXqKDyFIV0v4Q9a2S0m0g$W8yZ2yJ0n8m1c4v0l3o5Jm6W1KfQvD9yH2s7rT3aPzE"

// passwordAlphabet has the 31 lower-case letters and digits that cannot be mistaken for each
// other (no 0/o, 1/l/i).
const passwordAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// GeneratePassword returns a random password of 24 characters (118 bits) in groups of four,
// "abcd-efgh-...", easy to type from a screen.
func GeneratePassword() (string, error) {
	const n = 24
	var b strings.Builder
	var buf [64]byte
	for count := 0; count < n; {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("store: generate password: %w", err)
		}
		for _, c := range buf {
			// Rejecting the top 8 values keeps every character equally likely.
			if count == n || int(c) >= 256/len(passwordAlphabet)*len(passwordAlphabet) {
				continue
			}
			if count > 0 && count%4 == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(passwordAlphabet[int(c)%len(passwordAlphabet)])
			count++
		}
	}
	return b.String(), nil
}

// ValidatePasswordHash checks that hash is an argon2id PHC string popgate can verify.
func ValidatePasswordHash(hash string) error {
	if _, err := parsePHC(hash); err != nil {
		return fmt.Errorf("%w: %s: make one with 'popgate admin hash-password' (it reads the password from stdin)",
			ErrInvalid, strings.TrimPrefix(err.Error(), "store: "))
	}
	return nil
}
