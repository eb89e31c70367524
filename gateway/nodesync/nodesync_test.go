package nodesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// fakeSource is a Source whose desired state the test sets.
type fakeSource struct {
	mu sync.Mutex
	d  *plane.Desired
	ch chan struct{}
	// reports are the reports NodeReported heard.
	reports []plane.Report
	// st records SetNodeBackbone's changes.
	st *store.Store
}

func newSource(gen int64) *fakeSource { return &fakeSource{d: desired(gen), ch: make(chan struct{})} }

func (f *fakeSource) set(d *plane.Desired) {
	f.mu.Lock()
	f.d = d
	close(f.ch)
	f.ch = make(chan struct{})
	f.mu.Unlock()
}

// poke publishes without a change (a node removed).
func (f *fakeSource) poke() { f.set(f.get()) }

func (f *fakeSource) get() *plane.Desired {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.d
}

func (f *fakeSource) NodeDesired(context.Context, store.Node) (*plane.Desired, error) {
	return f.get(), nil
}

func (f *fakeSource) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ch
}

func (f *fakeSource) NodeReported(n store.Node, rep *plane.Report, _ time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, *rep)
}

func (f *fakeSource) reported() []plane.Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reports)
}

func (f *fakeSource) SetNodeBackbone(ctx context.Context, n store.Node, endpoint string, key store.Key) (store.Node, error) {
	updated, err := f.st.SetNodeBackbone(ctx, n.ID, endpoint, key)
	if err == nil {
		f.poke()
	}
	return updated, err
}

func (f *fakeSource) NodeEventCursor(ctx context.Context, n store.Node) (store.EventCursor, error) {
	return f.st.NodeEventCursor(ctx, n.ID)
}

func (f *fakeSource) NodeEvents(ctx context.Context, n store.Node, boot int64, evs []plane.Event, _ time.Duration) error {
	nes := make([]store.NodeEvent, len(evs))
	for i, e := range evs {
		nes[i] = store.NodeEvent{Seq: e.Seq, Event: store.Event{At: e.At, Kind: e.Kind, Node: n.Name, Subject: e.Subject, Message: e.Message, Data: e.Data}}
	}
	_, err := f.st.AddNodeEvents(ctx, n.ID, boot, nes)
	return err
}

func (f *fakeSource) NodeDNSLogCursor(ctx context.Context, n store.Node) (store.EventCursor, error) {
	return f.st.NodeDNSLogCursor(ctx, n.ID)
}

func (f *fakeSource) NodeDNSLog(ctx context.Context, n store.Node, boot int64, qs []plane.DNSQuery, _ time.Duration) error {
	es := make([]store.NodeDNSLogEntry, len(qs))
	for i, q := range qs {
		es[i] = store.NodeDNSLogEntry{Seq: q.Seq, DNSLogEntry: store.DNSLogEntry{TenantID: q.Tenant, At: q.At, Node: n.Name, Peer: q.Peer,
			Client: q.Client, Name: q.Name, Type: q.Type, Outcome: q.Outcome, Rcode: q.Rcode, Latency: q.Latency}}
	}
	_, err := f.st.AddNodeDNSLog(ctx, n.ID, boot, es)
	return err
}

var _ Source = (*fakeSource)(nil)

func desired(gen int64) *plane.Desired {
	return &plane.Desired{Format: plane.Format, Generation: gen, Overlay: plane.Overlay{
		V4: netip.MustParsePrefix("100.64.0.0/10"), V6: netip.MustParsePrefix("fd00:1::/48"),
		Gateway4: netip.MustParseAddr("100.64.0.1"), Gateway6: netip.MustParseAddr("fd00:1::1")}}
}

// controller is a controller's end over loopback TLS with a real store.
type controller struct {
	st   *store.Store
	id   *Identity
	src  *fakeSource
	srv  *Server
	addr string
	ln   net.Listener
	// blobs is the server's ServerConfig.Blobs; nil: none.
	blobs func(context.Context, store.Node, [32]byte) ([]byte, error)
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

func newController(t *testing.T, now func() time.Time) *controller {
	t.Helper()
	c := &controller{st: openStore(t), src: newSource(1)}
	c.src.st = c.st
	var err error
	if c.id, err = LoadIdentity(filepath.Join(t.TempDir(), IdentityFileName)); err != nil {
		t.Fatal(err)
	}
	c.start(t, "127.0.0.1:0", now)
	return c
}

func (c *controller) start(t *testing.T, addr string, now func() time.Time) {
	t.Helper()
	var err error
	if c.srv, err = NewServer(ServerConfig{Identity: c.id, Registry: c.st, Source: c.src, Now: now, PingEvery: 200 * time.Millisecond, Blobs: c.blobs}, nil); err != nil {
		t.Fatal(err)
	}
	if c.ln, err = net.Listen("tcp", addr); err != nil {
		t.Fatal(err)
	}
	c.addr = c.ln.Addr().String()
	srv := c.srv
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(c.ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

func (c *controller) token(t *testing.T, nt store.NewJoinToken) Token {
	t.Helper()
	if nt.Roles == "" {
		nt.Roles = "pop"
	}
	if nt.ExpiresAt.IsZero() {
		nt.ExpiresAt = time.Now().Add(time.Hour)
	}
	jt, secret, err := c.st.CreateJoinToken(context.Background(), nt)
	if err != nil {
		t.Fatal(err)
	}
	return Token{Addr: c.addr, Pin: c.id.Pin(), ID: jt.ID, Secret: secret, Expires: jt.ExpiresAt}
}

func testIdentity(t *testing.T) *Identity {
	t.Helper()
	id, err := LoadIdentity(filepath.Join(t.TempDir(), IdentityFileName))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", IdentityFileName)
	a, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity key: %v, %v", fi, err)
	}
	b, err := LoadIdentity(path)
	if err != nil || b.Pin() != a.Pin() {
		t.Fatalf("reloaded identity: pin %s, %v; want %s", b.Pin(), err, a.Pin())
	}
	if other := testIdentity(t); other.Pin() == a.Pin() {
		t.Fatal("two identities with one pin")
	}
	os.Chmod(path, 0o644)
	if _, err := LoadIdentity(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a readable key: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("junk"), 0o600)
	if _, err := LoadIdentity(path); err == nil || !strings.Contains(err.Error(), "not a PEM private key") {
		t.Fatalf("a damaged key: %v", err)
	}
}

func TestTokenRoundTrip(t *testing.T) {
	now := time.Now()
	tok := Token{Addr: "[2001:db8::1]:7443", Pin: Pin{1, 2}, ID: 42, Secret: [32]byte{3}, Expires: now.Add(time.Hour).Truncate(time.Second).UTC()}
	s := tok.Encode()
	if !strings.HasPrefix(s, TokenPrefix) || strings.ContainsAny(s, " \n=") {
		t.Fatalf("token %q", s)
	}
	got, err := ParseToken(" "+s+"\n", now)
	if err != nil || got != tok {
		t.Fatalf("ParseToken = %+v, %v; want %+v", got, err, tok)
	}
	for _, tc := range []struct{ in, want string }{
		{"pgt_abc", "not a popgate join token"},
		{"", "not a popgate join token"},
		{"popgate-join-2.eyJ9", `version "2"`},
		{s[:len(s)-10], "truncated or damaged"},
		{TokenPrefix + "!!", "truncated or damaged"},
		{TokenPrefix + "e30", "truncated or damaged"}, // {}
	} {
		if _, err := ParseToken(tc.in, now); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseToken(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	_, err = ParseToken(s, now.Add(2*time.Hour))
	if !errors.Is(err, ErrTokenExpired) || !strings.Contains(err.Error(), tok.Expires.Format(time.RFC3339)) {
		t.Errorf("an expired token: %v", err)
	}
}

func TestJoin(t *testing.T) {
	ctx := context.Background()
	c := newController(t, nil)
	node := testIdentity(t)

	tok := c.token(t, store.NewJoinToken{Roles: "pop", Region: "fra"})
	j, err := Join(ctx, node, tok, JoinRequest{Name: "p1", Version: "test", BackboneEndpoint: "192.0.2.1:51821"})
	if err != nil {
		t.Fatal(err)
	}
	if j.Name != "p1" || j.Roles != "pop" || j.Region != "fra" {
		t.Errorf("Joined %+v", j)
	}
	n, err := c.st.NodeByPin(ctx, node.Pin())
	if err != nil || n.Name != "p1" || n.BackboneEndpoint != "192.0.2.1:51821" {
		t.Fatalf("the controller's record: %+v, %v", n, err)
	}

	// Reused.
	_, err = Join(ctx, testIdentity(t), tok, JoinRequest{Name: "p2"})
	wantErrText(t, err, `this join token was used at`)
	// Forged: the right id, another secret.
	tok2 := c.token(t, store.NewJoinToken{})
	forged := tok2
	forged.Secret[0] ^= 1
	_, err = Join(ctx, testIdentity(t), forged, JoinRequest{Name: "p2"})
	wantErrText(t, err, "does not know this join token")
	// Another installation's: the pin does not match, the node refuses the controller.
	other := tok2
	other.Pin = testIdentity(t).Pin()
	_, err = Join(ctx, testIdentity(t), other, JoinRequest{Name: "p2"})
	if !errors.Is(err, ErrWrongController) {
		t.Errorf("another installation's token: %v", err)
	}
	wantErrText(t, err, "is not the one the token names")
	// Clock off by an hour: refused, the token stays unused.
	_, err = Join(ctx, testIdentity(t), tok2, JoinRequest{Name: "p2", Now: func() time.Time { return time.Now().Add(-time.Hour) }})
	wantErrText(t, err, "this node's clock is off by -1h0m0s from the controller's: fix its time (NTP) and join again; the token is still unused")
	// Unreachable.
	gone := tok2
	gone.Addr = "127.0.0.1:1"
	_, err = Join(ctx, testIdentity(t), gone, JoinRequest{Name: "p2"})
	wantErrText(t, err, "cannot reach the controller at 127.0.0.1:1")
	// The same token works after all of that.
	if _, err := Join(ctx, testIdentity(t), tok2, JoinRequest{Name: "p2"}); err != nil {
		t.Fatal(err)
	}
	// Expired on the controller (its clock moved on).
	tok3 := c.token(t, store.NewJoinToken{ExpiresAt: time.Now().Add(time.Second)})
	time.Sleep(1100 * time.Millisecond)
	_, err = Join(ctx, testIdentity(t), tok3, JoinRequest{Name: "p3"})
	wantErrText(t, err, "this join token expired at")
}

func wantErrText(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
}

// fakePlane records what the client applies.
type fakePlane struct {
	mu      sync.Mutex
	applied []int64
	changed chan struct{}
}

func newPlane() *fakePlane { return &fakePlane{changed: make(chan struct{}, 100)} }

func (p *fakePlane) Apply(_ context.Context, d *plane.Desired) error {
	p.mu.Lock()
	p.applied = append(p.applied, d.Generation)
	p.mu.Unlock()
	p.changed <- struct{}{}
	return nil
}

func (p *fakePlane) last() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.applied) == 0 {
		return 0
	}
	return p.applied[len(p.applied)-1]
}

// waitGen waits until p applied gen.
func (p *fakePlane) waitGen(t *testing.T, gen int64, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for p.last() != gen {
		select {
		case <-p.changed:
		case <-deadline:
			t.Fatalf("generation %d not applied within %s (applied %v)", gen, within, p.applied)
		}
	}
}

// joinedNode joins a node to c and returns its client, not yet running.
func joinedNode(t *testing.T, c *controller, name string, p *fakePlane, revoked func()) (*Client, *store.Store) {
	t.Helper()
	id := testIdentity(t)
	if _, err := Join(context.Background(), id, c.token(t, store.NewJoinToken{}), JoinRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	cache := openStore(t)
	cl, err := NewClient(ClientConfig{ControllerAddr: c.addr, ControllerPin: c.id.Pin(), Identity: id, Cache: cache, Apply: p.Apply,
		Revoked: revoked, ReportEvery: 100 * time.Millisecond, IdleTimeout: 2 * time.Second,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, CacheWait: 500 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cl, cache
}

func run(t *testing.T, cl *Client) (cancel func(), done chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel, done
}

func TestSync(t *testing.T) {
	ctx := context.Background()
	c := newController(t, nil)
	p := newPlane()
	cl, cache := joinedNode(t, c, "p1", p, nil)
	run(t, cl)
	p.waitGen(t, 1, 5*time.Second)

	start := time.Now()
	c.src.set(desired(2))
	p.waitGen(t, 2, 2*time.Second)
	t.Logf("a change reached the node in %s", time.Since(start))

	// It is kept, and reported back.
	if gen, _, _, err := cache.LoadDesired(ctx); err != nil || gen != 2 {
		t.Fatalf("kept generation %d, %v", gen, err)
	}
	waitFor(t, 2*time.Second, "the node's report", func() bool {
		n, err := c.st.NodeByPin(ctx, cl.cfg.Identity.Pin())
		return err == nil && n.AppliedGeneration == 2 && !n.LastSeen.IsZero()
	})
	if l, ok := c.srv.Links()["p1"]; !ok || l.Applied != 2 || l.Sent != 2 {
		t.Errorf("links %+v", c.srv.Links())
	}
	if st := cl.Status(); !st.Connected || st.Generation != 2 || st.FromCache {
		t.Errorf("status %+v", st)
	}

	// A Desired of a format the node does not read is refused, and not kept.
	bad := desired(3)
	bad.Format = plane.Format + 1
	c.src.set(bad)
	waitFor(t, 2*time.Second, "the refusal", func() bool { return strings.Contains(cl.Status().ApplyError, "this node reads format") })
	if p.last() != 2 {
		t.Errorf("applied %d after a bad format", p.last())
	}
	if gen, _, _, _ := cache.LoadDesired(ctx); gen != 2 {
		t.Errorf("kept generation %d after a bad format", gen)
	}
	c.src.set(desired(4))
	p.waitGen(t, 4, 2*time.Second)
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRemovedNode(t *testing.T) {
	ctx := context.Background()
	c := newController(t, nil)
	p := newPlane()
	var revoked sync.WaitGroup
	revoked.Add(1)
	cl, cache := joinedNode(t, c, "p1", p, revoked.Done)
	_, done := run(t, cl)
	p.waitGen(t, 1, 5*time.Second)
	waitFor(t, 2*time.Second, "the link", func() bool { _, ok := c.srv.Links()["p1"]; return ok })

	if _, _, err := c.st.RemoveNode(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.src.poke()
	select {
	case err := <-done:
		if !errors.Is(err, ErrRevoked) {
			t.Fatalf("Run = %v, want ErrRevoked", err)
		}
		done <- err // for the cleanup
	case <-time.After(3 * time.Second):
		t.Fatal("the removed node's Run did not end")
	}
	t.Logf("the removal reached the node in %s", time.Since(start))
	revoked.Wait()
	if _, ok := c.srv.Links()["p1"]; ok {
		t.Error("the removed node still has a link")
	}
	if _, _, _, err := cache.LoadDesired(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the removed node kept its desired state: %v", err)
	}
	if st := cl.Status(); st.Connected || !strings.Contains(st.LastError, "not a member") {
		t.Errorf("status %+v", st)
	}
}

func TestReconnectAndFailStatic(t *testing.T) {
	c := newController(t, nil)
	p := newPlane()
	cl, cache := joinedNode(t, c, "p1", p, nil)
	cancel, done := run(t, cl)
	p.waitGen(t, 1, 5*time.Second)
	c.src.set(desired(2))
	p.waitGen(t, 2, 2*time.Second)

	// Cut: the controller goes away and comes back on the same address.
	addr := c.addr
	c.srv.Close()
	waitFor(t, 3*time.Second, "the node to notice", func() bool { return !cl.Status().Connected })
	if st := cl.Status(); st.Generation != 2 {
		t.Errorf("status while cut off %+v", st)
	}
	c.src.set(desired(3))
	c.start(t, addr, nil)
	p.waitGen(t, 3, 5*time.Second)
	if !cl.Status().Connected {
		t.Error("not connected again")
	}

	// The node restarts while the controller is away: it serves the kept state.
	cancel()
	<-done
	done <- nil
	c.srv.Close()
	p2 := newPlane()
	cl2, err := NewClient(ClientConfig{ControllerAddr: addr, ControllerPin: c.id.Pin(), Identity: cl.cfg.Identity, Cache: cache, Apply: p2.Apply,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, CacheWait: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, cl2)
	p2.waitGen(t, 3, 3*time.Second)
	if st := cl2.Status(); st.Connected || !st.FromCache || st.SavedAt.IsZero() {
		t.Errorf("status from the cache %+v", st)
	}
	// The controller is back: the node takes its state.
	c.src.set(desired(5))
	c.start(t, addr, nil)
	p2.waitGen(t, 5, 5*time.Second)
}

func TestSyncNeedsMembership(t *testing.T) {
	c := newController(t, nil)
	stranger := testIdentity(t)
	cl, err := NewClient(ClientConfig{ControllerAddr: c.addr, ControllerPin: c.id.Pin(), Identity: stranger, Cache: openStore(t),
		Apply: newPlane().Apply, MinBackoff: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Run(ctx); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a node that never joined: Run = %v", err)
	}
	// Plain HTTP/1.1 without a certificate gets no further than TLS.
	hc := &http.Client{Timeout: 2 * time.Second}
	if _, err := hc.Post("https://"+c.addr+"/v1/sync", "", nil); err == nil {
		t.Fatal("a request without a client certificate got through")
	}
}

// TestReportNow: a node reports at once when asked (a peer handshook there), not at the
// next ReportEvery, and the controller hears the whole report; a change of where peers are
// within one generation reaches the node.
func TestReportNow(t *testing.T) {
	c := newController(t, nil)
	p := newPlane()
	cl, _ := joinedNode(t, c, "p1", p, nil)
	var mu sync.Mutex
	handshake := time.Time{}
	cl.cfg.ReportEvery = time.Hour
	cl.cfg.Report = func() plane.Report {
		mu.Lock()
		defer mu.Unlock()
		r := plane.Report{Format: plane.Format, Links: []plane.LinkState{{Node: 1, State: plane.LinkUp, RTT: time.Millisecond}}}
		if !handshake.IsZero() {
			r.Peers = []plane.PeerState{{PublicKey: store.Key{1}, LastHandshake: handshake}}
		}
		return r
	}
	run(t, cl)
	p.waitGen(t, 1, 5*time.Second)
	waitFor(t, 2*time.Second, "the first report", func() bool { return len(c.src.reported()) > 0 })

	mu.Lock()
	handshake = time.Now()
	mu.Unlock()
	start := time.Now()
	cl.ReportNow()
	waitFor(t, time.Second, "the report after a handshake", func() bool {
		rs := c.src.reported()
		last := rs[len(rs)-1]
		return len(last.Peers) == 1 && last.Peers[0].LastHandshake.Equal(handshake)
	})
	t.Logf("the handshake reached the controller in %s", time.Since(start))
	// The links are kept for the node list.
	waitFor(t, 2*time.Second, "the links in the kept report", func() bool {
		n, err := c.st.NodeByPin(context.Background(), cl.cfg.Identity.Pin())
		return err == nil && strings.Contains(n.LastReport, `"links":[{"node":1,"state":"up","rtt_ns":1000000}]`)
	})

	d := desired(1)
	d.PeerNodesVersion = 1
	c.src.set(d)
	waitFor(t, 2*time.Second, "where peers are, in the same generation", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.applied) >= 2
	})
}

// TestBackboneReported checks that a node that joined without a backbone endpoint gets one
// recorded from its reports (it restarted with --backbone-endpoint), that a bad one is refused
// without harm, and that a moved node's new endpoint replaces the old.
func TestBackboneReported(t *testing.T) {
	ctx := context.Background()
	c := newController(t, nil)
	p := newPlane()
	cl, _ := joinedNode(t, c, "p1", p, nil)
	pin := cl.cfg.Identity.Pin()
	if n, err := c.st.NodeByPin(ctx, pin); err != nil || n.BackboneEndpoint != "" {
		t.Fatalf("joined with backbone %q, %v", n.BackboneEndpoint, err)
	}
	key := store.Key{1, 2, 3}
	for _, tc := range []struct{ endpoint, want string }{
		{"192.0.2.7:51821", "192.0.2.7:51821"},
		{"not an endpoint", "192.0.2.7:51821"}, // refused: the one before stays
		{"[2001:db8::7]:51822", "[2001:db8::7]:51822"},
	} {
		cl.cfg.Backbone = &Backbone{Endpoint: tc.endpoint, PublicKey: key}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- cl.Run(runCtx) }()
		since := time.Now()
		var n store.Node
		waitFor(t, 5*time.Second, "a report after "+tc.endpoint, func() bool {
			var err error
			n, err = c.st.NodeByPin(ctx, pin)
			return err == nil && n.LastSeen.After(since.Add(100*time.Millisecond))
		})
		cancel()
		<-done
		if n.BackboneEndpoint != tc.want || n.BackbonePublicKey != key {
			t.Errorf("the node reported %s: the controller has %s, %v; want %s", tc.endpoint, n.BackboneEndpoint, n.BackbonePublicKey, tc.want)
		}
	}
	entries, _, err := c.st.ListAudit(ctx, store.AuditQuery{Action: "node.backbone"})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("%d node.backbone audit entries, want 2: %+v", len(entries), entries)
	}
}

// TestClockOff: a node whose clock is an hour ahead (it joined while right) keeps syncing,
// and reckons the controller's time from the frames: ControllerTime is the controller's,
// which the node judges peers' expiry by, and the controller sees the offset in its reports.
func TestClockOff(t *testing.T) {
	ctx := context.Background()
	c := newController(t, nil)
	p := newPlane()
	cl, _ := joinedNode(t, c, "p1", p, nil)
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	cl.cfg.Now = ahead
	if got := cl.ControllerTime(); got.Sub(ahead()).Abs() > time.Second {
		t.Errorf("before any frame, ControllerTime is %v, want the node's own clock", got)
	}
	run(t, cl)
	p.waitGen(t, 1, 5*time.Second)
	c.src.set(desired(2))
	p.waitGen(t, 2, 5*time.Second)
	if off, ok := cl.ClockOffset(); !ok || (off+time.Hour).Abs() > time.Second {
		t.Errorf("clock offset %v (%v), want about -1h", off, ok)
	}
	if got := cl.ControllerTime(); time.Since(got).Abs() > time.Second {
		t.Errorf("ControllerTime is %v off the controller's clock", time.Since(got))
	}
	waitFor(t, 5*time.Second, "a report showing the offset", func() bool {
		n, err := c.st.NodeByPin(ctx, cl.cfg.Identity.Pin())
		if err != nil {
			return false
		}
		var rep struct {
			ClockOffset string `json:"clock_offset"`
		}
		json.Unmarshal([]byte(n.LastReport), &rep)
		off, err := time.ParseDuration(rep.ClockOffset)
		return err == nil && (off-time.Hour).Abs() < 5*time.Second
	})
}

// TestEvents: a node's events reach the controller each once: those queued before the
// stream came up, more than one report carries, those of a stream cut before the
// controller took them (it restarts), and those of the node's next process, numbered from 1
// again; a node that was away long keeps the newest MaxPendingEvents and counts the others.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	c := newController(t, nil)
	p := newPlane()
	cl, _ := joinedNode(t, c, "p1", p, nil)
	ev := func(i int) plane.Event {
		return plane.Event{At: time.Now(), Kind: plane.EventLinkDown, Subject: "link:p1/x1", Message: fmt.Sprint(i)}
	}
	recorded := func() []string {
		es, _, err := c.st.ListEvents(ctx, store.EventQuery{Limit: store.MaxEventPage})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(es))
		for i, e := range es {
			out[len(es)-1-i] = e.Message // oldest first
		}
		return out
	}
	want := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprint(i))
		}
		return out
	}
	waitEvents := func(what string, n int) {
		t.Helper()
		waitFor(t, 10*time.Second, what, func() bool { return len(recorded()) >= n })
		if got := recorded(); !slices.Equal(got, want(0, n)) {
			t.Fatalf("%s: recorded %q, want 0…%d once each, in order", what, got, n-1)
		}
	}
	for i := range 150 { // before the stream: two reports' worth
		cl.Event(ev(i))
	}
	cancel, done := run(t, cl)
	p.waitGen(t, 1, 5*time.Second)
	waitEvents("the events queued before the stream", 150)
	if es, _, _ := c.st.ListEvents(ctx, store.EventQuery{Limit: 1}); es[0].Node != "p1" {
		t.Errorf("recorded as node %q, want p1 (the stream's, not the node's word)", es[0].Node)
	}

	// The controller goes away: what the node queues meanwhile comes when it is back.
	addr := c.addr
	c.srv.Close()
	waitFor(t, 3*time.Second, "the node to notice", func() bool { return !cl.Status().Connected })
	for i := 150; i < 160; i++ {
		cl.Event(ev(i))
	}
	c.start(t, addr, nil)
	waitEvents("the events of the time away", 160)

	// The node restarts: a new process numbers from 1, and is not taken for a resend.
	cancel()
	<-done
	done <- nil
	cl2, _ := NewClient(cl.cfg, nil)
	for i := 160; i < 165; i++ {
		cl2.Event(ev(i))
	}
	run(t, cl2)
	waitEvents("the restarted node's events", 165)

	// Away long: the newest MaxPendingEvents are kept.
	lone, _ := NewClient(cl.cfg, nil)
	for i := range MaxPendingEvents + 5 {
		lone.Event(ev(i))
	}
	if got := lone.eventsAfter(0); lone.EventsDropped() != 5 || len(got) != plane.MaxReportEvents || got[0].Seq != 6 {
		t.Errorf("dropped %d; the first to send is #%d of %d", lone.EventsDropped(), got[0].Seq, len(got))
	}
}

// fakeLog is a node's query log: queries numbered from 1, all kept.
type fakeLog struct {
	mu     sync.Mutex
	tenant int64
	qs     []plane.DNSQuery
}

func (l *fakeLog) add(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.qs = append(l.qs, plane.DNSQuery{Seq: uint64(len(l.qs) + 1), At: time.Now(), Tenant: l.tenant, Peer: "laptop",
		Client: netip.MustParseAddr("100.64.0.2"), Name: name, Type: "A", Outcome: plane.DNSOutcomeForwarded, Rcode: "NOERROR"})
}

func (l *fakeLog) after(seq uint64) []plane.DNSQuery {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq >= uint64(len(l.qs)) {
		return nil
	}
	return slices.Clone(l.qs[seq:min(len(l.qs), int(seq)+plane.MaxReportDNSLog)])
}

// TestDNSLog: the queries a node logs reach the controller's store once each, in reports of at
// most MaxReportDNSLog: those logged before the stream, while the controller was away, and
// after the node restarted (numbered from 1 again).
func TestDNSLog(t *testing.T) {
	ctx := context.Background()
	c := newController(t, nil)
	acme, err := c.st.AddTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.st.EnableDNSLog(ctx, "acme", 0); err != nil {
		t.Fatal(err)
	}
	p := newPlane()
	cl, _ := joinedNode(t, c, "p1", p, nil)
	fl := &fakeLog{tenant: acme.ID}
	cl.cfg.DNSLog = fl.after
	recorded := func() map[string]int {
		es, _, err := c.st.DNSLog(ctx, store.DNSLogQuery{Tenant: "acme", Limit: store.MaxDNSLogPage})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, e := range es {
			out[e.Name]++
			if e.Node != "p1" || e.Peer != "laptop" {
				t.Fatalf("recorded %+v", e)
			}
		}
		return out
	}
	waitLog := func(what string, names []string) {
		t.Helper()
		waitFor(t, 10*time.Second, what, func() bool { return len(recorded()) >= len(names) })
		got := recorded()
		for _, n := range names {
			if got[n] != 1 {
				t.Fatalf("%s: %s recorded %d times, want once (%d recorded)", what, n, got[n], len(got))
			}
		}
		if len(got) != len(names) {
			t.Fatalf("%s: %d recorded, want %d", what, len(got), len(names))
		}
	}
	var names []string
	for i := range 1500 { // before the stream: two reports' worth
		names = append(names, fmt.Sprintf("q%d.example.com", i))
		fl.add(names[i])
	}
	cancel, done := run(t, cl)
	p.waitGen(t, 1, 5*time.Second)
	waitLog("the queries logged before the stream", names)

	// The controller goes away: what the node logs meanwhile comes when it is back.
	addr := c.addr
	c.srv.Close()
	waitFor(t, 3*time.Second, "the node to notice", func() bool { return !cl.Status().Connected })
	for i := range 10 {
		names = append(names, fmt.Sprintf("away%d.example.com", i))
		fl.add(names[len(names)-1])
	}
	c.start(t, addr, nil)
	waitLog("the queries of the time away", names)

	// The node restarts: a new process numbers from 1, and is not taken for a resend.
	cancel()
	<-done
	done <- nil
	cl2, _ := NewClient(cl.cfg, nil)
	fl2 := &fakeLog{tenant: acme.ID}
	cl2.cfg.DNSLog = fl2.after
	for i := range 5 {
		names = append(names, fmt.Sprintf("restarted%d.example.com", i))
		fl2.add(names[len(names)-1])
	}
	run(t, cl2)
	waitLog("the restarted node's queries", names)
}
