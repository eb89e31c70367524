package control

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// listServer serves a blocklist at /list whose text and status the test changes.
type listServer struct {
	*httptest.Server
	mu     sync.Mutex
	text   string
	status int
	gets   int
}

func startListServer(t *testing.T, text string) *listServer {
	ls := &listServer{text: text, status: http.StatusOK}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		ls.gets++
		switch r.URL.Path {
		case "/list":
			w.WriteHeader(ls.status)
			w.Write([]byte(ls.text))
		case "/ftp":
			http.Redirect(w, r, "ftp://example.com/list", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ls.Close)
	return ls
}

func (ls *listServer) fetches() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.gets
}

func (ls *listServer) set(text string, status int) {
	ls.mu.Lock()
	ls.text, ls.status = text, status
	ls.mu.Unlock()
}

// refsOf returns tenant's blocklists in the desired state dp applied last.
func refsOf(t *testing.T, d *plane.Desired, tenant string) []plane.BlocklistRef {
	t.Helper()
	for _, tn := range d.Tenants {
		if tn.Name == tenant {
			return tn.DNS.Blocklists
		}
	}
	t.Fatalf("no tenant %s in the desired state", tenant)
	return nil
}

func TestBlocklistFetch(t *testing.T) {
	ctx := context.Background()
	c, dp := newTestController(t)
	for _, n := range []string{"acme", "globex"} {
		if _, err := c.AddTenant(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	ls := startListServer(t, "# a hosts file\n0.0.0.0 ads.example.com tracker.example.net\n127.0.0.1 localhost\n")
	url := ls.URL + "/list"

	// A tenant admin's list may come from the internet only: loopback is refused.
	_, err := c.AddBlocklist(ctx, AddBlocklistRequest{Tenant: "acme", Name: "ads", URL: url})
	if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "not a public address") {
		t.Fatalf("a tenant's list on loopback: %v, want ErrFetch (not a public address)", err)
	}
	t.Logf("refused: %v", err)
	if bs, _ := c.Blocklists(ctx, "acme"); len(bs) != 0 {
		t.Fatalf("a refused list was added: %+v", bs)
	}

	b, err := c.AddBlocklist(ctx, AddBlocklistRequest{Tenant: "acme", Name: "ads", URL: url, PrivateOK: true})
	if err != nil {
		t.Fatal(err)
	}
	if b.Names != 2 || b.Skipped != 1 || b.Every != store.DefaultBlocklistEvery {
		t.Errorf("added %+v", b)
	}
	refs := refsOf(t, dp.Desired(), "acme")
	want := sha256.Sum256([]byte("ads.example.com\ntracker.example.net\n"))
	if len(refs) != 1 || refs[0].Name != "ads" || refs[0].SHA256 != want || refs[0].Names != 2 {
		t.Errorf("acme's lists in the desired state: %+v", refs)
	}
	if refs := refsOf(t, dp.Desired(), "globex"); len(refs) != 0 {
		t.Errorf("globex has lists: %+v", refs)
	}
	if _, err := c.AddBlocklist(ctx, AddBlocklistRequest{Tenant: "acme", Name: "ads", URL: url, PrivateOK: true}); !errors.Is(err, store.ErrExists) {
		t.Errorf("the same name again: %v, want ErrExists", err)
	}
	for _, bad := range []struct{ name, url string }{
		{"404", ls.URL + "/nothing"},
		{"ftp redirect", ls.URL + "/ftp"},
		{"refused", "http://127.0.0.1:1/list"},
	} {
		if _, err := c.AddBlocklist(ctx, AddBlocklistRequest{Tenant: "acme", Name: "x", URL: bad.url, PrivateOK: true}); !errors.Is(err, ErrFetch) {
			t.Errorf("%s: %v, want ErrFetch", bad.name, err)
		} else {
			t.Logf("%s: %v", bad.name, err)
		}
	}

	// A failed refresh keeps the content and says why; a good one brings the new.
	ls.set("oops", http.StatusServiceUnavailable)
	if _, err := c.RefreshBlocklist(ctx, "acme", "ads"); !errors.Is(err, ErrFetch) {
		t.Errorf("refresh from a failing server: %v", err)
	}
	f, _ := c.Blocklist(ctx, "acme", "ads")
	if f.SHA256 != want || !strings.Contains(f.Error, "503") || f.ErrorAt.IsZero() {
		t.Errorf("after a failed refresh: %+v", f)
	}
	if refs := refsOf(t, dp.Desired(), "acme"); refs[0].SHA256 != want {
		t.Error("a failed refresh changed the desired state")
	}
	ls.set("||ads.example.com^\n||more.example.org^\n", http.StatusOK)
	nb, err := c.RefreshBlocklist(ctx, "acme", "ads")
	if err != nil || nb.Names != 2 || nb.Error != "" {
		t.Fatalf("refresh: %+v, %v", nb, err)
	}
	if refs := refsOf(t, dp.Desired(), "acme"); refs[0].SHA256 != sha256.Sum256([]byte("ads.example.com\nmore.example.org\n")) {
		t.Errorf("the desired state after a refresh: %+v", refs)
	}

	// The periodic refresh: nothing is due right after a fetch, the list a day later.
	gets := ls.fetches()
	c.refreshDue(time.Now())
	if ls.fetches() != gets {
		t.Errorf("a list fetched just now was fetched again")
	}
	ls.set("third.example.com\n", http.StatusOK)
	c.refreshDue(time.Now().Add(store.DefaultBlocklistEvery + time.Minute))
	if refs := refsOf(t, dp.Desired(), "acme"); refs[0].Names != 1 || refs[0].SHA256 != sha256.Sum256([]byte("third.example.com\n")) {
		t.Errorf("the desired state after the periodic refresh: %+v", refs)
	}

	if err := c.RemoveBlocklist(ctx, "acme", "ads"); err != nil {
		t.Fatal(err)
	}
	if refs := refsOf(t, dp.Desired(), "acme"); len(refs) != 0 {
		t.Errorf("a removed list is in the desired state: %+v", refs)
	}
}

func TestBlocklistUpload(t *testing.T) {
	ctx := context.Background()
	c, dp := newTestController(t)
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	b, err := c.UploadBlocklist(ctx, "acme", "mine", strings.NewReader("a.example.com\nb.example.com\nbad name!\n"), true)
	if err != nil || b.Names != 2 || b.Skipped != 2 || !b.Uploaded() {
		t.Fatalf("upload: %+v, %v", b, err)
	}
	if _, err := c.UploadBlocklist(ctx, "acme", "mine", strings.NewReader("c.example.com\n"), true); !errors.Is(err, store.ErrExists) {
		t.Errorf("create twice: %v", err)
	}
	if b, err = c.UploadBlocklist(ctx, "acme", "mine", strings.NewReader("c.example.com\n"), false); err != nil || b.Names != 1 {
		t.Errorf("replace: %+v, %v", b, err)
	}
	if refs := refsOf(t, dp.Desired(), "acme"); len(refs) != 1 || refs[0].SHA256 != sha256.Sum256([]byte("c.example.com\n")) {
		t.Errorf("the desired state after an upload: %+v", refs)
	}
	if _, err := c.UploadBlocklist(ctx, "acme", "other", strings.NewReader("c.example.com\n"), false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replace what is not there: %v", err)
	}
	if _, err := c.RefreshBlocklist(ctx, "acme", "mine"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("refresh an uploaded list: %v, want ErrInvalid", err)
	}
	if _, err := c.UploadBlocklist(ctx, "nobody", "mine", strings.NewReader("c.example.com\n"), true); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("upload for no tenant: %v", err)
	}
}

// TestBlocklistBlob: a node gets a content only when a tenant it serves lists it.
func TestBlocklistBlob(t *testing.T) {
	ctx := context.Background()
	c, _ := newTestController(t)
	for _, n := range []string{"acme", "globex"} {
		if _, err := c.AddTenant(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AddRegion(ctx, "fra", "vpn-fra.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetTenantRegions(ctx, "globex", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	a, _ := c.UploadBlocklist(ctx, "acme", "a", strings.NewReader("a.example.com\n"), true)
	g, _ := c.UploadBlocklist(ctx, "globex", "g", strings.NewReader("g.example.com\n"), true)
	local, fra := store.Node{Name: "pop-local", Region: "local"}, store.Node{Name: "pop-fra", Region: "fra"}
	for _, tc := range []struct {
		node store.Node
		sum  [32]byte
		want string // "" not found
	}{
		{local, a.SHA256, "a.example.com\n"},
		{fra, a.SHA256, "a.example.com\n"}, // acme may use every region
		{fra, g.SHA256, "g.example.com\n"},
		{local, g.SHA256, ""}, // globex is not served in local
		{local, sha256.Sum256([]byte("x")), ""},
	} {
		body, err := c.BlocklistBlob(ctx, tc.node, tc.sum)
		switch {
		case tc.want == "" && !errors.Is(err, store.ErrNotFound):
			t.Errorf("%s, %x: %q, %v; want ErrNotFound", tc.node.Name, tc.sum[:4], body, err)
		case tc.want != "" && (err != nil || string(body) != tc.want):
			t.Errorf("%s, %x: %q, %v; want %q", tc.node.Name, tc.sum[:4], body, err, tc.want)
		}
	}
}
