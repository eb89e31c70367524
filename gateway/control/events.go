package control

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popgate/popgate/gateway/control/webhook"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// The controller's events (issue 16): it records its nodes' (NodeEvents, from the sync), its
// own node's (Event, from the appliance's data plane) and its own (a node connected,
// offline, back; a peer about to expire), in the store's event log, and hands each to the
// webhook sender.

// EventsConfig tunes the controller's events; the zero value is the default.
type EventsConfig struct {
	// NodeOfflineAfter is how long a node may send no report before it is offline (an
	// event). Default 30 s (a node reports every 5 s).
	NodeOfflineAfter time.Duration
	// PeerExpiryNotice is how long before a peer expires an event says so. Default 24 h.
	PeerExpiryNotice time.Duration
	// WatchEvery is how often nodes and peers are looked at. Default 5 s.
	WatchEvery time.Duration
	// Webhook tunes the webhook's delivery (its Store is the controller's). Default: the
	// webhook package's defaults.
	Webhook webhook.Config
}

func (e *EventsConfig) validate() {
	if e.NodeOfflineAfter == 0 {
		e.NodeOfflineAfter = 30 * time.Second
	}
	if e.PeerExpiryNotice == 0 {
		e.PeerExpiryNotice = 24 * time.Hour
	}
	if e.WatchEvery == 0 {
		e.WatchEvery = 5 * time.Second
	}
}

// maxQueuedEvents bounds the events of the controller's own node waiting to be recorded:
// the oldest beyond it are dropped (and counted) rather than blocking the data plane.
const maxQueuedEvents = 1000

// events is the controller's event state.
type events struct {
	// queue holds the events of the controller and its own node, for the writer; made by
	// New, so that the own node's events of the first Apply wait for the writer.
	queue   chan store.Event
	dropped atomic.Uint64

	sender *webhook.Sender

	mu sync.Mutex
	// nodes is each joined node's liveness, by store ID.
	nodes map[int64]*nodeLive
	// expiring holds the peers whose coming expiry was told: peer ID and expiry.
	expiring map[peerExpiry]bool
}

type peerExpiry struct {
	peer    int64
	expires int64 // micros
}

// nodeState is what the controller last made of a node.
type nodeState int

const (
	// nodePending: it joined and never reported; its first report is "connected".
	nodePending nodeState = iota
	// nodeOnline: it reports.
	nodeOnline
	// nodeOffline: it stopped reporting; its next report is "back".
	nodeOffline
)

// nodeLive is a node's liveness as the controller follows it.
type nodeLive struct {
	state nodeState
	// last is its last report, or when the controller started watching it.
	last time.Time
}

// startEvents loads what the event log says of nodes and peers, starts the webhook sender,
// the writer of the own events and the watch of nodes and peers.
func (c *Controller) startEvents(ctx context.Context) error {
	ev := &c.ev
	nodes, expiring := map[int64]*nodeLive{}, map[peerExpiry]bool{}
	now := time.Now()
	// A node offline when the controller stopped is offline still: its next report is
	// "back". The others are given NodeOfflineAfter from now to report.
	for _, n := range c.read.Load().Nodes {
		es, _, err := c.store.ListEvents(ctx, store.EventQuery{Kind: "node", Node: n.Name, Limit: 1})
		if err != nil {
			return err
		}
		st := nodeOnline
		switch {
		case len(es) > 0 && es[0].Kind == plane.EventNodeOffline:
			st = nodeOffline
		case len(es) == 0 && n.LastSeen.IsZero():
			st = nodePending
		}
		nodes[n.ID] = &nodeLive{state: st, last: now}
	}
	// The peers whose expiry was told already (within the notice, and a little more for a
	// clock that moved).
	es, _, err := c.store.ListEvents(ctx, store.EventQuery{Kind: plane.EventPeerExpiring, Since: now.Add(-c.cfg.Events.PeerExpiryNotice - time.Hour), Limit: store.MaxEventPage})
	if err != nil {
		return err
	}
	for _, e := range es {
		id, _ := strconv.ParseInt(e.Data["peer_id"], 10, 64)
		exp, err := time.Parse(time.RFC3339Nano, e.Data["expires_at"])
		if id > 0 && err == nil {
			expiring[peerExpiry{id, exp.UnixMicro()}] = true
		}
	}
	ev.mu.Lock()
	ev.nodes, ev.expiring = nodes, expiring
	ev.mu.Unlock()
	wcfg := c.cfg.Events.Webhook
	wcfg.Store = c.store
	if wcfg.UserAgent == "" {
		wcfg.UserAgent = "popgate-webhook"
	}
	if ev.sender, err = webhook.New(wcfg, c.log.With("component", "webhook")); err != nil {
		return err
	}
	ev.sender.Start(ctx)
	c.wg.Add(1)
	go c.writeEvents()
	c.every(c.cfg.Events.WatchEvery, c.watch)
	return nil
}

// closeEvents stops the webhook sender; the writer and the watch end with c.closing.
func (c *Controller) closeEvents() {
	if c.ev.sender != nil {
		c.ev.sender.Close()
	}
}

// Event records e, an event of the controller's own node (its data plane: plane.Event's
// tenant is an ID) or of the controller. It never blocks: when the writer is behind by
// maxQueuedEvents, the oldest waiting is dropped, and counted.
func (c *Controller) Event(e plane.Event) {
	c.queueEvent(c.storeEvent(e, c.OwnNodeName(), 0))
}

// queueEvent queues a store event for the writer (which Start starts: until then they wait).
func (c *Controller) queueEvent(e store.Event) {
	q := c.ev.queue
	for {
		select {
		case q <- e:
			return
		default:
		}
		select {
		case <-q:
			c.ev.dropped.Add(1)
		default:
		}
	}
}

// storeEvent turns e, seen at node, into the log's form: its tenant's name for its ID, the
// time by the controller's clock (offset: node's clock less the controller's).
func (c *Controller) storeEvent(e plane.Event, node string, offset time.Duration) store.Event {
	se := store.Event{At: e.At.Add(-offset), Kind: e.Kind, Node: node, Subject: e.Subject, Message: e.Message, Data: e.Data}
	if e.Tenant != 0 {
		if snap := c.read.Load(); snap != nil {
			for _, t := range snap.Tenants {
				if t.ID == e.Tenant {
					se.Tenant = t.Name
					break
				}
			}
		}
	}
	return se
}

// writeEvents records the queued events, a batch at a time, until the controller closes.
func (c *Controller) writeEvents() {
	defer c.wg.Done()
	var batch []store.Event
	for {
		select {
		case <-c.closing:
			return
		case e := <-c.ev.queue:
			batch = append(batch[:0], e)
		}
	more:
		for len(batch) < 100 {
			select {
			case e := <-c.ev.queue:
				batch = append(batch, e)
			default:
				break more
			}
		}
		if _, err := c.store.AddEvents(context.Background(), batch); err != nil {
			c.log.Error("record events", "events", len(batch), "err", err)
			continue
		}
		c.ev.sender.Notify()
	}
}

// NodeEventCursor returns the newest event of node n recorded (nodesync.Source).
func (c *Controller) NodeEventCursor(ctx context.Context, n store.Node) (store.EventCursor, error) {
	return c.store.NodeEventCursor(ctx, n.ID)
}

// NodeEvents records the events node n reported of its process boot, each once
// (nodesync.Source). An event of a kind that is not valid is dropped, with a log line.
func (c *Controller) NodeEvents(ctx context.Context, n store.Node, boot int64, evs []plane.Event, offset time.Duration) error {
	nes := make([]store.NodeEvent, 0, len(evs))
	for _, e := range evs {
		if err := store.ValidateEventKind(e.Kind); err != nil {
			c.log.Warn("a node reported an event this controller refuses", "node", n.Name, "err", err)
			continue
		}
		nes = append(nes, store.NodeEvent{Seq: e.Seq, Event: c.storeEvent(e, n.Name, offset)})
	}
	added, err := c.store.AddNodeEvents(ctx, n.ID, boot, nes)
	if err != nil {
		return err
	}
	if len(added) > 0 {
		c.ev.sender.Notify()
	}
	return nil
}

// nodeReported notes that node n reported now: its first report ever is "connected", one
// after it was offline "back".
func (c *Controller) nodeReported(n store.Node) {
	now := time.Now()
	c.ev.mu.Lock()
	if c.ev.nodes == nil {
		c.ev.mu.Unlock()
		return
	}
	l := c.ev.nodes[n.ID]
	if l == nil {
		l = &nodeLive{state: nodePending}
		c.ev.nodes[n.ID] = l
	}
	prev, since := l.state, l.last
	l.state, l.last = nodeOnline, now
	c.ev.mu.Unlock()
	subject := store.NodeTarget(n.Name)
	switch prev {
	case nodePending:
		c.queueEvent(store.Event{At: now, Kind: plane.EventNodeConnected, Node: n.Name, Subject: subject,
			Message: fmt.Sprintf("node %s (%s) connected for the first time", n.Name, n.Roles), Data: map[string]string{"node": n.Name, "roles": n.Roles, "region": n.Region}})
	case nodeOffline:
		c.queueEvent(store.Event{At: now, Kind: plane.EventNodeBack, Node: n.Name, Subject: subject,
			Message: fmt.Sprintf("node %s is back: it reports again (it was offline since %s)", n.Name, since.UTC().Format(time.RFC3339)),
			Data:    map[string]string{"node": n.Name, "offline_since": since.UTC().Format(time.RFC3339)}})
	}
}

// watch looks at nodes and peers (every WatchEvery) and tells what it found.
func (c *Controller) watch(now time.Time) {
	snap := c.read.Load()
	if snap == nil {
		return
	}
	c.ev.mu.Lock()
	evs := c.watchNodesLocked(snap, now)
	evs = c.watchPeersLocked(snap, now, evs)
	c.ev.mu.Unlock()
	for _, e := range evs {
		c.queueEvent(e)
	}
}

// watchNodesLocked makes the nodes of snap that sent no report for NodeOfflineAfter offline
// and returns their events; it follows the nodes that joined and forgets those removed.
// The caller holds c.ev.mu.
func (c *Controller) watchNodesLocked(snap *store.Snapshot, now time.Time) []store.Event {
	var offline []store.Event
	live := make(map[int64]bool, len(snap.Nodes))
	for _, n := range snap.Nodes {
		live[n.ID] = true
		l := c.ev.nodes[n.ID]
		if l == nil {
			// Joined since the controller started: it has NodeOfflineAfter to report.
			c.ev.nodes[n.ID] = &nodeLive{state: nodePending, last: now}
			continue
		}
		if l.state == nodeOffline || now.Sub(l.last) < c.cfg.Events.NodeOfflineAfter {
			continue
		}
		what := "sent no report"
		if l.state == nodePending {
			what = "has not connected"
		}
		offline = append(offline, store.Event{At: now, Kind: plane.EventNodeOffline, Node: n.Name, Subject: store.NodeTarget(n.Name),
			Message: fmt.Sprintf("node %s is offline: it %s for %s", n.Name, what, now.Sub(l.last).Round(time.Second)),
			Data:    map[string]string{"node": n.Name, "last_report": l.last.UTC().Format(time.RFC3339)}})
		l.state = nodeOffline
	}
	maps.DeleteFunc(c.ev.nodes, func(id int64, _ *nodeLive) bool { return !live[id] })
	return offline
}

// watchPeersLocked appends to evs an event for each enabled peer of snap that expires
// within PeerExpiryNotice, once per expiry time. The caller holds c.ev.mu.
func (c *Controller) watchPeersLocked(snap *store.Snapshot, now time.Time, evs []store.Event) []store.Event {
	for i := range snap.Peers {
		p := &snap.Peers[i]
		if p.ExpiresAt.IsZero() || !p.Enabled || !p.ExpiresAt.After(now) || p.ExpiresAt.Sub(now) > c.cfg.Events.PeerExpiryNotice {
			continue
		}
		k := peerExpiry{p.ID, p.ExpiresAt.UnixMicro()}
		if c.ev.expiring[k] {
			continue
		}
		c.ev.expiring[k] = true
		evs = append(evs, store.Event{At: now, Kind: plane.EventPeerExpiring, Node: c.OwnNodeName(), Tenant: p.TenantName,
			Subject: store.PeerTarget(p.TenantName, p.Name),
			Message: fmt.Sprintf("peer %s of tenant %s expires at %s, in %s", p.Name, p.TenantName, p.ExpiresAt.UTC().Format(time.RFC3339), p.ExpiresAt.Sub(now).Round(time.Minute)),
			Data: map[string]string{"peer": p.Name, "peer_id": strconv.FormatInt(p.ID, 10), "tenant": p.TenantName,
				"expires_at": p.ExpiresAt.UTC().Format(time.RFC3339Nano)}})
	}
	// Forget what is past.
	maps.DeleteFunc(c.ev.expiring, func(k peerExpiry, _ bool) bool { return k.expires < now.UnixMicro() })
	return evs
}

// Events returns the events q selects, newest first, and whether more follow.
func (c *Controller) Events(ctx context.Context, q store.EventQuery) ([]store.Event, bool, error) {
	return c.store.ListEvents(ctx, q)
}

// WebhookInfo is the webhook and how its delivery goes.
type WebhookInfo struct {
	store.Webhook
	// Queued is how many events wait to be sent (at most MaxBacklog and one).
	Queued int
	// Retrying is the event being retried, 0 for none; NextAttempt when.
	Retrying    int64
	NextAttempt time.Time
}

// SetWebhook makes u the webhook and returns it with its new secret, which is shown this
// once. Events recorded from now on are sent to it.
func (c *Controller) SetWebhook(ctx context.Context, u string) (store.Webhook, string, error) {
	w, secret, err := c.store.SetWebhook(ctx, u)
	if err != nil {
		return store.Webhook{}, "", err
	}
	if c.ev.sender != nil {
		c.ev.sender.Notify()
	}
	return w, secret, nil
}

// Webhook returns the webhook and how its delivery goes; an error wrapping
// store.ErrNotFound when none is set.
func (c *Controller) Webhook(ctx context.Context) (WebhookInfo, error) {
	w, err := c.store.Webhook(ctx)
	if err != nil {
		return WebhookInfo{}, err
	}
	info := WebhookInfo{Webhook: w}
	if info.Queued, err = c.store.CountEventsAfter(ctx, w.SentID, webhook.DefaultMaxBacklog+1); err != nil {
		return WebhookInfo{}, err
	}
	if c.ev.sender != nil {
		st := c.ev.sender.Status()
		info.Retrying, info.NextAttempt = st.Retrying, st.NextAttempt
	}
	return info, nil
}

// RemoveWebhook removes the webhook: nothing is sent any more.
func (c *Controller) RemoveWebhook(ctx context.Context) error {
	if err := c.store.RemoveWebhook(ctx); err != nil {
		return err
	}
	if c.ev.sender != nil {
		c.ev.sender.Notify()
	}
	return nil
}

// EventsDropped is how many events of the controller and its own node were dropped before
// they were recorded (the store was too slow).
func (c *Controller) EventsDropped() uint64 { return c.ev.dropped.Load() }
