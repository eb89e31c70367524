package wgmux

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// Handshake admission: what the Mux does with an initiation whose mac1 is valid before it
// spends an X25519 on it. mac1 proves only that the sender knows the node's public key, which
// is in every client config, so these are the defences against a flood of initiations:
//
//   - Under load (see underLoadQueued) an initiation needs a valid mac2, proof that its
//     sender receives at its source address; the others get a cookie reply (as wireguard-go's
//     devices do), at a bounded rate per source and in all. Part of the budget in all is
//     kept for sources that had no cookie reply lately (see cookieReserve): a client sends
//     one initiation per retry and must not lose its cookie to the thousands of a flood.
//   - Each source (an IPv4 address, or the /64 of an IPv6 one) has a token bucket: under load
//     it may have sourceRate initiations a second decrypted; more put the Mux under load.
//     Stock wireguard-go allows 20 a second under load; a PoP serves offices whose users share
//     one NAT address, so the rate is higher and fairness comes from the queue.
//   - The initiations admitted wait in one queue per source, and the handshake workers take
//     from the sources in turn (round robin), so a source with many initiations waiting delays
//     the others by one initiation at most. When the queue is full, the source with the most
//     waiting loses its oldest; a source with nothing waiting always gets in.
//
// All of it happens on the receive path, before the queue: the workers spend their time on
// X25519s that passed it. Under load, an initiation from a known source that would be dropped
// whatever its MACs say (see shed) costs a map lookup; the others a BLAKE2s or three.
const (
	// handshakeQueue bounds the initiations waiting for the handshake workers, over all
	// sources: 512 × 148 bytes.
	handshakeQueue = 512
	// underLoadQueued initiations waiting put the Mux under load, and it stays so for
	// underLoadFor after that last happened: wireguard-go's own thresholds
	// (QueueHandshakeSize/8, UnderLoadAfterTime). A source over its rate, or underLoadQueued
	// initiations refused for want of mac2 since the last time, renew it.
	underLoadQueued = 128
	underLoadFor    = time.Second
	// sourceRate and sourceBurst: initiations a second (and at once) one source may have
	// decrypted while under load; a source that sends more puts the Mux under load. 100 a
	// second are 100 X25519s (BenchmarkStatic in BENCHMARKS.md times one), and let 500 users
	// behind one NAT address in per 5-s retry round of their clients.
	sourceRate  = 100
	sourceBurst = 100
	// cookieSourceRate and cookieSourceBurst bound the cookie replies to one source;
	// cookieRate and cookieBurst those to all (a cookie reply costs a BLAKE2s, an
	// XChaCha20-Poly1305 seal and a send: BenchmarkCookieReply in BENCHMARKS.md).
	cookieSourceRate  = 100
	cookieSourceBurst = 100
	cookieRate        = 20000
	cookieBurst       = 2000
	// cookieReserve of the cookieBurst replies in all go only to sources that had none for
	// cookieQuiet (a client's first initiation); the others wait until the reserve is full
	// again. Without it a flood's sources spend the budget in all as fast as it refills —
	// for a second when 100 new ones are owed their cookieSourceBurst at once, for good when
	// more than cookieRate/cookieSourceRate of them ask — and a client's one initiation
	// among the flood's thousands finds none left: it gets in a retry (5 s) later. A source
	// takes from the reserve at most once per cookieQuiet.
	cookieReserve = 1000
	cookieQuiet   = time.Second
	// maxSources bounds the table of sources (≈ 150 bytes each); beyond it the least
	// recently seen of a small sample without initiations waiting is forgotten.
	maxSources = 8192
	// sourceIdle: a source unseen this long has full buckets again and is forgotten at the
	// next sweep, which runs at most every sourceSweepEvery.
	sourceIdle       = 2 * time.Second
	sourceSweepEvery = 10 * time.Second
)

// verdict is what admission decided for one initiation.
type verdict uint8

const (
	admit             verdict = iota // queued for the handshake workers
	dropQueueFull                    // admitted, but the queue was full and it was the one to go
	sendCookie                       // under load without a valid mac2: answer with a cookie reply
	dropCookieLimited                // as sendCookie, but the cookie replies' rate is spent: dropped
	dropRateLimited                  // under load with a mac2, but its source is over its rate: dropped
	needMAC2                         // under load, and the caller did not check mac2: check it and offer again
)

func (v verdict) String() string {
	switch v {
	case admit:
		return "admitted"
	case dropQueueFull:
		return "queue_full"
	case sendCookie:
		return "cookie"
	case dropCookieLimited:
		return "cookie_limited"
	case dropRateLimited:
		return "rate_limited"
	case needMAC2:
		return "need_mac2"
	}
	return "unknown"
}

// mac2Check is what the caller of offer knows about an initiation's mac2.
type mac2Check uint8

const (
	mac2Unchecked mac2Check = iota
	mac2Valid
	mac2Invalid
)

// bucket is a token bucket whose tokens are nanoseconds of credit, as in wireguard-go's
// ratelimiter: each use costs cost, and at most limit accumulates.
type bucket struct {
	tokens int64
	last   int64 // UnixNano of the last refill
}

// take refills b to now and takes one use if there is one.
func (b *bucket) take(now, cost, limit int64) bool {
	if d := now - b.last; d > 0 {
		b.tokens = min(b.tokens+d, limit)
		b.last = now
	}
	if b.tokens < cost {
		return false
	}
	b.tokens -= cost
	return true
}

// has reports whether b would give a use at now, without taking it.
func (b *bucket) has(now, cost, limit int64) bool {
	return min(b.tokens+max(now-b.last, 0), limit) >= cost
}

// source is one source's state: its buckets and the initiations it has waiting (a FIFO of
// slots).
type source struct {
	key        netip.Addr
	seen       int64 // UnixNano of its last initiation
	lastCookie int64 // UnixNano of its last cookie reply, math.MinInt64 before one
	hs, cookie bucket
	head, tail int32   // slots, -1 when none waits
	n          int32   // initiations waiting
	next       *source // in the round-robin list
	listed     bool    // in the round-robin list (n > 0)
}

// slot holds one waiting initiation; next links the slots of one source, or the free ones.
type slot struct {
	msg  [initiationSize]byte
	ep   conn.Endpoint
	next int32
}

// hsLimits are the tunables of handshakes; fields of it so that tests can shrink them.
type hsLimits struct {
	queue           int           // handshakeQueue
	underLoadQueued int           // underLoadQueued
	underLoadFor    time.Duration // underLoadFor
	sourceRate      int           // sourceRate, per second
	sourceBurst     int           // sourceBurst
	cookieSrcRate   int           // cookieSourceRate
	cookieSrcBurst  int           // cookieSourceBurst
	cookieRate      int           // cookieRate
	cookieBurst     int           // cookieBurst
	cookieReserve   int           // cookieReserve
	cookieQuiet     time.Duration // cookieQuiet
	maxSources      int           // maxSources
	sourceIdle      time.Duration // sourceIdle
	sweepEvery      time.Duration // sourceSweepEvery
}

func defaultHSLimits() hsLimits {
	return hsLimits{
		queue: handshakeQueue, underLoadQueued: underLoadQueued, underLoadFor: underLoadFor,
		sourceRate: sourceRate, sourceBurst: sourceBurst,
		cookieSrcRate: cookieSourceRate, cookieSrcBurst: cookieSourceBurst,
		cookieRate: cookieRate, cookieBurst: cookieBurst,
		cookieReserve: cookieReserve, cookieQuiet: cookieQuiet,
		maxSources: maxSources, sourceIdle: sourceIdle, sweepEvery: sourceSweepEvery,
	}
}

// handshakes admits initiations and queues them per source for the handshake workers. Its
// methods are safe for concurrent use; times are UnixNano of the Mux's clock.
type handshakes struct {
	lim                                  hsLimits
	hsCost, hsMax, ckCost, ckMax, glCost int64 // bucket parameters, from lim
	glMax, glReserve                     int64

	// underLoadUntil is the UnixNano until which initiations need mac2; read without mu by
	// the receive path to decide whether to check mac2 before it offers.
	underLoadUntil atomic.Int64
	// wake has a token when initiations may be waiting for a worker.
	wake chan struct{}

	mu        sync.Mutex // guards the fields below
	slots     []slot
	free      int32 // first free slot, -1 when none
	queued    int
	sources   map[netip.Addr]*source
	rrHead    *source // the round-robin list: sources with initiations waiting, next served first
	rrTail    *source
	fat       *source // the source with the most waiting, or close to it
	cookies   bucket  // all cookie replies
	unproven  int     // initiations refused for want of mac2 since underLoadUntil was last renewed
	lastSweep int64
	evictions uint64
}

func newHandshakes(lim hsLimits) *handshakes {
	perSec := func(rate int) int64 { return int64(time.Second) / int64(max(rate, 1)) }
	h := &handshakes{
		lim:     lim,
		hsCost:  perSec(lim.sourceRate),
		ckCost:  perSec(lim.cookieSrcRate),
		glCost:  perSec(lim.cookieRate),
		wake:    make(chan struct{}, 1),
		slots:   make([]slot, lim.queue),
		sources: map[netip.Addr]*source{},
	}
	h.hsMax = h.hsCost * int64(max(lim.sourceBurst, 1))
	h.ckMax = h.ckCost * int64(max(lim.cookieSrcBurst, 1))
	h.glMax = h.glCost * int64(max(lim.cookieBurst, 1))
	h.glReserve = h.glCost * int64(min(max(lim.cookieReserve, 0), max(lim.cookieBurst, 1)-1))
	h.cookies.tokens = h.glMax
	h.resetLocked()
	return h
}

// resetLocked empties the queue (the initiations waiting are forgotten). Must hold h.mu, or
// own h.
func (h *handshakes) resetLocked() {
	for i := range h.slots {
		h.slots[i] = slot{next: int32(i + 1)}
	}
	h.slots[len(h.slots)-1].next = -1
	h.free = 0
	h.queued = 0
	h.rrHead, h.rrTail, h.fat = nil, nil, nil
	for _, s := range h.sources {
		s.head, s.tail, s.n, s.next, s.listed = -1, -1, 0, nil, false
	}
}

// reset empties the queue; the sources keep their buckets.
func (h *handshakes) reset() {
	h.mu.Lock()
	h.resetLocked()
	h.mu.Unlock()
}

// sourceKey is what initiations are limited by: the address, or for IPv6 its /64 (one
// subscriber's usual share).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a.WithZone("")
}

// underLoad reports whether initiations need mac2 at now (without renewing anything).
func (h *handshakes) underLoad(now int64) bool { return h.underLoadUntil.Load() > now }

// offer decides about the initiation msg (initiationSize bytes, mac1 valid) from ep at
// now, and queues it when admitted. mac2 says whether the caller checked mac2; under load
// without that, offer returns needMAC2 and changes nothing. sendCookie means: send a cookie
// reply (the budget for it is taken). pushedOut is true when another source's oldest
// initiation was dropped to make room (admit) — a queue_full drop all the same.
func (h *handshakes) offer(now int64, msg []byte, ep conn.Endpoint, mac2 mac2Check) (v verdict, pushedOut bool) {
	return h.decide(now, msg, ep, mac2, true)
}

// pass decides about an initiation from ep that the endpoint cache routes to a device at once
// (a hit), as offer would with its mac2 unchecked, and takes it from its source's rate as
// offer does; admit means it may go, and nothing is queued. Under load it returns needMAC2
// (the caller offers it then).
func (h *handshakes) pass(now int64, ep conn.Endpoint) verdict {
	v, _ := h.decide(now, nil, ep, mac2Unchecked, false)
	return v
}

// decide is offer, and with queue false pass.
func (h *handshakes) decide(now int64, msg []byte, ep conn.Endpoint, mac2 mac2Check, queue bool) (v verdict, pushedOut bool) {
	key := sourceKey(ep.DstIP())
	h.mu.Lock()
	defer h.mu.Unlock()
	if now-h.lastSweep >= int64(h.lim.sweepEvery) {
		h.sweepLocked(now)
	}
	s := h.sources[key]
	if s == nil {
		s = h.addSourceLocked(key, now)
	}
	s.seen = now
	until := now + int64(h.lim.underLoadFor)
	loaded := h.underLoadUntil.Load() > now
	// A source that sends faster than its rate is load as much as a long queue is.
	over := !s.hs.has(now, h.hsCost, h.hsMax)
	if over || h.queued >= h.lim.underLoadQueued {
		loaded = true
		h.renewLocked(until)
	}
	if loaded {
		switch mac2 {
		case mac2Unchecked:
			return needMAC2, false
		case mac2Invalid:
			if h.unproven++; h.unproven >= h.lim.underLoadQueued {
				h.renewLocked(until)
			}
			if h.cookieLocked(s, now, true) {
				return sendCookie, false
			}
			return dropCookieLimited, false
		}
		if over {
			return dropRateLimited, false
		}
	}
	s.hs.take(now, h.hsCost, h.hsMax)
	if !queue {
		return admit, false
	}
	return h.pushLocked(s, msg, ep)
}

// shed decides, under load and before any MAC is checked, about an initiation from ep: one
// from a known source that would be dropped whatever its MACs say is dropped here, which
// spares the BLAKE2s of mac1 and mac2 for most of a flood. That is a source over its rate
// whose initiation carries a mac2 (valid: rate-limited; not valid: a stale or forged cookie,
// which gets no new cookie while its source is over its rate), or one that carries none when
// no cookie reply may be sent to that source. ok false: check mac1, then offer.
func (h *handshakes) shed(now int64, ep conn.Endpoint, mac2Zero bool) (v verdict, ok bool) {
	if !h.underLoad(now) {
		return 0, false
	}
	key := sourceKey(ep.DstIP())
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sources[key]
	if s == nil {
		return 0, false
	}
	until := now + int64(h.lim.underLoadFor)
	if mac2Zero {
		if h.cookieLocked(s, now, false) {
			return 0, false
		}
		s.seen = now
		if h.unproven++; h.unproven >= h.lim.underLoadQueued {
			h.renewLocked(until)
		}
		return dropCookieLimited, true
	}
	if s.hs.has(now, h.hsCost, h.hsMax) {
		return 0, false
	}
	s.seen = now
	h.renewLocked(until)
	return dropRateLimited, true
}

// cookieLocked reports whether a cookie reply may go to s at now: its own budget has one, and
// so has the budget in all, where a source that had a cookie reply within lim.cookieQuiet
// must leave the reserve. With take, the reply is counted. Must hold h.mu.
func (h *handshakes) cookieLocked(s *source, now int64, take bool) bool {
	keep := h.glReserve
	if s.lastCookie <= now-int64(h.lim.cookieQuiet) {
		keep = 0
	}
	if !s.cookie.has(now, h.ckCost, h.ckMax) || !h.cookies.has(now, h.glCost+keep, h.glMax) {
		return false
	}
	if take {
		s.cookie.take(now, h.ckCost, h.ckMax)
		h.cookies.take(now, h.glCost, h.glMax)
		s.lastCookie = now
	}
	return true
}

// renewLocked keeps the Mux under load until until. Must hold h.mu.
func (h *handshakes) renewLocked(until int64) {
	if until > h.underLoadUntil.Load() {
		h.underLoadUntil.Store(until)
	}
	h.unproven = 0
}

// addSourceLocked adds a source with full buckets, making room when the table is full. Must
// hold h.mu.
func (h *handshakes) addSourceLocked(key netip.Addr, now int64) *source {
	if len(h.sources) >= h.lim.maxSources {
		h.evictLocked()
	}
	s := &source{key: key, head: -1, tail: -1, lastCookie: math.MinInt64}
	s.hs = bucket{tokens: h.hsMax, last: now}
	s.cookie = bucket{tokens: h.ckMax, last: now}
	h.sources[key] = s
	return s
}

// evictLocked forgets the least recently seen of a few sources without initiations waiting
// (map iteration starts at a random place; at most queue of the table's sources have some
// waiting, and the table is larger). Must hold h.mu.
func (h *handshakes) evictLocked() {
	const sample = 8
	var victim *source
	seen := 0
	for _, s := range h.sources {
		if s.n > 0 {
			continue
		}
		if victim == nil || s.seen < victim.seen {
			victim = s
		}
		if seen++; seen == sample {
			break
		}
	}
	if victim != nil {
		delete(h.sources, victim.key)
		h.evictions++
	}
}

// sweepLocked forgets the sources idle for lim.sourceIdle (their buckets are full again).
// Must hold h.mu.
func (h *handshakes) sweepLocked(now int64) {
	h.lastSweep = now
	for k, s := range h.sources {
		if s.n == 0 && now-s.seen >= int64(h.lim.sourceIdle) {
			delete(h.sources, k)
		}
	}
}

// pushLocked queues msg from ep as s's newest initiation. When the queue is full, the source
// with the most waiting loses its oldest, unless that is s, which then loses this one. Must
// hold h.mu.
func (h *handshakes) pushLocked(s *source, msg []byte, ep conn.Endpoint) (verdict, bool) {
	pushedOut := false
	if h.free < 0 {
		if h.fat == nil || h.fat.n <= s.n+1 { // it may be out of date: look
			h.fat = nil
			for o := h.rrHead; o != nil; o = o.next {
				if h.fat == nil || o.n > h.fat.n {
					h.fat = o
				}
			}
		}
		victim := h.fat
		if victim == nil || victim.n <= s.n+1 { // taking from it would leave it fewer than s
			return dropQueueFull, false
		}
		h.popLocked(victim)
		pushedOut = true
	}
	i := h.free
	sl := &h.slots[i]
	h.free = sl.next
	copy(sl.msg[:], msg)
	sl.ep, sl.next = ep, -1
	if s.tail >= 0 {
		h.slots[s.tail].next = i
	} else {
		s.head = i
	}
	s.tail = i
	s.n++
	h.queued++
	if h.fat == nil || s.n > h.fat.n {
		h.fat = s
	}
	if !s.listed {
		s.listed, s.next = true, nil
		if h.rrTail != nil {
			h.rrTail.next = s
		} else {
			h.rrHead = s
		}
		h.rrTail = s
	}
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return admit, pushedOut
}

// popLocked takes s's oldest initiation out of the queue (s must have one) and returns its
// slot, which stays valid until the next push. s stays in the round-robin list where it is.
// Must hold h.mu.
func (h *handshakes) popLocked(s *source) *slot {
	i := s.head
	sl := &h.slots[i]
	s.head = sl.next
	if s.head < 0 {
		s.tail = -1
	}
	s.n--
	h.queued--
	sl.next = h.free
	h.free = i
	if s.n == 0 && h.fat == s {
		h.fat = nil
	}
	return sl
}

// take copies the next initiation in round-robin order into msg and returns its endpoint; ok
// is false when none waits.
func (h *handshakes) take(msg *[initiationSize]byte) (ep conn.Endpoint, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.rrHead != nil {
		s := h.rrHead
		h.rrHead = s.next
		if h.rrHead == nil {
			h.rrTail = nil
		}
		s.next, s.listed = nil, false
		if s.n == 0 { // pushed out meanwhile
			continue
		}
		sl := h.popLocked(s)
		*msg = sl.msg
		ep, sl.ep = sl.ep, nil
		if s.n > 0 {
			s.listed = true
			if h.rrTail != nil {
				h.rrTail.next = s
			} else {
				h.rrHead = s
			}
			h.rrTail = s
		}
		if h.queued > 0 { // let another worker take the next one
			select {
			case h.wake <- struct{}{}:
			default:
			}
		}
		return ep, true
	}
	return nil, false
}

// hsState is what status shows of admission.
type hsState struct {
	queued, sources int
	evictions       uint64
}

func (h *handshakes) state() hsState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return hsState{queued: h.queued, sources: len(h.sources), evictions: h.evictions}
}
