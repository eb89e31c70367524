package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// BackupInfo describes a backup Backup wrote.
type BackupInfo struct {
	// Path is the backup file, absolute.
	Path string
	// Size is its size in bytes.
	Size int64
	// Version is its schema version; Rows counts the rows of each of its tables.
	Version int
	Rows    map[string]int64
}

// Backup writes a consistent copy of the popgate database at path to dest, with mode 0600:
// SQLite's VACUUM INTO, which reads one snapshot of the database and writes nothing to it,
// so it works while popgate serve writes the database. The copy is in rollback-journal mode,
// a single file (popgate serve makes it WAL again when it opens it) and passed SQLite's
// quick_check. dest appears complete or not at all (it is written under a temporary name in
// its directory, synced, then linked or renamed into place). An existing dest is an error
// wrapping ErrExists unless overwrite is set.
//
// The copy holds the server-generated private keys sealed with the key file (secret.key),
// which it does not contain: a restore needs that file too.
func Backup(ctx context.Context, path, dest string, overwrite bool) (BackupInfo, error) {
	dest, err := filepath.Abs(dest)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup file: %w", err)
	}
	if !overwrite {
		if _, err := os.Lstat(dest); err == nil {
			return BackupInfo{}, errorf(ErrExists, "%s exists: choose another file, or replace it with --force", dest)
		}
	}
	// Not read-only: SQLite opens the file VACUUM INTO writes like the main one.
	db, path, err := openExisting(path, openReadWrite)
	if err != nil {
		return BackupInfo{}, err
	}
	defer db.Close()
	if same, _ := sameFile(path, dest); same {
		return BackupInfo{}, errorf(ErrInvalid, "%s is the database itself: write the backup to another file", dest)
	}
	if _, err := schemaVersion(ctx, db, path); err != nil {
		return BackupInfo{}, err
	}

	dir := filepath.Dir(dest)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".tmp-*") // mode 0600
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	tmpPath := tmp.Name()
	defer os.Remove(tmpPath) // after the link or rename, or on failure
	// VACUUM INTO writes into an empty file it is given, keeping its mode.
	if err := tmp.Close(); err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", tmpPath); err != nil {
		return BackupInfo{}, fmt.Errorf("store: back up %s: %w", path, err)
	}
	info, err := finishBackup(ctx, tmpPath)
	if err != nil {
		return BackupInfo{}, err
	}
	if err := syncFile(tmpPath); err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	if overwrite {
		err = os.Rename(tmpPath, dest)
	} else {
		err = os.Link(tmpPath, dest) // fails when dest appeared meanwhile
		if errors.Is(err, fs.ErrExist) {
			err = errorf(ErrExists, "%s exists: choose another file, or replace it with --force", dest)
		}
	}
	if err != nil {
		return BackupInfo{}, err
	}
	if err := syncDir(dir); err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	info.Path = dest
	return info, nil
}

// finishBackup turns the fresh copy at path into a single file in rollback-journal mode,
// checks it and describes it.
func finishBackup(ctx context.Context, path string) (BackupInfo, error) {
	db, _, err := openExisting(path, openReadWrite)
	if err != nil {
		return BackupInfo{}, err
	}
	defer db.Close()
	var mode, quick string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode = DELETE").Scan(&mode); err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&quick); err != nil || quick != "ok" {
		return BackupInfo{}, fmt.Errorf("store: backup: the copy fails SQLite's quick_check (%s, %v): try again", quick, err)
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	defer tx.Rollback()
	var info BackupInfo
	if info.Version, err = schemaVersion(ctx, tx, path); err != nil {
		return BackupInfo{}, err
	}
	r := CheckReport{Path: path, Rows: map[string]int64{}}
	c := &checker{ctx: ctx, tx: tx, r: &r}
	c.countRows()
	info.Rows = r.Rows
	if c.err != nil {
		return BackupInfo{}, c.err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	info.Size = fi.Size()
	return info, nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sameFile reports whether a and b name the same existing file.
func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}
