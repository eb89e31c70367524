package webui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
	"github.com/skip2/go-qrcode"

	"github.com/popgate/popgate/store"
)

// TOTP as authenticator apps do it (RFC 6238): HMAC-SHA1, 6 digits, 30-second steps. A code
// of the step before or after the current one is accepted too, for clocks that drift.
const (
	totpPeriod = 30
	totpSkew   = 1
	totpIssuer = "popgate"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// totpCode is the code of secret for time step.
func totpCode(secret []byte, step int64) string {
	code, err := hotp.GenerateCodeCustom(b32.EncodeToString(secret), uint64(step), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "" // cannot happen: the secret is ours and valid base32
	}
	return code
}

// totpStep returns the time step whose code code is, at now, or false. Every candidate is
// compared, in constant time, whatever matched before; the latest matching step wins.
func totpStep(secret []byte, code string, now time.Time) (int64, bool) {
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	step, found := int64(0), 0
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		match := subtle.ConstantTimeCompare([]byte(totpCode(secret, cur+d)), []byte(code))
		if match == 1 {
			step = cur + d
		}
		found |= match
	}
	return step, found == 1
}

// useTOTP reports whether code is a valid, unused code of admin id's TOTP secret at now, and
// uses it up: a code works once.
func (s *Server) useTOTP(ctx context.Context, adminID int64, code string, now time.Time) (bool, error) {
	secret, err := s.store.AdminTOTPSecret(ctx, adminID, false)
	if err != nil {
		return false, err
	}
	step, ok := totpStep(secret, code, now)
	clear(secret)
	if !ok {
		return false, nil
	}
	return s.store.UseAdminTOTPStep(ctx, adminID, step)
}

// renderAccount shows the account page of p with the state in page filled in.
func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, code int, page AccountPage) {
	p := PrincipalFrom(r.Context())
	page.Name, page.Role, page.Tenant = p.Name, p.Role, p.Tenant
	if a, err := s.store.AdminByID(r.Context(), p.AdminID); err == nil {
		page.TOTPEnabled = a.TOTPEnabled
	}
	if n, err := s.store.CountAdminSessions(r.Context(), p.AdminID, s.now(), sessionIdle); err == nil {
		page.Sessions = n
	}
	if ap, ok := s.pages.(AccountPages); ok {
		ap.RenderAccount(w, r, code, page)
		return
	}
	renderBasicAccount(w, code, page)
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) {
	s.renderAccount(w, r, http.StatusOK, AccountPage{})
}

// totpEnrol starts enrolment: a new secret, kept pending until a code confirms it.
func (s *Server) totpEnrol(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	a, err := s.store.AdminByID(r.Context(), p.AdminID)
	if err != nil {
		s.accountFailed(w, r, err)
		return
	}
	if a.TOTPEnabled {
		s.renderAccount(w, r, http.StatusConflict, AccountPage{Error: "two-factor sign-in is on already: turn it off first to enrol another app"})
		return
	}
	secret := make([]byte, store.TOTPSecretLen)
	rand.Read(secret)
	err = s.store.SetAdminTOTPPending(r.Context(), p.AdminID, secret)
	if err != nil {
		s.accountFailed(w, r, err)
		return
	}
	s.renderAccount(w, r, http.StatusOK, enrolling(secret))
}

func enrolling(secret []byte) AccountPage {
	return AccountPage{Enrolling: true, TOTPSecret: groups(b32.EncodeToString(secret)), TOTPQRPath: "/account/totp/qr.png"}
}

// groups splits s into groups of four for typing in by hand.
func groups(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}

// totpQR answers the QR code of the pending secret's otpauth:// URL as a PNG.
func (s *Server) totpQR(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	secret, err := s.store.AdminTOTPSecret(r.Context(), p.AdminID, true)
	if err != nil {
		http.Error(w, "no two-factor enrolment is pending: start one on the account page", http.StatusNotFound)
		return
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer, AccountName: p.Name, Secret: secret, Period: totpPeriod,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	clear(secret)
	if err != nil {
		s.log.Error("cannot make the TOTP URL", "err", err)
		http.Error(w, "cannot make the QR code", http.StatusInternalServerError)
		return
	}
	png, err := qrcode.Encode(key.URL(), qrcode.Medium, 256)
	if err != nil {
		s.log.Error("cannot make the TOTP QR code", "err", err)
		http.Error(w, "cannot make the QR code", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(png)
}

// totpConfirm turns TOTP on when the code matches the pending secret.
func (s *Server) totpConfirm(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if err := readForm(w, r); err != nil {
		s.renderAccount(w, r, http.StatusBadRequest, AccountPage{Error: "the form was too large or malformed: reload the page"})
		return
	}
	secret, err := s.store.AdminTOTPSecret(r.Context(), p.AdminID, true)
	if errors.Is(err, store.ErrNotFound) {
		s.renderAccount(w, r, http.StatusConflict, AccountPage{Error: "no two-factor enrolment is pending: start again"})
		return
	} else if err != nil {
		s.accountFailed(w, r, err)
		return
	}
	defer clear(secret)
	step, ok := totpStep(secret, strings.ReplaceAll(r.PostForm.Get("code"), " ", ""), s.now())
	if !ok {
		page := enrolling(secret)
		page.Error = "the code does not match: enter the 6-digit code the app shows now (is the phone's clock right?)"
		s.renderAccount(w, r, http.StatusBadRequest, page)
		return
	}
	if err := s.store.EnableAdminTOTP(r.Context(), p.AdminID, step); err != nil {
		s.accountFailed(w, r, err)
		return
	}
	s.renderAccount(w, r, http.StatusOK, AccountPage{Notice: "two-factor sign-in is on: from now on, sign-in asks for a code from your app"})
}

// totpDisable turns TOTP off; it takes the password and a current code, so that a browser
// left signed in is not enough.
func (s *Server) totpDisable(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if err := readForm(w, r); err != nil {
		s.renderAccount(w, r, http.StatusBadRequest, AccountPage{Error: "the form was too large or malformed: reload the page"})
		return
	}
	a, ok := s.checkOwnPassword(w, r, p, r.PostForm.Get("password"))
	if !ok {
		return
	}
	if !a.TOTPEnabled {
		s.renderAccount(w, r, http.StatusConflict, AccountPage{Error: "two-factor sign-in is off already"})
		return
	}
	at, wait, _ := s.throttle.begin(ipKey(r), a.Name, a.PasswordSetAt, s.now())
	if at == nil {
		s.renderAccount(w, r, http.StatusTooManyRequests, AccountPage{Error: tooMany(wait)})
		return
	}
	defer at.end()
	valid, err := s.useTOTP(r.Context(), p.AdminID, strings.ReplaceAll(r.PostForm.Get("code"), " ", ""), s.now())
	if err != nil {
		s.accountFailed(w, r, err)
		return
	}
	if !valid {
		s.countFailure(r, at, a, "wrong or reused one-time code")
		s.renderAccount(w, r, http.StatusUnauthorized, AccountPage{Error: msgWrongCode})
		return
	}
	if _, err := s.store.DisableAdminTOTP(r.Context(), p.Name); err != nil {
		s.accountFailed(w, r, err)
		return
	}
	s.renderAccount(w, r, http.StatusOK, AccountPage{Notice: "two-factor sign-in is off"})
}

// changePassword sets a new password after checking the current one. The admin's other
// sessions end; this browser gets a new session.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFrom(r.Context())
	if err := readForm(w, r); err != nil {
		s.renderAccount(w, r, http.StatusBadRequest, AccountPage{Error: "the form was too large or malformed: reload the page"})
		return
	}
	f := r.PostForm
	newPW := f.Get("new")
	if newPW != f.Get("confirm") {
		s.renderAccount(w, r, http.StatusBadRequest, AccountPage{Error: "the new password and its confirmation differ: type them again"})
		return
	}
	if err := store.ValidatePassword(p.Name, newPW); err != nil {
		s.renderAccount(w, r, http.StatusBadRequest, AccountPage{Error: err.Error()})
		return
	}
	a, ok := s.checkOwnPassword(w, r, p, f.Get("current"))
	if !ok {
		return
	}
	var err error
	if herr := s.withHashSlot(r.Context(), func() { _, err = s.store.SetAdminPassword(r.Context(), p.Name, newPW) }); herr != nil {
		s.renderAccount(w, r, http.StatusServiceUnavailable, AccountPage{Error: msgBusy})
		return
	}
	if err != nil {
		s.accountFailed(w, r, err)
		return
	}
	if err := s.startSession(r.Context(), w, r, a); err != nil {
		s.log.Error("cannot start a session after a password change", "err", err)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	s.renderAccount(w, r, http.StatusOK, AccountPage{Notice: "password changed: your other sessions were signed out"})
}

// checkOwnPassword checks the signed-in admin's password for a form that needs it; on
// failure it has answered already. Failures slow down the address like failed sign-ins.
func (s *Server) checkOwnPassword(w http.ResponseWriter, r *http.Request, p *Principal, password string) (store.Admin, bool) {
	now := s.now()
	if wait, _ := s.throttle.check(throttleKey{ipKey(r), ""}, time.Time{}, now); wait > 0 {
		s.renderAccount(w, r, http.StatusTooManyRequests, AccountPage{Error: tooMany(wait)})
		return store.Admin{}, false
	}
	a, err := s.store.AdminByID(r.Context(), p.AdminID)
	if err != nil {
		s.accountFailed(w, r, err)
		return store.Admin{}, false
	}
	at, wait, _ := s.throttle.begin(ipKey(r), a.Name, a.PasswordSetAt, now)
	if at == nil {
		s.renderAccount(w, r, http.StatusTooManyRequests, AccountPage{Error: tooMany(wait)})
		return store.Admin{}, false
	}
	defer at.end() // a right password is neither a failure nor a sign-in
	if len(password) > store.MaxPasswordLen {
		s.renderAccount(w, r, http.StatusBadRequest, AccountPage{Error: "the current password is wrong"})
		return store.Admin{}, false
	}
	var ok bool
	if herr := s.withHashSlot(r.Context(), func() { _, ok, err = s.store.CheckAdminPassword(r.Context(), a.Name, password) }); herr != nil {
		s.renderAccount(w, r, http.StatusServiceUnavailable, AccountPage{Error: msgBusy})
		return store.Admin{}, false
	}
	if err != nil {
		s.accountFailed(w, r, err)
		return store.Admin{}, false
	}
	if !ok {
		msg := "the current password is wrong"
		if wait := s.countFailure(r, at, a, "wrong password on the account page"); wait > 0 {
			msg = tooMany(wait)
		}
		s.renderAccount(w, r, http.StatusUnauthorized, AccountPage{Error: msg})
		return store.Admin{}, false
	}
	return a, true
}

// accountFailed answers an unexpected error on the account page.
func (s *Server) accountFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("account page failed", "err", err)
	s.renderAccount(w, r, http.StatusInternalServerError, AccountPage{Error: "that failed on the server: try again (details in the popgate serve log)"})
}
