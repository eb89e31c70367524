package control

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// The traffic history (issue 16): the controller turns the counters every node reports (its
// own node's, sampled every Config.TrafficSampleEvery, and the joined nodes' as their
// reports come) into deltas by minute, summed over the nodes, and adds them to the store
// once a minute in one write (store.AddTraffic, which also prunes). Counters count from a
// node's start: a node that started again (another StartedAt) counts from zero, and so
// does a peer or tenant that left a node's report and came back. What a node counted
// before the controller first heard of it is not placed in time and is left out, unless
// the node started since. Reads add what is not written yet, so a chart is current to the
// last report.

// maxPendingTraffic bounds how many minutes of deltas wait for the store while writing
// them fails (a full disk): older ones are dropped.
const maxPendingTraffic = 10

// nodeGone is how long a node's counters are kept after its last report: one that
// reports again later starts from a new baseline.
const nodeGone = time.Hour

// trafficSampler keeps each node's last counters and the deltas not yet written. Its
// methods take the time: the controller's clock at the report.
type trafficSampler struct {
	// started is when sampling began: a node that started later counts from zero at its
	// first report.
	started time.Time

	mu      sync.Mutex
	nodes   map[int64]*nodeCounters  // by node: plane.ControllerNode, or a joined node's store ID + 1
	pending map[int64]*trafficMinute // by minute (Unix seconds / 60)
	epoch   uint64                   // of the report being taken, to forget what it no longer has
}

// nodeCounters are what a node last reported.
type nodeCounters struct {
	startedAt time.Time // the node's start, as it reports it
	seen      time.Time
	tenants   map[int64]counted
	peers     map[store.Key]counted
}

// counted is a counter as last reported, and the report (epoch) that had it.
type counted struct {
	t     store.Traffic
	epoch uint64
}

// trafficMinute holds the deltas of one minute, by tenant ID and by peer ID.
type trafficMinute struct {
	tenants map[int64]store.Traffic
	peers   map[int64]store.Traffic
}

func newTrafficSampler(now time.Time) *trafficSampler {
	return &trafficSampler{started: now, nodes: map[int64]*nodeCounters{}, pending: map[int64]*trafficMinute{}}
}

// storeTraffic converts a report's counters.
func storeTraffic(t plane.Traffic) store.Traffic {
	return store.Traffic{RxBytes: t.RxBytes, TxBytes: t.TxBytes, RxPackets: t.RxPackets, TxPackets: t.TxPackets}
}

// delta is what cur counted since prev: cur itself when a counter went back (it counts
// from zero again).
func delta(prev, cur store.Traffic) store.Traffic {
	if cur.RxBytes < prev.RxBytes || cur.TxBytes < prev.TxBytes || cur.RxPackets < prev.RxPackets || cur.TxPackets < prev.TxPackets {
		return cur
	}
	return store.Traffic{RxBytes: cur.RxBytes - prev.RxBytes, TxBytes: cur.TxBytes - prev.TxBytes,
		RxPackets: cur.RxPackets - prev.RxPackets, TxPackets: cur.TxPackets - prev.TxPackets}
}

// observe takes node's report rep, received at now; offset is the node's clock minus the
// controller's; ids maps the published peers' keys to their IDs (a peer not in it, removed
// meanwhile, adds nothing). It costs a map update per tenant and peer in the report.
func (s *trafficSampler) observe(node int64, rep *plane.Report, offset time.Duration, now time.Time, ids map[store.Key]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nc := s.nodes[node]
	started := rep.Node.StartedAt
	baseline := false // this report only sets the counters to count from
	switch {
	case nc == nil:
		nc = &nodeCounters{tenants: map[int64]counted{}, peers: map[store.Key]counted{}}
		s.nodes[node] = nc
		baseline = started.IsZero() || started.Add(-offset).Before(s.started)
	case !nc.startedAt.Equal(started):
		clear(nc.tenants) // the node started again: its counters count from zero
		clear(nc.peers)
	}
	nc.startedAt, nc.seen = started, now
	s.epoch++
	var m *trafficMinute
	minute := func() *trafficMinute {
		if m == nil {
			m = s.minuteLocked(now)
		}
		return m
	}
	for i := range rep.Tenants {
		ts := &rep.Tenants[i]
		cur := storeTraffic(ts.Traffic)
		d := delta(nc.tenants[ts.ID].t, cur)
		nc.tenants[ts.ID] = counted{cur, s.epoch}
		if !baseline && !d.IsZero() {
			add(minute().tenants, ts.ID, d)
		}
	}
	for i := range rep.Peers {
		ps := &rep.Peers[i]
		cur := store.Traffic{RxBytes: ps.RxBytes, TxBytes: ps.TxBytes, RxPackets: ps.RxPackets, TxPackets: ps.TxPackets}
		d := delta(nc.peers[ps.PublicKey].t, cur)
		nc.peers[ps.PublicKey] = counted{cur, s.epoch}
		if id, ok := ids[ps.PublicKey]; ok && !baseline && !d.IsZero() {
			add(minute().peers, id, d)
		}
	}
	// What the report no longer has counts from zero when it comes back.
	forgetUnreported(nc.tenants, s.epoch)
	forgetUnreported(nc.peers, s.epoch)
}

// forgetUnreported deletes the counters of m that the report epoch did not have.
func forgetUnreported[K comparable](m map[K]counted, epoch uint64) {
	maps.DeleteFunc(m, func(_ K, c counted) bool { return c.epoch != epoch })
}

func add[K comparable](m map[K]store.Traffic, k K, d store.Traffic) {
	t := m[k]
	t.Add(d)
	m[k] = t
}

// minuteLocked returns the deltas of the minute now is in.
func (s *trafficSampler) minuteLocked(now time.Time) *trafficMinute {
	k := now.Unix() / 60
	m := s.pending[k]
	if m == nil {
		m = &trafficMinute{tenants: map[int64]store.Traffic{}, peers: map[int64]store.Traffic{}}
		s.pending[k] = m
	}
	return m
}

// take returns the deltas not yet written, as a record for the store, and forgets them and
// the nodes not heard from for nodeGone.
func (s *trafficSampler) take(now time.Time) (store.TrafficRecord, map[int64]*trafficMinute) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	s.pending = map[int64]*trafficMinute{}
	maps.DeleteFunc(s.nodes, func(_ int64, nc *nodeCounters) bool { return now.Sub(nc.seen) > nodeGone })
	var rec store.TrafficRecord
	for k, m := range p {
		at := time.Unix(k*60, 0).UTC()
		for id, t := range m.tenants {
			rec.Tenants = append(rec.Tenants, store.TrafficDelta{ID: id, At: at, Traffic: t})
		}
		for id, t := range m.peers {
			rec.Peers = append(rec.Peers, store.TrafficDelta{ID: id, At: at, Traffic: t})
		}
	}
	return rec, p
}

// restore puts back deltas take returned that could not be written, but for those older
// than maxPendingTraffic minutes, and returns how many minutes it dropped.
func (s *trafficSampler) restore(p map[int64]*trafficMinute, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	oldest := now.Unix()/60 - maxPendingTraffic
	dropped := 0
	for k, m := range p {
		if k < oldest {
			dropped++
			continue
		}
		into := s.pending[k]
		if into == nil {
			s.pending[k] = m
			continue
		}
		for id, t := range m.tenants {
			add(into.tenants, id, t)
		}
		for id, t := range m.peers {
			add(into.peers, id, t)
		}
	}
	return dropped
}

// pendingOf returns the deltas not yet written of tenant (peer false) or peer id, by minute.
func (s *trafficSampler) pendingOf(id int64, peer bool) []store.TrafficSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.TrafficSample
	for k, m := range s.pending {
		src := m.tenants
		if peer {
			src = m.peers
		}
		if t, ok := src[id]; ok {
			out = append(out, store.TrafficSample{At: time.Unix(k*60, 0).UTC(), Traffic: t})
		}
	}
	return out
}

// observeTraffic takes a report of node into the traffic history.
func (c *Controller) observeTraffic(node int64, rep *plane.Report, offset time.Duration, now time.Time) {
	var ids map[store.Key]int64
	if snap := c.read.Load(); snap != nil {
		ids = c.peerIDs(snap)
	}
	c.traffic.observe(node, rep, offset, now, ids)
}

// trafficLoop samples the controller's own node every Config.TrafficSampleEvery and writes
// the deltas once a minute, and once more when the controller closes.
func (c *Controller) trafficLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.TrafficSampleEvery)
	defer t.Stop()
	last := c.now().Unix() / 60
	sample := func() time.Time {
		now := c.now()
		rep := c.dp.Report()
		c.observeTraffic(int64(plane.ControllerNode), &rep, 0, now)
		return now
	}
	for {
		select {
		case <-c.closing:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c.flushTraffic(ctx, sample())
			cancel()
			return
		case <-t.C:
			now := sample()
			if m := now.Unix() / 60; m != last {
				last = m
				c.flushTraffic(context.Background(), now)
			}
		}
	}
}

// flushTraffic writes the deltas not yet written, in one transaction that also prunes the
// history. Deltas it cannot write wait for the next minute's write (up to
// maxPendingTraffic minutes).
func (c *Controller) flushTraffic(ctx context.Context, now time.Time) {
	c.trafficMu.Lock() // readers see the deltas either pending or stored, never both
	defer c.trafficMu.Unlock()
	rec, p := c.traffic.take(now)
	err := c.store.AddTraffic(ctx, rec, now)
	if err == nil {
		return
	}
	dropped := c.traffic.restore(p, now)
	c.log.Warn("cannot write the traffic history; trying again in a minute", "err", err, "minutes_dropped", dropped)
}

// TrafficSeries is a stretch of traffic history: what a tenant's or peer's devices carried,
// summed over every node, in buckets of Step.
type TrafficSeries struct {
	Step time.Duration
	// Points has one bucket per Step, oldest first, without gaps (zero: no traffic); the
	// last is the bucket the present is in, so far.
	Points []store.TrafficSample
	// Total is the sum of Points.
	Total store.Traffic
}

// Resolution and reach of the traffic history (store.TenantTrafficStep…): a tenant's by
// minute for 7 days, a peer's by 5 minutes for 48 hours.
const (
	TenantTrafficKeep = store.TenantTrafficKeep
	PeerTrafficKeep   = store.PeerTrafficKeep
)

// maxTrafficPoints bounds the points of a series: the step grows with the span.
const maxTrafficPoints = 300

// trafficSteps are the steps a series may have.
var trafficSteps = []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour}

// trafficStep is the smallest step of at least res that covers span in maxTrafficPoints.
func trafficStep(span, res time.Duration) time.Duration {
	for _, s := range trafficSteps {
		if s >= res && s%res == 0 && span/s <= maxTrafficPoints {
			return s
		}
	}
	return trafficSteps[len(trafficSteps)-1]
}

// TenantTraffic returns the traffic history of tenant over the span before now (at most
// TenantTrafficKeep), in steps of a minute or more (at most 300 points).
func (c *Controller) TenantTraffic(ctx context.Context, tenant string, span time.Duration) (TrafficSeries, error) {
	if span <= 0 || span > TenantTrafficKeep {
		return TrafficSeries{}, invalidError{fmt.Errorf("a tenant's traffic history spans up to %s, not %s: ask for less", TenantTrafficKeep, span)}
	}
	t, err := c.store.Tenant(ctx, tenant)
	if err != nil {
		return TrafficSeries{}, err
	}
	return c.trafficSeries(ctx, t.ID, false, span, trafficStep(span, store.TenantTrafficStep))
}

// PeerTraffic returns the traffic history of peer name of tenant over the span before now
// (at most PeerTrafficKeep), in steps of 5 minutes or more (at most 300 points).
func (c *Controller) PeerTraffic(ctx context.Context, tenant, name string, span time.Duration) (TrafficSeries, error) {
	if span <= 0 || span > PeerTrafficKeep {
		return TrafficSeries{}, invalidError{fmt.Errorf("a peer's traffic history spans up to %s, not %s: ask for less", PeerTrafficKeep, span)}
	}
	p, err := c.store.Peer(ctx, tenant, name)
	if err != nil {
		return TrafficSeries{}, err
	}
	return c.trafficSeries(ctx, p.ID, true, span, trafficStep(span, store.PeerTrafficStep))
}

// trafficSeries reads the history of tenant or peer id with what is not written yet.
func (c *Controller) trafficSeries(ctx context.Context, id int64, peer bool, span, step time.Duration) (TrafficSeries, error) {
	now := c.now()
	from := store.TruncateTime(now.Add(-span), step)
	if from.Before(now.Add(-span)) {
		from = from.Add(step) // the first whole bucket within the span
	}
	last := store.TruncateTime(now, step)
	s := TrafficSeries{Step: step, Points: make([]store.TrafficSample, int(last.Sub(from)/step)+1)}
	for i := range s.Points {
		s.Points[i].At = from.Add(time.Duration(i) * step)
	}
	put := func(samples []store.TrafficSample) {
		for _, sm := range samples {
			if i := int(store.TruncateTime(sm.At, step).Sub(from) / step); i >= 0 && i < len(s.Points) {
				s.Points[i].Add(sm.Traffic)
				s.Total.Add(sm.Traffic)
			}
		}
	}
	c.trafficMu.RLock()
	defer c.trafficMu.RUnlock()
	var stored []store.TrafficSample
	var err error
	if peer {
		stored, err = c.store.PeerTraffic(ctx, id, from, last.Add(step), step)
	} else {
		stored, err = c.store.TenantTraffic(ctx, id, from, last.Add(step), step)
	}
	if err != nil {
		return TrafficSeries{}, err
	}
	put(stored)
	put(c.traffic.pendingOf(id, peer))
	return s, nil
}
