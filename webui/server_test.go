package webui

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/gatewaytest"
	"github.com/popgate/popgate/gateway/plane/planetest"
	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/store/clocktest"
)

// authPassword is the password of every admin the auth tests add.
const authPassword = "correct horse battery staple"

// stubPages stands in for the pages side: a home page, a tenant-scoped change, an owners'
// page and a public static file, and render methods whose output the tests can read.
type stubPages struct {
	auditor Auditor
}

var (
	_ Pages         = (*stubPages)(nil)
	_ AccountPages  = (*stubPages)(nil)
	_ AuditorSetter = (*stubPages)(nil)
)

func (p *stubPages) SetAuditor(a Auditor) { p.auditor = a }

func (p *stubPages) Routes(mux *http.ServeMux, protect func(min Role, h http.HandlerFunc) http.Handler) {
	mux.Handle("GET /{$}", protect(RoleViewer, func(w http.ResponseWriter, r *http.Request) {
		pr := PrincipalFrom(r.Context())
		fmt.Fprintf(w, "home of %s (%s, tenant %q)", pr.Name, pr.Role, pr.Tenant)
	}))
	mux.Handle("GET /owners", protect(RoleOwner, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "owners only")
	}))
	mux.Handle("POST /tenants/{tenant}/things", protect(RoleTenantAdmin, func(w http.ResponseWriter, r *http.Request) {
		pr, tenant := PrincipalFrom(r.Context()), r.PathValue("tenant")
		if !pr.CanChangeTenant(tenant) {
			p.RenderError(w, r, http.StatusForbidden, "not your tenant")
			return
		}
		p.auditor.Audit(r, "thing.add", tenant+"/thing", "")
		io.WriteString(w, "changed")
	}))
	mux.HandleFunc("GET /static/app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, "// app")
	})
}

func (p *stubPages) RenderLogin(w http.ResponseWriter, r *http.Request, code int, page LoginPage) {
	w.WriteHeader(code)
	fmt.Fprintf(w, "LOGIN name=%q error=%q next=%q totp=%v", page.Name, page.Error, page.Next, page.NeedTOTP)
}

func (p *stubPages) RenderError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	w.WriteHeader(code)
	fmt.Fprintf(w, "ERROR %d %s", code, msg)
}

func (p *stubPages) RenderAccount(w http.ResponseWriter, r *http.Request, code int, page AccountPage) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(page)
}

// authEnv is a controller and a store (on an in-memory data plane: signing in needs no
// network) behind a Server with stub pages and a fake clock (starting at the real time, which
// the store's own timestamps use), served by httptest on loopback.
type authEnv struct {
	t     *testing.T
	ctrl  *control.Controller
	store *store.Store
	srv   *Server
	ts    *httptest.Server
	clock *clocktest.Clock
	dir   string
}

// startAuthBackend opens a store in a temporary directory with a controller on an in-memory
// data plane, for the auth tests.
func startAuthBackend(t *testing.T) (*control.Controller, *store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(dir, "popgate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctrl, err := control.New(control.Config{PublicEndpoint: "127.0.0.1:51820", MTU: 1420, Region: "local"}, st, &planetest.DataPlane{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })
	if err := ctrl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ctrl, st, dir
}

// newAuthEnv starts a controller and a Server on it; change, when not nil, edits the config
// first.
func newAuthEnv(t *testing.T, change func(*ServerConfig)) *authEnv {
	t.Helper()
	ctrl, st, dir := startAuthBackend(t)
	return newAuthEnvOn(t, ctrl, st, dir, change)
}

// newAuthEnvNode is newAuthEnv on a real node (userspace exit, loopback port), for tests that
// send it packets.
func newAuthEnvNode(t *testing.T, change func(*ServerConfig)) *authEnv {
	t.Helper()
	dir := t.TempDir()
	n := gatewaytest.Start(t, gatewaytest.Options{Dir: dir})
	return newAuthEnvOn(t, n.Ctrl, n.Store, dir, change)
}

func newAuthEnvOn(t *testing.T, ctrl *control.Controller, st *store.Store, dir string, change func(*ServerConfig)) *authEnv {
	t.Helper()
	e := &authEnv{t: t, ctrl: ctrl, store: st, clock: clocktest.New(time.Now()), dir: dir}
	cfg := ServerConfig{Ctrl: e.ctrl, Store: e.store, Pages: &stubPages{}, Addr: "127.0.0.1:0", DataDir: dir, Now: e.clock.Now,
		Log: slog.New(slog.NewTextHandler(testLogWriter{t}, nil))}
	if change != nil {
		change(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(e.ts.Close)
	return e
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// setupActor makes the changes a test sets up with: auditActions leaves them out.
const setupActor = "test-setup"

// setup is the context of a test's own changes.
func setup() context.Context {
	return store.WithActor(context.Background(), store.Actor{Name: setupActor})
}

// addAdmin adds an admin with authPassword.
func (e *authEnv) addAdmin(name, role, tenant string) store.Admin {
	e.t.Helper()
	a, _, err := addAdmin(setup(), e.store, store.NewAdmin{Name: name, Role: role, Tenant: tenant, Password: authPassword})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *authEnv) addTenant(name string) {
	e.t.Helper()
	if _, err := e.ctrl.AddTenant(setup(), name); err != nil {
		e.t.Fatal(err)
	}
}

// addToken makes an API token and returns its secret.
func (e *authEnv) addToken(name, role, tenant string, expires time.Time) string {
	e.t.Helper()
	_, secret, err := e.store.AddAPIToken(setup(), store.NewAPIToken{Name: name, Role: role, Tenant: tenant, ExpiresAt: expires})
	if err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// auditActions returns "actor action target" of every audit entry but the test's setup,
// oldest first.
func (e *authEnv) auditActions() []string {
	e.t.Helper()
	es, _, err := e.store.ListAudit(context.Background(), store.AuditQuery{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range slices.Backward(es) {
		if en.Actor != setupActor {
			out = append(out, strings.TrimSpace(en.Actor+" "+en.Action+" "+en.Target))
		}
	}
	return out
}

func (e *authEnv) wantAudit(want ...string) {
	e.t.Helper()
	got := strings.Join(e.auditActions(), "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			e.t.Errorf("audit log lacks %q; it has:\n%s", w, got)
		}
	}
}

// browser is a web client with its own cookies that does not follow redirects and sends the
// Sec-Fetch-Site header browsers send for same-origin requests.
type browser struct {
	e   *authEnv
	c   *http.Client
	jar *cookiejar.Jar
}

func (e *authEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, jar: jar, c: &http.Client{
		Jar:           jar,
		Transport:     e.ts.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request with headers kv (name, value, ...) and returns the answer and its body.
func (b *browser) do(method, path string, form url.Values, kv ...string) (*http.Response, string) {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.ts.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			req.Header.Del(kv[i])
		} else {
			req.Header.Set(kv[i], kv[i+1])
		}
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

func (b *browser) get(path string, kv ...string) (*http.Response, string) {
	return b.do(http.MethodGet, path, nil, kv...)
}

func (b *browser) post(path string, form url.Values, kv ...string) (*http.Response, string) {
	if form == nil {
		form = url.Values{}
	}
	return b.do(http.MethodPost, path, form, kv...)
}

// signIn posts the sign-in form.
func (b *browser) signIn(name, password, code string) (*http.Response, string) {
	return b.post("/login", url.Values{"name": {name}, "password": {password}, "totp": {code}, "next": {"/"}})
}

// mustSignIn signs in and fails the test unless it worked.
func (b *browser) mustSignIn(name string) {
	b.e.t.Helper()
	resp, body := b.signIn(name, authPassword, "")
	if resp.StatusCode != http.StatusSeeOther {
		b.e.t.Fatalf("sign-in as %s: %d %s", name, resp.StatusCode, body)
	}
}

// want checks the status and that the body contains each of wants.
func want(t *testing.T, what string, resp *http.Response, body string, status int, wants ...string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d; body: %s", what, resp.StatusCode, status, body)
	}
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: body lacks %q: %s", what, w, body)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newAuthEnv(t, nil)
	b := e.browser()
	for _, path := range []string{"/login", "/healthz", "/api/v1/status", "/nope", "/static/app.js"} {
		resp, _ := b.get(path)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, part := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "object-src 'none'"} {
			if !strings.Contains(csp, part) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, part)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP allows inline code: %q", path, csp)
		}
		for k, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
			"Cross-Origin-Opener-Policy": "same-origin"} {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", path, k, h.Get(k), v)
			}
		}
		if h.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS over plain HTTP", path)
		}
		cache := h.Get("Cache-Control")
		if path == "/static/app.js" && cache != "max-age=3600" || path != "/static/app.js" && cache != "no-store" {
			t.Errorf("%s: Cache-Control %q", path, cache)
		}
	}
	resp, body := b.get("/healthz")
	want(t, "healthz", resp, body, http.StatusOK, `"status":"ok"`)
	resp, body = b.get("/readyz")
	want(t, "readyz without a readiness check", resp, body, http.StatusOK, `"status":"ready"`)
}

// TestReadyz: /readyz says what ServerConfig.Ready says, without a session.
func TestReadyz(t *testing.T) {
	var why error
	e := newAuthEnv(t, func(c *ServerConfig) { c.Ready = func() error { return why } })
	b := e.browser()
	resp, body := b.get("/readyz")
	want(t, "ready", resp, body, http.StatusOK, `"status":"ready"`)
	why = errors.New("the desired state of generation 7 is not applied yet (applied: 6)")
	resp, body = b.get("/readyz")
	want(t, "not ready", resp, body, http.StatusServiceUnavailable, `"reason":"the desired state of generation 7 is not applied yet (applied: 6)"`)
}

// TestHostCheck: plain HTTP on loopback answers only loopback host names (DNS rebinding).
func TestHostCheck(t *testing.T) {
	e := newAuthEnv(t, nil)
	b := e.browser()
	for _, tc := range []struct {
		host string
		want int
	}{{"", http.StatusOK}, {"localhost:8080", http.StatusOK}, {"[::1]:8080", http.StatusOK}, {"127.0.0.2", http.StatusOK},
		{"evil.example:8080", http.StatusMisdirectedRequest}, {"192.0.2.1", http.StatusMisdirectedRequest}} {
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/healthz", nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Host %q: %d, want %d", tc.host, resp.StatusCode, tc.want)
		}
	}
}

func TestServerConfig(t *testing.T) {
	ctrl, st, dir := startAuthBackend(t)
	for _, tc := range []struct {
		cfg  ServerConfig
		want string
	}{
		{ServerConfig{}, "Ctrl is nil"},
		{ServerConfig{Ctrl: ctrl}, "Store is nil"},
		{ServerConfig{Ctrl: ctrl, Store: st, Addr: "8080"}, "not host:port"},
		{ServerConfig{Ctrl: ctrl, Store: st, TLSCertFile: "x.crt"}, "both"},
		{ServerConfig{Ctrl: ctrl, Store: st, Addr: "0.0.0.0:443"}, "DataDir is empty"},
		{ServerConfig{Ctrl: ctrl, Store: st, TLSCertFile: filepath.Join(dir, "no.crt"), TLSKeyFile: filepath.Join(dir, "no.key")}, "does not exist"},
	} {
		if _, err := NewServer(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewServer(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	// A page route that clashes with the auth side's is an error, not a panic.
	if _, err := NewServer(ServerConfig{Ctrl: ctrl, Store: st, Pages: &clashingPages{}}); err == nil || !strings.Contains(err.Error(), "/login") {
		t.Errorf("clashing pages: %v", err)
	}
	// Without pages the built-in ones serve sign-in.
	s, err := NewServer(ServerConfig{Ctrl: ctrl, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost/login?next=/peers", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `name="password"`) || !strings.Contains(rec.Body.String(), `value="/peers"`) {
		t.Errorf("built-in sign-in page: %d %s", rec.Code, rec.Body)
	}
}

type clashingPages struct{ stubPages }

func (clashingPages) Routes(mux *http.ServeMux, protect func(Role, http.HandlerFunc) http.Handler) {
	mux.HandleFunc("GET /login", func(http.ResponseWriter, *http.Request) {})
}

func TestIsLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.1.2.3:80": true, "[::1]:8080": true, "localhost:8080": true, "[::ffff:127.0.0.1]:1": true,
		"0.0.0.0:8080": false, ":8080": false, "[::]:8080": false, "192.0.2.1:443": false, "example.com:443": false, "8080": false,
	} {
		if got := IsLoopbackAddr(addr); got != want {
			t.Errorf("IsLoopbackAddr(%q) = %v", addr, got)
		}
	}
}

func TestSelfSignedCertificate(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)
	cert, fp, created, err := loadOrCreateSelfSigned(dir, []string{"localhost", "127.0.0.1", "vpn.example.com"}, now)
	if err != nil || !created {
		t.Fatalf("first start: %v, created %v", err, created)
	}
	if len(fp) != 95 || cert.Leaf.Subject.CommonName == "" || cert.Leaf.IsCA {
		t.Errorf("fingerprint %q, leaf %+v", fp, cert.Leaf.Subject)
	}
	if err := cert.Leaf.VerifyHostname("vpn.example.com"); err != nil {
		t.Error(err)
	}
	if err := cert.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, selfSignedKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v", fi.Mode(), err)
	}
	// Restart: the same certificate.
	_, fp2, created, err := loadOrCreateSelfSigned(dir, nil, now.Add(24*time.Hour))
	if err != nil || created || fp2 != fp {
		t.Errorf("restart: %v, created %v, fingerprint %s then %s", err, created, fp, fp2)
	}
	// Close to its expiry, a new one.
	_, fp3, created, err := loadOrCreateSelfSigned(dir, nil, now.Add(selfSignedLife-time.Hour))
	if err != nil || !created || fp3 == fp {
		t.Errorf("renewal: %v, created %v", err, created)
	}
	// A key file others can read is refused.
	os.Chmod(filepath.Join(dir, selfSignedKey), 0o644)
	if _, _, _, err := loadOrCreateSelfSigned(dir, nil, now); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("readable key: %v", err)
	}
}

// TestServerTLS: on a non-loopback address the server makes a self-signed certificate at
// first start, keeps it across restarts, serves only HTTPS, and its cookie is __Host- and
// Secure.
func TestServerTLS(t *testing.T) {
	ctrl, st, dir := startAuthBackend(t)
	if _, err := st.AddAdmin(context.Background(), store.NewAdmin{Name: "root", Role: store.RoleOwner, Password: authPassword}); err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig{Ctrl: ctrl, Store: st, Pages: &stubPages{}, Addr: "0.0.0.0:0", DataDir: dir}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !s.TLS() || s.Fingerprint() == "" || s.cookieName != "__Host-popgate_session" {
		t.Fatalf("TLS %v, fingerprint %q, cookie %s", s.TLS(), s.Fingerprint(), s.cookieName)
	}
	again, err := NewServer(cfg)
	if err != nil || again.Fingerprint() != s.Fingerprint() {
		t.Errorf("restart: fingerprint %q → %q, %v", s.Fingerprint(), again.Fingerprint(), err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	base := s.URL(l.Addr(), "")
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Errorf("URL = %s", base)
	}
	var seen string
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
			seen = Fingerprint(cs.PeerCertificates[0].Raw)
			return nil
		}}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(base + "healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || seen != s.Fingerprint() || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("HTTPS healthz: %d, fingerprint %s, HSTS %q", resp.StatusCode, seen, resp.Header.Get("Strict-Transport-Security"))
	}
	// Plain HTTP gets no page.
	if resp, err := http.Get("http://" + l.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered on a TLS address")
		}
	}
	resp, err = client.PostForm(base+"login", url.Values{"name": {"root"}, "password": {authPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("sign-in over TLS: %d, cookies %v", resp.StatusCode, cookies)
	}
	if c := cookies[0]; c.Name != "__Host-popgate_session" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie %+v", c)
	}

	// The operator's certificate is used as given.
	opCert, opKey := filepath.Join(dir, selfSignedCert), filepath.Join(dir, selfSignedKey)
	op, err := NewServer(ServerConfig{Ctrl: ctrl, Store: st, Addr: "0.0.0.0:0", TLSCertFile: opCert, TLSKeyFile: opKey})
	if err != nil || !op.TLS() || op.Fingerprint() != "" {
		t.Errorf("operator certificate: %v, TLS %v, fingerprint %q", err, op.TLS(), op.Fingerprint())
	}
	// ... also on loopback, where it means HTTPS instead of HTTP.
	if op, err := NewServer(ServerConfig{Ctrl: ctrl, Store: st, Addr: "127.0.0.1:0", TLSCertFile: opCert, TLSKeyFile: opKey}); err != nil || !op.TLS() {
		t.Errorf("operator certificate on loopback: %v", err)
	}
}

// TestServeStops: Serve returns nil when its context ends, and leaves no goroutine behind.
func TestServeStops(t *testing.T) {
	e := newAuthEnv(t, nil)
	before := countGoroutines()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, l) }()
	resp, err := http.Get(e.srv.URL(l.Addr(), "") + "healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if err := e.srv.Serve(context.Background(), l); err == nil {
		t.Error("second Serve succeeded")
	}
	deadline := time.Now().Add(2 * time.Second)
	for countGoroutines() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := countGoroutines(); n > before {
		t.Errorf("%d goroutines after Serve returned, %d before", n, before)
	}
}

func countGoroutines() int {
	var n int
	for range 3 { // let exiting goroutines finish
		n = runtime.NumGoroutine()
		time.Sleep(5 * time.Millisecond)
	}
	return n
}
