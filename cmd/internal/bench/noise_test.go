//go:build bench

package bench

// The initiator side of WireGuard's Noise_IKpsk2 handshake (whitepaper, section 5.4), written
// for the handshake load generator: it builds initiations for many client keys against one
// responder and checks the responses. What does not depend on the client key (an ephemeral's
// DH with the responder's static key) is precomputed, so that the generator spends its CPU on
// sending, not on X25519: on a 2-core machine the generator shares the cores with the server.

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"github.com/popgate/popgate/store"
)

// Message types and sizes.
const (
	msgInitiation  = 1
	msgResponse    = 2
	msgCookieReply = 3

	initiationSize  = 148
	responseSize    = 92
	cookieReplySize = 64

	initMAC1Off = 116 // everything before mac1 is covered by mac1
	initMAC2Off = 132 // everything before mac2 is covered by mac2
	respMAC1Off = 60
)

const (
	noiseConstruction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
	noiseIdentifier   = "WireGuard v1 zx2c4 Jason@zx2c4.com"
	labelMAC1         = "mac1----"
	labelCookie       = "cookie--"
	// tai64Base is 2^62 + 10 s: TAI64 labels seconds from 1970 TAI this way.
	tai64Base = 0x400000000000000a
)

func hashOf(parts ...[]byte) (out [32]byte) {
	h, _ := blake2s.New256(nil)
	for _, p := range parts {
		h.Write(p)
	}
	h.Sum(out[:0])
	return out
}

func newBlake2s() hash.Hash {
	h, _ := blake2s.New256(nil)
	return h
}

func hmacOf(key []byte, parts ...[]byte) (out [32]byte) {
	m := hmac.New(newBlake2s, key)
	for _, p := range parts {
		m.Write(p)
	}
	m.Sum(out[:0])
	return out
}

// kdf returns the first n (1-3) outputs of the Noise HKDF over BLAKE2s.
func kdf(n int, chain, input []byte) (t [3][32]byte) {
	prk := hmacOf(chain, input)
	t[0] = hmacOf(prk[:], []byte{1})
	if n > 1 {
		t[1] = hmacOf(prk[:], t[0][:], []byte{2})
	}
	if n > 2 {
		t[2] = hmacOf(prk[:], t[1][:], []byte{3})
	}
	return t
}

// mac is keyed BLAKE2s-128.
func mac(key, msg []byte) (out [16]byte) {
	h, err := blake2s.New128(key)
	if err != nil {
		panic(err) // only for an empty or over-long key, which is a bug here
	}
	h.Write(msg)
	h.Sum(out[:0])
	return out
}

func seal(key [32]byte, plain, ad []byte) []byte {
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	return aead.Seal(nil, nonce[:], plain, ad)
}

func dh(priv, pub [32]byte) ([32]byte, error) {
	var out [32]byte
	b, err := curve25519.X25519(priv[:], pub[:])
	if err != nil {
		return out, err
	}
	copy(out[:], b)
	return out, nil
}

// responder is what every initiation towards one server shares.
type responder struct {
	pub       [32]byte
	chain0    [32]byte // HASH(construction)
	hash1     [32]byte // HASH(HASH(chain0 || identifier) || responder public key)
	mac1Key   [32]byte // HASH(label_mac1 || responder public key)
	cookieKey [32]byte // HASH(label_cookie || responder public key)
}

func newResponder(pub store.Key) *responder {
	r := &responder{pub: pub}
	r.chain0 = hashOf([]byte(noiseConstruction))
	h0 := hashOf(r.chain0[:], []byte(noiseIdentifier))
	r.hash1 = hashOf(h0[:], pub[:])
	r.mac1Key = hashOf([]byte(labelMAC1), pub[:])
	r.cookieKey = hashOf([]byte(labelCookie), pub[:])
	return r
}

// ephemeral is an ephemeral key pair with the handshake state after its DH with the
// responder's static key, which is the same whatever the initiator's static key is. The
// generator reuses a pool of them; a responder keeps no record of ephemerals.
type ephemeral struct {
	priv, pub [32]byte
	hash      [32]byte // after mixing in the ephemeral
	chain     [32]byte // after DH(e, S_r)
	key       [32]byte // seals the initiator's static key
}

func (r *responder) newEphemeral() (*ephemeral, error) {
	k, err := store.GeneratePrivateKey()
	if err != nil {
		return nil, err
	}
	e := &ephemeral{priv: k, pub: k.PublicKey()}
	e.hash = hashOf(r.hash1[:], e.pub[:])
	c := kdf(1, r.chain0[:], e.pub[:])
	es, err := dh(e.priv, r.pub)
	if err != nil {
		return nil, err
	}
	t := kdf(2, c[0][:], es[:])
	e.chain, e.key = t[0], t[1]
	return e, nil
}

// initiator is one client key with what it shares with the responder.
type initiator struct {
	priv, pub   [32]byte
	staticDH    [32]byte // DH(S_i, S_r)
	respMAC1Key [32]byte // HASH(label_mac1 || initiator public key): mac1 of responses to it
}

func (r *responder) newInitiator(priv store.Key) (*initiator, error) {
	in := &initiator{priv: priv, pub: priv.PublicKey()}
	var err error
	if in.staticDH, err = dh(in.priv, r.pub); err != nil {
		return nil, err
	}
	in.respMAC1Key = hashOf([]byte(labelMAC1), in.pub[:])
	return in, nil
}

// pending is what an initiator must keep of an initiation to check the response.
type pending struct {
	sender uint32
	eph    *ephemeral
	chain  [32]byte
	hash   [32]byte
	mac1   [16]byte // the initiation's mac1: a cookie reply's additional data
}

// tai64n encodes a time given in nanoseconds since 1970 as TAI64N.
func tai64n(unixNano int64) (ts [12]byte) {
	binary.BigEndian.PutUint64(ts[:8], uint64(tai64Base+unixNano/1e9))
	binary.BigEndian.PutUint32(ts[8:], uint32(unixNano%1e9))
	return ts
}

// initiation writes a handshake initiation into msg (initiationSize bytes) with a timestamp
// of unixNano, which must grow from one initiation of this key to the next. cookie, when not
// nil, is the last cookie the responder gave to this source address: it sets mac2.
func (r *responder) initiation(msg []byte, in *initiator, e *ephemeral, sender uint32, unixNano int64, cookie []byte) pending {
	p := pending{sender: sender, eph: e}
	clear(msg[:initiationSize])
	binary.LittleEndian.PutUint32(msg[0:], msgInitiation)
	binary.LittleEndian.PutUint32(msg[4:], sender)
	copy(msg[8:40], e.pub[:])
	static := seal(e.key, in.pub[:], e.hash[:])
	copy(msg[40:88], static)
	h := hashOf(e.hash[:], static)
	t := kdf(2, e.chain[:], in.staticDH[:])
	ts := tai64n(unixNano)
	stamp := seal(t[1], ts[:], h[:])
	copy(msg[88:116], stamp)
	p.chain = t[0]
	p.hash = hashOf(h[:], stamp)
	p.mac1 = mac(r.mac1Key[:], msg[:initMAC1Off])
	copy(msg[initMAC1Off:], p.mac1[:])
	if cookie != nil {
		m2 := mac(cookie, msg[:initMAC2Off])
		copy(msg[initMAC2Off:], m2[:])
	}
	return p
}

// errNotOurs marks a message that answers another initiation (or is not a handshake message).
var errNotOurs = errors.New("not a reply to this initiation")

// checkResponse checks a response to p: its type, size, receiver index and mac1, and when full
// is set also that it completes the handshake (two X25519 and the empty AEAD open), which
// proves the responder derived the same keys.
func checkResponse(msg []byte, in *initiator, p *pending, full bool) error {
	if len(msg) != responseSize || binary.LittleEndian.Uint32(msg) != msgResponse || binary.LittleEndian.Uint32(msg[8:]) != p.sender {
		return errNotOurs
	}
	want := mac(in.respMAC1Key[:], msg[:respMAC1Off])
	if subtle.ConstantTimeCompare(want[:], msg[respMAC1Off:respMAC1Off+16]) != 1 {
		return errors.New("response has a bad mac1")
	}
	if !full {
		return nil
	}
	var er [32]byte
	copy(er[:], msg[12:44])
	c := kdf(1, p.chain[:], er[:])
	h := hashOf(p.hash[:], er[:])
	ee, err := dh(p.eph.priv, er)
	if err != nil {
		return fmt.Errorf("response: %w", err)
	}
	c = kdf(1, c[0][:], ee[:])
	se, err := dh(in.priv, er)
	if err != nil {
		return fmt.Errorf("response: %w", err)
	}
	c = kdf(1, c[0][:], se[:])
	var psk [32]byte // popgate and the baseline use no preshared key
	t := kdf(3, c[0][:], psk[:])
	h = hashOf(h[:], t[1][:])
	aead, _ := chacha20poly1305.New(t[2][:])
	var nonce [chacha20poly1305.NonceSize]byte
	if _, err := aead.Open(nil, nonce[:], msg[44:60], h[:]); err != nil {
		return errors.New("response does not complete the handshake: its empty payload does not open")
	}
	return nil
}

// openCookieReply returns the cookie of a cookie reply to p (the responder is under load and
// wants mac2 on the next initiation from this source address).
func (r *responder) openCookieReply(msg []byte, p *pending) ([]byte, error) {
	if len(msg) != cookieReplySize || binary.LittleEndian.Uint32(msg) != msgCookieReply || binary.LittleEndian.Uint32(msg[4:]) != p.sender {
		return nil, errNotOurs
	}
	aead, err := chacha20poly1305.NewX(r.cookieKey[:])
	if err != nil {
		return nil, err
	}
	cookie, err := aead.Open(nil, msg[8:32], msg[32:64], p.mac1[:])
	if err != nil {
		return nil, errors.New("cookie reply does not open")
	}
	return cookie, nil
}
