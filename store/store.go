package store

import (
	"context"
	"crypto/cipher"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"modernc.org/sqlite" // the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Options configures Open.
type Options struct {
	// Path is the SQLite database file. Required. It is created with mode 0600 when missing,
	// and so is its directory (mode 0700).
	Path string
	// KeyPath is the 32-byte secret key file that encrypts private keys at rest. Default:
	// KeyFileName beside the database, filepath.Join(filepath.Dir(Path), KeyFileName).
	KeyPath string
	// Now is the clock for created_at/updated_at. Default time.Now.
	Now func() time.Time

	// migrateTo stops migrating at this schema version, so that tests can build a database
	// as an older popgate left it. 0, the default, applies every migration.
	migrateTo int
	// pragmas are run on every connection after the usual ones, so that tests can bound
	// the database (max_page_count) as a full disk would.
	pragmas []string
}

// Store is popgate's desired state in one SQLite database. Its methods are safe for
// concurrent use. Every method that writes runs in one transaction: it either commits all of
// its changes or none. After Close every method returns an error.
type Store struct {
	db      *sql.DB
	path    string
	keyPath string
	now     func() time.Time

	// Fixed at Open, read-only afterwards.
	aead    cipher.AEAD // seals private keys with the key file's secret
	nodePub Key
	ula     netip.Prefix // the installation's IPv6 /48

	// v4First and v4Last bound the IPv4 pool, inclusive. Tests shrink v4Last to reach the top
	// of the pool quickly.
	v4First, v4Last uint32

	// maxEvents bounds the event log (MaxEvents; tests lower it).
	maxEvents int

	// version is the schema version after Open: the newest migration's number, lower only
	// when a test set Options.migrateTo.
	version int

	// writeSem serialises this process's write transactions. SQLite has one writer at a
	// time anyway; queueing here (cancellable by ctx) is cheaper than its busy-sleep loop.
	writeSem chan struct{}
	// logged is set by logChange during a write transaction: the transaction wrote its
	// audit entry. Guarded by writeSem.
	logged bool

	// peerCache keeps the peers of the last Snapshot (see snapshotPeers).
	peerCache peerCache

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating when missing) the database at opts.Path, applies pending migrations,
// loads the secret key file (creating it on first use) and, on first use, generates the
// node's private key and the installation's IPv6 ULA prefix. It refuses a database written by
// a newer popgate, a key file that others can read, and a missing key file when the database
// holds keys encrypted with it. The caller must Close the Store.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errorf(ErrInvalid, "store: Options.Path is empty: set it to the database file, e.g. /var/lib/popgate/popgate.db")
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("store: database path %s: %w", opts.Path, err)
	}
	keyPath := opts.KeyPath
	if keyPath == "" {
		keyPath = defaultKeyPath(path)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create data directory: %w", err)
	}
	// Create the file ourselves so that it (and the -wal and -shm files, which SQLite gives
	// the database's mode) starts as 0600 whatever the umask.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open database: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: open database: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(path, opts.pragmas...))
	if err != nil {
		return nil, fmt.Errorf("store: open database %s: %w", path, err)
	}
	s := &Store{
		db:        db,
		path:      path,
		keyPath:   keyPath,
		now:       now,
		v4First:   ipv4First,
		v4Last:    ipv4Last,
		writeSem:  make(chan struct{}, 1),
		maxEvents: MaxEvents,
	}
	if err := s.init(ctx, opts.migrateTo); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// busyTimeout is how long a statement waits for another connection's lock before failing.
const busyTimeout = 5 * time.Second

// dsn is the modernc.org/sqlite data source name for the database file at the absolute path,
// with extra pragmas ("max_page_count(10)") after the usual ones. The file: URI form with an
// escaped path keeps a '?' or '#' in the path from being read as the start of the parameters.
func dsn(path string, extra ...string) string {
	u := url.URL{Scheme: "file", Path: path}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	for _, p := range extra {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *Store) init(ctx context.Context, migrateTo int) error {
	if err := s.ping(ctx); err != nil {
		return fmt.Errorf("store: open database %s: %w", s.path, err)
	}
	if err := s.migrate(ctx, migrateTo); err != nil {
		return err
	}
	held, err := holdsEncryptedKeys(ctx, s.db)
	if err != nil {
		return err
	}
	secret, err := loadSecret(s.keyPath, s.path, !held)
	if err != nil {
		return err
	}
	s.aead, err = newAEAD(secret) // copies the key
	clear(secret)
	if err != nil {
		return err
	}
	return s.initNode(ctx)
}

// ping opens the first connection. Switching a new database to WAL needs an exclusive lock
// and SQLite does not wait for it (busy_timeout does not apply), so when several processes
// open a fresh database at once the losers retry for as long as busy_timeout would wait.
func (s *Store) ping(ctx context.Context) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := s.db.PingContext(ctx)
		var serr *sqlite.Error
		if err == nil || !errors.As(err, &serr) || serr.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close closes the database. It waits for running queries to finish. Calling it again
// returns the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// querier is what *sql.DB and *sql.Tx have in common; query functions take one so that they
// run alone or inside a transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ querier = (*sql.DB)(nil)
	_ querier = (*sql.Tx)(nil)
)

// write runs fn in one write transaction (BEGIN IMMEDIATE, from the DSN) and commits when fn
// returns nil. An error from fn rolls everything back and is returned as is. When fn changed
// any row, the same transaction advances the generation (see Generation), and fn must have
// recorded the change in the audit log (logChange): a change without its entry is refused
// and rolled back, so that the audit log cannot miss a change to the desired state.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.writeTx(ctx, kindState, fn)
}

// writeAuth runs fn in one write transaction that does not advance the generation: admins,
// sessions, tokens, the audit log and download links are not desired network state, and
// nodes need not re-read anything when they change.
func (s *Store) writeAuth(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.writeTx(ctx, kindAuth, fn)
}

// writeKind says what a write transaction changes, and so what it must do besides.
type writeKind int

const (
	// kindState changes the desired state: the generation advances and the change must be
	// in the audit log.
	kindState writeKind = iota
	// kindAuth changes admins, sessions, tokens or links: not desired network state, so the
	// generation stays; the method audits what an admin would call a change (not sign-ins
	// and session bookkeeping).
	kindAuth
	// kindSchema migrates the schema, whose tables may not exist yet: neither.
	kindSchema
	// kindNode creates the node's own settings at Open: the generation advances, nobody
	// did anything to audit.
	kindNode
)

// writeTx runs fn in one write transaction of kind. A write that fails because the disk or
// the database is full, or on an I/O error, returns an error wrapping ErrDiskFull.
func (s *Store) writeTx(ctx context.Context, kind writeKind, fn func(tx *sql.Tx) error) error {
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("store: waiting to write: %w", ctx.Err())
	}
	defer func() { <-s.writeSem }()
	s.logged = false
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.storageError(fmt.Errorf("store: begin transaction: %w", err))
	}
	if err = s.runTx(ctx, tx, kind, fn); err != nil {
		err = s.storageError(err)
		// After SQLITE_FULL or SQLITE_IOERR, SQLite may have rolled the transaction back
		// itself, and then ROLLBACK fails with "no transaction is active".
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) && !errors.Is(err, ErrDiskFull) {
			return errors.Join(err, fmt.Errorf("store: roll back: %w", rbErr))
		}
		return err
	}
	// A commit that fails is rolled back by the driver (modernc.org/sqlite's tx.Commit).
	if err := tx.Commit(); err != nil {
		return s.storageError(fmt.Errorf("store: commit: %w", err))
	}
	return nil
}

// runTx runs fn in tx and does what kind asks of a transaction that changed rows: advance
// the generation, insist on an audit entry. SQLite's total_changes() counts the rows this
// connection has inserted, updated or deleted, and tx holds one connection throughout, so it
// moves exactly when fn changed something.
func (s *Store) runTx(ctx context.Context, tx *sql.Tx, kind writeKind, fn func(tx *sql.Tx) error) error {
	count := (kind == kindState || kind == kindNode) && s.version >= generationVersion
	if !count {
		return fn(tx)
	}
	var before, after int64
	if err := tx.QueryRowContext(ctx, "SELECT total_changes()").Scan(&before); err != nil {
		return fmt.Errorf("store: count changes: %w", err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, "SELECT total_changes()").Scan(&after); err != nil {
		return fmt.Errorf("store: count changes: %w", err)
	}
	if after == before {
		return nil
	}
	if kind == kindState && !s.logged && s.version >= auditVersion {
		return errors.New("store: a change to the desired state without its audit entry: refused (a bug in popgate)")
	}
	return bumpGeneration(ctx, tx)
}

// read runs fn in one read-only transaction, so that the queries it makes see one snapshot
// of the database even while others write.
func (s *Store) read(ctx context.Context, fn func(q querier) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // a deferred BEGIN: no write lock
	if err != nil {
		return fmt.Errorf("store: begin transaction: %w", err)
	}
	defer tx.Rollback() // it wrote nothing, so a failure here loses nothing
	return fn(tx)
}

// oneRow turns the result of an UPDATE of one row by id into an error: ErrNotFound when no row
// had the id.
func oneRow(res sql.Result, err error, what string, id int64) error {
	if err != nil {
		return fmt.Errorf("store: update %s: %w", what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: update %s: %w", what, err)
	} else if n == 0 {
		return errorf(ErrNotFound, "%s #%d not found: it was removed meanwhile", what, id)
	}
	return nil
}

// micros converts t to the schema's time representation.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros converts the schema's time representation to a UTC time.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
