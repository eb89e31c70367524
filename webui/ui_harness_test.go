package webui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway"
	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/gatewaytest"
	"github.com/popgate/popgate/store"
)

// Principals the tests sign in as.
var (
	owner       = &Principal{AdminID: 1, Name: "olivia", Role: RoleOwner, SessionID: "s1"}
	acmeAdmin   = &Principal{AdminID: 2, Name: "alice", Role: RoleTenantAdmin, Tenant: "acme", SessionID: "s2"}
	bravoAdmin  = &Principal{AdminID: 3, Name: "bob", Role: RoleTenantAdmin, Tenant: "bravo", SessionID: "s3"}
	viewer      = &Principal{AdminID: 4, Name: "victor", Role: RoleViewer, SessionID: "s4"}
	acmeViewer  = &Principal{AdminID: 5, Name: "vera", Role: RoleViewer, Tenant: "acme", SessionID: "s5"}
	anonymous   *Principal
	roleRank    = map[Role]int{RoleViewer: 1, RoleTenantAdmin: 2, RoleOwner: 3}
	nodeCounter atomic.Int64
)

// testProtect stands in for the auth side's protect: a principal of at least role min, or
// the sign-in redirect (no principal) or 403 (too small a role).
func testProtect(min Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		if p == nil {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if roleRank[p.Role] < roleRank[min] {
			http.Error(w, "forbidden by protect", http.StatusForbidden)
			return
		}
		h(w, r)
	})
}

// recAuditor records what the pages hand their Auditor (reads, refusals) like the server
// does: in the store, with the tenant of the route's {tenant} or else the principal's; and
// in memory. The store records the changes itself.
type recAuditor struct {
	store auditStore // nil: memory only
	mu    sync.Mutex
	calls []store.AuditEntry // what the pages handed over
}

func (a *recAuditor) Audit(r *http.Request, action, target, detail string) {
	e := store.AuditEntry{At: time.Now(), Action: action, Target: target, Detail: detail, Remote: r.RemoteAddr, Tenant: r.PathValue("tenant")}
	if p := PrincipalFrom(r.Context()); p != nil {
		e.Actor = p.Name
		if e.Tenant == "" {
			e.Tenant = p.Tenant
		}
	}
	a.mu.Lock()
	a.calls = append(a.calls, e)
	a.mu.Unlock()
	if a.store != nil {
		if err := a.store.AppendAudit(r.Context(), e); err != nil {
			panic(err)
		}
	}
}

// Denied records a refusal, not rate-limited.
func (a *recAuditor) Denied(r *http.Request, why string) {
	a.Audit(r, "denied", pathTarget(r), why)
}

// entries returns the audit log oldest first without the test's setup: the store's when
// there is one, else what the pages handed over.
func (a *recAuditor) entries() []store.AuditEntry {
	if a.store == nil {
		a.mu.Lock()
		defer a.mu.Unlock()
		return slices.Clone(a.calls)
	}
	es, _, err := a.store.ListAudit(context.Background(), store.AuditQuery{Limit: store.MaxAuditPage})
	if err != nil {
		panic(err)
	}
	var out []store.AuditEntry
	for _, e := range slices.Backward(es) {
		if e.Actor != setupActor {
			out = append(out, e)
		}
	}
	return out
}

// actions returns the entries as "action target tenant".
func (a *recAuditor) actions() []string {
	var out []string
	for _, e := range a.entries() {
		out = append(out, e.Action+" "+e.Target+" "+e.Tenant)
	}
	return out
}

// uiHarness is the pages on a real node (userspace exit, loopback port, temporary data
// dir), with a test protect; requests carry the principal they are made as.
type uiHarness struct {
	t     testing.TB
	node  *gatewaytest.Node
	ctrl  *control.Controller
	store *store.Store
	ui    *UI
	mux   *http.ServeMux
	audit *recAuditor
}

// startTestNode runs a real node for the pages.
func startTestNode(t testing.TB) *gatewaytest.Node {
	t.Helper()
	return gatewaytest.Start(t, gatewaytest.Options{
		Gateway: gateway.Config{
			Interface: fmt.Sprintf("pgu%d%d", os.Getpid()%10000, nodeCounter.Add(1)%10),
			NodeName:  "pop-test-1",
			Version:   "0.1.0-test",
		},
		PublicHost: "vpn.example.net",
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

// newUIHarness starts a node with tenants acme and bravo, peers acme/laptop (groups eng,
// server key) and bravo/phone.
func newUIHarness(t testing.TB) *uiHarness {
	t.Helper()
	node := startTestNode(t)
	h := &uiHarness{t: t, node: node, ctrl: node.Ctrl, store: node.Store}
	h.audit = &recAuditor{store: h.store}
	ui, err := NewUI(h.ctrl, h.store, h.audit, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h.use(ui)
	ctx := setup()
	for _, tn := range []string{"acme", "bravo"} {
		if _, err := h.ctrl.AddTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	for _, req := range []control.AddPeerRequest{
		{Tenant: "acme", Name: "laptop", Groups: []string{"eng"}},
		{Tenant: "bravo", Name: "phone"},
	} {
		if _, _, err := h.ctrl.AddPeer(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// use serves ui (its routes on a fresh mux).
func (h *uiHarness) use(ui *UI) {
	h.ui = ui
	h.mux = http.NewServeMux()
	ui.Routes(h.mux, testProtect)
}

// do makes a request as p (nil: nobody signed in); form, when set, is the POST body.
func (h *uiHarness) do(p *Principal, method, target string, form url.Values) *httptest.ResponseRecorder {
	h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if p != nil {
		r = r.WithContext(WithPrincipal(r.Context(), p))
	}
	w := httptest.NewRecorder()
	h.mux.ServeHTTP(w, r)
	return w
}

// check makes a request and fails the test unless it answers code with every want in the
// body.
func (h *uiHarness) check(p *Principal, method, target string, form url.Values, code int, want ...string) string {
	h.t.Helper()
	w := h.do(p, method, target, form)
	body := w.Body.String()
	if w.Code != code {
		h.t.Errorf("%s %s as %s: status %d, want %d\n%s", method, target, name(p), w.Code, code, excerpt(body))
		return body
	}
	for _, s := range want {
		if !strings.Contains(body, s) {
			h.t.Errorf("%s %s as %s: body lacks %q\n%s", method, target, name(p), s, excerpt(body))
		}
	}
	return body
}

func name(p *Principal) string {
	if p == nil {
		return "nobody"
	}
	return p.Name
}

// excerpt is the part of a page worth printing when a test fails: the main element.
func excerpt(body string) string {
	if i := strings.Index(body, "<main"); i >= 0 {
		body = body[i:]
	}
	if len(body) > 3000 {
		body = body[:3000] + "…"
	}
	return body
}

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

func newRequest(method, target string, p *Principal) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if p != nil {
		r = r.WithContext(WithPrincipal(r.Context(), p))
	}
	return r
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// listServer serves a blocklist at /list on loopback, whose text and status a test changes
// (only an owner's list may be fetched from loopback).
type listServer struct {
	*httptest.Server
	mu     sync.Mutex
	text   string
	status int
}

func startListServer(t testing.TB, text string) *listServer {
	ls := &listServer{text: text, status: http.StatusOK}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		if r.URL.Path != "/list" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(ls.status)
		w.Write([]byte(ls.text))
	}))
	t.Cleanup(ls.Close)
	return ls
}

func (ls *listServer) set(text string, status int) {
	ls.mu.Lock()
	ls.text, ls.status = text, status
	ls.mu.Unlock()
}
