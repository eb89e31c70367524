package wgmux

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/popgate/popgate/store"
)

// Monitors: the other nodes of the network check that this node's public endpoint answers,
// with a real WireGuard handshake (gateway/checks). Their static keys are their backbone
// keys, which no tenant's device holds; the Mux answers an initiation from one of them with a
// handshake response of its own (Noise IK, the whitepaper's section 5.4.3), proving that the
// node is reachable at its address and holds its key, and keeps nothing: no session, no
// device, no peer. Such an initiation passes admission like any other (cookies under load,
// the rate per source), and its timestamp must grow, as a device would insist, so that a
// replayed initiation is not answered.

// The parts of the handshake that only monitors need (the devices do the rest).
const (
	timestampLen = 12 // TAI64N
	emptyAEADLen = chacha20poly1305.Overhead
	// Response: type 4 | sender 4 | receiver 4 | ephemeral 32 | empty 0+16 | mac1 16 | mac2 16.
	respEphemeralOff = 12
	respEmptyOff     = 44
	respMAC1Off      = 60
	respMAC2Off      = 76
)

// monitors is the set of keys the Mux answers itself, and the latest timestamp of each.
type monitors struct {
	mu   sync.Mutex
	keys map[store.Key]*[timestampLen]byte // the latest timestamp answered; zero: none yet
}

// SetMonitors makes keys the static keys whose initiations the Mux answers itself, with a
// handshake response that opens no session: the other nodes' backbone keys, with which they
// check that this node answers at its public endpoint. It replaces the previous set; a key
// kept keeps the latest timestamp it was answered with. Safe for concurrent use.
func (m *Mux) SetMonitors(keys []store.Key) {
	m.monitors.mu.Lock()
	defer m.monitors.mu.Unlock()
	old := m.monitors.keys
	m.monitors.keys = make(map[store.Key]*[timestampLen]byte, len(keys))
	for _, k := range keys {
		if ts := old[k]; ts != nil {
			m.monitors.keys[k] = ts
		} else {
			m.monitors.keys[k] = new([timestampLen]byte)
		}
	}
}

// isMonitor reports whether k is a monitor's key.
func (m *Mux) isMonitor(k store.Key) bool {
	m.monitors.mu.Lock()
	defer m.monitors.mu.Unlock()
	return m.monitors.keys[k] != nil
}

// answerMonitor answers the initiation msg from monitor key static, sent from ep, with a
// handshake response. It returns the counter of the outcome: monitorsAnswered, or
// badInitiation when the rest of the initiation does not open, monitorReplays when its
// timestamp is not newer than the last one answered.
func (m *Mux) answerMonitor(msg []byte, static store.Key, send func([]byte) error) counter {
	st, ts, ok := m.noise.openInitiation(msg, static)
	if !ok {
		return badInitiation
	}
	m.monitors.mu.Lock()
	last := m.monitors.keys[static]
	fresh := last != nil && bytes.Compare(ts[:], last[:]) > 0
	if fresh {
		*last = ts
	}
	m.monitors.mu.Unlock()
	if !fresh {
		return monitorReplays
	}
	resp, err := st.response(binary.LittleEndian.Uint32(msg[initSenderOff:]), static)
	if err != nil {
		m.log.Warn("wgmux: answer a node's handshake check", "err", err)
		return badInitiation
	}
	if err := send(resp[:]); err != nil {
		m.log.Debug("wgmux: send a handshake response to a node's check", "err", err)
	}
	return monitorsAnswered
}

// noiseState is the running hash and chaining key of one handshake, and the ephemeral keys it
// knows.
type noiseState struct {
	hash, chain [blake2s.Size]byte
	ephemeral   [store.KeyLen]byte // the peer's ephemeral public key (responder side)
	priv        *ecdh.PrivateKey   // this side's static key
}

// openInitiation runs the responder's side of an initiation from static (whose encrypted
// static has opened already, in initiatorStatic) up to its end: it opens the timestamp and
// returns the state and the timestamp.
func (n *noise) openInitiation(msg []byte, static store.Key) (*noiseState, [timestampLen]byte, bool) {
	var ts [timestampLen]byte
	st := &noiseState{priv: n.priv}
	eph := msg[initEphemeralOff:initStaticOff]
	copy(st.ephemeral[:], eph)
	st.hash = hashOf(n.hash1[:], eph)
	st.chain = kdf1(n.chain0[:], eph)
	ss, ok := dhWith(n.priv, eph)
	if !ok {
		return nil, ts, false
	}
	var key [blake2s.Size]byte
	st.chain, key = kdf2(st.chain[:], ss[:])
	encStatic := msg[initStaticOff : initStaticOff+initStaticLen]
	var got [store.KeyLen]byte
	if !open(key, got[:0], encStatic, st.hash[:]) || got != static {
		return nil, ts, false
	}
	st.hash = hashOf(st.hash[:], encStatic)
	if ss, ok = dhWith(n.priv, static[:]); !ok {
		return nil, ts, false
	}
	st.chain, key = kdf2(st.chain[:], ss[:])
	encTS := msg[initStaticOff+initStaticLen : initMAC1Off]
	if !open(key, ts[:0], encTS, st.hash[:]) {
		return nil, ts, false
	}
	st.hash = hashOf(st.hash[:], encTS)
	return st, ts, true
}

// response builds the responder's answer to the initiation st has opened, for the
// initiator's sender index and static key.
func (st *noiseState) response(receiver uint32, static store.Key) ([responseSize]byte, error) {
	var out [responseSize]byte
	e, sender, err := newEphemeral()
	if err != nil {
		return out, err
	}
	binary.LittleEndian.PutUint32(out[0:], typeResponse)
	binary.LittleEndian.PutUint32(out[respSenderOff:], sender)
	binary.LittleEndian.PutUint32(out[respReceiverOff:], receiver)
	epub := e.PublicKey().Bytes()
	copy(out[respEphemeralOff:], epub)
	st.chain = kdf1(st.chain[:], epub)
	st.hash = hashOf(st.hash[:], epub)
	ss, ok := dhWith(e, st.ephemeral[:])
	if !ok {
		return out, errors.New("low-order ephemeral")
	}
	st.chain = kdf1(st.chain[:], ss[:])
	if ss, ok = dhWith(e, static[:]); !ok {
		return out, errors.New("low-order static key")
	}
	st.chain = kdf1(st.chain[:], ss[:])
	var psk [blake2s.Size]byte // no preshared key
	var tau, key [blake2s.Size]byte
	st.chain, tau, key = kdf3(st.chain[:], psk[:])
	st.hash = hashOf(st.hash[:], tau[:])
	seal(key, out[respEmptyOff:respEmptyOff], nil, st.hash[:])
	st.hash = hashOf(st.hash[:], out[respEmptyOff:respMAC1Off])
	mac1Key := hashOf([]byte(labelMAC1), static[:])
	putMAC(out[respMAC1Off:respMAC2Off], mac1Key[:], out[:respMAC1Off])
	return out, nil
}

// Handshake is the initiator's side of one WireGuard handshake, for checking that a node
// answers at its public endpoint (gateway/checks): Initiation is the message to send;
// Response checks the answer, which opens only for a responder that holds its key.
type Handshake struct {
	static    *ecdh.PrivateKey
	staticPub store.Key
	responder store.Key
	ephemeral *ecdh.PrivateKey
	sender    uint32
	hash      [blake2s.Size]byte
	chain     [blake2s.Size]byte
	msg       [initiationSize]byte
}

// NewHandshake makes an initiation from the private key static to the responder's public
// key, timestamped now (TAI64N; a responder answers only a timestamp newer than the last it
// answered from that key).
func NewHandshake(static, responder store.Key, now time.Time) (*Handshake, error) {
	priv, err := ecdh.X25519().NewPrivateKey(static[:])
	if err != nil {
		return nil, err
	}
	h := &Handshake{static: priv, staticPub: static.PublicKey(), responder: responder}
	if err := h.initiate(now, nil); err != nil {
		return nil, err
	}
	return h, nil
}

// initiate builds h.msg afresh: a new ephemeral key and sender index, the timestamp now, and
// mac2 from cookie when not nil.
func (h *Handshake) initiate(now time.Time, cookie []byte) error {
	e, sender, err := newEphemeral()
	if err != nil {
		return err
	}
	h.ephemeral, h.sender = e, sender
	msg := &h.msg
	*msg = [initiationSize]byte{}
	binary.LittleEndian.PutUint32(msg[0:], typeInitiation)
	binary.LittleEndian.PutUint32(msg[initSenderOff:], h.sender)

	h.chain = blake2s.Sum256([]byte(noiseConstruction))
	h0 := hashOf(h.chain[:], []byte(noiseIdentifier))
	h.hash = hashOf(h0[:], h.responder[:])
	epub := e.PublicKey().Bytes()
	copy(msg[initEphemeralOff:], epub)
	h.chain = kdf1(h.chain[:], epub)
	h.hash = hashOf(h.hash[:], epub)
	ss, ok := dhWith(e, h.responder[:])
	if !ok {
		return errors.New("wgmux: the responder's public key is of low order")
	}
	var key [blake2s.Size]byte
	h.chain, key = kdf2(h.chain[:], ss[:])
	seal(key, msg[initStaticOff:initStaticOff], h.staticPub[:], h.hash[:])
	h.hash = hashOf(h.hash[:], msg[initStaticOff:initStaticOff+initStaticLen])
	if ss, ok = dhWith(h.static, h.responder[:]); !ok {
		return errors.New("wgmux: the responder's public key is of low order")
	}
	h.chain, key = kdf2(h.chain[:], ss[:])
	ts := tai64n(now)
	tsOff := initStaticOff + initStaticLen
	seal(key, msg[tsOff:tsOff], ts[:], h.hash[:])
	h.hash = hashOf(h.hash[:], msg[tsOff:initMAC1Off])
	mac1Key := hashOf([]byte(labelMAC1), h.responder[:])
	putMAC(msg[initMAC1Off:initMAC2Off], mac1Key[:], msg[:initMAC1Off])
	if cookie != nil {
		putMAC(msg[initMAC2Off:], cookie, msg[:initMAC2Off])
	}
	return nil
}

// Initiation is the initiation to send. Its bytes change with Retry.
func (h *Handshake) Initiation() []byte { return h.msg[:] }

// Errors of Response that a caller branches on.
var (
	// ErrCookie: a cookie reply; the responder is under load and asks for a mac2, which
	// Retry puts into a new initiation.
	ErrCookie = errors.New("the responder is under load and sent a cookie")
	// ErrNotThis: a response or cookie reply to another initiation (another Handshake's,
	// or forged).
	ErrNotThis = errors.New("a message for another initiation")
)

// Response checks msg, an answer to the initiation: nil for a handshake response that
// opens with the keys (so its sender holds the responder's private key), ErrCookie for a
// cookie reply to it, ErrNotThis for an answer to another initiation, another error for
// anything else.
func (h *Handshake) Response(msg []byte) error {
	if len(msg) < 4 {
		return errors.New("not a WireGuard message")
	}
	switch typ := binary.LittleEndian.Uint32(msg); typ {
	case typeCookieReply:
		if len(msg) != cookieReplySize || binary.LittleEndian.Uint32(msg[receiverOff:]) != h.sender {
			return ErrNotThis
		}
		return ErrCookie
	case typeResponse:
	default:
		return fmt.Errorf("a WireGuard message of type %d, not a handshake response", typ)
	}
	if len(msg) != responseSize || binary.LittleEndian.Uint32(msg[respReceiverOff:]) != h.sender {
		return ErrNotThis
	}
	mac1Key := hashOf([]byte(labelMAC1), h.staticPub[:])
	var mac [blake2s.Size128]byte
	putMAC(mac[:], mac1Key[:], msg[:respMAC1Off])
	if !bytes.Equal(mac[:], msg[respMAC1Off:respMAC2Off]) {
		return errors.New("the handshake response's mac1 is wrong")
	}
	chain, hash := h.chain, h.hash
	epub := msg[respEphemeralOff:respEmptyOff]
	chain = kdf1(chain[:], epub)
	hash = hashOf(hash[:], epub)
	ss, ok := dhWith(h.ephemeral, epub)
	if !ok {
		return errors.New("the handshake response's ephemeral key is of low order")
	}
	chain = kdf1(chain[:], ss[:])
	if ss, ok = dhWith(h.static, epub); !ok {
		return errors.New("the handshake response's ephemeral key is of low order")
	}
	chain = kdf1(chain[:], ss[:])
	var psk [blake2s.Size]byte
	_, tau, key := kdf3(chain[:], psk[:])
	hash = hashOf(hash[:], tau[:])
	if !open(key, nil, msg[respEmptyOff:respMAC1Off], hash[:]) {
		return errors.New("the handshake response does not open: the responder does not hold the key it was asked for")
	}
	return nil
}

// Retry makes a new initiation that carries the mac2 of the cookie in reply, a cookie reply
// to the current initiation, timestamped now; Initiation returns it.
func (h *Handshake) Retry(reply []byte, now time.Time) error {
	if len(reply) != cookieReplySize || binary.LittleEndian.Uint32(reply) != typeCookieReply {
		return errors.New("not a cookie reply")
	}
	key := hashOf([]byte(labelCookie), h.responder[:])
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return err
	}
	nonce := reply[8 : 8+chacha20poly1305.NonceSizeX]
	cookie, err := aead.Open(nil, nonce, reply[8+chacha20poly1305.NonceSizeX:], h.msg[initMAC1Off:initMAC2Off])
	if err != nil {
		return errors.New("the cookie reply does not open: it is not from the responder asked")
	}
	return h.initiate(now, cookie)
}

// newEphemeral returns what each handshake message of this side starts with: a new
// ephemeral key and a random sender index.
func newEphemeral() (*ecdh.PrivateKey, uint32, error) {
	e, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, 0, err
	}
	var idx [4]byte
	if _, err := rand.Read(idx[:]); err != nil {
		return nil, 0, err
	}
	return e, binary.LittleEndian.Uint32(idx[:]), nil
}

// tai64nBase is TAI64's label of the Unix epoch: 2^62 plus the 10 s TAI was ahead of UTC
// in 1970.
const tai64nBase = 0x400000000000000a

// tai64n is t as TAI64N: big-endian seconds from tai64nBase and nanoseconds.
func tai64n(t time.Time) [timestampLen]byte {
	var ts [timestampLen]byte
	binary.BigEndian.PutUint64(ts[:8], uint64(tai64nBase+t.Unix()))
	binary.BigEndian.PutUint32(ts[8:], uint32(t.Nanosecond()))
	return ts
}

// kdf1, kdf2 and kdf3 are the whitepaper's KDF_n(key, input): HKDF over HMAC-BLAKE2s.
func kdf1(key, input []byte) [blake2s.Size]byte {
	t0 := hmacOf(key, input, nil)
	return hmacOf(t0[:], []byte{1}, nil)
}

func kdf2(key, input []byte) (t1, t2 [blake2s.Size]byte) {
	t0 := hmacOf(key, input, nil)
	t1 = hmacOf(t0[:], []byte{1}, nil)
	t2 = hmacOf(t0[:], t1[:], []byte{2})
	return t1, t2
}

func kdf3(key, input []byte) (t1, t2, t3 [blake2s.Size]byte) {
	t0 := hmacOf(key, input, nil)
	t1 = hmacOf(t0[:], []byte{1}, nil)
	t2 = hmacOf(t0[:], t1[:], []byte{2})
	t3 = hmacOf(t0[:], t2[:], []byte{3})
	return t1, t2, t3
}

// dhWith is X25519 of priv and the public key pub; false for a low-order point.
func dhWith(priv *ecdh.PrivateKey, pub []byte) ([32]byte, bool) {
	var out [32]byte
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return out, false
	}
	ss, err := priv.ECDH(p)
	if err != nil {
		return out, false
	}
	copy(out[:], ss)
	return out, true
}

// seal appends AEAD(key, counter 0, plain, ad) to dst.
func seal(key [blake2s.Size]byte, dst, plain, ad []byte) []byte {
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	return aead.Seal(dst, nonce[:], plain, ad)
}

// open opens sealed into dst; false when it does not authenticate.
func open(key [blake2s.Size]byte, dst, sealed, ad []byte) bool {
	aead, _ := chacha20poly1305.New(key[:])
	var nonce [chacha20poly1305.NonceSize]byte
	_, err := aead.Open(dst, nonce[:], sealed, ad)
	return err == nil
}

// putMAC writes the keyed BLAKE2s-128 of data under key to out.
func putMAC(out, key, data []byte) {
	mac, _ := blake2s.New128(key)
	mac.Write(data)
	mac.Sum(out[:0])
}
