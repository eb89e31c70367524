package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// A tenant's DNS query log (issue 17): off unless the tenant turns it on, since it is personal
// data (who asked for which name, when). While it is on, the nodes log the tenant's queries
// and report them; the store keeps them for the tenant's keep time (1 hour to 7 days) and at
// most MaxDNSLogRows per tenant (PruneDNSLog), and deletes them when the log is turned off or
// the tenant removed.

// Bounds of the query log.
const (
	DefaultDNSLogKeep = 24 * time.Hour
	MinDNSLogKeep     = time.Hour
	MaxDNSLogKeep     = 7 * 24 * time.Hour
	// MaxDNSLogRows is the most entries kept of one tenant: beyond it the oldest go.
	MaxDNSLogRows = 1_000_000
	// DefaultDNSLogPage and MaxDNSLogPage are DNSLogQuery.Limit's default and bound.
	DefaultDNSLogPage = 100
	MaxDNSLogPage     = 10000
)

// dnsLogPruneBatch is how many entries one pruning transaction deletes: the others wait
// for the next, so that no write waits long behind a prune.
const dnsLogPruneBatch = 10000

// DNSLogSettings is whether a tenant's query log is on, and how long it keeps entries.
type DNSLogSettings struct {
	Enabled bool
	// Keep is how long entries are kept; 0 when off.
	Keep time.Duration
	// EnabledAt is when it was turned on; zero when off.
	EnabledAt time.Time
}

// ValidateDNSLogKeep checks how long a tenant's query log keeps entries: MinDNSLogKeep to
// MaxDNSLogKeep, in whole minutes. The error wraps ErrInvalid.
func ValidateDNSLogKeep(keep time.Duration) error {
	if keep < MinDNSLogKeep || keep > MaxDNSLogKeep || keep%time.Minute != 0 {
		return errorf(ErrInvalid, "a query log keeps its entries 1h to 7d (168h) in whole minutes, not %s: give e.g. --keep 24h", keep)
	}
	return nil
}

// DNSLogTarget names a tenant's query log in the audit log: "dnslog:acme".
func DNSLogTarget(tenant string) string { return "dnslog:" + tenant }

// EnableDNSLog turns tenant's query log on (or changes how long it keeps entries, when it is
// on already), keeping entries for keep (0: DefaultDNSLogKeep). The error wraps ErrNotFound
// for an unknown tenant, ErrInvalid for a keep out of bounds.
func (s *Store) EnableDNSLog(ctx context.Context, tenant string, keep time.Duration) (DNSLogSettings, error) {
	if keep == 0 {
		keep = DefaultDNSLogKeep
	}
	if err := ValidateDNSLogKeep(keep); err != nil {
		return DNSLogSettings{}, err
	}
	var out DNSLogSettings
	err := s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		old, err := dnsLogSettings(ctx, tx, t.ID)
		if err != nil {
			return err
		}
		out = DNSLogSettings{Enabled: true, Keep: keep, EnabledAt: old.EnabledAt}
		if old.Enabled && old.Keep == keep {
			return nil
		}
		if !old.Enabled {
			out.EnabledAt = fromMicros(micros(s.now()))
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO dns_log_settings (tenant_id, keep_s, enabled_at) VALUES (?, ?, ?)
			ON CONFLICT (tenant_id) DO UPDATE SET keep_s = excluded.keep_s`, t.ID, int64(keep/time.Second), micros(out.EnabledAt))
		if err != nil {
			return fmt.Errorf("store: turn on the query log of %s: %w", tenant, err)
		}
		return s.logChange(ctx, tx, tenant, "dns.log.enable", DNSLogTarget(tenant), "entries kept "+DurationText(keep))
	})
	if err != nil {
		return DNSLogSettings{}, err
	}
	return out, nil
}

// DisableDNSLog turns tenant's query log off and deletes its entries; it returns how many
// it deleted. Turning off a log that is off changes nothing. The error wraps ErrNotFound for
// an unknown tenant.
func (s *Store) DisableDNSLog(ctx context.Context, tenant string) (int64, error) {
	var deleted int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		old, err := dnsLogSettings(ctx, tx, t.ID)
		if err != nil || !old.Enabled {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM dns_log_settings WHERE tenant_id = ?", t.ID); err != nil {
			return fmt.Errorf("store: turn off the query log of %s: %w", tenant, err)
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM dns_log WHERE tenant_id = ?", t.ID)
		if err != nil {
			return fmt.Errorf("store: delete the query log of %s: %w", tenant, err)
		}
		deleted, _ = res.RowsAffected()
		return s.logChange(ctx, tx, tenant, "dns.log.disable", DNSLogTarget(tenant), fmt.Sprintf("%d %s deleted", deleted, plural(int(deleted), "entry", "entries")))
	})
	return deleted, err
}

// DNSLogSettings returns whether tenant's query log is on. The error wraps ErrNotFound for an
// unknown tenant.
func (s *Store) DNSLogSettings(ctx context.Context, tenant string) (DNSLogSettings, error) {
	var out DNSLogSettings
	err := s.read(ctx, func(q querier) error {
		t, err := getTenant(ctx, q, tenant)
		if err != nil {
			return err
		}
		out, err = dnsLogSettings(ctx, q, t.ID)
		return err
	})
	return out, err
}

func dnsLogSettings(ctx context.Context, q querier, tenantID int64) (DNSLogSettings, error) {
	var keep, at int64
	err := q.QueryRowContext(ctx, "SELECT keep_s, enabled_at FROM dns_log_settings WHERE tenant_id = ?", tenantID).Scan(&keep, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return DNSLogSettings{}, nil
	}
	if err != nil {
		return DNSLogSettings{}, fmt.Errorf("store: read the query log's settings: %w", err)
	}
	return DNSLogSettings{Enabled: true, Keep: time.Duration(keep) * time.Second, EnabledAt: fromMicros(at)}, nil
}

// allDNSLogSettings returns the settings of every tenant whose query log is on, by tenant ID.
func allDNSLogSettings(ctx context.Context, q querier) (map[int64]DNSLogSettings, error) {
	rows, err := q.QueryContext(ctx, "SELECT tenant_id, keep_s, enabled_at FROM dns_log_settings")
	if err != nil {
		return nil, fmt.Errorf("store: read the query logs' settings: %w", err)
	}
	defer rows.Close()
	out := map[int64]DNSLogSettings{}
	for rows.Next() {
		var id, keep, at int64
		if err := rows.Scan(&id, &keep, &at); err != nil {
			return nil, fmt.Errorf("store: read the query logs' settings: %w", err)
		}
		out[id] = DNSLogSettings{Enabled: true, Keep: time.Duration(keep) * time.Second, EnabledAt: fromMicros(at)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read the query logs' settings: %w", err)
	}
	return out, nil
}

// DNSLogEntry is one query a node logged.
type DNSLogEntry struct {
	ID       int64
	TenantID int64
	// At is when the query came, by the controller's clock.
	At time.Time
	// Node is the name of the node that answered; Peer the asking peer's ("" for a host
	// behind a site's connector); Client its address.
	Node, Peer string
	Client     netip.Addr
	// Name is the name asked for, without the final dot; Type its type ("A"); Outcome what
	// the resolver did ("forwarded"); Rcode the answer's ("NOERROR").
	Name, Type, Outcome, Rcode string
	Latency                    time.Duration
}

// NodeDNSLogEntry is an entry as a node numbers it (plane.DNSQuery.Seq).
type NodeDNSLogEntry struct {
	Seq uint64
	DNSLogEntry
}

// cleanDNSLogEntry makes e, which a node sent, fit the columns: text cut to length and
// cleaned, names of codes replaced by "OTHER"/"other" when they are not of their form.
func cleanDNSLogEntry(e DNSLogEntry) DNSLogEntry {
	word := func(s string, upper bool, other string) string {
		if len(s) < 1 || len(s) > 16 {
			return other
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			ok := upper && (c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') || !upper && (c >= 'a' && c <= 'z' || c == '_')
			if !ok {
				return other
			}
		}
		return s
	}
	e.Node, e.Peer = clean(e.Node, 64), clean(e.Peer, 64)
	e.Name = clean(strings.ToLower(e.Name), 255)
	if e.Name == "" {
		e.Name = "."
	}
	e.Type, e.Rcode, e.Outcome = word(e.Type, true, "OTHER"), word(e.Rcode, true, "OTHER"), word(e.Outcome, false, "other")
	e.Latency = min(max(e.Latency, 0), time.Hour)
	return e
}

// AddDNSLog records entries of the controller's own node: those of tenants whose log is on,
// and not older than it keeps. It returns how many it recorded.
func (s *Store) AddDNSLog(ctx context.Context, es []DNSLogEntry) (int, error) {
	added := 0
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		var err error
		added, err = s.insertDNSLog(ctx, tx, es)
		return err
	})
	return added, err
}

// NodeDNSLogCursor returns the newest logged query recorded of joined node id; the zero
// cursor when none was.
func (s *Store) NodeDNSLogCursor(ctx context.Context, id int64) (EventCursor, error) {
	c, _, err := reportCursor(ctx, s.db, "dns_log_cursors", id)
	return c, err
}

// AddNodeDNSLog records the entries joined node id logged in its process boot that are not
// recorded yet (those numbered after the node's cursor, or all of a process it did not
// have), of tenants whose log is on, and moves the cursor, in one transaction: a report sent
// again adds nothing twice. It returns how many it recorded. The error wraps ErrNotFound
// when the node was removed.
func (s *Store) AddNodeDNSLog(ctx context.Context, id, boot int64, es []NodeDNSLogEntry) (int, error) {
	added := 0
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		added = 0
		cur, found, err := nodeCursor(ctx, tx, "dns_log_cursors", id, boot)
		if err != nil {
			return err
		}
		top := cur.Seq
		var fresh []DNSLogEntry
		for _, e := range es {
			if e.Seq <= cur.Seq || e.Seq > 1<<62 {
				continue
			}
			fresh = append(fresh, e.DNSLogEntry)
			top = max(top, e.Seq)
		}
		if top == cur.Seq && found {
			return nil
		}
		if added, err = s.insertDNSLog(ctx, tx, fresh); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO dns_log_cursors (node_id, boot, seq) VALUES (?, ?, ?)
			ON CONFLICT (node_id) DO UPDATE SET boot = excluded.boot, seq = excluded.seq`, id, boot, int64(top))
		if err != nil {
			return fmt.Errorf("store: move a node's query log cursor: %w", err)
		}
		return nil
	})
	return added, err
}

// insertDNSLog inserts the entries of es whose tenant's log is on and that are not older
// than it keeps; it returns how many.
func (s *Store) insertDNSLog(ctx context.Context, tx *sql.Tx, es []DNSLogEntry) (int, error) {
	if len(es) == 0 {
		return 0, nil
	}
	on, err := allDNSLogSettings(ctx, tx)
	if err != nil || len(on) == 0 {
		return 0, err
	}
	now := s.now()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO dns_log (tenant_id, at, node, peer, client, name, qtype, outcome, rcode, latency_us)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return 0, fmt.Errorf("store: record logged queries: %w", err)
	}
	defer stmt.Close()
	n := 0
	for _, e := range es {
		set, ok := on[e.TenantID]
		if !ok || e.At.Before(now.Add(-set.Keep)) || e.At.Before(set.EnabledAt.Add(-time.Minute)) || e.At.Unix() <= 0 {
			continue // its log is off, or was off then; or too old to keep
		}
		e = cleanDNSLogEntry(e)
		client := ""
		if e.Client.IsValid() {
			client = e.Client.String()
		}
		if _, err := stmt.ExecContext(ctx, e.TenantID, micros(e.At), e.Node, e.Peer, client, e.Name, e.Type, e.Outcome, e.Rcode,
			e.Latency.Microseconds()); err != nil {
			return 0, fmt.Errorf("store: record a logged query: %w", err)
		}
		n++
	}
	return n, nil
}

// DNSLogQuery selects entries of one tenant's query log. Zero fields select everything.
type DNSLogQuery struct {
	// Tenant is the tenant's name (required).
	Tenant string
	// Peer keeps the entries of one peer.
	Peer string
	// Since and Until keep the entries at or after Since and before Until.
	Since, Until time.Time
	// Offset skips that many entries of the answer; Limit returns at most that many
	// (default DefaultDNSLogPage, at most MaxDNSLogPage).
	Offset, Limit int
}

// DNSLog returns the entries q selects, newest first, and whether more follow. The error
// wraps ErrNotFound for an unknown tenant, ErrInvalid for a limit out of bounds.
func (s *Store) DNSLog(ctx context.Context, q DNSLogQuery) ([]DNSLogEntry, bool, error) {
	if q.Limit == 0 {
		q.Limit = DefaultDNSLogPage
	}
	if q.Limit < 1 || q.Limit > MaxDNSLogPage || q.Offset < 0 {
		return nil, false, errorf(ErrInvalid, "a query log page holds 1 to %d entries from an offset ≥ 0, not %d from %d", MaxDNSLogPage, q.Limit, q.Offset)
	}
	var out []DNSLogEntry
	err := s.read(ctx, func(rq querier) error {
		t, err := getTenant(ctx, rq, q.Tenant)
		if err != nil {
			return err
		}
		where, args := []string{"tenant_id = ?"}, []any{t.ID}
		if !q.Since.IsZero() {
			where, args = append(where, "at >= ?"), append(args, micros(q.Since))
		}
		if !q.Until.IsZero() {
			where, args = append(where, "at < ?"), append(args, micros(q.Until))
		}
		if q.Peer != "" {
			where, args = append(where, "peer = ?"), append(args, q.Peer)
		}
		rows, err := rq.QueryContext(ctx, `SELECT id, tenant_id, at, node, peer, client, name, qtype, outcome, rcode, latency_us
			FROM dns_log WHERE `+strings.Join(where, " AND ")+` ORDER BY at DESC, id DESC LIMIT ? OFFSET ?`, append(args, q.Limit+1, q.Offset)...)
		if err != nil {
			return fmt.Errorf("store: read the query log of %s: %w", q.Tenant, err)
		}
		defer rows.Close()
		for rows.Next() {
			var e DNSLogEntry
			var at, lat int64
			var client string
			if err := rows.Scan(&e.ID, &e.TenantID, &at, &e.Node, &e.Peer, &client, &e.Name, &e.Type, &e.Outcome, &e.Rcode, &lat); err != nil {
				return fmt.Errorf("store: read the query log of %s: %w", q.Tenant, err)
			}
			e.At, e.Latency = fromMicros(at), time.Duration(lat)*time.Microsecond
			e.Client, _ = netip.ParseAddr(client)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, false, err
	}
	more := len(out) > q.Limit
	if more {
		out = out[:q.Limit]
	}
	return out, more, nil
}

// PruneDNSLog deletes the entries older than their tenant's log keeps them, those beyond the
// newest maxRows of each tenant, and any of a tenant whose log is off, a batch per
// transaction. It returns how many it deleted.
func (s *Store) PruneDNSLog(ctx context.Context, maxRows int) (int64, error) {
	var on map[int64]DNSLogSettings
	var tenants []int64
	err := s.read(ctx, func(q querier) error {
		var err error
		if on, err = allDNSLogSettings(ctx, q); err != nil {
			return err
		}
		rows, err := q.QueryContext(ctx, "SELECT DISTINCT tenant_id FROM dns_log")
		if err != nil {
			return fmt.Errorf("store: read the query logs: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("store: read the query logs: %w", err)
			}
			tenants = append(tenants, id)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, err
	}
	var total int64
	// deleteBatches runs a DELETE of at most dnsLogPruneBatch rows (its rowid IN ... LIMIT)
	// until it deletes fewer.
	deleteBatches := func(cond string, args ...any) error {
		for {
			var n int64
			err := s.writeAuth(ctx, func(tx *sql.Tx) error {
				res, err := tx.ExecContext(ctx, "DELETE FROM dns_log WHERE id IN (SELECT id FROM dns_log WHERE "+cond+" LIMIT ?)",
					append(args, dnsLogPruneBatch)...)
				if err != nil {
					return fmt.Errorf("store: prune the query log: %w", err)
				}
				n, _ = res.RowsAffected()
				return nil
			})
			if err != nil {
				return err
			}
			total += n
			if n < dnsLogPruneBatch {
				return nil
			}
		}
	}
	now := s.now()
	for _, id := range tenants {
		set, ok := on[id]
		if !ok {
			if err := deleteBatches("tenant_id = ?", id); err != nil {
				return total, err
			}
			continue
		}
		if err := deleteBatches("tenant_id = ? AND at < ?", id, micros(now.Add(-set.Keep))); err != nil {
			return total, err
		}
		// The newest maxRows stay: the row just beyond them bounds what goes.
		var at, rowID int64
		err := s.db.QueryRowContext(ctx, "SELECT at, id FROM dns_log WHERE tenant_id = ? ORDER BY at DESC, id DESC LIMIT 1 OFFSET ?", id, maxRows).Scan(&at, &rowID)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return total, fmt.Errorf("store: prune the query log: %w", err)
		}
		if err := deleteBatches("tenant_id = ? AND (at < ? OR at = ? AND id <= ?)", id, at, at, rowID); err != nil {
			return total, err
		}
	}
	return total, nil
}
