package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/popgate/popgate/store"
)

// Messages of the sign-in page. A wrong name and a wrong password read the same.
const (
	msgWrongCredentials = "wrong admin name or password"
	msgBusy             = "the server is busy checking other sign-ins: try again in a moment"
	msgDisabled         = "this admin is disabled: ask an owner to enable it"
	msgNeedCode         = "enter the 6-digit code from your authenticator app"
	msgWrongCode        = "the one-time code is wrong or was used already: enter the current code from your authenticator app"
	msgInternal         = "signing in failed on the server: try again (details in the popgate serve log)"
)

// tooMany is the message for a refused attempt, with the wait rounded up to minutes.
func tooMany(wait time.Duration) string {
	m := int((wait + time.Minute - 1) / time.Minute)
	if m <= 1 {
		return "too many attempts: try again in 1 minute"
	}
	return fmt.Sprintf("too many attempts: try again in %d minutes", m)
}

// loginPage shows the sign-in form, or sends a signed-in admin on.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if p := s.sessionPrincipal(w, r); p != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.pages.RenderLogin(w, r, http.StatusOK, LoginPage{Next: next})
}

// login handles the sign-in form: name, password, totp (when the admin has TOTP on), next.
//
// Order matters: the address's attempt budget first (it bounds everything after it), then the
// account's lockout (before any hashing), then the password (in a bounded pool of hashing
// slots), then the one-time code. Failures count towards the lockout; success starts a new
// session with a new token.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := readForm(w, r); err != nil {
		s.pages.RenderLogin(w, r, http.StatusBadRequest, LoginPage{Error: "the sign-in form was too large or malformed: reload the page and try again"})
		return
	}
	f := r.PostForm
	name := strings.ToLower(strings.TrimSpace(f.Get("name")))
	password, code := f.Get("password"), strings.ReplaceAll(f.Get("totp"), " ", "")
	page := LoginPage{Next: safeNext(f.Get("next"))}
	fail := func(status int, msg string) {
		page.Error = msg
		s.pages.RenderLogin(w, r, status, page)
	}
	if len(name) > 64 || len(password) > store.MaxPasswordLen || len(code) > 16 {
		fail(http.StatusBadRequest, fmt.Sprintf("the name or password is too long: a name has at most 64 characters, a password at most %d bytes", store.MaxPasswordLen))
		return
	}
	page.Name = name
	if name == "" || password == "" {
		fail(http.StatusBadRequest, "enter your admin name and password")
		return
	}
	ctx := r.Context()
	now := s.now()
	if ok, wait, first := s.limiter.allow(ipKey(r), now); !ok {
		if first { // one entry per blocked address and window, not one per attempt
			s.audit(r, name, "signin.limited", store.AdminTarget(name), "too many attempts from this address")
		}
		fail(http.StatusTooManyRequests, tooMany(wait))
		return
	}

	a, err := s.ctrl.Admin(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Spend the time a wrong password would, so that names cannot be told apart.
		if err := s.withHashSlot(ctx, func() { s.ctrl.CheckAdminPassword(ctx, name, password) }); err != nil {
			fail(http.StatusServiceUnavailable, msgBusy)
			return
		}
		s.audit(r, name, "signin.failed", store.AdminTarget(name), "no such admin")
		fail(http.StatusUnauthorized, msgWrongCredentials)
		return
	case err != nil:
		s.log.Error("sign-in: cannot read admin", "err", err)
		fail(http.StatusInternalServerError, msgInternal)
		return
	case a.Locked(now):
		fail(http.StatusTooManyRequests, tooMany(a.LockedUntil.Sub(now)))
		return
	}

	var ok bool
	if herr := s.withHashSlot(ctx, func() { _, ok, err = s.ctrl.CheckAdminPassword(ctx, name, password) }); herr != nil {
		fail(http.StatusServiceUnavailable, msgBusy)
		return
	}
	if err != nil {
		s.log.Error("sign-in: cannot check the password", "admin", name, "err", err)
		fail(http.StatusInternalServerError, msgInternal)
		return
	}
	if !ok {
		s.signInFailed(w, r, a, "wrong password", &page)
		return
	}
	if a.Disabled {
		s.audit(r, name, "signin.refused", store.AdminTarget(name), "admin is disabled")
		fail(http.StatusForbidden, msgDisabled)
		return
	}
	if a.TOTPEnabled {
		page.NeedTOTP = true
		if code == "" {
			fail(http.StatusOK, msgNeedCode)
			return
		}
		valid, err := s.useTOTP(ctx, a.ID, code, now)
		if err != nil {
			s.log.Error("sign-in: cannot check the one-time code", "admin", name, "err", err)
			fail(http.StatusInternalServerError, msgInternal)
			return
		}
		if !valid {
			s.signInFailed(w, r, a, "wrong or reused one-time code", &page)
			return
		}
	}

	// Success. The session the browser may have brought (another admin's, a planted one)
	// ends; the new one gets a new token.
	if old, ok := s.session(w, r); ok {
		if err := s.ctrl.DeleteSession(ctx, old.ID); err != nil {
			s.log.Warn("cannot end the previous session", "err", err)
		}
	}
	if err := s.startSession(ctx, w, r, a); err != nil {
		s.log.Error("sign-in: cannot start a session", "admin", name, "err", err)
		fail(http.StatusInternalServerError, msgInternal)
		return
	}
	if err := s.ctrl.RecordSignIn(ctx, a.ID, now); err != nil {
		s.log.Warn("cannot record a sign-in", "admin", name, "err", err)
	}
	p := &Principal{AdminID: a.ID, Name: a.Name, Role: Role(a.Role), Tenant: a.TenantName}
	s.Audit(r.WithContext(WithPrincipal(ctx, p)), "signin", store.AdminTarget(a.Name), "")
	http.Redirect(w, r, page.Next, http.StatusSeeOther)
}

// signInFailed counts a failed sign-in of a, records it and answers: 429 when this failure
// locked the admin, 401 otherwise.
func (s *Server) signInFailed(w http.ResponseWriter, r *http.Request, a store.Admin, why string, page *LoginPage) {
	now := s.now()
	after, err := s.ctrl.RecordSignInFailure(r.Context(), a.ID, now, maxFailures, lockFor)
	if err != nil {
		s.log.Error("cannot count a failed sign-in", "admin", a.Name, "err", err)
	}
	s.audit(r, a.Name, "signin.failed", store.AdminTarget(a.Name), why)
	if err == nil && after.Locked(now) {
		s.audit(r, a.Name, "signin.locked", store.AdminTarget(a.Name), fmt.Sprintf("%d failed attempts: locked until %s", maxFailures, after.LockedUntil.UTC().Format(time.RFC3339)))
		page.Error = tooMany(after.LockedUntil.Sub(now))
		s.pages.RenderLogin(w, r, http.StatusTooManyRequests, *page)
		return
	}
	page.Error = msgWrongCredentials
	if page.NeedTOTP {
		page.Error = msgWrongCode
	}
	s.pages.RenderLogin(w, r, http.StatusUnauthorized, *page)
}

// errBusy: no hashing slot came free in time.
var errBusy = errors.New("busy")

// withHashSlot runs fn, which checks a password, in one of the bounded hashing slots. It
// returns errBusy when too many requests queue or none came free within hashWait, and the
// context's error when the client went away.
func (s *Server) withHashSlot(ctx context.Context, fn func()) error {
	defer s.hashWaiting.Add(-1)
	if s.hashWaiting.Add(1) > maxHashWaiters {
		return errBusy
	}
	t := time.NewTimer(s.hashWait)
	defer t.Stop()
	select {
	case s.hashSem <- struct{}{}:
	case <-t.C:
		return errBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.hashSem }()
	fn()
	return nil
}

// remoteAddr is the client's IP address (no proxy headers are trusted).
func remoteAddr(r *http.Request) string {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	if r.RemoteAddr == "" || r.RemoteAddr == "@" {
		return "control socket"
	}
	return r.RemoteAddr
}

// ipKey is the key of the client's address in the attempt limiter: the IPv4 address, or the
// IPv6 /64, which one user easily owns whole.
func ipKey(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// attemptLimiter allows max attempts per key in each fixed window.
type attemptLimiter struct {
	max    int
	window time.Duration

	mu sync.Mutex
	m  map[string]*attemptWindow // guarded by mu
}

type attemptWindow struct {
	start time.Time
	n     int
}

// maxLimiterKeys bounds the limiter's memory: past it, expired windows are dropped at once.
const maxLimiterKeys = 100_000

func newAttemptLimiter(max int, window time.Duration) *attemptLimiter {
	return &attemptLimiter{max: max, window: window, m: map[string]*attemptWindow{}}
}

// allow counts an attempt of key at now and reports whether it may go ahead; when not, wait
// is the time until the window ends and first whether this is the window's first refusal.
func (l *attemptLimiter) allow(key string, now time.Time) (ok bool, wait time.Duration, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.m[key]
	if w == nil || !now.Before(w.start.Add(l.window)) {
		if w == nil && len(l.m) >= maxLimiterKeys {
			l.pruneLocked(now)
		}
		w = &attemptWindow{start: now}
		l.m[key] = w
	}
	w.n++
	if w.n <= l.max {
		return true, 0, false
	}
	return false, w.start.Add(l.window).Sub(now), w.n == l.max+1
}

// prune drops the windows that ended before now.
func (l *attemptLimiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
}

func (l *attemptLimiter) pruneLocked(now time.Time) {
	for k, w := range l.m {
		if !now.Before(w.start.Add(l.window)) {
			delete(l.m, k)
		}
	}
}
