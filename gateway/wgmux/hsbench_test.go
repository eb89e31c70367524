package wgmux

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/store"
)

// hsClients makes handshake initiations for many client keys to one server cheaply: the two
// X25519s of an initiation that do not depend on the moment (static–static for each key,
// ephemeral–static for a small pool of ephemerals) are computed once, so what is left for the
// client is a few hashes and two AEAD seals. A server neither knows nor cares that ephemerals
// repeat. Each key's timestamps grow, and a key is not used again within minKeyGap (the
// server drops a peer's initiations less than 20 ms apart).
type hsClients struct {
	chain0, hash1, mac1Key [blake2s.Size]byte
	cookieKey              [blake2s.Size]byte
	keys                   []hsClientKey
	ephs                   []hsEphemeral
	sender                 atomic.Uint32
}

type hsClientKey struct {
	pub  store.Key
	ss   [32]byte     // DH(static, server)
	last atomic.Int64 // UnixNano of its last initiation
}

type hsEphemeral struct {
	pub [32]byte
	ss  [32]byte // DH(ephemeral, server)
}

// minKeyGap keeps one key's initiations further apart than wireguard-go's limit per peer
// (HandshakeInitationRate, 20 ms).
const minKeyGap = 25 * time.Millisecond

func newHSClients(tb testing.TB, server store.Key, privs []store.Key) *hsClients {
	c := &hsClients{chain0: blake2s.Sum256([]byte(noiseConstruction))}
	h0 := hashOf(c.chain0[:], []byte(noiseIdentifier))
	c.hash1 = hashOf(h0[:], server[:])
	c.mac1Key = hashOf([]byte(labelMAC1), server[:])
	c.cookieKey = hashOf([]byte(labelCookie), server[:])
	c.keys = make([]hsClientKey, len(privs))
	for i, p := range privs {
		priv, err := ecdh.X25519().NewPrivateKey(p[:])
		if err != nil {
			tb.Fatal(err)
		}
		ss, ok := dhWith(priv, server[:])
		if !ok {
			tb.Fatal("low-order server key")
		}
		c.keys[i].pub, c.keys[i].ss = p.PublicKey(), ss
	}
	for range 64 {
		e, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		var eph hsEphemeral
		copy(eph.pub[:], e.PublicKey().Bytes())
		eph.ss, _ = dhWith(e, server[:])
		c.ephs = append(c.ephs, eph)
	}
	return c
}

// initiation writes an initiation of key i into msg and returns its sender index; it waits
// first if key i was used less than minKeyGap ago.
func (c *hsClients) initiation(msg *[initiationSize]byte, i int) uint32 {
	k := &c.keys[i]
	var now int64
	for {
		last := k.last.Load()
		now = time.Now().UnixNano()
		if wait := time.Duration(last + int64(minKeyGap) - now); wait > 0 {
			time.Sleep(wait)
			continue
		}
		if k.last.CompareAndSwap(last, now) {
			break
		}
	}
	sender := c.sender.Add(1)
	eph := &c.ephs[int(sender)%len(c.ephs)]
	*msg = [initiationSize]byte{}
	binary.LittleEndian.PutUint32(msg[0:], typeInitiation)
	binary.LittleEndian.PutUint32(msg[initSenderOff:], sender)
	copy(msg[initEphemeralOff:], eph.pub[:])
	chain := kdf1(c.chain0[:], eph.pub[:])
	hash := hashOf(c.hash1[:], eph.pub[:])
	chain, key := kdf2(chain[:], eph.ss[:])
	seal(key, msg[initStaticOff:initStaticOff], k.pub[:], hash[:])
	hash = hashOf(hash[:], msg[initStaticOff:initStaticOff+initStaticLen])
	_, key = kdf2(chain[:], k.ss[:])
	ts := tai64n(time.Unix(0, now))
	tsOff := initStaticOff + initStaticLen
	seal(key, msg[tsOff:tsOff], ts[:], hash[:])
	putMAC(msg[initMAC1Off:initMAC2Off], c.mac1Key[:], msg[:initMAC1Off])
	return sender
}

// errNoAnswer: no handshake response came for an initiation in time.
var errNoAnswer = errors.New("no handshake response")

// hsSocket is one source address of the clients and the cookie the server last gave it.
type hsSocket struct {
	conn   *net.UDPConn
	cookie []byte
}

// handshake sends an initiation of key i from sock to server and waits for the response to
// it; a cookie reply to it is answered once, with mac2, as a client does.
func (c *hsClients) handshake(sock *hsSocket, server *net.UDPAddr, i int, buf []byte) error {
	var msg [initiationSize]byte
	for try := 0; try < 2; try++ {
		sender := c.initiation(&msg, i)
		if sock.cookie != nil {
			putMAC(msg[initMAC2Off:], sock.cookie, msg[:initMAC2Off])
		}
		if _, err := sock.conn.WriteToUDP(msg[:], server); err != nil {
			return err
		}
		sock.conn.SetReadDeadline(time.Now().Add(time.Second))
	read:
		for {
			n, err := sock.conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return errNoAnswer
				}
				return err
			}
			switch {
			case n == responseSize && binary.LittleEndian.Uint32(buf) == typeResponse && binary.LittleEndian.Uint32(buf[respReceiverOff:]) == sender:
				return nil
			case n == cookieReplySize && binary.LittleEndian.Uint32(buf) == typeCookieReply && binary.LittleEndian.Uint32(buf[receiverOff:]) == sender:
				aead, _ := chacha20poly1305.NewX(c.cookieKey[:])
				nonce := buf[8 : 8+chacha20poly1305.NonceSizeX]
				cookie, err := aead.Open(nil, nonce, buf[8+chacha20poly1305.NonceSizeX:n], msg[initMAC1Off:initMAC2Off])
				if err != nil {
					return fmt.Errorf("cookie reply does not open: %w", err)
				}
				sock.cookie = cookie
				break read
			}
		}
	}
	return errNoAnswer
}

// BenchmarkHandshake measures whole handshakes through a wireguard-go device on a real UDP
// socket over loopback: 64 client sockets (32 per GOMAXPROCS), one initiation in flight on
// each, with 1,024 client keys, as the bench's handshake case does. The device has a socket
// of its own (stock), or is one of the tenants' devices on a Mux, whose keys it holds; each
// client socket uses the keys of one tenant in turn, and the Mux routes initiations with its
// endpoint cache, or decrypts each one (mux-decrypt). ns/op is per handshake, client work
// included (a few hashes: see hsClients); cpu-µs/op is the process's CPU time per handshake,
// which other work on the machine disturbs less than the time.
func BenchmarkHandshake(b *testing.B) {
	for _, c := range []struct {
		name      string
		mux       bool
		tenants   int
		endpoints bool
	}{
		{"stock", false, 1, false},
		{"mux/tenants=1", true, 1, true},
		{"mux/tenants=8", true, 8, true},
		{"mux-decrypt/tenants=1", true, 1, false},
		{"mux-decrypt/tenants=8", true, 8, false},
	} {
		b.Run(c.name, func(b *testing.B) { handshakeBench(b, c.mux, c.tenants, c.endpoints) })
	}
}

// handshakeBench runs BenchmarkHandshake on a stock device, or on tenants devices on a Mux,
// with its endpoint cache or without.
func handshakeBench(b *testing.B, mux bool, tenants int, endpoints bool) {
	const keys = 1024
	node := testKey(b)
	privs := make([]store.Key, keys)
	owner := map[store.Key]int64{}
	uapi := make([]strings.Builder, tenants)
	for t := range uapi {
		fmt.Fprintf(&uapi[t], "private_key=%x\n", node[:])
	}
	for i := range privs {
		privs[i] = testKey(b)
		pub, t := privs[i].PublicKey(), i%tenants
		owner[pub] = int64(t + 1)
		fmt.Fprintf(&uapi[t], "public_key=%x\nallowed_ip=10.%d.%d.%d/32\n", pub[:], i>>16, (i>>8)&0xff, i&0xff)
	}
	clients := newHSClients(b, node.PublicKey(), privs)
	var port uint16
	var m *Mux
	if mux {
		devs := map[int64]*device.Device{}
		m = mustNew(b, Config{
			Socket:     conn.NewDefaultBind(),
			PrivateKey: node,
			Route: func(k store.Key) (int64, bool) {
				id, ok := owner[k]
				return id, ok
			},
			Holds: func(id int64, k store.Key) bool { return devs[id].LookupPeer(device.NoisePublicKey(k)) != nil },
		}, nil)
		m.useEndpoints = endpoints
		for t := range tenants {
			dev := startDevice(b, newTestTUN(func([]byte) {}), m.Bind(int64(t+1)), uapi[t].String())
			devs[int64(t+1)] = dev
			port = listenPort(b, dev)
		}
	} else {
		dev := startDevice(b, newTestTUN(func([]byte) {}), conn.NewDefaultBind(), uapi[0].String())
		port = listenPort(b, dev)
	}
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}

	const parallelism = 32
	// One source address each (127.0.1.x): the Mux and wireguard-go limit initiations per
	// source address.
	socks := make([]*hsSocket, parallelism*runtime.GOMAXPROCS(0))
	for i := range socks {
		s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 1+byte(i>>8), byte(i))})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		socks[i] = &hsSocket{conn: s}
	}
	// Socket j uses the keys of tenant j%tenants, in turn.
	var turn [keys]atomic.Uint32
	keyOf := func(j int) int {
		t := j % tenants
		n := int(turn[t].Add(1))
		return (n*tenants + t) % keys
	}
	var timeouts atomic.Int64
	one := func(j int, buf []byte) {
		switch err := clients.handshake(socks[j], server, keyOf(j), buf); {
		case errors.Is(err, errNoAnswer):
			timeouts.Add(1)
		case err != nil:
			b.Error(err)
		}
	}
	// Warm up: every socket's first handshakes.
	buf := make([]byte, 256)
	for range 2 {
		for j := range socks {
			one(j, buf)
		}
	}
	if n := timeouts.Load(); n > 0 {
		if m != nil {
			b.Logf("%+v", m.Stats())
		}
		b.Fatalf("%d of %d handshakes unanswered while warming up", n, 2*len(socks))
	}
	var before Stats
	if m != nil {
		before = m.Stats()
	}
	var next atomic.Int32
	b.SetParallelism(parallelism)
	cpu0 := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		j := int(next.Add(1)-1) % len(socks)
		buf := make([]byte, 256)
		for pb.Next() {
			one(j, buf)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	b.ReportMetric(float64(timeouts.Load()), "timeouts")
	if m != nil {
		st := m.Stats()
		b.ReportMetric(float64(st.EndpointHits-before.EndpointHits)/float64(b.N), "hits/op")
		b.ReportMetric(float64(st.EndpointFallbacks-before.EndpointFallbacks)/float64(b.N), "fallbacks/op")
		b.ReportMetric(float64(st.EndpointLate-before.EndpointLate)/float64(b.N), "late/op")
	}
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
