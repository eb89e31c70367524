package webui

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// TestAPIBodyLimits: a body over its route's limit is answered 413 with the limit and what to
// do, also to a client still sending it (over a real connection: no broken pipe, no
// "unexpected EOF"); a policy may be larger than the other bodies, up to the store's limit.
func TestAPIBodyLimits(t *testing.T) {
	e := newAuthEnv(t, nil)
	e.addTenant("acme")
	ts := httptest.NewServer(e.srv.ControlHandler())
	t.Cleanup(ts.Close)
	bigPolicy := "default deny\n" + strings.Repeat("# a comment line of a long policy\n", 200<<10/34)
	for _, c := range []struct {
		name, method, path string
		body               []byte
		code               int
		want               string
	}{
		{"10 MB JSON", "POST", "/api/v1/tenants/acme/peers", append([]byte(`{"name":"`), bytes.Repeat([]byte("x"), 10<<20)...), 413,
			"the request body is larger than 64 KiB (65536 bytes), the most this API takes"},
		{"70 KiB JSON", "POST", "/api/v1/tenants", []byte(`{"name":"` + strings.Repeat(" ", 70<<10) + `"}`), 413, "larger than 64 KiB"},
		{"5 MB policy", "PUT", "/api/v1/tenants/acme/policy", bytes.Repeat([]byte("# x\n"), 5<<20/4), 413,
			"the policy is larger than 4 MiB (4194304 bytes), the most this API takes: say the same with fewer rules, using groups and CIDRs"},
		{"200 KiB policy", "PUT", "/api/v1/tenants/acme/policy", []byte(bigPolicy), 200, `"rules": 0`},
	} {
		req, err := http.NewRequest(c.method, ts.URL+c.path, bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %s\nwant %d with %q", c.name, resp.StatusCode, body, c.code, c.want)
		}
	}
	if ps, _ := e.ctrl.ListPeers(context.Background(), "acme"); len(ps) != 0 {
		t.Errorf("%d peers after refused bodies", len(ps))
	}
}

// TestAPIDiskFull: the API answers a change the disk refused with 507 and the store's
// message, not "internal error".
func TestAPIDiskFull(t *testing.T) {
	api := NewAPI(nil, nil, slog.New(slog.DiscardHandler))
	h := api.wrapLimit(maxBody, func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("peer add: %w", diskFullError{})
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/tenants/acme/peers", nil))
	if rec.Code != http.StatusInsufficientStorage || !strings.Contains(rec.Body.String(), "free space on /var/lib/popgate and retry; nothing was changed") ||
		strings.Contains(rec.Body.String(), "internal error") {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}

// diskFullError stands in for the store's error of a full disk.
type diskFullError struct{}

func (diskFullError) Error() string {
	return "the disk holding the database is full: free space on /var/lib/popgate and retry; nothing was changed"
}
func (diskFullError) Unwrap() error { return store.ErrDiskFull }

// fullDisk is the pages' backend on a disk that is full: every peer change fails.
type fullDisk struct{ uiBackend }

func (fullDisk) SetPeerEnabled(context.Context, string, string, bool) (control.PeerInfo, error) {
	return control.PeerInfo{}, diskFullError{}
}

// TestUIDiskFull: the pages answer a change the disk refused with 507 and what to do, not a
// bare server error.
func TestUIDiskFull(t *testing.T) {
	h := newUIHarness(t)
	ui, err := newUI(fullDisk{h.ctrl}, h.store, h.audit, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.use(ui)
	body := h.check(owner, "POST", "/tenants/acme/peers/laptop/disable", form(), http.StatusInsufficientStorage,
		"The disk holding the database is full: free space on /var/lib/popgate and retry; nothing was changed.")
	if strings.Contains(body, "Something went wrong") {
		t.Errorf("the page says a generic server error:\n%s", excerpt(body))
	}
}
