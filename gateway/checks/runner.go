// Package checks runs a node's checks (plane.Check): DNS names resolved through the node's
// upstream resolvers, URLs fetched, and other regions' public endpoints asked for a WireGuard
// handshake; it keeps what they found a minute at a time for the node's report.
package checks

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// Defaults of Config.
const (
	// DefaultMaxRunning bounds the checks running at once: a node's checks are few and each
	// waits on the network, not on the CPU.
	DefaultMaxRunning = 8
	// DefaultTimeout bounds one run; a check that runs more often gets half its interval.
	DefaultTimeout = 10 * time.Second
	// keepMinutes is how many minutes of results each check keeps for the reports: the
	// current one and four before it, so that a report lost while the controller was away
	// for a few minutes costs nothing.
	keepMinutes = 5
	// maxSamples bounds the latencies a minute keeps (a check runs at most once a second).
	maxSamples = 64
	// maxText bounds an error or a detail.
	maxText = 300
)

// Config configures a Runner; New calls Validate.
type Config struct {
	// DNSUpstreams are the resolvers DNS checks ask, in order: the node's (gateway.Config's).
	// Empty: DNS checks fail, saying so.
	DNSUpstreams []netip.AddrPort
	// HandshakeKey is the private key handshake checks initiate with: the node's backbone
	// key, which the other nodes know (plane.Node.BackboneKey) and answer. Zero: handshake
	// checks fail, saying so.
	HandshakeKey store.Key
	// MaxRunning bounds the checks running at once. Default DefaultMaxRunning.
	MaxRunning int
	// Timeout bounds one run. Default DefaultTimeout.
	Timeout time.Duration
	// Now is the clock results are reported in (the node's expiry clock: the controller's,
	// as a joined node reckons it). Default time.Now.
	Now func() time.Time
	// FirstWithin spreads the first runs of new checks over this long, at random, so that a
	// node given many checks does not start them all at once. Default 5 s.
	FirstWithin time.Duration
}

// Validate fills defaults and rejects bad values.
func (c *Config) Validate() error {
	if c.MaxRunning == 0 {
		c.MaxRunning = DefaultMaxRunning
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.FirstWithin == 0 {
		c.FirstWithin = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxRunning < 1 || c.Timeout < 0 || c.FirstWithin < 0 {
		return errors.New("checks: Config.MaxRunning must be positive, Timeout and FirstWithin not negative")
	}
	return nil
}

// Runner runs checks on their intervals, each run bounded by a timeout and at most
// MaxRunning at once, on goroutines of its own: nothing it does waits on the node's packet
// path, nor the packet path on it. Set gives it its checks; Results reads what they found.
// Safe for concurrent use.
type Runner struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// checks are the checks set, by ID; each keeps its schedule and its recent minutes.
	checks map[int64]*entry

	wake    chan struct{} // capacity 1: Set changed the checks, or a run ended
	slots   chan struct{} // capacity MaxRunning: a run holds one
	prober  prober
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	closed  bool
}

// entry is one check and what it found. Guarded by Runner.mu.
type entry struct {
	check   plane.Check
	next    time.Time // the next run's time (the runner's monotonic clock)
	running bool
	minutes []minute // newest last, at most keepMinutes
}

// minute is what one check's runs that started in one minute found.
type minute struct {
	start       time.Time // in Config.Now's clock
	ok, failed  int
	latencies   []time.Duration // of the runs that passed, at most maxSamples
	err, detail string
}

// New returns a runner for cfg. Start starts it.
func New(cfg Config, log *slog.Logger) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, log: log, checks: map[int64]*entry{}, wake: make(chan struct{}, 1), slots: make(chan struct{}, cfg.MaxRunning)}
	r.prober = newProber(cfg)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Start starts running the checks set, until Close.
func (r *Runner) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return
	}
	r.started = true
	r.wg.Add(1)
	go r.loop()
}

// Close stops the runner: runs under way are cancelled, and Close waits for them. Idempotent.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// Set makes cs the checks the runner runs. A check that stays (by ID) keeps its schedule and
// its results, with its new settings from its next run; a new one first runs within
// Config.FirstWithin; a check gone is forgotten with its results.
func (r *Runner) Set(cs []plane.Check) {
	now := time.Now()
	r.mu.Lock()
	keep := make(map[int64]bool, len(cs))
	for _, c := range cs {
		keep[c.ID] = true
		e := r.checks[c.ID]
		if e == nil {
			e = &entry{next: now.Add(randDuration(r.cfg.FirstWithin))}
			r.checks[c.ID] = e
		} else if c.Every < e.check.Every {
			e.next = minTime(e.next, now.Add(randDuration(c.Interval())))
		}
		e.check = c
	}
	for id := range r.checks {
		if !keep[id] {
			delete(r.checks, id)
		}
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// loop starts each check's runs when they are due, while a slot is free.
func (r *Runner) loop() {
	defer r.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := r.startDue(time.Now())
		t.Reset(wait)
		select {
		case <-r.ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
		}
	}
}

// startDue starts the runs due at now for which a slot is free and returns how long until
// the next is due. A run due while every slot is taken starts when one frees.
func (r *Runner) startDue(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	wait := time.Hour
	for _, e := range r.checks {
		if e.running {
			continue
		}
		if d := e.next.Sub(now); d > 0 {
			wait = min(wait, d)
			continue
		}
		select {
		case r.slots <- struct{}{}:
		default:
			continue // every slot is taken: the end of a run wakes the loop
		}
		e.running = true
		// The next run is an interval after this one was due, jittered by up to 5 %, so that
		// checks set at once drift apart; one that fell behind starts afresh from now.
		iv := e.check.Interval()
		next := e.next.Add(iv + randDuration(iv/10) - iv/20)
		if next.Before(now) {
			next = now.Add(iv)
		}
		e.next = next
		c := e.check
		r.wg.Add(1)
		go r.run(c)
	}
	return max(wait, time.Millisecond)
}

// run runs check c once and records what it found.
func (r *Runner) run(c plane.Check) {
	defer r.wg.Done()
	timeout := r.cfg.Timeout
	if half := c.Interval() / 2; half < timeout {
		timeout = max(half, 500*time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	start := r.cfg.Now()
	o := r.prober.probe(ctx, &c)
	cancel()
	<-r.slots
	if r.ctx.Err() != nil {
		return // closing: a cancelled run is no failure of the check
	}
	r.mu.Lock()
	if e := r.checks[c.ID]; e != nil {
		e.running = false
		e.record(start, o)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// outcome is what one run found.
type outcome struct {
	ok      bool
	latency time.Duration // of a run that passed: the answer's time
	err     string        // why it failed
	detail  string        // what it got: addresses, a status
}

// record adds o, of a run that started at start, to its minute.
func (e *entry) record(start time.Time, o outcome) {
	m := start.Truncate(time.Minute)
	var cur *minute
	if n := len(e.minutes); n > 0 && e.minutes[n-1].start.Equal(m) {
		cur = &e.minutes[n-1]
	} else {
		e.minutes = append(e.minutes, minute{start: m})
		if len(e.minutes) > keepMinutes {
			e.minutes = slices.Delete(e.minutes, 0, len(e.minutes)-keepMinutes)
		}
		cur = &e.minutes[len(e.minutes)-1]
	}
	cur.detail = clip(o.detail)
	if o.ok {
		cur.ok++
		if len(cur.latencies) < maxSamples {
			cur.latencies = append(cur.latencies, o.latency)
		}
	} else {
		cur.failed++
		cur.err = clip(o.err)
	}
}

// Results returns what the checks found in their recent minutes, newest minute first, at
// most plane.MaxCheckResults. A minute is there again at each call while it is kept, with
// what it has found by then.
func (r *Runner) Results() []plane.CheckResult {
	r.mu.Lock()
	var out []plane.CheckResult
	for id, e := range r.checks {
		for i := range e.minutes {
			m := &e.minutes[i]
			res := plane.CheckResult{Check: id, Minute: m.start, OK: m.ok, Failed: m.failed, Error: m.err, Detail: m.detail}
			if len(m.latencies) > 0 {
				ls := slices.Clone(m.latencies)
				slices.Sort(ls)
				res.LatencyP50, res.LatencyMax = ls[(len(ls)-1)/2], ls[len(ls)-1]
			}
			out = append(out, res)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(out, plane.CompareCheckResults)
	if len(out) > plane.MaxCheckResults {
		out = out[:plane.MaxCheckResults]
	}
	return out
}

// prober runs one check: the kinds' implementations behind one call, so that tests can
// count what runs.
type prober interface {
	probe(ctx context.Context, c *plane.Check) outcome
}

// clip bounds a text for a result.
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	i := maxText - len("…")
	for i > 0 && s[i]&0xc0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}

func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
