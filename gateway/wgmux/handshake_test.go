package wgmux

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
	"github.com/popgate/popgate/store"
)

// --- the pieces of admission ---

func TestBucket(t *testing.T) {
	const ms = int64(time.Millisecond)
	cost, limit := 10*ms, 30*ms // 100 a second, 3 at once
	cases := []struct {
		name  string
		start bucket
		at    []int64 // times of the takes
		want  []bool
	}{
		{"full bucket gives its burst at once", bucket{tokens: limit}, []int64{0, 0, 0, 0}, []bool{true, true, true, false}},
		{"then one per cost", bucket{tokens: 0}, []int64{5 * ms, 10 * ms, 15 * ms, 20 * ms}, []bool{false, true, false, true}},
		{"refills to the limit, no more", bucket{tokens: 0}, []int64{time.Second.Nanoseconds(), time.Second.Nanoseconds(), time.Second.Nanoseconds(), time.Second.Nanoseconds()}, []bool{true, true, true, false}},
		{"a clock that goes back refills nothing", bucket{tokens: cost, last: 100 * ms}, []int64{50 * ms, 60 * ms}, []bool{true, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.start
			for i, at := range c.at {
				has := b.has(at, cost, limit)
				if got := b.take(at, cost, limit); got != c.want[i] || has != got {
					t.Fatalf("take %d at %v: %v (has said %v), want %v", i, time.Duration(at), got, has, c.want[i])
				}
			}
		})
	}
}

func TestSourceKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
	} {
		if got := sourceKey(netip.MustParseAddr(c.in)); got != netip.MustParseAddr(c.want) {
			t.Errorf("sourceKey(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

// testLimits are small limits for the admission tests: a queue of 8, under load at 4, a
// source may have 2 a second (2 at once), cookie replies 3 a second per source and 5 in all,
// the last 2 of them for sources without one in the last second.
func testLimits() hsLimits {
	return hsLimits{
		queue: 8, underLoadQueued: 4, underLoadFor: time.Second,
		sourceRate: 2, sourceBurst: 2,
		cookieSrcRate: 3, cookieSrcBurst: 3,
		cookieRate: 5, cookieBurst: 5, cookieReserve: 2, cookieQuiet: time.Second,
		maxSources: 16, sourceIdle: 2 * time.Second, sweepEvery: 10 * time.Second,
	}
}

// step is one initiation offered to admission, the queue drained or time passing.
type step struct {
	after  time.Duration // clock advance before the step
	from   string        // source address:port; "" with drain set
	mac2   mac2Check     // what the caller knows of its mac2
	want   verdict
	drain  bool // take every waiting initiation instead of offering
	loaded bool // want the Mux under load after the step
}

func TestAdmission(t *testing.T) {
	const (
		a  = "192.0.2.10:1000"
		a2 = "192.0.2.10:2000" // the same source (address) as a
		b  = "192.0.2.11:1000"
		c  = "192.0.2.12:1000"
		v6 = "[2001:db8:1:2::1]:1000"
		v7 = "[2001:db8:1:2::2]:1000" // the same /64
	)
	U, V, I := mac2Unchecked, mac2Valid, mac2Invalid
	cases := []struct {
		name  string
		steps []step
	}{
		{"not under load: admitted without mac2", []step{
			{from: a, mac2: U, want: admit},
			{from: b, mac2: U, want: admit},
			{from: a, mac2: U, want: admit},
		}},
		{"a source over its rate puts the Mux under load", []step{
			{from: a, mac2: U, want: admit},
			{from: a2, mac2: U, want: admit},
			{from: a, mac2: U, want: needMAC2, loaded: true},
			{from: a, mac2: I, want: sendCookie, loaded: true},
			{from: a, mac2: V, want: dropRateLimited, loaded: true},
			{from: b, mac2: U, want: needMAC2, loaded: true},
			{from: b, mac2: I, want: sendCookie, loaded: true},
			{from: b, mac2: V, want: admit, loaded: true},
			{after: 500 * time.Millisecond, from: a, mac2: V, want: admit, loaded: true}, // a's bucket refilled one
			{from: a, mac2: V, want: dropRateLimited, loaded: true},
		}},
		{"under load ends a second after its last cause", []step{
			{from: a, mac2: U, want: admit},
			{from: a, mac2: U, want: admit},
			{from: a, mac2: I, want: sendCookie, loaded: true},
			{after: 999 * time.Millisecond, from: b, mac2: I, want: sendCookie, loaded: true},
			{after: 2 * time.Millisecond, from: b, mac2: U, want: admit},
		}},
		{"a long queue puts the Mux under load", []step{
			{from: a, mac2: U, want: admit},
			{from: b, mac2: U, want: admit},
			{from: c, mac2: U, want: admit},
			{from: v6, mac2: U, want: admit},
			{from: b, mac2: U, want: needMAC2, loaded: true},
			{from: b, mac2: V, want: admit, loaded: true},
			{drain: true, loaded: true},
			{after: 1001 * time.Millisecond, from: c, mac2: U, want: admit},
		}},
		{"cookie replies are limited per source and in all", []step{
			{from: a, mac2: U, want: admit},
			{from: a, mac2: U, want: admit},
			{from: a, mac2: I, want: sendCookie, loaded: true},
			{from: a2, mac2: I, want: sendCookie, loaded: true},
			{from: a, mac2: I, want: sendCookie, loaded: true},
			{from: a, mac2: I, want: dropCookieLimited, loaded: true}, // a's 3
			{from: b, mac2: I, want: sendCookie, loaded: true},
			{from: c, mac2: I, want: sendCookie, loaded: true},
			{from: v6, mac2: I, want: dropCookieLimited, loaded: true}, // 5 in all
			{after: 200 * time.Millisecond, from: v6, mac2: I, want: sendCookie, loaded: true},
		}},
		{"the last cookie replies in all are kept for sources without one lately", []step{
			{from: a, mac2: U, want: admit},
			{from: a, mac2: U, want: admit},
			{from: a, mac2: I, want: sendCookie, loaded: true},
			{from: a2, mac2: I, want: sendCookie, loaded: true},
			{from: b, mac2: I, want: sendCookie, loaded: true},        // b's first: 2 left in all
			{from: a, mac2: I, want: dropCookieLimited, loaded: true}, // a has one of its own, but had one lately
			{from: b, mac2: I, want: dropCookieLimited, loaded: true}, // so had b
			{from: c, mac2: I, want: sendCookie, loaded: true},        // c had none
			{from: v6, mac2: I, want: sendCookie, loaded: true},       // nor had v6: the last one
			{from: v7, mac2: I, want: dropCookieLimited, loaded: true},
			// The reserve refills first: 1 in all after 200 ms, 3 after 600 ms.
			{after: 200 * time.Millisecond, from: a, mac2: I, want: dropCookieLimited, loaded: true},
			{after: 400 * time.Millisecond, from: a, mac2: I, want: sendCookie, loaded: true},
			{from: b, mac2: I, want: dropCookieLimited, loaded: true},
			// A second after their last, b and c may take from the reserve again; a (400 ms)
			// may not.
			{after: 400 * time.Millisecond, from: b, mac2: I, want: sendCookie, loaded: true},
			{from: c, mac2: I, want: sendCookie, loaded: true},
			{from: a, mac2: I, want: dropCookieLimited, loaded: true},
		}},
		{"IPv6 sources share a bucket per /64", []step{
			{from: v6, mac2: U, want: admit},
			{from: v7, mac2: U, want: admit},
			{from: v7, mac2: I, want: sendCookie, loaded: true},
			{from: v6, mac2: V, want: dropRateLimited, loaded: true},
		}},
		{"refused initiations without mac2 keep the Mux under load", []step{
			{from: a, mac2: U, want: admit},
			{from: a, mac2: U, want: admit},
			{from: a, mac2: I, want: sendCookie, loaded: true},
			{after: 900 * time.Millisecond, from: b, mac2: I, want: sendCookie, loaded: true},
			{from: b, mac2: I, want: sendCookie, loaded: true},
			{from: c, mac2: I, want: sendCookie, loaded: true}, // the 4th since a's renewed: renews
			{from: v6, mac2: I, want: sendCookie, loaded: true},
			{after: 900 * time.Millisecond, from: c, mac2: V, want: admit, loaded: true},
			{after: 101 * time.Millisecond, from: c, mac2: U, want: admit},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandshakes(testLimits())
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
			msg := make([]byte, initiationSize)
			var out [initiationSize]byte
			for i, st := range tc.steps {
				now += int64(st.after)
				if st.drain {
					for {
						if _, ok := h.take(&out); !ok {
							break
						}
					}
				} else if got, _ := h.offer(now, msg, wgmuxtest.At(st.from), st.mac2); got != st.want {
					t.Fatalf("step %d (%s, mac2 %d): %v, want %v", i, st.from, st.mac2, got, st.want)
				}
				if got := h.underLoad(now); got != st.loaded {
					t.Fatalf("step %d: under load %v, want %v", i, got, st.loaded)
				}
			}
		})
	}
}

// TestCookieBudgetKeepsRoomForQuietSources: with the node's own limits, a flood of
// initiations without mac2 asks for more cookie replies than the budget in all gives — in its
// first second (100 new sources, each owed its own burst) or for as long as it lasts (400
// sources, more than the budget allows them all) — and clients start meanwhile: the first
// initiation of each gets a cookie reply, so each gets in at its retry (issue 15).
func TestCookieBudgetKeepsRoomForQuietSources(t *testing.T) {
	for _, c := range []struct {
		name            string
		sources, perSec int // the flood: sources, initiations a second from each
		dur             time.Duration
	}{
		{"the first second of a flood from 100 sources", 100, 400, time.Second},
		{"a flood from 400 sources over the budget in all", 400, 200, 3 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHandshakes(defaultHSLimits())
			msg := make([]byte, initiationSize)
			// offer puts an initiation without mac2 through admission as the Mux does.
			offer := func(now int64, ep conn.Endpoint) verdict {
				if v, shed := h.shed(now, ep, true); shed {
					return v
				}
				mac2 := mac2Unchecked
				if h.underLoad(now) {
					mac2 = mac2Invalid
				}
				v, _ := h.offer(now, msg, ep, mac2)
				if v == needMAC2 {
					v, _ = h.offer(now, msg, ep, mac2Invalid)
				}
				return v
			}
			flood := make([]conn.Endpoint, c.sources)
			for i := range flood {
				flood[i] = wgmuxtest.At(fmt.Sprintf("198.51.%d.%d:9", 100+i/200, i%200+1))
			}
			const tick = time.Millisecond
			perTick := c.sources * c.perSec / int(time.Second/tick)
			start := int64(time.Hour)
			clients, cookies, next := 0, 0, 0
			var first string // the first client refused
			for now := start; now < start+int64(c.dur); now += int64(tick) {
				for range perTick {
					offer(now, flood[next%len(flood)])
					next++
				}
				// From 20 ms on, a new client every 20 ms, its first initiation right
				// after the flood's of that millisecond.
				if elapsed := time.Duration(now - start); elapsed >= 20*time.Millisecond && elapsed%(20*time.Millisecond) == 0 {
					if !h.underLoad(now) {
						t.Fatalf("the flood has not put admission under load after %v", elapsed)
					}
					clients++
					if v := offer(now, wgmuxtest.At(fmt.Sprintf("192.0.2.%d:51820", clients))); v == sendCookie {
						cookies++
					} else if first == "" {
						first = fmt.Sprintf("client %d, %v into the flood: %v", clients, elapsed, v)
					}
				}
			}
			if cookies != clients {
				t.Errorf("%d of %d clients got a cookie reply for their first initiation, want all (the first without: %s)", cookies, clients, first)
			}
		})
	}
}

// offerN offers n initiations from ep (not under load, so without mac2), each marked with
// its source's tag byte and a sequence number, and fails unless each is admitted.
func offerN(t *testing.T, h *handshakes, now int64, ep string, tag byte, n int) {
	t.Helper()
	for i := range n {
		msg := make([]byte, initiationSize)
		msg[0], msg[1] = tag, byte(i)
		if v, _ := h.offer(now, msg, wgmuxtest.At(ep), mac2Valid); v != admit {
			t.Fatalf("offer %c%d: %v", tag, i, v)
		}
	}
}

// takeAll returns the tags and sequence numbers of the waiting initiations in the order
// the workers get them: "a0 b0 a1".
func takeAll(h *handshakes) string {
	var got []string
	var msg [initiationSize]byte
	for {
		if _, ok := h.take(&msg); !ok {
			break
		}
		got = append(got, fmt.Sprintf("%c%d", msg[0], msg[1]))
	}
	return fmt.Sprint(got)
}

func TestQueueRoundRobin(t *testing.T) {
	lim := testLimits()
	lim.sourceBurst, lim.underLoadQueued = 8, 100 // never under load here
	h := newHandshakes(lim)
	offerN(t, h, 0, "192.0.2.1:1", 'a', 4)
	offerN(t, h, 0, "192.0.2.2:1", 'b', 1)
	offerN(t, h, 0, "192.0.2.3:1", 'c', 2)
	if got, want := takeAll(h), "[a0 b0 c0 a1 c1 a2 a3]"; got != want {
		t.Errorf("workers took %s, want %s", got, want)
	}
	// A source that comes back after its queue emptied goes to the end of the round.
	offerN(t, h, 0, "192.0.2.3:1", 'c', 1)
	offerN(t, h, 0, "192.0.2.1:1", 'a', 1)
	if got, want := takeAll(h), "[c0 a0]"; got != want {
		t.Errorf("workers took %s, want %s", got, want)
	}
}

func TestQueueFullPushesOutTheLongest(t *testing.T) {
	lim := testLimits()
	lim.sourceBurst, lim.underLoadQueued = 8, 100
	h := newHandshakes(lim) // 8 slots
	offerN(t, h, 0, "192.0.2.1:1", 'a', 6)
	offerN(t, h, 0, "192.0.2.2:1", 'b', 2)
	// Full. c has nothing waiting: a (the longest) loses its oldest.
	msg := make([]byte, initiationSize)
	msg[0] = 'c'
	if v, out := h.offer(0, msg, wgmuxtest.At("192.0.2.3:1"), mac2Valid); v != admit || !out {
		t.Fatalf("c into a full queue: %v, pushed out %v; want admitted, pushing one out", v, out)
	}
	// b (2) against a (5): a loses again; then b (3) against a (4): taking from a would
	// leave it fewer than b, so b's newest is the one that goes.
	msg[0] = 'b'
	for i, want := range []verdict{admit, dropQueueFull} {
		msg[1] = byte(2 + i)
		if v, _ := h.offer(0, msg, wgmuxtest.At("192.0.2.2:1"), mac2Valid); v != want {
			t.Fatalf("b%d: %v, want %v", 2+i, v, want)
		}
	}
	if got, want := takeAll(h), "[a2 b0 c0 a3 b1 a4 b2 a5]"; got != want {
		t.Errorf("workers took %s, want %s", got, want)
	}
}

func TestSourceTableBounded(t *testing.T) {
	lim := testLimits()
	lim.underLoadQueued = 100
	h := newHandshakes(lim)
	msg := make([]byte, initiationSize)
	// Sources 1-3 keep an initiation waiting (nobody takes any); 1,000 others come, the
	// first five also get one in, the rest find the queue full.
	for i := 1; i <= 3; i++ {
		h.offer(int64(i), msg, wgmuxtest.At(fmt.Sprintf("198.51.100.%d:1", i)), mac2Valid)
	}
	for i := range 1000 {
		ep := wgmuxtest.At(fmt.Sprintf("10.0.%d.%d:1", i/250, i%250))
		h.offer(int64(10+i), msg, ep, mac2Valid)
		if n := h.state().sources; n > lim.maxSources {
			t.Fatalf("after %d sources the table holds %d, more than %d", i+4, n, lim.maxSources)
		}
	}
	h.mu.Lock()
	for i := 1; i <= 3; i++ {
		if h.sources[netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})] == nil {
			t.Errorf("source %d with an initiation waiting was forgotten", i)
		}
	}
	h.mu.Unlock()
	if st := h.state(); st.evictions == 0 || st.queued != lim.queue {
		t.Errorf("no source evicted: %+v", st)
	}
}

func TestSweepForgetsIdleSources(t *testing.T) {
	lim := testLimits()
	h := newHandshakes(lim)
	msg := make([]byte, initiationSize)
	sec := int64(time.Second)
	h.offer(1, msg, wgmuxtest.At("192.0.2.1:1"), mac2Valid)
	h.offer(1, msg, wgmuxtest.At("192.0.2.2:1"), mac2Valid)
	var out [initiationSize]byte
	h.take(&out) // 192.0.2.1 has none waiting, 192.0.2.2 one
	h.offer(9*sec, msg, wgmuxtest.At("192.0.2.3:1"), mac2Valid)
	if n := h.state().sources; n != 3 {
		t.Fatalf("%d sources before the sweep, want 3", n)
	}
	h.offer(10*sec+1, msg, wgmuxtest.At("192.0.2.3:1"), mac2Valid) // sweeps
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.sources[netip.MustParseAddr("192.0.2.1")]; ok {
		t.Error("an idle source was kept")
	}
	if _, ok := h.sources[netip.MustParseAddr("192.0.2.2")]; !ok {
		t.Error("an idle source with an initiation waiting was forgotten")
	}
	if _, ok := h.sources[netip.MustParseAddr("192.0.2.3")]; !ok {
		t.Error("a recent source was forgotten")
	}
}

// TestAdmitRefusalDoesNotAllocate: under a flood, an initiation refused for want of mac2
// (the cookie budget spent) and one admitted cost no allocation.
func TestAdmitRefusalDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	node := testKey(t)
	m, _ := newTestMux(t, wgmuxtest.NewSocket(1), node, nil)
	m.hs = newHandshakes(testLimits())
	msg := junkInitiation(node.PublicKey(), 1)
	ep := wgmuxtest.At("192.0.2.9:1000")
	var c counts
	var now int64 = 1
	var out [initiationSize]byte
	admitted := func() {
		now += int64(time.Second) // the bucket refills; under load ends
		m.admit(now, msg, ep, &c)
		m.hs.take(&out)
	}
	admitted()
	if n := testing.AllocsPerRun(100, admitted); n != 0 {
		t.Errorf("%v allocations per admitted initiation, want 0", n)
	}
	for range 100 { // under load, the cookie budget spent
		m.admit(now, msg, ep, &c)
	}
	if c[cookieLimited] == 0 {
		t.Fatalf("no initiation refused without a cookie reply: %v", c)
	}
	if n := testing.AllocsPerRun(100, func() { m.admit(now, msg, ep, &c) }); n != 0 {
		t.Errorf("%v allocations per refused initiation, want 0", n)
	}
}

// --- the Mux ---

// TestUnderLoadWantsMAC2: under load, an initiation without mac2 gets a cookie reply
// instead of an X25519; wireguard-go's own initiator code (CookieGenerator) turns that reply
// into a mac2 the Mux then accepts, from that address only.
func TestUnderLoadWantsMAC2(t *testing.T) {
	node := testKey(t)
	nodePub := node.PublicKey()
	inner := wgmuxtest.NewSocket(8)
	m, clk := newTestMux(t, inner, node, nil)
	ep := wgmuxtest.At("192.0.2.7:40000")

	var gen device.CookieGenerator
	gen.Init(device.NoisePublicKey(nodePub))
	msg := junkInitiation(nodePub, 0x01020304)
	gen.AddMacs(msg)

	var c counts
	now := func() int64 { return clk.Now().UnixNano() }
	m.admit(now(), msg, ep, &c)
	if c[admitted] != 1 {
		t.Fatalf("not under load: an initiation without mac2 was not admitted: %v", c)
	}
	m.hs.underLoadUntil.Store(now() + int64(time.Second))
	m.admit(now(), msg, ep, &c)
	if c[cookiesSent] != 1 || c[admitted] != 1 {
		t.Fatalf("under load: an initiation without mac2 was not answered with a cookie: %v", c)
	}
	var raw []byte
	select {
	case raw = <-inner.Sent():
	default:
		t.Fatal("no cookie reply sent")
	}
	if len(raw) != device.MessageCookieReplySize {
		t.Fatalf("cookie reply of %d bytes, want %d", len(raw), device.MessageCookieReplySize)
	}
	var reply device.MessageCookieReply
	reply.Type = binary.LittleEndian.Uint32(raw[0:])
	reply.Receiver = binary.LittleEndian.Uint32(raw[4:])
	n := 8 + copy(reply.Nonce[:], raw[8:])
	copy(reply.Cookie[:], raw[n:])
	if reply.Type != device.MessageCookieReplyType || reply.Receiver != 0x01020304 {
		t.Fatalf("cookie reply type %d receiver %#x, want %d %#x", reply.Type, reply.Receiver, device.MessageCookieReplyType, 0x01020304)
	}
	if !gen.ConsumeReply(&reply) {
		t.Fatal("wireguard-go's initiator rejects the cookie reply")
	}

	// The client's retry carries mac2 for its address: admitted, still under load.
	gen.AddMacs(msg)
	if got := m.checkMAC2(msg, ep); got != mac2Valid {
		t.Fatalf("mac2 of the retry: %v, want valid", got)
	}
	m.admit(now(), msg, ep, &c)
	if c[admitted] != 2 {
		t.Fatalf("under load: an initiation with a valid mac2 was not admitted: %v", c)
	}
	// The same mac2 from another address is not valid.
	if got := m.checkMAC2(msg, wgmuxtest.At("192.0.2.8:40000")); got != mac2Invalid {
		t.Fatal("a mac2 made for another source address was accepted")
	}
	m.admit(now(), msg, wgmuxtest.At("192.0.2.8:40000"), &c)
	if c[cookiesSent] != 2 || c[admitted] != 2 {
		t.Fatalf("under load: a mac2 of another address was not refused: %v", c)
	}
}

// TestFloodLetsClientInOnItsRetry: a flood of initiations with a valid mac1 from 100
// sources, and one from a source that answers cookies, while a real wireguard-go initiation
// arrives: its first try gets a cookie reply, and its retry with mac2 reaches its device.
func TestFloodLetsClientInOnItsRetry(t *testing.T) {
	node, client := testKey(t), testKey(t)
	nodePub := node.PublicKey()
	route := func(k store.Key) (int64, bool) { return 1, k == client.PublicKey() }
	inner := wgmuxtest.NewSocket(conn.IdealBatchSize)
	m, _ := newTestMux(t, inner, node, route)
	m.now, m.epoch = time.Now, time.Now() // buckets refill as they do in life
	b := m.Bind(1)
	fns, _ := mustOpen(t, b, 0)
	got := collect(fns, conn.IdealBatchSize)
	defer b.Close()

	// The flood, from 100 sources, and from one that sends the same initiation over and over,
	// with mac2 once the Mux sent it a cookie.
	const floodSender = 0xf100d
	floodEP := wgmuxtest.At("198.51.100.200:9")
	answering := junkInitiation(nodePub, floodSender)
	var floodGen device.CookieGenerator
	floodGen.Init(device.NoisePublicKey(nodePub))
	floodGen.AddMacs(answering) // records its mac1, which the cookie reply is sealed to
	var floodCookie atomic.Bool
	var flood sync.WaitGroup
	stop := make(chan struct{})
	flood.Add(1)
	go func() {
		defer flood.Done()
		withMAC2 := false
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			inner.DeliverFrom(junkInitiation(nodePub, uint32(i)), wgmuxtest.At(fmt.Sprintf("198.51.100.%d:9", i%100)))
			if !withMAC2 && floodCookie.Load() {
				floodGen.AddMacs(answering)
				withMAC2 = true
			}
			inner.DeliverFrom(bytes.Clone(answering), floodEP)
		}
	}()

	// Cookie replies: the answering source's go to it, the client's to the test.
	msg := captureInitiation(t, client, nodePub)
	clientSender := binary.LittleEndian.Uint32(msg[initSenderOff:])
	clientCookies := make(chan device.MessageCookieReply, 1)
	flood.Add(1)
	go func() {
		defer flood.Done()
		for {
			var raw []byte
			select {
			case <-stop:
				return
			case raw = <-inner.Sent():
			}
			if len(raw) != cookieReplySize {
				continue
			}
			var reply device.MessageCookieReply
			reply.Type = binary.LittleEndian.Uint32(raw[0:])
			reply.Receiver = binary.LittleEndian.Uint32(raw[4:])
			n := 8 + copy(reply.Nonce[:], raw[8:])
			copy(reply.Cookie[:], raw[n:])
			switch reply.Receiver {
			case floodSender:
				if !floodCookie.Load() && floodGen.ConsumeReply(&reply) {
					floodCookie.Store(true)
				}
			case clientSender:
				select {
				case clientCookies <- reply:
				default:
				}
			}
		}
	}()
	defer func() { close(stop); flood.Wait() }()
	waitStats(t, m, "the flood to put the Mux under load", func(s Stats) bool { return s.UnderLoad && s.CookiesSent > 0 })
	waitStats(t, m, "the flood's answering source to be rate-limited", func(s Stats) bool { return s.RateLimited > 0 })

	// The client's first initiation, as wireguard-go sends it: mac2 zero, no cookie yet. The
	// fake bind drops what it sends when the test does not keep up with the flood's cookie
	// replies, so the client sends it again until its cookie comes, as it would after a loss.
	clientEP := wgmuxtest.At("192.0.2.50:51820")
	var clientGen device.CookieGenerator
	clientGen.Init(device.NoisePublicKey(nodePub))
	clientGen.AddMacs(msg)
	for timeout := time.After(10 * time.Second); ; {
		inner.DeliverFrom(bytes.Clone(msg), clientEP)
		select {
		case reply := <-clientCookies:
			if !clientGen.ConsumeReply(&reply) {
				t.Fatal("the client rejects its cookie reply")
			}
		case <-time.After(200 * time.Millisecond):
			continue
		case <-timeout:
			t.Fatalf("the client's initiation got no cookie reply: %+v", m.Stats())
		}
		break
	}
	before := m.Stats().Routed

	// The retry, with mac2.
	clientGen.AddMacs(msg)
	inner.DeliverFrom(msg, clientEP)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case d := <-got:
			if bytes.Equal(d, msg) {
				st := m.Stats()
				t.Logf("stats: %+v", st)
				if st.Routed != before+1 {
					t.Errorf("routed %d initiations, want the client's retry only", st.Routed-before)
				}
				return
			}
		case <-timeout:
			t.Fatalf("the client's retry with mac2 did not reach its device: %+v", m.Stats())
		}
	}
}

// TestWorkersDoNotWaitForOneRoute: a route call that waits (one tenant's device busy in a
// long IpcSet) holds one handshake worker; the others route the other tenants' initiations.
func TestWorkersDoNotWaitForOneRoute(t *testing.T) {
	node, slow, fast := testKey(t), testKey(t), testKey(t)
	entered, release := make(chan struct{}), make(chan struct{})
	route := func(k store.Key) (int64, bool) {
		if k == slow.PublicKey() {
			close(entered)
			<-release
			return 1, true
		}
		return 2, k == fast.PublicKey()
	}
	inner := wgmuxtest.NewSocket(4)
	m, _ := newTestMux(t, inner, node, route)
	if m.workers < 2 {
		t.Fatalf("%d handshake workers, want at least 2", m.workers)
	}
	b1, b2 := m.Bind(1), m.Bind(2)
	fns1, _ := mustOpen(t, b1, 0)
	fns2, _ := mustOpen(t, b2, 0)
	collect(fns1, 4)
	got2 := collect(fns2, 4)
	defer b1.Close()
	defer b2.Close()
	defer func() { // before the Closes, which do not wait for a worker inside route
		close(release)
		waitStats(t, m, "the waiting route to return", func(s Stats) bool { return s.Routed == 2 })
	}()

	inner.DeliverFrom(captureInitiation(t, slow, node.PublicKey()), wgmuxtest.At("192.0.2.20:1"))
	<-entered
	msg := captureInitiation(t, fast, node.PublicKey())
	inner.DeliverFrom(msg, wgmuxtest.At("192.0.2.21:1"))
	expect(t, got2, msg, "an initiation of device 2 while route waits for device 1")
}

func TestShed(t *testing.T) {
	const a, b = "192.0.2.10:1000", "192.0.2.11:1000"
	cases := []struct {
		name     string
		loaded   bool
		prepare  func(h *handshakes, now int64) // run before the shed
		from     string
		mac2Zero bool
		want     verdict
		shed     bool
	}{
		{"not under load: never before the MACs", false, nil, a, false, 0, false},
		{"an unknown source: its mac1 first", true, nil, b, false, 0, false},
		{"a source within its rate: its MACs decide", true, nil, a, false, 0, false},
		{"a source over its rate with a mac2", true, func(h *handshakes, now int64) {
			h.mu.Lock()
			h.sources[netip.MustParseAddr("192.0.2.10")].hs.tokens = 0
			h.mu.Unlock()
		}, a, false, dropRateLimited, true},
		{"no mac2, a cookie reply may go: its mac1 first", true, nil, a, true, 0, false},
		{"no mac2, its source's cookie replies spent", true, func(h *handshakes, now int64) {
			h.mu.Lock()
			h.sources[netip.MustParseAddr("192.0.2.10")].cookie.tokens = 0
			h.mu.Unlock()
		}, a, true, dropCookieLimited, true},
		{"no mac2, all cookie replies spent", true, func(h *handshakes, now int64) {
			h.mu.Lock()
			h.cookies.tokens = 0
			h.mu.Unlock()
		}, a, true, dropCookieLimited, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHandshakes(testLimits())
			now := int64(time.Hour)
			h.offer(now, make([]byte, initiationSize), wgmuxtest.At(a), mac2Valid) // a is known
			if c.loaded {
				h.underLoadUntil.Store(now + int64(time.Second))
			}
			if c.prepare != nil {
				c.prepare(h, now)
				h.mu.Lock()
				for _, s := range h.sources { // no refill since
					s.hs.last, s.cookie.last = now, now
				}
				h.cookies.last = now
				h.mu.Unlock()
			}
			v, shed := h.shed(now, wgmuxtest.At(c.from), c.mac2Zero)
			if shed != c.shed || (shed && v != c.want) {
				t.Fatalf("shed %v %v, want %v %v", v, shed, c.want, c.shed)
			}
		})
	}
}

// TestShedSparesMAC1: under load, a flood source over its rate is dropped as rate-limited
// before its mac1 is checked, so even a wrong mac1 counts there, not in BadMAC1.
func TestShedSparesMAC1(t *testing.T) {
	node := testKey(t)
	h := newSyncHarness(t, node, nil, 1)
	h.m.hs = newHandshakes(testLimits())
	ep := wgmuxtest.At("192.0.2.10:1000")
	good := junkInitiation(node.PublicKey(), 1)
	good[initMAC2Off] = 1 // a mac2, not a valid one
	bad := bytes.Clone(good)
	bad[initMAC1Off] ^= 1
	run := func(p []byte) { // one datagram from ep
		h.sizes[0] = copy(h.bufs[0], p)
		h.eps[0] = ep
		h.rc.sort(h.bufs, h.sizes, h.eps, 1)
		h.m.flush(&h.rc.counts)
	}
	run(good) // admitted
	run(good) // admitted: the source's burst is 2
	run(good) // over its rate: under load; a mac2 that is not valid gets a cookie
	if st := h.m.Stats(); st.Admitted != 2 || st.CookiesSent != 1 || !st.UnderLoad {
		t.Fatalf("stats %+v", st)
	}
	run(bad)
	if st := h.m.Stats(); st.RateLimited != 1 || st.BadMAC1 != 0 {
		t.Errorf("a known source over its rate: rate limited %d, bad mac1 %d; want 1, 0", st.RateLimited, st.BadMAC1)
	}
	ep = wgmuxtest.At("192.0.2.99:1")
	run(bad)
	if st := h.m.Stats(); st.BadMAC1 != 1 {
		t.Errorf("an unknown source's bad mac1: bad mac1 %d, want 1", st.BadMAC1)
	}
}
