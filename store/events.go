package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Events (issue 16) are state changes an operator wants to hear of: a backbone link down and
// back, a route's exit changed, a node offline and back, a peer about to expire. They are not
// the audit log's changes that admins make. The controller records its own and its nodes';
// the table keeps the newest MaxEvents of the last EventRetention, pruned as events are added.

// eventsVersion is the schema version that added events and the webhook.
const eventsVersion = 11

// Bounds of the event log.
const (
	// MaxEvents is how many events the log keeps: the newest.
	MaxEvents = 100_000
	// EventRetention is how long it keeps them.
	EventRetention = 30 * 24 * time.Hour
	// MaxEventPage is the most events ListEvents returns at once.
	MaxEventPage = 1000
)

// Limits of an event's values; AddEvents cuts longer ones.
const (
	maxEventKind    = 64
	maxEventNode    = 64
	maxEventSubject = 256
	maxEventMessage = 1024
	maxEventData    = 4096
	// MaxEventDataKeys bounds an event's data: the first keys in order are kept.
	MaxEventDataKeys = 16
	maxEventDataKey  = 64
	maxEventDataVal  = 256
)

// Event is one state change.
type Event struct {
	ID int64
	At time.Time
	// Kind is a dotted name such as "link.down", "failover", "node.offline".
	Kind string
	// Node is the node it happened at; the controller's name for its own.
	Node string
	// Tenant is the tenant it concerns; "" for the network's (a node, a link, the internet's
	// exit).
	Tenant string
	// Subject names what changed, in the audit log's target format ("link:p1/x1",
	// "route:acme/10.0.0.0/8", "peer:acme/laptop", "node:p1").
	Subject string
	// Message says it in a sentence.
	Message string
	// Data holds the details, for machines; nil for none.
	Data map[string]string
}

// ValidateEventKind reports whether kind is a valid event kind: 1-64 lower-case letters,
// digits, '.', '_' and '-', starting with a letter. The error wraps ErrInvalid.
func ValidateEventKind(kind string) error {
	ok := kind != "" && len(kind) <= maxEventKind && 'a' <= kind[0] && kind[0] <= 'z'
	for i := 0; ok && i < len(kind); i++ {
		c := kind[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return errorf(ErrInvalid, "event kind %q is invalid: use 1-64 lower-case letters, digits, '.', '_' and '-', starting with a letter", truncate(kind, 80))
	}
	return nil
}

// eventData fits d to the data column: the first MaxEventDataKeys keys in order, keys and
// values cleaned and cut, as many as fit maxEventData bytes. It returns them (nil for none)
// and their encoding.
func eventData(d map[string]string) (map[string]string, string) {
	out := map[string]string{}
	size := 2
	for _, k := range slices.Sorted(maps.Keys(d)) {
		if len(out) == MaxEventDataKeys {
			break
		}
		ck, cv := clean(k, maxEventDataKey), clean(d[k], maxEventDataVal)
		b, _ := json.Marshal(map[string]string{ck: cv})
		if size+len(b) > maxEventData {
			break
		}
		size += len(b) - 1 // the braces are shared, a comma added
		out[ck] = cv
	}
	b, _ := json.Marshal(out)
	if len(out) == 0 {
		return nil, string(b)
	}
	return out, string(b)
}

// cleanEvent fits e to the columns: values cleaned and cut as AppendAudit does, a tenant that
// is not a valid tenant name dropped, a zero time the store's clock.
func (s *Store) cleanEvent(e Event) (Event, string, error) {
	if err := ValidateEventKind(e.Kind); err != nil {
		return e, "", err
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	e.At = fromMicros(max(micros(e.At), 1))
	e.Node = clean(e.Node, maxEventNode)
	if e.Tenant != "" && ValidateTenantName(e.Tenant) != nil {
		e.Tenant = ""
	}
	e.Subject, e.Message = clean(e.Subject, maxEventSubject), clean(e.Message, maxEventMessage)
	var data string
	e.Data, data = eventData(e.Data)
	return e, data, nil
}

// AddEvents records evs in one transaction and returns them with their IDs. Values are
// cut and cleaned (see Event); a kind that is not valid refuses them all (ErrInvalid). The
// log is pruned to MaxEvents and EventRetention in the same transaction.
func (s *Store) AddEvents(ctx context.Context, evs []Event) ([]Event, error) {
	out := make([]Event, 0, len(evs))
	datas := make([]string, 0, len(evs))
	for _, e := range evs {
		c, data, err := s.cleanEvent(e)
		if err != nil {
			return nil, err
		}
		out, datas = append(out, c), append(datas, data)
	}
	if len(out) == 0 {
		return out, nil
	}
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		return s.insertEvents(ctx, tx, out, datas)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// insertEvents inserts evs (cleaned, with their encoded datas), sets their IDs and prunes.
func (s *Store) insertEvents(ctx context.Context, tx *sql.Tx, evs []Event, datas []string) error {
	for i := range evs {
		e := &evs[i]
		var tenant any
		if e.Tenant != "" {
			tenant = e.Tenant
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO events (at, kind, node, tenant, subject, message, data)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, micros(e.At), e.Kind, e.Node, tenant, e.Subject, e.Message, datas[i])
		if err != nil {
			return fmt.Errorf("store: record an event: %w", err)
		}
		if e.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: record an event: %w", err)
		}
	}
	// IDs are never reused and only the oldest go: the newest MaxEvents are the IDs above
	// the last one less MaxEvents, which the primary key finds without a scan.
	last := evs[len(evs)-1].ID
	if _, err := tx.ExecContext(ctx, "DELETE FROM events WHERE id <= ?", last-int64(s.maxEvents)); err != nil {
		return fmt.Errorf("store: prune the event log: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM events WHERE at < ?", micros(s.now().Add(-EventRetention))); err != nil {
		return fmt.Errorf("store: prune the event log: %w", err)
	}
	return nil
}

// NodeEvent is an event a node reported, with the number it gave it: from 1 at the start of
// its process, one more for each event.
type NodeEvent struct {
	Seq uint64
	Event
}

// EventCursor is the newest event of a node's process the controller recorded: Boot tells
// the node's starts apart, Seq is the event's number.
type EventCursor struct {
	Boot int64  `json:"boot"`
	Seq  uint64 `json:"seq"`
}

// NodeEventCursor returns the newest event recorded of node id; the zero cursor when none
// is.
func (s *Store) NodeEventCursor(ctx context.Context, id int64) (EventCursor, error) {
	c, _, err := reportCursor(ctx, s.db, "event_cursors", id)
	return c, err
}

// reportCursor reads from table (event_cursors, dns_log_cursors) how far node id's reports
// were recorded: the process (boot) and the last sequence number; found is false when there
// is no row yet.
func reportCursor(ctx context.Context, q querier, table string, id int64) (c EventCursor, found bool, err error) {
	var seq int64
	err = q.QueryRowContext(ctx, "SELECT boot, seq FROM "+table+" WHERE node_id = ?", id).Scan(&c.Boot, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return EventCursor{}, false, nil
	}
	if err != nil {
		return EventCursor{}, false, fmt.Errorf("store: read a node's cursor (%s): %w", table, err)
	}
	c.Seq = uint64(seq)
	return c, true, nil
}

// nodeCursor is reportCursor for recording what node id reported of its process boot: the
// cursor to record after, zero when the node starts a new process, and whether the node had
// one; ErrNotFound when the node was removed.
func nodeCursor(ctx context.Context, tx *sql.Tx, table string, id, boot int64) (cur EventCursor, found bool, err error) {
	if cur, found, err = reportCursor(ctx, tx, table, id); err != nil {
		return cur, found, err
	}
	if !found {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM nodes WHERE id = ?", id).Scan(&n); err != nil {
			return cur, found, fmt.Errorf("store: read node #%d: %w", id, err)
		}
		if n == 0 {
			return cur, found, errorf(ErrNotFound, "node #%d not found: it was removed", id)
		}
	}
	if cur.Boot != boot {
		cur = EventCursor{Boot: boot}
	}
	return cur, found, nil
}

// AddNodeEvents records the events node id reported of its process boot that are not
// recorded yet (those numbered after the node's cursor, or all of a process it did not
// have), and moves the cursor, in one transaction: a report sent again adds nothing twice.
// It returns the events it recorded. The error wraps ErrNotFound when the node was removed,
// ErrInvalid when an event's kind is invalid (nothing is recorded then).
func (s *Store) AddNodeEvents(ctx context.Context, id int64, boot int64, evs []NodeEvent) ([]Event, error) {
	var out []Event
	var datas []string
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		out, datas = out[:0], datas[:0]
		cur, _, err := nodeCursor(ctx, tx, "event_cursors", id, boot)
		if err != nil {
			return err
		}
		top := cur.Seq
		for _, ne := range evs {
			if ne.Seq <= cur.Seq || ne.Seq > 1<<62 {
				continue
			}
			c, data, err := s.cleanEvent(ne.Event)
			if err != nil {
				return err
			}
			out, datas = append(out, c), append(datas, data)
			top = max(top, ne.Seq)
		}
		if len(out) == 0 {
			return nil
		}
		if err := s.insertEvents(ctx, tx, out, datas); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO event_cursors (node_id, boot, seq) VALUES (?, ?, ?)
			ON CONFLICT (node_id) DO UPDATE SET boot = excluded.boot, seq = excluded.seq`, id, boot, int64(top))
		if err != nil {
			return fmt.Errorf("store: move a node's event cursor: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EventQuery selects events. Zero fields select everything.
type EventQuery struct {
	// Tenant keeps the events of one tenant (not the network's).
	Tenant string
	// Kind keeps one kind and the kinds below it, as AuditQuery.Action does ("node" keeps
	// node.offline and node.back; "link.down" keeps link.down).
	Kind string
	// Node keeps the events of one node.
	Node string
	// Since and Until keep events at or after Since and before Until.
	Since, Until time.Time
	// Offset skips that many events of the answer; Limit returns at most that many (default
	// 50, at most MaxEventPage).
	Offset, Limit int
}

const eventSelect = "SELECT id, at, kind, node, coalesce(tenant, ''), subject, message, data FROM events "

func scanEvent(scan func(...any) error) (Event, error) {
	var e Event
	var at int64
	var data string
	if err := scan(&e.ID, &at, &e.Kind, &e.Node, &e.Tenant, &e.Subject, &e.Message, &data); err != nil {
		return e, fmt.Errorf("store: read the event log: %w", err)
	}
	e.At = fromMicros(at)
	if data != "{}" && data != "" {
		json.Unmarshal([]byte(data), &e.Data)
	}
	return e, nil
}

// ListEvents returns the events q selects, newest first (by when they happened, then by
// when they were recorded), and whether there are more after them (for paging with
// q.Offset).
func (s *Store) ListEvents(ctx context.Context, q EventQuery) ([]Event, bool, error) {
	var f logFilter
	f.equal("tenant", q.Tenant)
	f.equal("node", q.Node)
	f.family("kind", q.Kind)
	f.window(q.Since, q.Until)
	return logPage(ctx, s.db, eventSelect, f, q.Offset, q.Limit, MaxEventPage, "event log", scanEvent)
}

// EventsAfter returns up to limit events recorded after the one with ID after, in the order
// they were recorded: what the webhook has still to send.
func (s *Store) EventsAfter(ctx context.Context, after int64, limit int) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, eventSelect+"WHERE id > ? ORDER BY id LIMIT ?", after, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("store: read the event log: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read the event log: %w", err)
	}
	return out, nil
}

// lastEventID is the ID of the newest event recorded, 0 before the first. IDs are never
// reused, also after the event is pruned.
func lastEventID(ctx context.Context, q querier) (int64, error) {
	var id sql.NullInt64
	// sqlite_sequence keeps the highest ID AUTOINCREMENT handed out, pruned rows included.
	err := q.QueryRowContext(ctx, "SELECT seq FROM sqlite_sequence WHERE name = 'events'").Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read the event log: %w", err)
	}
	return id.Int64, nil
}

// CountEventsAfter counts the events recorded after the one with ID after, up to at most
// limit (counting further would cost a scan for nothing).
func (s *Store) CountEventsAfter(ctx context.Context, after int64, limit int) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM events WHERE id > ? LIMIT ?)", after, limit).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: read the event log: %w", err)
	}
	return n, nil
}

// EventBacklog bounds what is left to send after the event with ID after to the newest
// keep: it returns the ID of the newest event to drop for that (0: none need be) and how
// many events that drops.
func (s *Store) EventBacklog(ctx context.Context, after int64, keep int) (cut int64, dropped int, err error) {
	err = s.read(ctx, func(q querier) error {
		err := q.QueryRowContext(ctx, "SELECT id FROM events WHERE id > ? ORDER BY id DESC LIMIT 1 OFFSET ?", after, keep).Scan(&cut)
		if errors.Is(err, sql.ErrNoRows) {
			cut = 0
			return nil
		}
		if err != nil {
			return err
		}
		return q.QueryRowContext(ctx, "SELECT count(*) FROM events WHERE id > ? AND id <= ?", after, cut).Scan(&dropped)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: read the event log: %w", err)
	}
	return cut, dropped, nil
}
