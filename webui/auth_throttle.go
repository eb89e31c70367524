package webui

import (
	"sync"
	"time"
)

// Sign-in throttling.
//
// Failed password and one-time-code checks slow down the address that made them, never the
// admin they were aimed at: with an account-wide lock, anyone who knows an admin's name (the
// first one is always "admin") could keep it locked out for ever at one guess a minute.
//
//   - Per address and admin: pairFree failures, then the address must wait throttleBase before
//     its next attempt at that admin, twice as long after each further failure, at most
//     throttleMax. A success, or a new password for the admin, forgets them.
//   - Per address overall: addrFree failures at any admins (names that do not exist
//     included), then the same back-off for every attempt from the address, so that it
//     cannot spread its guesses over many names.
//
// An address (an IPv6 /64, see ipKey) with no failures is never refused. There is no
// account-wide throttle against guessing from many addresses at once, on purpose: any lock or
// delay that all addresses share is again a lock the attacker controls. What bounds
// distributed guessing instead: the back-off above caps each address at about 24 guesses a
// day once it has used its free ones; every password check is an argon2id hash, and at most a
// few run at once for the whole server (hashSem), a few dozen a second (BenchmarkHashPassword
// in store; BENCHMARKS.md); passwords have at least 12 characters and generated ones 118 bits;
// TOTP makes a guessed password useless alone. The
// store counts an admin's failures since its last success for owners to see
// (Admin.FailedSignIns), and the log warns when the count crosses 20, 100, 1,000, ...
//
// The table lives in memory: a restart forgets it (an attacker cannot restart the server).
// Its size is bounded; when full, the entry used least recently is dropped, in constant time.
const (
	pairFree = 5  // failures of one address at one admin before it waits
	addrFree = 20 // failures of one address at any admins before it waits

	throttleBase   = 5 * time.Minute
	throttleMax    = time.Hour
	throttleForget = 24 * time.Hour // after the last failure, an entry is forgotten

	// maxThrottleEntries bounds the table: an address that fails takes two entries (itself,
	// and itself at the admin name it tried), ~280 bytes each, so ~14 MiB at most. Dropping
	// entries when more addresses fail helps no attacker: each new address has its free
	// failures anyway.
	maxThrottleEntries = 50_000
)

// backoff says how long an address waits after failing.
type backoff struct {
	free int           // failures allowed before the first wait
	base time.Duration // the first wait
	max  time.Duration // the longest wait
}

// waitAfter is the wait that the failures-th failure starts: 0 while failures < free, then
// base, doubling with every further failure up to max.
func (b backoff) waitAfter(failures int) time.Duration {
	if failures < b.free {
		return 0
	}
	d := b.base
	for i := b.free; i < failures && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// throttleKey names an entry: an address at one admin, or (admin "") an address overall.
type throttleKey struct {
	addr  string // ipKey of the client
	admin string
}

type throttleEntry struct {
	key      throttleKey
	failures int
	last     time.Time // of the last failure
	until    time.Time // attempts are refused before it
	// pwSetAt is the admin's password_set_at when the failures were counted: failures
	// against an older password are forgotten.
	pwSetAt time.Time
	// refused: an attempt was refused since until was last moved.
	refused bool
	// pending counts the attempts begin let through that have not ended yet.
	pending int

	prev, next *throttleEntry // in the recency list, guarded by signinThrottle.mu
}

// signinThrottle keeps the failures of addresses and refuses their attempts while they wait.
// Its methods are safe for concurrent use; each takes constant time.
type signinThrottle struct {
	pair, addr backoff
	forget     time.Duration
	max        int // entries at most

	mu      sync.Mutex
	entries map[throttleKey]*throttleEntry // guarded by mu
	// recent is the sentinel of a circular list of the entries, most recently used first
	// (recent.next) to least (recent.prev). Guarded by mu.
	recent throttleEntry
}

func newSigninThrottle(pair, addr backoff, forget time.Duration, max int) *signinThrottle {
	t := &signinThrottle{pair: pair, addr: addr, forget: forget, max: max, entries: map[throttleKey]*throttleEntry{}}
	t.recent.next, t.recent.prev = &t.recent, &t.recent
	return t
}

func newDefaultSigninThrottle() *signinThrottle {
	return newSigninThrottle(backoff{pairFree, throttleBase, throttleMax}, backoff{addrFree, throttleBase, throttleMax},
		throttleForget, maxThrottleEntries)
}

// check reports how long the address of k must still wait at now before it may try (0: it
// may), and whether this is the first refusal since that wait began. For an entry of an
// address at an admin, pwSetAt is the admin's password_set_at (zero for a name that does not
// exist). It reserves nothing: begin does.
func (t *signinThrottle) check(k throttleKey, pwSetAt, now time.Time) (wait time.Duration, first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[k]
	if e == nil {
		return 0, false
	}
	t.refreshLocked(e, pwSetAt, now)
	t.moveToFrontLocked(e)
	return e.refuseLocked(now)
}

// refuseLocked returns the wait of e at now and whether this is its first refusal.
func (e *throttleEntry) refuseLocked(now time.Time) (time.Duration, bool) {
	if !now.Before(e.until) {
		return 0, false
	}
	first := !e.refused
	e.refused = true
	return e.until.Sub(now), first
}

// busyWait is the wait begin answers while another attempt of the address decides whether
// it must wait: that takes a password hash, well under a second.
const busyWait = time.Second

// attempt is a check of a password or one-time code that begin let through. Exactly one of
// fail, succeed and end closes it; later calls do nothing, so callers may defer end.
type attempt struct {
	t           *signinThrottle
	addr, admin string
	pwSetAt     time.Time
	done        bool
}

// begin lets an attempt of addr at admin through at now, or reports how long the address
// must wait and whether this is the first refusal since that wait began (pwSetAt as for
// check). It refuses while the address waits at the admin or overall, and also while
// attempts under way would start a wait if they failed: parallel attempts get no more
// guesses than attempts one after another.
func (t *signinThrottle) begin(addr, admin string, pwSetAt, now time.Time) (*attempt, time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := [2]throttleKey{{addr, admin}, {addr, ""}}
	pw := [2]time.Time{pwSetAt, {}}
	bs := [2]backoff{t.pair, t.addr}
	for i, k := range keys {
		e := t.entries[k]
		if e == nil {
			continue
		}
		t.refreshLocked(e, pw[i], now)
		t.moveToFrontLocked(e)
		if wait, first := e.refuseLocked(now); wait > 0 {
			return nil, wait, first
		}
		if e.pending > 0 && bs[i].waitAfter(e.failures+e.pending) > 0 {
			return nil, busyWait, false
		}
	}
	for i, k := range keys {
		t.entryLocked(k, pw[i]).pending++
	}
	return &attempt{t: t, addr: addr, admin: admin, pwSetAt: pwSetAt}, 0, false
}

// entryLocked returns the entry of k, making it (and dropping the least recently used one
// when the table is full) when there is none, and moves it to the front.
func (t *signinThrottle) entryLocked(k throttleKey, pwSetAt time.Time) *throttleEntry {
	e := t.entries[k]
	if e == nil {
		if len(t.entries) >= t.max {
			t.removeLocked(t.recent.prev) // the least recently used
		}
		e = &throttleEntry{key: k, pwSetAt: pwSetAt}
		t.entries[k] = e
	}
	t.moveToFrontLocked(e)
	return e
}

// fail closes the attempt as a failure at now. It returns the waits this failure started for
// the address at the admin and for the address overall, 0 for none.
func (a *attempt) fail(now time.Time) (pairWait, addrWait time.Duration) {
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.done {
		return 0, 0
	}
	a.done = true
	pairWait = t.failLocked(throttleKey{a.addr, a.admin}, t.pair, a.pwSetAt, now)
	addrWait = t.failLocked(throttleKey{a.addr, ""}, t.addr, time.Time{}, now)
	return pairWait, addrWait
}

func (t *signinThrottle) failLocked(k throttleKey, b backoff, pwSetAt, now time.Time) time.Duration {
	e := t.entries[k]
	if e != nil {
		t.refreshLocked(e, pwSetAt, now)
	}
	e = t.entryLocked(k, pwSetAt)
	e.pending = max(0, e.pending-1)
	e.failures++
	e.last = now
	wait := b.waitAfter(e.failures)
	if wait > 0 {
		e.until, e.refused = now.Add(wait), false
	}
	return wait
}

// succeed closes the attempt as a success: the failures of the address at the admin are
// forgotten. Those of the address overall stay: a success at one admin says nothing about
// its guesses at others.
func (a *attempt) succeed() {
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	if e := t.entries[throttleKey{a.addr, a.admin}]; e != nil {
		t.removeLocked(e)
	}
	t.releaseLocked(throttleKey{a.addr, ""})
}

// end closes the attempt as neither a success nor a failure (the check could not run, or
// needs a one-time code first), unless it is closed already.
func (a *attempt) end() {
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	t.releaseLocked(throttleKey{a.addr, a.admin})
	t.releaseLocked(throttleKey{a.addr, ""})
}

// releaseLocked gives back an attempt under way of k, and drops k's entry when that leaves
// it empty.
func (t *signinThrottle) releaseLocked(k throttleKey) {
	e := t.entries[k]
	if e == nil {
		return
	}
	e.pending = max(0, e.pending-1)
	if e.pending == 0 && e.failures == 0 {
		t.removeLocked(e)
	}
}

// prune drops the entries forgotten at now, starting from the least recently used and
// stopping at the first one still remembered: it does work only for the entries it drops.
func (t *signinThrottle) prune(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for e := t.recent.prev; e != &t.recent && t.forgottenLocked(e, now); e = t.recent.prev {
		t.removeLocked(e)
	}
}

// len returns the number of entries.
func (t *signinThrottle) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

func (t *signinThrottle) forgottenLocked(e *throttleEntry, now time.Time) bool {
	return !now.Before(e.until) && now.Sub(e.last) >= t.forget && e.pending == 0
}

// refreshLocked forgets the failures of e when they are forgotten at now, or were counted
// against another password; attempts under way stay.
func (t *signinThrottle) refreshLocked(e *throttleEntry, pwSetAt, now time.Time) {
	if t.forgottenLocked(e, now) || e.key.admin != "" && !e.pwSetAt.Equal(pwSetAt) {
		*e = throttleEntry{key: e.key, pwSetAt: pwSetAt, pending: e.pending, prev: e.prev, next: e.next}
	}
}

func (t *signinThrottle) moveToFrontLocked(e *throttleEntry) {
	if e.prev != nil { // in the list
		e.prev.next, e.next.prev = e.next, e.prev
	}
	e.prev, e.next = &t.recent, t.recent.next
	t.recent.next.prev = e
	t.recent.next = e
}

func (t *signinThrottle) removeLocked(e *throttleEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(t.entries, e.key)
}
