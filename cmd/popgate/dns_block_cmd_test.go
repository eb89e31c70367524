package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/popgate/popgate/webui"
)

// TestServeBlocklistCommands runs the dns blocklist commands against a real serve: a list
// from a URL (served on loopback: the CLI is an owner's), one from a file, a failed and a
// good refresh, removal; bad input is one line and a non-zero exit, with nothing stored.
func TestServeBlocklistCommands(t *testing.T) {
	var mu sync.Mutex
	source, status := "# ads\n0.0.0.0 ads.example.com tracker.example.net\n127.0.0.1 localhost\n", http.StatusOK
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/hosts" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(source))
	}))
	defer src.Close()
	dir := t.TempDir()
	stop := startServe(t, dir, 16)
	defer stop()
	cli := serveCLI{t, dir}
	must, refused := cli.must, cli.refused
	must("tenant", "add", "acme")
	must("tenant", "add", "globex")

	_, note := must("dns", "blocklist", "add", "--tenant", "acme", "--url", src.URL+"/hosts", "--every", "12h", "ads")
	if !strings.Contains(note, "blocklist ads of tenant acme added: 2 names blocked (1 entries skipped), fetched again every 12h") {
		t.Errorf("add says %q", note)
	}
	file := filepath.Join(t.TempDir(), "mine.txt")
	os.WriteFile(file, []byte("||mine.example.com^\nbad name!\n"), 0o600)
	if _, note := must("dns", "blocklist", "add", "--tenant", "acme", "--file", file, "mine"); !strings.Contains(note, "1 names blocked (2 entries skipped)") {
		t.Errorf("add --file says %q", note)
	}
	list, _ := must("dns", "blocklist", "list", "--tenant", "acme")
	for _, want := range []string{"NAME", "ads", src.URL + "/hosts", "12h", "ok just now", "mine", "file", "uploaded just now"} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}
	if _, note := must("dns", "blocklist", "list", "--tenant", "globex"); !strings.Contains(note, "tenant globex has no blocklists") {
		t.Errorf("globex's list says %q", note)
	}

	// The source fails: refresh says why, the list keeps its content and shows the failure.
	mu.Lock()
	status = http.StatusInternalServerError
	mu.Unlock()
	refused(exitRuntime, "answered 500 Internal Server Error: check the URL; blocklist ads keeps its last content", "dns", "blocklist", "refresh", "--tenant", "acme", "ads")
	out, _ := must("dns", "blocklist", "list", "--tenant", "acme", "--json")
	var bs webui.APIBlocklists
	if err := json.Unmarshal([]byte(out), &bs); err != nil {
		t.Fatal(err)
	}
	if b := bs.Blocklists[0]; b.Name != "ads" || b.Names != 2 || !strings.Contains(b.Error, "500") {
		t.Errorf("after a failed refresh: %+v", b)
	}
	if list, _ := must("dns", "blocklist", "list", "--tenant", "acme"); !strings.Contains(list, "FAILED just now: ") {
		t.Errorf("list does not show the failure:\n%s", list)
	}
	mu.Lock()
	source, status = "a.example.com\nb.example.com\nc.example.com\n", http.StatusOK
	mu.Unlock()
	if _, note := must("dns", "blocklist", "refresh", "--tenant", "acme", "ads"); !strings.Contains(note, "fetched: 3 names blocked") {
		t.Errorf("refresh says %q", note)
	}
	os.WriteFile(file, []byte("x.example.com\ny.example.com\n"), 0o600)
	if _, note := must("dns", "blocklist", "refresh", "--tenant", "acme", "--file", file, "mine"); !strings.Contains(note, "uploaded from "+file+": 2 names") {
		t.Errorf("refresh --file says %q", note)
	}

	// Bad input.
	refused(exitUsage, "give --url or --file", "dns", "blocklist", "add", "--tenant", "acme", "x")
	refused(exitUsage, "give --url or --file", "dns", "blocklist", "add", "--tenant", "acme", "--url", src.URL, "--file", file, "x")
	refused(exitUsage, "--tenant", "dns", "blocklist", "add", "--url", src.URL, "x")
	refused(exitUsage, `blocklist name "X" is invalid`, "dns", "blocklist", "add", "--tenant", "acme", "--url", src.URL, "X")
	refused(exitUsage, "is not an http or https URL", "dns", "blocklist", "add", "--tenant", "acme", "--url", "ftp://x.example/l", "x")
	refused(exitUsage, `--every "5m"`, "dns", "blocklist", "add", "--tenant", "acme", "--url", src.URL, "--every", "5m", "x")
	refused(exitUsage, "--every is for a list from a URL", "dns", "blocklist", "add", "--tenant", "acme", "--file", file, "--every", "1h", "x")
	refused(exitRuntime, "exists already", "dns", "blocklist", "add", "--tenant", "acme", "--url", src.URL+"/hosts", "ads")
	refused(exitRuntime, "answered 404", "dns", "blocklist", "add", "--tenant", "acme", "--url", src.URL+"/none", "x")
	refused(exitRuntime, `tenant "nobody" not found`, "dns", "blocklist", "add", "--tenant", "nobody", "--url", src.URL+"/hosts", "x")
	refused(exitRuntime, "read the list", "dns", "blocklist", "add", "--tenant", "acme", "--file", file+".missing", "x")
	refused(exitRuntime, "was uploaded from a file", "dns", "blocklist", "refresh", "--tenant", "acme", "mine")
	refused(exitRuntime, "is fetched from", "dns", "blocklist", "refresh", "--tenant", "acme", "--file", file, "ads")
	refused(exitRuntime, `blocklist "nope" of tenant "acme" not found`, "dns", "blocklist", "remove", "--tenant", "acme", "nope")
	refused(exitUsage, "unknown subcommand", "dns", "blocklist", "show", "--tenant", "acme")
	if list, _ := must("dns", "blocklist", "list", "--tenant", "acme"); strings.Count(list, "\n") != 3 {
		t.Errorf("refused commands changed the lists:\n%s", list)
	}

	must("dns", "blocklist", "remove", "--tenant", "acme", "ads")
	must("dns", "blocklist", "remove", "--tenant", "acme", "mine")
	if _, note := must("dns", "blocklist", "list", "--tenant", "acme"); !strings.Contains(note, "no blocklists") {
		t.Errorf("after removing both: %q", note)
	}
}
