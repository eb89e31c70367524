package store

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"testing"
)

// The rules as the issue states them: the reference the hand-written validators are checked
// against.
var (
	tenantNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	peerNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

func TestValidateTenantName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // substring; "" means valid
	}{
		{"acme", ""},
		{"a", ""},
		{"0", ""},
		{"acme-corp", ""},
		{"acme-", ""},
		{"9lives", ""},
		{strings.Repeat("a", 32), ""},
		{"", `tenant name "" is invalid: it is empty; use 1-32 lower-case letters, digits and '-', starting with a letter or digit`},
		{"Ac me", `tenant name "Ac me" is invalid: 'A' at position 1 is not allowed; use 1-32 lower-case letters`},
		{"acme corp", `' ' at position 5 is not allowed`},
		{"-acme", `it starts with '-'`},
		{"acme_corp", `'_' at position 5 is not allowed`},
		{"acme.corp", `'.' at position 5 is not allowed`},
		{"acmé", `'é' at position 4 is not allowed`},
		{"acme\x00", `'\x00' at position 5 is not allowed`},
		{"acme\xff", `byte 0xff at position 5 is not allowed`},
		{strings.Repeat("a", 33), `it has 33 characters, at most 32 are allowed`},
	}
	for _, tt := range tests {
		err := ValidateTenantName(tt.name)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateTenantName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateTenantName(%q) = %v, want ErrInvalid containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestValidatePeerName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{"laptop", ""},
		{"Laptop", ""},
		{"alice.phone", ""},
		{"alice_phone-2", ""},
		{"0", ""},
		{"a.", ""},
		{strings.Repeat("A", 64), ""},
		{"", `peer name "" is invalid: it is empty; use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{".hidden", `it starts with '.'`},
		{"_x", `it starts with '_'`},
		{"-x", `it starts with '-'`},
		{"my laptop", `' ' at position 3 is not allowed`},
		{"a/b", `'/' at position 2 is not allowed`},
		{"Ünïcode", `'Ü' at position 1 is not allowed`},
		{strings.Repeat("A", 65), `it has 65 characters, at most 64 are allowed`},
	}
	for _, tt := range tests {
		err := ValidatePeerName(tt.name)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidatePeerName(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidatePeerName(%q) = %v, want ErrInvalid containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestParseKey(t *testing.T) {
	const good = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	tests := []struct {
		in      string
		want    string // canonical form; "" means an error is expected
		wantErr string
	}{
		{good, good, ""},
		{" " + good + "\n", good, ""},
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", ""},
		{"", "", "it has 0 characters, a key has 44"},
		{good[:43], "", "it has 43 characters"},
		{good + "A", "", "it has 45 characters"},
		{strings.TrimSuffix(good, "=") + "A", "", "not valid base64"},            // no padding
		{good[:20] + "\n" + good[21:], "", "not valid base64"},                   // newline inside
		{"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBml=", "", "not valid base64"}, // non-zero padding bits
		{"yAnz5TF-lXXJte14tji3zlMNq_hd2rYUIgJBgB3fBmk=", "", "not valid base64"}, // URL alphabet
		{strings.Repeat("A", 88), "", "it has 88 characters"},
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseKey(%q) = %v, %v; want ErrInvalid containing %q", tt.in, k, err, tt.wantErr)
			}
			continue
		}
		if err != nil || k.String() != tt.want {
			t.Errorf("ParseKey(%q) = %v, %v; want %s", tt.in, k, err, tt.want)
		}
	}
}

func TestKeyPair(t *testing.T) {
	// RFC 7748 section 6.1 test vector: Alice's private and public key.
	priv, err := ParseKey(b64hex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	if err != nil {
		t.Fatal(err)
	}
	want := b64hex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	if got := priv.PublicKey().String(); got != want {
		t.Errorf("PublicKey = %s, want %s", got, want)
	}
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if k.IsZero() || k[0]&7 != 0 || k[31]&0xc0 != 0x40 {
		t.Errorf("GeneratePrivateKey = %x, not a clamped key", k[:])
	}
}

func b64hex(t *testing.T, h string) string {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=", "", "====", " \n", strings.Repeat("/", 44)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseKey(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		// A parsed key prints back exactly as given, and parses again to itself.
		if got := k.String(); got != strings.TrimSpace(s) {
			t.Fatalf("ParseKey(%q).String() = %q", s, got)
		}
		if k2, err := ParseKey(k.String()); err != nil || k2 != k {
			t.Fatalf("round trip of %q: %v, %v", s, k2, err)
		}
	})
}

func FuzzValidateNames(f *testing.F) {
	for _, s := range []string{"acme", "Ac me", "-x", "laptop.conf", "", strings.Repeat("a", 33), "a\xffb", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(what string, err error, want bool) {
			if (err == nil) != want {
				t.Fatalf("%s(%q) = %v, reference says valid=%v", what, s, err, want)
			}
			if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "; use ")) {
				t.Fatalf("%s(%q) = %v: want ErrInvalid stating the rule", what, s, err)
			}
		}
		check("ValidateTenantName", ValidateTenantName(s), tenantNameRE.MatchString(s))
		check("ValidatePeerName", ValidatePeerName(s), peerNameRE.MatchString(s))
	})
}
