package webui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/nodesync"
	"github.com/popgate/popgate/gateway/plane/planetest"
	"github.com/popgate/popgate/store"
)

// nodesEnv is a controller that accepts nodes (on an in-memory data plane) with the pages on
// it; links are the sync streams its Nodes reports, set by the test.
type nodesEnv struct {
	*uiHarness
	mu    sync.Mutex
	links map[string]nodesync.Link
}

func newNodesEnv(t *testing.T) *nodesEnv {
	t.Helper()
	e := &nodesEnv{links: map[string]nodesync.Link{}}
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "popgate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	links := func() map[string]nodesync.Link {
		e.mu.Lock()
		defer e.mu.Unlock()
		m := map[string]nodesync.Link{}
		for k, v := range e.links {
			m[k] = v
		}
		return m
	}
	ctrl, err := control.New(control.Config{PublicEndpoint: "vpn.example.net:51820", MTU: 1420, Region: "local",
		Nodes: &control.NodesConfig{Addr: "192.0.2.10:7443", Pin: nodesync.Pin{7}, Links: links}}, st, &planetest.DataPlane{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })
	if err := ctrl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := &uiHarness{t: t, ctrl: ctrl, store: st, audit: &recAuditor{store: st}}
	ui, err := NewUI(ctrl, st, h.audit, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h.use(ui)
	e.uiHarness = h
	return e
}

func (e *nodesEnv) setLink(name string, l *nodesync.Link) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l == nil {
		delete(e.links, name)
	} else {
		e.links[name] = *l
	}
}

// join makes a token for a node and joins it as the node sync would, with name (the
// token's when "").
func (e *nodesEnv) join(roles, region, name string, pin byte) store.Node {
	e.t.Helper()
	line, _, err := e.ctrl.NodeToken(setup(), roles, region, name, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	tok, err := nodesync.ParseToken(line, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := e.store.RedeemJoinToken(setup(), store.Redemption{TokenID: tok.ID, Secret: tok.Secret, Name: name, Pin: [32]byte{pin},
		BackboneEndpoint: "198.51.100.7:51821", Version: "0.9.0-test"})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestUINodesToken makes join tokens through the form: bad input is shown next to its field
// and makes none; a good one shows the token, once, with the command line that joins.
func TestUINodesToken(t *testing.T) {
	e := newNodesEnv(t)
	ctx := setup()
	if _, err := e.ctrl.AddRegion(ctx, "fra", "vpn-fra.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	e.check(owner, "GET", "/nodes", nil, http.StatusOK, "<h1>Nodes</h1>", "No node has joined yet", "192.0.2.10:7443",
		`action="/nodes/tokens"`, `<option value="local" selected>local (this controller's)</option>`, `<option value="fra">fra</option>`,
		`<option value="1h" selected>1 hour</option>`, `href="/nodes" aria-current="page">Nodes<`)

	for _, c := range []struct {
		form []string
		want []string
	}{
		{[]string{"roles", "", "region", "local", "ttl", "1h"}, []string{`aria-describedby="node-roles-error"`, "Choose the node&#39;s roles"}},
		{[]string{"roles", "router", "region", "local", "ttl", "1h"}, []string{"node-roles-error"}},
		{[]string{"roles", "pop", "region", "", "ttl", "1h"}, []string{"node-region-error", "Choose the region"}},
		{[]string{"roles", "pop", "region", "mars", "ttl", "1h"}, []string{"node-region-error", "mars"}},
		{[]string{"roles", "pop", "region", "local", "name", "Bad Name", "ttl", "1h"}, []string{"node-name-error", `value="Bad Name"`}},
		{[]string{"roles", "pop", "region", "local", "ttl", "5m"}, []string{"node-ttl-error", "1 hour, 24 hours or 7 days"}},
		{[]string{"roles", "pop", "region", "fra", "ttl", ""}, []string{"node-ttl-error", `<option value="fra" selected>fra</option>`}},
	} {
		e.check(owner, "POST", "/nodes/tokens", form(c.form...), http.StatusUnprocessableEntity, c.want...)
	}
	if got := e.audit.actions(); len(got) != 0 {
		t.Fatalf("refused forms made tokens: %v", got)
	}

	body := e.check(owner, "POST", "/nodes/tokens", form("roles", "pop", "region", "fra", "name", "fra-pop-1", "ttl", "24h"), http.StatusOK,
		"Join token made", "roles <strong>pop</strong> in region <strong>fra</strong>, named <strong>fra-pop-1</strong>", "in 23h", "shown only now")
	line := regexp.MustCompile(`value="popgate serve --join (popgate-join-1\.[A-Za-z0-9_-]+)"`).FindStringSubmatch(body)
	if line == nil || !strings.Contains(body, `id="join-token" class="mono" value="`+line[1]+`"`) {
		t.Fatalf("the page shows no token and command line:\n%s", excerpt(body))
	}
	tok, err := nodesync.ParseToken(line[1], time.Now())
	if err != nil || tok.Addr != "192.0.2.10:7443" || tok.Pin != (nodesync.Pin{7}) {
		t.Fatalf("the token shown: %+v, %v", tok, err)
	}
	// An exit serves no region's clients: its token names none, whatever the form said.
	body = e.check(owner, "POST", "/nodes/tokens", form("roles", "exit", "region", "fra", "ttl", "1h"), http.StatusOK, "roles <strong>exit</strong>.")
	if strings.Contains(body, "in region") {
		t.Errorf("an exit's token names a region:\n%s", excerpt(body))
	}
	want := []string{"node.token node:fra-pop-1 ", "node.token node:* "}
	if got := e.audit.actions(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("audit: %q, want %q", got, want)
	}
}

// TestUINodes lists joined nodes with their state in words: in sync, behind, apply failed,
// offline (stale since), never connected; and removes one through the confirmation.
func TestUINodes(t *testing.T) {
	e := newNodesEnv(t)
	ctx := setup()
	for _, r := range [][2]string{{"fra", "vpn-fra.example.com:51820"}, {"ams", "vpn-ams.example.com:51820"}} {
		if _, err := e.ctrl.AddRegion(ctx, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	p1 := e.join("pop", "", "p1", 1)
	f1 := e.join("pop", "fra", "f1", 2)
	e.join("pop", "fra", "f2", 3)
	x1 := e.join("exit", "", "x1", 4)
	e.join("pop,exit", "fra", "f3", 5)
	cur := func() int64 {
		ns, err := e.ctrl.Nodes(ctx)
		if err != nil || len(ns) == 0 {
			t.Fatal(ns, err)
		}
		return ns[0].Current
	}()
	now := time.Now()
	started := now.Add(-(26*time.Hour + 5*time.Minute))
	report := fmt.Sprintf(`{"generation":%d,"node":{"name":"p1","started_at":%q},"peers":0,"tenants":0,"clock_offset":"3.46s",`+
		`"links":[{"node":%d,"state":"up","rtt_ns":1530000,"loss":0.02},{"node":%d,"state":"down","loss":1},{"node":999,"state":"unknown"}]}`,
		cur, started.Format(time.RFC3339Nano), x1.ID+1, f1.ID+1)
	for _, r := range []struct {
		id     int64
		at     time.Time
		gen    int64
		report string
	}{
		{p1.ID, now, cur, report},
		{f1.ID, now, cur - 2, ""},
		{x1.ID, now.Add(-10 * time.Minute), cur - 1, ""},
	} {
		if err := e.store.RecordNodeReport(ctx, r.id, store.NodeReport{At: r.at, Version: "0.9.1-test", AppliedGeneration: max(r.gen, 0), Report: r.report}); err != nil {
			t.Fatal(err)
		}
	}
	e.setLink("p1", &nodesync.Link{Since: now.Add(-3 * time.Minute), Applied: cur})
	e.setLink("f1", &nodesync.Link{Since: now.Add(-time.Minute), Applied: cur - 2})
	e.setLink("f3", &nodesync.Link{Since: now, Applied: cur, ApplyError: "open tun: operation not permitted"})

	body := e.check(owner, "GET", "/nodes", nil, http.StatusOK,
		"<strong>p1</strong>", "up 1d 2h", `<span class="badge ok">In sync</span>`, "since <time", "3m ago", "0.9.1-test", "198.51.100.7:51821",
		"Its clock is 3.5s off", `href="/regions/fra">fra<`,
		`<span class="badge warn">2 generations behind</span>`, fmt.Sprintf("Applied generation %d; now %d.", cur-2, cur),
		`<span class="badge bad">Offline</span>`, "Stale since 10m ago", "last seen <time",
		`<span class="badge off">Never connected</span>`, "never seen",
		`<span class="badge bad">Apply failed</span>`, "Open tun: operation not permitted.",
		`href="/nodes/p1/delete"`)
	// The backbone links p1 reported, as a table from p1 to each node it probes, by name.
	e.check(owner, "GET", "/nodes", nil, http.StatusOK, `<h2 id="links-title">Backbone links</h2>`,
		`<th scope="col">f1</th><th scope="col">node #999</th><th scope="col">x1</th>`, `<th scope="row">p1</th>`,
		`<span class="badge bad">down</span><br><span class="muted small">100 % loss</span>`,
		`<span class="badge ok">up</span> 1.53 ms<br><span class="muted small">2 % loss</span>`,
		`<span class="badge off">unknown</span><br><span class="muted small">0 % loss</span>`)
	if i, j := strings.Index(body, "<strong>f1</strong>"), strings.Index(body, "<strong>p1</strong>"); i < 0 || j < i {
		t.Error("nodes are not ordered by name")
	}

	// The region pages show each region's PoPs with their state: this controller in its
	// own, the joined nodes with the pop role (not x1, an exit) in theirs.
	body = e.check(owner, "GET", "/regions", nil, http.StatusOK, "<th>PoPs</th>", "This controller", "0 peers online",
		`<a href="/nodes">f1</a> <span class="badge warn">2 generations behind</span>`, `<a href="/nodes">f2</a> <span class="badge off">Never connected</span>`,
		`<a href="/nodes">f3</a> <span class="badge bad">Apply failed</span>`, `<a href="/nodes">p1</a> <span class="badge ok">In sync</span>`,
		"none: no client can connect", "what each PoP last reported")
	if strings.Contains(body, ">x1<") {
		t.Error("an exit is listed among the PoPs")
	}
	e.check(owner, "GET", "/regions/local", nil, http.StatusOK, "<h2>PoPs</h2>", "<strong>This controller</strong>", `<span class="badge ok">In sync</span>`, "<strong>p1</strong>")
	body = e.check(owner, "GET", "/regions/fra", nil, http.StatusOK, `aria-label="PoPs of fra"`, "<strong>f1</strong>", "<strong>f2</strong>", "<strong>f3</strong>", "not reported")
	if strings.Contains(body, "This controller") || strings.Contains(body, "<strong>p1</strong>") {
		t.Errorf("region fra lists another region's PoPs:\n%s", excerpt(body))
	}
	e.check(owner, "GET", "/regions/ams", nil, http.StatusOK, "No PoP serves this region")

	// A token for a name that has joined already is refused next to the name.
	e.check(owner, "POST", "/nodes/tokens", form("roles", "pop", "region", "fra", "name", "f1", "ttl", "1h"), http.StatusUnprocessableEntity,
		"node-name-error", "has joined already")

	// Removing: the confirmation, a wrong name, a node that is gone, then for real.
	e.check(owner, "GET", "/nodes/f1/delete", nil, http.StatusOK, "Remove node f1", "Type <strong class=\"mono\">f1</strong>", "another PoP of fra", "2 generations behind")
	e.check(owner, "GET", "/nodes/nope/delete", nil, http.StatusNotFound)
	e.check(owner, "POST", "/nodes/f1/delete", form("confirm", "f"), http.StatusUnprocessableEntity, "Type the node&#39;s name, f1, to confirm", `value="f"`)
	e.check(owner, "POST", "/nodes/nope/delete", form("confirm", "nope"), http.StatusNotFound)
	w := e.do(owner, "POST", "/nodes/f1/delete", form("confirm", "f1"))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/nodes?ok=node-removed" {
		t.Fatalf("remove: %d %q\n%s", w.Code, w.Header().Get("Location"), excerpt(w.Body.String()))
	}
	if body := e.check(owner, "GET", "/nodes?ok=node-removed", nil, http.StatusOK, "Node removed"); strings.Contains(body, "<strong>f1</strong>") {
		t.Error("the removed node is still listed")
	}
	if got := e.audit.actions(); fmt.Sprint(got) != "[node.remove node:f1 ]" {
		t.Errorf("audit: %q", got)
	}
}

// refusingNodes is a controller that refuses to remove nodes, as a future rule might.
type refusingNodes struct{ uiBackend }

func (refusingNodes) RemoveNode(context.Context, string) ([]store.ExitDropped, error) {
	return nil, fmt.Errorf("%w: node p1 is the last PoP of region fra: add another first", store.ErrInvalid)
}

// TestUINodesRefusal: a removal the controller refuses is the page's error, and the node
// stays.
func TestUINodesRefusal(t *testing.T) {
	e := newNodesEnv(t)
	e.join("pop", "", "p1", 1)
	ui, err := newUI(refusingNodes{e.ctrl}, e.store, e.audit, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.use(ui)
	e.check(owner, "POST", "/nodes/p1/delete", form("confirm", "p1"), http.StatusUnprocessableEntity, `class="flash err"`, "last PoP of region fra", `value="p1"`)
}

// TestUINodesScoped: only owners of the whole installation see nodes, as on the API; the
// navigation offers the page only to them, and a controller that accepts no nodes says how
// to make it.
func TestUINodesScoped(t *testing.T) {
	e := newNodesEnv(t)
	e.join("pop", "", "p1", 1)
	acmeOwner := &Principal{AdminID: 9, Name: "oscar", Role: RoleOwner, Tenant: "acme", SessionID: "s9"}
	for _, who := range []*Principal{acmeAdmin, viewer, acmeViewer, acmeOwner} {
		for _, c := range [][2]string{{"GET", "/nodes"}, {"POST", "/nodes/tokens"}, {"GET", "/nodes/p1/delete"}, {"POST", "/nodes/p1/delete"}} {
			var f url.Values
			if c[0] == "POST" {
				f = form("roles", "pop", "region", "local", "ttl", "1h", "confirm", "p1")
			}
			if body := e.check(who, c[0], c[1], f, http.StatusForbidden); strings.Contains(body, "p1") && c[0] == "GET" && c[1] == "/nodes" {
				t.Errorf("%s %s as %s shows a node", c[0], c[1], name(who))
			}
		}
		if body := e.check(who, "GET", "/regions", nil, http.StatusOK); strings.Contains(body, `href="/nodes"`) || strings.Contains(body, ">p1<") {
			t.Errorf("GET /regions as %s links the nodes page or shows a node", name(who))
		}
	}
	if ns, _ := e.ctrl.Nodes(context.Background()); len(ns) != 1 {
		t.Errorf("refused removals removed nodes: %+v", ns)
	}
	if got := e.audit.actions(); len(got) != 0 && !strings.HasPrefix(got[0], "denied") {
		t.Errorf("refused token forms made tokens: %q", got)
	}

	// A controller without --controller-addr: the page says how to accept nodes, and the
	// form's refusal says it too.
	h := newUIHarness(t)
	h.check(owner, "GET", "/nodes", nil, http.StatusOK, "does not accept nodes", "--controller-addr HOST:PORT")
	h.check(owner, "POST", "/nodes/tokens", form("roles", "pop", "region", "local", "ttl", "1h"), http.StatusUnprocessableEntity, `class="flash err"`, "--controller-addr")
}

// TestNodeRowOnline: a connected node's row carries the peers online of its last report; a
// node that is not connected, or whose report has no count, says nothing (-1).
func TestNodeRowOnline(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name      string
		connected bool
		report    string
		want      int
	}{
		{"connected, reported", true, `{"generation":3,"peers":5,"online":2}`, 2},
		{"connected, none online", true, `{"generation":3,"peers":5,"online":0}`, 0},
		{"an older node's report", true, `{"generation":3,"peers":5}`, -1},
		{"not connected", false, `{"generation":3,"peers":5,"online":2}`, -1},
		{"no report", true, "", -1},
	} {
		n := control.NodeInfo{Connected: tc.connected}
		n.LastReport = tc.report
		if got := nodeRowOf(n, now).Online; got != tc.want {
			t.Errorf("%s: Online %d, want %d", tc.name, got, tc.want)
		}
	}
}
