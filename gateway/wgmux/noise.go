package wgmux

import (
	"crypto/ecdh"
	"crypto/subtle"
	"encoding/binary"
	"hash"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/popgate/popgate/store"
)

// WireGuard message layout as the Mux needs it (the whitepaper, section 5.4). Every message
// starts with a little-endian uint32 type: one type byte and three reserved zero bytes.
const (
	typeInitiation  = 1
	typeResponse    = 2
	typeCookieReply = 3
	typeTransport   = 4

	initiationSize  = 148
	responseSize    = 92
	cookieReplySize = 64
	transportMin    = 32 // header 16 + Poly1305 tag 16: a keepalive

	// Initiation: type 4 | sender 4 | ephemeral 32 | static 32+16 | timestamp 12+16 | mac1 16 | mac2 16.
	initSenderOff    = 4
	initEphemeralOff = 8
	initStaticOff    = 40
	initStaticLen    = store.KeyLen + 16
	initMAC1Off      = 116
	initMAC2Off      = 132

	// Response: type | sender | receiver | …; cookie reply and transport: type | receiver | ….
	respSenderOff   = 4
	respReceiverOff = 8
	receiverOff     = 4
)

// Noise_IKpsk2 names, hashed into the initial chaining key and hash.
const (
	noiseConstruction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
	noiseIdentifier   = "WireGuard v1 zx2c4 Jason@zx2c4.com"
	labelMAC1         = "mac1----"
)

// noise holds what the responder side of Noise IK needs to learn who is initiating: the
// node's static key and the chaining key and hash computed up to the responder's public key,
// which are the same for every initiation. It is immutable after newNoise and safe for
// concurrent use.
type noise struct {
	priv    *ecdh.PrivateKey
	chain0  [blake2s.Size]byte // HASH(construction)
	hash1   [blake2s.Size]byte // HASH(HASH(chain0 || identifier) || responder public key)
	mac1Key [blake2s.Size]byte // HASH("mac1----" || responder public key)
}

func newNoise(nodePrivateKey store.Key) (*noise, error) {
	priv, err := ecdh.X25519().NewPrivateKey(nodePrivateKey[:])
	if err != nil {
		return nil, err
	}
	pub := nodePrivateKey.PublicKey()
	n := &noise{priv: priv}
	n.chain0 = blake2s.Sum256([]byte(noiseConstruction))
	h0 := hashOf(n.chain0[:], []byte(noiseIdentifier))
	n.hash1 = hashOf(h0[:], pub[:])
	n.mac1Key = hashOf([]byte(labelMAC1), pub[:])
	return n, nil
}

// initiatorStatic returns the initiator's static public key from a 148-byte initiation, computed
// as the Noise IK responder does up to the first AEAD: mix the ephemeral into hash and chaining
// key, DH(node private, ephemeral), then open the encrypted static with the running hash as
// additional data. It checks nothing else (mac1 is the caller's; the timestamp, replay and
// psk are the device's). ok is false for a low-order ephemeral or a static that does not open,
// which means the initiator did not use this node's public key.
func (n *noise) initiatorStatic(msg []byte) (static store.Key, ok bool) {
	if len(msg) != initiationSize {
		return static, false
	}
	eph := msg[initEphemeralOff:initStaticOff]
	h := hashOf(n.hash1[:], eph)
	chain := hmacOf(n.chain0[:], eph, nil)   // KDF1(chain0, e): extract …
	chain = hmacOf(chain[:], []byte{1}, nil) // … and expand

	pub, err := ecdh.X25519().NewPublicKey(eph)
	if err != nil {
		return static, false
	}
	ss, err := n.priv.ECDH(pub) // refuses a low-order point (all-zero result)
	if err != nil {
		return static, false
	}
	prk := hmacOf(chain[:], ss, nil) // KDF2(chain, ss): the second output is the key
	t0 := hmacOf(prk[:], []byte{1}, nil)
	key := hmacOf(prk[:], t0[:], []byte{2})

	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return static, false
	}
	var nonce [chacha20poly1305.NonceSize]byte
	if _, err := aead.Open(static[:0], nonce[:], msg[initStaticOff:initStaticOff+initStaticLen], h[:]); err != nil {
		return store.Key{}, false
	}
	return static, true
}

// mac1Checker checks mac1 of handshake messages addressed to one public key. It keeps a keyed
// BLAKE2s state to avoid an allocation per message, so one mac1Checker belongs to one goroutine.
type mac1Checker struct {
	h   hash.Hash
	sum [blake2s.Size128]byte
}

func newMAC1Checker(key *[blake2s.Size]byte) *mac1Checker {
	h, err := blake2s.New128(key[:])
	if err != nil {
		panic(err) // only for a key longer than 32 bytes
	}
	return &mac1Checker{h: h}
}

// ok reports whether mac1 of the initiation msg (exactly initiationSize bytes) is right:
// BLAKE2s-128 keyed with HASH("mac1----" || public key) over everything before mac1.
func (c *mac1Checker) ok(msg []byte) bool {
	c.h.Reset()
	c.h.Write(msg[:initMAC1Off])
	c.h.Sum(c.sum[:0])
	return subtle.ConstantTimeCompare(c.sum[:], msg[initMAC1Off:initMAC2Off]) == 1
}

// hashOf is BLAKE2s-256(a || b) for len(a)+len(b) ≤ 128, without allocating.
func hashOf(a, b []byte) [blake2s.Size]byte {
	var buf [128]byte
	n := copy(buf[:], a)
	n += copy(buf[n:], b)
	return blake2s.Sum256(buf[:n])
}

// hmacOf is HMAC (RFC 2104) over BLAKE2s-256 with a 32-byte key and a message a || b of
// at most 64 bytes, which is all the Noise key schedule needs; it does not allocate.
func hmacOf(key, a, b []byte) [blake2s.Size]byte {
	const block = blake2s.BlockSize
	var in [2 * block]byte // (key ^ ipad) || a || b
	var out [block + blake2s.Size]byte
	copy(in[:], key)
	copy(out[:], key)
	for i := range block {
		in[i] ^= 0x36
		out[i] ^= 0x5c
	}
	n := block + copy(in[block:], a)
	n += copy(in[n:], b)
	inner := blake2s.Sum256(in[:n])
	copy(out[block:], inner[:])
	return blake2s.Sum256(out[:])
}

// sentIndex returns the sender index of an initiation or response about to be sent, and
// whether b is one; the Mux learns from it which device allocated the index.
func sentIndex(b []byte) (uint32, bool) {
	switch {
	case len(b) == initiationSize && binary.LittleEndian.Uint32(b) == typeInitiation:
		return binary.LittleEndian.Uint32(b[initSenderOff:]), true
	case len(b) == responseSize && binary.LittleEndian.Uint32(b) == typeResponse:
		return binary.LittleEndian.Uint32(b[respSenderOff:]), true
	}
	return 0, false
}
