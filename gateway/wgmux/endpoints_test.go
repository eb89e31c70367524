package wgmux

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/popgate/popgate/gateway/internal/udpbind"
	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
	"github.com/popgate/popgate/store"
)

// --- the endpoint cache with real wireguard-go devices ---

// cacheRig is a Mux on an in-memory socket, on the real clock, with two tenants' wireguard-go
// devices (1 and 2) that share the node's key; clients handshake from addresses of their
// choosing with Handshake, the initiator that gateway/checks uses.
type cacheRig struct {
	t     *testing.T
	m     *Mux
	sock  *wgmuxtest.Socket
	node  store.Key
	owner map[store.Key]int64
}

func newCacheRig(t *testing.T, clients map[store.Key]int64) *cacheRig {
	r := &cacheRig{t: t, sock: wgmuxtest.NewSocket(8), node: testKey(t), owner: map[store.Key]int64{}}
	for k, dev := range clients {
		r.owner[k.PublicKey()] = dev
	}
	r.m = mustNew(t, Config{Socket: r.sock, PrivateKey: r.node, Route: func(k store.Key) (int64, bool) {
		id, ok := r.owner[k]
		return id, ok
	}}, nil)
	t.Cleanup(func() { // after the devices' Close
		deadline := time.Now().Add(5 * time.Second)
		for r.m.goroutines.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := r.m.goroutines.Load(); n != 0 {
			t.Errorf("%d goroutines of the Mux still running", n)
		}
	})
	for _, dev := range []int64{1, 2} {
		uapi := fmt.Sprintf("private_key=%x\n", r.node[:])
		i := 0
		for k, d := range clients {
			if d == dev {
				pub := k.PublicKey()
				uapi += fmt.Sprintf("public_key=%x\nallowed_ip=10.0.%d.%d/32\n", pub[:], dev, i+1)
				i++
			}
		}
		startDevice(t, newTestTUN(func([]byte) {}), r.m.Bind(dev), uapi)
	}
	return r
}

// handshake runs one handshake of client from "addr:port" and reports whether a response
// that opens for the client came within 2 s.
func (r *cacheRig) handshake(client store.Key, from string) bool {
	r.t.Helper()
	time.Sleep(25 * time.Millisecond) // wireguard-go takes one initiation a peer per 20 ms
	h, err := NewHandshake(client, r.node.PublicKey(), time.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	r.sock.DeliverFrom(bytes.Clone(h.Initiation()), wgmuxtest.At(from))
	timeout := time.After(2 * time.Second)
	for {
		select {
		case b := <-r.sock.Sent():
			if h.Response(b) == nil {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// waitFor waits until the Mux's counters satisfy cond.
func (r *cacheRig) waitFor(what string, cond func(Stats) bool) Stats {
	r.t.Helper()
	return waitStats(r.t, r.m, what, cond)
}

// TestEndpointCacheWithWireGuardGo: a client's second handshake from the same address and
// port is routed without decrypting it and answered; a client that roams to a new port is
// decrypted and answered; another tenant's client that arrives from the first client's
// address and port (a NAT that gave the port away) reaches its own device after the wait,
// and then is a hit itself; junk from a client's address costs one fallback and stops the
// hits there until a device answers again.
func TestEndpointCacheWithWireGuardGo(t *testing.T) {
	alice, bob := testKey(t), testKey(t)
	r := newCacheRig(t, map[store.Key]int64{alice: 1, bob: 2})

	if !r.handshake(alice, "192.0.2.10:5000") {
		t.Fatal("alice's first handshake got no answer")
	}
	st := r.waitFor("alice's first handshake", func(s Stats) bool { return s.Routed == 1 })
	if st.EndpointHits != 0 {
		t.Errorf("the first initiation from an address was a hit: %+v", st)
	}
	if !r.handshake(alice, "192.0.2.10:5000") {
		t.Fatal("alice's second handshake from the same address got no answer")
	}
	st = r.waitFor("alice's second handshake", func(s Stats) bool { return s.EndpointConfirmed == 1 })
	if st.EndpointHits != 1 || st.Routed != 2 || st.EndpointFallbacks != 0 {
		t.Errorf("alice's second handshake: %+v", st)
	}

	// Roaming: a new port is a new address, decrypted.
	if !r.handshake(alice, "192.0.2.10:5001") {
		t.Fatal("alice's handshake from a new port got no answer")
	}
	st = r.waitFor("alice roamed", func(s Stats) bool { return s.Routed == 3 })
	if st.EndpointHits != 1 {
		t.Errorf("alice's initiation from a new port was a hit: %+v", st)
	}

	// Bob (the other tenant) from alice's old address: a hit on alice's device, which does
	// not answer; the fallback routes him to his own.
	if !r.handshake(bob, "192.0.2.10:5000") {
		t.Fatal("bob's handshake from alice's old address got no answer")
	}
	st = r.waitFor("bob rerouted", func(s Stats) bool { return s.EndpointRerouted == 1 })
	if st.EndpointHits != 2 || st.EndpointFallbacks != 1 || st.EndpointConfirmed != 1 {
		t.Errorf("bob from alice's old address: %+v", st)
	}
	// After a fallback the next initiation from there is decrypted (see maxSkipShift), the
	// one after that is a hit again.
	for range 2 {
		if !r.handshake(bob, "192.0.2.10:5000") {
			t.Fatal("bob's next handshakes got no answer")
		}
	}
	st = r.waitFor("bob's next handshakes", func(s Stats) bool { return s.EndpointConfirmed == 2 })
	if st.EndpointHits != 3 || st.EndpointFallbacks != 1 || st.Routed != 6 {
		t.Errorf("bob's next handshakes: %+v", st)
	}

	// Junk with a valid mac1 from alice's address: one hit that falls back and is dropped;
	// the next junk is decrypted at once.
	r.sock.DeliverFrom(junkInitiation(r.node.PublicKey(), 77), wgmuxtest.At("192.0.2.10:5001"))
	st = r.waitFor("junk fell back", func(s Stats) bool { return s.EndpointFallbacks == 2 })
	if st.EndpointHits != 4 || st.EndpointRerouted != 1 || st.BadInitiation != 0 {
		t.Errorf("junk from alice's address: %+v", st)
	}
	r.sock.DeliverFrom(junkInitiation(r.node.PublicKey(), 78), wgmuxtest.At("192.0.2.10:5001"))
	st = r.waitFor("junk decrypted", func(s Stats) bool { return s.BadInitiation == 1 })
	if st.EndpointHits != 4 {
		t.Errorf("junk after a fallback was a hit: %+v", st)
	}
	// Alice from there: decrypted and answered, decrypted once more, and a hit again.
	for range 3 {
		if !r.handshake(alice, "192.0.2.10:5001") {
			t.Fatal("alice got no answer after the junk")
		}
	}
	st = r.waitFor("alice after the junk", func(s Stats) bool { return s.EndpointConfirmed == 3 })
	if st.EndpointHits != 5 || st.EndpointFallbacks != 2 {
		t.Errorf("alice after the junk: %+v", st)
	}
}

// --- the cache's decisions, on the Mux's clock ---

// cacheHarness is a syncHarness whose devices answer when the test says so.
type cacheHarness struct {
	*syncHarness
	node  store.Key
	clk   *testClock
	owner map[store.Key]int64
}

func newCacheHarness(t *testing.T, clients map[store.Key]int64) *cacheHarness {
	h := &cacheHarness{node: testKey(t), owner: map[store.Key]int64{}}
	for k, dev := range clients {
		h.owner[k.PublicKey()] = dev
	}
	h.syncHarness = newSyncHarness(t, h.node, func(k store.Key) (int64, bool) {
		id, ok := h.owner[k]
		return id, ok
	}, 1, 2)
	h.clk = &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h.m.now, h.m.epoch = h.clk.Now, h.clk.Now()
	t.Cleanup(func() { h.m.eps.reset() })
	return h
}

// initiate sorts msg from "addr:port" as device 1's read would (which keeps a hit of its
// own), routes what admission queued, and returns the devices that got it.
func (h *cacheHarness) initiate(msg []byte, from string) (got []int64) {
	h.sizes[0] = copy(h.bufs[0], msg)
	h.eps[0] = wgmuxtest.At(from)
	if end, _ := h.rc.sort(h.bufs, h.sizes, h.eps, 1); end > 0 && h.sizes[0] > 0 {
		got = append(got, h.s[0].id)
	}
	var (
		c   counts
		buf [initiationSize]byte
	)
	for {
		ep, ok := h.m.hs.take(&buf)
		if !ok {
			break
		}
		h.m.routeInitiation(h.g, &buf, ep, &c)
	}
	h.m.flush(&c)
	return append(got, h.drain()...)
}

// drain empties the devices' queues and returns the device of each datagram that was there.
func (h *cacheHarness) drain() (got []int64) {
	for _, s := range h.s {
		for len(s.queue) > 0 {
			b := <-s.queue
			for range b.n {
				got = append(got, s.id)
			}
			s.queued.Add(-int64(b.n))
			h.m.releaseBatch(b)
		}
	}
	return got
}

// answer makes device dev answer the initiation msg at "addr:port".
func (h *cacheHarness) answer(dev int64, msg []byte, to string) {
	h.m.answered(h.session(dev), responseMsg(0xa0a0, binary.LittleEndian.Uint32(msg[initSenderOff:])), wgmuxtest.At(to))
}

func (h *cacheHarness) session(id int64) *session {
	for _, s := range h.s {
		if s.id == id {
			return s
		}
	}
	panic("no such device")
}

// fallBackDue runs the fallbacks due now and returns the devices they went to.
func (h *cacheHarness) fallBackDue() (got []int64) {
	var (
		c counts
		x hit
	)
	for h.m.eps.expired(h.m.now().UnixNano(), &x) {
		h.m.fallBack(h.g, &x, &c)
	}
	h.m.flush(&c)
	return h.drain()
}

// initiation returns a fresh initiation of client to the harness's node, with sender index
// sender when it is not 0 (mac1 made again: the index is not encrypted).
func (h *cacheHarness) initiation(t *testing.T, client store.Key, sender uint32) []byte {
	t.Helper()
	hs, err := NewHandshake(client, h.node.PublicKey(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Clone(hs.Initiation())
	if sender != 0 {
		binary.LittleEndian.PutUint32(msg[initSenderOff:], sender)
		setMAC1(h.node.PublicKey(), msg)
	}
	return msg
}

func sameDevices(got []int64, want ...int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestEndpointCacheHit: an initiation from where a device answered last is a hit, routed
// to it without asking Route, and confirmed by its answer; nothing falls back after that.
func TestEndpointCacheHit(t *testing.T) {
	alice := testKey(t)
	h := newCacheHarness(t, map[store.Key]int64{alice: 1})
	asked := 0
	h.m.route = func(k store.Key) (int64, bool) { asked++; return h.owner[k], true }
	const at = "192.0.2.10:5000"

	first := h.initiation(t, alice, 0)
	if got := h.initiate(first, at); !sameDevices(got, 1) || asked != 1 {
		t.Fatalf("first initiation went to %v, route asked %d times", got, asked)
	}
	h.answer(1, first, at)
	second := h.initiation(t, alice, 0)
	if got := h.initiate(second, at); !sameDevices(got, 1) || asked != 1 {
		t.Fatalf("second initiation went to %v, route asked %d times (want a hit, not asked)", got, asked)
	}
	if st := h.m.Stats(); st.EndpointHits != 1 || st.EndpointsWaiting != 1 || st.Routed != 2 {
		t.Errorf("after the hit: %+v", st)
	}
	h.answer(1, second, at)
	h.clk.Advance(maxAnswerWait)
	if got := h.fallBackDue(); len(got) != 0 {
		t.Errorf("a confirmed hit fell back to %v", got)
	}
	if st := h.m.Stats(); st.EndpointConfirmed != 1 || st.EndpointFallbacks != 0 || st.EndpointsWaiting != 0 {
		t.Errorf("after the answer: %+v", st)
	}
}

// TestEndpointCacheMiss: no hit from an address no device answered at, nor once the answer
// is older than the TTL, nor under load, nor while another hit waits there, nor for a device
// that is not open; each is decrypted and routed by its key.
func TestEndpointCacheMiss(t *testing.T) {
	alice, bob := testKey(t), testKey(t)
	h := newCacheHarness(t, map[store.Key]int64{alice: 1, bob: 2})
	const at = "192.0.2.10:5000"
	noHit := func(what string, msg []byte, from string, want ...int64) {
		t.Helper()
		before := h.m.Stats()
		if got := h.initiate(msg, from); !sameDevices(got, want...) {
			t.Errorf("%s: went to %v, want %v", what, got, want)
		}
		if st := h.m.Stats(); st.EndpointHits != before.EndpointHits {
			t.Errorf("%s: a hit", what)
		}
	}
	msg := h.initiation(t, alice, 0)
	noHit("unknown address", msg, at, 1)
	h.answer(1, msg, at)
	noHit("another port", h.initiation(t, alice, 0), "192.0.2.10:5001", 1)

	h.clk.Advance(endpointTTL + time.Second)
	noHit("answered longer ago than the TTL", h.initiation(t, alice, 0), at, 1)

	h.answer(1, msg, at)
	h.m.hs.mu.Lock()
	h.m.hs.renewLocked(h.clk.Now().Add(time.Second).UnixNano())
	h.m.hs.mu.Unlock()
	// Under load, admission wants a mac2 (a cookie reply), whatever the cache says.
	if got := h.initiate(h.initiation(t, alice, 0), at); len(got) != 0 {
		t.Errorf("under load: went to %v", got)
	}
	if st := h.m.Stats(); st.EndpointHits != 0 || st.CookiesSent != 1 {
		t.Errorf("under load: %+v", st)
	}
	h.clk.Advance(2 * time.Second) // not under load any more

	if got := h.initiate(h.initiation(t, alice, 0), at); !sameDevices(got, 1) || h.m.Stats().EndpointHits != 1 {
		t.Fatalf("no hit once the load is over: %v", got)
	}
	noHit("a hit waits at the address", h.initiation(t, alice, 0), at, 1)

	// Device 2 answers at an address, then closes.
	const bobAt = "198.51.100.3:9"
	h.answer(2, h.initiation(t, bob, 0), bobAt)
	h.m.mu.Lock()
	delete(h.m.sessions, 2)
	h.m.publishDevicesLocked()
	h.m.mu.Unlock()
	noHit("the device is closed", h.initiation(t, bob, 0), bobAt)
	if st := h.m.Stats(); st.RouteNoDevice != 1 {
		t.Errorf("bob's device closed: %+v", st)
	}
}

// TestEndpointCacheWrongDevice: an initiation from an address another tenant's device
// answered at goes there first, and to its own device when that one does not answer in
// time; the address is not used for hits again until a device answers there.
func TestEndpointCacheWrongDevice(t *testing.T) {
	alice, bob := testKey(t), testKey(t)
	h := newCacheHarness(t, map[store.Key]int64{alice: 1, bob: 2})
	const at = "192.0.2.10:5000"
	h.answer(1, h.initiation(t, alice, 0), at)

	msg := h.initiation(t, bob, 0)
	if got := h.initiate(msg, at); !sameDevices(got, 1) {
		t.Fatalf("bob's initiation from alice's address went to %v, want a hit on 1", got)
	}
	h.clk.Advance(minAnswerWait / 2)
	if got := h.fallBackDue(); len(got) != 0 {
		t.Fatalf("fell back to %v before the wait", got)
	}
	h.clk.Advance(maxAnswerWait)
	if got := h.fallBackDue(); !sameDevices(got, 2) {
		t.Fatalf("fell back to %v, want bob's device 2", got)
	}
	st := h.m.Stats()
	if st.EndpointFallbacks != 1 || st.EndpointRerouted != 1 || st.Routed != 1 || st.Delivered != 1 {
		t.Errorf("after the fallback: %+v", st)
	}
	// Until a device answers there, the address gives no hits; then the next initiation
	// is decrypted still (one fallback in a row: one), and the one after is a hit.
	again := h.initiation(t, bob, 0)
	if got := h.initiate(again, at); !sameDevices(got, 2) || h.m.Stats().EndpointHits != 1 {
		t.Fatalf("bob's next initiation went to %v, hits %d", got, h.m.Stats().EndpointHits)
	}
	h.answer(2, again, at)
	for i, wantHits := range []uint64{1, 2} {
		if got := h.initiate(h.initiation(t, bob, 0), at); !sameDevices(got, 2) || h.m.Stats().EndpointHits != wantHits {
			t.Fatalf("bob's initiation %d after his device answered: went to %v, hits %d, want %d", i+1, got, h.m.Stats().EndpointHits, wantHits)
		}
	}
}

// TestEndpointCacheSpoofedSource: junk with a valid mac1 from a client's address costs one
// fallback, and the next junk from there is decrypted at once; an attacker who spoofs a
// client's address and gets its own device to answer the client's sender index does not
// confirm the client's hit on that device, so the client still reaches its own.
func TestEndpointCacheSpoofedSource(t *testing.T) {
	alice, bob, mallory := testKey(t), testKey(t), testKey(t)
	h := newCacheHarness(t, map[store.Key]int64{alice: 1, bob: 2, mallory: 1})
	const at = "192.0.2.10:5000"
	h.answer(1, h.initiation(t, alice, 0), at)

	if got := h.initiate(junkInitiation(h.node.PublicKey(), 5), at); !sameDevices(got, 1) {
		t.Fatalf("junk went to %v, want a hit on 1", got)
	}
	h.clk.Advance(maxAnswerWait)
	if got := h.fallBackDue(); len(got) != 0 {
		t.Fatalf("junk fell back to %v", got)
	}
	if got := h.initiate(junkInitiation(h.node.PublicKey(), 6), at); len(got) != 0 {
		t.Fatalf("more junk went to %v", got)
	}
	if st := h.m.Stats(); st.EndpointHits != 1 || st.EndpointFallbacks != 1 || st.EndpointRerouted != 0 || st.BadInitiation != 1 {
		t.Errorf("after the junk: %+v", st)
	}

	// Bob arrives from alice's other address (a hit on alice's device 1); mallory, a peer
	// of device 1, sends an initiation from there with bob's sender index, which device 1
	// answers.
	const other = "192.0.2.10:5001"
	h.answer(1, h.initiation(t, alice, 0), other)
	const index = 0x5eed
	if got := h.initiate(h.initiation(t, bob, index), other); !sameDevices(got, 1) {
		t.Fatalf("bob went to %v, want a hit on 1", got)
	}
	forged := h.initiation(t, mallory, index)
	if got := h.initiate(forged, other); !sameDevices(got, 1) {
		t.Fatalf("mallory went to %v", got)
	}
	h.answer(1, forged, other)
	if st := h.m.Stats(); st.EndpointConfirmed != 0 {
		t.Fatalf("mallory's answer confirmed bob's hit: %+v", st)
	}
	h.clk.Advance(maxAnswerWait)
	if got := h.fallBackDue(); !sameDevices(got, 2) {
		t.Fatalf("bob fell back to %v, want his device 2", got)
	}
}

// TestEndpointCacheLateAnswer: a device that answers a hit after the wait while it held the
// peer is slow, and its late answer makes the next wait longer; one that did not hold it gets
// the initiation again (its Route has just added the peer), and its answer to that counts from
// then, so that cold peers do not make the waits grow.
func TestEndpointCacheLateAnswer(t *testing.T) {
	alice := testKey(t)
	h := newCacheHarness(t, map[store.Key]int64{alice: 1})
	held := true
	h.m.holds = func(int64, store.Key) bool { return held }
	const at = "192.0.2.10:5000"
	s := h.session(1)
	late := func(what string) (before, after time.Duration) {
		t.Helper()
		h.answer(1, h.initiation(t, alice, 0), at)
		s.answer = answerTimer{srtt: 10 * time.Millisecond, rttvar: time.Millisecond, measured: true}
		before = s.answer.wait()
		for i := 0; ; i++ { // until a hit (after earlier fallbacks, some are decrypted)
			msg := h.initiation(t, alice, 0)
			lates := h.m.Stats().EndpointLate
			if got := h.initiate(msg, at); !sameDevices(got, 1) {
				t.Fatalf("%s: went to %v", what, got)
			}
			if h.m.Stats().EndpointsWaiting == 0 {
				h.answer(1, msg, at)
				continue
			}
			h.clk.Advance(before + 260*time.Millisecond)
			want := []int64{1}
			if held {
				want = nil
			}
			if got := h.fallBackDue(); !sameDevices(got, want...) {
				t.Fatalf("%s: fell back to %v, want %v", what, got, want)
			}
			h.clk.Advance(time.Millisecond)
			h.answer(1, msg, at)
			if st := h.m.Stats(); st.EndpointLate != lates+1 || st.EndpointConfirmed != 0 {
				t.Fatalf("%s: late answer: %+v", what, st)
			}
			return before, s.answer.wait()
		}
	}
	if before, after := late("held"); after <= before {
		t.Errorf("held: the wait stayed %v after an answer %v late", after, before+261*time.Millisecond)
	}
	held = false
	if before, after := late("cold"); after > before {
		t.Errorf("cold: the wait grew from %v to %v", before, after)
	}
}

// TestEndpointCacheBounded: the table holds at most max addresses, forgetting none with a
// hit waiting; at most as many hits wait as there are slots.
func TestEndpointCacheBounded(t *testing.T) {
	c := newEndpointCache()
	c.max = 16
	c.setHits(2)
	s := &session{id: 1}
	devs := map[int64]*session{1: s}
	at := func(i int) conn.Endpoint {
		return wgmuxtest.Endpoint{AddrPort: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), uint16(1000+i))}
	}
	var msg [initiationSize]byte
	now := int64(1e18)
	for i := range 100 {
		c.answered(now+int64(i), s, at(i), 0)
		if n, _ := c.state(); n > c.max {
			t.Fatalf("%d addresses after %d answers, max %d", n, i+1, c.max)
		}
	}
	// The last two answered are in the table (the oldest go first, mostly): hits on them
	// fill the slots, and a third address gets none.
	c.answered(now+200, s, at(1), 0)
	c.answered(now+201, s, at(2), 0)
	c.answered(now+202, s, at(3), 0)
	for i, want := range []bool{true, true, false} {
		binary.LittleEndian.PutUint32(msg[initSenderOff:], uint32(i+1))
		if got, _ := c.route(now+300, at(i+1), &msg, devs, true); (got != nil) != want {
			t.Errorf("hit at address %d: %v, want %v", i+1, got != nil, want)
		}
	}
	// Addresses with a hit waiting are never evicted.
	c.max = 2
	for i := 10; i < 20; i++ {
		c.answered(now+400, s, at(i), 0)
	}
	for _, i := range []int{1, 2} {
		if e := c.byAddr[netip.MustParseAddrPort(at(i).DstToString())]; e == nil || e.hit < 0 {
			t.Errorf("address %d with a hit waiting was forgotten", i)
		}
	}
	if n, waiting := c.state(); n > c.max || waiting != 2 {
		t.Errorf("%d addresses (max %d), %d hits waiting", n, c.max, waiting)
	}
	c.reset()
}

// TestEndpointKey: the key is the remote address and port, whichever bind made the endpoint.
func TestEndpointKey(t *testing.T) {
	want := netip.MustParseAddrPort("198.51.100.7:4321")
	for _, b := range []conn.Bind{conn.NewDefaultBind(), udpbind.NewDefault(), wgmuxtest.NewSocket(1)} {
		ep, err := b.ParseEndpoint(want.String())
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := endpointKey(ep); !ok || got != want {
			t.Errorf("%T: %v %v, want %v", ep, got, ok, want)
		}
	}
	if _, ok := endpointKey(nil); ok {
		t.Error("a nil endpoint has a key")
	}
}

// TestEndpointCacheBacksOff: from an address whose hits keep falling back (a source of many
// keys whose device holds none of them yet), ever more initiations are decrypted between
// two hits; a confirmed hit ends that.
func TestEndpointCacheBacksOff(t *testing.T) {
	alice := testKey(t)
	h := newCacheHarness(t, map[store.Key]int64{alice: 1})
	const at = "192.0.2.10:5000"
	h.answer(1, h.initiation(t, alice, 0), at)
	var hitAt []int
	for i := range 24 {
		before := h.m.Stats().EndpointHits
		msg := h.initiation(t, alice, 0)
		if got := h.initiate(msg, at); !sameDevices(got, 1) {
			t.Fatalf("initiation %d went to %v", i, got)
		}
		if h.m.Stats().EndpointHits == before {
			h.answer(1, msg, at) // decrypted: the device holds the peer now
			continue
		}
		hitAt = append(hitAt, i)
		h.clk.Advance(maxAnswerWait)
		if got := h.fallBackDue(); !sameDevices(got, 1) {
			t.Fatalf("hit %d fell back to %v", i, got)
		}
		h.answer(1, msg, at) // the answer to the initiation delivered again
	}
	// Hits, then 1, 2, 4, 8 decrypted.
	if want := []int{0, 2, 5, 10, 19}; !slices.Equal(hitAt, want) {
		t.Errorf("hits at initiations %v, want %v", hitAt, want)
	}
	// Now a hit that is answered: the next one is a hit again.
	for i := 0; h.m.Stats().EndpointConfirmed == 0; i++ {
		if i == 2<<maxSkipShift {
			t.Fatal("no hit came back")
		}
		msg := h.initiation(t, alice, 0)
		h.initiate(msg, at)
		h.answer(1, msg, at)
	}
	before := h.m.Stats().EndpointHits
	h.initiate(h.initiation(t, alice, 0), at)
	if st := h.m.Stats(); st.EndpointHits != before+1 {
		t.Errorf("no hit after a confirmed one: %+v", st)
	}
}

// TestEndpointCacheSlowDevice: a hit that its device does not answer in time, while the
// device holds the peer (Config.Holds), is not delivered to it again: the device is slow, or
// refused it for reasons of its own. Its late answer counts.
func TestEndpointCacheSlowDevice(t *testing.T) {
	alice := testKey(t)
	h := newCacheHarness(t, map[store.Key]int64{alice: 1})
	var asked []int64
	h.m.holds = func(id int64, k store.Key) bool {
		asked = append(asked, id)
		return k == alice.PublicKey()
	}
	const at = "192.0.2.10:5000"
	h.answer(1, h.initiation(t, alice, 0), at)
	msg := h.initiation(t, alice, 0)
	if got := h.initiate(msg, at); !sameDevices(got, 1) {
		t.Fatalf("went to %v, want a hit on 1", got)
	}
	h.clk.Advance(maxAnswerWait)
	if got := h.fallBackDue(); len(got) != 0 {
		t.Fatalf("sent again to %v", got)
	}
	h.answer(1, msg, at)
	if st := h.m.Stats(); st.EndpointFallbacks != 1 || st.EndpointHeld != 1 || st.EndpointRerouted != 0 || st.EndpointLate != 1 {
		t.Errorf("stats %+v", st)
	}
	if !sameDevices(asked, 1) {
		t.Errorf("Holds asked about devices %v, want [1]", asked)
	}
}

// TestEndpointCacheRandom runs random initiations of clients of two tenants from a few
// shared addresses (NATs that hand ports to other users), with junk among them and forgeries
// (another client's initiation with the sender index of the last one from that address),
// devices that answer their own peers' initiations at once or late and ignore the others, and
// time that moves on; it checks against what must happen whatever the cache does: every
// client's own initiation (not a forgery: its sender index is new, as a client's always is)
// reaches its own device within the longest wait, none reaches a device more than twice,
// junk reaches one at most once, and the table stays within its bounds.
func TestEndpointCacheRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("WGMUX_RANDOM_SEED"); v != "" { // to run a failure again
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (WGMUX_RANDOM_SEED)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	clients := make([]store.Key, 6)
	owners := map[store.Key]int64{}
	for i := range clients {
		clients[i] = testKey(t)
		owners[clients[i]] = int64(1 + i%2)
	}
	h := newCacheHarness(t, owners)
	h.m.eps.max = 4
	h.m.holds = func(id int64, k store.Key) bool { return h.owner[k] == id }
	addrs := []string{"192.0.2.1:1000", "192.0.2.1:1001", "192.0.2.2:1000", "198.51.100.9:7"}

	type sent struct {
		msg   []byte
		from  string
		owner int64 // 0: junk
		own   bool  // not a forgery
		at    time.Time
		got   []int64
	}
	var all []*sent
	byMsg := map[string]*sent{}
	lastFrom := map[string]uint32{} // the sender index of the last initiation from an address
	var late []*sent                // owed an answer by their device
	deliver := func(devs []int64, msgs [][]byte) {
		for i, dev := range devs {
			x := byMsg[string(msgs[i])]
			x.got = append(x.got, dev)
			if dev != x.owner {
				continue // not its peer: no answer
			}
			if rng.IntN(5) == 0 {
				late = append(late, x)
			} else {
				h.answer(dev, x.msg, x.from)
			}
		}
	}
	sender := uint32(1)
	for step := range 400 {
		switch r := rng.IntN(10); {
		case r < 6:
			x := &sent{from: addrs[rng.IntN(len(addrs))], at: h.clk.Now(), own: true}
			index := sender
			if last, ok := lastFrom[x.from]; ok && rng.IntN(6) == 0 {
				index, x.own = last, false // a forgery
			}
			if rng.IntN(8) == 0 {
				x.msg = junkInitiation(h.node.PublicKey(), index)
			} else {
				c := clients[rng.IntN(len(clients))]
				x.msg, x.owner = h.initiation(t, c, index), owners[c]
			}
			byMsg[string(x.msg)] = x
			lastFrom[x.from] = index
			sender++
			all = append(all, x)
			devs, msgs := h.initiateCollect(x.msg, x.from)
			deliver(devs, msgs)
		case r < 8:
			for _, x := range late {
				h.answer(x.owner, x.msg, x.from)
			}
			late = late[:0]
		default:
			h.clk.Advance(time.Duration(rng.IntN(600)) * time.Millisecond)
			deliver(h.fallBackCollect())
		}
		for _, x := range all {
			reached := false
			for _, d := range x.got {
				reached = reached || d == x.owner
			}
			switch {
			case len(x.got) > 2 || x.owner == 0 && len(x.got) > 1:
				t.Fatalf("step %d: an initiation from %s (owner %d) went to %v", step, x.from, x.owner, x.got)
			case x.own && x.owner != 0 && !reached && h.clk.Now().Sub(x.at) > maxAnswerWait:
				t.Fatalf("step %d: an initiation from %s went to %v, never to its device %d", step, x.from, x.got, x.owner)
			}
		}
		if n, waiting := h.m.eps.state(); n > h.m.eps.max || waiting > len(h.m.eps.hits) {
			t.Fatalf("step %d: %d addresses, %d hits waiting", step, n, waiting)
		}
	}
	st := h.m.Stats()
	t.Logf("hits %d, confirmed %d, fallbacks %d (rerouted %d, held %d, late %d)", st.EndpointHits, st.EndpointConfirmed, st.EndpointFallbacks, st.EndpointRerouted, st.EndpointHeld, st.EndpointLate)
}

// initiateCollect is initiate, with the datagrams each device got.
func (h *cacheHarness) initiateCollect(msg []byte, from string) (devs []int64, msgs [][]byte) {
	h.sizes[0] = copy(h.bufs[0], msg)
	h.eps[0] = wgmuxtest.At(from)
	if end, _ := h.rc.sort(h.bufs, h.sizes, h.eps, 1); end > 0 && h.sizes[0] > 0 {
		devs, msgs = append(devs, h.s[0].id), append(msgs, bytes.Clone(h.bufs[0][:h.sizes[0]]))
	}
	var (
		c   counts
		buf [initiationSize]byte
	)
	for {
		ep, ok := h.m.hs.take(&buf)
		if !ok {
			break
		}
		h.m.routeInitiation(h.g, &buf, ep, &c)
	}
	h.m.flush(&c)
	d, m := h.drainCollect()
	return append(devs, d...), append(msgs, m...)
}

// fallBackCollect is fallBackDue, with the datagrams each device got.
func (h *cacheHarness) fallBackCollect() (devs []int64, msgs [][]byte) {
	var (
		c counts
		x hit
	)
	for h.m.eps.expired(h.m.now().UnixNano(), &x) {
		h.m.fallBack(h.g, &x, &c)
	}
	h.m.flush(&c)
	return h.drainCollect()
}

// drainCollect is drain, with the datagrams.
func (h *cacheHarness) drainCollect() (devs []int64, msgs [][]byte) {
	for _, s := range h.s {
		for len(s.queue) > 0 {
			b := <-s.queue
			for i := range b.n {
				devs, msgs = append(devs, s.id), append(msgs, bytes.Clone(b.bufs[i][:b.sizes[i]]))
			}
			s.queued.Add(-int64(b.n))
			h.m.releaseBatch(b)
		}
	}
	return devs, msgs
}
