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
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popgate/popgate/gateway/control"
)

// ServerConfig configures the web server: the web UI and the JSON API on the web address.
type ServerConfig struct {
	// Ctrl carries out every operation on the network. Required.
	Ctrl *control.Controller
	// Store keeps admins, sessions, API tokens and the audit log. Required.
	Store Store
	// Pages renders the pages and registers their routes. Default: a plain built-in set with
	// the sign-in, account and error pages only.
	Pages Pages
	// Addr is the host:port to listen on. A loopback address (127.0.0.0/8, ::1, localhost)
	// serves plain HTTP unless TLS files are given; any other address serves only HTTPS.
	// Default "127.0.0.1:8080".
	Addr string
	// TLSCertFile and TLSKeyFile are the operator's PEM certificate (chain) and key; both or
	// neither. They are read again when they change (a renewal needs no restart). Default:
	// on a non-loopback address, a self-signed certificate kept in DataDir.
	TLSCertFile, TLSKeyFile string
	// DataDir keeps the self-signed certificate (web-tls.crt, web-tls.key). Required when one
	// is needed.
	DataDir string
	// Log receives the server's log. Default: discarded.
	Log *slog.Logger
	// Now is the clock of sessions, sign-in throttling and one-time codes. Default time.Now.
	Now func() time.Time
	// Ready says why the node is not ready to serve (one line), nil when it is: /readyz
	// answers 503 or 200. Default: always ready.
	Ready func() error
}

// DefaultAddr is the default of ServerConfig.Addr, and of popgate serve --web-addr: loopback
// only, plain HTTP.
const DefaultAddr = "127.0.0.1:8080"

// Validate fills in defaults and rejects bad values with a message naming the field.
func (c *ServerConfig) Validate() error {
	if c.Ctrl == nil {
		return errors.New("webui: ServerConfig.Ctrl is nil: pass the controller")
	}
	if c.Store == nil {
		return errors.New("webui: ServerConfig.Store is nil: pass the store")
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("webui: web address %q is not host:port: use e.g. 127.0.0.1:8080 or 0.0.0.0:443", c.Addr)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("webui: give both a TLS certificate file and its key file (--tls-cert and --tls-key), or neither")
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Limits and lifetimes of the sign-in machinery.
const (
	// sessionIdle ends a session that made no request for this long; sessionLifetime ends
	// every session, active or not.
	sessionIdle     = 12 * time.Hour
	sessionLifetime = 7 * 24 * time.Hour
	// touchEvery is how stale a session's or token's last-use time may get: updating it on
	// every request would make every request a database write.
	touchEvery = time.Minute
	// maxHashWaiters bounds the requests queued for a password check; beyond it, or after
	// hashWait in the queue, a request is refused with 503.
	maxHashWaiters = 64
	hashWait       = 10 * time.Second
	// maxFormBody bounds the forms of the auth side.
	maxFormBody = 16 << 10
	// housekeepEvery paces the removal of dead sessions, download links and forgotten
	// sign-in failures.
	housekeepEvery = 10 * time.Minute
)

// Server serves the web UI and, behind API tokens, the JSON API on the web address; it also
// wraps the control socket's API with the audit log (ControlHandler). It is an Auditor for
// the pages side.
type Server struct {
	ctrl  *control.Controller
	store Store
	pages Pages
	log   *slog.Logger
	now   func() time.Time
	addr  string
	api   *API
	ready func() error

	tls         *tls.Config // nil: plain HTTP (loopback only)
	fingerprint string      // of the self-signed certificate, "" otherwise
	cookieName  string
	// loopbackHTTP: plain HTTP on loopback, where only loopback host names are answered
	// (against DNS rebinding).
	loopbackHTTP bool

	handler http.Handler
	control http.Handler

	throttle *signinThrottle
	denials  denials // rate-limits the audit entries of refusals
	// hashSem bounds the argon2id checks running at once (each holds 19 MiB for the time
	// store's BenchmarkHashPassword measures);
	// hashWaiting counts the requests holding or waiting for a slot.
	hashSem     chan struct{}
	hashWaiting atomic.Int32
	hashWait    time.Duration // hashWait, shorter in tests

	serveOnce sync.Once
}

var _ Auditor = (*Server)(nil)

// NewServer checks cfg, prepares TLS (creating the self-signed certificate on first use) and
// registers every route: the auth side's, the API behind API tokens, and the pages' with
// protect. A Pages that implements AuditorSetter gets the server as its Auditor first.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		ctrl:     cfg.Ctrl,
		store:    cfg.Store,
		pages:    cfg.Pages,
		log:      cfg.Log,
		now:      cfg.Now,
		addr:     cfg.Addr,
		ready:    cfg.Ready,
		api:      NewAPI(cfg.Ctrl, cfg.Store, cfg.Log.With("component", "api")),
		throttle: newDefaultSigninThrottle(),
		hashSem:  make(chan struct{}, max(1, min(4, runtime.NumCPU()))),
		hashWait: hashWait,
	}
	if s.pages == nil {
		s.pages = newBasicPages()
	}
	if err := s.setupTLS(cfg); err != nil {
		return nil, err
	}
	s.cookieName = "popgate_session"
	if s.tls != nil {
		// __Host-: the browser keeps the cookie only when it is Secure, for "/" and this host.
		s.cookieName = "__Host-popgate_session"
	}
	if as, ok := s.pages.(AuditorSetter); ok {
		as.SetAuditor(s)
	}
	mux := http.NewServeMux()
	if err := s.routes(mux); err != nil {
		return nil, err
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.refuse(w, r, http.StatusForbidden, "cross-origin request refused: change things only from popgate's own pages")
	}))
	s.handler = withActor(s.securityHeaders(s.checkHost(cop.Handler(mux))))
	s.control = s.controlHandler()
	return s, nil
}

// routes registers every route on mux. A route of the pages that clashes with one of the auth
// side is an error, not a panic.
func (s *Server) routes(mux *http.ServeMux) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("webui: registering routes: %v", v)
		}
	}()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("POST /logout-everywhere", s.logoutEverywhere)
	mux.Handle("GET /account", s.protect(RoleViewer, s.accountPage))
	mux.Handle("POST /account/password", s.protect(RoleViewer, s.changePassword))
	mux.Handle("POST /account/totp/enrol", s.protect(RoleViewer, s.totpEnrol))
	mux.Handle("GET /account/totp/qr.png", s.protect(RoleViewer, s.totpQR))
	mux.Handle("POST /account/totp/confirm", s.protect(RoleViewer, s.totpConfirm))
	mux.Handle("POST /account/totp/disable", s.protect(RoleViewer, s.totpDisable))
	mux.Handle("/api/", s.apiHandler())
	registerOpenAPI(mux, s.api.mux) // the API document, without a token: web address and (through s.api) control socket
	s.pages.Routes(mux, s.protect)
	return nil
}

// Handler returns the web address's handler: security headers, then (plain HTTP) the host
// check, then cross-origin protection for every unsafe method, then the routes.
func (s *Server) Handler() http.Handler { return s.handler }

// ControlHandler returns the API for the control socket: no authentication (the socket's
// file mode is the control), every change recorded in the audit log as actor "cli".
func (s *Server) ControlHandler() http.Handler { return s.control }

// TLS reports whether the server serves HTTPS.
func (s *Server) TLS() bool { return s.tls != nil }

// Fingerprint is the SHA-256 fingerprint of the self-signed certificate, "" when the
// operator's certificate or plain HTTP is used.
func (s *Server) Fingerprint() string { return s.fingerprint }

// URL returns the base URL of the server listening at addr (the listener's address, so that
// port 0 resolves): http or https, with host as the host when addr's is unspecified.
func (s *Server) URL(addr net.Addr, host string) string {
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	h, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + "://" + addr.String() + "/"
	}
	if ip, err := netip.ParseAddr(h); err == nil && ip.IsUnspecified() && host != "" {
		h = host
	}
	return scheme + "://" + net.JoinHostPort(h, port) + "/"
}

// ListenAndServe listens on the configured address and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("web address %s: %w: choose another --web-addr", s.addr, err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l until ctx is done, then shuts down (waiting up to 5 s for requests) and
// returns nil; or returns the error that stopped it. It closes l. A Server serves once.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	first := false
	s.serveOnce.Do(func() { first = true })
	if !first {
		l.Close()
		return errors.New("webui: Serve called twice")
	}
	hs := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// TLS handshake errors (every visit with a self-signed certificate has some) are noise.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { s.housekeep(stop) })
	errc := make(chan error, 1)
	go func() {
		if s.tls != nil {
			errc <- hs.ServeTLS(l, "", "")
		} else {
			errc <- hs.Serve(l)
		}
	}()
	var err error
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hs.Shutdown(shutdown)
		cancel()
		err = <-errc
	case err = <-errc:
	}
	close(stop)
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// housekeep removes dead sessions, expired download links and forgotten sign-in failures
// until stop is closed.
func (s *Server) housekeep(stop <-chan struct{}) {
	t := time.NewTicker(housekeepEvery)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		now := s.now()
		if _, err := s.store.PruneSessions(ctx, now, sessionIdle); err != nil {
			s.log.Warn("cannot remove expired sessions", "err", err)
		}
		if _, err := s.store.PruneDownloadLinks(ctx, now); err != nil {
			s.log.Warn("cannot remove expired download links", "err", err)
		}
		s.flushDenials(ctx, now)
		cancel()
		s.throttle.prune(now)
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
}

// readyz answers 200 when the node serves (ServerConfig.Ready), 503 with the reason when not:
// for load balancers, like /healthz without a session.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if s.ready != nil {
		if err := s.ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	json.NewEncoder(w).Encode(map[string]string{"status": "ready"})
}

// contentSecurityPolicy allows nothing from elsewhere and no inline script or style: scripts,
// styles, images and fonts come from our own static files (images also as data: URIs, for
// QR codes), forms post only to us, and no one may frame us.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

// securityHeaders sets the headers every answer carries. Answers other than static assets
// are not cached; a handler may say otherwise.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// no-referrer: a one-time link's token must not travel on in a Referer.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		if s.tls != nil {
			// Browsers ignore it over a certificate they had to be told to accept.
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// checkHost answers only loopback host names on plain HTTP: a web page that points its own
// host name at 127.0.0.1 (DNS rebinding) must not reach the UI as same-origin.
func (s *Server) checkHost(next http.Handler) http.Handler {
	if !s.loopbackHTTP {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		ip, err := netip.ParseAddr(host)
		if !strings.EqualFold(host, "localhost") && (err != nil || !ip.Unmap().IsLoopback()) {
			http.Error(w, "popgate's web UI on a loopback address answers only to localhost, 127.0.0.1 or [::1]", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers an error: JSON under /api/, otherwise the pages' error page.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, code, APIError{Error: msg})
		return
	}
	s.pages.RenderError(w, r, code, msg)
}

// readForm parses a POST form of at most maxFormBody bytes.
func readForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		io.Copy(io.Discard, r.Body)
		return err
	}
	return nil
}
