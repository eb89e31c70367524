package gateway

import (
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
//   - Under load (see muxUnderLoadQueued) an initiation needs a valid mac2, proof that its
//     sender receives at its source address; the others get a cookie reply (as wireguard-go's
//     devices do), at a bounded rate per source and in all.
//   - Each source (an IPv4 address, or the /64 of an IPv6 one) has a token bucket: under load
//     it may have muxSourceRate initiations a second decrypted; more put the Mux under load.
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
	// muxHandshakeQueue bounds the initiations waiting for the handshake workers, over all
	// sources: 512 × 148 bytes.
	muxHandshakeQueue = 512
	// muxUnderLoadQueued initiations waiting put the Mux under load, and it stays so for
	// muxUnderLoadFor after that last happened: wireguard-go's own thresholds
	// (QueueHandshakeSize/8, UnderLoadAfterTime). A source over its rate, or muxUnderLoadQueued
	// initiations refused for want of mac2 since the last time, renew it.
	muxUnderLoadQueued = 128
	muxUnderLoadFor    = time.Second
	// muxSourceRate and muxSourceBurst: initiations a second (and at once) one source may have
	// decrypted while under load; a source that sends more puts the Mux under load. 100 a
	// second is ≈ 0.6 % of a core of X25519s, and lets ≈ 500 users behind one NAT address in
	// per 5-s retry round of their clients.
	muxSourceRate  = 100
	muxSourceBurst = 100
	// muxCookieSourceRate and muxCookieSourceBurst bound the cookie replies to one source;
	// muxCookieRate and muxCookieBurst those to all (a cookie reply costs a BLAKE2s, an
	// XChaCha20-Poly1305 seal and a send: 20,000 a second are ≈ 10 % of a core).
	muxCookieSourceRate  = 100
	muxCookieSourceBurst = 100
	muxCookieRate        = 20000
	muxCookieBurst       = 2000
	// muxMaxSources bounds the table of sources (≈ 150 bytes each); beyond it the least
	// recently seen of a small sample without initiations waiting is forgotten.
	muxMaxSources = 8192
	// muxSourceIdle: a source unseen this long has full buckets again and is forgotten at the
	// next sweep, which runs at most every muxSourceSweepEvery.
	muxSourceIdle       = 2 * time.Second
	muxSourceSweepEvery = 10 * time.Second
)

// muxVerdict is what admission decided for one initiation.
type muxVerdict uint8

const (
	muxAdmit             muxVerdict = iota // queued for the handshake workers
	muxDropQueueFull                       // admitted, but the queue was full and it was the one to go
	muxSendCookie                          // under load without a valid mac2: answer with a cookie reply
	muxDropCookieLimited                   // as muxSendCookie, but the cookie replies' rate is spent: dropped
	muxDropRateLimited                     // under load with a mac2, but its source is over its rate: dropped
	muxNeedMAC2                            // under load, and the caller did not check mac2: check it and offer again
)

func (v muxVerdict) String() string {
	switch v {
	case muxAdmit:
		return "admitted"
	case muxDropQueueFull:
		return "queue_full"
	case muxSendCookie:
		return "cookie"
	case muxDropCookieLimited:
		return "cookie_limited"
	case muxDropRateLimited:
		return "rate_limited"
	case muxNeedMAC2:
		return "need_mac2"
	}
	return "unknown"
}

// muxMAC2 is what the caller of offer knows about an initiation's mac2.
type muxMAC2 uint8

const (
	muxMAC2Unchecked muxMAC2 = iota
	muxMAC2Valid
	muxMAC2Invalid
)

// muxBucket is a token bucket whose tokens are nanoseconds of credit, as in wireguard-go's
// ratelimiter: each use costs cost, and at most limit accumulates.
type muxBucket struct {
	tokens int64
	last   int64 // UnixNano of the last refill
}

// take refills b to now and takes one use if there is one.
func (b *muxBucket) take(now, cost, limit int64) bool {
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
func (b *muxBucket) has(now, cost, limit int64) bool {
	return min(b.tokens+max(now-b.last, 0), limit) >= cost
}

// muxSource is one source's state: its buckets and the initiations it has waiting (a FIFO of
// slots).
type muxSource struct {
	key        netip.Addr
	seen       int64 // UnixNano of its last initiation
	hs, cookie muxBucket
	head, tail int32      // slots, -1 when none waits
	n          int32      // initiations waiting
	next       *muxSource // in the round-robin list
	listed     bool       // in the round-robin list (n > 0)
}

// muxSlot holds one waiting initiation; next links the slots of one source, or the free ones.
type muxSlot struct {
	msg  [muxInitiationSize]byte
	ep   conn.Endpoint
	next int32
}

// muxHSLimits are the tunables of muxHandshakes; fields of it so that tests can shrink them.
type muxHSLimits struct {
	queue           int           // muxHandshakeQueue
	underLoadQueued int           // muxUnderLoadQueued
	underLoadFor    time.Duration // muxUnderLoadFor
	sourceRate      int           // muxSourceRate, per second
	sourceBurst     int           // muxSourceBurst
	cookieSrcRate   int           // muxCookieSourceRate
	cookieSrcBurst  int           // muxCookieSourceBurst
	cookieRate      int           // muxCookieRate
	cookieBurst     int           // muxCookieBurst
	maxSources      int           // muxMaxSources
	sourceIdle      time.Duration // muxSourceIdle
	sweepEvery      time.Duration // muxSourceSweepEvery
}

func muxDefaultHSLimits() muxHSLimits {
	return muxHSLimits{
		queue: muxHandshakeQueue, underLoadQueued: muxUnderLoadQueued, underLoadFor: muxUnderLoadFor,
		sourceRate: muxSourceRate, sourceBurst: muxSourceBurst,
		cookieSrcRate: muxCookieSourceRate, cookieSrcBurst: muxCookieSourceBurst,
		cookieRate: muxCookieRate, cookieBurst: muxCookieBurst,
		maxSources: muxMaxSources, sourceIdle: muxSourceIdle, sweepEvery: muxSourceSweepEvery,
	}
}

// muxHandshakes admits initiations and queues them per source for the handshake workers. Its
// methods are safe for concurrent use; times are UnixNano of the Mux's clock.
type muxHandshakes struct {
	lim                                  muxHSLimits
	hsCost, hsMax, ckCost, ckMax, glCost int64 // bucket parameters, from lim
	glMax                                int64

	// underLoadUntil is the UnixNano until which initiations need mac2; read without mu by
	// the receive path to decide whether to check mac2 before it offers.
	underLoadUntil atomic.Int64
	// wake has a token when initiations may be waiting for a worker.
	wake chan struct{}

	mu        sync.Mutex // guards the fields below
	slots     []muxSlot
	free      int32 // first free slot, -1 when none
	queued    int
	sources   map[netip.Addr]*muxSource
	rrHead    *muxSource // the round-robin list: sources with initiations waiting, next served first
	rrTail    *muxSource
	fat       *muxSource // the source with the most waiting, or close to it
	cookies   muxBucket  // all cookie replies
	unproven  int        // initiations refused for want of mac2 since underLoadUntil was last renewed
	lastSweep int64
	evictions uint64
}

func newMuxHandshakes(lim muxHSLimits) *muxHandshakes {
	perSec := func(rate int) int64 { return int64(time.Second) / int64(max(rate, 1)) }
	h := &muxHandshakes{
		lim:     lim,
		hsCost:  perSec(lim.sourceRate),
		ckCost:  perSec(lim.cookieSrcRate),
		glCost:  perSec(lim.cookieRate),
		wake:    make(chan struct{}, 1),
		slots:   make([]muxSlot, lim.queue),
		sources: map[netip.Addr]*muxSource{},
	}
	h.hsMax = h.hsCost * int64(max(lim.sourceBurst, 1))
	h.ckMax = h.ckCost * int64(max(lim.cookieSrcBurst, 1))
	h.glMax = h.glCost * int64(max(lim.cookieBurst, 1))
	h.cookies.tokens = h.glMax
	h.resetLocked()
	return h
}

// resetLocked empties the queue (the initiations waiting are forgotten). Must hold h.mu, or
// own h.
func (h *muxHandshakes) resetLocked() {
	for i := range h.slots {
		h.slots[i] = muxSlot{next: int32(i + 1)}
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
func (h *muxHandshakes) reset() {
	h.mu.Lock()
	h.resetLocked()
	h.mu.Unlock()
}

// muxSourceKey is what initiations are limited by: the address, or for IPv6 its /64 (one
// subscriber's usual share).
func muxSourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a.WithZone("")
}

// underLoad reports whether initiations need mac2 at now (without renewing anything).
func (h *muxHandshakes) underLoad(now int64) bool { return h.underLoadUntil.Load() > now }

// offer decides about the initiation msg (muxInitiationSize bytes, mac1 valid) from ep at
// now, and queues it when admitted. mac2 says whether the caller checked mac2; under load
// without that, offer returns muxNeedMAC2 and changes nothing. muxSendCookie means: send a cookie
// reply (the budget for it is taken). pushedOut is true when another source's oldest
// initiation was dropped to make room (muxAdmit) — a queue_full drop all the same.
func (h *muxHandshakes) offer(now int64, msg []byte, ep conn.Endpoint, mac2 muxMAC2) (v muxVerdict, pushedOut bool) {
	key := muxSourceKey(ep.DstIP())
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
		case muxMAC2Unchecked:
			return muxNeedMAC2, false
		case muxMAC2Invalid:
			if h.unproven++; h.unproven >= h.lim.underLoadQueued {
				h.renewLocked(until)
			}
			if s.cookie.has(now, h.ckCost, h.ckMax) && h.cookies.take(now, h.glCost, h.glMax) {
				s.cookie.take(now, h.ckCost, h.ckMax)
				return muxSendCookie, false
			}
			return muxDropCookieLimited, false
		}
		if over {
			return muxDropRateLimited, false
		}
	}
	s.hs.take(now, h.hsCost, h.hsMax)
	return h.pushLocked(s, msg, ep)
}

// shed decides, under load and before any MAC is checked, about an initiation from ep: one
// from a known source that would be dropped whatever its MACs say is dropped here, which
// spares the BLAKE2s of mac1 and mac2 for most of a flood. That is a source over its rate
// whose initiation carries a mac2 (valid: rate-limited; not valid: a stale or forged cookie,
// which gets no new cookie while its source is over its rate), or one that carries none when
// no cookie reply may be sent to that source. ok false: check mac1, then offer.
func (h *muxHandshakes) shed(now int64, ep conn.Endpoint, mac2Zero bool) (v muxVerdict, ok bool) {
	if !h.underLoad(now) {
		return 0, false
	}
	key := muxSourceKey(ep.DstIP())
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sources[key]
	if s == nil {
		return 0, false
	}
	until := now + int64(h.lim.underLoadFor)
	if mac2Zero {
		if s.cookie.has(now, h.ckCost, h.ckMax) && h.cookies.has(now, h.glCost, h.glMax) {
			return 0, false
		}
		s.seen = now
		if h.unproven++; h.unproven >= h.lim.underLoadQueued {
			h.renewLocked(until)
		}
		return muxDropCookieLimited, true
	}
	if s.hs.has(now, h.hsCost, h.hsMax) {
		return 0, false
	}
	s.seen = now
	h.renewLocked(until)
	return muxDropRateLimited, true
}

// renewLocked keeps the Mux under load until until. Must hold h.mu.
func (h *muxHandshakes) renewLocked(until int64) {
	if until > h.underLoadUntil.Load() {
		h.underLoadUntil.Store(until)
	}
	h.unproven = 0
}

// addSourceLocked adds a source with full buckets, making room when the table is full. Must
// hold h.mu.
func (h *muxHandshakes) addSourceLocked(key netip.Addr, now int64) *muxSource {
	if len(h.sources) >= h.lim.maxSources {
		h.evictLocked()
	}
	s := &muxSource{key: key, head: -1, tail: -1}
	s.hs = muxBucket{tokens: h.hsMax, last: now}
	s.cookie = muxBucket{tokens: h.ckMax, last: now}
	h.sources[key] = s
	return s
}

// evictLocked forgets the least recently seen of a few sources without initiations waiting
// (map iteration starts at a random place; at most queue of the table's sources have some
// waiting, and the table is larger). Must hold h.mu.
func (h *muxHandshakes) evictLocked() {
	const sample = 8
	var victim *muxSource
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
func (h *muxHandshakes) sweepLocked(now int64) {
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
func (h *muxHandshakes) pushLocked(s *muxSource, msg []byte, ep conn.Endpoint) (muxVerdict, bool) {
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
			return muxDropQueueFull, false
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
	return muxAdmit, pushedOut
}

// popLocked takes s's oldest initiation out of the queue (s must have one) and returns its
// slot, which stays valid until the next push. s stays in the round-robin list where it is.
// Must hold h.mu.
func (h *muxHandshakes) popLocked(s *muxSource) *muxSlot {
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
func (h *muxHandshakes) take(msg *[muxInitiationSize]byte) (ep conn.Endpoint, ok bool) {
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

// muxHSState is what status shows of admission.
type muxHSState struct {
	queued, sources int
	evictions       uint64
}

func (h *muxHandshakes) state() muxHSState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return muxHSState{queued: h.queued, sources: len(h.sources), evictions: h.evictions}
}
