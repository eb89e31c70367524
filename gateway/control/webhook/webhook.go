// Package webhook sends the controller's events to the operator's webhook: one JSON POST
// per event, in the order they were recorded, signed with the webhook's secret, retried
// with backoff, given up after a day.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/popgate/popgate/store"
)

// Store is where the events and the webhook are kept. *store.Store is one.
type Store interface {
	// Webhook returns the webhook; an error wrapping store.ErrNotFound when none is set.
	Webhook(ctx context.Context) (store.Webhook, error)
	WebhookSecret(ctx context.Context) (string, error)
	// EventsAfter returns up to limit events recorded after ID after, in that order.
	EventsAfter(ctx context.Context, after int64, limit int) ([]store.Event, error)
	// EventBacklog says which events to drop to keep the newest keep after ID after.
	EventBacklog(ctx context.Context, after int64, keep int) (cut int64, dropped int, err error)
	RecordWebhookDelivery(ctx context.Context, d store.WebhookDelivery) error
}

var _ Store = (*store.Store)(nil)

// Header names of a delivery.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body under the
	// webhook's secret (the secret's text as the key).
	SignatureHeader = "X-Popgate-Signature"
	// EventHeader carries the event's kind, DeliveryHeader its ID (the same on a retry).
	EventHeader    = "X-Popgate-Event"
	DeliveryHeader = "X-Popgate-Delivery"
)

// Defaults of Config.
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 5 * time.Minute
	DefaultGiveUp     = 24 * time.Hour
	DefaultMaxBacklog = 1000
	DefaultTimeout    = 10 * time.Second
)

// Config configures a Sender; New calls Validate.
type Config struct {
	// Store keeps the events and the webhook. Required.
	Store Store
	// Client sends the requests. Default: one with a 10 s timeout (connect 5 s) that
	// follows no redirect (a 3xx is a failure: the operator set the URL).
	Client *http.Client
	// MinBackoff is the wait before the first retry of an event, doubling up to MaxBackoff.
	// Default 1 s and 5 min.
	MinBackoff, MaxBackoff time.Duration
	// GiveUp is how old (since it happened) an event that still fails may get before it is
	// given up, and the next sent. Default 24 h.
	GiveUp time.Duration
	// MaxBacklog is how many events may wait to be sent: beyond it the oldest are dropped,
	// and counted. Default 1,000.
	MaxBacklog int
	// UserAgent is sent with each request. Default "popgate".
	UserAgent string
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate fills defaults and rejects what is missing.
func (c *Config) Validate() error {
	if c.Store == nil {
		return errors.New("webhook: Config.Store is nil: pass the controller's store")
	}
	if c.Client == nil {
		c.Client = newClient()
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("webhook: Config.MaxBackoff %s is below MinBackoff %s: raise it", c.MaxBackoff, c.MinBackoff)
	}
	if c.GiveUp == 0 {
		c.GiveUp = DefaultGiveUp
	}
	if c.MaxBacklog == 0 {
		c.MaxBacklog = DefaultMaxBacklog
	}
	if c.UserAgent == "" {
		c.UserAgent = "popgate"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// newClient is the default HTTP client: bounded in every phase, no redirects.
func newClient() *http.Client {
	return &http.Client{
		Timeout: DefaultTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: DefaultTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          2,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Payload is the body of a delivery: one event.
type Payload struct {
	// ID is the event's, increasing in the order events were recorded; a retry sends the
	// same.
	ID      int64             `json:"id"`
	Time    time.Time         `json:"time"`
	Kind    string            `json:"kind"`
	Node    string            `json:"node"`
	Tenant  string            `json:"tenant,omitempty"`
	Subject string            `json:"subject"`
	Message string            `json:"message"`
	Data    map[string]string `json:"data,omitempty"`
}

// PayloadOf is the payload of e.
func PayloadOf(e store.Event) Payload {
	return Payload{ID: e.ID, Time: e.At.UTC(), Kind: e.Kind, Node: e.Node, Tenant: e.Tenant, Subject: e.Subject, Message: e.Message, Data: e.Data}
}

// Sign returns the value of SignatureHeader for body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Status is how delivery goes now, beyond what the store keeps.
type Status struct {
	// Retrying is the event being retried, 0 for none; NextAttempt when.
	Retrying    int64
	NextAttempt time.Time
}

// Sender sends the events recorded after the webhook was set, one at a time, in order.
type Sender struct {
	cfg Config
	log *slog.Logger

	notify chan struct{}

	mu     sync.Mutex
	status Status // guarded by mu

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// New returns a Sender; Start runs it.
func New(cfg Config, log *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sender{cfg: cfg, log: log, notify: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// Start sends events until Close.
func (s *Sender) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
}

// Close stops sending and waits for an attempt under way (at most the client's timeout).
// Idempotent; a Sender never started closes at once.
func (s *Sender) Close() {
	s.once.Do(func() {
		if s.cancel == nil {
			close(s.done)
			return
		}
		s.cancel()
		<-s.done
	})
}

// Notify says that events were recorded or the webhook changed. It never blocks.
func (s *Sender) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Status returns how delivery goes now.
func (s *Sender) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Sender) setStatus(st Status) {
	s.mu.Lock()
	s.status = st
	s.mu.Unlock()
}

// idleRecheck is how often the sender looks for work without a Notify: events recorded by
// another process (none today), a store that failed.
const idleRecheck = 30 * time.Second

// delivery is the delivery loop's state.
type delivery struct {
	hook    time.Time // CreatedAt of the webhook the state below is for
	secret  string
	head    int64 // the event being retried
	backoff time.Duration
	retryAt time.Time
}

// run is the delivery loop: a step at a time, waiting between them for as long as each
// says, or until Notify.
func (s *Sender) run(ctx context.Context) {
	var st delivery
	for ctx.Err() == nil {
		if d := s.step(ctx, &st); d > 0 && !s.wait(ctx, d) {
			return
		}
	}
}

// wait waits d, or until Notify; false when ctx ends first.
func (s *Sender) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-s.notify:
	case <-t.C:
	}
	return true
}

// step reads the webhook and tries the next event once, or drops the backlog beyond
// MaxBacklog; it returns how long to wait before the next step (0: none).
func (s *Sender) step(ctx context.Context, st *delivery) time.Duration {
	w, err := s.cfg.Store.Webhook(ctx)
	if errors.Is(err, store.ErrNotFound) {
		st.hook, st.head = time.Time{}, 0
		s.setStatus(Status{})
		return idleRecheck
	}
	if err == nil && !w.CreatedAt.Equal(st.hook) {
		var secret string
		if secret, err = s.cfg.Store.WebhookSecret(ctx); err == nil {
			st.hook, st.secret, st.head = w.CreatedAt, secret, 0
			s.setStatus(Status{})
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("webhook: read the webhook", "err", err)
		}
		return idleRecheck
	}
	if cut, n, err := s.cfg.Store.EventBacklog(ctx, w.SentID, s.cfg.MaxBacklog); err == nil && cut > 0 {
		s.log.Warn("webhook: too many events wait to be sent; dropping the oldest", "dropped", n, "kept", s.cfg.MaxBacklog)
		s.record(ctx, store.WebhookDelivery{Webhook: st.hook, SentID: cut, Dropped: int64(n)})
		return 0
	}
	evs, err := s.cfg.Store.EventsAfter(ctx, w.SentID, 1)
	if err != nil || len(evs) == 0 {
		if err != nil && ctx.Err() == nil {
			s.log.Error("webhook: read the event log", "err", err)
		}
		return idleRecheck
	}
	e := evs[0]
	if e.ID == st.head {
		if d := st.retryAt.Sub(s.cfg.Now()); d > 0 {
			return d // then read the webhook again: it may have changed meanwhile
		}
	} else {
		st.head, st.backoff = e.ID, s.cfg.MinBackoff
	}
	now := s.cfg.Now()
	err = s.deliver(ctx, w.URL, st.secret, e)
	if ctx.Err() != nil {
		return 0
	}
	d := store.WebhookDelivery{Webhook: st.hook, Attempt: now, OK: err == nil}
	switch {
	case err == nil:
		d.SentID, d.Delivered = e.ID, 1
		st.head = 0
		s.setStatus(Status{})
	case now.Sub(e.At) >= s.cfg.GiveUp:
		d.SentID, d.Failed, d.GivenUp, d.Error = e.ID, 1, 1, err.Error()
		s.log.Warn("webhook: giving up on an event that failed for a day", "event", e.ID, "kind", e.Kind, "err", err)
		st.head = 0
		s.setStatus(Status{})
	default:
		d.Failed, d.Error = 1, err.Error()
		st.retryAt = now.Add(st.backoff)
		s.log.Info("webhook: delivery failed; retrying", "event", e.ID, "in", st.backoff, "err", err)
		st.backoff = min(st.backoff*2, s.cfg.MaxBackoff)
		s.setStatus(Status{Retrying: e.ID, NextAttempt: st.retryAt})
	}
	s.record(ctx, d)
	return 0
}

// record adds d to the store's record of the webhook, logging a failure.
func (s *Sender) record(ctx context.Context, d store.WebhookDelivery) {
	if err := s.cfg.Store.RecordWebhookDelivery(context.WithoutCancel(ctx), d); err != nil {
		s.log.Error("webhook: record a delivery", "err", err)
	}
}

// deliver POSTs e to u, signed with secret; nil when the receiver answered 2xx.
func (s *Sender) deliver(ctx context.Context, u, secret string, e store.Event) error {
	body, err := json.Marshal(PayloadOf(e))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("the URL does not make a request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	req.Header.Set(SignatureHeader, Sign(secret, body))
	req.Header.Set(EventHeader, e.Kind)
	req.Header.Set(DeliveryHeader, strconv.FormatInt(e.ID, 10))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it repeats the URL, whose path may be the receiver's secret
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the webhook answered %s", resp.Status)
	}
	return nil
}
