package nodesync

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/popgate/popgate/store"
)

// TokenPrefix starts every join token; the digit is the token's version.
const TokenPrefix = "popgate-join-1."

// tokenFamily is what every version of a join token starts with.
const tokenFamily = "popgate-join-"

// Token is a join token: where the controller is, how to recognise it, and a one-time
// secret that expires.
type Token struct {
	// Addr is the controller's host:port.
	Addr string
	// Pin is the controller certificate's pin.
	Pin     Pin
	ID      int64
	Secret  [store.JoinSecretLen]byte
	Expires time.Time
}

// tokenJSON is the token's wire form.
type tokenJSON struct {
	A string `json:"a"`
	P []byte `json:"p"`
	I int64  `json:"i"`
	S []byte `json:"s"`
	E int64  `json:"e"`
}

// Encode returns the token as one line.
func (t Token) Encode() string {
	b, err := json.Marshal(tokenJSON{A: t.Addr, P: t.Pin[:], I: t.ID, S: t.Secret[:], E: t.Expires.Unix()})
	if err != nil {
		panic(err) // plain fields: cannot fail
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ErrTokenExpired is wrapped by ParseToken's error for a token that expired.
var ErrTokenExpired = errors.New("join token expired")

// ParseToken reads a join token and checks that it has not expired at now. Its errors say
// what is wrong with the token and what to do.
func ParseToken(s string, now time.Time) (Token, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, tokenFamily) {
		return Token{}, errors.New("this is not a popgate join token (they start with " + TokenPrefix + "): copy the line 'popgate node token' printed on the controller")
	}
	if !strings.HasPrefix(s, TokenPrefix) {
		v, _, _ := strings.Cut(strings.TrimPrefix(s, tokenFamily), ".")
		return Token{}, fmt.Errorf("this join token is of version %q, this popgate reads version 1: run the same popgate version on the node and the controller", truncate(v, 16))
	}
	truncated := errors.New("this join token is truncated or damaged: copy the whole line 'popgate node token' printed, or make a new token")
	b, err := base64.RawURLEncoding.DecodeString(s[len(TokenPrefix):])
	if err != nil {
		return Token{}, truncated
	}
	var j tokenJSON
	if err := json.Unmarshal(b, &j); err != nil || len(j.P) != len(Pin{}) || len(j.S) != store.JoinSecretLen || j.I <= 0 || j.E <= 0 {
		return Token{}, truncated
	}
	if _, port, err := net.SplitHostPort(j.A); err != nil || port == "" {
		return Token{}, truncated
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return Token{}, truncated
	}
	t := Token{Addr: j.A, ID: j.I, Expires: time.Unix(j.E, 0).UTC()}
	copy(t.Pin[:], j.P)
	copy(t.Secret[:], j.S)
	if !now.Before(t.Expires) {
		return Token{}, fmt.Errorf("%w at %s (it is %s here): make a new one on the controller ('popgate node token --expires …')", ErrTokenExpired, t.Expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return t, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
