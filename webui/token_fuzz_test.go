package webui

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// nearMiss derives a candidate from the real secret s and the fuzzer's data, so that the
// fuzzer tries what is close to a secret, which it could never guess: data itself, s with data
// written over it at pos, s with data appended, or s with data inserted at pos.
func nearMiss(s string, how uint8, data string) string {
	pos := int(how>>2) % (len(s) + 1)
	switch how & 3 {
	case 0:
		return data
	case 1:
		return s[:pos] + data + s[min(pos+len(data), len(s)):]
	case 2:
		return s + data
	}
	return s[:pos] + data + s[pos:]
}

// nonceRE matches what differs between two answers to the same request: CSP nonces.
var nonceRE = regexp.MustCompile(`nonce-?[A-Za-z0-9+/=_"-]*`)

// FuzzAuthSecrets: the web address lets in exactly the bearer of a secret. An Authorization
// header is let in only when what follows "Bearer " is the API token; a session cookie only
// when the cookie's value is the session's token; GET /dl/TOKEN shows the link page only for
// the link's token. Every refusal is the same answer whatever was sent: a 401 with one of
// the fixed messages, the redirect to the sign-in page, the same "unknown link" page.
func FuzzAuthSecrets(f *testing.F) {
	for _, s := range []struct {
		kind, how uint8
		data      string
	}{
		{0, 0, ""}, {0, 1, "x"}, {0, 2, " "}, {0, 3, "\t"}, {0, 0, "bearer  pgt_" + strings.Repeat("A", 43)},
		{0, 1 | 4<<2, "A"}, {0, 0, "Basic YWRtaW46YWRtaW4="}, {0, 2, "\x00"}, {0, 1, "bearer"},
		{1, 0, ""}, {1, 2, "; popgate_session=x"}, {1, 1 | 20<<2, "="}, {1, 0, "popgate_session=\"\""}, {1, 3 | 16<<2, " "},
		{2, 2, ""}, {2, 0, "pgd_" + strings.Repeat("A", 43)}, {2, 2, "/"}, {2, 1 | 30<<2, "B"}, {2, 0, "..%2F"},
	} {
		f.Add(s.kind, s.how, s.data)
	}

	node := startTestNode(f)
	ctrl, st := node.Ctrl, node.Store
	if _, err := ctrl.AddTenant(setup(), "acme"); err != nil {
		f.Fatal(err)
	}
	if _, _, err := ctrl.AddPeer(setup(), control.AddPeerRequest{Tenant: "acme", Name: "laptop"}); err != nil {
		f.Fatal(err)
	}
	_, apiToken, err := st.AddAPIToken(setup(), store.NewAPIToken{Name: "ci", Role: store.RoleViewer})
	if err != nil {
		f.Fatal(err)
	}
	admin, err := st.AddAdmin(setup(), store.NewAdmin{Name: "alice", Role: store.RoleOwner, Password: authPassword})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	_, session, err := st.CreateSession(setup(), store.NewSession{AdminID: admin.ID, Now: now, ExpiresAt: now.Add(24 * time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	_, link, err := st.CreateDownloadLink(setup(), "acme", "laptop", "alice", now, now.Add(24*time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	ui, err := NewUI(ctrl, st, &recAuditor{}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Ctrl: ctrl, Store: st, Pages: ui, Addr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	get := func(target string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Host = "127.0.0.1:8080"
		return r
	}
	body := func(w *httptest.ResponseRecorder) string { return nonceRE.ReplaceAllString(w.Body.String(), "nonce") }
	refusals := map[string]bool{}
	for _, header := range []string{"", "Basic x", "Bearer nope"} {
		r := get("/api/v1/status")
		r.Header.Set("Authorization", header)
		var e APIError
		if w := serve(r); w.Code != http.StatusUnauthorized || json.Unmarshal(w.Body.Bytes(), &e) != nil {
			f.Fatalf("Authorization %q: %d %s", header, w.Code, w.Body)
		}
		refusals[e.Error] = true
	}
	signIn := serve(get("/"))
	if signIn.Code != http.StatusSeeOther {
		f.Fatalf("/ without a session: %d", signIn.Code)
	}
	gone := serve(get(DownloadPathPrefix + "pgd_nope"))
	if gone.Code != http.StatusNotFound {
		f.Fatalf("an unknown link: %d", gone.Code)
	}

	f.Fuzz(func(t *testing.T, kind, how uint8, data string) {
		switch kind % 3 {
		case 0:
			header := nearMiss("Bearer "+apiToken, how, data)
			r := get("/api/v1/status")
			r.Header.Set("Authorization", header)
			w := serve(r)
			scheme, rest, _ := strings.Cut(header, " ")
			genuine := strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(rest) == apiToken
			if w.Code == http.StatusOK {
				if !genuine {
					t.Fatalf("Authorization %q let in", header)
				}
				return
			}
			var e APIError
			if genuine || w.Code != http.StatusUnauthorized || json.Unmarshal(w.Body.Bytes(), &e) != nil || !refusals[e.Error] {
				t.Fatalf("Authorization %q: %d %s", header, w.Code, w.Body)
			}
		case 1:
			cookie := nearMiss("popgate_session="+session, how, data)
			r := get("/")
			r.Header.Set("Cookie", cookie)
			w := serve(r)
			c, err := r.Cookie("popgate_session")
			genuine := err == nil && c.Value == session
			if w.Code == http.StatusOK {
				if !genuine {
					t.Fatalf("Cookie %q let in", cookie)
				}
				return
			}
			if genuine || w.Code != signIn.Code || w.Header().Get("Location") != signIn.Header().Get("Location") || body(w) != body(signIn) {
				t.Fatalf("Cookie %q: %d %s %s", cookie, w.Code, w.Header(), w.Body)
			}
		case 2:
			token := nearMiss(link, how, data)
			target := DownloadPathPrefix + url.PathEscape(token)
			if _, err := url.ParseRequestURI(target); err != nil || token == "" || strings.Contains(token, "/") || path.Clean(target) != target {
				return // not one segment after /dl/: no link's page
			}
			w := serve(get(target))
			if w.Code == http.StatusOK {
				if token != link {
					t.Fatalf("link %q shows a page", token)
				}
				return
			}
			if token == link || w.Code != gone.Code || body(w) != body(gone) {
				t.Fatalf("link %q: %d %s", token, w.Code, w.Body)
			}
		}
	})
}
