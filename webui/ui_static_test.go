package webui

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// htmxSHA256 is the sha256 of static/htmx.min.js: dist/htmx.min.js of the npm package
// htmx.org@2.0.11 (see static/README).
const htmxSHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"

func TestStaticHTMXChecksum(t *testing.T) {
	data, err := staticFS.ReadFile("static/htmx.min.js")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != htmxSHA256 {
		t.Errorf("static/htmx.min.js has sha256 %s, want %s (htmx.org@2.0.11 dist/htmx.min.js)", got, htmxSHA256)
	}
	if !strings.Contains(string(data), `version:"2.0.11"`) {
		t.Error("static/htmx.min.js is not htmx 2.0.11")
	}
	readme, _ := os.ReadFile("static/README")
	if !strings.Contains(string(readme), htmxSHA256) {
		t.Error("static/README does not record the sha256 of htmx.min.js")
	}
}

// TestStaticServing checks the versioned URLs, their caching and types.
func TestStaticServing(t *testing.T) {
	h := newUIHarness(t)
	page := h.check(owner, "GET", "/", nil, http.StatusOK)
	urls := regexp.MustCompile(`"(/static/[a-z.]+\?v=[0-9a-f]{16})"`).FindAllStringSubmatch(page, -1)
	if len(urls) < 4 {
		t.Fatalf("page links %d static files, want the style sheet, htmx, app.js and the icon", len(urls))
	}
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
	for _, m := range urls {
		u := m[1]
		w := h.do(nil, "GET", u, nil) // no sign-in needed: the sign-in page uses them
		ext := u[strings.LastIndex(u[:strings.Index(u, "?")], "."):strings.Index(u, "?")]
		if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" || w.Header().Get("Content-Type") != types[ext] {
			t.Errorf("GET %s: %d %v", u, w.Code, w.Header())
		}
		etag := w.Header().Get("ETag")
		r := newRequest("GET", u, nil)
		r.Header.Set("If-None-Match", etag)
		rec := newRecorder()
		h.mux.ServeHTTP(rec, r)
		if rec.Code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d", u, rec.Code)
		}
	}
	if w := h.do(nil, "GET", "/static/app.css?v=old", nil); w.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("an old version is cached: %v", w.Header())
	}
	for _, p := range []string{"/static/nope.js", "/static/README", "/static/sub/app.css"} {
		if w := h.do(nil, "GET", p, nil); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, w.Code)
		}
	}
}

// TestTemplatesStrictCSP checks that no page needs 'unsafe-inline' or another site: no inline
// scripts, styles or event handlers, no javascript: URLs, nothing loaded from elsewhere.
func TestTemplatesStrictCSP(t *testing.T) {
	bad := []*regexp.Regexp{
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle=`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`javascript:`),
		regexp.MustCompile(`(?:src|href)="(?:https?:)?//`),
		regexp.MustCompile(`hx-on`),
	}
	err := fs.WalkDir(templateFS, "templates", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := templateFS.ReadFile(p)
		for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAll(data, -1) {
			if !strings.Contains(string(tag), ` src="`) {
				t.Errorf("%s: inline script %s", p, tag)
			}
		}
		for _, re := range bad {
			if loc := re.FindIndex(data); loc != nil {
				t.Errorf("%s: %q breaks the strict CSP", p, data[loc[0]:min(loc[1]+20, len(data))])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// htmx must not inject its indicator styles or evaluate code.
	layout, _ := templateFS.ReadFile("templates/layout.html")
	for _, s := range []string{`"includeIndicatorStyles":false`, `"allowEval":false`, `"allowScriptTags":false`, `"historyCacheSize":0`} {
		if !strings.Contains(string(layout), s) {
			t.Errorf("layout's htmx-config lacks %s", s)
		}
	}
}
