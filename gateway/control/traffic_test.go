package control

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/plane/planetest"
	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/store/clocktest"
)

// trafficStart is when the tests' sampling begins: a whole hour.
var trafficStart = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// trafficReport is a node's report of one tenant (ID 1) and peers by key, with the node's
// start.
func trafficReport(started time.Time, tenant plane.Traffic, peers map[store.Key]plane.Traffic) *plane.Report {
	r := &plane.Report{Node: plane.NodeStatus{StartedAt: started}, Tenants: []plane.TenantState{{ID: 1, Name: "acme", Traffic: tenant}}}
	for k, t := range peers {
		r.Peers = append(r.Peers, plane.PeerState{PublicKey: k, RxBytes: t.RxBytes, TxBytes: t.TxBytes, RxPackets: t.RxPackets, TxPackets: t.TxPackets})
	}
	return r
}

func ptr(rx, tx uint64) plane.Traffic {
	return plane.Traffic{RxBytes: rx, TxBytes: tx, RxPackets: rx / 10, TxPackets: tx / 10}
}
func str(rx, tx uint64) store.Traffic {
	return store.Traffic{RxBytes: rx, TxBytes: tx, RxPackets: rx / 10, TxPackets: tx / 10}
}

// TestTrafficSamplerDeltas: reports become deltas by minute: nothing from a node's first
// report when it started before sampling began (its counts cannot be placed in time), all of
// it when it started since; the difference between reports; all of the new counts after a
// node started again (another StartedAt) or a peer came back to its report; two nodes'
// deltas summed.
func TestTrafficSamplerDeltas(t *testing.T) {
	s := newTrafficSampler(trafficStart)
	laptop, phone, gone := store.Key{1}, store.Key{2}, store.Key{3}
	ids := map[store.Key]int64{laptop: 10, phone: 20} // gone: removed from the store
	aStarted := trafficStart.Add(-time.Hour)
	at := func(d time.Duration) time.Time { return trafficStart.Add(d) }
	minute := func(d time.Duration) (map[int64]store.Traffic, map[int64]store.Traffic) {
		m := s.pending[at(d).Unix()/60]
		if m == nil {
			return map[int64]store.Traffic{}, map[int64]store.Traffic{}
		}
		return m.tenants, m.peers
	}
	check := func(step string, d time.Duration, tenant store.Traffic, peers map[int64]store.Traffic) {
		t.Helper()
		gotT, gotP := minute(d)
		wantT := map[int64]store.Traffic{}
		if !tenant.IsZero() {
			wantT[1] = tenant
		}
		if peers == nil {
			peers = map[int64]store.Traffic{}
		}
		if !reflect.DeepEqual(gotT, wantT) || !reflect.DeepEqual(gotP, peers) {
			t.Errorf("%s: minute %s has tenants %v, peers %v; want %v, %v", step, d, gotT, gotP, wantT, peers)
		}
	}

	// Node A, up for an hour: its first report is the baseline.
	s.observe(2, trafficReport(aStarted, ptr(5000, 7000), map[store.Key]plane.Traffic{laptop: ptr(5000, 7000), gone: ptr(1, 1)}), 0, at(5*time.Second), ids)
	check("A's first report", 0, store.Traffic{}, nil)
	// 40 s later: the difference.
	s.observe(2, trafficReport(aStarted, ptr(5100, 7200), map[store.Key]plane.Traffic{laptop: ptr(5100, 7200), gone: ptr(9, 9)}), 0, at(45*time.Second), ids)
	check("A's second report", 0, str(100, 200), map[int64]store.Traffic{10: str(100, 200)})

	// Node B started after sampling began (its clock 30 s ahead): all it counted, in the
	// same minute as A's, summed.
	s.observe(3, trafficReport(at(10*time.Second+30*time.Second), ptr(50, 60), map[store.Key]plane.Traffic{phone: ptr(50, 60)}), 30*time.Second, at(50*time.Second), ids)
	check("B's first report", 0, str(150, 260), map[int64]store.Traffic{10: str(100, 200), 20: str(50, 60)})

	// A started again: its new counts are the delta; laptop is not in its report, then is
	// with counts of its own again.
	aRestarted := at(70 * time.Second)
	s.observe(2, trafficReport(aRestarted, ptr(30, 40), nil), 0, at(80*time.Second), ids)
	check("A after its restart", time.Minute, str(30, 40), nil)
	s.observe(2, trafficReport(aRestarted, ptr(40, 50), map[store.Key]plane.Traffic{laptop: ptr(10, 10)}), 0, at(90*time.Second), ids)
	check("laptop back in A's report", time.Minute, str(40, 50), map[int64]store.Traffic{10: str(10, 10)})
	// A counter that went back without a restart counts from zero.
	s.observe(2, trafficReport(aRestarted, ptr(40, 50), map[store.Key]plane.Traffic{laptop: ptr(3, 10)}), 0, at(100*time.Second), ids)
	check("laptop's counter went back", time.Minute, str(40, 50), map[int64]store.Traffic{10: str(13, 20)})
	// No change: nothing added.
	s.observe(2, trafficReport(aRestarted, ptr(40, 50), map[store.Key]plane.Traffic{laptop: ptr(3, 10)}), 0, at(110*time.Second), ids)
	check("a report that counted nothing new", time.Minute, str(40, 50), map[int64]store.Traffic{10: str(13, 20)})

	// take hands everything over once.
	rec, _ := s.take(at(2 * time.Minute))
	if len(rec.Tenants) != 2 || len(rec.Peers) != 3 {
		t.Errorf("take: %d tenant and %d peer deltas, want 2 and 3: %+v", len(rec.Tenants), len(rec.Peers), rec)
	}
	if rec, _ := s.take(at(2 * time.Minute)); len(rec.Tenants)+len(rec.Peers) != 0 {
		t.Errorf("a second take: %+v, want nothing", rec)
	}
	// A node not heard from for an hour is forgotten: its next report is a baseline again.
	s.take(at(2*time.Hour + 3*time.Minute))
	if len(s.nodes) != 0 {
		t.Errorf("after two hours without reports the sampler keeps %d nodes", len(s.nodes))
	}
}

// newTrafficController is a controller on a fresh store with a test clock, its own node's
// sampling left to the test.
func newTrafficController(t *testing.T) (*Controller, *planetest.DataPlane, *store.Store, *clocktest.Clock) {
	t.Helper()
	st := openTestStore(t)
	dp := &planetest.DataPlane{}
	c, err := New(Config{PublicEndpoint: "vpn.example.com:51820", MTU: 1420, Region: "local", TrafficSampleEvery: time.Hour},
		st, dp, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(trafficStart)
	c.now = clock.Now
	c.traffic = newTrafficSampler(clock.Now())
	t.Cleanup(func() { c.Close() })
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, dp, st, clock
}

// TestTrafficHistoryTwoNodes: the controller's own node and a joined node serve the same
// tenant and peer; the history sums both, before the minute's write (from memory) and after
// it (from the store) alike, and a node that started again adds its new counts.
func TestTrafficHistoryTwoNodes(t *testing.T) {
	ctx := context.Background()
	c, _, _, clock := newTrafficController(t)
	acme, err := c.AddTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	report := func(started time.Time, rx, tx uint64) *plane.Report {
		r := trafficReport(started, ptr(rx, tx), map[store.Key]plane.Traffic{p.PublicKey: ptr(rx, tx)})
		r.Tenants[0].ID = acme.ID
		return r
	}
	own := int64(plane.ControllerNode)
	pop := store.Node{ID: 7, Name: "pop1"}
	ownStarted := trafficStart.Add(-time.Minute)
	popStarted := trafficStart.Add(-time.Hour)

	// Baselines, then a minute of traffic at both.
	c.observeTraffic(own, report(ownStarted, 1000, 1000), 0, clock.Now())
	c.NodeReported(pop, report(popStarted, 5000, 5000), 0)
	clock.Advance(30 * time.Second)
	c.observeTraffic(own, report(ownStarted, 1100, 1200), 0, clock.Now())
	c.NodeReported(pop, report(popStarted, 5300, 5400), 0)

	want := str(400, 600)
	series := func(when string) (TrafficSeries, TrafficSeries) {
		t.Helper()
		ts, err := c.TenantTraffic(ctx, "acme", 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := c.PeerTraffic(ctx, "acme", "laptop", 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: tenant %d points of %s, peer %d points of %s", when, len(ts.Points), ts.Step, len(ps.Points), ps.Step)
		return ts, ps
	}
	ts, ps := series("before the write")
	if ts.Total != want || ps.Total != want {
		t.Errorf("before the minute's write: tenant %+v, peer %+v; want %+v both", ts.Total, ps.Total, want)
	}
	if last := ts.Points[len(ts.Points)-1]; last.Traffic != want || !last.At.Equal(trafficStart) {
		t.Errorf("the tenant's last point is %+v, want %+v at %s", last, want, trafficStart)
	}
	// The buckets within the 24 hours: the first one starts 23:55 before the present's.
	if ts.Step != 5*time.Minute || len(ts.Points) != 288 || ps.Step != 5*time.Minute || !ts.Points[0].At.Equal(trafficStart.Add(-24*time.Hour+5*time.Minute)) {
		t.Errorf("24 hours as %d points of %s from %s (peer: %s), want 288 of 5m", len(ts.Points), ts.Step, ts.Points[0].At, ps.Step)
	}

	clock.Advance(time.Minute)
	c.flushTraffic(ctx, clock.Now())
	ts, ps = series("after the write")
	if ts.Total != want || ps.Total != want {
		t.Errorf("after the minute's write: tenant %+v, peer %+v; want %+v both (once)", ts.Total, ps.Total, want)
	}

	// The PoP started again: what it counted since is added.
	c.NodeReported(pop, report(clock.Now().Add(-10*time.Second), 70, 80), 0)
	ts, _ = series("after the PoP's restart")
	if want := str(470, 680); ts.Total != want {
		t.Errorf("after the PoP started again: tenant %+v, want %+v", ts.Total, want)
	}
	c.flushTraffic(ctx, clock.Now())

	// 7 days by the hour, a peer's 48 hours by 10 minutes; longer is refused.
	week, err := c.TenantTraffic(ctx, "acme", 7*24*time.Hour)
	if err != nil || week.Step != time.Hour || week.Total != str(470, 680) {
		t.Errorf("acme's week: step %s, total %+v, %v", week.Step, week.Total, err)
	}
	two, err := c.PeerTraffic(ctx, "acme", "laptop", 48*time.Hour)
	if err != nil || two.Step != 10*time.Minute || len(two.Points) > maxTrafficPoints+1 {
		t.Errorf("laptop's 48 hours: step %s, %d points, %v", two.Step, len(two.Points), err)
	}
	if _, err := c.PeerTraffic(ctx, "acme", "laptop", 72*time.Hour); err == nil || !isInvalid(err) {
		t.Errorf("a peer's 72 hours: %v, want ErrInvalid", err)
	}
	if _, err := c.TenantTraffic(ctx, "nope", time.Hour); err == nil {
		t.Errorf("an unknown tenant's history: no error")
	}
}

func isInvalid(err error) bool {
	_, ok := err.(invalidError)
	return ok
}

// TestTrafficManyPeers: 2,000 peers at two nodes: what a report costs the controller and
// what the minute's write costs (logged), and the history sums every peer.
func TestTrafficManyPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 peers")
	}
	ctx := context.Background()
	c, _, st, clock := newTrafficController(t)
	acme, err := c.AddTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000 // adding them costs a write each: more makes a slow test
	keys := make([]store.Key, n)
	begin := time.Now()
	for i := range keys {
		k, err := store.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		p, err := st.AddPeer(ctx, store.NewPeer{TenantName: "acme", Name: fmt.Sprintf("p%d", i), PrivateKey: &k})
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = p.PublicKey
	}
	c.changed(ctx)
	t.Logf("%d peers added in %v", n, time.Since(begin).Round(time.Millisecond))
	report := func(i uint64) *plane.Report {
		r := &plane.Report{Node: plane.NodeStatus{StartedAt: trafficStart.Add(-time.Hour)},
			Tenants: []plane.TenantState{{ID: acme.ID, Traffic: ptr(i*n, i*n)}}}
		for _, k := range keys {
			r.Peers = append(r.Peers, plane.PeerState{PublicKey: k, RxBytes: i, TxBytes: i})
		}
		return r
	}
	pops := []store.Node{{ID: 1}, {ID: 2}}
	for _, pop := range pops {
		c.NodeReported(pop, report(1), 0)
	}
	clock.Advance(10 * time.Second)
	begin = time.Now()
	for _, pop := range pops {
		c.NodeReported(pop, report(4), 0)
	}
	t.Logf("two reports of %d peers each: %v", n, time.Since(begin).Round(time.Microsecond))
	clock.Advance(time.Minute)
	begin = time.Now()
	c.flushTraffic(ctx, clock.Now())
	t.Logf("the minute's write of %d peers' deltas: %v", n, time.Since(begin).Round(time.Millisecond))
	ts, err := c.TenantTraffic(ctx, "acme", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(2 * 3 * n); ts.Total.RxBytes != want {
		t.Errorf("acme received %d bytes, want %d", ts.Total.RxBytes, want)
	}
	ps, err := c.PeerTraffic(ctx, "acme", fmt.Sprintf("p%d", n-1), time.Hour)
	if err != nil || ps.Total.RxBytes != 6 {
		t.Errorf("the last peer's hour: %+v, %v; want 6 bytes received", ps.Total, err)
	}
}
