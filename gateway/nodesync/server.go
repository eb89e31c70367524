package nodesync

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// Registry is the controller's record of nodes. *store.Store is one.
type Registry interface {
	// RedeemJoinToken joins a node (see store.Store.RedeemJoinToken).
	RedeemJoinToken(ctx context.Context, r store.Redemption) (store.Node, error)
	// NodeByPin returns the node with the pin; an error wrapping store.ErrNotFound when
	// there is none (removed).
	NodeByPin(ctx context.Context, pin [32]byte) (store.Node, error)
	// RecordNodeReport records a node's report; store.ErrNotFound when it was removed.
	RecordNodeReport(ctx context.Context, id int64, r store.NodeReport) error
}

var _ Registry = (*store.Store)(nil)

// Source is the controller's desired state for each node.
type Source interface {
	// NodeDesired returns the desired state node n is to apply. It must not be modified
	// afterwards.
	NodeDesired(ctx context.Context, n store.Node) (*plane.Desired, error)
	// Changed returns a channel that is closed at the next publication of the desired
	// state (a change, a node joined or removed, a peer seen at another node); then Changed
	// returns a new one.
	Changed() <-chan struct{}
	// NodeReported hears each report of node n as it comes, to learn where peers are;
	// offset is n's clock minus the controller's. It must return quickly and not keep rep.
	NodeReported(n store.Node, rep *plane.Report, offset time.Duration)
	// SetNodeBackbone records that node n's backbone is now reached at endpoint with key
	// (the node says so in its reports) and publishes the change; an error wrapping
	// store.ErrInvalid for values it refuses.
	SetNodeBackbone(ctx context.Context, n store.Node, endpoint string, key store.Key) (store.Node, error)
	// NodeEventCursor returns the newest event of node n recorded (the zero cursor for
	// none), which a stream's first frame tells the node.
	NodeEventCursor(ctx context.Context, n store.Node) (store.EventCursor, error)
	// NodeEvents records the events node n reported of its process boot (plane.Report's,
	// at most plane.MaxReportEvents), each once however often it comes; offset is n's
	// clock minus the controller's. The error wraps store.ErrNotFound when n was removed.
	NodeEvents(ctx context.Context, n store.Node, boot int64, evs []plane.Event, offset time.Duration) error
	// NodeDNSLogCursor and NodeDNSLog are NodeEventCursor and NodeEvents for the queries
	// node n logged for its tenants' query logs (plane.Report.DNSLog, at most
	// plane.MaxReportDNSLog).
	NodeDNSLogCursor(ctx context.Context, n store.Node) (store.EventCursor, error)
	NodeDNSLog(ctx context.Context, n store.Node, boot int64, qs []plane.DNSQuery, offset time.Duration) error
}

// MaxClockSkew is how far a joining node's clock may be off from the controller's.
const MaxClockSkew = 5 * time.Minute

// ServerConfig configures a Server; NewServer calls Validate.
type ServerConfig struct {
	// Identity is the controller's. Required.
	Identity *Identity
	// Registry and Source are required.
	Registry Registry
	Source   Source
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// PingEvery is how often an idle stream carries a ping. Default 10 s.
	PingEvery time.Duration
	// Blobs returns to node n the blocklist content whose SHA-256 is sum (GET
	// /v1/blob/{sha256}), an error wrapping store.ErrNotFound when n is not to have it.
	// Default nil: that route answers 404.
	Blobs func(ctx context.Context, n store.Node, sum [32]byte) ([]byte, error)
}

// Validate fills defaults and rejects what is missing.
func (c *ServerConfig) Validate() error {
	if c.Identity == nil || c.Registry == nil || c.Source == nil {
		return errors.New("nodesync: ServerConfig needs an Identity, a Registry and a Source")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.PingEvery == 0 {
		c.PingEvery = 10 * time.Second
	}
	return nil
}

// Server is the controller's end: it lets nodes join and keeps each joined node's stream.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	srv *http.Server
	// ctx is cancelled at Close, ending every stream.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// links are the nodes with a stream now, by name. Guarded by mu.
	links map[string]*Link
}

// Link is what the controller knows of a node's stream.
type Link struct {
	// Since is when the stream started.
	Since time.Time
	// Sent is the generation last sent; Applied the one the node last reported applied.
	Sent, Applied int64
	// ApplyError is the node's last apply error, "" when it applied.
	ApplyError string
	// LastReport is when its last report came.
	LastReport time.Time
	// ClockOffset is the node's clock minus the controller's at its last report.
	ClockOffset time.Duration
}

// NewServer returns a controller's end of the node sync.
func NewServer(cfg ServerConfig, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, links: map[string]*Link{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var protos http.Protocols
	protos.SetHTTP2(true)
	s.srv = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		Protocols:         &protos,
		HTTP2:             &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 10 * time.Second, WriteByteTimeout: 30 * time.Second},
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// TLSConfig is the listener's: TLS 1.3, HTTP/2, a client certificate required (which one is
// authorised is decided per request, by its pin).
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cfg.Identity.Certificate()},
		ClientAuth:   tls.RequireAnyClientCert,
		NextProtos:   []string{"h2"},
	}
}

// Handler serves the node API on connections whose TLS state carries the node's certificate.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/join", s.join)
	mux.HandleFunc("POST /v1/sync", s.sync)
	mux.HandleFunc("GET /v1/blob/{sha256}", s.blob)
	return mux
}

// Serve accepts TCP connections on ln, speaks TLS on them, and serves until Close. It
// returns http.ErrServerClosed after Close.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.ServeTLS(ln, "", "")
}

// Close ends every stream and closes the listener. Idempotent.
func (s *Server) Close() error {
	s.cancel()
	return s.srv.Close()
}

// Links returns the nodes that have a stream now, by name.
func (s *Server) Links() map[string]Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Link, len(s.links))
	for name, l := range s.links {
		out[name] = *l
	}
	return out
}

// apiError is the body of a refused request.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"error"`
}

// Codes of apiError, which a node tells apart.
const (
	codeRemoved      = "removed"
	codeClock        = "clock"
	codeTokenUnknown = "token_unknown"
	codeTokenUsed    = "token_used"
	codeTokenExpired = "token_expired"
	codeExists       = "exists"
	codeInvalid      = "invalid"
	codeNotFound     = "not_found"
	codeInternal     = "internal"
)

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(apiError{Code: code, Message: msg})
}

// joinRequest is the body of POST /v1/join.
type joinRequest struct {
	TokenID           int64     `json:"token_id"`
	Secret            []byte    `json:"secret"`
	Name              string    `json:"name"`
	DefaultName       string    `json:"default_name,omitempty"`
	BackboneEndpoint  string    `json:"backbone_endpoint,omitempty"`
	BackbonePublicKey store.Key `json:"backbone_public_key,omitzero"`
	Version           string    `json:"version"`
	Time              time.Time `json:"time"`
}

// joinResponse is the answer to a join.
type joinResponse struct {
	Name   string    `json:"name"`
	Roles  string    `json:"roles"`
	Region string    `json:"region"`
	Time   time.Time `json:"time"`
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	pin, ok := peerPin(r.TLS)
	if !ok {
		writeError(w, http.StatusUnauthorized, codeInvalid, "a node must present its certificate")
		return
	}
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || len(req.Secret) != store.JoinSecretLen {
		writeError(w, http.StatusBadRequest, codeInvalid, "the join request does not parse: run the same popgate version on the node and the controller")
		return
	}
	now := s.cfg.Now()
	if off := req.Time.Sub(now); off > MaxClockSkew || off < -MaxClockSkew {
		writeError(w, http.StatusBadRequest, codeClock, fmt.Sprintf("this node's clock is off by %s from the controller's: fix its time (NTP) and join again; the token is still unused", off.Round(time.Second)))
		return
	}
	red := store.Redemption{TokenID: req.TokenID, Name: req.Name, DefaultName: req.DefaultName, Pin: pin, BackboneEndpoint: req.BackboneEndpoint,
		BackbonePublicKey: req.BackbonePublicKey, Version: req.Version}
	copy(red.Secret[:], req.Secret)
	ctx := store.WithActor(r.Context(), store.Actor{Name: "node:" + truncate(req.Name, 32), Remote: r.RemoteAddr})
	n, err := s.cfg.Registry.RedeemJoinToken(ctx, red)
	if err != nil {
		status, code := http.StatusInternalServerError, codeInternal
		switch {
		case errors.Is(err, store.ErrTokenUnknown):
			status, code = http.StatusForbidden, codeTokenUnknown
		case errors.Is(err, store.ErrTokenUsed):
			status, code = http.StatusConflict, codeTokenUsed
		case errors.Is(err, store.ErrTokenExpired):
			status, code = http.StatusGone, codeTokenExpired
		case errors.Is(err, store.ErrExists):
			status, code = http.StatusConflict, codeExists
		case errors.Is(err, store.ErrInvalid):
			status, code = http.StatusBadRequest, codeInvalid
		}
		msg := err.Error()
		if status == http.StatusInternalServerError {
			s.log.Error("a node's join failed", "remote", r.RemoteAddr, "err", err)
			msg = "the controller could not record the join; its log says why; try again"
		} else {
			s.log.Warn("a node's join was refused", "remote", r.RemoteAddr, "name", truncate(req.Name, 32), "reason", code)
		}
		writeError(w, status, code, msg)
		return
	}
	s.log.Info("a node joined", "node", n.Name, "roles", n.Roles, "region", n.Region, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(joinResponse{Name: n.Name, Roles: n.Roles, Region: n.Region, Time: s.cfg.Now()})
}

// errRemovedMsg is what a node that is no longer a member is told.
const errRemovedMsg = "this node is not a member of the controller (it was removed, or never joined): join it again with a new token"

// authorize finds the member node of the request's client certificate; when there is none
// (no certificate, a removed node, the store failing) it answers the request and returns
// false.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (store.Node, Pin, bool) {
	pin, ok := peerPin(r.TLS)
	if !ok {
		writeError(w, http.StatusUnauthorized, codeInvalid, "a node must present its certificate")
		return store.Node{}, pin, false
	}
	n, status, err := s.member(r.Context(), pin)
	if status == http.StatusForbidden {
		writeError(w, status, codeRemoved, errRemovedMsg)
		return n, pin, false
	}
	if err != nil {
		s.log.Error("node sync: read the node", "err", err)
		writeError(w, status, codeInternal, "the controller could not read its nodes; try again")
		return n, pin, false
	}
	return n, pin, true
}

func (s *Server) member(ctx context.Context, pin Pin) (store.Node, int, error) {
	n, err := s.cfg.Registry.NodeByPin(ctx, pin)
	if errors.Is(err, store.ErrNotFound) {
		return n, http.StatusForbidden, err
	}
	if err != nil {
		return n, http.StatusInternalServerError, err
	}
	return n, 0, nil
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request) {
	n, pin, ok := s.authorize(w, r)
	if !ok {
		return
	}
	if r.ProtoMajor < 2 {
		writeError(w, http.StatusHTTPVersionNotSupported, codeInvalid, "the node sync needs HTTP/2")
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	link := s.attach(n.Name)
	defer s.detach(n.Name, link)
	log := s.log.With("node", n.Name)
	log.Info("node connected", "remote", r.RemoteAddr)
	defer log.Info("node disconnected")

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-popgate-frames")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	reports := make(chan struct{})
	go func() {
		defer close(reports)
		defer cancel()
		s.readReports(ctx, log, n, link, r.Body)
	}()
	defer func() {
		cancel()
		rc.SetReadDeadline(time.Now()) // unblocks the reader: the body may not be read after we return
		<-reports
	}()

	// The first frame tells the node which of its events and logged queries the controller
	// has.
	var events, dnsLog *store.EventCursor
	if cur, err := s.cfg.Source.NodeEventCursor(ctx, n); err != nil {
		log.Warn("node sync: read the node's event cursor; its events wait for its next stream", "err", err)
	} else {
		events = &cur
	}
	if cur, err := s.cfg.Source.NodeDNSLogCursor(ctx, n); err != nil {
		log.Warn("node sync: read the node's query log cursor; its logged queries wait for its next stream", "err", err)
	} else {
		dnsLog = &cur
	}
	send := func(f frame) error {
		f.Time, f.Events, f.DNSLog, events, dnsLog = s.cfg.Now(), events, dnsLog, nil, nil
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := writeFrame(w, f); err != nil {
			return err
		}
		return rc.Flush()
	}
	ping := time.NewTicker(s.cfg.PingEvery)
	defer ping.Stop()
	sent, sentWhere := int64(-1), int64(-1)
	for first := true; ; first = false {
		changed := s.cfg.Source.Changed()
		if !first {
			// A publication: is the node still a member? A removed node's stream ends now.
			if _, status, err := s.member(ctx, pin); status == http.StatusForbidden {
				log.Info("node removed: closing its stream")
				return
			} else if err != nil {
				log.Warn("node sync: read the node", "err", err)
			}
		}
		d, err := s.cfg.Source.NodeDesired(ctx, n)
		if err != nil {
			log.Error("node sync: the desired state for the node", "err", err)
		} else if d.Generation != sent || d.PeerNodesVersion != sentWhere {
			if err := send(frame{Desired: d}); err != nil {
				log.Info("node sync: send", "err", err)
				return
			}
			sent, sentWhere = d.Generation, d.PeerNodesVersion
			s.mu.Lock()
			link.Sent = sent
			s.mu.Unlock()
		}
	wait:
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-ping.C:
			if err := send(frame{Ping: true}); err != nil {
				log.Info("node sync: send", "err", err)
				return
			}
			goto wait
		}
	}
}

// blob answers a member node with a blocklist content by its hash (ServerConfig.Blobs),
// gzip-compressed when the node takes it (Go's client does, and undoes it).
func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	n, _, ok := s.authorize(w, r)
	if !ok {
		return
	}
	sum, err := hex.DecodeString(r.PathValue("sha256"))
	if err != nil || len(sum) != sha256.Size {
		writeError(w, http.StatusBadRequest, codeInvalid, "a blob is named by its SHA-256 in 64 hex digits")
		return
	}
	var body []byte
	if s.cfg.Blobs == nil {
		err = store.ErrNotFound
	} else {
		body, err = s.cfg.Blobs(r.Context(), n, [32]byte(sum))
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("the controller has no blob %x for node %s (a list removed meanwhile, or not of a tenant of its region)", sum[:8], n.Name))
		return
	}
	if err != nil {
		s.log.Error("node sync: read a blob", "node", n.Name, "err", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "the controller could not read the blob; try again")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	zw.Write(body)
	zw.Close()
}

func (s *Server) attach(name string) *Link {
	l := &Link{Since: s.cfg.Now()}
	s.mu.Lock()
	s.links[name] = l
	s.mu.Unlock()
	return l
}

func (s *Server) detach(name string, l *Link) {
	s.mu.Lock()
	if s.links[name] == l {
		delete(s.links, name)
	}
	s.mu.Unlock()
}

// reportSummary is what the controller keeps of a report: small, whatever the node's size.
type reportSummary struct {
	Generation int64            `json:"generation"`
	ApplyError string           `json:"apply_error,omitempty"`
	Failed     int64            `json:"failed,omitempty"`
	Node       plane.NodeStatus `json:"node"`
	Peers      int              `json:"peers"`
	// Online is how many of Peers were online (a handshake within the session lifetime).
	Online      int    `json:"online"`
	Tenants     int    `json:"tenants"`
	ClockOffset string `json:"clock_offset"`
	// Links are the node's backbone links (plane.Report.Links).
	Links []plane.LinkState `json:"links,omitempty"`
}

// readReports reads the node's reports until the stream ends or the node is removed.
func (s *Server) readReports(ctx context.Context, log *slog.Logger, n store.Node, link *Link, body io.Reader) {
	badBackbone := "\x00" // the last endpoint refused, not asked again on this stream
	for {
		var rep report
		if err := readFrame(body, &rep); err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				log.Info("node sync: read a report", "err", err)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		now := s.cfg.Now()
		if bb := rep.Backbone; bb != nil && (bb.Endpoint != n.BackboneEndpoint || bb.PublicKey != n.BackbonePublicKey) && bb.Endpoint != badBackbone {
			updated, err := s.cfg.Source.SetNodeBackbone(ctx, n, bb.Endpoint, bb.PublicKey)
			switch {
			case err == nil:
				log.Info("the node's backbone changed", "endpoint", updated.BackboneEndpoint)
				n = updated
			case errors.Is(err, store.ErrNotFound):
				log.Info("node removed: closing its stream")
				return
			default:
				// Said once per stream: the node's status shows the controller's refusal
				// as its last error when it reconnects.
				log.Warn("the node reports a backbone the controller refuses; it keeps the one it joined with", "endpoint", truncate(bb.Endpoint, 80), "err", err)
				badBackbone = bb.Endpoint
			}
		}
		if rep.Report != nil {
			s.cfg.Source.NodeReported(n, rep.Report, rep.Time.Sub(now))
			if evs := rep.Report.Events; len(evs) > 0 && rep.Boot != 0 {
				if len(evs) > plane.MaxReportEvents {
					evs = evs[:plane.MaxReportEvents]
				}
				err := s.cfg.Source.NodeEvents(ctx, n, rep.Boot, evs, rep.Time.Sub(now))
				if errors.Is(err, store.ErrNotFound) {
					log.Info("node removed: closing its stream")
					return
				}
				if err != nil && ctx.Err() == nil {
					// The node sends them again on its next stream, from the cursor.
					log.Warn("node sync: record the node's events; closing the stream so that it sends them again", "err", err)
					return
				}
			}
			if qs := rep.Report.DNSLog; len(qs) > 0 && rep.Boot != 0 {
				if len(qs) > plane.MaxReportDNSLog {
					qs = qs[:plane.MaxReportDNSLog]
				}
				err := s.cfg.Source.NodeDNSLog(ctx, n, rep.Boot, qs, rep.Time.Sub(now))
				if errors.Is(err, store.ErrNotFound) {
					log.Info("node removed: closing its stream")
					return
				}
				if err != nil && ctx.Err() == nil {
					log.Warn("node sync: record the node's logged queries; closing the stream so that it sends them again", "err", err)
					return
				}
			}
		}
		sum := reportSummary{Generation: rep.Generation, ApplyError: truncate(rep.ApplyError, 1000), Failed: rep.Failed,
			ClockOffset: rep.Time.Sub(now).Round(time.Millisecond).String()}
		var version string
		if rep.Report != nil {
			sum.Node, sum.Peers, sum.Tenants, sum.Links = rep.Report.Node, len(rep.Report.Peers), len(rep.Report.Tenants), rep.Report.Links
			for _, p := range rep.Report.Peers {
				if p.Online {
					sum.Online++
				}
			}
			version = truncate(rep.Report.Node.Version, 60)
		}
		b, _ := json.Marshal(sum)
		if len(b) > store.MaxNodeReport {
			sum.Node, sum.Links = plane.NodeStatus{}, nil
			b, _ = json.Marshal(sum)
		}
		s.mu.Lock()
		link.Applied, link.ApplyError, link.LastReport, link.ClockOffset = rep.Generation, sum.ApplyError, now, rep.Time.Sub(now)
		s.mu.Unlock()
		err := s.cfg.Registry.RecordNodeReport(ctx, n.ID, store.NodeReport{At: now, Version: version, AppliedGeneration: max(rep.Generation, 0), Report: string(b)})
		if errors.Is(err, store.ErrNotFound) {
			log.Info("node removed: closing its stream")
			return
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("node sync: record a report", "err", err)
		}
	}
}
