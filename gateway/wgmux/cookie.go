package wgmux

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/popgate/popgate/store"
)

// cookieLifetime is how long a cookie secret makes new cookies, and how long a client uses a
// cookie it received (the whitepaper's 2 minutes; wireguard-go's CookieRefreshTime).
const cookieLifetime = 2 * time.Minute

// labelCookie names the key that encrypts cookie replies (whitepaper, section 5.4.7).
const labelCookie = "cookie--"

// cookieJar makes the cookie replies of a node under load and checks the mac2 of the
// initiations that come back (whitepaper, section 5.4.7): a cookie is MAC(secret, source
// address and port), and the secret changes every cookieLifetime.
//
// Unlike wireguard-go's CookieChecker, a mac2 made with the previous secret stays valid for
// a cookieLifetime after the change. A client keeps using a cookie for 2 minutes after it
// arrived and sends it with its next retry, 5 s later; a checker that forgets the old secret
// refuses every cookie handed out in the 5 s before a change, and those clients wait one
// more retry (seen in 2-minute floods: ≈ 4 % of clients needed a third initiation). The old
// secret is not kept longer than a cookie issued with it may be used.
type cookieJar struct {
	encKey [blake2s.Size]byte // HASH("cookie--" || node public key): seals cookie replies
	now    func() time.Time

	mu sync.RWMutex
	// cur makes cookies since curSet (zero: no secret yet); prev made them until curSet and
	// is accepted in mac2 until prevUntil.
	cur, prev [blake2s.Size]byte
	curSet    time.Time
	prevUntil time.Time
}

func newCookieJar(pub store.Key, now func() time.Time) *cookieJar {
	return &cookieJar{encKey: hashOf([]byte(labelCookie), pub[:]), now: now}
}

// secretsLocked returns the secrets a mac2 may be made with at now, and whether the current
// one may still make cookies.
func (j *cookieJar) secretsLocked(now time.Time) (cur, prev *[blake2s.Size]byte, fresh bool) {
	if j.curSet.IsZero() {
		return nil, nil, false
	}
	age := now.Sub(j.curSet)
	if age < cookieLifetime*2 { // cookies of cur are in use until one lifetime after it stopped making them
		cur = &j.cur
	}
	if now.Before(j.prevUntil) {
		prev = &j.prev
	}
	return cur, prev, age < cookieLifetime
}

// checkMAC2 reports whether msg, an initiation from src (address and port bytes,
// conn.Endpoint.DstToBytes), carries the mac2 of a cookie this jar handed out to src.
func (j *cookieJar) checkMAC2(msg, src []byte) bool {
	j.mu.RLock()
	cur, prev, _ := j.secretsLocked(j.now())
	var a, b [blake2s.Size]byte
	if cur != nil {
		a = *cur
	}
	if prev != nil {
		b = *prev
	}
	j.mu.RUnlock()
	return (cur != nil && mac2Matches(&a, msg, src)) || (prev != nil && mac2Matches(&b, msg, src))
}

// mac2Matches reports whether msg's mac2 is the one a client computes with the cookie that
// secret gives src.
func mac2Matches(secret *[blake2s.Size]byte, msg, src []byte) bool {
	var cookie, mac2 [blake2s.Size128]byte
	mac, _ := blake2s.New128(secret[:])
	mac.Write(src)
	mac.Sum(cookie[:0])
	n := len(msg) - blake2s.Size128
	mac, _ = blake2s.New128(cookie[:])
	mac.Write(msg[:n])
	mac.Sum(mac2[:0])
	return hmac.Equal(mac2[:], msg[n:])
}

// reply returns the cookie reply to the initiation msg from src: the cookie for src,
// sealed under the jar's key with msg's mac1 as additional data, for the initiator's sender
// index. It starts a new secret when the current one is too old to make cookies.
func (j *cookieJar) reply(msg, src []byte) ([cookieReplySize]byte, error) {
	var out [cookieReplySize]byte
	now := j.now()
	j.mu.RLock()
	_, _, fresh := j.secretsLocked(now)
	if !fresh {
		j.mu.RUnlock()
		if err := j.rotate(now); err != nil {
			return out, err
		}
		j.mu.RLock()
	}
	var cookie [blake2s.Size128]byte
	mac, _ := blake2s.New128(j.cur[:])
	j.mu.RUnlock()
	mac.Write(src)
	mac.Sum(cookie[:0])

	// type 4 | receiver 4 | nonce 24 | sealed cookie 16+16
	binary.LittleEndian.PutUint32(out[0:], typeCookieReply)
	copy(out[4:8], msg[initSenderOff:initSenderOff+4])
	nonce := out[8 : 8+chacha20poly1305.NonceSizeX]
	if _, err := rand.Read(nonce); err != nil {
		return out, fmt.Errorf("cookie reply nonce: %w", err)
	}
	aead, err := chacha20poly1305.NewX(j.encKey[:])
	if err != nil {
		return out, err
	}
	aead.Seal(out[8+chacha20poly1305.NonceSizeX:8+chacha20poly1305.NonceSizeX], nonce, cookie[:], msg[initMAC1Off:initMAC2Off])
	return out, nil
}

// rotate starts a new secret at now unless another caller just did; the current one becomes
// the previous, accepted in mac2 as long as a cookie it made may be in use.
func (j *cookieJar) rotate(now time.Time) error {
	var fresh [blake2s.Size]byte
	if _, err := rand.Read(fresh[:]); err != nil {
		return fmt.Errorf("cookie secret: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, _, ok := j.secretsLocked(now); ok {
		return nil // rotated meanwhile
	}
	// The old secret made cookies until now at the latest (until a lifetime after it was
	// set, if that came first), and each is used for a lifetime after it was made.
	if !j.curSet.IsZero() {
		j.prevUntil = j.curSet.Add(cookieLifetime)
		if now.Before(j.prevUntil) {
			j.prevUntil = now
		}
		j.prevUntil = j.prevUntil.Add(cookieLifetime)
	}
	j.prev = j.cur
	j.cur = fresh
	j.curSet = now
	return nil
}
