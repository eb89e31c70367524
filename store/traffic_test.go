package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// trafficNow is the tests' clock: a whole hour, so that bucket boundaries read easily.
var trafficNow = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func tr(rx, tx uint64) Traffic {
	return Traffic{RxBytes: rx, TxBytes: tx, RxPackets: rx / 100, TxPackets: tx / 100}
}

// TestTrafficHistory: deltas add up in their bucket (a minute per tenant, 5 minutes per
// peer), a read sums the buckets into its step, and nothing is stored for deltas without
// traffic, of tenants or peers that are gone, or older than the history keeps.
func TestTrafficHistory(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	bravo := mustTenant(t, s, "bravo")
	laptop := mustPeer(t, s, newPeer(t, "acme", "laptop"))
	now := trafficNow
	at := func(d time.Duration) time.Time { return now.Add(d) }

	err := s.AddTraffic(ctx, TrafficRecord{
		Tenants: []TrafficDelta{
			{ID: acme.ID, At: at(-10*time.Minute + 5*time.Second), Traffic: tr(100, 1000)},
			{ID: acme.ID, At: at(-10*time.Minute + 55*time.Second), Traffic: tr(200, 2000)}, // same minute
			{ID: acme.ID, At: at(-9 * time.Minute), Traffic: tr(300, 0)},
			{ID: acme.ID, At: at(-time.Hour - time.Second), Traffic: tr(7, 7)},
			{ID: bravo.ID, At: at(-9 * time.Minute), Traffic: Traffic{}},                 // nothing: no row
			{ID: 9999, At: at(-9 * time.Minute), Traffic: tr(1, 1)},                      // no such tenant
			{ID: acme.ID, At: at(-TenantTrafficKeep - 2*time.Minute), Traffic: tr(5, 5)}, // too old
		},
		Peers: []TrafficDelta{
			{ID: laptop.ID, At: at(-10 * time.Minute), Traffic: tr(100, 1000)},
			{ID: laptop.ID, At: at(-6 * time.Minute), Traffic: tr(200, 2000)}, // same 5 minutes
			{ID: laptop.ID, At: at(-4 * time.Minute), Traffic: tr(300, 0)},
			{ID: 9999, At: at(-4 * time.Minute), Traffic: tr(1, 1)},
		},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, "tenant_traffic"); n != 3 {
		t.Errorf("%d tenant rows, want 3 (two minutes and the hour before)", n)
	}
	// A second write adds to the buckets that exist.
	if err := s.AddTraffic(ctx, TrafficRecord{Tenants: []TrafficDelta{{ID: acme.ID, At: at(-9 * time.Minute), Traffic: tr(1, 1)}}}, now); err != nil {
		t.Fatal(err)
	}

	got, err := s.TenantTraffic(ctx, acme.ID, at(-30*time.Minute), now, TenantTrafficStep)
	if err != nil {
		t.Fatal(err)
	}
	want := []TrafficSample{
		{At: at(-10 * time.Minute), Traffic: Traffic{300, 3000, 3, 30}},
		{At: at(-9 * time.Minute), Traffic: Traffic{301, 1, 3, 0}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("acme by minute:\n got %+v\nwant %+v", got, want)
	}
	got, err = s.TenantTraffic(ctx, acme.ID, at(-2*time.Hour), now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want = []TrafficSample{
		{At: at(-2 * time.Hour), Traffic: tr(7, 7)},
		{At: at(-time.Hour), Traffic: Traffic{601, 3001, 6, 30}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("acme by hour:\n got %+v\nwant %+v", got, want)
	}
	if got, err := s.TenantTraffic(ctx, bravo.ID, at(-time.Hour), now, TenantTrafficStep); err != nil || len(got) != 0 {
		t.Errorf("bravo, which had no traffic: %v, %v", got, err)
	}

	got, err = s.PeerTraffic(ctx, laptop.ID, at(-time.Hour), now, PeerTrafficStep)
	if err != nil {
		t.Fatal(err)
	}
	want = []TrafficSample{
		{At: at(-10 * time.Minute), Traffic: Traffic{300, 3000, 3, 30}},
		{At: at(-5 * time.Minute), Traffic: tr(300, 0)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("laptop by 5 minutes:\n got %+v\nwant %+v", got, want)
	}
	for _, step := range []time.Duration{time.Minute, 7 * time.Minute, 0} {
		if _, err := s.PeerTraffic(ctx, laptop.ID, at(-time.Hour), now, step); !errors.Is(err, ErrInvalid) {
			t.Errorf("a peer's history by %s: %v, want ErrInvalid", step, err)
		}
	}

	// A removed peer's history goes with it.
	if _, err := s.RemovePeer(ctx, "acme", "laptop"); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, "peer_traffic"); n != 0 {
		t.Errorf("%d rows of the removed peer's history are left", n)
	}
}

// TestTrafficPrune: each write deletes what is older than the history keeps, so a tenant
// never has more than 7 days of minutes, a peer more than 48 hours of 5 minutes.
func TestTrafficPrune(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	laptop := mustPeer(t, s, newPeer(t, "acme", "laptop"))
	fill := func(now time.Time, span time.Duration) TrafficRecord {
		var rec TrafficRecord
		for d := time.Duration(0); d < span; d += time.Minute {
			at := now.Add(-d)
			rec.Tenants = append(rec.Tenants, TrafficDelta{ID: acme.ID, At: at, Traffic: tr(1, 1)})
			rec.Peers = append(rec.Peers, TrafficDelta{ID: laptop.ID, At: at, Traffic: tr(1, 1)})
		}
		return rec
	}
	now := trafficNow
	begin := time.Now()
	// Every minute of the 7 days before now, and a day more that is too old to keep.
	if err := s.AddTraffic(ctx, fill(now, TenantTrafficKeep+24*time.Hour), now); err != nil {
		t.Fatal(err)
	}
	t.Logf("one write of %d minutes of a tenant and a peer: %v", int((TenantTrafficKeep+24*time.Hour)/time.Minute), time.Since(begin).Round(time.Millisecond))
	tenantMax := int(TenantTrafficKeep/TenantTrafficStep) + 1 // the bucket now is in, and those of the 7 days before
	peerMax := int(PeerTrafficKeep/PeerTrafficStep) + 1
	if n := countRows(t, s, "tenant_traffic"); n != tenantMax {
		t.Errorf("%d tenant rows after 8 days of minutes, want %d", n, tenantMax)
	}
	if n := countRows(t, s, "peer_traffic"); n != peerMax {
		t.Errorf("%d peer rows after 8 days of minutes, want %d", n, peerMax)
	}

	// A day later, with the next day's traffic: the day that fell out of the window is gone.
	later := now.Add(24 * time.Hour)
	if err := s.AddTraffic(ctx, fill(later, 24*time.Hour), later); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, "tenant_traffic"); n > tenantMax {
		t.Errorf("%d tenant rows a day later, want at most %d", n, tenantMax)
	}
	if n := countRows(t, s, "peer_traffic"); n > peerMax {
		t.Errorf("%d peer rows a day later, want at most %d", n, peerMax)
	}
	var oldest int64
	if err := s.db.QueryRowContext(ctx, "SELECT min(at) FROM tenant_traffic").Scan(&oldest); err != nil {
		t.Fatal(err)
	}
	if got, cut := fromMicros(oldest), later.Add(-TenantTrafficKeep); got.Before(cut) {
		t.Errorf("the oldest tenant bucket starts at %s, before the history's start %s", got, cut)
	}
	// A write with nothing to add prunes too.
	muchLater := later.Add(TenantTrafficKeep + time.Hour)
	if err := s.AddTraffic(ctx, TrafficRecord{}, muchLater); err != nil {
		t.Fatal(err)
	}
	if n, m := countRows(t, s, "tenant_traffic"), countRows(t, s, "peer_traffic"); n+m != 0 {
		t.Errorf("%d tenant and %d peer rows left a week after the last traffic", n, m)
	}
}

// TestTrafficSchema: the schema refuses rows the history never holds.
func TestTrafficSchema(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	minute := trafficNow.UnixMicro()
	for _, tc := range []struct {
		name string
		sql  string
		args []any
	}{
		{"no traffic", "INSERT INTO tenant_traffic VALUES (?, ?, 0, 0, 0, 0)", []any{acme.ID, minute}},
		{"not a whole minute", "INSERT INTO tenant_traffic VALUES (?, ?, 1, 1, 1, 1)", []any{acme.ID, minute + 1}},
		{"negative", "INSERT INTO tenant_traffic VALUES (?, ?, -1, 5, 1, 1)", []any{acme.ID, minute}},
		{"unknown tenant", "INSERT INTO tenant_traffic VALUES (?, ?, 1, 1, 1, 1)", []any{9999, minute}},
		{"a peer's bucket not 5 minutes", "INSERT INTO peer_traffic SELECT id, ?, 1, 1, 1, 1 FROM peers", []any{minute + 60_000_000}},
		{"unknown peer", "INSERT INTO peer_traffic VALUES (?, ?, 1, 1, 1, 1)", []any{9999, minute}},
		{"text", "INSERT INTO tenant_traffic VALUES (?, ?, 'lots', 1, 1, 1)", []any{acme.ID, minute}},
	} {
		if tc.name == "a peer's bucket not 5 minutes" {
			mustPeer(t, s, newPeer(t, "acme", "laptop"))
		}
		if _, err := s.db.ExecContext(ctx, tc.sql, tc.args...); err == nil {
			t.Errorf("%s: the schema took the row", tc.name)
		}
	}
}

// TestTruncateTime: buckets start at multiples of their step since the Unix epoch.
func TestTruncateTime(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		d    time.Duration
		want time.Time
	}{
		{trafficNow.Add(4*time.Minute + 59*time.Second), 5 * time.Minute, trafficNow},
		{trafficNow.Add(-time.Nanosecond), time.Minute, trafficNow.Add(-time.Minute)},
		{time.Unix(7*60+30, 0), 7 * time.Minute, time.Unix(7*60, 0).UTC()}, // not a divisor of a day
	} {
		if got := TruncateTime(tc.t, tc.d); !got.Equal(tc.want) {
			t.Errorf("TruncateTime(%s, %s) = %s, want %s", tc.t, tc.d, got, tc.want)
		}
	}
}
