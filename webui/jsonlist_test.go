package webui

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// TestWriteJSONList checks the streamed list against writeJSON of the whole list, the
// reference, byte for byte.
func TestWriteJSONList(t *testing.T) {
	hs := time.Date(2026, 3, 14, 15, 7, 20, 500, time.UTC)
	laptop := APIPeer{Tenant: "acme", Name: "laptop", PublicKey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
		IPv4: "100.64.0.2", IPv6: "fd7a:115c:a1e0::2", Enabled: true, CreatedAt: time.Date(2026, 3, 11, 15, 9, 26, 0, time.UTC),
		Groups: []string{"eng", "ops"}, Online: true, Endpoint: "198.51.100.4:40000", LastHandshake: &hs, RxBytes: 1 << 40}
	office := APIPeer{Tenant: "acme", Name: "office-gw", Site: "office", SitePrefixes: []string{"10.10.0.0/24", "10.20.0.0/16"}, ExpiresAt: &hs}
	odd := APIPeer{Tenant: "t<&>", Name: "naïve \"quoted\"\n\u2028", Groups: []string{}}
	for _, tc := range []struct {
		name  string
		peers []APIPeer
	}{
		{"empty", []APIPeer{}},
		{"one", []APIPeer{laptop}},
		{"several", []APIPeer{laptop, office, {}, laptop}},
		{"characters JSON escapes", []APIPeer{odd, laptop}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := httptest.NewRecorder()
			writeJSON(want, http.StatusOK, APIPeers{Peers: tc.peers})
			got := httptest.NewRecorder()
			if err := writeJSONList(got, "peers", slices.Values(tc.peers)); err != nil {
				t.Fatal(err)
			}
			if got.Code != want.Code || got.Body.String() != want.Body.String() {
				t.Errorf("streamed answer %d:\n%s\nwant %d:\n%s", got.Code, got.Body, want.Code, want.Body)
			}
			for _, h := range []string{"Content-Type", "Cache-Control"} {
				if got.Header().Get(h) != want.Header().Get(h) {
					t.Errorf("%s = %q, want %q", h, got.Header().Get(h), want.Header().Get(h))
				}
			}
		})
	}
}

// TestWriteJSONListStopsOnWriteError: a client that goes away ends the listing, which stops
// asking for items.
func TestWriteJSONListStopsOnWriteError(t *testing.T) {
	w := &failingWriter{ResponseRecorder: httptest.NewRecorder(), after: 64 << 10}
	asked := 0
	err := writeJSONList(w, "peers", func(yield func(APIPeer) bool) {
		for {
			asked++
			if !yield(APIPeer{Name: "p"}) {
				return
			}
			if asked > 1e6 {
				t.Fatal("the listing went on after its writes failed")
			}
		}
	})
	if !errors.Is(err, errGone) {
		t.Errorf("err = %v, want %v", err, errGone)
	}
}

var errGone = errors.New("client gone")

// failingWriter fails every write once after bytes were written.
type failingWriter struct {
	*httptest.ResponseRecorder
	after, n int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n += len(p); w.n > w.after {
		return 0, errGone
	}
	return w.ResponseRecorder.Write(p)
}
