package webhook

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// receiver is a webhook receiver that checks each delivery's signature with the secret it
// is given, and answers what fail says for the delivery.
type receiver struct {
	mu        sync.Mutex
	secret    string
	got       []Payload // the deliveries it accepted, in order
	attempts  map[int64]int
	badSigned int
	fail      func(p Payload, attempt int) int // the status to answer; 0: 204
	ch        chan struct{}
}

func newReceiver(t *testing.T) (*receiver, *httptest.Server) {
	r := &receiver{attempts: map[int64]int{}, ch: make(chan struct{}, 1000)}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer func() {
		r.mu.Unlock()
		r.ch <- struct{}{}
	}()
	// What a receiver does: HMAC-SHA256 of the raw body under the secret, compared in
	// constant time.
	if !hmac.Equal([]byte(req.Header.Get(SignatureHeader)), []byte(Sign(r.secret, body))) || req.Header.Get("Content-Type") != "application/json" {
		r.badSigned++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil || strconv.FormatInt(p.ID, 10) != req.Header.Get(DeliveryHeader) || p.Kind != req.Header.Get(EventHeader) {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.attempts[p.ID]++
	if r.fail != nil {
		if code := r.fail(p, r.attempts[p.ID]); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	r.got = append(r.got, p)
	w.WriteHeader(http.StatusNoContent)
}

// hook makes url the webhook of st and gives the receiver its new secret.
func (r *receiver) hook(t *testing.T, st *store.Store, url string) {
	t.Helper()
	_, secret, err := st.SetWebhook(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.secret = secret
	r.mu.Unlock()
}

// messages returns the messages of the deliveries accepted.
func (r *receiver) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.got {
		out = append(out, p.Message)
	}
	return out
}

// waitFor waits until ok holds, after each request the receiver answered.
func (r *receiver) waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for !ok() {
		select {
		case <-r.ch:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: not within 20 s", what)
		}
	}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "popgate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func start(t *testing.T, cfg Config) *Sender {
	t.Helper()
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 40*time.Millisecond
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	t.Cleanup(s.Close)
	return s
}

func add(t *testing.T, st *store.Store, s *Sender, evs ...store.Event) {
	t.Helper()
	if _, err := st.AddEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	s.Notify()
}

// TestDelivery: each event recorded after the webhook was set reaches it once, in order,
// signed with its secret (which the receiver verifies), with the event's fields; the
// events before it was set are not sent; a 500 is retried until it is accepted.
func TestDelivery(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	rcv, srv := newReceiver(t)
	add(t, st, &Sender{notify: make(chan struct{}, 1)}, store.Event{Kind: "link.down", Message: "before"})
	rcv.hook(t, st, srv.URL+"/hook?token=x")
	rcv.fail = func(p Payload, attempt int) int {
		if p.Message == "flaky" && attempt <= 2 {
			return http.StatusInternalServerError
		}
		return 0
	}
	s := start(t, Config{Store: st})
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	add(t, st, s, store.Event{At: at, Kind: "failover", Node: "p1", Tenant: "acme", Subject: "route:acme/10.99.0.0/16",
		Message: "first", Data: map[string]string{"from": "x1", "to": "x2"}})
	add(t, st, s, store.Event{Kind: "node.offline", Node: "x1", Message: "flaky"}, store.Event{Kind: "node.back", Node: "x1", Message: "third"})
	rcv.waitFor(t, "three deliveries", func() bool { return len(rcv.messages()) == 3 })
	if got := rcv.messages(); !slices.Equal(got, []string{"first", "flaky", "third"}) {
		t.Errorf("delivered %q", got)
	}
	rcv.mu.Lock()
	first, attempts, bad := rcv.got[0], rcv.attempts[rcv.got[1].ID], rcv.badSigned
	rcv.mu.Unlock()
	want := Payload{ID: 2, Time: at, Kind: "failover", Node: "p1", Tenant: "acme", Subject: "route:acme/10.99.0.0/16", Message: "first", Data: map[string]string{"from": "x1", "to": "x2"}}
	if first.ID != want.ID || !first.Time.Equal(at) || first.Kind != want.Kind || first.Tenant != "acme" || first.Data["to"] != "x2" || first.Node != "p1" {
		t.Errorf("payload %+v\nwant %+v", first, want)
	}
	if attempts != 3 || bad != 0 {
		t.Errorf("the flaky delivery took %d attempts (want 3: two 500s, then accepted); %d badly signed", attempts, bad)
	}
	var w store.Webhook
	rcv.waitFor(t, "the record", func() bool { w, _ = st.Webhook(ctx); return w.Delivered == 3 })
	if w.Failed != 2 || w.SentID != 4 || w.LastError != "" || w.LastOK.IsZero() || w.GivenUp != 0 {
		t.Errorf("record %+v", w)
	}
	if st := s.Status(); st.Retrying != 0 {
		t.Errorf("status %+v after all were delivered", st)
	}
}

// TestGiveUp: an event that still fails when it is a day old (GiveUp) is given up and the
// next one sent; a receiver that refuses one event does not hold the others back forever.
// Retries wait (Status says until when) and keep the event's ID.
func TestGiveUp(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	rcv, srv := newReceiver(t)
	rcv.hook(t, st, srv.URL)
	rcv.fail = func(p Payload, attempt int) int {
		if p.Message == "doomed" {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	s := start(t, Config{Store: st, GiveUp: time.Hour})
	// Failing and young: retried.
	add(t, st, s, store.Event{Kind: "link.down", Message: "doomed"})
	rcv.waitFor(t, "retries", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.attempts[1] >= 3
	})
	if st := s.Status(); st.Retrying != 1 || st.NextAttempt.IsZero() {
		t.Errorf("status while retrying %+v", st)
	}
	if w, _ := st.Webhook(ctx); w.LastError != "the webhook answered 503 Service Unavailable" {
		t.Errorf("last error %q", w.LastError)
	}
	// An old one that fails is given up at once; what follows goes on. (The young one
	// still holds the line: set the webhook again to start after it.)
	rcv.hook(t, st, srv.URL)
	add(t, st, s, store.Event{At: time.Now().Add(-2 * time.Hour), Kind: "link.down", Message: "doomed"}, store.Event{Kind: "link.up", Message: "next"})
	var w store.Webhook
	rcv.waitFor(t, "the next event, recorded", func() bool { w, _ = st.Webhook(ctx); return w.Delivered == 1 })
	if !slices.Contains(rcv.messages(), "next") || w.GivenUp != 1 || w.Delivered != 1 || w.SentID != 3 {
		t.Errorf("record %+v", w)
	}
	rcv.mu.Lock()
	if n := rcv.attempts[2]; n != 1 {
		t.Errorf("the old event was tried %d times, want once", n)
	}
	rcv.mu.Unlock()
}

// TestBacklog: when more events wait than MaxBacklog (the receiver was away), the oldest
// are dropped and counted, and the newest delivered in order.
func TestBacklog(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	rcv, srv := newReceiver(t)
	rcv.hook(t, st, srv.URL)
	for i := range 8 {
		st.AddEvents(ctx, []store.Event{{Kind: "link.down", Message: strconv.Itoa(i)}})
	}
	start(t, Config{Store: st, MaxBacklog: 3})
	rcv.waitFor(t, "the newest three", func() bool { w, _ := st.Webhook(ctx); return w.Delivered == 3 })
	if got := rcv.messages(); !slices.Equal(got, []string{"5", "6", "7"}) {
		t.Errorf("delivered %q", got)
	}
	if w, _ := st.Webhook(ctx); w.Dropped != 5 {
		t.Errorf("dropped %d, want 5", w.Dropped)
	}
}

// TestNoRedirect: a redirect is a failure (the operator set the URL), and the error does
// not repeat the URL (its path may be the receiver's secret).
func TestNoRedirect(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	if _, _, err := st.SetWebhook(ctx, srv.URL+"/SECRETPATH"); err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{Store: st})
	add(t, st, s, store.Event{Kind: "link.down"})
	var w store.Webhook
	deadline := time.Now().Add(20 * time.Second)
	for w.Failed == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		w, _ = st.Webhook(ctx)
	}
	if w.Failed == 0 || w.LastError != "the webhook answered 302 Found" {
		t.Errorf("record %+v", w)
	}
	s.Close()
	s.Close() // idempotent
}
