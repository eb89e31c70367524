package store

import (
	"errors"
	"fmt"
	"path/filepath"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// kindError is an error a user reads: msg says what went wrong and what to do, kind is the
// Err… value callers branch on with errors.Is. Keeping the two apart lets the message read as
// one sentence instead of ending in ": not found".
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// errorf returns an error with the formatted message that wraps kind.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// storageError turns err, from a write transaction, into an error wrapping ErrDiskFull when
// SQLite could not write for want of space (SQLITE_FULL: the disk, or the database's page
// limit) or because of an I/O error (SQLITE_IOERR, which a full disk may also cause); other
// errors are returned as they are. The transaction was rolled back, so nothing changed.
func (s *Store) storageError(err error) error {
	var serr *sqlite.Error
	if err == nil || !errors.As(err, &serr) {
		return err
	}
	dir := filepath.Dir(s.path)
	switch serr.Code() & 0xff {
	case sqlite3.SQLITE_FULL:
		return &diskError{cause: err, msg: fmt.Sprintf("the disk holding the database is full: free space on %s and retry; nothing was changed", dir)}
	case sqlite3.SQLITE_IOERR:
		return &diskError{cause: err, msg: fmt.Sprintf("cannot write the database in %s (an I/O error: is the disk full or failing?): free space on it or check the disk, then retry; nothing was changed", dir)}
	}
	return err
}

// diskError is a write the disk refused: msg for the user, cause (SQLite's error) for the log.
type diskError struct {
	msg   string
	cause error
}

func (e *diskError) Error() string   { return e.msg }
func (e *diskError) Unwrap() []error { return []error{ErrDiskFull, e.cause} }
