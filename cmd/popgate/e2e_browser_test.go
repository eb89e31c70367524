package main

// The end-to-end test of the web UI in a real browser: headless Debian Chromium, driven with
// chromedp, runs in the gateway namespace of the testbed next to `popgate serve` and uses the
// UI as an admin would: sign in with the first admin's password that serve printed, create a
// tenant and a peer, download the peer's config through the page's download link, and watch
// the peers page turn the peer online while a stock client, configured with exactly that
// file, sends traffic. A tenant admin of another tenant then signs in and must not see the
// peer. Subtests (e2e_browser_pages_test.go) then check single features and every page's
// layout and accessibility (axe-core). Screenshots of the main pages go to
// $POPGATE_ARTIFACTS (default: a temp dir of the test). Needs root, the tools of `make
// test-deps` and chromium.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// e2eChromium is where Debian's chromium package puts the browser.
const e2eChromium = "/usr/bin/chromium"

// e2eStepTimeout bounds one browser step (a navigation, a click, a query).
const e2eStepTimeout = 20 * time.Second

// e2eFirstAdminRE matches the line serve prints on stderr at its first start.
var e2eFirstAdminRE = regexp.MustCompile(`popgate: first admin "admin" created with password (\S+) — sign in at (http://127\.0\.0\.1:\d+/)`)

// e2eRequireChromium returns the browser's path. It skips the test without chromium, and
// fails it under CI (CI=true), where a missing chromium means a broken setup.
func e2eRequireChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(e2eChromium); err == nil {
		return e2eChromium
	}
	msg := fmt.Sprintf("e2e: no chromium at %s: run `make test-deps` (as root) to install it (Debian package chromium)", e2eChromium)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// e2eArtifactsDir is where the screenshots go: $POPGATE_ARTIFACTS, or a temp dir of t.
func e2eArtifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("POPGATE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("POPGATE_ARTIFACTS: %v", err)
	}
	return dir
}

// e2eTab is one browser tab signed in (or about to sign in) to the web UI at base.
type e2eTab struct {
	t         *testing.T
	ctx       context.Context // the tab's chromedp context, without a deadline
	base      string          // "http://127.0.0.1:PORT", no trailing slash
	artifacts string
	// refusals holds the URLs (base+path) the test expects to answer an error status, which
	// the browser logs as a console error; nil: none are expected.
	refusals *sync.Map
}

// step returns a context for one browser step.
func (b *e2eTab) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, e2eStepTimeout)
}

// do runs actions that return nothing and fails the test on error.
func (b *e2eTab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// e2eEval evaluates a JavaScript expression in the tab's page and decodes its value.
func e2eEval[T any](b *e2eTab, expr string) (T, error) {
	ctx, cancel := b.step()
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// mustEval is e2eEval that fails the test on error.
func e2eMustEval[T any](b *e2eTab, what, expr string) T {
	b.t.Helper()
	v, err := e2eEval[T](b, expr)
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// open navigates to path and returns the HTTP status of the document.
func (b *e2eTab) open(path string) int64 {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(b.base+path))
	if err != nil {
		b.t.Fatalf("browser: open %s: %v", path, err)
	}
	return resp.Status
}

// mustOpen navigates to path and fails the test unless it answers 200.
func (b *e2eTab) mustOpen(path string) {
	b.t.Helper()
	if code := b.open(path); code != 200 {
		b.t.Fatalf("browser: %s answered %d, want 200; the page says: %s", path, code, b.text("main"))
	}
}

// submit clicks the element sel (a submit button or a link), waits for the page it leads to
// and fails the test unless that answers 200.
func (b *e2eTab) submit(what, sel string) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: %s (click %s): %v", what, sel, err)
	}
	if resp.Status != 200 {
		b.t.Fatalf("browser: %s: %s answered %d, want 200; the page says: %s", what, resp.URL, resp.Status, b.text("main"))
	}
}

// fill types value into the empty input field sel.
func (b *e2eTab) fill(sel, value string) {
	b.t.Helper()
	b.do("type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), value))
}

// text returns what the user sees of the first element sel (its innerText); "" when there is
// none.
func (b *e2eTab) text(sel string) string {
	b.t.Helper()
	s, err := e2eEval[string](b, fmt.Sprintf(`document.querySelector(%s)?.innerText ?? ""`, e2eJS(sel)))
	if err != nil {
		b.t.Logf("browser: read %s: %v", sel, err)
	}
	return s
}

// path returns the path and query of the page the tab shows.
func (b *e2eTab) path() string {
	b.t.Helper()
	loc := e2eMustEval[string](b, "read the location", `location.pathname + location.search`)
	return loc
}

// screenshot saves the whole page as <artifacts>/e2e-<name>.png.
func (b *e2eTab) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	file := filepath.Join(b.artifacts, "e2e-"+name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", file)
}

// dashboardStats returns the totals of the dashboard the tab shows, value by label (as in the
// page's text; the labels are shown in capitals by the style sheet).
func (b *e2eTab) dashboardStats() map[string]string {
	b.t.Helper()
	return e2eMustEval[map[string]string](b, "read the dashboard's totals", `Object.fromEntries([...document.querySelectorAll('#dash .stat')].map(s =>
		[s.querySelector('.stat-label').textContent.trim(), s.querySelector('.stat-value').innerText.trim()]))`)
}

// signIn signs in as name from the sign-in page that opening the dashboard leads to, and
// checks that the dashboard greets the admin with role.
func (b *e2eTab) signIn(name, password, role string) {
	b.t.Helper()
	b.mustOpen("/")
	if p := b.path(); !strings.HasPrefix(p, "/login") {
		b.t.Fatalf("browser: without a session / shows %s, want the sign-in page", p)
	}
	b.fill("#login-name", name)
	b.fill("#login-password", password)
	b.submit("sign in as "+name, ".login-card button[type=submit]")
	if p := b.path(); p != "/" {
		b.t.Fatalf("browser: after signing in as %s the tab shows %s, want the dashboard; the page says: %s", name, p, b.text("main"))
	}
	if got := b.text(".me"); !strings.Contains(got, name) || !strings.Contains(got, role) {
		b.t.Fatalf("browser: the header says %q after signing in, want %s and %q", got, name, role)
	}
}

// e2eJS quotes s as a JavaScript string literal.
func e2eJS(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// e2ePeerRow is what a user sees of one peer's row in the peers table.
type e2ePeerRow struct {
	Found     bool   `json:"found"`
	Online    bool   `json:"online"`    // the dot is lit
	Dot       string `json:"dot"`       // the dot's tooltip: Online or Offline
	Handshake string `json:"handshake"` // "never", "12s ago"
	Rx        string `json:"rx"`        // "0 B", "1.2 MiB"
	Tx        string `json:"tx"`
	Meta      string `json:"meta"`     // the line above the table: "1–1 of 1 peer · 1 online · live"
	Same      bool   `json:"same"`     // the table is still the element the page loaded with
	Reloaded  bool   `json:"reloaded"` // the document is not the one the test marked
	Table     string `json:"table"`    // the table's text, for messages
}

// String is the row as the messages show it.
func (r e2ePeerRow) String() string {
	if !r.Found {
		return fmt.Sprintf("no row (the table says %q)", strings.Join(strings.Fields(r.Table), " "))
	}
	return fmt.Sprintf("dot %q, last handshake %q, received %q, sent %q; summary %q",
		r.Dot, r.Handshake, r.Rx, r.Tx, strings.Join(strings.Fields(r.Meta), " "))
}

// e2ePeerRowJS reads the row of the peer named %s from the live peers table. The test marks
// the document and the table first (e2eMarkJS), so that the row shows whether htmx replaced
// the table in place.
const e2ePeerRowJS = `(() => {
  const live = document.querySelector('#peers-live');
  const r = {found: false, meta: live?.querySelector('.table-meta')?.innerText ?? '', table: live?.innerText ?? '',
    same: !!live?.dataset.e2eMark, reloaded: !window.e2eMark};
  const a = [...document.querySelectorAll('#peers-live tbody td.peer-cell > a')].find(a => a.textContent.trim() === %s);
  if (!a) return r;
  const tr = a.closest('tr'), td = [...tr.children], dot = tr.querySelector('.dot');
  return Object.assign(r, {found: true, online: dot.classList.contains('on'), dot: dot.title,
    handshake: td[td.length-3].innerText.trim(), rx: td[td.length-2].innerText.trim(), tx: td[td.length-1].innerText.trim()});
})()`

// e2eMarkJS marks the document and the live table; a reload drops both marks, a live refresh
// (htmx swaps the table's outer HTML) the table's.
const e2eMarkJS = `(() => { window.e2eMark = true; document.querySelector('#peers-live').dataset.e2eMark = '1'; return true; })()`

func TestE2EBrowser(t *testing.T) {
	testbed.RequireRoot(t)
	chromium := e2eRequireChromium(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping")
	bin := e2eRequireBinary(t)
	begin := time.Now()
	artifacts := e2eArtifactsDir(t)
	topo := testbed.NewTopology(t)
	n := &e2eNode{t: t, bin: bin, topo: topo, dataDir: t.TempDir(), ifname: topo.Name("pg"), port: 51821, mode: "userspace",
		dns: netip.AddrPortFrom(topo.NetAddr4, 53).String()} // nothing answers there: the test asks no names
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, n.ifname+".sock")) })
	files := testbed.ServeRandomFile(t, topo.Net, 4)
	// One-time links must start with the public URL (set as the environment sets it for
	// serve), not with the loopback address the browser uses.
	t.Setenv("POPGATE_PUBLIC_URL", e2ePublicURL)
	// The controller accepts nodes, so that a PoP can join from the Nodes page.
	t.Setenv("POPGATE_CONTROLLER_ADDR", e2eControllerAddr)
	if err := n.start(); err != nil {
		t.Fatalf("e2e: popgate serve did not start: %v", err)
	}

	// The first admin's password and the address of the UI (on Pop's loopback), from the line
	// serve printed on stderr.
	var password, webURL string
	testbed.Poll(t, 10*time.Second, "serve to print the first admin's password", func(context.Context) error {
		m := e2eFirstAdminRE.FindStringSubmatch(n.proc.Log())
		if m == nil {
			return errors.New("no `popgate: first admin \"admin\" created with password …` line in serve's output")
		}
		password, webURL = m[1], m[2]
		return nil
	})
	base := strings.TrimSuffix(webURL, "/")
	t.Logf("serve up after %v; web UI at %s in %s", time.Since(begin).Round(time.Millisecond), webURL, topo.Pop)

	// The browser runs in Pop, where the UI's loopback address is, and connects nowhere else:
	// no background connections, no name lookups but localhost. The first Do below starts it
	// (Allocate runs on the caller's goroutine, which then reads wrapErr).
	var wrapErr error
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless, // also hides scrollbars and mutes audio
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.WindowSize(1280, 900),
		// No UserDataDir: the allocator makes a fresh profile directory per browser and
		// removes it (after killing leftover processes) when the browser ends.
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) { wrapErr = topo.Pop.Wrap(cmd) }),
	)
	t.Cleanup(cancelAlloc)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	// The first Do starts the browser and binds it to tabCtx, so it gets no deadline of its own:
	// a watchdog ends a start that hangs.
	watchdog := time.AfterFunc(60*time.Second, cancelTab)
	err := chromedp.Do(tabCtx)
	if !watchdog.Stop() {
		t.Fatalf("e2e: chromium did not start within 60 s")
	}
	if err != nil || wrapErr != nil {
		t.Fatalf("e2e: start chromium in %s: %v (%v)", topo.Pop, err, wrapErr)
	}
	refusals := new(sync.Map)
	b := &e2eTab{t: t, ctx: tabCtx, base: base, artifacts: artifacts, refusals: refusals}
	t.Logf("chromium up after %v", time.Since(begin).Round(time.Millisecond))

	// What the pages write to the console: an exception or an error (a script blocked by the
	// content security policy, a failed request) is a bug of the UI.
	// Pages the test means to be refused (a 404, a form with errors) are the exception.
	var consoleErrs []string // written by the goroutine, read after consoleDone
	consoleDone := make(chan struct{})
	messages := chromedp.Console(tabCtx)
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if _, expected := refusals.Load(m.URL); expected && strings.HasPrefix(m.Text, "Failed to load resource: the server responded with a status of ") {
				continue
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				consoleErrs = append(consoleErrs, fmt.Sprintf("%s (at %q)", m, m.URL))
			}
		}
	}()
	t.Cleanup(func() {
		cancelTab()
		<-consoleDone
		for _, e := range consoleErrs {
			t.Errorf("browser console: %s", e)
		}
	})
	// On failure, a picture of where the test stopped.
	t.Cleanup(func() {
		if t.Failed() {
			ctx, cancel := context.WithTimeout(tabCtx, 10*time.Second)
			defer cancel()
			if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
				file := filepath.Join(artifacts, "e2e-failed.png")
				if os.WriteFile(file, png, 0o644) == nil {
					t.Logf("screenshot of the page at the failure: %s", file)
				}
			}
		}
	})

	// Sign in as the first admin, an owner.
	b.signIn("admin", password, "Owner")
	if got := b.dashboardStats()["Peers online"]; got != "0 / 0" {
		t.Errorf("the fresh node's dashboard shows %q peers online, want 0 / 0", got)
	}

	// Create the tenant acme on the tenants page; that leads to acme's (empty) peers.
	b.do("open the tenants page", chromedp.Click(chromedp.CSS(`.mainnav a[href="/tenants"]`)), chromedp.WaitVisible(chromedp.CSS("#tenant-name")))
	b.fill("#tenant-name", "acme")
	b.submit("create tenant acme", `form[action="/tenants"] button[type=submit]`)
	if h, flash := b.text("main h1"), b.text(".flash.ok"); h != "acme" || flash != "Tenant created." {
		t.Fatalf("after creating acme the page has heading %q and message %q, want acme's peers and a confirmation; it says: %s", h, flash, b.text("main"))
	}

	// Create the peer laptop with a server-generated key: "New peer" on acme's peers.
	b.submit("open the new-peer form", `.page-head a[href^="/peers/new"]`)
	if got := e2eMustEval[string](b, "read the tenant field", `document.querySelector('#tenant').value`); got != "acme" {
		t.Errorf("the new-peer form of acme's peers has tenant %q, want acme", got)
	}
	b.fill("#name", "laptop")
	b.submit("create peer laptop", `form[action="/peers"] button[type=submit]`)
	peerPage := "/tenants/acme/peers/laptop"
	if p := b.path(); !strings.HasPrefix(p, peerPage+"/config") {
		t.Fatalf("after creating the peer the tab shows %s, want its config page; the page says: %s", p, b.text("main"))
	}
	if got := b.text(".flash.ok"); got == "" {
		t.Errorf("the config page of the new peer shows no confirmation")
	}
	if got := b.text("h1"); got != "Config of laptop" {
		t.Errorf("config page heading %q, want %q", got, "Config of laptop")
	}
	// The QR code is there and is a loaded image.
	b.do("wait for the QR code", chromedp.WaitVisible(chromedp.CSS("figure.qr img")))
	if err := testbed.PollErr(b.ctx, 10*time.Second, func(context.Context) error {
		w, err := e2eEval[int](b, `(() => { const i = document.querySelector('figure.qr img'); return i.complete ? i.naturalWidth : 0; })()`)
		if err == nil && w < 100 {
			err = fmt.Errorf("the QR image is %d px wide", w)
		}
		return err
	}); err != nil {
		t.Errorf("the QR code did not load: %v", err)
	}
	b.screenshot("peer-config")

	// Download the config with the page's download link, as a user does.
	downloads := t.TempDir()
	dl := b.downloadConfig(`.config-text a[download]`, downloads)
	if dl.Name != "acme-laptop.conf" {
		t.Errorf("the download is named %q, want acme-laptop.conf", dl.Name)
	}
	conf := dl.Data
	shown := e2eMustEval[string](b, "read the config text", `document.querySelector('pre.config').textContent`)
	if strings.TrimSpace(conf) != strings.TrimSpace(shown) {
		t.Errorf("the downloaded file differs from the config the page shows:\nfile:\n%s\npage:\n%s", conf, shown)
	}
	cfg := e2eCheckConfig(t, conf, n.endpoint())
	clientPub, err := testbed.PublicKey(cfg.Interface.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}

	// acme's peers page, before the client connects: laptop is there, offline, never seen.
	b.mustOpen("/peers?tenant=acme")
	before := e2eMustEval[e2ePeerRow](b, "read laptop's row", fmt.Sprintf(e2ePeerRowJS, e2eJS("laptop")))
	if !before.Found || before.Online || before.Handshake != "never" || before.Rx != "0 B" || before.Tx != "0 B" {
		t.Fatalf("before the client connects, laptop's row is %v, want offline, never seen, 0 B both ways", before)
	}
	e2eMustEval[bool](b, "mark the page", e2eMarkJS)

	// The stock client, configured with exactly the downloaded file, and traffic through it.
	client := testbed.StartClient(t, topo.Cli, topo.Name("wgb"), conf)
	testbed.Poll(t, 60*time.Second, "ping through the tunnel", func(ctx context.Context) error {
		return testbed.PingN(ctx, topo.Cli, topo.NetAddr4, 1, time.Second)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err = files.CheckDownload(ctx, topo.Cli, topo.NetAddr4)
	cancel()
	if err != nil {
		t.Fatalf("download through the tunnel: %v", err)
	}
	trafficAt := time.Now()
	t.Logf("client connected and downloaded %d MiB after %v", files.Size>>20, time.Since(begin).Round(time.Millisecond))

	// The page, left open, turns laptop online with its traffic by itself (the table
	// refreshes every 5 seconds).
	var row e2ePeerRow
	if err := testbed.PollErr(b.ctx, 30*time.Second, func(context.Context) error {
		var err error
		row, err = e2eEval[e2ePeerRow](b, fmt.Sprintf(e2ePeerRowJS, e2eJS("laptop")))
		switch {
		case err != nil:
			return err
		case !row.Found || !row.Online || row.Rx == "0 B" || row.Tx == "0 B":
			return fmt.Errorf("laptop's row: %v", row)
		}
		return nil
	}); err != nil {
		t.Fatalf("the open peers page did not show laptop online with traffic: %v", err)
	}
	t.Logf("the open peers page showed laptop online %v after the traffic: %v", time.Since(trafficAt).Round(100*time.Millisecond), row)
	if row.Reloaded || row.Same {
		t.Errorf("the peers table changed without a live refresh in place (reloaded %v, same table element %v)", row.Reloaded, row.Same)
	}
	if row.Dot != "Online" || row.Handshake == "never" {
		t.Errorf("laptop's row shows dot %q and last handshake %q, want Online and a time", row.Dot, row.Handshake)
	}
	if !strings.Contains(row.Meta, "1 online") {
		t.Errorf("the table's summary says %q, want 1 online", row.Meta)
	}
	b.screenshot("peers-online")

	// The peer's own page: online, from the client's underlay address, with its public key.
	b.submit("open laptop's page", `#peers-live td.peer-cell > a`)
	if p := b.path(); p != peerPage {
		t.Errorf("the peer's link leads to %s, want %s", p, peerPage)
	}
	if got := b.text(".page-head .muted"); !strings.HasPrefix(got, "Online from "+topo.CliAddr.String()+":") {
		t.Errorf("laptop's page says %q, want it online from %s", got, topo.CliAddr)
	}
	if got := b.text("dl.props"); !strings.Contains(got, clientPub) {
		t.Errorf("laptop's page does not show the client's public key %s: %q", clientPub, got)
	}
	b.screenshot("peer")

	// The dashboard: one peer online, traffic counted.
	b.do("open the dashboard", chromedp.Click(chromedp.CSS(`.mainnav a[href="/"]`)), chromedp.WaitVisible(chromedp.CSS("#dash .stats")))
	stats := b.dashboardStats()
	if got := stats["Peers online"]; got != "1 / 1" {
		t.Errorf("the dashboard shows %q peers online, want 1 / 1 (totals %q)", got, stats)
	}
	for _, k := range []string{"Received from peers", "Sent to peers"} {
		if got := stats[k]; got == "" || got == "0 B" {
			t.Errorf("the dashboard shows %q for %s, want the traffic (totals %q)", got, k, stats)
		}
	}
	if got := b.text("#dash"); !strings.Contains(got, "acme") {
		t.Errorf("the dashboard does not list the tenant acme: %q", got)
	}
	b.screenshot("dashboard")

	// Tenant isolation: a tenant admin of bravo, added with the CLI, signs in in a fresh
	// browser context (no cookies of the owner) and must not see acme's peer.
	b.mustOpen("/tenants")
	b.fill("#tenant-name", "bravo")
	b.submit("create tenant bravo", `form[action="/tenants"] button[type=submit]`)
	if h := b.text("main h1"); h != "bravo" {
		t.Fatalf("after creating bravo the page has heading %q, want bravo; it says: %s", h, b.text("main"))
	}
	bravoPassword := strings.TrimSpace(n.mustCLI(t, "admin", "add", "--role", "tenant_admin", "--tenant", "bravo", "bravo-admin"))
	if bravoPassword == "" || strings.Contains(bravoPassword, "\n") {
		t.Fatalf("popgate admin add printed %q, want the password in one line", bravoPassword)
	}
	t.Run("tenant isolation", func(t *testing.T) {
		bctx, cancel := chromedp.NewContext(tabCtx, chromedp.WithNewBrowserContext())
		defer cancel()
		if err := chromedp.Do(bctx); err != nil {
			t.Fatalf("browser: open a tab in a new browser context: %v", err)
		}
		bb := &e2eTab{t: t, ctx: bctx, base: base, artifacts: artifacts}
		bb.signIn("bravo-admin", bravoPassword, "Tenant admin · bravo")
		for _, path := range []string{peerPage, peerPage + "/config", "/peers?tenant=acme&q=laptop"} {
			code := bb.open(path)
			if path == "/peers?tenant=acme&q=laptop" {
				// A filter on a tenant the admin may not see shows nothing of it (the
				// admin's own peers, or not found).
				if got := bb.text("main"); (code != 200 && code != 404) || strings.Contains(got, "laptop") {
					t.Errorf("bravo's admin: %s answered %d and shows %q, want nothing of laptop", path, code, got)
				}
				t.Logf("bravo's admin: %s answered %d", path, code)
				continue
			}
			if code != 404 {
				t.Errorf("bravo's admin: %s answered %d, want 404", path, code)
			}
			if got := bb.text(".error-code"); got != "404" {
				t.Errorf("bravo's admin: %s shows %q, want the 404 page", path, bb.text("main"))
			}
		}
		bb.screenshot("bravo-404")
		bb.mustOpen("/peers")
		if got := bb.text("#peers-live"); strings.Contains(got, "laptop") || strings.Contains(got, "acme") {
			t.Errorf("bravo's admin's peers list shows acme's peer: %q", got)
		}
		if got := bb.text("main"); strings.Contains(got, "acme") {
			t.Errorf("bravo's admin's peers page names acme: %q", got)
		}
		bb.screenshot("bravo-peers")
	})

	// The admin's tab from here on: subtests make their own e2eTab on it, so that a failure
	// stops only the subtest.
	tab := b.with
	t.Run("config file names", func(t *testing.T) { e2eConfigFileNames(tab(t), n) })
	t.Run("one-time link", func(t *testing.T) { e2eOneTimeLink(tab(t)) })
	t.Run("enable resumes at once", func(t *testing.T) { e2eEnableResumes(tab(t), topo, client) })
	t.Run("traffic chart", func(t *testing.T) { e2eTrafficChart(tab(t), files.Size) })
	t.Run("add admin with the form's defaults", func(t *testing.T) { e2eAddAdminDefaults(tab(t)) })
	t.Run("regions", func(t *testing.T) { e2eRegions(tab(t)) })
	t.Run("nodes", func(t *testing.T) { e2eNodes(tab(t), n) })
	t.Run("layout", func(t *testing.T) { e2eLayout(tab(t), n) })
	t.Run("accessibility", func(t *testing.T) { e2eAccessibility(tab(t), tabCtx, n) })
	t.Logf("done after %v; screenshots in %s", time.Since(begin).Round(time.Millisecond), artifacts)
}

// e2eDownload is a file the browser saved.
type e2eDownload struct {
	Name string // the name the browser gave it: what the user sees
	From string // the URL it came from
	Data string
	Path string // where it is saved
}

// download clicks sel (a link or a submit button), waits for the browser to save the file
// into dir and returns it.
func (b *e2eTab) download(sel, dir string) e2eDownload {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	// Subscribe before the click, so that no event is missed.
	begins := chromedp.Events(ctx, browser.DownloadWillBegin)
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	err := chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior:      browser.SetDownloadBehaviorBehaviorAllow,
				DownloadPath:  dir,
				EventsEnabled: new(true),
			})
			return err
		}),
		chromedp.Click(chromedp.CSS(sel)),
	)
	if err != nil {
		b.t.Fatalf("browser: download with %s: %v", sel, err)
	}
	var d e2eDownload
	for ev, err := range begins {
		if err != nil {
			b.t.Fatalf("browser: the click on %s started no download: %v", sel, err)
		}
		d.Name, d.From = ev.SuggestedFilename, ev.URL
		break
	}
	for ev, err := range progress {
		if err != nil {
			b.t.Fatalf("browser: download of %s did not finish: %v", d.From, err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			b.t.Fatalf("browser: download of %s canceled", d.From)
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			break
		}
	}
	d.Path = filepath.Join(dir, d.Name)
	data, err := os.ReadFile(d.Path)
	if err != nil {
		b.t.Fatalf("browser: the downloaded file: %v", err)
	}
	d.Data = string(data)
	b.t.Logf("downloaded %s (%d bytes) from %s", d.Name, len(data), d.From)
	return d
}

// downloadConfig downloads a peer's config with the link sel of its config page and checks
// that wg-quick takes the file as the browser saved it: `wg-quick up ./NAME` needs NAME to
// be a valid interface name followed by .conf.
func (b *e2eTab) downloadConfig(sel, dir string) e2eDownload {
	b.t.Helper()
	d := b.download(sel, dir)
	if u, err := url.Parse(d.From); err != nil || !strings.HasSuffix(u.Path, "/config/download") {
		b.t.Errorf("the download came from %s, want the config's download address", d.From)
	}
	e2eWGQuickStrip(b.t, d.Path)
	return d
}

// e2eWGQuickStrip runs `wg-quick strip FILE` on a downloaded config under the name it has,
// which fails unless wg-quick would also `up` it as it is. The browser saves downloads
// readable by all, as on any desktop, which wg-quick only warns about.
func e2eWGQuickStrip(t *testing.T, file string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stdout, stderr, err := e2eRun(ctx, "wg-quick", "strip", file)
	var warnings []string
	for line := range strings.Lines(stderr) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasSuffix(line, "is world accessible") {
			warnings = append(warnings, line)
		}
	}
	if err != nil || len(warnings) > 0 {
		t.Errorf("wg-quick strip %s: %v: %s", filepath.Base(file), err, strings.Join(warnings, "; "))
		return
	}
	if !strings.Contains(stdout, "PrivateKey") && !strings.Contains(stdout, "[Peer]") {
		t.Errorf("wg-quick strip %s printed no config: %q", filepath.Base(file), stdout)
	}
}
