package wgmux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
	"github.com/popgate/popgate/store"
)

// nextSent returns the next datagram sock sent of size n, failing after 5 s.
func nextSent(t *testing.T, sock *wgmuxtest.Socket, n int, what string) []byte {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case b := <-sock.Sent():
			if len(b) == n {
				return b
			}
		case <-timeout:
			t.Fatalf("no %s sent in 5 s", what)
			return nil
		}
	}
}

// wgDevice starts a wireguard-go device with key priv and a peer with public key peer, on an
// in-memory socket.
func wgDevice(t *testing.T, priv, peer store.Key, extra string) (*device.Device, *wgmuxtest.Socket) {
	t.Helper()
	sock := wgmuxtest.NewSocket(1)
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), sock, silentLogger())
	t.Cleanup(dev.Close)
	if err := dev.IpcSet(fmt.Sprintf("private_key=%x\npublic_key=%x\nallowed_ip=10.9.9.9/32\n%s", priv[:], peer[:], extra)); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return dev, sock
}

// TestHandshakeWithWireGuardGo: a stock wireguard-go device answers the initiation a
// Handshake makes, and the Handshake accepts its response; a responder without the key it
// was asked for cannot make one that passes.
func TestHandshakeWithWireGuardGo(t *testing.T) {
	node, checker := testKey(t), testKey(t)
	_, sock := wgDevice(t, node, checker.PublicKey(), "")
	h, err := NewHandshake(checker, node.PublicKey(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sock.Deliver(bytes.Clone(h.Initiation()))
	resp := nextSent(t, sock, responseSize, "handshake response")
	if err := h.Response(resp); err != nil {
		t.Fatalf("wireguard-go's response refused: %v", err)
	}
	bad := bytes.Clone(resp)
	bad[respEmptyOff] ^= 1
	if err := h.Response(bad); err == nil {
		t.Error("a response with a flipped bit was accepted")
	}

	// Another key: wireguard-go answers nothing it cannot open; a response to another
	// initiation is refused by its receiver index.
	other, _ := NewHandshake(checker, testKey(t).PublicKey(), time.Now())
	if err := other.Response(resp); !errors.Is(err, ErrNotThis) {
		t.Errorf("a response to another initiation: %v", err)
	}
}

// TestHandshakeOtherMessage: an answer that is no response nor cookie reply is refused with
// its whole type, not its first byte: one that opens like a response but has its reserved
// bytes set is not called a message of type 2.
func TestHandshakeOtherMessage(t *testing.T) {
	h, err := NewHandshake(testKey(t), testKey(t).PublicKey(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, responseSize)
	binary.LittleEndian.PutUint32(msg, typeResponse|1<<24)
	err = h.Response(msg)
	if err == nil || errors.Is(err, ErrNotThis) {
		t.Fatalf("a message of type %#x: %v", typeResponse|1<<24, err)
	}
	if strings.Contains(err.Error(), "type 2,") || !strings.Contains(err.Error(), fmt.Sprint(typeResponse|1<<24)) {
		t.Errorf("the error does not say the message's type: %v", err)
	}
}

// TestMuxAnswersMonitors: the Mux answers an initiation from a monitor key with a response
// that a stock wireguard-go initiator completes its handshake with, and that a Handshake
// accepts; not a replay; not a key it was not given.
func TestMuxAnswersMonitors(t *testing.T) {
	node, monitor, monitor2, stranger := testKey(t), testKey(t), testKey(t), testKey(t)
	inner := wgmuxtest.NewSocket(4)
	routed := 0
	m, _ := newTestMux(t, inner, node, func(store.Key) (int64, bool) { routed++; return 0, false })
	b := m.Bind(1)
	fns, _ := mustOpen(t, b, 0)
	collect(fns, 4)
	defer b.Close()
	m.SetMonitors([]store.Key{monitor.PublicKey(), monitor2.PublicKey()})

	h, err := NewHandshake(monitor, node.PublicKey(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	init1 := bytes.Clone(h.Initiation())
	inner.Deliver(init1)
	resp := nextSent(t, inner, responseSize, "handshake response")
	if err := h.Response(resp); err != nil {
		t.Fatalf("the Mux's response: %v", err)
	}
	waitStats(t, m, "monitor answered", func(s Stats) bool { return s.MonitorsAnswered == 1 })

	// The same initiation again: not answered.
	inner.Deliver(init1)
	waitStats(t, m, "replay", func(s Stats) bool { return s.MonitorReplays == 1 })

	// A stock wireguard-go device with a monitor's key completes a handshake with the Mux's
	// response: it is the real thing. (Another monitor's: wireguard-go rounds its
	// timestamps down to 16 ms, which may make this one's older than the first's.)
	dev, sock := wgDevice(t, monitor2, node.PublicKey(), "endpoint=192.0.2.1:51820\npersistent_keepalive_interval=1\n")
	wgInit := nextSent(t, sock, initiationSize, "wireguard-go's initiation")
	inner.Deliver(wgInit)
	sock.Deliver(nextSent(t, inner, responseSize, "the Mux's response to wireguard-go"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := dev.IpcGet()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(st, "last_handshake_time_sec=") && !strings.Contains(st, "last_handshake_time_sec=0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wireguard-go did not complete the handshake with the Mux's response:\n%s", st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A key that is no monitor's goes to Route as always; no longer a monitor: the same.
	sh, _ := NewHandshake(stranger, node.PublicKey(), time.Now())
	inner.Deliver(bytes.Clone(sh.Initiation()))
	waitStats(t, m, "unknown initiator", func(s Stats) bool { return s.UnknownInitiator == 1 })
	m.SetMonitors(nil)
	h2, _ := NewHandshake(monitor, node.PublicKey(), time.Now())
	inner.Deliver(bytes.Clone(h2.Initiation()))
	st := waitStats(t, m, "former monitor", func(s Stats) bool { return s.UnknownInitiator == 2 })
	if st.MonitorsAnswered != 2 || st.Routed != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// TestHandshakeCookie: a Handshake answered with a cookie reply retries with the mac2 the
// Mux's cookie jar accepts for its source.
func TestHandshakeCookie(t *testing.T) {
	node, checker := testKey(t), testKey(t)
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	jar := newCookieJar(node.PublicKey(), func() time.Time { return now })
	h, err := NewHandshake(checker, node.PublicKey(), now)
	if err != nil {
		t.Fatal(err)
	}
	src := wgmuxtest.At("192.0.2.7:40000").DstToBytes()
	reply, err := jar.reply(h.Initiation(), src)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Response(reply[:]); !errors.Is(err, ErrCookie) {
		t.Fatalf("Response(cookie reply) = %v, want ErrCookie", err)
	}
	if err := h.Retry(reply[:], now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if !jar.checkMAC2(h.Initiation(), src) {
		t.Error("the retry's mac2 is not the cookie's")
	}
	if jar.checkMAC2(h.Initiation(), wgmuxtest.At("192.0.2.8:40000").DstToBytes()) {
		t.Error("the retry's mac2 passes for another source")
	}
	noise, _ := newNoise(node)
	if !newMAC1Checker(&noise.mac1Key).ok(h.Initiation()) {
		t.Error("the retry's mac1 is wrong")
	}
	bad := reply
	bad[40] ^= 1
	if err := h.Retry(bad[:], now); err == nil {
		t.Error("a forged cookie reply was taken")
	}
	if binary.LittleEndian.Uint32(h.Initiation()) != typeInitiation {
		t.Error("not an initiation")
	}
}

// FuzzHandshakeResponse: whatever arrives where a handshake check listens, Response does not
// panic, and accepts nothing but the one response to its initiation (which random bytes never
// are).
func FuzzHandshakeResponse(f *testing.F) {
	node, checker := store.Key{1}, store.Key{2}
	h, err := NewHandshake(checker, node.PublicKey(), time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	if err != nil {
		f.Fatal(err)
	}
	resp := make([]byte, responseSize)
	binary.LittleEndian.PutUint32(resp, typeResponse)
	copy(resp[respReceiverOff:], h.Initiation()[initSenderOff:initSenderOff+4])
	cookie := make([]byte, cookieReplySize)
	binary.LittleEndian.PutUint32(cookie, typeCookieReply)
	copy(cookie[receiverOff:], h.Initiation()[initSenderOff:initSenderOff+4])
	for _, s := range [][]byte{nil, {1}, resp, cookie, h.Initiation()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := h.Response(b); err == nil {
			t.Fatalf("accepted % x", b)
		} else if errors.Is(err, ErrCookie) {
			h.Retry(b, time.Now()) // must not panic; a forged cookie does not open
		}
	})
}
