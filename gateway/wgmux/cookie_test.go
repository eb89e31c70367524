package wgmux

import (
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/store"
)

// stockClient is the cookie side of a stock wireguard-go client talking to pub.
type stockClient struct{ gen device.CookieGenerator }

func newStockClient(pub store.Key) *stockClient {
	c := &stockClient{}
	c.gen.Init(device.NoisePublicKey(pub))
	return c
}

// initiation returns a fresh initiation with the client's mac1 and, once it holds a cookie,
// mac2, as wireguard-go's AddMacs writes them.
func (c *stockClient) initiation(t *testing.T) []byte {
	t.Helper()
	msg := make([]byte, initiationSize)
	rand.Read(msg)
	binary.LittleEndian.PutUint32(msg, typeInitiation)
	clear(msg[initMAC1Off:])
	c.gen.AddMacs(msg)
	return msg
}

// consume hands the client a cookie reply, as its receive path does.
func (c *stockClient) consume(t *testing.T, b [cookieReplySize]byte) {
	t.Helper()
	var r device.MessageCookieReply
	r.Type = binary.LittleEndian.Uint32(b[0:])
	r.Receiver = binary.LittleEndian.Uint32(b[4:])
	copy(r.Nonce[:], b[8:])
	copy(r.Cookie[:], b[8+len(r.Nonce):])
	if !c.gen.ConsumeReply(&r) {
		t.Fatal("the stock client refused the cookie reply")
	}
}

// TestCookieJarStockClient: a stock client opens the jar's cookie reply, and the mac2 it then
// computes passes for its own source address only.
func TestCookieJarStockClient(t *testing.T) {
	pub := store.Key{1, 2, 3}.PublicKey()
	now := time.Unix(1000, 0)
	j := newCookieJar(pub, func() time.Time { return now })
	cli := newStockClient(pub)
	src, other := []byte{192, 0, 2, 7, 0xca, 0x6c}, []byte{192, 0, 2, 8, 0xca, 0x6c}

	first := cli.initiation(t)
	if mac2IsZero(first) == false {
		t.Fatal("an initiation before any cookie carries a mac2")
	}
	if j.checkMAC2(first, src) {
		t.Fatal("an initiation without a cookie passed mac2")
	}
	reply, err := j.reply(first, src)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := binary.LittleEndian.Uint32(reply[4:]), binary.LittleEndian.Uint32(first[initSenderOff:]); got != want {
		t.Fatalf("cookie reply for receiver %d, want the initiator's sender index %d", got, want)
	}
	cli.consume(t, reply)
	again := cli.initiation(t)
	if !j.checkMAC2(again, src) {
		t.Fatal("the stock client's mac2 with the jar's cookie did not pass")
	}
	if j.checkMAC2(again, other) {
		t.Fatal("a mac2 passed for another source address")
	}
	again[20] ^= 1
	if j.checkMAC2(again, src) {
		t.Fatal("a mac2 passed for a changed initiation")
	}
}

// TestCookieJarRotation: a cookie handed out just before the secret changes still passes at
// the client's next retry (5 s later), which wireguard-go's own checker refuses; cookies stop
// passing once no client may use them any more.
func TestCookieJarRotation(t *testing.T) {
	pub := store.Key{4, 5, 6}.PublicKey()
	start := time.Unix(5000, 0)
	now := start
	j := newCookieJar(pub, func() time.Time { return now })
	src := []byte{198, 51, 100, 9, 0x10, 0x00}

	late := newStockClient(pub) // gets its cookie 1 s before the secret is due to change
	if _, err := j.reply(late.initiation(t), src); err != nil {
		t.Fatal(err) // the first reply sets the secret at start
	}
	now = start.Add(cookieLifetime - time.Second)
	r, err := j.reply(late.initiation(t), src)
	if err != nil {
		t.Fatal(err)
	}
	late.consume(t, r)

	now = start.Add(cookieLifetime + time.Second) // another source's reply changes the secret
	if _, err := j.reply(newStockClient(pub).initiation(t), []byte{203, 0, 113, 1, 0, 1}); err != nil {
		t.Fatal(err)
	}
	now = start.Add(cookieLifetime + 4*time.Second) // the late client's retry
	if !j.checkMAC2(late.initiation(t), src) {
		t.Fatal("a cookie handed out 1 s before the secret changed was refused at the client's next retry")
	}

	now = start.Add(2*cookieLifetime + time.Second) // no client uses the old cookie any more
	if j.checkMAC2(late.initiation(t), src) {
		t.Fatal("a cookie older than a client may use it still passed")
	}

	// With no load for long, no secret is left and the next reply starts one.
	now = start.Add(10 * cookieLifetime)
	fresh := newStockClient(pub)
	if j.checkMAC2(fresh.initiation(t), src) {
		t.Fatal("a mac2 passed with no secret in force")
	}
	r, err = j.reply(fresh.initiation(t), src)
	if err != nil {
		t.Fatal(err)
	}
	fresh.consume(t, r)
	if !j.checkMAC2(fresh.initiation(t), src) {
		t.Fatal("a fresh cookie after a quiet time did not pass")
	}
}
