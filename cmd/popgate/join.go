package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/popgate/popgate/gateway"
	"github.com/popgate/popgate/gateway/metrics"
	"github.com/popgate/popgate/gateway/nodesync"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

// A joined node: a PoP or an exit that belongs to a controller elsewhere. On first start it
// joins with --join; afterwards its membership and identity in the data dir are enough. It
// builds its data plane from the first desired state: the controller's, or the one it kept
// when the controller is away (fail static).

// joinNode joins the controller sc.Join names, unless the data dir joined one already, and
// returns the membership. Nothing is stored when the join fails.
func joinNode(ctx context.Context, sc ServeConfig, st *store.Store, id *nodesync.Identity, hostname func() (string, error), log *slog.Logger) (store.Membership, error) {
	m, err := st.Membership(ctx)
	if err == nil && !m.RemovedAt.IsZero() && sc.Join == "" {
		return m, &usageError{msg: fmt.Sprintf("this node was removed from the controller at %s on %s and serves nothing: join it again with a new token (--join TOKEN, from 'popgate node token' on the controller)",
			m.ControllerAddr, m.RemovedAt.Local().Format("2006-01-02 15:04 MST"))}
	}
	if err == nil && m.RemovedAt.IsZero() {
		if sc.Join != "" {
			tok, perr := nodesync.ParseToken(sc.Join, time.Now())
			if perr != nil && !errors.Is(perr, nodesync.ErrTokenExpired) {
				log.Warn("--join is ignored: this data dir joined a controller already", "controller", m.ControllerAddr)
				return m, nil
			}
			if perr == nil && (nodesync.Pin(m.ControllerPin) != tok.Pin) {
				return m, &usageError{msg: fmt.Sprintf("this data dir (%s) belongs to the controller at %s already, and --join names another (%s): drop --join to keep serving for the first, or use a new data dir to join the other", sc.DataDir, m.ControllerAddr, tok.Addr)}
			}
			log.Info("--join is ignored: this data dir joined this controller already; the token is not needed again", "controller", m.ControllerAddr, "node", m.NodeName)
		}
		return m, nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return m, err
	}
	if sc.Join == "" {
		return m, &usageError{msg: "this node has no controller role (--roles " + strings.Join(sc.Roles, ",") + ") and has not joined one: give --join TOKEN (from 'popgate node token' on the controller)"}
	}
	tok, err := nodesync.ParseToken(sc.Join, time.Now())
	if err != nil {
		return m, &usageError{msg: "--join: " + err.Error()}
	}
	bbKey, err := st.BackbonePrivateKey(ctx)
	if err != nil {
		return m, err
	}
	req := nodesync.JoinRequest{BackboneEndpoint: sc.BackboneEndpoint, BackbonePublicKey: bbKey.PublicKey(), Version: sc.Gateway.Version}
	if sc.NodeNameSet {
		req.Name = sc.Gateway.NodeName
	} else if h, err := hostname(); err == nil {
		req.DefaultName = nodeNameFromHost(h)
	}
	log.Info("joining the controller", "controller", tok.Addr)
	j, err := nodesync.Join(ctx, id, tok, req)
	if err != nil {
		return m, fmt.Errorf("cannot join: %w; nothing was stored", err)
	}
	m = store.Membership{ControllerAddr: tok.Addr, ControllerPin: tok.Pin, NodeName: j.Name, Roles: j.Roles, Region: j.Region}
	if err := st.SetMembership(store.WithActor(ctx, store.Actor{Name: "cli", Remote: "serve --join"}), m); err != nil {
		return m, fmt.Errorf("joined the controller as %s, but cannot record it (%w): remove the node on the controller ('popgate node remove %s') and join again with a new token", j.Name, err, j.Name)
	}
	log.Info("joined the controller", "controller", tok.Addr, "node", j.Name, "roles", j.Roles, "region", j.Region)
	return m, nil
}

// nodeNameFromHost makes a node name of a host name: its first label, lower case, other
// characters as '-'; "" when nothing valid is left.
func nodeNameFromHost(h string) string {
	h, _, _ = strings.Cut(strings.ToLower(h), ".")
	b := []byte(h)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	name := strings.Trim(string(b), "-")
	if len(name) > 32 {
		name = name[:32]
	}
	if store.ValidateNodeName(name) != nil {
		return ""
	}
	return name
}

// joinedPlane is a joined node's data plane, built from the first desired state it applies.
type joinedPlane struct {
	cfg     gateway.Config // without key and overlay
	nodeKey store.Key      // for a node whose region has no key of its own (an exit)
	log     *slog.Logger
	ctx     context.Context // the node's lifetime

	mu   sync.Mutex
	node *gateway.Node // nil until the first apply; guarded by mu
	key  store.Key
}

// Apply builds the node from the first d, then applies d.
func (p *joinedPlane) Apply(ctx context.Context, d *plane.Desired) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := p.nodeKey
	if d.RegionKey != nil {
		key = *d.RegionKey
	}
	if p.node == nil {
		cfg := p.cfg
		cfg.PrivateKey, cfg.Overlay = key, d.Overlay
		if d.Region != "" {
			cfg.Region = d.Region
		}
		node, err := gateway.New(cfg, p.log)
		if err != nil {
			return err
		}
		if err := node.Start(p.ctx); err != nil {
			node.Close()
			return err
		}
		p.node, p.key = node, key
		p.log.Info("the data plane is up", "region", cfg.Region, "generation", d.Generation)
	} else if key != p.key {
		p.log.Warn("the region's key changed: it takes effect when the node restarts")
	}
	return p.node.Apply(ctx, d)
}

// Report is the node's report; an empty one before the data plane is up.
func (p *joinedPlane) Report() plane.Report {
	p.mu.Lock()
	node := p.node
	p.mu.Unlock()
	if node == nil {
		return plane.Report{Format: plane.Format}
	}
	return node.Report()
}

// DNSLogAfter is the data plane's query log after seq (gateway.Node.DNSLogAfter); none
// before it is up.
func (p *joinedPlane) DNSLogAfter(seq uint64) []plane.DNSQuery {
	p.mu.Lock()
	node := p.node
	p.mu.Unlock()
	if node == nil {
		return nil
	}
	return node.DNSLogAfter(seq)
}

// Backbone is the data plane's backbone for status; nil before it is up or without one.
func (p *joinedPlane) Backbone() *webui.APIBackbone {
	p.mu.Lock()
	node := p.node
	p.mu.Unlock()
	if node == nil {
		return nil
	}
	return apiBackbone(node)
}

// apiBackbone is node's backbone for status; nil when it has none running.
func apiBackbone(node *gateway.Node) *webui.APIBackbone {
	links := node.BackboneLinks()
	if links == nil {
		return nil
	}
	bb := &webui.APIBackbone{Port: node.Config().BackbonePort, PublicKey: node.BackbonePublicKey().String(), Links: []webui.APIBackboneLink{}}
	for _, l := range links {
		bb.Links = append(bb.Links, webui.APIBackboneLink{Node: l.Name, NodeID: uint32(l.Node), State: l.State.String(),
			RTTMicros: l.SmoothedRTT.Microseconds(), LossPercent: int(math.Round(l.Loss() * 100))})
	}
	return bb
}

// Close stops the data plane: the node serves nothing.
func (p *joinedPlane) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.node != nil {
		p.node.Close()
		p.node = nil
	}
}

// joinedStatus is 'popgate status' of a joined node: its data plane's report and how its
// sync stands.
func joinedStatus(m store.Membership, cfg gateway.Config, started time.Time, sync nodesync.Status, rep plane.Report) webui.APIStatus {
	roles := strings.Split(m.Roles, ",")
	st := webui.APIStatus{
		Node: webui.APINode{Name: m.NodeName, Version: cfg.Version, Roles: roles, Region: m.Region, StartedAt: started.UTC(),
			UptimeSeconds: int64(time.Since(started).Seconds()), Goroutines: runtime.NumGoroutine()},
		Device: webui.APIDevice{Interface: cfg.Interface, ListenPort: cfg.ListenPort, MTU: cfg.MTU, ExitMode: rep.Node.ExitMode,
			UAPISocket: rep.Node.UAPISocket, ExitSockets: rep.Node.ExitSockets, ExitSocketBudget: rep.Node.ExitSocketBudget,
			Drops: rep.Node.Drops, Addresses: []string{}},
		Desired:    &webui.APIDesiredState{Generation: sync.Generation, Applied: rep.Generation, Error: sync.ApplyError},
		Tenants:    []webui.APITenantStatus{},
		Controller: &webui.APIControllerLink{Address: m.ControllerAddr, Connected: sync.Connected, Since: sync.Since.UTC(), FromCache: sync.FromCache, LastError: sync.LastError},
	}
	if sync.FromCache {
		t := sync.SavedAt.UTC()
		st.Controller.SavedAt = &t
	}
	for _, ps := range rep.Peers {
		st.Peers.Total++
		if ps.Online {
			st.Peers.Online++
		}
	}
	return st
}

// joinedFacts are the facts, for metrics and readiness, of a joined node: its roles are
// the controller's word, the newest desired state it knows is the one it applied last, and it
// is stale while its controller is away. Staleness does not make it unready: a node fails
// static, and serves what it has (popgate_desired_staleness_seconds says how old).
func joinedFacts(m store.Membership, client *nodesync.Client) func() metrics.Facts {
	roles := strings.Split(m.Roles, ",")
	return func() metrics.Facts {
		s := client.Status()
		f := metrics.Facts{Roles: roles, DesiredGeneration: s.Generation, PublishError: s.ApplyError, EventsDropped: client.EventsDropped()}
		if !s.Connected && !s.Since.IsZero() {
			f.StaleSince = s.Since
		}
		return f
	}
}

// runJoined runs a node that joined a controller until ctx ends.
func runJoined(ctx context.Context, sc ServeConfig, dd *dataDir, hostname func() (string, error), log *slog.Logger) error {
	st := dd.store
	id, err := nodesync.LoadIdentity(filepath.Join(sc.DataDir, nodesync.IdentityFileName))
	if err != nil {
		return err
	}
	m, err := joinNode(ctx, sc, st, id, hostname, log)
	if err != nil {
		return err
	}
	nodeKey, err := st.NodePrivateKey(ctx)
	if err != nil {
		return err
	}
	gcfg := sc.Gateway
	gcfg.NodeName = m.NodeName
	// Its roles are the controller's word (the membership), not --roles: a PoP without the
	// exit role sends the internet's traffic over the backbone to exits.
	gcfg.NoExit = !slices.Contains(strings.Split(m.Roles, ","), "exit")
	// A backbone only where the other nodes can reach it (--backbone-endpoint): the
	// controller lists no node without an endpoint, so a socket of its own would serve
	// nothing.
	if sc.BackboneEndpoint != "" {
		if gcfg.BackboneKey, err = st.BackbonePrivateKey(ctx); err != nil {
			return err
		}
	}
	// The node says where its backbone is in every report: a node that joined without
	// --backbone-endpoint, or moved, needs no second join.
	var bb *nodesync.Backbone
	if sc.BackboneEndpoint != "" {
		bb = &nodesync.Backbone{Endpoint: sc.BackboneEndpoint, PublicKey: gcfg.BackboneKey.PublicKey()}
	}
	// Peers expire by the controller's clock, as the node reckons it from the sync's frames:
	// a node whose clock is off serves each peer until the controller says it ends.
	var client *nodesync.Client
	gcfg.Clock = func() time.Time { return client.ControllerTime() }
	// A client that moved here is placed here within a second, not at the next report.
	gcfg.PeerArrived = func() { client.ReportNow() }
	// The data plane's events (links, failovers) go with the reports, each once.
	gcfg.OnEvent = func(e plane.Event) { client.Event(e) }
	// The tenants' blocklists: kept in the node's own store, else fetched from the
	// controller over the sync's connection.
	gcfg.Blobs = func(ctx context.Context, sum [32]byte) ([]byte, error) { return client.Blob(ctx, sum) }
	p := &joinedPlane{cfg: gcfg, nodeKey: nodeKey, log: log, ctx: ctx}
	defer p.Close()
	client, err = nodesync.NewClient(nodesync.ClientConfig{
		ControllerAddr: m.ControllerAddr,
		ControllerPin:  m.ControllerPin,
		Identity:       id,
		Cache:          st,
		Blobs:          st,
		Apply:          p.Apply,
		Report:         p.Report,
		DNSLog:         p.DNSLogAfter,
		Backbone:       bb,
		Revoked: func() {
			p.Close()
			if err := st.MarkRemoved(store.WithActor(context.WithoutCancel(ctx), store.Actor{Name: "node:" + m.NodeName, Remote: m.ControllerAddr})); err != nil {
				log.Error("forget the membership", "err", err)
			}
		},
	}, log.With("component", "nodesync"))
	if err != nil {
		return err
	}
	// The control socket answers 'popgate status' (the other commands are the controller's).
	ctl, err := listenControl(filepath.Join(sc.DataDir, controlSocketName))
	if err != nil {
		return err
	}
	started := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		st := joinedStatus(m, gcfg, started, client.Status(), p.Report())
		st.Backbone = p.Backbone()
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(webui.APIError{Error: "this node joined the controller at " + m.ControllerAddr + ": run this command on the controller"})
	})
	ctlSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go serveHTTP(ctlSrv, ctl)
	defer ctlSrv.Close()

	facts := joinedFacts(m, client)
	stopMetrics, err := startMetrics(sc, p.Report, facts, nil, readiness(p.Report, facts), log.With("component", "metrics"))
	if err != nil {
		return err
	}
	defer stopMetrics() // before p.Close

	log.Info("popgate is a node of the controller", "controller", m.ControllerAddr, "node", m.NodeName, "roles", m.Roles, "region", m.Region)
	err = client.Run(ctx)
	if errors.Is(err, nodesync.ErrRevoked) {
		log.Error("this node was removed from its controller and serves nothing: join it again with a new token ('popgate serve --join TOKEN')")
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}
