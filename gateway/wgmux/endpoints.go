package wgmux

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// The endpoint cache: routing an initiation without the Mux's X25519.
//
// To route an initiation by its initiator's static key the Mux pays one X25519, and the
// device it routes to pays the same one again (wireguard-go cannot be handed the result):
// about one eighth of what a handshake costs the node (see docs/perf-handshakes.md). Most
// initiations come from where their initiator's last handshake came from, as a client rekeys
// every two minutes from the same address and port. So the Mux remembers, for each source
// address and port, the device that last answered a handshake there (a handshake response
// it sent through its Bind), and routes an initiation from there to that device without
// decrypting anything: a hit, handed on by the goroutine that read it with the rest of its
// batch (no handshake worker, no copy when it is that goroutine's own device's). The device
// confirms the hit by answering it, a handshake
// response to the initiation's sender index sent to the same address and port; if no such
// answer comes within a short wait (see answerTimer), the Mux falls back: it decrypts the
// initiation as it would have, and routes it by the key: to another device, or again to the
// same one, whose Route may just have added the peer (not when Config.Holds says it held the
// peer: then it is slow, or refused the initiation itself). The address is not used for hits
// again until a device answers there anew, and then after a few more decryptions (see
// maxSkipShift).
//
// What keeps this safe:
//   - A hit happens only when admission is not under load (under load every initiation is
//     decrypted, as without the cache), only when admission takes it (it counts against its
//     source's rate as any initiation does), only while fewer than maxHits hits wait for
//     their answer, and at most one at a time per address and port.
//   - A wrong device costs a client at most the wait, never its handshake: a hit is
//     confirmed only by the device it went to answering its sender index at its address.
//     Another initiation from that address with the same sender index while the hit waits
//     (which a client never sends: each initiation gets a new index) voids the
//     confirmation, so an attacker that spoofs the address and gets a device of its own to
//     answer that index cannot make the Mux forget the client's initiation.
//   - A spoofed source (junk, or a replay, from a client's address and port) costs what it
//     did without the cache but once: its hit costs the device an X25519 before the fallback
//     decrypts it, and the fallback stops the hits from that address until a device answers
//     there again. A device slower than the wait costs the Mux the X25519 it spent on every
//     initiation without the cache, and the device nothing more when Config.Holds is set.
//   - A client that roams or is rebound by a NAT arrives from an address and port the cache
//     does not know, and is decrypted; one that takes over another client's old address and
//     port waits for the fallback once.
//
// The cache has no say over the other handshake messages: responses and cookie replies are
// routed by their receiver index as before, and a device's cookie reply confirms nothing
// (its fallback routes the initiation by its key).

// Tuning of the endpoint cache. Fields of endpointCache copy them so that tests can shrink
// them.
const (
	// endpointTTL: an address is used for hits this long after a device last answered a
	// handshake there. An active client rekeys every 2 minutes (RekeyAfterTime); a device
	// keeps a session at most 3 (RejectAfterTime). Shorter than the node's idle time before
	// it takes a peer out of its device (5 minutes), so a hit finds the peer still there
	// unless it was removed or disabled.
	endpointTTL = 3 * time.Minute
	// endpointSweepEvery: expired addresses are swept at most this often, by the next
	// answer.
	endpointSweepEvery = 30 * time.Second
	// maxEndpoints bounds the table (≈ 150 bytes each); beyond it, the least recently
	// answered of a small sample without a hit waiting is forgotten.
	maxEndpoints = 1 << 16
	// maxHits bounds the hits waiting for their answer: what the devices owe the Mux
	// without the Mux knowing they are right, and the fallbacks that may come at once. Each
	// holds a copy of its initiation.
	maxHits = 256
	// The wait for a device's answer is estimated from its answers as TCP estimates its
	// retransmission timeout (see answerTimer), initialAnswerWait before the first, and is
	// kept within minAnswerWait and maxAnswerWait. A device answers in well under a
	// millisecond when idle, in tens of milliseconds when its handshake queue is long.
	initialAnswerWait = 100 * time.Millisecond
	minAnswerWait     = 50 * time.Millisecond
	maxAnswerWait     = 500 * time.Millisecond
	// maxSkipShift: after n fallbacks in a row at an address, the next 2^(n-1) initiations
	// from there that could be hits are decrypted, at most 2^maxSkipShift. A source whose
	// initiations come from many keys of one tenant (a generator, or a NAT that gives the
	// port to another user) does not pay the wait again and again for peers its device does
	// not hold yet; a confirmed hit ends it.
	maxSkipShift = 10
)

// endpointCache is the table of addresses and the hits waiting for their answer. Its methods
// are safe for concurrent use; times are UnixNano of the Mux's clock.
type endpointCache struct {
	ttl, sweepEvery int64
	max             int

	// due is a time at or before the deadline of every hit waiting, math.MaxInt64 when none
	// waits: the handshake workers look at it before they take an initiation.
	due atomic.Int64
	// wake has a token when a hit may be due; the timer puts it there.
	wake  chan struct{}
	timer *time.Timer

	mu        sync.Mutex // guards the fields below
	byAddr    map[netip.AddrPort]*endpoint
	hits      []hit   // maxHits slots
	free      []int32 // free slots of hits
	armedFor  int64   // the deadline the timer is set for; 0: not set
	lastSweep int64
}

// endpoint is what the cache knows about one source address and port.
type endpoint struct {
	dev      int64  // the device that last answered a handshake here
	answered int64  // when; 0: not to be used for hits (the last one fell back)
	seen     int64  // last answer or fallback, for eviction
	hit      int32  // the slot of the hit waiting here, -1 when none
	streak   uint8  // fallbacks in a row here
	skip     uint16 // initiations to decrypt before the next hit (see maxSkipShift)
	// The last hit here that fell back: an answer to it that comes late says how long its
	// device takes.
	lateDev    int64
	lateSender uint32
	lateSent   int64 // 0: none
}

// hit is an initiation routed by its source, waiting for its device's answer.
type hit struct {
	used      bool
	addr      netip.AddrPort
	s         *session
	sender    uint32
	sent      int64
	deadline  int64
	ambiguous bool // another initiation from addr had the same sender index: no answer confirms it
	msg       [initiationSize]byte
	ep        conn.Endpoint
}

func newEndpointCache() *endpointCache {
	c := &endpointCache{
		ttl:        int64(endpointTTL),
		sweepEvery: int64(endpointSweepEvery),
		max:        maxEndpoints,
		wake:       make(chan struct{}, 1),
		byAddr:     map[netip.AddrPort]*endpoint{},
	}
	c.timer = time.AfterFunc(time.Hour, func() {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	})
	c.timer.Stop()
	c.setHits(maxHits)
	return c
}

// setHits makes n slots for hits, none waiting; for New and tests.
func (c *endpointCache) setHits(n int) {
	c.hits = make([]hit, n)
	c.free = c.free[:0]
	for i := n - 1; i >= 0; i-- {
		c.free = append(c.free, int32(i))
	}
	c.due.Store(math.MaxInt64)
}

// endpointKey is the address and port of ep, the cache's key; false when the bind's
// endpoints do not tell (then the cache is not used).
func endpointKey(ep conn.Endpoint) (netip.AddrPort, bool) {
	switch e := ep.(type) {
	case nil:
		return netip.AddrPort{}, false
	case interface{ DstAddrPort() netip.AddrPort }: // udpbind
		return e.DstAddrPort(), true
	case interface { // conn.StdNetEndpoint and wgmuxtest.Endpoint embed a netip.AddrPort
		Addr() netip.Addr
		Port() uint16
	}:
		return netip.AddrPortFrom(e.Addr(), e.Port()), true
	}
	var ap netip.AddrPort
	if ap.UnmarshalBinary(ep.DstToBytes()) != nil {
		return netip.AddrPort{}, false
	}
	return ap, true
}

// route looks up the initiation msg from ep at now. With mayHit, and the address known,
// fresh and its device among devs, it routes msg there: the hit waits for its answer and
// route returns the device and the hit's slot. Otherwise it returns nil, and the caller
// decrypts. Either way, a hit waiting at the address with msg's sender index is voided.
func (c *endpointCache) route(now int64, ep conn.Endpoint, msg *[initiationSize]byte, devs map[int64]*session, mayHit bool) (*session, int32) {
	addr, ok := endpointKey(ep)
	if !ok {
		return nil, -1
	}
	sender := senderOf(msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byAddr[addr]
	if e == nil {
		return nil, -1
	}
	if e.hit >= 0 {
		if h := &c.hits[e.hit]; h.sender == sender {
			h.ambiguous = true
		}
		return nil, -1
	}
	if !mayHit || e.answered == 0 || now-e.answered > c.ttl || len(c.free) == 0 {
		return nil, -1
	}
	s := devs[e.dev]
	if s == nil {
		return nil, -1
	}
	if e.skip > 0 {
		e.skip--
		return nil, -1
	}
	i := c.free[len(c.free)-1]
	c.free = c.free[:len(c.free)-1]
	h := &c.hits[i]
	*h = hit{used: true, addr: addr, s: s, sender: sender, sent: now, deadline: now + int64(s.answer.wait()), msg: *msg, ep: ep}
	e.hit = i
	if h.deadline < c.due.Load() {
		c.due.Store(h.deadline)
	}
	c.armLocked(now, h.deadline)
	return s, i
}

// redelivered records that the fallback of the hit at ep with sender index sender delivers
// it again to device dev, the hit's, at now: an answer now says how long the device takes
// from now (from the hit, it would count the wait and Route's time to add the peer, and the
// next waits would grow with every cold peer).
func (c *endpointCache) redelivered(now int64, ep conn.Endpoint, sender uint32, dev int64) {
	addr, ok := endpointKey(ep)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byAddr[addr]; e != nil && e.lateSent != 0 && e.lateDev == dev && e.lateSender == sender {
		e.lateSent = now
	}
}

// cancel forgets hit i, which was not delivered: the address stays as it was.
func (c *endpointCache) cancel(i int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := &c.hits[i]
	if e := c.byAddr[h.addr]; e != nil && e.hit == i {
		e.hit = -1
	}
	c.freeLocked(i)
}

// answered records that device s sent a handshake response to receiver index receiver at
// ep at now: the address is s's from now on, and a hit there waiting for exactly this answer
// is confirmed. It reports whether a hit was confirmed, and whether a hit that had fallen
// back was answered late.
func (c *endpointCache) answered(now int64, s *session, ep conn.Endpoint, receiver uint32) (confirmed, late bool) {
	addr, ok := endpointKey(ep)
	if !ok {
		return false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now-c.lastSweep >= c.sweepEvery {
		c.sweepLocked(now)
	}
	e := c.byAddr[addr]
	if e == nil {
		if len(c.byAddr) >= c.max {
			c.sweepLocked(now)
			for len(c.byAddr) >= c.max && c.evictLocked() {
			}
			if len(c.byAddr) >= c.max {
				return false, false // every entry has a hit waiting (only with max < maxHits)
			}
		}
		e = &endpoint{hit: -1}
		c.byAddr[addr] = e
	}
	if e.hit >= 0 {
		if h := &c.hits[e.hit]; h.s == s && h.sender == receiver && !h.ambiguous {
			s.answer.note(time.Duration(now - h.sent))
			c.freeLocked(e.hit)
			e.hit = -1
			e.streak, e.skip = 0, 0
			confirmed = true
		}
	} else if e.lateSent != 0 && e.lateDev == s.id && e.lateSender == receiver {
		s.answer.note(time.Duration(now - e.lateSent))
		e.lateSent = 0
		late = true
	}
	e.dev, e.answered, e.seen = s.id, now, now
	return confirmed, late
}

// expired takes out a hit whose deadline has passed at now, copying it to out; false when
// none has. The address is not used for hits again until a device answers there.
func (c *endpointCache) expired(now int64, out *hit) bool {
	if now < c.due.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := int64(math.MaxInt64)
	for i := range c.hits {
		h := &c.hits[i]
		if !h.used {
			continue
		}
		if h.deadline > now {
			next = min(next, h.deadline)
			continue
		}
		*out = *h
		if e := c.byAddr[h.addr]; e != nil && e.hit == int32(i) {
			e.hit = -1
			e.answered = 0
			e.seen = now
			e.lateDev, e.lateSender, e.lateSent = h.s.id, h.sender, h.sent
			e.streak = min(e.streak+1, maxSkipShift+1)
			e.skip = 1 << (e.streak - 1)
		}
		c.freeLocked(int32(i))
		return true // the caller comes back for more: due stays where it is
	}
	c.due.Store(next)
	if next != math.MaxInt64 {
		c.armedFor = 0
		c.armLocked(now, next)
	}
	return false
}

// armLocked makes sure the timer wakes a worker at deadline. Must hold c.mu.
func (c *endpointCache) armLocked(now, deadline int64) {
	if c.armedFor != 0 && c.armedFor <= deadline && c.armedFor > now {
		return
	}
	c.armedFor = deadline
	c.timer.Reset(time.Duration(max(deadline-now, 0)))
}

// freeLocked returns slot i. Must hold c.mu.
func (c *endpointCache) freeLocked(i int32) {
	c.hits[i] = hit{}
	c.free = append(c.free, i)
}

// sweepLocked forgets the addresses that may not be used for hits any more and wait for
// nothing. Must hold c.mu.
func (c *endpointCache) sweepLocked(now int64) {
	c.lastSweep = now
	for a, e := range c.byAddr {
		if e.hit < 0 && now-e.seen > c.ttl {
			delete(c.byAddr, a)
		}
	}
}

// evictLocked forgets the least recently seen of a few addresses without a hit waiting (map
// iteration starts at a random place); false when it found none. Must hold c.mu.
func (c *endpointCache) evictLocked() bool {
	const sample = 8
	var (
		victim netip.AddrPort
		oldest *endpoint
		seen   int
	)
	for a, e := range c.byAddr {
		if e.hit >= 0 {
			continue
		}
		if oldest == nil || e.seen < oldest.seen {
			victim, oldest = a, e
		}
		if seen++; seen == sample {
			break
		}
	}
	if oldest == nil {
		return false
	}
	delete(c.byAddr, victim)
	return true
}

// reset forgets everything; for the closing of the shared socket.
func (c *endpointCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer.Stop()
	c.armedFor = 0
	clear(c.byAddr)
	c.setHits(len(c.hits))
}

// state is what Stats shows of the cache.
func (c *endpointCache) state() (addrs, waiting int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byAddr), len(c.hits) - len(c.free)
}

// senderOf is the sender index of the initiation msg.
func senderOf(msg *[initiationSize]byte) uint32 {
	return uint32(msg[initSenderOff]) | uint32(msg[initSenderOff+1])<<8 | uint32(msg[initSenderOff+2])<<16 | uint32(msg[initSenderOff+3])<<24
}

// answerTimer estimates how long a device takes to answer an initiation, as TCP estimates a
// round trip for its retransmission timeout (RFC 6298): a smoothed time and its mean
// deviation, from the answers to hits. Guarded by the endpoint cache's mu.
type answerTimer struct {
	srtt, rttvar time.Duration
	measured     bool
}

// wait is how long a hit waits for its answer before it falls back.
func (a *answerTimer) wait() time.Duration {
	if !a.measured {
		return initialAnswerWait
	}
	return min(max(a.srtt+4*a.rttvar, minAnswerWait), maxAnswerWait)
}

// note adds one answer time.
func (a *answerTimer) note(d time.Duration) {
	if !a.measured {
		a.srtt, a.rttvar, a.measured = d, d/2, true
		return
	}
	dev := a.srtt - d
	if dev < 0 {
		dev = -dev
	}
	a.rttvar += (dev - a.rttvar) / 4
	a.srtt += (d - a.srtt) / 8
}
