package store

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The audit log and the event log are listed alike: a few filters, newest first, a page at a
// time by offset, and whether more follow.

// logFilter is the WHERE clause of a list of a log, built filter by filter.
type logFilter struct {
	where []string
	args  []any
}

// equal keeps the rows whose column col is v; "" keeps all.
func (f *logFilter) equal(col, v string) {
	if v != "" {
		f.where, f.args = append(f.where, col+" = ?"), append(f.args, v)
	}
}

// family keeps the rows whose column col, a dotted name, is v or below it ("peer" keeps
// peer.add); v ending in '.' ("peer.") keeps only those below it; "" keeps all.
func (f *logFilter) family(col, v string) {
	// substr instead of LIKE: the names may hold % and _.
	if len(v) > 1 && strings.HasSuffix(v, ".") {
		f.where, f.args = append(f.where, "substr("+col+", 1, ?) = ?"), append(f.args, utf8.RuneCountInString(v), v)
	} else if v != "" {
		f.where, f.args = append(f.where, "("+col+" = ? OR substr("+col+", 1, ?) = ?)"), append(f.args, v, utf8.RuneCountInString(v)+1, v+".")
	}
}

// window keeps the rows at or after since and before until; a zero time bounds nothing.
func (f *logFilter) window(since, until time.Time) {
	if !since.IsZero() {
		f.where, f.args = append(f.where, "at >= ?"), append(f.args, micros(since))
	}
	if !until.IsZero() {
		f.where, f.args = append(f.where, "at < ?"), append(f.args, micros(until))
	}
}

// logPage is one page of a log's list: the rows f keeps, newest first (by at, then by id),
// after skipping offset of them, at most limit (default 50, at most maxPage); and whether more
// follow. sel is the SELECT … FROM of the log, scan reads one of its rows; what names the log
// in errors ("audit log").
func logPage[T any](ctx context.Context, q querier, sel string, f logFilter, offset, limit, maxPage int, what string, scan func(func(...any) error) (T, error)) ([]T, bool, error) {
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, maxPage)
	query := sel
	if len(f.where) > 0 {
		query += "WHERE " + strings.Join(f.where, " AND ") + " "
	}
	query += "ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
	rows, err := q.QueryContext(ctx, query, append(f.args, limit+1, max(offset, 0))...)
	if err != nil {
		return nil, false, fmt.Errorf("store: read the %s: %w", what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		e, err := scan(rows.Scan)
		if err != nil {
			return nil, false, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: read the %s: %w", what, err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}
