package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"
)

// The traffic history (migration 0013): what each tenant's and each peer's devices carried,
// summed over every node, in buckets of TenantTrafficStep and PeerTrafficStep, kept for
// TenantTrafficKeep and PeerTrafficKeep. The controller samples it (gateway/control) and
// adds to it with AddTraffic, which also prunes: the tables stay bounded.
const (
	TenantTrafficStep = time.Minute
	TenantTrafficKeep = 7 * 24 * time.Hour
	PeerTrafficStep   = 5 * time.Minute
	PeerTrafficKeep   = 48 * time.Hour
)

// Traffic counts what peers sent (Rx: received by the nodes) and were sent (Tx): bytes are
// WireGuard datagram bytes, packets the IP packets the packet path passed.
type Traffic struct {
	RxBytes, TxBytes, RxPackets, TxPackets uint64
}

// IsZero reports whether t counts nothing.
func (t Traffic) IsZero() bool { return t == Traffic{} }

// Add adds o to t, saturating at the largest count the database holds.
func (t *Traffic) Add(o Traffic) {
	t.RxBytes = addCount(t.RxBytes, o.RxBytes)
	t.TxBytes = addCount(t.TxBytes, o.TxBytes)
	t.RxPackets = addCount(t.RxPackets, o.RxPackets)
	t.TxPackets = addCount(t.TxPackets, o.TxPackets)
}

// addCount is a+b, at most math.MaxInt64 (an SQLite integer).
func addCount(a, b uint64) uint64 {
	if a > math.MaxInt64 || b > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + b
}

// clampCount is n as an SQLite integer: at most math.MaxInt64.
func clampCount(n uint64) int64 { return int64(min(n, math.MaxInt64)) }

// TruncateTime rounds t down to a multiple of d since the Unix epoch (time.Truncate counts
// from year 1, which differs for a d that does not divide a day).
func TruncateTime(t time.Time, d time.Duration) time.Time {
	us := t.UnixMicro()
	m := d.Microseconds()
	r := us % m
	if r < 0 {
		r += m
	}
	return time.UnixMicro(us - r).UTC()
}

// TrafficSample is the traffic of one bucket, which starts at At.
type TrafficSample struct {
	At time.Time
	Traffic
}

// TrafficDelta is traffic to add to the bucket of an owner (a tenant's or a peer's ID) that
// holds At.
type TrafficDelta struct {
	ID int64
	At time.Time
	Traffic
}

// TrafficRecord is what one AddTraffic adds: to tenants' buckets (of TenantTrafficStep) and
// to peers' (of PeerTrafficStep).
type TrafficRecord struct {
	Tenants []TrafficDelta
	Peers   []TrafficDelta
}

// trafficTable is one table of the traffic history: its owners' column and table, the
// width of its buckets and how long it keeps them. The names are constants, never input.
type trafficTable struct {
	name, owner, owners string
	step, keep          time.Duration
}

var (
	tenantTraffic = trafficTable{"tenant_traffic", "tenant_id", "tenants", TenantTrafficStep, TenantTrafficKeep}
	peerTraffic   = trafficTable{"peer_traffic", "peer_id", "peers", PeerTrafficStep, PeerTrafficKeep}
)

// AddTraffic adds each delta of rec to its bucket and deletes the buckets older than what
// the history keeps at now, all in one transaction. Deltas that count nothing, that are
// older than the history keeps, or whose tenant or peer no longer exists (removed since it
// was sampled) are skipped; so the write cannot fail for a removal racing with it.
func (s *Store) AddTraffic(ctx context.Context, rec TrafficRecord, now time.Time) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		if err := tenantTraffic.add(ctx, tx, rec.Tenants, now); err != nil {
			return err
		}
		return peerTraffic.add(ctx, tx, rec.Peers, now)
	})
}

// add adds deltas to t's buckets and deletes those older than t keeps at now.
func (t trafficTable) add(ctx context.Context, tx *sql.Tx, deltas []TrafficDelta, now time.Time) error {
	cut := now.Add(-t.keep)
	if err := t.insert(ctx, tx, deltas, cut); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+t.name+` WHERE at < ?`, micros(TruncateTime(cut, t.step))); err != nil {
		return fmt.Errorf("store: prune %s: %w", t.name, err)
	}
	return nil
}

// insert adds each delta to its bucket, but those that count nothing, whose bucket ends
// before cut, or whose owner is gone.
func (t trafficTable) insert(ctx context.Context, tx *sql.Tx, deltas []TrafficDelta, cut time.Time) error {
	if len(deltas) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO `+t.name+` (`+t.owner+`, at, rx_bytes, tx_bytes, rx_packets, tx_packets)
		SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM `+t.owners+` WHERE id = ?1)
		ON CONFLICT (`+t.owner+`, at) DO UPDATE SET
			rx_bytes = min(rx_bytes + excluded.rx_bytes, 9223372036854775807),
			tx_bytes = min(tx_bytes + excluded.tx_bytes, 9223372036854775807),
			rx_packets = min(rx_packets + excluded.rx_packets, 9223372036854775807),
			tx_packets = min(tx_packets + excluded.tx_packets, 9223372036854775807)`)
	if err != nil {
		return fmt.Errorf("store: add traffic: %w", err)
	}
	defer stmt.Close()
	for _, d := range deltas {
		at := TruncateTime(d.At, t.step)
		if d.IsZero() || at.Add(t.step).Before(cut) || at.Unix() <= 0 {
			continue
		}
		if _, err := stmt.ExecContext(ctx, d.ID, micros(at), clampCount(d.RxBytes), clampCount(d.TxBytes),
			clampCount(d.RxPackets), clampCount(d.TxPackets)); err != nil {
			return fmt.Errorf("store: add traffic to %s: %w", t.name, err)
		}
	}
	return nil
}

// TenantTraffic returns the traffic history of the tenant with ID id from from to to, in
// buckets of step (a multiple of TenantTrafficStep; the buckets start at multiples of step
// since the epoch), oldest first; buckets without traffic are left out.
func (s *Store) TenantTraffic(ctx context.Context, id int64, from, to time.Time, step time.Duration) ([]TrafficSample, error) {
	return s.trafficHistory(ctx, tenantTraffic, id, from, to, step)
}

// PeerTraffic is TenantTraffic for the peer with ID id; step is a multiple of
// PeerTrafficStep.
func (s *Store) PeerTraffic(ctx context.Context, id int64, from, to time.Time, step time.Duration) ([]TrafficSample, error) {
	return s.trafficHistory(ctx, peerTraffic, id, from, to, step)
}

func (s *Store) trafficHistory(ctx context.Context, t trafficTable, id int64, from, to time.Time, step time.Duration) ([]TrafficSample, error) {
	if step < t.step || step%t.step != 0 {
		return nil, errorf(ErrInvalid, "a traffic history step of %s: it must be a multiple of %s", step, t.step)
	}
	us := step.Microseconds()
	rows, err := s.db.QueryContext(ctx, `SELECT at / ?1 * ?1 AS bucket, sum(rx_bytes), sum(tx_bytes), sum(rx_packets), sum(tx_packets)
		FROM `+t.name+` WHERE `+t.owner+` = ?2 AND at >= ?3 AND at < ?4 GROUP BY bucket ORDER BY bucket`,
		us, id, micros(TruncateTime(from, step)), micros(to))
	if err != nil {
		return nil, fmt.Errorf("store: read %s: %w", t.name, err)
	}
	defer rows.Close()
	var out []TrafficSample
	for rows.Next() {
		var at, rx, tx, rxp, txp int64
		if err := rows.Scan(&at, &rx, &tx, &rxp, &txp); err != nil {
			return nil, fmt.Errorf("store: read %s: %w", t.name, err)
		}
		out = append(out, TrafficSample{At: fromMicros(at), Traffic: Traffic{uint64(rx), uint64(tx), uint64(rxp), uint64(txp)}})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read %s: %w", t.name, err)
	}
	return out, nil
}
