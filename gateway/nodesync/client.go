package nodesync

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// Cache keeps the last desired state a node applied, in its own database. *store.Store is
// one.
type Cache interface {
	SaveDesired(ctx context.Context, gen int64, body []byte) error
	// LoadDesired returns an error wrapping store.ErrNotFound when nothing is kept.
	LoadDesired(ctx context.Context) (gen int64, body []byte, savedAt time.Time, err error)
	ClearDesired(ctx context.Context) error
}

var _ Cache = (*store.Store)(nil)

// BlobStore keeps the blocklist contents a node serves in its own database, so that it
// blocks with its controller away. *store.Store is one.
type BlobStore interface {
	// Blob returns the content whose SHA-256 is sum; an error wrapping store.ErrNotFound
	// when none is kept.
	Blob(ctx context.Context, sum [32]byte) ([]byte, error)
	SaveBlob(ctx context.Context, sum [32]byte, body []byte, names int) error
	// KeepBlobs drops the contents not among keep.
	KeepBlobs(ctx context.Context, keep [][32]byte) error
}

var _ BlobStore = (*store.Store)(nil)

// MaxBlobSize bounds a blob the node takes from its controller: a blocklist's canonical
// content, no larger than its source.
const MaxBlobSize = store.MaxBlocklistSize

// ErrRevoked is returned by Run when the controller says the node is no longer a member.
var ErrRevoked = errors.New("this node was removed from the controller")

// ClientConfig configures a Client; NewClient calls Validate.
type ClientConfig struct {
	// ControllerAddr (host:port) and ControllerPin say where the controller is and how to
	// recognise it. Required.
	ControllerAddr string
	ControllerPin  Pin
	// Identity is the node's. Required.
	Identity *Identity
	// Cache keeps the last desired state. Required.
	Cache Cache
	// Blobs keeps the blocklist contents the node fetched (Blob), and drops those the
	// desired state it keeps no longer names. Default nil: each Blob fetches again and
	// keeps nothing.
	Blobs BlobStore
	// Apply makes the data plane match d. Required. Calls are serialised.
	Apply func(ctx context.Context, d *plane.Desired) error
	// Report returns the node's report. Default: an empty one.
	Report func() plane.Report
	// Backbone is the node's backbone as configured now, sent with every report: the
	// controller records a change. Default: none sent (the controller keeps what the node
	// joined with).
	Backbone *Backbone
	// Revoked is called when the controller revoked the node, after the cache is cleared:
	// the node must serve nothing. Optional.
	Revoked func()
	// CacheWait is how long Run waits for the controller's first desired state before it
	// applies the kept one. Default 2 s.
	CacheWait time.Duration
	// DNSLog returns the queries the node logged (its tenants' query logs) numbered after
	// seq, oldest first, at most plane.MaxReportDNSLog, for its reports. Default: none.
	DNSLog func(seq uint64) []plane.DNSQuery
	// ReportEvery is how often the node reports. Default 5 s.
	ReportEvery time.Duration
	// IdleTimeout ends a stream that carried nothing (the controller pings every 10 s).
	// Default 30 s.
	IdleTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between connection attempts, doubling from
	// the one to the other, jittered. Default 1 s and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate fills defaults and rejects what is missing.
func (c *ClientConfig) Validate() error {
	if c.ControllerAddr == "" || c.Identity == nil || c.Cache == nil || c.Apply == nil {
		return errors.New("nodesync: ClientConfig needs ControllerAddr, Identity, Cache and Apply")
	}
	if c.Report == nil {
		c.Report = func() plane.Report { return plane.Report{Format: plane.Format} }
	}
	if c.CacheWait == 0 {
		c.CacheWait = 2 * time.Second
	}
	if c.ReportEvery == 0 {
		c.ReportEvery = 5 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Status is how a node's sync stands.
type Status struct {
	Controller string
	// Connected: a stream is up. Since is when it came up, or (not connected) since when
	// the node is without its controller.
	Connected bool
	Since     time.Time
	// Generation is that of the desired state applied last, 0 before the first;
	// FromCache says it came from the node's own database, saved at SavedAt.
	Generation int64
	FromCache  bool
	SavedAt    time.Time
	// LastError says why the last connection failed or ended.
	LastError string
	// ApplyError says why the last desired state was not applied.
	ApplyError string
}

// Client is a node's end of the sync.
type Client struct {
	cfg ClientConfig
	log *slog.Logger
	hc  *http.Client

	// applyMu serialises Apply calls and guards applied and fromCache.
	applyMu   sync.Mutex
	applied   int64
	anyApply  bool
	applyErr  string
	failedGen int64
	// kept are the blobs the kept desired state names, once Blobs dropped the others;
	// guarded by applyMu.
	kept [][32]byte

	mu     sync.Mutex
	status Status // guarded by mu

	// reportNow asks the stream's reporter for a report now (after an apply, ReportNow).
	reportNow chan struct{}

	// offset is the controller's clock less this node's (nanoseconds), from the time in the
	// latest frame; offsetKnown says a frame came.
	offset      atomic.Int64
	offsetKnown atomic.Bool

	// boot tells this process from the node's earlier ones, for the numbering of events.
	boot int64
	// evMu guards the events the controller may not have yet (the newest MaxPendingEvents),
	// their numbering and the count of those dropped.
	evMu      sync.Mutex
	evs       []plane.Event
	evSeq     uint64
	evDropped uint64
}

// MaxPendingEvents is how many events a node keeps for its controller: while it is away (or
// slow to take them), the oldest beyond it are dropped, and counted (EventsDropped).
const MaxPendingEvents = 1000

// Event queues e (plane.Event) for the controller, numbered, and asks for a report
// (ReportNow): an alert waits for no report period. It never blocks: the data plane calls it.
func (c *Client) Event(e plane.Event) {
	c.evMu.Lock()
	c.evSeq++
	e.Seq = c.evSeq
	if len(c.evs) == MaxPendingEvents {
		c.evs = append(c.evs[:0], c.evs[1:]...)
		c.evDropped++
	}
	c.evs = append(c.evs, e)
	c.evMu.Unlock()
	c.ReportNow()
}

// EventsDropped is how many events were dropped before the controller had them.
func (c *Client) EventsDropped() uint64 {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	return c.evDropped
}

// eventsAfter returns the oldest events numbered after seq, at most plane.MaxReportEvents.
func (c *Client) eventsAfter(seq uint64) []plane.Event {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	i, _ := slices.BinarySearchFunc(c.evs, seq+1, func(e plane.Event, s uint64) int { return cmp.Compare(e.Seq, s) })
	out := c.evs[i:min(len(c.evs), i+plane.MaxReportEvents)]
	if len(out) == 0 {
		return nil
	}
	return slices.Clone(out)
}

// eventCursor is, on one stream, the newest event the controller has: from the stream's
// first frame, then moved by each report that carried events.
type eventCursor struct {
	mu    sync.Mutex
	known bool
	seq   uint64
}

func (ec *eventCursor) get() (uint64, bool) {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	return ec.seq, ec.known
}

func (ec *eventCursor) set(seq uint64) {
	ec.mu.Lock()
	ec.seq, ec.known = seq, true
	ec.mu.Unlock()
}

// ControllerTime is the controller's clock as this node reckons it: its own clock corrected
// by the offset the latest frame showed (a frame's transit time off, milliseconds), or its own
// before any frame came. A node judges peers' expiry by it, so that one whose clock is off
// (by an hour, say) neither cuts peers off early nor serves them past their end.
func (c *Client) ControllerTime() time.Time {
	now := c.cfg.Now()
	if !c.offsetKnown.Load() {
		return now
	}
	return now.Add(time.Duration(c.offset.Load()))
}

// ClockOffset is the controller's clock less this node's, and whether a frame showed it.
func (c *Client) ClockOffset() (time.Duration, bool) {
	return time.Duration(c.offset.Load()), c.offsetKnown.Load()
}

// MinReportGap is the least time between two reports: ReportNow calls closer together are
// coalesced into one report.
const MinReportGap = 100 * time.Millisecond

// ReportNow asks for a report at once rather than at the next ReportEvery. The data plane
// calls it when a peer completes a handshake at this node, so that the controller learns
// where the peer is (and tells the other nodes) within a fraction of a second when a client
// switches PoP. It never blocks; calls before the report goes count once.
func (c *Client) ReportNow() {
	select {
	case c.reportNow <- struct{}{}:
	default:
	}
}

// NewClient returns a node's end of the sync; Run runs it.
func NewClient(cfg ClientConfig, log *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: log, hc: httpClient(cfg.Identity, cfg.ControllerPin, cfg.ControllerAddr), reportNow: make(chan struct{}, 1),
		boot: rand.Int64N(math.MaxInt64) + 1}
	c.status = Status{Controller: cfg.ControllerAddr, Since: cfg.Now()}
	return c, nil
}

// ErrWrongController is wrapped by the error of a connection to a controller whose
// certificate does not have the expected pin.
var ErrWrongController = errors.New("the controller's certificate does not have the expected pin")

// httpClient speaks HTTP/2 over TLS 1.3 with the node's certificate, and trusts only a
// server certificate with pin.
func httpClient(id *Identity, pin Pin, addr string) *http.Client {
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Certificate()},
		NextProtos:   []string{"h2"},
		// The pin is the trust, checked below; there is no CA and no name to verify.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, ok := peerPin(&cs)
			if !ok || got != pin {
				return fmt.Errorf("%w: the controller at %s is not the one the token names (certificate pin %s, want %s): the token is from another installation, or something is in between", ErrWrongController, addr, got, pin)
			}
			return nil
		},
	}
	var protos http.Protocols
	protos.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tlsCfg,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		Protocols:           &protos,
		ForceAttemptHTTP2:   true,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 10 * time.Second, WriteByteTimeout: 30 * time.Second},
	}}
}

// JoinRequest is what a node sends when it joins.
type JoinRequest struct {
	// Name is the name it asks for; "" takes the token's.
	Name string
	// DefaultName is the name it takes when neither Name nor the token names it.
	DefaultName       string
	BackboneEndpoint  string
	BackbonePublicKey store.Key
	Version           string
	// Now is the node's clock. Default time.Now.
	Now func() time.Time
}

// Joined is the outcome of a join.
type Joined struct {
	Name, Roles, Region string
}

// Join joins the controller tok names with the node's identity id. Its errors say what is
// wrong and what to do; when it fails nothing was recorded on the controller.
func Join(ctx context.Context, id *Identity, tok Token, req JoinRequest) (Joined, error) {
	now := time.Now
	if req.Now != nil {
		now = req.Now
	}
	body, err := json.Marshal(joinRequest{TokenID: tok.ID, Secret: tok.Secret[:], Name: req.Name, DefaultName: req.DefaultName, BackboneEndpoint: req.BackboneEndpoint,
		BackbonePublicKey: req.BackbonePublicKey, Version: req.Version, Time: now()})
	if err != nil {
		return Joined{}, err
	}
	hc := httpClient(id, tok.Pin, tok.Addr)
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+tok.Addr+"/v1/join", bytes.NewReader(body))
	if err != nil {
		return Joined{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(hreq)
	if err != nil {
		return Joined{}, connectError(tok.Addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Joined{}, refusal(resp)
	}
	var jr joinResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&jr); err != nil {
		return Joined{}, fmt.Errorf("the controller's answer to the join does not parse (%v): run the same popgate version on the node and the controller", err)
	}
	return Joined{Name: jr.Name, Roles: jr.Roles, Region: jr.Region}, nil
}

// connectError explains a failed connection to the controller.
func connectError(addr string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // it repeats the address
	}
	if errors.Is(err, ErrWrongController) {
		return err
	}
	return fmt.Errorf("cannot reach the controller at %s (%v): check the address and that the controller runs with --controller-addr", addr, err)
}

// refusalError is the controller's refusal of a request.
type refusalError struct {
	status int
	apiError
}

func (e *refusalError) Error() string { return e.Message }

func refusal(resp *http.Response) error {
	e := &refusalError{status: resp.StatusCode}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e.apiError); err != nil || e.Message == "" {
		e.Message = fmt.Sprintf("the controller answered %s: run the same popgate version on the node and the controller", resp.Status)
	}
	if e.Code == codeRemoved {
		return errors.Join(ErrRevoked, e)
	}
	return e
}

// Status returns how the sync stands.
func (c *Client) Status() Status {
	c.mu.Lock()
	st := c.status
	c.mu.Unlock()
	c.applyMu.Lock()
	st.ApplyError = c.applyErr
	c.applyMu.Unlock()
	return st
}

func (c *Client) setStatus(fn func(*Status)) {
	c.mu.Lock()
	fn(&c.status)
	c.mu.Unlock()
}

// Run keeps the node in sync until ctx ends (then it returns ctx's error) or the controller
// revokes the node (then ErrRevoked, after the cache is cleared and Revoked called). When the
// controller's first desired state does not come within CacheWait, it applies the kept one
// (fail static) and keeps reconnecting meanwhile.
func (c *Client) Run(ctx context.Context) error {
	defer c.hc.CloseIdleConnections()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-time.After(c.cfg.CacheWait):
			c.applyCache(ctx)
		}
	}()
	backoff := c.cfg.MinBackoff
	for {
		connected, err := c.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrRevoked) {
			c.log.Error("the controller removed this node: dropping its desired state; it serves nothing until it joins again", "err", err)
			c.applyMu.Lock()
			if cerr := c.cfg.Cache.ClearDesired(context.WithoutCancel(ctx)); cerr != nil {
				c.log.Error("clear the kept desired state", "err", cerr)
			}
			c.keepBlobsLocked(context.WithoutCancel(ctx), nil)
			c.applied, c.anyApply = 0, true // nothing from the cache any more
			c.applyMu.Unlock()
			c.setStatus(func(s *Status) { s.Connected, s.LastError, s.Since, s.Generation = false, err.Error(), c.cfg.Now(), 0 })
			if c.cfg.Revoked != nil {
				c.cfg.Revoked()
			}
			return ErrRevoked
		}
		c.setStatus(func(s *Status) {
			if s.Connected {
				s.Since = c.cfg.Now()
			}
			s.Connected, s.LastError = false, fmt.Sprint(err)
		})
		if connected {
			backoff = c.cfg.MinBackoff
		}
		c.log.Warn("no stream to the controller; serving the last desired state meanwhile", "controller", c.cfg.ControllerAddr, "retry_in", backoff.Round(time.Millisecond), "err", err)
		c.applyCache(ctx) // nothing applied yet and the controller away: fail static now
		// Jitter ±20 %, so that nodes cut off together do not come back together.
		wait := time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// applyCache applies the kept desired state when nothing was applied yet.
func (c *Client) applyCache(ctx context.Context) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	if c.anyApply {
		return
	}
	c.anyApply = true // one try: a kept state that fails to load will not load later
	gen, body, saved, err := c.cfg.Cache.LoadDesired(ctx)
	if errors.Is(err, store.ErrNotFound) {
		c.log.Warn("no desired state from the controller yet and none kept: serving nothing until the controller answers")
		return
	}
	if err != nil {
		c.log.Error("the kept desired state cannot be used; serving nothing until the controller answers", "err", err)
		return
	}
	var d plane.Desired
	if err := json.Unmarshal(body, &d); err != nil {
		c.log.Error("the kept desired state does not parse; serving nothing until the controller answers", "err", err)
		return
	}
	if err := d.Validate(); err != nil {
		c.log.Error("the kept desired state is invalid; serving nothing until the controller answers", "err", err)
		return
	}
	if d.Generation != gen {
		c.log.Error("the kept desired state is not of its recorded generation; serving nothing until the controller answers", "generation", gen, "body_generation", d.Generation)
		return
	}
	age := c.cfg.Now().Sub(saved)
	c.log.Warn("the controller is away: serving the kept desired state (fail static)", "generation", gen, "saved", saved.Format(time.RFC3339), "age", age.Round(time.Second))
	if err := c.cfg.Apply(ctx, &d); err != nil {
		c.applyErr, c.failedGen = err.Error(), d.Generation
		c.log.Error("apply the kept desired state", "generation", gen, "err", err)
		return
	}
	c.applied, c.applyErr = d.Generation, ""
	c.setStatus(func(s *Status) { s.Generation, s.FromCache, s.SavedAt = gen, true, saved })
}

// apply validates, keeps and applies a desired state from the controller.
func (c *Client) apply(ctx context.Context, d *plane.Desired) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.anyApply = true
	if err := d.Validate(); err != nil {
		c.applyErr, c.failedGen = err.Error(), d.Generation
		c.log.Error("the controller sent a desired state this node refuses; keeping the one it serves", "generation", d.Generation, "err", err)
		return
	}
	body, err := json.Marshal(d)
	if err == nil {
		err = c.cfg.Cache.SaveDesired(ctx, d.Generation, body)
	}
	if err != nil {
		// Serving the new state matters more than keeping it; the next one is kept again.
		c.log.Error("keep the desired state in the node's database", "generation", d.Generation, "err", err)
	} else {
		c.keepBlobsLocked(ctx, blobsOf(d))
	}
	if err := c.cfg.Apply(ctx, d); err != nil {
		c.applyErr, c.failedGen = err.Error(), d.Generation
		c.log.Error("apply the desired state", "generation", d.Generation, "err", err)
		return
	}
	c.applied, c.applyErr, c.failedGen = d.Generation, "", 0
	now := c.cfg.Now()
	c.setStatus(func(s *Status) { s.Generation, s.FromCache, s.SavedAt = d.Generation, false, now })
}

// blobsOf are the blobs d names: its tenants' blocklists' contents, sorted, once each.
func blobsOf(d *plane.Desired) [][32]byte {
	var out [][32]byte
	for _, t := range d.Tenants {
		for _, b := range t.DNS.Blocklists {
			out = append(out, b.SHA256)
		}
	}
	slices.SortFunc(out, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(out)
}

// keepBlobsLocked drops the kept blobs not among keep (the kept desired state's), when they
// changed. Must hold applyMu.
func (c *Client) keepBlobsLocked(ctx context.Context, keep [][32]byte) {
	if c.cfg.Blobs == nil || (c.kept != nil && slices.Equal(keep, c.kept)) {
		return
	}
	if err := c.cfg.Blobs.KeepBlobs(ctx, keep); err != nil {
		c.log.Warn("drop the blocklist contents the node no longer serves", "err", err)
		return
	}
	c.kept = append([][32]byte{}, keep...)
}

// Blob returns the blocklist content whose SHA-256 is sum: the one the node keeps (Blobs),
// or else its controller's (GET /v1/blob/{sha256} on the sync's connection), checked
// against sum and then kept. Its errors say what went wrong in one line.
func (c *Client) Blob(ctx context.Context, sum [32]byte) ([]byte, error) {
	if c.cfg.Blobs != nil {
		body, err := c.cfg.Blobs.Blob(ctx, sum)
		if err == nil {
			return body, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			c.log.Warn("read a kept blocklist content; asking the controller", "sha256", fmt.Sprintf("%x", sum), "err", err)
		}
	}
	body, err := c.fetchBlob(ctx, sum)
	if err != nil {
		return nil, err
	}
	if c.cfg.Blobs != nil {
		if err := c.cfg.Blobs.SaveBlob(ctx, sum, body, bytes.Count(body, []byte{'\n'})); err != nil {
			// Serving it matters more than keeping it: the next start asks again.
			c.log.Warn("keep a blocklist content in the node's database", "sha256", fmt.Sprintf("%x", sum), "err", err)
		}
	}
	return body, nil
}

// blobTimeout bounds fetching one blob from the controller.
const blobTimeout = 2 * time.Minute

// ErrBlobMismatch is wrapped by the error of a blob whose content is not its hash's.
var ErrBlobMismatch = errors.New("the blob's content does not match its SHA-256")

func (c *Client) fetchBlob(ctx context.Context, sum [32]byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, blobTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s/v1/blob/%x", c.cfg.ControllerAddr, sum), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, connectError(c.cfg.ControllerAddr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, refusal(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBlobSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch blob %x from the controller: %w", sum[:8], err)
	}
	if len(body) > MaxBlobSize {
		return nil, fmt.Errorf("the controller's blob %x is larger than %d bytes: run the same popgate version on the node and the controller", sum[:8], MaxBlobSize)
	}
	if got := sha256.Sum256(body); got != sum {
		return nil, fmt.Errorf("%w: the controller sent %x for %x: something between them altered it, or the controller's store is damaged", ErrBlobMismatch, got[:8], sum[:8])
	}
	return body, nil
}

// report is the node's report, with the events numbered after cur's and the logged queries
// after dcur's when the controller said which it has (none before: it would record them all
// again).
func (c *Client) report(cur, dcur *eventCursor) report {
	c.applyMu.Lock()
	r := report{Generation: c.applied, ApplyError: c.applyErr, Failed: c.failedGen}
	c.applyMu.Unlock()
	rep := c.cfg.Report()
	if seq, ok := cur.get(); ok {
		rep.Events, r.Boot = c.eventsAfter(seq), c.boot
	}
	if seq, ok := dcur.get(); ok && c.cfg.DNSLog != nil {
		rep.DNSLog, r.Boot = c.cfg.DNSLog(seq), c.boot
		if len(rep.DNSLog) > plane.MaxReportDNSLog {
			rep.DNSLog = rep.DNSLog[:plane.MaxReportDNSLog]
		}
	}
	r.Report, r.Time, r.Backbone = &rep, c.cfg.Now(), c.cfg.Backbone
	return r
}

// session holds one stream until it ends, and says whether it came up.
func (c *Client) session(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+c.cfg.ControllerAddr+"/v1/sync", pr)
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/x-popgate-frames")
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, connectError(c.cfg.ControllerAddr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, refusal(resp)
	}
	now := c.cfg.Now()
	c.setStatus(func(s *Status) { s.Connected, s.Since, s.LastError = true, now, "" })
	c.log.Info("connected to the controller", "controller", c.cfg.ControllerAddr)

	// The reporter writes the node's reports into the request body.
	var cur, dcur eventCursor
	var wg sync.WaitGroup
	defer wg.Wait()
	defer pr.Close() // a report blocked on a stream that ends returns
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer pw.Close()
		t := time.NewTicker(c.cfg.ReportEvery)
		defer t.Stop()
		for {
			r := c.report(&cur, &dcur)
			if err := writeFrame(pw, r); err != nil {
				return
			}
			if evs := r.Report.Events; len(evs) > 0 {
				// Written: the controller takes them, or the next stream starts again
				// from what it says it has.
				cur.set(evs[len(evs)-1].Seq)
				if len(evs) == plane.MaxReportEvents {
					c.ReportNow() // more are waiting
				}
			}
			if qs := r.Report.DNSLog; len(qs) > 0 {
				dcur.set(qs[len(qs)-1].Seq)
				if len(qs) == plane.MaxReportDNSLog {
					c.ReportNow()
				}
			}
			last := time.Now()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-c.reportNow:
				if wait := MinReportGap - time.Since(last); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
			}
		}
	}()

	idle := time.AfterFunc(c.cfg.IdleTimeout, cancel)
	defer idle.Stop()
	for {
		var f frame
		if err := readFrame(resp.Body, &f); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the controller ended the stream")
			} else if ctx.Err() != nil && !idle.Stop() {
				err = fmt.Errorf("the controller sent nothing for %s", c.cfg.IdleTimeout)
			}
			return true, err
		}
		idle.Reset(c.cfg.IdleTimeout)
		if f.Events != nil {
			seq := f.Events.Seq
			if f.Events.Boot != c.boot {
				seq = 0 // none of this process's
			}
			cur.set(seq)
			c.ReportNow()
		}
		if f.DNSLog != nil {
			seq := f.DNSLog.Seq
			if f.DNSLog.Boot != c.boot {
				seq = 0 // none of this process's
			}
			dcur.set(seq)
			c.ReportNow()
		}
		if !f.Time.IsZero() {
			c.offset.Store(int64(f.Time.Sub(c.cfg.Now())))
			c.offsetKnown.Store(true)
		}
		if f.Desired != nil {
			c.apply(ctx, f.Desired)
			c.ReportNow()
		}
	}
}
