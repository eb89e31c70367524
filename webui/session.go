package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/popgate/popgate/store"
)

// rankOf orders the roles for protect: owner > tenant_admin > viewer.
func rankOf(r Role) int {
	switch r {
	case RoleOwner:
		return 3
	case RoleTenantAdmin:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}

// atLeast reports whether p's role is min or above it.
func (p *Principal) atLeast(min Role) bool { return rankOf(p.Role) >= rankOf(min) && rankOf(min) > 0 }

// protect wraps h so that it runs only for a signed-in admin whose role is at least min, with
// the Principal in the request's context. Others are sent to the sign-in page (htmx requests
// by HX-Redirect) or, when signed in with too small a role, shown a 403 page.
func (s *Server) protect(min Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := s.sessionPrincipal(w, r)
		if p == nil {
			s.needSignIn(w, r)
			return
		}
		r = r.WithContext(WithPrincipal(r.Context(), p))
		if !p.atLeast(min) {
			msg := fmt.Sprintf("your role (%s) may not do this: ask an owner", p.Role)
			s.Denied(r, msg)
			s.pages.RenderError(w, r, http.StatusForbidden, msg)
			return
		}
		h(w, r)
	})
}

// needSignIn sends a request without a valid session to the sign-in page, to come back to
// where it was going (GET) or to the start page (other methods).
func (s *Server) needSignIn(w http.ResponseWriter, r *http.Request) {
	next := "/"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		next = r.URL.RequestURI()
	}
	if r.Header.Get("HX-Request") == "true" {
		if cur, err := url.Parse(r.Header.Get("HX-Current-URL")); err == nil && safeNext(cur.RequestURI()) != "/" {
			next = cur.RequestURI()
		}
		w.Header().Set("HX-Redirect", loginURL(next))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, loginURL(next), http.StatusSeeOther)
}

func loginURL(next string) string {
	next = safeNext(next)
	if next == "/" {
		return "/login"
	}
	return "/login?" + url.Values{"next": {next}}.Encode()
}

// safeNext returns next when it is a path on this site, "/" otherwise: sign-in must not
// redirect elsewhere ("//evil.example", "/\\evil.example", "https://...").
func safeNext(next string) string {
	if next == "" || len(next) > 2048 || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

// sessionPrincipal returns the principal of the request's session cookie, or nil when there is
// no live session (a dead one's cookie is cleared). It refreshes the session's last activity
// at most once per touchEvery.
func (s *Server) sessionPrincipal(w http.ResponseWriter, r *http.Request) *Principal {
	sess, ok := s.session(w, r)
	if !ok {
		return nil
	}
	a := sess.Admin
	return &Principal{AdminID: a.ID, Name: a.Name, Role: Role(a.Role), Tenant: a.TenantName, SessionID: strconv.FormatInt(sess.ID, 10)}
}

// session returns the live session of the request's cookie.
func (s *Server) session(w http.ResponseWriter, r *http.Request) (store.Session, bool) {
	c, err := r.Cookie(s.cookieName)
	if err != nil || c.Value == "" {
		return store.Session{}, false
	}
	ctx := r.Context()
	sess, err := s.store.SessionByToken(ctx, c.Value)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("cannot read a session", "err", err)
		}
		s.clearCookie(w)
		return store.Session{}, false
	}
	now := s.now()
	if !now.Before(sess.ExpiresAt) || !now.Before(sess.LastSeen.Add(sessionIdle)) || sess.Admin.Disabled {
		if err := s.store.DeleteSession(ctx, sess.ID); err != nil {
			s.log.Warn("cannot delete a dead session", "err", err)
		}
		s.clearCookie(w)
		return store.Session{}, false
	}
	if now.Sub(sess.LastSeen) >= touchEvery {
		if err := s.store.TouchSession(ctx, sess.ID, now); err != nil {
			s.log.Warn("cannot note session activity", "err", err)
		}
	}
	return sess, true
}

// startSession signs admin a in: a new session with a new token (never one the browser
// brought), in a cookie.
func (s *Server) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, a store.Admin) error {
	now := s.now()
	_, token, err := s.store.CreateSession(ctx, store.NewSession{AdminID: a.ID, Now: now, ExpiresAt: now.Add(sessionLifetime),
		RemoteAddr: remoteAddr(r), UserAgent: r.UserAgent()})
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName,
		Value:    token,
		Path:     "/",
		MaxAge:   int(sessionLifetime / time.Second),
		HttpOnly: true,
		Secure:   s.tls != nil,
		SameSite: http.SameSiteStrictMode,
	})
	return nil
}

func (s *Server) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.tls != nil, SameSite: http.SameSiteStrictMode})
}

// logout ends this browser's session.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if sess, ok := s.session(w, r); ok {
		if err := s.store.DeleteSession(r.Context(), sess.ID); err != nil {
			s.log.Error("cannot end a session", "err", err)
			s.pages.RenderError(w, r, http.StatusInternalServerError, "signing out failed: try again (details in the popgate serve log)")
			return
		}
		p := &Principal{AdminID: sess.Admin.ID, Name: sess.Admin.Name, Role: Role(sess.Admin.Role), Tenant: sess.Admin.TenantName}
		s.Audit(r.WithContext(WithPrincipal(r.Context(), p)), "signout", store.AdminTarget(sess.Admin.Name), "")
	}
	s.clearCookie(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// logoutEverywhere ends every session of the signed-in admin, this one included.
func (s *Server) logoutEverywhere(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.session(w, r)
	if !ok {
		s.needSignIn(w, r)
		return
	}
	n, err := s.store.DeleteAdminSessions(r.Context(), sess.Admin.ID)
	if err != nil {
		s.log.Error("cannot end sessions", "err", err)
		s.pages.RenderError(w, r, http.StatusInternalServerError, "signing out everywhere failed: try again (details in the popgate serve log)")
		return
	}
	p := &Principal{AdminID: sess.Admin.ID, Name: sess.Admin.Name, Role: Role(sess.Admin.Role), Tenant: sess.Admin.TenantName}
	s.Audit(r.WithContext(WithPrincipal(r.Context(), p)), "signout.everywhere", store.AdminTarget(sess.Admin.Name), fmt.Sprintf("%d sessions ended", n))
	s.clearCookie(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
