package store

import (
	"regexp"
	"strings"
	"testing"
)

func TestPasswordHash(t *testing.T) {
	hash, err := HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(hash) {
		t.Errorf("hash %q is not the PHC form with t=2 m=19MiB p=1", hash)
	}
	if again, _ := HashPassword(testPassword); again == hash {
		t.Error("two hashes of one password are equal: no salt?")
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{{testPassword, true}, {testPassword + " ", false}, {"", false}, {strings.ToUpper(testPassword), false}} {
		if ok, err := VerifyPassword(hash, tc.password); ok != tc.want || err != nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", tc.password, ok, err, tc.want)
		}
	}
	if ok, err := VerifyPassword(dummyPasswordHash, testPassword); ok || err != nil {
		t.Errorf("dummy hash: %v, %v", ok, err)
	}
	for _, bad := range []string{
		"",
		"plain",
		"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", // 4 GiB
		"$argon2id$v=19$m=19456,t=2,p=1,m=8$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=1000,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=2,p=1,x=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=2,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aA",
	} {
		if ok, err := VerifyPassword(bad, testPassword); ok || err == nil {
			t.Errorf("VerifyPassword with hash %q = %v, %v; want an error", bad, ok, err)
		}
	}
}

func TestValidatePassword(t *testing.T) {
	for _, tc := range []struct {
		password, want string // want "": valid
	}{
		{testPassword, ""},
		{"twelve chars", ""},
		{"pässwört-1234", ""},
		{"", "is empty"},
		{"short", "too short (5 characters): use at least 12"},
		{"ünïcödé", "too short (7 characters)"},
		{strings.Repeat("x", 257), "too long (257 bytes): use at most 256"},
		{"line\nbreak in it", "control character"},
		{"tab\tin the password", "control character"},
		{"\xff\xfe invalid utf-8!!", "not valid UTF-8"},
		{"Alice.Example", "the admin's name"},
	} {
		err := ValidatePassword("alice.example", tc.password)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ValidatePassword(%q) = %v", tc.password, err)
			}
			continue
		}
		wantErr(t, err, ErrInvalid, tc.want)
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		p, err := GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^[a-hjkmnp-z2-9]{4}(-[a-hjkmnp-z2-9]{4}){5}$`).MatchString(p) {
			t.Fatalf("generated password %q has the wrong form", p)
		}
		if err := ValidatePassword("admin", p); err != nil {
			t.Fatalf("generated password %q is refused: %v", p, err)
		}
		if seen[p] {
			t.Fatalf("password %q generated twice", p)
		}
		seen[p] = true
	}
}

func FuzzParsePHC(f *testing.F) {
	hash, _ := HashPassword(testPassword)
	f.Add(hash)
	f.Add(dummyPasswordHash)
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePHC(s)
		if err != nil {
			return
		}
		if p.memory > 64<<10 || p.time > 10 || p.threads > 8 || len(p.key) < 16 {
			t.Errorf("parsePHC(%q) accepted %+v", s, p)
		}
	})
}

// BenchmarkHashPassword is one argon2id hash with popgate's parameters: what a password check
// (sign-in, API token creation aside) costs the server. BENCHMARKS.md has the figures.
func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		if _, err := HashPassword(testPassword); err != nil {
			b.Fatal(err)
		}
	}
}
