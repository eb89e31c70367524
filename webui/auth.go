package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
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
// Order matters: the address's own wait first (it bounds everything after it, before any
// database read), then the throttle's leave for this attempt at this admin (before any
// hashing; a name that does not exist is throttled the same, so that names cannot be told
// apart), then the password (in a bounded pool of hashing slots), then the one-time code.
// Failures slow down this address (see signinThrottle), never the admin; success starts a
// new session with a new token.
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
	if wait, first := s.throttle.check(throttleKey{ipKey(r), ""}, time.Time{}, now); wait > 0 {
		if first { // one entry per wait, not one per attempt
			s.audit(r, name, "signin.limited", store.AdminTarget(name), "too many failed attempts from this address")
		}
		fail(http.StatusTooManyRequests, tooMany(wait))
		return
	}

	a, err := s.store.Admin(ctx, name)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("sign-in: cannot read admin", "err", err)
		fail(http.StatusInternalServerError, msgInternal)
		return
	}
	at, wait, first := s.throttle.begin(ipKey(r), name, a.PasswordSetAt, now)
	if at == nil {
		if first {
			s.audit(r, name, "signin.limited", store.AdminTarget(name), "too many failed attempts from this address")
		}
		fail(http.StatusTooManyRequests, tooMany(wait))
		return
	}
	defer at.end() // unless it failed or succeeded
	if !exists {
		// Spend the time a wrong password would, so that names cannot be told apart.
		if err := s.withHashSlot(ctx, func() { s.store.CheckAdminPassword(ctx, name, password) }); err != nil {
			fail(http.StatusServiceUnavailable, msgBusy)
			return
		}
		s.signInFailed(w, r, at, store.Admin{Name: name}, "no such admin", &page)
		return
	}

	var ok bool
	if herr := s.withHashSlot(ctx, func() { _, ok, err = s.store.CheckAdminPassword(ctx, name, password) }); herr != nil {
		fail(http.StatusServiceUnavailable, msgBusy)
		return
	}
	if err != nil {
		s.log.Error("sign-in: cannot check the password", "admin", name, "err", err)
		fail(http.StatusInternalServerError, msgInternal)
		return
	}
	if !ok {
		s.signInFailed(w, r, at, a, "wrong password", &page)
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
			s.signInFailed(w, r, at, a, "wrong or reused one-time code", &page)
			return
		}
	}

	// Success. The session the browser may have brought (another admin's, a planted one)
	// ends; the new one gets a new token.
	if old, ok := s.session(w, r); ok {
		if err := s.store.DeleteSession(ctx, old.ID); err != nil {
			s.log.Warn("cannot end the previous session", "err", err)
		}
	}
	if err := s.startSession(ctx, w, r, a); err != nil {
		s.log.Error("sign-in: cannot start a session", "admin", name, "err", err)
		fail(http.StatusInternalServerError, msgInternal)
		return
	}
	at.succeed()
	if err := s.store.RecordSignIn(ctx, a.ID, now); err != nil {
		s.log.Warn("cannot record a sign-in", "admin", name, "err", err)
	}
	p := &Principal{AdminID: a.ID, Name: a.Name, Role: Role(a.Role), Tenant: a.TenantName}
	s.Audit(r.WithContext(WithPrincipal(ctx, p)), "signin", store.AdminTarget(a.Name), "")
	http.Redirect(w, r, page.Next, http.StatusSeeOther)
}

// signInFailed counts the failed attempt at at a (ID 0: a name that does not exist),
// records it and answers: 429 when this failure made the address wait before its next
// attempt at a, 401 otherwise.
func (s *Server) signInFailed(w http.ResponseWriter, r *http.Request, at *attempt, a store.Admin, why string, page *LoginPage) {
	if wait := s.countFailure(r, at, a, why); wait > 0 {
		page.Error = tooMany(wait)
		s.pages.RenderLogin(w, r, http.StatusTooManyRequests, *page)
		return
	}
	page.Error = msgWrongCredentials
	if page.NeedTOTP {
		page.Error = msgWrongCode
	}
	s.pages.RenderLogin(w, r, http.StatusUnauthorized, *page)
}

// countFailure counts the failed password or code check at at, of admin a (ID 0: a name
// that does not exist): in the throttle, in the admin's failure count, and in the audit log.
// It returns how long the address must now wait before its next attempt at a; 0: it may go
// on. (A wait of the address overall shows at its next attempt, as the refusal of a rate
// limit does.)
func (s *Server) countFailure(r *http.Request, at *attempt, a store.Admin, why string) time.Duration {
	now := s.now()
	pairWait, _ := at.fail(now)
	s.audit(r, a.Name, "signin.failed", store.AdminTarget(a.Name), why)
	if a.ID != 0 {
		if after, err := s.store.RecordSignInFailure(r.Context(), a.ID); err != nil {
			s.log.Error("cannot count a failed sign-in", "admin", a.Name, "err", err)
		} else if n := after.FailedSignIns; alarmingFailures(n) {
			s.log.Warn("many failed sign-ins at one admin since its last success: someone may be guessing its password; each address that fails is slowed down, the admin is never locked out (TOTP makes a guessed password useless alone)",
				"admin", a.Name, "failures", n)
		}
	}
	if pairWait > 0 {
		s.audit(r, a.Name, "signin.locked", store.AdminTarget(a.Name), fmt.Sprintf("this address failed %d times or more at this admin: its next attempt at it may come at %s", pairFree, now.Add(pairWait).UTC().Format(time.RFC3339)))
	}
	return pairWait
}

// alarmingFailures reports whether n failures since the last success are worth a warning:
// 20, then 100, 1,000, 10,000, ...
func alarmingFailures(n int) bool {
	if n == 20 {
		return true
	}
	if n < 100 {
		return false
	}
	for n%10 == 0 {
		n /= 10
	}
	return n == 1
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

// ipKey is the key of the client's address in the sign-in throttle: the IPv4 address, or the
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
