package control

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control/webhook"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/plane/planetest"
	"github.com/popgate/popgate/store"
)

// eventsConfig is a controller config whose watch runs fast.
func eventsConfig() Config {
	return Config{PublicEndpoint: "vpn.example.com:51820", MTU: 1420, Region: "local",
		Events: EventsConfig{NodeOfflineAfter: 300 * time.Millisecond, WatchEvery: 20 * time.Millisecond,
			Webhook: webhook.Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}}}
}

// waitEvents waits until the log holds events of the kinds want (oldest first, by kind and
// subject) and returns them.
func waitEvents(t *testing.T, c *Controller, q store.EventQuery, want []string) []store.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		es, _, err := c.Events(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := len(es) - 1; i >= 0; i-- {
			got = append(got, es[i].Kind+" "+es[i].Subject)
		}
		if slices.Equal(got, want) {
			return es
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %q, want %q", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestControllerNodeEvents: a node that joined is "connected" at its first report, offline
// after reporting nothing for NodeOfflineAfter, "back" at its next report; a controller
// that restarts keeps an offline node offline (its report is "back", not "connected") and
// gives the others time to report.
func TestControllerNodeEvents(t *testing.T) {
	st := openTestStore(t)
	c := startController(t, st, &planetest.DataPlane{}, eventsConfig())
	p1 := joinTestNode(t, c, st, "p1", "pop", 1)
	x1 := joinTestNode(t, c, st, "x1", "exit", 2)
	rep := &plane.Report{Format: plane.Format}
	c.NodeReported(p1, rep, 0)
	c.NodeReported(x1, rep, 0)
	q := store.EventQuery{Kind: "node"}
	waitEvents(t, c, q, []string{"node.connected node:p1", "node.connected node:x1"})
	// x1 keeps reporting, p1 stops.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				c.NodeReported(x1, rep, 0)
			}
		}
	}()
	waitEvents(t, c, q, []string{"node.connected node:p1", "node.connected node:x1", "node.offline node:p1"})
	c.NodeReported(p1, rep, 0)
	waitEvents(t, c, q, []string{"node.connected node:p1", "node.connected node:x1", "node.offline node:p1", "node.back node:p1"})
	close(stop)
	wg.Wait()

	// Both go quiet, the controller restarts: both offline once; a report is "back".
	qp1, qx1 := store.EventQuery{Kind: "node", Node: "p1"}, store.EventQuery{Kind: "node", Node: "x1"}
	waitEvents(t, c, qp1, []string{"node.connected node:p1", "node.offline node:p1", "node.back node:p1", "node.offline node:p1"})
	waitEvents(t, c, qx1, []string{"node.connected node:x1", "node.offline node:x1"})
	c.Close()
	c2 := startController(t, st, &planetest.DataPlane{}, eventsConfig())
	time.Sleep(500 * time.Millisecond) // more than NodeOfflineAfter: nothing new to say
	c2.NodeReported(x1, rep, 0)
	waitEvents(t, c2, qp1, []string{"node.connected node:p1", "node.offline node:p1", "node.back node:p1", "node.offline node:p1"})
	es := waitEvents(t, c2, qx1, []string{"node.connected node:x1", "node.offline node:x1", "node.back node:x1"})
	if e := es[0]; e.Node != "x1" || e.Tenant != "" || e.Data["node"] != "x1" {
		t.Errorf("event %+v", e)
	}
}

// TestControllerReportedEvents: a node's events are recorded as that node's, with the
// tenant's name for its ID and the time by the controller's clock, each once; a kind the
// controller refuses is dropped alone. The controller's own node's events are its own.
func TestControllerReportedEvents(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	c := startController(t, st, &planetest.DataPlane{}, eventsConfig())
	acme, err := c.AddTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	p1 := joinTestNode(t, c, st, "p1", "pop", 1)
	at := time.Now().Add(time.Hour) // the node's clock is an hour ahead
	evs := []plane.Event{
		{Seq: 1, At: at, Kind: plane.EventFailover, Tenant: acme.ID, Subject: "route:acme/10.99.0.0/16", Message: "x1 → x2"},
		{Seq: 2, At: at, Kind: "Not A Kind", Subject: "x"},
		{Seq: 3, At: at, Kind: plane.EventLinkDown, Tenant: 999, Subject: "link:p1/x1"},
	}
	for range 2 { // sent again: recorded once
		if err := c.NodeEvents(ctx, p1, 42, evs, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	c.Event(plane.Event{At: time.Now(), Kind: plane.EventLinkDown, Subject: "link:controller/x1"})
	es := waitEvents(t, c, store.EventQuery{}, []string{"failover route:acme/10.99.0.0/16", "link.down link:p1/x1", "link.down link:controller/x1"})
	if e := es[2]; e.Node != "p1" || e.Tenant != "acme" || time.Until(e.At).Abs() > time.Minute {
		t.Errorf("the failover as recorded: %+v", e)
	}
	if e := es[1]; e.Node != "p1" || e.Tenant != "" {
		t.Errorf("an event of an unknown tenant: %+v", e)
	}
	if e := es[0]; e.Node != "controller" {
		t.Errorf("the controller's own: %+v", e)
	}
	if cur, err := c.NodeEventCursor(ctx, p1); err != nil || cur != (store.EventCursor{Boot: 42, Seq: 3}) {
		t.Errorf("cursor %+v, %v", cur, err)
	}
}

// TestControllerPeerExpiring: a peer that expires within the notice is told of once, also
// across a restart; a new expiry is told again; disabled peers and those far off are not.
func TestControllerPeerExpiring(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	c := startController(t, st, &planetest.DataPlane{}, eventsConfig())
	c.AddTenant(ctx, "acme")
	for _, name := range []string{"soon", "later", "off"} {
		if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	soon, later := time.Now().Add(2*time.Hour), time.Now().Add(48*time.Hour)
	c.SetPeerEnabled(ctx, "acme", "off", false)
	c.SetPeerExpiry(ctx, "acme", "off", &soon)
	c.SetPeerExpiry(ctx, "acme", "later", &later)
	c.SetPeerExpiry(ctx, "acme", "soon", &soon)
	q := store.EventQuery{Kind: plane.EventPeerExpiring}
	es := waitEvents(t, c, q, []string{"peer.expiring peer:acme/soon"})
	if e := es[0]; e.Tenant != "acme" || e.Data["expires_at"] == "" {
		t.Errorf("event %+v", e)
	}
	c.Close()
	c2 := startController(t, st, &planetest.DataPlane{}, eventsConfig())
	time.Sleep(100 * time.Millisecond) // several watches
	sooner := time.Now().Add(time.Hour)
	c2.SetPeerExpiry(ctx, "acme", "soon", &sooner)
	waitEvents(t, c2, q, []string{"peer.expiring peer:acme/soon", "peer.expiring peer:acme/soon"})
}

// TestControllerWebhook: an event recorded is delivered to the webhook set, signed; the
// webhook's state shows what was delivered and never the secret.
func TestControllerWebhook(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	c := startController(t, st, &planetest.DataPlane{}, eventsConfig())
	var mu sync.Mutex
	var secret string
	got := make(chan webhook.Payload, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		ok := r.Header.Get(webhook.SignatureHeader) == webhook.Sign(secret, body)
		mu.Unlock()
		var p webhook.Payload
		if !ok || json.Unmarshal(body, &p) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		got <- p
	}))
	defer srv.Close()
	if _, err := c.Webhook(ctx); err == nil {
		t.Fatal("a webhook before any was set")
	}
	_, s, err := c.SetWebhook(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	secret = s
	mu.Unlock()
	c.Event(plane.Event{At: time.Now(), Kind: plane.EventLinkDown, Subject: "link:controller/x1", Message: "down"})
	select {
	case p := <-got:
		if p.Kind != plane.EventLinkDown || p.Node != "controller" || p.Message != "down" {
			t.Errorf("delivered %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing delivered")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		w, err := c.Webhook(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if w.Delivered == 1 && w.Queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook %+v", w)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.RemoveWebhook(ctx); err != nil {
		t.Fatal(err)
	}
}
