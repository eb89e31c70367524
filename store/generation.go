package store

import (
	"context"
	"database/sql"
	"fmt"
)

// generationVersion is the schema version that added the generation table.
const generationVersion = 2

// Generation returns the change counter of the database. It grows (by one or more) with
// every committed transaction that changed a row — tenants, peers, groups, sites, routes,
// policies, settings — whichever process or connection made it; reads, and writes that
// change nothing, leave it as it is. It never goes back, also not across restarts.
//
// A reconcile loop reads Generation before the state it derives from and skips the work when
// the value is the one it saw last time: a change committed between the two reads only
// makes the next round run again.
//
// Why a row and not PRAGMA data_version: data_version is per connection and changes only
// when another connection commits, so values read from different connections of the
// database/sql pool cannot be compared, a connection's own commits do not show, and it starts
// over with every connection. The row is written in the transaction of the change it counts,
// so it commits (or rolls back) with it, is the same for every connection and process, and is
// durable.
func (s *Store) Generation(ctx context.Context) (int64, error) {
	return generation(ctx, s.db)
}

func generation(ctx context.Context, q querier) (int64, error) {
	var g int64
	if err := q.QueryRowContext(ctx, "SELECT value FROM generation WHERE id = 1").Scan(&g); err != nil {
		return 0, fmt.Errorf("store: read generation: %w", err)
	}
	return g, nil
}

// bumpGeneration advances the generation inside the write transaction tx.
func bumpGeneration(ctx context.Context, tx *sql.Tx) error {
	res, err := tx.ExecContext(ctx, "UPDATE generation SET value = value + 1 WHERE id = 1")
	if err != nil {
		return fmt.Errorf("store: advance generation: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("store: advance generation: the generation row is missing (%d rows, %v): restore the database from a backup", n, err)
	}
	return nil
}
