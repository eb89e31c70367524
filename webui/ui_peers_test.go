package webui

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// newManyPeersUI serves the peers page from n generated peers of tenants acme, bravo, globex.
func newManyPeersUI(tb testing.TB, n int) *uiHarness {
	tb.Helper()
	ui, err := newUI(newManyPeers(n, "acme", "bravo", "globex"), nil, &recAuditor{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	h := &uiHarness{t: tb}
	h.use(ui)
	return h
}

var rowRE = regexp.MustCompile(`href="/tenants/([a-z]+)/peers/(device-\d+)"`)

// rows returns the "tenant/peer" of each row of a peers page.
func rows(body string) []string {
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1]+"/"+m[2])
	}
	return out
}

func TestUIPeersQuery(t *testing.T) {
	h := newManyPeersUI(t, 300)
	for _, c := range []struct {
		query     string
		wantRows  int
		wantFirst string
		want      []string
	}{
		{"", 50, "acme/device-00000", []string{"1–50 of 300 peers", "Page 1 of 6", `rel="next"`, `href="/peers?page=2"`}},
		{"page=6", 50, "globex/device-00152", []string{"251–300 of 300", "Page 6 of 6", `rel="prev"`}},
		{"page=99", 50, "globex/device-00152", []string{"Page 6 of 6"}},
		{"page=-3", 50, "acme/device-00000", nil},
		{"tenant=bravo", 50, "bravo/device-00001", []string{"of 100 peers"}},
		{"tenant=bravo&page=2", 50, "bravo/device-00151", []string{"51–100 of 100"}},
		{"q=DEVICE-0012", 10, "acme/device-00120", []string{"of 10 peers", "(filtered from 300)"}},
		{"q=100.64.0.7", 11, "acme/device-00072", nil}, // .7 and .70-.79
		{"q=nothing-like-this", 0, "", []string{"No peers match.", "Clear the filters"}},
		{"state=disabled", 18, "acme/device-00000", []string{"disabled"}},
		{"group=sales", 50, "acme/device-00003", []string{"of 60 peers"}},
		{"group=sales&tenant=acme&online=online&state=enabled", -1, "", nil},
		{"sort=-name", 50, "globex/device-00299", []string{`aria-sort="descending"`, `href="/peers"`}},
		{"sort=bogus", 50, "acme/device-00000", nil},
	} {
		body := h.check(owner, "GET", "/peers?"+c.query, nil, http.StatusOK, c.want...)
		got := rows(body)
		if c.wantRows >= 0 && len(got) != c.wantRows {
			t.Errorf("?%s: %d rows, want %d", c.query, len(got), c.wantRows)
		}
		if c.wantFirst != "" && (len(got) == 0 || got[0] != c.wantFirst) {
			t.Errorf("?%s: first row %v, want %s", c.query, got[:min(len(got), 3)], c.wantFirst)
		}
	}

	// Online and offline split the peers; sorting by traffic or handshake orders the rows.
	on := rows(h.check(owner, "GET", "/peers?online=online&sort=-rx", nil, http.StatusOK))
	off := h.check(owner, "GET", "/peers?online=offline", nil, http.StatusOK)
	if strings.Contains(off, `class="dot on" title="Online"`) || len(on) == 0 {
		t.Error("online filter mixes online and offline peers")
	}
	m := newManyPeers(300, "acme", "bravo", "globex")
	rx := map[string]uint64{}
	for _, p := range m.peers {
		rx[p.TenantName+"/"+p.Name] = p.RxBytes
	}
	for i := 1; i < len(on); i++ {
		if rx[on[i-1]] < rx[on[i]] {
			t.Fatalf("sort=-rx: %s (%d) before %s (%d)", on[i-1], rx[on[i-1]], on[i], rx[on[i]])
		}
	}
	hs := h.check(owner, "GET", "/peers?sort=-handshake", nil, http.StatusOK, `aria-sort="descending"`, "ago")
	if i, j := strings.Index(hs, "s ago"), strings.Index(hs, ">never<"); j >= 0 && j < i {
		t.Error("sort=-handshake puts never before recent handshakes")
	}
	// Sort links flip the direction and keep the filters.
	q := parsePeerQuery(url.Values{"tenant": {"acme"}, "sort": {"-rx"}, "page": {"3"}})
	if got := q.SortURL("rx"); got != "/peers?sort=rx&tenant=acme" {
		t.Errorf("SortURL(rx) = %s", got)
	}
	if got := q.SortURL("handshake"); got != "/peers?sort=-handshake&tenant=acme" {
		t.Errorf("SortURL(handshake) = %s", got)
	}
	if got := q.TableURL(); got != "/peers/table?page=3&sort=-rx&tenant=acme" {
		t.Errorf("TableURL = %s", got)
	}

	// A tenant admin sees its tenant only, whatever it asks for.
	body := h.check(acmeAdmin, "GET", "/peers", nil, http.StatusOK, "of 100 peers")
	for _, r := range rows(body) {
		if !strings.HasPrefix(r, "acme/") {
			t.Fatalf("acme's admin sees %s", r)
		}
	}
	h.check(acmeAdmin, "GET", "/peers?tenant=bravo", nil, http.StatusNotFound)
	h.check(acmeAdmin, "GET", "/peers/table?tenant=globex", nil, http.StatusNotFound)
}

// TestUIPeersFragment checks the live table: the fragment alone, polling itself every 5 s
// with the same query, and the address bar following it.
func TestUIPeersFragment(t *testing.T) {
	h := newManyPeersUI(t, 120)
	w := h.do(owner, "GET", "/peers/table?tenant=bravo&sort=-tx&page=9", nil) // bravo has 1 page
	body := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("fragment: %d", w.Code)
	}
	for _, s := range []string{`<section id="peers-live"`, `hx-get="/peers/table?sort=-tx&amp;tenant=bravo"`, `hx-trigger="every 5s, refresh"`, `hx-swap="outerHTML"`, "1–40 of 40 peers"} {
		if !strings.Contains(body, s) {
			t.Errorf("fragment lacks %q:\n%s", s, body[:min(len(body), 1500)])
		}
	}
	for _, s := range []string{"<html", "<head", "<nav class=\"mainnav\"", `role="search"`} {
		if strings.Contains(body, s) {
			t.Errorf("fragment has %q", s)
		}
	}
	if got := w.Header().Get("HX-Replace-Url"); got != "/peers?sort=-tx&tenant=bravo" {
		t.Errorf("HX-Replace-Url = %q", got)
	}
	// The page embeds the same fragment, and its filter form asks for the fragment.
	page := h.check(owner, "GET", "/peers?tenant=acme&sort=-tx", nil, http.StatusOK, `hx-get="/peers/table"`, `hx-target="#peers-live"`, `name="sort" value="-tx"`)
	if !strings.Contains(page, `<section id="peers-live"`) {
		t.Error("the page lacks the live table")
	}
}

// BenchmarkPeersPage renders the peers page of 10,000 peers: list, filter, sort, page and
// render, as for each 5 s refresh. Target: under 100 ms.
func BenchmarkPeersPage(b *testing.B) {
	h := newManyPeersUI(b, 10_000)
	for _, bc := range []struct{ name, query string }{
		{"default", "/peers"},
		{"sorted-rx-page-37", "/peers?sort=-rx&page=37"},
		{"search", "/peers?q=device-01"},
		{"filtered", "/peers?tenant=acme&group=eng&online=online"},
		{"fragment", "/peers/table?sort=-handshake"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w := h.do(owner, "GET", bc.query, nil)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d", bc.query, w.Code)
				}
			}
		})
	}
}
