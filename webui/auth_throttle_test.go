package webui

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// browserFrom is a browser whose connections come from the loopback address addr
// (127.0.0.0/8 is all loopback on Linux), so that the server sees another client address.
func (e *authEnv) browserFrom(addr string) *browser {
	b := e.browser()
	tr := e.ts.Client().Transport.(*http.Transport).Clone()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}}
	tr.DialContext = d.DialContext
	b.c.Transport = tr
	return b
}

// TestSignInAttackerCannotLockOutAdmin: an address that guesses the admin's password for
// ever, a guess a minute, never keeps the right password from another address out, and the
// admin's own successes do not let the guesser go faster.
func TestSignInAttackerCannotLockOutAdmin(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("admin", store.RoleOwner, "")
	attacker, owner := e.browserFrom("127.0.0.2"), e.browserFrom("127.0.0.3")
	refused, ownerAt := 0, -60
	for minute := range 6 * 60 {
		resp, body := attacker.signIn("admin", fmt.Sprintf("guess number %d", minute), "")
		switch resp.StatusCode {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			refused++
			// While the guesser has to wait, the admin signs in from elsewhere (not every
			// minute: each sign-in costs a password hash).
			if minute-ownerAt >= 20 {
				resp, body := owner.signIn("admin", authPassword, "")
				want(t, fmt.Sprintf("the admin's sign-in after %d minutes of guessing", minute), resp, body, http.StatusSeeOther)
				ownerAt = minute
			}
		default:
			t.Fatalf("guess %d: %d %s", minute, resp.StatusCode, body)
		}
		e.clock.Advance(time.Minute)
	}
	// 6 hours: 5 free guesses, then waits of 5, 10, 20, 40, 60, 60, ... minutes.
	if tried := 6*60 - refused; tried > 15 {
		t.Errorf("the attacker's address had %d guesses in 6 hours", tried)
	}
	e.clock.Advance(throttleMax)
	attacker.signIn("admin", "one more guess", "")
	if a, _ := e.store.Admin(context.Background(), "admin"); a.FailedSignIns == 0 {
		t.Error("the admin's failures since its last success are not counted")
	}
}

// TestSignInBackoff: one address failing at one admin waits longer after each failure past
// the free ones, up to the cap; refused attempts do not extend the wait; a name that does
// not exist is throttled the same; success forgets.
func TestSignInBackoff(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	for _, name := range []string{"root", "nobody"} {
		b := e.browserFrom("127.0.0.4")
		for i := 1; i < pairFree; i++ {
			resp, body := b.signIn(name, "wrong password!", "")
			want(t, fmt.Sprintf("%s: failure %d", name, i), resp, body, http.StatusUnauthorized, "wrong admin name or password")
		}
		for _, minutes := range []int{5, 10, 20, 40, 60, 60} {
			resp, body := b.signIn(name, "wrong password!", "")
			want(t, fmt.Sprintf("%s: the failure that starts a wait of %d minutes", name, minutes), resp, body, http.StatusTooManyRequests, fmt.Sprintf("try again in %d minutes", minutes))
			e.clock.Advance(time.Duration(minutes)*time.Minute - time.Second)
			resp, body = b.signIn(name, authPassword, "")
			want(t, fmt.Sprintf("%s: the right password a second early", name), resp, body, http.StatusTooManyRequests, "try again in 1 minute")
			e.clock.Advance(time.Second)
		}
		if name == "nobody" {
			continue
		}
		resp, body := b.signIn(name, authPassword, "")
		want(t, "the right password after the wait", resp, body, http.StatusSeeOther)
		resp, body = b.signIn(name, "wrong password!", "")
		want(t, "a failure after a success", resp, body, http.StatusUnauthorized, "wrong admin name or password")
	}
}

// TestSignInAddressBackoff: an address that spreads its guesses over many names waits after
// addrFree failures, for every name; other addresses do not.
func TestSignInAddressBackoff(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	b := e.browserFrom("127.0.0.5")
	for i := range addrFree {
		resp, body := b.signIn(fmt.Sprintf("user%d", i), "wrong password!", "")
		want(t, fmt.Sprintf("failure %d", i), resp, body, http.StatusUnauthorized)
	}
	resp, body := b.signIn("root", authPassword, "")
	want(t, "the right password from the address", resp, body, http.StatusTooManyRequests, "try again in 5 minutes")
	resp, body = e.browserFrom("127.0.0.6").signIn("root", authPassword, "")
	want(t, "another address", resp, body, http.StatusSeeOther)
	e.clock.Advance(throttleBase)
	resp, body = b.signIn("root", authPassword, "")
	want(t, "after the wait", resp, body, http.StatusSeeOther)
}

func TestBackoffWaits(t *testing.T) {
	b := backoff{free: 3, base: time.Minute, max: 10 * time.Minute}
	for failures, want := range []time.Duration{0, 0, 0, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute} {
		if got := b.waitAfter(failures); got != want {
			t.Errorf("waitAfter(%d) = %v, want %v", failures, got, want)
		}
	}
	if got := b.waitAfter(1 << 30); got != 10*time.Minute {
		t.Errorf("waitAfter(1<<30) = %v", got)
	}
}

// failOnce lets one attempt of addr at admin through th and fails it.
func failOnce(t *testing.T, th *signinThrottle, addr, admin string, pwSetAt, now time.Time) (pairWait, addrWait time.Duration) {
	t.Helper()
	at, wait, _ := th.begin(addr, admin, pwSetAt, now)
	if at == nil {
		t.Fatalf("attempt of %s at %q refused for %v", addr, admin, wait)
	}
	return at.fail(now)
}

// TestSigninThrottle walks one table through its rules.
func TestSigninThrottle(t *testing.T) {
	th := newSigninThrottle(backoff{2, time.Minute, time.Hour}, backoff{3, time.Minute, time.Hour}, 24*time.Hour, 100)
	t0 := time.Unix(1_000_000, 0)
	pw := t0.Add(-time.Hour) // the admin's password_set_at
	check := func(what string, k throttleKey, pwSetAt, now time.Time, wantWait time.Duration, wantFirst bool) {
		t.Helper()
		if wait, first := th.check(k, pwSetAt, now); wait != wantWait || first != wantFirst {
			t.Errorf("%s: check = %v, %v; want %v, %v", what, wait, first, wantWait, wantFirst)
		}
	}
	a, aAt := throttleKey{"192.0.2.1", ""}, throttleKey{"192.0.2.1", "root"}
	check("unknown address", a, time.Time{}, t0, 0, false)
	if p, w := failOnce(t, th, "192.0.2.1", "root", pw, t0); p != 0 || w != 0 {
		t.Errorf("first failure started waits %v, %v", p, w)
	}
	if p, w := failOnce(t, th, "192.0.2.1", "root", pw, t0); p != time.Minute || w != 0 {
		t.Errorf("second failure started waits %v, %v", p, w)
	}
	check("address at root", aAt, pw, t0.Add(10*time.Second), 50*time.Second, true)
	check("address at root again", aAt, pw, t0.Add(20*time.Second), 40*time.Second, false)
	check("address overall", a, time.Time{}, t0, 0, false)
	check("another address at root", throttleKey{"192.0.2.2", "root"}, pw, t0, 0, false)
	check("address at another admin", throttleKey{"192.0.2.1", "bob"}, pw, t0, 0, false)
	// A new password forgets the failures at root; the address's own stay.
	check("after a new password", aAt, t0, t0.Add(20*time.Second), 0, false)
	if _, w := failOnce(t, th, "192.0.2.1", "bob", time.Time{}, t0); w != time.Minute {
		t.Errorf("third failure of the address started a wait of %v", w)
	}
	check("address overall after 3", a, time.Time{}, t0.Add(30*time.Second), 30*time.Second, true)
	// Success at root forgets the address at root only.
	at, _, _ := th.begin("192.0.2.1", "root", pw, t0.Add(2*time.Minute))
	at.succeed()
	at.end() // does nothing after succeed
	if th.len() != 2 {
		t.Errorf("%d entries after success, want 2 (the address, the address at bob)", th.len())
	}
	// A day after the last failure everything is forgotten, and pruned.
	th.prune(t0.Add(23 * time.Hour))
	if th.len() != 2 {
		t.Errorf("%d entries pruned early", 2-th.len())
	}
	th.prune(t0.Add(24 * time.Hour))
	if th.len() != 0 {
		t.Errorf("%d entries after a day", th.len())
	}
}

// TestSigninThrottleBound: 200,000 addresses failing keep the table at its bound; what is
// dropped is what was used least recently, so a waiting guesser that keeps trying keeps its
// wait.
func TestSigninThrottleBound(t *testing.T) {
	const addrs, bound = 200_000, maxThrottleEntries
	th := newDefaultSigninThrottle()
	t0 := time.Unix(1_000_000, 0)
	guesser := "198.51.100.7"
	for range pairFree {
		failOnce(t, th, guesser, "admin", time.Time{}, t0)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range addrs {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)
		failOnce(t, th, ip, "admin", time.Time{}, t0.Add(time.Duration(i)*time.Millisecond))
		if i%1000 == 0 { // the guesser keeps trying while it waits
			if wait, _ := th.check(throttleKey{guesser, "admin"}, time.Time{}, t0.Add(time.Duration(i)*time.Millisecond)); wait == 0 {
				t.Fatalf("the guesser's wait was dropped after %d other addresses", i)
			}
		}
		if n := th.len(); n > bound {
			t.Fatalf("%d entries after %d addresses, bound %d", n, i+1, bound)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := th.len(); n != bound {
		t.Errorf("%d entries, want %d", n, bound)
	}
	// The oldest addresses went first, the newest (i = 199,999) are there.
	th.mu.Lock()
	_, newest := th.entries[throttleKey{"10.3.13.63", "admin"}]
	_, oldest := th.entries[throttleKey{"10.0.0.1", "admin"}]
	th.mu.Unlock()
	if !newest || oldest {
		t.Errorf("newest present %v, oldest present %v", newest, oldest)
	}
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d entries hold %d KiB of heap (%d bytes each)", bound, grew>>10, grew/bound)
}

// TestSigninThrottleParallel: attempts under way count against the free failures, so an
// address that sends many at once gets no more guesses than one that sends them one after
// another; attempts that end without failing give their place back.
func TestSigninThrottleParallel(t *testing.T) {
	th := newSigninThrottle(backoff{3, time.Minute, time.Hour}, backoff{10, time.Minute, time.Hour}, 24*time.Hour, 100)
	t0 := time.Unix(1_000_000, 0)
	var through []*attempt
	for range 10 {
		if at, wait, _ := th.begin("192.0.2.1", "root", time.Time{}, t0); at != nil {
			through = append(through, at)
		} else if wait != busyWait {
			t.Errorf("refused with a wait of %v, want %v", wait, busyWait)
		}
	}
	if len(through) != 3 {
		t.Fatalf("%d of 10 attempts at once got through, want 3", len(through))
	}
	through[0].end() // e.g. the hashing slots were busy: not a guess
	at, _, _ := th.begin("192.0.2.1", "root", time.Time{}, t0)
	if at == nil {
		t.Fatal("an ended attempt did not give its place back")
	}
	through[0] = at
	for _, at := range through {
		at.fail(t0)
	}
	if at, wait, _ := th.begin("192.0.2.1", "root", time.Time{}, t0); at != nil || wait != time.Minute {
		t.Errorf("after 3 failures: %v, %v", at, wait)
	}
	// After the wait, one attempt at a time.
	t1 := t0.Add(time.Minute)
	first, _, _ := th.begin("192.0.2.1", "root", time.Time{}, t1)
	second, wait, _ := th.begin("192.0.2.1", "root", time.Time{}, t1)
	if first == nil || second != nil || wait != busyWait {
		t.Errorf("after the wait: %v, %v (%v)", first, second, wait)
	}
	first.succeed()
	if th.len() != 1 { // the address's own entry, with its 3 failures
		t.Errorf("%d entries after the success", th.len())
	}
}

// TestSignInParallelGuesses: an address that sends many sign-ins at once, while the
// password checks queue, gets no more guesses than pairFree.
func TestSignInParallelGuesses(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	e.srv.hashSem = make(chan struct{}, 1)
	e.srv.hashSem <- struct{}{} // the checks queue until the test lets them run
	const n = 3 * pairFree
	codes := make(chan int, n)
	for i := range n {
		b := e.browserFrom("127.0.0.7")
		go func() {
			resp, _ := b.signIn("root", fmt.Sprintf("guess %d", i), "")
			codes <- resp.StatusCode
		}()
	}
	count := map[int]int{}
	for range n - pairFree { // the refused ones answer at once, without a check
		count[<-codes]++
	}
	<-e.srv.hashSem
	for range pairFree {
		count[<-codes]++
	}
	if count[http.StatusUnauthorized] != pairFree-1 || count[http.StatusTooManyRequests] != n-pairFree+1 {
		t.Errorf("answers %v: want %d wrong passwords and %d refusals", count, pairFree-1, n-pairFree+1)
	}
	if a, _ := e.store.Admin(context.Background(), "root"); a.FailedSignIns != pairFree {
		t.Errorf("%d passwords checked, want %d", a.FailedSignIns, pairFree)
	}
}
