package store

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// eventKinds returns the kinds of es, in order.
func eventKinds(es []Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Kind
	}
	return out
}

// TestEventsOrderAndQuery: the log lists the newest first (by when it happened, then by
// when it was recorded, so that a node's event reported late sits where it happened),
// EventsAfter in the order recorded; the filters keep a kind's family, a tenant's events
// (never the network's) and a node's.
func TestEventsOrderAndQuery(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s := openOpts(t, Options{Path: t.TempDir() + "/popgate.db", Now: clock.Now})
	t0 := clock.Now()
	added, err := s.AddEvents(ctx, []Event{
		{At: t0, Kind: "link.down", Node: "p1", Subject: "link:p1/x1", Message: "x1 down", Data: map[string]string{"peer": "x1"}},
		{At: t0.Add(2 * time.Second), Kind: "failover", Node: "p1", Tenant: "acme", Subject: "route:acme/10.0.0.0/8", Message: "x1 → x2"},
		// Reported late: it happened before the failover.
		{At: t0.Add(time.Second), Kind: "link.downstream", Node: "p2", Subject: "link:p2/x1"},
		{At: t0.Add(3 * time.Second), Kind: "node.offline", Node: "x1", Subject: "node:x1"},
		{At: t0.Add(3 * time.Second), Kind: "peer.expiring", Node: "controller", Tenant: "beta", Subject: "peer:beta/laptop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range added {
		if e.ID != int64(i+1) {
			t.Errorf("event %d got ID %d", i, e.ID)
		}
	}
	list := func(q EventQuery) []string {
		t.Helper()
		es, _, err := s.ListEvents(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return eventKinds(es)
	}
	for _, c := range []struct {
		q    EventQuery
		want []string
	}{
		{EventQuery{}, []string{"peer.expiring", "node.offline", "failover", "link.downstream", "link.down"}},
		// "link" is the family link.*; link.down is that kind and its own family, not
		// link.downstream.
		{EventQuery{Kind: "link"}, []string{"link.downstream", "link.down"}},
		{EventQuery{Kind: "link.down"}, []string{"link.down"}},
		{EventQuery{Kind: "link."}, []string{"link.downstream", "link.down"}},
		{EventQuery{Kind: "fail"}, []string{}},
		{EventQuery{Tenant: "acme"}, []string{"failover"}},
		{EventQuery{Node: "p1"}, []string{"failover", "link.down"}},
		{EventQuery{Since: t0.Add(time.Second), Until: t0.Add(3 * time.Second)}, []string{"failover", "link.downstream"}},
		{EventQuery{Limit: 2}, []string{"peer.expiring", "node.offline"}},
		{EventQuery{Limit: 2, Offset: 4}, []string{"link.down"}},
	} {
		if got := list(c.q); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ListEvents(%+v) = %q, want %q", c.q, got, c.want)
		}
	}
	if _, more, _ := s.ListEvents(ctx, EventQuery{Limit: 2}); !more {
		t.Error("ListEvents with limit 2 of 5: more = false")
	}
	es, _, _ := s.ListEvents(ctx, EventQuery{Kind: "link.down"})
	if want := (Event{ID: 1, At: t0, Kind: "link.down", Node: "p1", Subject: "link:p1/x1", Message: "x1 down", Data: map[string]string{"peer": "x1"}}); !reflect.DeepEqual(es[0], want) {
		t.Errorf("read back %+v\nwant %+v", es[0], want)
	}
	after, err := s.EventsAfter(ctx, 1, 3)
	if err != nil || !reflect.DeepEqual(eventKinds(after), []string{"failover", "link.downstream", "node.offline"}) {
		t.Errorf("EventsAfter(1, 3) = %q, %v", eventKinds(after), err)
	}
	if id, err := lastEventID(ctx, s.db); err != nil || id != 5 {
		t.Errorf("lastEventID = %d, %v", id, err)
	}
	if n, err := s.CountEventsAfter(ctx, 1, 3); err != nil || n != 3 {
		t.Errorf("CountEventsAfter(1, 3) = %d, %v; want 3 (capped)", n, err)
	}
	// Of the 4 after the first, keeping 1 drops 3 (up to #4); keeping 4 drops none.
	if cut, n, err := s.EventBacklog(ctx, 1, 1); err != nil || cut != 4 || n != 3 {
		t.Errorf("EventBacklog(1, 1) = %d, %d, %v; want 4, 3", cut, n, err)
	}
	if cut, n, err := s.EventBacklog(ctx, 1, 4); err != nil || cut != 0 || n != 0 {
		t.Errorf("EventBacklog(1, 4) = %d, %d, %v; want 0, 0", cut, n, err)
	}
}

// TestEventsCleaned: what is too long is cut, control characters cannot forge a line, an
// invalid tenant is dropped, data is bounded; an invalid kind is refused.
func TestEventsCleaned(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	data := map[string]string{}
	for i := range 40 {
		data[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", 1000)
	}
	es, err := s.AddEvents(ctx, []Event{{Kind: "link.down", Node: strings.Repeat("n", 200), Tenant: "Not a tenant!",
		Subject: "link:a\nFAKE", Message: strings.Repeat("m", 5000), Data: data}})
	if err != nil {
		t.Fatal(err)
	}
	e := es[0]
	if len([]rune(e.Node)) != maxEventNode || e.Tenant != "" || strings.Contains(e.Subject, "\n") || len([]rune(e.Message)) != maxEventMessage {
		t.Errorf("cleaned %+v", e)
	}
	if len(e.Data) == 0 || len(e.Data) > MaxEventDataKeys || e.Data["k00"] == "" {
		t.Errorf("data kept %d keys", len(e.Data))
	}
	got, _, _ := s.ListEvents(ctx, EventQuery{})
	if !reflect.DeepEqual(got[0], e) {
		t.Errorf("stored %+v\nreturned %+v", got[0], e)
	}
	for _, bad := range []string{"", "Link", "link down", "1x", strings.Repeat("a", 65)} {
		if _, err := s.AddEvents(ctx, []Event{{Kind: bad}}); err == nil {
			t.Errorf("kind %q accepted", bad)
		} else {
			wantErr(t, err, ErrInvalid, "event kind")
		}
	}
}

// TestEventsBounded: the log keeps the newest maxEvents (by the order recorded) and nothing
// older than EventRetention; IDs go on.
func TestEventsBounded(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s := openOpts(t, Options{Path: t.TempDir() + "/popgate.db", Now: clock.Now})
	s.maxEvents = 10
	for i := range 25 {
		if _, err := s.AddEvents(ctx, []Event{{Kind: "link.down", Message: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// A batch larger than the bound keeps its newest.
	batch := make([]Event, 12)
	for i := range batch {
		batch[i] = Event{Kind: "link.up", Message: fmt.Sprint(100 + i)}
	}
	if _, err := s.AddEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	es, _, err := s.ListEvents(ctx, EventQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 10 || es[0].Message != "111" || es[9].Message != "102" || es[0].ID != 37 {
		t.Errorf("kept %d: newest %+v, oldest %+v", len(es), es[0], es[len(es)-1])
	}
	var rows int
	s.db.QueryRow("SELECT count(*) FROM events").Scan(&rows)
	if rows != 10 {
		t.Errorf("%d rows in the table, want 10", rows)
	}

	// Thirty days on, the next event is alone.
	clock.Advance(EventRetention + time.Second)
	if _, err := s.AddEvents(ctx, []Event{{Kind: "node.back"}}); err != nil {
		t.Fatal(err)
	}
	es, _, _ = s.ListEvents(ctx, EventQuery{})
	if len(es) != 1 || es[0].Kind != "node.back" || es[0].ID != 38 {
		t.Errorf("after 30 days: %+v", es)
	}
	if id, _ := lastEventID(ctx, s.db); id != 38 {
		t.Errorf("lastEventID %d, want 38", id)
	}
}

// TestNodeEvents: a node's events are recorded once: a report sent again adds nothing, the
// next adds only what is new, a restarted node (another boot) starts again from 1; a
// removed node's events are refused and its cursor goes with it.
func TestNodeEvents(t *testing.T) {
	ctx := WithActor(context.Background(), Actor{Name: "root"})
	clock := newClock()
	s := openOpts(t, Options{Path: t.TempDir() + "/popgate.db", Now: clock.Now})
	tok, secret := joinToken(t, s, NewJoinToken{Roles: "pop", ExpiresAt: clock.Now().Add(time.Hour)})
	n, err := s.RedeemJoinToken(ctx, Redemption{TokenID: tok.ID, Secret: secret, Name: "p1", Pin: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(seq uint64) NodeEvent {
		return NodeEvent{Seq: seq, Event: Event{Kind: "link.down", Node: "p1", Message: fmt.Sprint(seq)}}
	}
	if c, err := s.NodeEventCursor(ctx, n.ID); err != nil || c != (EventCursor{}) {
		t.Fatalf("cursor before any: %+v, %v", c, err)
	}
	messages := func(es []Event) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Message)
		}
		return out
	}
	for _, c := range []struct {
		boot int64
		evs  []NodeEvent
		want []string
	}{
		{7, []NodeEvent{ev(1), ev(2)}, []string{"1", "2"}},
		{7, []NodeEvent{ev(1), ev(2)}, nil},                       // sent again
		{7, []NodeEvent{ev(2), ev(3), ev(4)}, []string{"3", "4"}}, // partly new
		{9, []NodeEvent{ev(1)}, []string{"1"}},                    // restarted
		{9, []NodeEvent{ev(1), ev(1 << 63)}, nil},                 // a number out of range
	} {
		got, err := s.AddNodeEvents(ctx, n.ID, c.boot, c.evs)
		if err != nil || !reflect.DeepEqual(messages(got), c.want) {
			t.Errorf("AddNodeEvents(boot %d, %d events) = %q, %v; want %q", c.boot, len(c.evs), messages(got), err, c.want)
		}
	}
	if c, err := s.NodeEventCursor(ctx, n.ID); err != nil || c != (EventCursor{Boot: 9, Seq: 1}) {
		t.Errorf("cursor %+v, %v", c, err)
	}
	if es, _, _ := s.ListEvents(ctx, EventQuery{}); len(es) != 5 {
		t.Errorf("%d events recorded, want 5", len(es))
	}
	if _, _, err := s.RemoveNode(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	_, err = s.AddNodeEvents(ctx, n.ID, 9, []NodeEvent{ev(2)})
	wantErr(t, err, ErrNotFound, "removed")
	var cursors int
	s.db.QueryRow("SELECT count(*) FROM event_cursors").Scan(&cursors)
	if cursors != 0 {
		t.Errorf("%d cursors after the node's removal", cursors)
	}
}

// TestWebhook: set makes a secret that opens and is shown once; show never has it; a new
// set starts after the events recorded so far; delivery counts add up, only for the
// webhook they belong to; remove removes. Set and remove are audited with the URL's origin
// only (its path may be a secret of the receiver's).
func TestWebhook(t *testing.T) {
	ctx := WithActor(context.Background(), Actor{Name: "root"})
	clock := newClock()
	s := openOpts(t, Options{Path: t.TempDir() + "/popgate.db", Now: clock.Now})
	if _, err := s.Webhook(ctx); err == nil {
		t.Fatal("a webhook before any was set")
	}
	for _, bad := range []string{"", "alerts.example.com", "ftp://x.example/", "https://", "https://u:p@x.example/", "https://x.example/#f", " https://x.example/", "https://x.example/" + strings.Repeat("a", 2048)} {
		if _, _, err := s.SetWebhook(ctx, bad); err == nil {
			t.Errorf("SetWebhook(%q) accepted", bad)
		} else {
			wantErr(t, err, ErrInvalid, "webhook URL")
		}
	}
	s.AddEvents(ctx, []Event{{Kind: "link.down"}, {Kind: "link.up"}})
	w, secret, err := s.SetWebhook(ctx, "https://hooks.example.com/services/T0/B0/SECRETPATH")
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 64 || w.SentID != 2 {
		t.Errorf("secret %q, sent ID %d (want 2: the events before are not sent)", secret, w.SentID)
	}
	if got, err := s.WebhookSecret(ctx); err != nil || got != secret {
		t.Errorf("WebhookSecret = %q, %v", got, err)
	}
	var sealed []byte
	s.db.QueryRow("SELECT secret_enc FROM webhook").Scan(&sealed)
	if strings.Contains(string(sealed), secret) {
		t.Error("the secret is stored in the clear")
	}
	clock.Advance(time.Minute)
	if err := s.RecordWebhookDelivery(ctx, WebhookDelivery{Webhook: w.CreatedAt, SentID: 5, Delivered: 2, Failed: 3, Attempt: clock.Now(), OK: true}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	s.RecordWebhookDelivery(ctx, WebhookDelivery{Webhook: w.CreatedAt, SentID: 4, GivenUp: 1, Dropped: 7, Failed: 1, Attempt: clock.Now(), Error: "500 Internal Server Error"})
	got, err := s.Webhook(ctx)
	want := Webhook{URL: w.URL, CreatedAt: w.CreatedAt, SentID: 5, Delivered: 2, Failed: 4, GivenUp: 1, Dropped: 7,
		LastAttempt: clock.Now().Truncate(time.Microsecond), LastOK: clock.Now().Add(-time.Minute).Truncate(time.Microsecond), LastError: "500 Internal Server Error"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Webhook = %+v, %v\nwant %+v", got, err, want)
	}
	// Set again: a new secret, counts from zero; the old one's delivery touches nothing.
	clock.Advance(time.Minute)
	w2, secret2, err := s.SetWebhook(ctx, "http://127.0.0.1:9/hook")
	if err != nil || secret2 == secret || w2.SentID != 2 {
		t.Fatalf("SetWebhook again: %+v, %v", w2, err)
	}
	s.RecordWebhookDelivery(ctx, WebhookDelivery{Webhook: w.CreatedAt, SentID: 9, Delivered: 1})
	if got, _ := s.Webhook(ctx); got.Delivered != 0 || got.SentID != 2 || got.URL != "http://127.0.0.1:9/hook" {
		t.Errorf("after a stale delivery record: %+v", got)
	}
	if err := s.RemoveWebhook(ctx); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.RemoveWebhook(ctx), ErrNotFound, "no webhook")
	if _, err := s.WebhookSecret(ctx); err == nil {
		t.Error("a secret after the webhook was removed")
	}
	audit, _, _ := s.ListAudit(ctx, AuditQuery{Action: "webhook"})
	if len(audit) != 3 {
		t.Fatalf("audit %+v", audit)
	}
	for _, e := range audit {
		if strings.Contains(e.Detail, "SECRETPATH") || e.Target != WebhookTarget {
			t.Errorf("audit entry %+v", e)
		}
	}
	if audit[2].Detail != "events go to https://hooks.example.com (a new secret)" {
		t.Errorf("audit detail %q", audit[2].Detail)
	}
}

// TestCheckWebhookSecret: Check opens the webhook's sealed secret and says what to do when
// it does not.
func TestCheckWebhookSecret(t *testing.T) {
	ctx := WithActor(context.Background(), Actor{Name: "root"})
	s, opts := openTest(t)
	if _, _, err := s.SetWebhook(ctx, "https://alerts.example.com/popgate"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if r, err := Check(ctx, opts.Path, ""); err != nil || !r.OK() {
		t.Fatalf("Check: %+v, %v", r, err)
	}
	db := rawDB(t, opts.Path)
	if _, err := db.Exec("UPDATE webhook SET secret_enc = ? WHERE id = 1", make([]byte, 73)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r, err := Check(ctx, opts.Path, "")
	if err != nil || r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), "set the webhook again") {
		t.Errorf("Check of a damaged secret: %+v, %v", r, err)
	}
}
