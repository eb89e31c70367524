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
// few run at once for the whole server (hashSem), about 40 a second; passwords have at least
// 12 characters and generated ones 118 bits; TOTP makes a guessed password useless alone. The
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
// exist).
func (t *signinThrottle) check(k throttleKey, pwSetAt, now time.Time) (wait time.Duration, first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[k]
	if e == nil {
		return 0, false
	}
	t.refreshLocked(e, pwSetAt, now)
	t.moveToFrontLocked(e)
	if !now.Before(e.until) {
		return 0, false
	}
	first = !e.refused
	e.refused = true
	return e.until.Sub(now), first
}

// fail records a failed check of addr at admin at now (pwSetAt as for check). It returns
// the waits this failure started for the address at the admin and for the address overall,
// 0 for none.
func (t *signinThrottle) fail(addr, admin string, pwSetAt, now time.Time) (pairWait, addrWait time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pairWait = t.failLocked(throttleKey{addr, admin}, t.pair, pwSetAt, now)
	addrWait = t.failLocked(throttleKey{addr, ""}, t.addr, time.Time{}, now)
	return pairWait, addrWait
}

func (t *signinThrottle) failLocked(k throttleKey, b backoff, pwSetAt, now time.Time) time.Duration {
	e := t.entries[k]
	if e == nil {
		if len(t.entries) >= t.max {
			t.removeLocked(t.recent.prev) // the least recently used
		}
		e = &throttleEntry{key: k, pwSetAt: pwSetAt}
		t.entries[k] = e
	} else {
		t.refreshLocked(e, pwSetAt, now)
	}
	t.moveToFrontLocked(e)
	e.failures++
	e.last = now
	wait := b.waitAfter(e.failures)
	if wait > 0 {
		e.until, e.refused = now.Add(wait), false
	}
	return wait
}

// succeed forgets the failures of addr at admin. Those of the address overall stay: a
// success at one admin says nothing about its guesses at others.
func (t *signinThrottle) succeed(addr, admin string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[throttleKey{addr, admin}]; e != nil {
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
	return !now.Before(e.until) && now.Sub(e.last) >= t.forget
}

// refreshLocked starts e afresh when its failures are forgotten at now, or were counted
// against another password.
func (t *signinThrottle) refreshLocked(e *throttleEntry, pwSetAt, now time.Time) {
	if t.forgottenLocked(e, now) || e.key.admin != "" && !e.pwSetAt.Equal(pwSetAt) {
		*e = throttleEntry{key: e.key, pwSetAt: pwSetAt, prev: e.prev, next: e.next}
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
