package checks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/popgate/popgate/gateway/checks/checkstest"
	"github.com/popgate/popgate/gateway/plane"
)

// newTestRunner starts a runner that starts new checks at once, closed when the test ends,
// and checks that it leaves no goroutine behind.
func newTestRunner(t *testing.T, cfg Config) *Runner {
	t.Helper()
	before := runtime.NumGoroutine()
	cfg.FirstWithin = time.Millisecond
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(func() {
		r.Close()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			t.Errorf("%d goroutines after Close, %d before", n, before)
		}
	})
	return r
}

// waitResult waits until the runner has found at least runs runs of check id, and returns
// its newest minute. It fails the test after 20 s.
func waitResult(t *testing.T, r *Runner, id int64, runs int) plane.CheckResult {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got plane.CheckResult
		total := 0
		for _, res := range r.Results() {
			if res.Check == id {
				if total == 0 {
					got = res
				}
				total += res.OK + res.Failed
			}
		}
		if total >= runs {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("check %d: %d runs after 20 s, want %d", id, total, runs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDNSChecks(t *testing.T) {
	good := checkstest.StartDNS(t, map[string][]netip.Addr{"www.example.com": {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")}}, checkstest.Options{})
	failing := checkstest.StartDNS(t, nil, checkstest.Options{RCode: dnsmessage.RCodeServerFailure})
	dead := checkstest.StartDNS(t, nil, checkstest.Options{Silent: true})

	r := newTestRunner(t, Config{DNSUpstreams: []netip.AddrPort{failing.Addr(), dead.Addr(), good.Addr()}, Timeout: 3 * time.Second})
	r.Set([]plane.Check{
		{ID: 1, Kind: plane.CheckDNS, Target: "www.example.com", Every: 1},
		{ID: 2, Kind: plane.CheckDNS, Target: "www.example.com", Expect: "192.0.2.10", Every: 1},
		{ID: 3, Kind: plane.CheckDNS, Target: "www.example.com", Expect: "192.0.2.99", Every: 1},
		{ID: 4, Kind: plane.CheckDNS, Target: "nope.example.com", Every: 1},
	})
	// One upstream refuses, one does not answer: the third answers in the time left.
	res := waitResult(t, r, 1, 1)
	if res.OK < 1 || res.Failed != 0 || res.Detail != "192.0.2.10, 2001:db8::10 via "+good.Addr().String() || res.LatencyP50 <= 0 {
		t.Fatalf("check 1: %+v", res)
	}
	t.Logf("DNS answer of the third upstream (after one refused and one did not answer) in %s", res.LatencyP50)
	if res := waitResult(t, r, 2, 1); res.OK < 1 || res.Failed != 0 {
		t.Fatalf("check 2 expects an address the answer holds: %+v", res)
	}
	if res := waitResult(t, r, 3, 1); res.Failed < 1 || res.OK != 0 || res.Error != "the answer does not hold 192.0.2.99" {
		t.Fatalf("check 3 expects an address the answer lacks: %+v", res)
	}
	if res := waitResult(t, r, 4, 1); res.Failed < 1 || res.OK != 0 || !strings.Contains(res.Error, "NXDOMAIN") {
		t.Fatalf("check 4 of an unknown name: %+v", res)
	}

	none := newTestRunner(t, Config{})
	none.Set([]plane.Check{{ID: 1, Kind: plane.CheckDNS, Target: "www.example.com", Every: 1}})
	if res := waitResult(t, none, 1, 1); !strings.Contains(res.Error, "--dns-upstream") {
		t.Fatalf("without upstreams: %+v", res)
	}
}

func TestHTTPChecks(t *testing.T) {
	var slow atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("fine"))
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/slow":
			if slow.Load() {
				time.Sleep(3 * time.Second)
			}
		default:
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	r := newTestRunner(t, Config{Timeout: time.Second})
	slow.Store(true)
	r.Set([]plane.Check{
		{ID: 1, Kind: plane.CheckHTTP, Target: srv.URL + "/ok", Every: 1},
		{ID: 2, Kind: plane.CheckHTTP, Target: srv.URL + "/down", Every: 1},
		{ID: 3, Kind: plane.CheckHTTP, Target: srv.URL + "/moved", Expect: "302", Every: 1},
		{ID: 4, Kind: plane.CheckHTTP, Target: srv.URL + "/slow", Every: 1},
		// A tenant's check reaches only public addresses, whatever its URL says.
		{ID: 5, Tenant: 7, Kind: plane.CheckHTTP, Target: srv.URL + "/ok", Every: 1},
	})
	if res := waitResult(t, r, 1, 2); res.Failed != 0 || res.Detail != "200 OK" || res.LatencyP50 <= 0 || res.LatencyMax < res.LatencyP50 {
		t.Fatalf("check 1: %+v", res)
	} else {
		t.Logf("time to first byte on loopback: p50 %s, max %s", res.LatencyP50, res.LatencyMax)
	}
	if res := waitResult(t, r, 2, 1); res.OK != 0 || res.Error != "status 503, expected 200" || res.Detail != "503 Service Unavailable" {
		t.Fatalf("check 2: %+v", res)
	}
	if res := waitResult(t, r, 3, 1); res.OK < 1 || res.Failed != 0 || res.Detail != "302 Found" {
		t.Fatalf("check 3 (a redirect is not followed): %+v", res)
	}
	if res := waitResult(t, r, 4, 1); res.Failed < 1 || res.OK != 0 || res.Error != "no answer in time" {
		t.Fatalf("check 4 (slower than its timeout): %+v", res)
	}
	if res := waitResult(t, r, 5, 1); res.Failed < 1 || res.OK != 0 || !strings.Contains(res.Error, "127.0.0.1") || !strings.Contains(res.Error, "not a public address") {
		t.Fatalf("check 5 (a tenant's, to loopback): %+v", res)
	}
	slow.Store(false)
	// Removing a check forgets it.
	r.Set([]plane.Check{{ID: 1, Kind: plane.CheckHTTP, Target: srv.URL + "/ok", Every: 1}})
	for _, res := range r.Results() {
		if res.Check != 1 {
			t.Fatalf("a removed check is still reported: %+v", res)
		}
	}
}

// countingProber passes every run after a pause, counting the runs under way.
type countingProber struct {
	pause            time.Duration
	mu               sync.Mutex
	running, most, n int
}

func (p *countingProber) probe(ctx context.Context, c *plane.Check) outcome {
	p.mu.Lock()
	p.running++
	p.n++
	p.most = max(p.most, p.running)
	pause := p.pause
	p.mu.Unlock()
	select {
	case <-time.After(pause):
	case <-ctx.Done():
	}
	p.mu.Lock()
	p.running--
	p.mu.Unlock()
	return outcome{ok: true, latency: pause}
}

// TestRunnerBounds: no more than MaxRunning checks run at once, however many are due; a
// report carries at most plane.MaxCheckResults results, the newest first.
func TestRunnerBounds(t *testing.T) {
	cfg := Config{MaxRunning: 3, FirstWithin: time.Millisecond}
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProber{pause: 50 * time.Millisecond}
	r.prober = p
	r.Start()
	defer r.Close()
	var cs []plane.Check
	for i := range 40 {
		cs = append(cs, plane.Check{ID: int64(i + 1), Kind: plane.CheckDNS, Target: "x.example", Every: 1})
	}
	r.Set(cs)
	for _, c := range cs {
		waitResult(t, r, c.ID, 1)
	}
	p.mu.Lock()
	most, n := p.most, p.n
	p.mu.Unlock()
	if most > 3 || most < 2 {
		t.Fatalf("%d checks ran at once, want at most 3 (and more than 1)", most)
	}
	t.Logf("%d runs, at most %d at once", n, most)

	// Many checks: the report is bounded.
	p.mu.Lock()
	p.pause = 0
	p.mu.Unlock()
	cs = nil
	for i := range plane.MaxCheckResults + 50 {
		cs = append(cs, plane.Check{ID: int64(i + 1), Kind: plane.CheckDNS, Target: "x.example", Every: 60})
	}
	r.Set(cs)
	deadline := time.Now().Add(20 * time.Second)
	for len(r.Results()) < plane.MaxCheckResults && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := len(r.Results()); got != plane.MaxCheckResults {
		t.Fatalf("%d results in a report, want %d", got, plane.MaxCheckResults)
	}
}

// TestRecordMinutes: runs count in the minute they started; a check keeps keepMinutes
// minutes; the median and the longest latency are of the runs that passed.
func TestRecordMinutes(t *testing.T) {
	var e entry
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	e.record(t0.Add(5*time.Second), outcome{ok: true, latency: 9 * ms})
	e.record(t0.Add(15*time.Second), outcome{ok: true, latency: 3 * ms})
	e.record(t0.Add(25*time.Second), outcome{ok: true, latency: 5 * ms})
	e.record(t0.Add(35*time.Second), outcome{err: "refused", detail: "x"})
	for i := 1; i <= keepMinutes; i++ {
		e.record(t0.Add(time.Duration(i)*time.Minute), outcome{ok: true, latency: ms})
	}
	if len(e.minutes) != keepMinutes || !e.minutes[0].start.Equal(t0.Add(time.Minute)) {
		t.Fatalf("minutes kept: %d, oldest %v", len(e.minutes), e.minutes[0].start)
	}
	var e2 entry
	e2.record(t0.Add(5*time.Second), outcome{ok: true, latency: 9 * ms})
	e2.record(t0.Add(15*time.Second), outcome{ok: true, latency: 3 * ms})
	e2.record(t0.Add(25*time.Second), outcome{ok: true, latency: 5 * ms})
	e2.record(t0.Add(35*time.Second), outcome{err: "refused", detail: "x"})
	r := &Runner{checks: map[int64]*entry{7: &e2}}
	res := r.Results()
	if len(res) != 1 || res[0].OK != 3 || res[0].Failed != 1 || res[0].LatencyP50 != 5*ms || res[0].LatencyMax != 9*ms || res[0].Error != "refused" || !res[0].Minute.Equal(t0) {
		t.Fatalf("Results: %+v", res)
	}
}

// TestHTTPChecksResolveUpstream: an HTTP check resolves its URL's name through the node's
// upstream resolvers, as a DNS check does.
func TestHTTPChecksResolveUpstream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	dns := checkstest.StartDNS(t, map[string][]netip.Addr{"web.test.example": {netip.MustParseAddr("127.0.0.1")}}, checkstest.Options{})
	r := newTestRunner(t, Config{DNSUpstreams: []netip.AddrPort{dns.Addr()}, Timeout: 3 * time.Second})
	r.Set([]plane.Check{
		{ID: 1, Kind: plane.CheckHTTP, Target: "http://web.test.example:" + port + "/", Every: 1},
		{ID: 2, Kind: plane.CheckHTTP, Target: "http://nowhere.test.example:" + port + "/", Every: 1},
	})
	if res := waitResult(t, r, 1, 1); res.OK < 1 || res.Detail != "200 OK" {
		t.Errorf("check 1: %+v", res)
	}
	if res := waitResult(t, r, 2, 1); res.OK != 0 || !strings.Contains(res.Error, "no such host") {
		t.Errorf("check 2: %+v", res)
	}
	if dns.Queries() == 0 {
		t.Error("the upstream was not asked")
	}
}
