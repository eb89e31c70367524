package main

// The browser test's checks of single features and of every page: config file names that
// wg-quick takes, one-time links on the public URL, a peer enabled again getting its traffic
// back from a handshake the node starts, the add-admin form's defaults, the layout (the
// navigation, breadcrumbs, the rules table, long names, phone size) and accessibility with
// axe-core at desktop and phone size, light and dark. TestE2EBrowser runs them as subtests
// on its signed-in owner's tab.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// e2ePublicURL is the browser test's --public-url (set as POPGATE_PUBLIC_URL). Nothing
// answers there: the test opens links at the UI's loopback address with the same path.
const e2ePublicURL = "https://vpn.example.test:8443/"

// e2eWGQuickName is the name wg-quick takes a config file by: an interface name, .conf.
var e2eWGQuickName = regexp.MustCompile(`^[a-zA-Z0-9_=+.-]{1,15}\.conf$`)

// with returns the tab for the subtest t.
func (b *e2eTab) with(t *testing.T) *e2eTab {
	c := *b
	c.t = t
	return &c
}

// refuse tells the console check that path answers an error status on purpose.
func (b *e2eTab) refuse(path string) {
	if b.refusals != nil {
		b.refusals.Store(b.base+path, true)
	}
}

// submitStatus is submit that returns the answer's status instead of requiring 200; the form
// posts to action, which may answer an error on purpose.
func (b *e2eTab) submitStatus(what, sel, action string) int64 {
	b.t.Helper()
	b.refuse(action)
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: %s (click %s): %v", what, sel, err)
	}
	return resp.Status
}

// e2eConfigFileNames: a peer whose name is too long for "<tenant>-<peer>.conf" downloads
// under a name wg-quick takes, and the page names the same file.
func e2eConfigFileNames(b *e2eTab, n *e2eNode) {
	t := b.t
	const peer = "alice-laptop-work"
	n.mustCLI(t, "peer", "add", "--tenant", "acme", peer)
	b.mustOpen("/tenants/acme/peers/" + peer + "/config")
	d := b.downloadConfig(`.config-text a[download]`, t.TempDir())
	if !e2eWGQuickName.MatchString(d.Name) {
		t.Errorf("the config of %s downloads as %q, which `wg-quick up` refuses", peer, d.Name)
	}
	if got := b.text(".config-text a[download]"); got != "Download "+d.Name {
		t.Errorf("the download button says %q, the file is %s", got, d.Name)
	}
	if got := b.text(".config-text .hint code"); got != "sudo wg-quick up ./"+d.Name {
		t.Errorf("the page suggests %q, the file is %s", got, d.Name)
	}
	shown := e2eMustEval[string](b, "read the config text", `document.querySelector('pre.config').textContent`)
	if strings.TrimSpace(d.Data) != strings.TrimSpace(shown) {
		t.Errorf("the downloaded file differs from the config the page shows")
	}
}

// e2eOneTimeLink: with a public URL set, a one-time link starts with it; its page (at the
// same path) downloads the config once, under a name wg-quick takes.
func e2eOneTimeLink(b *e2eTab) {
	t := b.t
	b.mustOpen("/tenants/acme/peers/laptop/config")
	if hint := b.text("#link-base-hint"); hint != "" {
		t.Errorf("with a public URL set, the config page still says: %q", hint)
	}
	b.submit("create a one-time link", `form[action$="/config/link"] button[type=submit]`)
	link := e2eMustEval[string](b, "read the link", `document.querySelector('#link')?.value ?? ""`)
	if !strings.HasPrefix(link, e2ePublicURL+"dl/pgd_") {
		t.Fatalf("the one-time link is %q, want it on the public URL %s", link, e2ePublicURL)
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	b.mustOpen(u.Path)
	button := b.text(`form[action^="/dl/"] button`)
	d := b.download(`form[action^="/dl/"] button`, t.TempDir())
	if button != "Download "+d.Name || !e2eWGQuickName.MatchString(d.Name) {
		t.Errorf("the link's page says %q and the file is named %q, want the same name, one wg-quick takes", button, d.Name)
	}
	if from, err := url.Parse(d.From); err != nil || from.Path != u.Path {
		t.Errorf("the link's download came from %s, want %s", d.From, u.Path)
	}
	if !strings.Contains(d.Data, "PrivateKey = ") {
		t.Errorf("the link's download is not the config:\n%s", d.Data)
	}
	e2eWGQuickStrip(t, d.Path)
	b.refuse(u.Path)
	if code := b.open(u.Path); code != 404 {
		t.Errorf("the used link's page answered %d, want 404", code)
	}
}

// e2eEnableResumes: a peer disabled while its stock client is connected, then enabled, gets
// its traffic back through a handshake the node starts: the client's log shows it received
// a handshake initiation after the enable, which it never does while it is the one that
// reconnects (after 15 s of unanswered packets).
func e2eEnableResumes(b *e2eTab, topo *testbed.Topology, client *testbed.Client) {
	t := b.t
	ping := func(ctx context.Context) error { return testbed.PingN(ctx, topo.Cli, topo.NetAddr4, 1, time.Second) }
	testbed.Poll(t, 30*time.Second, "ping through the tunnel before disabling", ping)
	b.mustOpen("/tenants/acme/peers/laptop")
	b.submit("disable laptop", `form[action$="/laptop/disable"] button`)
	testbed.Poll(t, 15*time.Second, "laptop to lose access", func(ctx context.Context) error {
		if ping(ctx) == nil {
			return errors.New("a ping still gets an answer")
		}
		return nil
	})
	mark := len(client.Proc.Log())
	enabled := time.Now()
	b.submit("enable laptop", `form[action$="/laptop/enable"] button`)
	testbed.Poll(t, 60*time.Second, "ping through the tunnel after enabling", ping)
	t.Logf("laptop's ping answered %v after enabling it", time.Since(enabled).Round(100*time.Millisecond))
	after := client.Proc.Log()[mark:]
	if !strings.Contains(after, "Received handshake initiation") {
		t.Errorf("after the enable the client received no handshake initiation: it reconnected on its own, the node did not start the handshake; the client's log since:\n%s", after)
	}
	if got := b.text(".flash.ok"); !strings.Contains(got, "reconnected at once") {
		t.Errorf("after enabling, the page says %q", got)
	}
}

// e2eChart is what e2eChartJS reads of a traffic chart.
type e2eChart struct {
	Role, Name, Desc, Table string
	Rx, Tx                  int // points of each line
	Stroke                  string
	Width, Height           float64
}

// e2eChartJS reads the traffic chart with the id %s: its SVG's role, accessible name and
// description, its lines' points and colour, its size, and its hidden table.
const e2eChartJS = `(() => {
  const f = document.getElementById(%s), svg = f?.querySelector('svg');
  if (!svg) return null;
  const [name, desc] = (svg.getAttribute('aria-labelledby') ?? '').split(' ').map(id => document.getElementById(id)?.textContent.trim() ?? '');
  const points = sel => svg.querySelector(sel)?.getAttribute('points')?.trim().split(/\s+/).length ?? 0;
  const r = svg.getBoundingClientRect();
  return {role: svg.getAttribute('role') ?? '', name, desc, table: f.querySelector('table')?.textContent ?? '',
    rx: points('polyline.rx'), tx: points('polyline.tx'), stroke: svg.querySelector('polyline.rx') ? getComputedStyle(svg.querySelector('polyline.rx')).stroke : '',
    width: r.width, height: r.height};
})()`

// e2eSentRE reads what a chart's description says was sent.
var e2eSentRE = regexp.MustCompile(`sent ([0-9.]+) (B|KiB|MiB|GiB)`)

// e2eTrafficChart: laptop's page draws its traffic of the last day, the download through the
// tunnel included (what was sent to it), as an image with a name and a description, in the
// window at desktop and phone size; the dashboard draws acme's.
func e2eTrafficChart(b *e2eTab, downloaded int64) {
	t := b.t
	var c *e2eChart
	read := func(path, id string) error {
		b.mustOpen(path)
		var err error
		if c, err = e2eEval[*e2eChart](b, fmt.Sprintf(e2eChartJS, e2eJS(id))); err != nil {
			return err
		}
		if c == nil {
			return fmt.Errorf("%s has no chart %s: %s", path, id, b.text("main"))
		}
		m := e2eSentRE.FindStringSubmatch(c.Desc)
		if m == nil {
			return fmt.Errorf("chart %s says %q", id, c.Desc)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		if sent := v * float64(map[string]int64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[2]]); sent < float64(downloaded) {
			return fmt.Errorf("chart %s says %q: less than the %d bytes downloaded", id, c.Desc, downloaded)
		}
		return nil
	}
	begin := time.Now()
	testbed.Poll(t, 30*time.Second, "laptop's chart to show the download", func(context.Context) error {
		return read("/tenants/acme/peers/laptop", "traffic-peer")
	})
	t.Logf("laptop's chart after %v: %q", time.Since(begin).Round(100*time.Millisecond), c.Desc)
	if c.Role != "img" || c.Name != "Traffic of laptop, the last 24 hours" {
		t.Errorf("laptop's chart is a %q named %q, want an img named for laptop's last 24 hours", c.Role, c.Name)
	}
	if c.Rx < 200 || c.Rx != c.Tx || c.Stroke == "" || c.Stroke == "none" {
		t.Errorf("laptop's chart: %d and %d points, stroke %q; want a line of a point per 5 minutes each way, drawn", c.Rx, c.Tx, c.Stroke)
	}
	if !strings.Contains(c.Table, "Received") || !strings.Contains(c.Table, "MiB") {
		t.Errorf("laptop's chart's table says %q", c.Table)
	}
	if c.Width < 300 || c.Height < 80 {
		t.Errorf("laptop's chart is %.0f×%.0f px at desktop size", c.Width, c.Height)
	}
	b.screenshot("peer-traffic")
	b.view(e2eViews[2])
	defer b.view(e2eViews[0])
	b.mustOpen("/tenants/acme/peers/laptop")
	c = e2eMustEval[*e2eChart](b, "read the chart", fmt.Sprintf(e2eChartJS, e2eJS("traffic-peer")))
	if c == nil || c.Width < 200 || c.Width > float64(e2eViews[2].width) {
		t.Errorf("on a phone laptop's chart is %+v, want it within the %d px screen", c, e2eViews[2].width)
	}
	b.screenshot("peer-traffic-phone")
	b.view(e2eViews[0])
	if err := read("/", "traffic-acme"); err != nil {
		t.Errorf("the dashboard: %v", err)
	}
}

// e2eAddAdminDefaults: the add-admin form, with only a name typed, adds an admin.
func e2eAddAdminDefaults(b *e2eTab) {
	b.mustOpen("/admins")
	b.fill("#admin-name", "newbie")
	if code := b.submitStatus("add an admin with the form's defaults", `form[action="/admins"] button[type=submit]`, "/admins"); code != 200 {
		b.t.Fatalf("the add-admin form with its defaults answered %d: %s", code, b.text("main"))
	}
	if h := b.text("main h1"); h != "Admin newbie added" {
		b.t.Errorf("after adding an admin the page says %q: %s", h, b.text("main"))
	}
}

// e2eRegions: an owner adds a region on the Regions page (a bad endpoint first: the error
// is next to its field and the form keeps what was typed), limits acme to some regions on its
// Regions tab and allows it everywhere again; the peer's config page then offers the new
// region's config, which downloads with the region's endpoint.
func e2eRegions(b *e2eTab) {
	t := b.t
	b.mustOpen("/regions")
	b.fill("#region-name", "fra")
	b.fill("#region-endpoint", "vpn-fra.example.test")
	if code := b.submitStatus("add a region with a bad endpoint", `form[action="/regions"] button[type=submit]`, "/regions"); code != 422 {
		t.Fatalf("the add-region form with a bad endpoint answered %d, want 422: %s", code, b.text("main"))
	}
	if got := b.text("#region-endpoint-error"); !strings.Contains(got, "host:port") {
		t.Errorf("the refused endpoint's error says %q", got)
	}
	if got := e2eMustEval[string](b, "read the name field", `document.querySelector('#region-name').value`); got != "fra" {
		t.Errorf("the refused form lost the name: %q", got)
	}
	e2eMustEval[bool](b, "clear the endpoint", `(document.querySelector('#region-endpoint').value = '') === ''`)
	b.fill("#region-endpoint", "vpn-fra.example.test:51820")
	b.submit("add region fra", `form[action="/regions"] button[type=submit]`)
	if h, flash := b.text("main h1"), b.text(".flash.ok"); h != "Region fra" || !strings.HasPrefix(flash, "Region added") {
		t.Fatalf("after adding fra the page has heading %q and message %q: %s", h, flash, b.text("main"))
	}

	// acme in local and fra only, then everywhere again.
	checked := func() string {
		return e2eMustEval[string](b, "read the regions ticked", `[...document.querySelectorAll('input[name=region]:checked')].map(i => i.value).join(',') + ' ' + (document.querySelector('input[name=scope]:checked')?.value ?? '')`)
	}
	b.mustOpen("/tenants/acme/regions")
	b.do("tick local and fra", chromedp.Click(chromedp.CSS(`input[name=scope][value=some]`)),
		chromedp.Click(chromedp.CSS(`input[name=region][value=fra]`)), chromedp.Click(chromedp.CSS(`input[name=region][value=local]`)))
	b.submit("limit acme to local and fra", `form[action="/tenants/acme/regions"] button[type=submit]`)
	if got := checked(); got != "fra,local some" {
		t.Errorf("after limiting acme its tab ticks %q, want fra,local some", got)
	}
	b.do("allow every region", chromedp.Click(chromedp.CSS(`input[name=scope][value=all]`)))
	b.submit("allow acme everywhere", `form[action="/tenants/acme/regions"] button[type=submit]`)
	if got := checked(); got != " all" {
		t.Errorf("after allowing acme everywhere its tab ticks %q", got)
	}

	// The config of region fra: the region's tab on the config page, then its download.
	b.mustOpen("/tenants/acme/peers/laptop")
	b.submit("open fra's config from the peer page", `a.chip[href$="/config?region=fra"]`)
	if got := b.text(`nav.tabs [aria-current="page"]`); got != "fra" {
		t.Errorf("fra's config page marks region %q", got)
	}
	d := b.downloadConfig(`.config-text a[download]`, t.TempDir())
	if !strings.Contains(d.Data, "Endpoint = vpn-fra.example.test:51820") {
		t.Errorf("fra's config does not connect to fra:\n%s", d.Data)
	}
}

// e2eControllerAddr is where the browser test's controller accepts nodes, in Pop.
const e2eControllerAddr = "127.0.0.1:46443"

// e2eNodes makes a join token on the Nodes page, joins a PoP of region fra with it (a second
// popgate serve in Pop) and waits for the page to say it is connected and in sync; the
// region pages then list it as fra's PoP. A wrong name on its removal page is refused and
// the node stays, for the layout and accessibility checks.
func e2eNodes(b *e2eTab, n *e2eNode) {
	t := b.t
	b.mustOpen("/nodes")
	if got := b.text(".empty"); !strings.Contains(got, "No node has joined") {
		t.Errorf("the Nodes page of a controller without nodes says %q", got)
	}
	// A bad name first: refused next to its field, the choices kept.
	b.do("pick region fra", chromedp.SetValue(chromedp.CSS("#node-region"), "fra"))
	b.fill("#node-name", "Fra Pop")
	if code := b.submitStatus("make a token with a bad name", `form[action="/nodes/tokens"] button[type=submit]`, "/nodes/tokens"); code != 422 {
		t.Fatalf("the token form with a bad name answered %d, want 422: %s", code, b.text("main"))
	}
	if got := b.text("#node-name-error"); got == "" {
		t.Errorf("the refused name has no error next to it: %s", b.text("main"))
	}
	if got := e2eMustEval[string](b, "read the region", `document.querySelector('#node-region').value`); got != "fra" {
		t.Errorf("the refused form lost the region: %q", got)
	}
	e2eMustEval[bool](b, "clear the name", `(document.querySelector('#node-name').value = '') === ''`)
	b.fill("#node-name", "fra-pop-1")
	b.submit("make a join token", `form[action="/nodes/tokens"] button[type=submit]`)
	token := e2eMustEval[string](b, "read the token", `document.querySelector('#join-token')?.value ?? ""`)
	command := e2eMustEval[string](b, "read the command", `document.querySelector('#join-command')?.value ?? ""`)
	if !strings.HasPrefix(token, "popgate-join-1.") || command != "popgate serve --join "+token {
		t.Fatalf("the token page shows token %q and command %q", token, command)
	}
	b.screenshot("node-token")

	// The PoP, in Pop beside the controller, without the controller's settings from the
	// environment. It runs until the whole test ends, for the layout and accessibility
	// checks of the pages that show it.
	const popPort = 46821
	ifname := n.topo.Name("pj")
	n.t.Cleanup(func() { os.Remove(filepath.Join(testbed.UAPIDir, ifname+".sock")) })
	pop, err := n.topo.Pop.Start(n.t, "env", "-u", "POPGATE_CONTROLLER_ADDR", "-u", "POPGATE_PUBLIC_URL", n.bin, "serve",
		"--data-dir", n.t.TempDir(), "--join", token, "--listen-port", fmt.Sprint(popPort), "--interface", ifname,
		"--web-addr", "127.0.0.1:0", "--exit-mode", "userspace", "--dns-upstream", n.dns)
	if err != nil {
		t.Fatal(err)
	}
	var row string
	testbed.Poll(t, 45*time.Second, "the Nodes page to show fra-pop-1 connected and in sync", func(context.Context) error {
		if exited, err := pop.Exited(); exited {
			t.Fatalf("the PoP exited (%v):\n%s", err, pop.LogTail(40))
		}
		b.mustOpen("/nodes")
		row = e2eMustEval[string](b, "read the node's row", `[...document.querySelectorAll('tbody tr')].find(tr => tr.cells[0].innerText.startsWith('fra-pop-1'))?.innerText ?? ''`)
		if !strings.Contains(row, "connected") || strings.Contains(row, "not connected") || !strings.Contains(row, "In sync") {
			return fmt.Errorf("its row says %q", row)
		}
		return nil
	})
	if !strings.Contains(row, "pop") || !strings.Contains(row, "fra") {
		t.Errorf("fra-pop-1's row says %q, want its role and region", row)
	}
	b.screenshot("nodes")

	b.mustOpen("/regions/fra")
	if got := b.text(`[aria-label="PoPs of fra"]`); !strings.Contains(got, "fra-pop-1") || !strings.Contains(got, "In sync") {
		t.Errorf("region fra's PoPs: %q", got)
	}
	b.mustOpen("/regions")
	if got := b.text("main table"); !strings.Contains(got, "fra-pop-1") || !strings.Contains(got, "This controller") {
		t.Errorf("the regions table does not list the PoPs: %q", got)
	}

	b.mustOpen("/nodes/fra-pop-1/delete")
	b.fill("#confirm", "fra")
	if code := b.submitStatus("confirm with a wrong name", `form[action="/nodes/fra-pop-1/delete"] button[type=submit]`, "/nodes/fra-pop-1/delete"); code != 422 {
		t.Errorf("the removal with a wrong name answered %d, want 422", code)
	}
	if got := b.text(".field-error"); !strings.Contains(got, "fra-pop-1") {
		t.Errorf("the refused removal says %q", got)
	}
}

// e2eLayoutPolicy has its default on line 2, before the rules.
const e2eLayoutPolicy = `# acme: the layout test's policy
default deny
allow peer:laptop -> any tcp 22,443
allow any -> 0.0.0.0/0, ::/0
deny any -> 10.0.0.0/8
`

// e2eOverflowJS lists what sticks out: the page wider than the window, a card's content
// wider than the card, the main navigation scrolling or cut off. On a phone a table may
// scroll within its card (the dashboard's may not: see e2eLayout).
const e2eOverflowJS = `(() => {
  const out = [], vw = document.documentElement.clientWidth;
  const name = el => (el.closest('section')?.querySelector('h1, h2')?.textContent ?? el.className).trim().slice(0, 40);
  if (document.documentElement.scrollWidth > vw + 1) {
    // Name the outermost elements that stick out (not those a scrolling box clips).
    const clipped = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) if (getComputedStyle(p).overflowX !== 'visible') return getComputedStyle(e).position !== 'absolute' || getComputedStyle(p).position !== 'static'; return false; };
    const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > vw + 1 &&
      !(e.parentElement && e.parentElement.getBoundingClientRect().right > vw + 1) && !clipped(e)).slice(0, 3)
      .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().replace(/\s+/g, '.') : '') +
        ' (' + Math.round(e.getBoundingClientRect().right) + ' px)');
    out.push('the page is ' + document.documentElement.scrollWidth + ' px wide in a ' + vw + ' px window: ' + wide.join(', '));
  }
  for (const c of document.querySelectorAll('.card'))
    if (c.scrollWidth > c.clientWidth + 1) out.push('card "' + name(c) + '" holds content ' + c.scrollWidth + ' px wide in ' + c.clientWidth + ' px');
  const nav = document.querySelector('.mainnav');
  if (nav) {
    if (nav.scrollWidth > nav.clientWidth + 1) out.push('the navigation scrolls: ' + nav.scrollWidth + ' px in ' + nav.clientWidth + ' px');
    const box = nav.getBoundingClientRect();
    for (const a of nav.querySelectorAll('a')) {
      const r = a.getBoundingClientRect();
      if (r.left < Math.max(0, box.left) - 1 || r.right > Math.min(vw, box.right) + 1)
        out.push('navigation item "' + a.textContent.trim() + '" is cut off (' + Math.round(r.left) + '–' + Math.round(r.right) + ' px of ' + vw + ')');
    }
  }
  return out;
})()`

// e2eTablesScrollJS lists the tables of the page that scroll sideways.
const e2eTablesScrollJS = `[...document.querySelectorAll('.table-wrap')].filter(w => w.scrollWidth > w.clientWidth + 1).map(w =>
  'table "' + (w.closest('section')?.querySelector('h2')?.textContent ?? '').trim() + '" scrolls: ' + w.scrollWidth + ' px in ' + w.clientWidth + ' px')`

// e2eCrumbsJS reads the breadcrumbs: their text and whether the last one is the current page.
const e2eCrumbsJS = `(() => {
  const c = document.querySelector('.crumbs');
  if (!c) return null;
  const items = [...c.querySelectorAll('li')];
  return {text: c.innerText.trim(), last: items.length ? items[items.length - 1].innerText.trim() : '',
    current: !!(items.length && items[items.length - 1].querySelector('[aria-current="page"]'))};
})()`

// e2eRulesJS reads the "Rules in effect" table: the line numbers of its rules in the order
// shown, and the row that says what happens when no rule matches.
const e2eRulesJS = `(() => {
  const s = [...document.querySelectorAll('section h2')].find(h => h.textContent.trim() === 'Rules in effect')?.closest('section');
  if (!s) return null;
  return {lines: [...s.querySelectorAll('tbody tr')].map(tr => tr.cells[0].innerText.trim()),
    rules: [...s.querySelectorAll('tbody tr')].map(tr => tr.cells[1].innerText.trim()),
    otherwise: s.querySelector('tfoot')?.innerText.trim() ?? ''};
})()`

// e2eLayoutPages are the pages the layout checks open (the owner sees all of them).
var e2eLayoutPages = []string{
	"/", "/peers", "/peers?tenant=acme", "/tenants", "/tenants/acme/policy", "/tenants/acme/routes",
	"/tenants/acme/peers/laptop", "/tenants/acme/peers/laptop/config", "/tenants/acme/peers/laptop/delete",
	"/peers/new?tenant=acme", "/tenants/acme/delete", "/audit", "/events", "/admins", "/admins/admin", "/account",
	// e2eRegions adds region fra.
	"/regions", "/regions/local", "/regions/fra", "/regions/fra/delete", "/tenants/acme/regions",
	"/tenants/acme/peers/laptop/config?region=fra", "/tenants/acme/dns",
	// e2eNodes joins node fra-pop-1.
	"/nodes", "/nodes/fra-pop-1/delete", "/network",
}

func e2eLayout(b *e2eTab, n *e2eNode) {
	t := b.t
	policy := filepath.Join(t.TempDir(), "acme.policy")
	if err := os.WriteFile(policy, []byte(e2eLayoutPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	n.mustCLI(t, "policy", "set", "--tenant", "acme", policy)

	// A tenant's pages (its peers, policy and routes: its tabs) are under Tenants.
	t.Run("navigation", func(t *testing.T) {
		b := b.with(t)
		for _, path := range []string{"/peers?tenant=acme", "/tenants/acme/policy", "/tenants/acme/routes", "/tenants/acme/regions"} {
			b.mustOpen(path)
			got := e2eMustEval[string](b, "read the navigation", `document.querySelector('.mainnav [aria-current="page"]')?.textContent.trim() ?? ''`)
			tab := e2eMustEval[string](b, "read the tabs", `document.querySelector('.tabs [aria-current="page"]')?.textContent.trim() ?? ''`)
			if got != "Tenants" || tab == "" {
				t.Errorf("%s marks %q in the navigation and tab %q, want Tenants and its own tab", path, got, tab)
			}
		}
		for path, want := range map[string]string{"/peers": "Peers", "/regions": "Regions", "/regions/fra": "Regions", "/nodes": "Nodes", "/network": "Network"} {
			b.mustOpen(path)
			if got := b.text(`.mainnav [aria-current="page"]`); got != want {
				t.Errorf("%s marks %q in the navigation, want %s", path, got, want)
			}
		}
	})

	// Breadcrumbs end with the page itself, not with a separator.
	t.Run("breadcrumbs", func(t *testing.T) {
		b := b.with(t)
		type crumbs struct {
			Text, Last string
			Current    bool
		}
		seen := 0
		for _, path := range e2eLayoutPages {
			b.mustOpen(path)
			c := e2eMustEval[*crumbs](b, "read the breadcrumbs", e2eCrumbsJS)
			if c == nil {
				continue
			}
			seen++
			if strings.HasSuffix(c.Text, "/") || strings.HasSuffix(c.Text, "›") || !c.Current || c.Last == "" {
				t.Errorf("%s: breadcrumbs %q (last %q, marked as the current page: %v): want them to end with the page itself", path, c.Text, c.Last, c.Current)
			}
		}
		if seen < 5 {
			t.Errorf("only %d pages have breadcrumbs", seen)
		}
	})

	// The rules are listed in the order they are tried, which is line order; what happens
	// when none matches comes last, apart.
	t.Run("rules in effect", func(t *testing.T) {
		b := b.with(t)
		b.mustOpen("/tenants/acme/policy")
		type rulesTable struct {
			Lines, Rules []string
			Otherwise    string
		}
		r := e2eMustEval[*rulesTable](b, "read the rules in effect", e2eRulesJS)
		if r == nil {
			t.Fatalf("the policy page has no rules in effect: %s", b.text("main"))
		}
		var lines []int
		for _, l := range r.Lines {
			n, err := strconv.Atoi(l)
			if err != nil {
				t.Fatalf("rule line %q is not a number (lines %q)", l, r.Lines)
			}
			lines = append(lines, n)
		}
		if want := []int{3, 4, 5}; !slices.Equal(lines, want) {
			t.Errorf("the rules in effect show lines %v (rules %q), want %v", lines, r.Rules, want)
		}
		if !strings.Contains(r.Otherwise, "default deny") {
			t.Errorf("after the rules the table says %q, want the default, deny", r.Otherwise)
		}
	})

	// A long invalid group name stays inside its card, at desktop and phone size.
	t.Run("long invalid group name", func(t *testing.T) {
		b := b.with(t)
		defer b.view(e2eViews[0])
		b.mustOpen("/peers/new?tenant=acme")
		b.fill("#name", "long-group")
		b.fill("#groups", "eng, "+strings.Repeat("g", 90)+"!")
		if code := b.submitStatus("create a peer with a long invalid group", `form[action="/peers"] button[type=submit]`, "/peers"); code != 422 {
			t.Fatalf("the new-peer form with a bad group answered %d, want 422: %s", code, b.text("main"))
		}
		if got := b.text(".field-error"); !strings.Contains(got, "ggggg") {
			t.Fatalf("the refused form shows no error about the group: %q", got)
		}
		for _, v := range []e2eView{e2eViews[0], e2eViews[2]} {
			b.view(v)
			if bad := e2eMustEval[[]string](b, "check for overflow", e2eOverflowJS); len(bad) > 0 {
				t.Errorf("%s: the refused new-peer form: %s", v.name, strings.Join(bad, "; "))
			}
		}
	})

	// On a phone: nothing wider than the screen, the whole navigation visible, and the
	// dashboard's tables without sideways scrolling.
	t.Run("phone", func(t *testing.T) {
		b := b.with(t)
		defer b.view(e2eViews[0])
		b.view(e2eViews[2])
		for _, path := range e2eLayoutPages {
			b.mustOpen(path)
			bad := e2eMustEval[[]string](b, "check for overflow", e2eOverflowJS)
			if path == "/" {
				bad = append(bad, e2eMustEval[[]string](b, "check the tables", e2eTablesScrollJS)...)
			}
			if len(bad) > 0 {
				t.Errorf("%s on a phone: %s", path, strings.Join(bad, "; "))
			}
		}
		b.mustOpen("/")
		b.screenshot("dashboard-phone")
	})
}

// e2eView is how a page is looked at: window size, phone or not, light or dark.
type e2eView struct {
	name          string
	width, height int64
	mobile, dark  bool
	// colorsOnly: axe-core runs only its rules about colours here. The others depend on the
	// layout, not the colours, and run in the other view of the same size.
	colorsOnly bool
}

// e2eViews: the browser's own (desktop, light) first. Between them axe-core runs every rule
// at both sizes, and its colour rules in both schemes at both sizes.
var e2eViews = []e2eView{
	{"desktop", 1280, 900, false, false, false},
	{"desktop dark", 1280, 900, false, true, true},
	{"phone", 390, 844, true, false, true},
	{"phone dark", 390, 844, true, true, false},
}

// view makes the tab show pages as v.
func (b *e2eTab) view(v e2eView) {
	b.t.Helper()
	scheme := "light"
	if v.dark {
		scheme = "dark"
	}
	b.do("look at the page as "+v.name,
		chromedp.EmulateViewport(v.width, v.height, func(p *emulation.SetDeviceMetricsOverrideParams, _ *emulation.SetTouchEmulationEnabledParams) {
			p.Mobile = v.mobile
		}),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
			})
			return err
		}))
}

// e2eAxeSHA256 is the checksum of testdata/axe/axe.min.js (see its README).
const e2eAxeSHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"

// e2eAxeSource returns axe-core's script after checking it is the vendored release.
func e2eAxeSource(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "axe", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(src); hex.EncodeToString(sum[:]) != e2eAxeSHA256 {
		t.Fatalf("testdata/axe/axe.min.js has sha256 %x, want %s: restore the file (see testdata/axe/README)", sum, e2eAxeSHA256)
	}
	return string(src)
}

// e2eAxeRunJS runs axe-core on the page with the options %s and returns its serious and
// critical findings.
const e2eAxeRunJS = `axe.run(document, Object.assign({resultTypes: ['violations']}, %s)).then(r => r.violations
  .filter(v => v.impact === 'serious' || v.impact === 'critical')
  .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' — ' + v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\s+/g, ' ').slice(0, 160)).join(' | ')))`

// e2eAxeColorRules are axe-core's rules about colours.
const e2eAxeColorRules = `{runOnly: {type: 'rule', values: ['color-contrast', 'link-in-text-block']}}`

// axe returns axe-core's serious and critical findings on the page the tab shows; colorsOnly:
// of its rules about colours only.
func (b *e2eTab) axe(src string, colorsOnly bool) []string {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.axe !== undefined || (() => { `+src+`
; return true; })()`)); err != nil {
		b.t.Fatalf("browser: load axe-core: %v", err)
	}
	opts := "{}"
	if colorsOnly {
		opts = e2eAxeColorRules
	}
	found, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(e2eAxeRunJS, opts), chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("browser: run axe-core: %v", err)
	}
	return found
}

// e2eAccessibility runs axe-core on every page, at desktop and phone size, light and dark:
// no serious or critical finding is allowed.
func e2eAccessibility(b *e2eTab, tabCtx context.Context, n *e2eNode) {
	t := b.t
	src := e2eAxeSource(t)
	defer b.view(e2eViews[0])
	begin := time.Now()
	runs := 0
	check := func(b *e2eTab, page string) {
		b.t.Helper()
		for _, v := range e2eViews {
			b.view(v)
			runs++
			for _, f := range b.axe(src, v.colorsOnly) {
				b.t.Errorf("%s (%s): %s", page, v.name, f)
			}
		}
		b.view(e2eViews[0])
	}

	// A fresh one-time link, for its page.
	b.mustOpen("/tenants/acme/peers/laptop/config")
	b.submit("create a one-time link", `form[action$="/config/link"] button[type=submit]`)
	link, err := url.Parse(e2eMustEval[string](b, "read the link", `document.querySelector('#link')?.value ?? ""`))
	if err != nil || !strings.HasPrefix(link.Path, "/dl/") {
		t.Fatalf("no one-time link (%v)", err)
	}
	b.refuse("/no/such/page")
	for _, path := range append(slices.Clone(e2eLayoutPages), link.Path, "/no/such/page") {
		code := b.open(path)
		if want := int64(200); path == "/no/such/page" {
			want = 404
			if code != want {
				t.Errorf("%s answered %d, want %d", path, code, want)
			}
		} else if code != want {
			t.Errorf("%s answered %d, want %d", path, code, want)
		}
		check(b, path)
	}

	// Pages that answer a refused form: the inline errors.
	b.mustOpen("/peers/new?tenant=acme")
	b.fill("#name", strings.Repeat("x", 70))
	b.fill("#public_key", "not-a-key")
	b.fill("#groups", "eng, bad group!")
	if code := b.submitStatus("create a bad peer", `form[action="/peers"] button[type=submit]`, "/peers"); code != 422 {
		t.Errorf("the bad new-peer form answered %d, want 422", code)
	}
	check(b, "refused new peer")
	b.mustOpen("/tenants/acme/policy")
	b.do("write a bad policy", chromedp.SetValue(chromedp.CSS("#policy"), "default deny\nallow group:eng -> any tpc 22\nallow any => any\n"))
	if code := b.submitStatus("save a bad policy", `form[action$="/policy"] button[type=submit]`, "/tenants/acme/policy"); code != 422 {
		t.Errorf("the bad policy answered %d, want 422", code)
	}
	check(b, "refused policy")
	b.mustOpen("/regions")
	b.fill("#region-name", "Bad Name")
	b.fill("#region-endpoint", "nowhere")
	if code := b.submitStatus("add a bad region", `form[action="/regions"] button[type=submit]`, "/regions"); code != 422 {
		t.Errorf("the bad add-region form answered %d, want 422", code)
	}
	check(b, "refused region")
	b.mustOpen("/tenants/acme/regions")
	b.do("limit acme to no region", chromedp.Click(chromedp.CSS(`input[name=scope][value=some]`)))
	if code := b.submitStatus("limit acme to no region", `form[action="/tenants/acme/regions"] button[type=submit]`, "/tenants/acme/regions"); code != 422 {
		t.Errorf("limiting acme to no region answered %d, want 422", code)
	}
	check(b, "refused tenant regions")
	b.mustOpen("/tenants/acme/dns")
	b.fill("#dns-domain", "not a domain")
	if code := b.submitStatus("set a bad domain", `form[action="/tenants/acme/dns/domain"] button[type=submit]`, "/tenants/acme/dns/domain"); code != 422 {
		t.Errorf("the bad domain answered %d, want 422", code)
	}
	check(b, "refused domain")
	b.do("name a private upstream", chromedp.SetValue(chromedp.CSS("#dns-upstreams"), "10.0.0.53"))
	if code := b.submitStatus("set a private upstream", `form[action="/tenants/acme/dns/upstreams"] button[type=submit]`, "/tenants/acme/dns/upstreams"); code != 422 {
		t.Errorf("the private upstream answered %d, want 422", code)
	}
	check(b, "refused upstream")
	b.do("keep the log 30 minutes", chromedp.SetValue(chromedp.CSS("#dns-log-keep"), "30m"))
	if code := b.submitStatus("keep the query log 30 minutes", `form[action="/tenants/acme/dns/log/enable"] button[type=submit]`, "/tenants/acme/dns/log/enable"); code != 422 {
		t.Errorf("the log kept 30 minutes answered %d, want 422", code)
	}
	check(b, "refused query log keep time")
	// A blocklist from a server on the PoP's loopback (the admin is an owner, whose lists
	// may be on private addresses): refused fetched every 30 minutes, then added.
	lists := e2eListServer(t, n.topo.Pop, "0.0.0.0 ads.example.com tracker.example.net\n127.0.0.1 localhost\n")
	b.do("name a blocklist", chromedp.SetValue(chromedp.CSS("#dns-blocklist-name"), "ads"))
	b.do("give its URL", chromedp.SetValue(chromedp.CSS("#dns-blocklist-url"), lists.url))
	b.do("fetch it every 30 minutes", chromedp.SetValue(chromedp.CSS("#dns-blocklist-every"), "30m"))
	if code := b.submitStatus("add a blocklist fetched every 30 minutes", `form[action="/tenants/acme/dns/blocklists"] button[type=submit]`, "/tenants/acme/dns/blocklists"); code != 422 {
		t.Errorf("the blocklist fetched every 30 minutes answered %d, want 422", code)
	}
	check(b, "refused blocklist")
	b.do("fetch it every 12 hours", chromedp.SetValue(chromedp.CSS("#dns-blocklist-every"), "12h"))
	b.submit("add acme's blocklist", `form[action="/tenants/acme/dns/blocklists"] button[type=submit]`)
	if got := b.text(`[aria-label="Blocklists"]`); !strings.Contains(got, "ads") || !strings.Contains(got, lists.url) || !strings.Contains(got, "OK") {
		t.Errorf("the blocklists table after adding one: %q", got)
	}
	// The tab with the tenant's own upstreams, its blocklist and its query log on (no names
	// are asked, so the upstreams are never reached), and back.
	b.do("name upstreams", chromedp.SetValue(chromedp.CSS("#dns-upstreams"), "tls://dns.quad9.net@9.9.9.9, 149.112.112.112"))
	b.submit("set acme's upstreams", `form[action="/tenants/acme/dns/upstreams"] button[type=submit]`)
	b.do("keep the log a week", chromedp.SetValue(chromedp.CSS("#dns-log-keep"), "7d"))
	b.submit("turn acme's query log on", `form[action="/tenants/acme/dns/log/enable"] button[type=submit]`)
	check(b, "DNS tab with upstreams, a blocklist and the query log on")
	// The list's source fails: fetching it now answers the tab with the error, the list
	// keeping its names.
	lists.fail()
	if code := b.submitStatus("fetch acme's blocklist from a source that fails", `form[action="/tenants/acme/dns/blocklists/refresh"] button[type=submit]`, "/tenants/acme/dns/blocklists/refresh"); code != 502 {
		t.Errorf("fetching a blocklist whose source fails answered %d, want 502", code)
	}
	if got := b.text(`[aria-label="Blocklists"]`); !strings.Contains(got, "Failed") || !strings.Contains(got, "500") {
		t.Errorf("the blocklists table after a failed fetch: %q", got)
	}
	check(b, "failed blocklist fetch")
	b.submit("remove acme's blocklist", `form[action="/tenants/acme/dns/blocklists/remove"] button[type=submit]`)
	b.submit("turn acme's query log off", `form[action="/tenants/acme/dns/log/disable"] button[type=submit]`)
	b.submit("reset acme's upstreams", `form[action="/tenants/acme/dns/upstreams/reset"] button[type=submit]`)
	b.mustOpen("/nodes")
	b.fill("#node-name", "Bad Name")
	if code := b.submitStatus("make a token with a bad name", `form[action="/nodes/tokens"] button[type=submit]`, "/nodes/tokens"); code != 422 {
		t.Errorf("the bad token form answered %d, want 422", code)
	}
	check(b, "refused join token")
	b.mustOpen("/nodes")
	b.submit("make a join token", `form[action="/nodes/tokens"] button[type=submit]`)
	check(b, "join token")

	// The sign-in page, in a browser context without a session.
	ctx, cancel := chromedp.NewContext(tabCtx, chromedp.WithNewBrowserContext())
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browser: open a tab in a new browser context: %v", err)
	}
	anon := &e2eTab{t: t, ctx: ctx, base: b.base, artifacts: b.artifacts}
	anon.mustOpen("/login")
	check(anon, "/login")
	t.Logf("axe-core: %d runs in %v", runs, time.Since(begin).Round(100*time.Millisecond))
}

// e2eListSource is a blocklist source on the loopback of ns, at url, until the test ends.
type e2eListSource struct {
	url    string
	failed atomic.Bool
}

func e2eListServer(t *testing.T, ns *testbed.Netns, text string) *e2eListSource {
	t.Helper()
	ln, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := &e2eListSource{url: "http://" + ln.Addr().String() + "/hosts"}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ls.failed.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, text)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ls
}

// fail makes the source answer 500 from now on.
func (ls *e2eListSource) fail() { ls.failed.Store(true) }
