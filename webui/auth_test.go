package webui

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

func TestSignIn(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	b := e.browser()

	resp, body := b.get("/login?next=/owners")
	want(t, "sign-in page", resp, body, http.StatusOK, `next="/owners"`, `error=""`)

	resp, body = b.signIn("root", "wrong password!", "")
	want(t, "wrong password", resp, body, http.StatusUnauthorized, `error="wrong admin name or password"`, `name="root"`)
	resp, body = b.signIn("nobody", authPassword, "")
	want(t, "unknown admin", resp, body, http.StatusUnauthorized, `error="wrong admin name or password"`)
	if len(resp.Cookies()) != 0 {
		t.Error("a failed sign-in set a cookie")
	}

	// A session cookie planted before sign-in is not the one afterwards (fixation).
	u, _ := url.Parse(e.ts.URL)
	planted := "pgs_" + strings.Repeat("A", 43)
	b.jar.SetCookies(u, []*http.Cookie{{Name: "popgate_session", Value: planted, Path: "/"}})
	resp, body = b.post("/login", url.Values{"name": {" Root "}, "password": {authPassword}, "next": {"/owners"}})
	want(t, "sign-in", resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/owners" {
		t.Errorf("redirect to %q, want /owners", loc)
	}
	var c *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "popgate_session" {
			c = ck
		}
	}
	if c == nil || c.Value == planted || !c.HttpOnly || c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge != int(sessionLifetime/time.Second) {
		t.Fatalf("session cookie %+v", c)
	}
	resp, body = b.get("/")
	want(t, "home", resp, body, http.StatusOK, `home of root (owner, tenant "")`)
	resp, _ = b.get("/login?next=/owners")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/owners" {
		t.Errorf("sign-in page when signed in: %d → %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// A second sign-in gets another token.
	b2 := e.browser()
	resp, _ = b2.signIn("root", authPassword, "")
	if c2 := resp.Cookies(); len(c2) != 1 || c2[0].Value == c.Value {
		t.Error("two sign-ins share a token")
	}

	// Redirects after sign-in stay on this site.
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "evil"} {
		resp, _ := e.browser().post("/login", url.Values{"name": {"root"}, "password": {authPassword}, "next": {next}})
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/" {
			t.Errorf("next=%q: %d → %q", next, resp.StatusCode, loc)
		}
	}
	e.wantAudit("root signin.failed admin:root", "nobody signin.failed admin:nobody", "root signin admin:root")
}

func TestSignInBadInput(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	b := e.browser()
	for _, tc := range []struct {
		what string
		form url.Values
		want string
	}{
		{"empty", url.Values{}, "enter your admin name and password"},
		{"no password", url.Values{"name": {"root"}}, "enter your admin name and password"},
		{"long name", url.Values{"name": {strings.Repeat("a", 65)}, "password": {authPassword}}, "too long"},
		{"long password", url.Values{"name": {"root"}, "password": {strings.Repeat("p", 300)}}, "too long"},
		{"long code", url.Values{"name": {"root"}, "password": {authPassword}, "totp": {strings.Repeat("1", 40)}}, "too long"},
		{"huge form", url.Values{"name": {"root"}, "password": {authPassword}, "junk": {strings.Repeat("x", 20<<10)}}, "too large or malformed"},
	} {
		resp, body := b.post("/login", tc.form)
		want(t, tc.what, resp, body, http.StatusBadRequest, tc.want)
	}
	// None of them counted against the account or wrote anything.
	if a, _ := e.store.Admin(context.Background(), "root"); a.FailedSignIns != 0 {
		t.Errorf("%d failures counted", a.FailedSignIns)
	}
	if got := e.auditActions(); len(got) != 0 {
		t.Errorf("audit entries: %q", got)
	}
}

func TestLockout(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	b := e.browser()
	for i := 1; i < pairFree; i++ {
		resp, body := b.signIn("root", "wrong password!", "")
		want(t, "failure", resp, body, http.StatusUnauthorized, "wrong admin name or password")
	}
	resp, body := b.signIn("root", "wrong password!", "")
	want(t, "the failure that locks", resp, body, http.StatusTooManyRequests, "too many attempts: try again in 5 minutes")
	// Locked: the right password does not help, from another browser either.
	resp, body = e.browser().signIn("root", authPassword, "")
	want(t, "right password while locked", resp, body, http.StatusTooManyRequests, "too many attempts: try again in 5 minutes")
	e.clock.Advance(2*time.Minute + 30*time.Second)
	resp, body = b.signIn("root", authPassword, "")
	want(t, "later while locked", resp, body, http.StatusTooManyRequests, "try again in 3 minutes")
	e.clock.Advance(2*time.Minute + 30*time.Second)
	resp, body = b.signIn("root", authPassword, "")
	want(t, "after the lockout", resp, body, http.StatusSeeOther)
	if a, _ := e.store.Admin(context.Background(), "root"); a.FailedSignIns != 0 {
		t.Errorf("after sign-in: %+v", a)
	}
	e.wantAudit("root signin.locked admin:root")

	// An owner lifts a lockout by setting the password.
	for range pairFree {
		b.signIn("root", "wrong password!", "")
	}
	if _, _, err := setAdminPassword(context.Background(), e.store, "root", "a whole new password"); err != nil {
		t.Fatal(err)
	}
	resp, body = b.signIn("root", "a whole new password", "")
	want(t, "after a new password", resp, body, http.StatusSeeOther)
}

func TestSignInRateLimit(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	e.srv.throttle = newSigninThrottle(backoff{pairFree, throttleBase, throttleMax}, backoff{3, throttleBase, throttleMax}, throttleForget, 100)
	b := e.browser()
	for i := range 3 {
		resp, body := b.signIn("user"+string(rune('a'+i)), "wrong password!", "")
		want(t, "attempt", resp, body, http.StatusUnauthorized)
	}
	for range 2 {
		resp, body := b.signIn("root", authPassword, "")
		want(t, "over the limit", resp, body, http.StatusTooManyRequests, "too many attempts: try again in 5 minutes")
	}
	// One audit entry per blocked window, not per attempt.
	n := 0
	for _, a := range e.auditActions() {
		if strings.Contains(a, "signin.limited") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d signin.limited entries, want 1", n)
	}
	e.clock.Advance(throttleBase)
	resp, body := b.signIn("root", authPassword, "")
	want(t, "after the wait", resp, body, http.StatusSeeOther)
}

func TestIPKey(t *testing.T) {
	for addr, key := range map[string]string{"192.0.2.1:1234": "192.0.2.1", "[2001:db8:1:2:3:4:5:6]:1": "2001:db8:1:2::/64", "[::ffff:192.0.2.1]:1": "192.0.2.1"} {
		if got := ipKey(&http.Request{RemoteAddr: addr}); got != key {
			t.Errorf("ipKey(%s) = %s, want %s", addr, got, key)
		}
	}
}

// TestHashSlots: sign-ins beyond the hashing slots wait, and give up with 503 rather than
// queue forever.
func TestHashSlots(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	e.srv.hashSem = make(chan struct{}, 1)
	e.srv.hashWait = 50 * time.Millisecond
	e.srv.hashSem <- struct{}{} // a long check holds the only slot
	resp, body := e.browser().signIn("root", authPassword, "")
	want(t, "no slot", resp, body, http.StatusServiceUnavailable, "busy")
	<-e.srv.hashSem
	resp, body = e.browser().signIn("root", authPassword, "")
	want(t, "slot free", resp, body, http.StatusSeeOther)
	if n := e.srv.hashWaiting.Load(); n != 0 {
		t.Errorf("%d waiters left", n)
	}
}

func TestDisabledAdmin(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	e.addAdmin("bob", store.RoleViewer, "")
	b := e.browser()
	b.mustSignIn("bob")
	if _, err := e.store.SetAdminDisabled(context.Background(), "bob", true); err != nil {
		t.Fatal(err)
	}
	resp, _ := b.get("/")
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("disabled admin's session still works: %d", resp.StatusCode)
	}
	resp, body := b.signIn("bob", authPassword, "")
	want(t, "disabled", resp, body, http.StatusForbidden, "disabled")
	resp, body = b.signIn("bob", "wrong password!", "")
	want(t, "disabled, wrong password", resp, body, http.StatusUnauthorized, "wrong admin name or password")
}

// TestTOTPCodes checks totpStep against RFC 6238's SHA-1 test vectors (their last 6 digits).
func TestTOTPCodes(t *testing.T) {
	secret := []byte("12345678901234567890")
	for _, tc := range []struct {
		unix int64
		code string
	}{{59, "287082"}, {1111111109, "081804"}, {1111111111, "050471"}, {1234567890, "005924"}, {2000000000, "279037"}} {
		step, ok := totpStep(secret, tc.code, time.Unix(tc.unix, 0))
		if !ok || step != tc.unix/30 {
			t.Errorf("code %s at %d: step %d, %v", tc.code, tc.unix, step, ok)
		}
	}
	now := time.Unix(1111111111, 0)
	if step, ok := totpStep(secret, totpCode(secret, now.Unix()/30-1), now); !ok || step != now.Unix()/30-1 {
		t.Error("the previous step's code is refused")
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef", totpCode(secret, now.Unix()/30-2), totpCode(secret, now.Unix()/30+2)} {
		if _, ok := totpStep(secret, bad, now); ok {
			t.Errorf("code %q accepted", bad)
		}
	}
}

func accountPage(t *testing.T, body string) AccountPage {
	t.Helper()
	var p AccountPage
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("account page %q: %v", body, err)
	}
	return p
}

func TestTOTP(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	b := e.browser()
	b.mustSignIn("root")

	resp, body := b.get("/account/totp/qr.png")
	want(t, "QR code before enrolment", resp, body, http.StatusNotFound)
	resp, body = b.post("/account/totp/enrol", nil)
	want(t, "enrol", resp, body, http.StatusOK)
	page := accountPage(t, body)
	if !page.Enrolling || page.TOTPSecret == "" || page.TOTPQRPath != "/account/totp/qr.png" || page.TOTPEnabled {
		t.Fatalf("enrolment page %+v", page)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(page.TOTPSecret, " ", ""))
	if err != nil || len(secret) != store.TOTPSecretLen {
		t.Fatalf("secret %q: %v", page.TOTPSecret, err)
	}
	resp, body = b.get("/account/totp/qr.png")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(body, "\x89PNG") {
		t.Errorf("QR code: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	code := func() string { return totpCode(secret, e.clock.Now().Unix()/totpPeriod) }

	resp, body = b.post("/account/totp/confirm", url.Values{"code": {"000000"}})
	want(t, "wrong confirmation code", resp, body, http.StatusBadRequest, "does not match")
	if p := accountPage(t, body); !p.Enrolling {
		t.Error("a wrong code ended the enrolment")
	}
	resp, body = b.post("/account/totp/confirm", url.Values{"code": {code()}})
	want(t, "confirm", resp, body, http.StatusOK, "two-factor sign-in is on")
	if p := accountPage(t, body); !p.TOTPEnabled {
		t.Error("TOTP not on")
	}
	resp, body = b.post("/account/totp/enrol", nil)
	want(t, "enrol again", resp, body, http.StatusConflict, "on already")

	// Sign-in now asks for the code; the one that confirmed the enrolment is used up.
	b2 := e.browser()
	resp, body = b2.signIn("root", authPassword, "")
	want(t, "password only", resp, body, http.StatusOK, "totp=true", "enter the 6-digit code")
	resp, body = b2.signIn("root", authPassword, code())
	want(t, "replayed code", resp, body, http.StatusUnauthorized, "wrong or was used already", "totp=true")
	e.clock.Advance(totpPeriod * time.Second)
	resp, body = b2.signIn("root", "wrong password!", code())
	want(t, "wrong password, right code", resp, body, http.StatusUnauthorized, "wrong admin name or password")
	resp, body = b2.signIn("root", authPassword, code())
	want(t, "fresh code", resp, body, http.StatusSeeOther)
	resp, body = e.browser().signIn("root", authPassword, code())
	want(t, "the same code again", resp, body, http.StatusUnauthorized, "used already")

	// Turning it off takes the password and a fresh code.
	e.clock.Advance(totpPeriod * time.Second)
	resp, body = b.post("/account/totp/disable", url.Values{"password": {"wrong password!"}, "code": {code()}})
	want(t, "disable with a wrong password", resp, body, http.StatusUnauthorized, "current password is wrong")
	resp, body = b.post("/account/totp/disable", url.Values{"password": {authPassword}, "code": {"123456"}})
	want(t, "disable with a wrong code", resp, body, http.StatusUnauthorized, "wrong or was used already")
	resp, body = b.post("/account/totp/disable", url.Values{"password": {authPassword}, "code": {code()}})
	want(t, "disable", resp, body, http.StatusOK, "two-factor sign-in is off")
	resp, body = e.browser().signIn("root", authPassword, "")
	want(t, "sign-in without TOTP", resp, body, http.StatusSeeOther)
	e.wantAudit("root admin.totp.enable admin:root", "root admin.totp.disable admin:root")
}

func TestChangePassword(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addAdmin("root", store.RoleOwner, "")
	b, other := e.browser(), e.browser()
	b.mustSignIn("root")
	other.mustSignIn("root")

	resp, body := b.get("/account")
	if p := accountPage(t, body); resp.StatusCode != http.StatusOK || p.Name != "root" || p.Role != RoleOwner || p.Sessions != 2 {
		t.Errorf("account page: %d %+v", resp.StatusCode, p)
	}
	for _, tc := range []struct {
		what                string
		current, new, again string
		status              int
		want                string
	}{
		{"mismatch", authPassword, "new password one", "new password two", http.StatusBadRequest, "differ"},
		{"too short", authPassword, "short", "short", http.StatusBadRequest, "too short"},
		{"wrong current", "wrong password!", "a fine new password", "a fine new password", http.StatusUnauthorized, "current password is wrong"},
	} {
		resp, body := b.post("/account/password", url.Values{"current": {tc.current}, "new": {tc.new}, "confirm": {tc.again}})
		want(t, tc.what, resp, body, tc.status, tc.want)
	}
	resp, body = b.post("/account/password", url.Values{"current": {authPassword}, "new": {"a fine new password"}, "confirm": {"a fine new password"}})
	want(t, "change", resp, body, http.StatusOK, "password changed")
	if resp, _ := b.get("/"); resp.StatusCode != http.StatusOK {
		t.Errorf("this browser was signed out: %d", resp.StatusCode)
	}
	if resp, _ := other.get("/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the other browser is still signed in: %d", resp.StatusCode)
	}
	resp, body = e.browser().signIn("root", "a fine new password", "")
	want(t, "new password", resp, body, http.StatusSeeOther)
	e.wantAudit("root admin.password admin:root")
}

func FuzzTOTPStep(f *testing.F) {
	f.Add("287082", int64(59))
	f.Add("12 34 56", int64(0))
	f.Add("", int64(-1))
	secret := []byte("12345678901234567890")
	f.Fuzz(func(t *testing.T, code string, unix int64) {
		step, ok := totpStep(secret, code, time.Unix(unix, 0))
		if ok && (len(code) != 6 || totpCode(secret, step) != code) {
			t.Fatalf("totpStep(%q, %d) accepted step %d", code, unix, step)
		}
	})
}
