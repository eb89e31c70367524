package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/popgate/popgate/store"
)

// ErrAlreadyRunning means another serve holds the data dir.
var ErrAlreadyRunning = errors.New("another popgate serve is running")

// lockFileName is the data dir's lock (beside databaseName and the control socket).
const lockFileName = "popgate.lock"

// dataDir is the data dir serve holds: its lock and the store in it.
type dataDir struct {
	path  string
	lock  *os.File
	store *store.Store
}

// openDataDir makes the data dir (private), takes its lock, so that a second serve on the same
// dir fails with ErrAlreadyRunning, and opens the store in it.
func openDataDir(ctx context.Context, dir string, log *slog.Logger) (*dataDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w: choose a writable --data-dir", dir, err)
	}
	if err := privateDataDir(dir, log); err != nil {
		return nil, err
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(dir, databaseName)})
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &dataDir{path: dir, lock: lock, store: st}, nil
}

// Close closes the store, then lets go of the lock.
func (d *dataDir) Close() error {
	err := d.store.Close()
	d.lock.Close()
	return err
}

// privateDataDir makes the data dir, which holds the database, the key file and the control
// socket, 0700 when group or others may use it: os.MkdirAll leaves a directory that exists
// as it is, and one made by hand or by an older package may be 0755. It logs when it changed
// the mode (so once: the next start finds it private).
func privateDataDir(dir string, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s is not a directory: choose another --data-dir", dir)
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s has mode %04o, so other users may reach the database and the control socket, and it cannot be made private (%w): run 'chmod 700 %s' as its owner", dir, perm, err, dir)
	}
	log.Warn("the data dir was open to other users: made it private (0700); it holds the database, the key file and the control socket",
		"dir", dir, "mode_was", fmt.Sprintf("%04o", perm))
	return nil
}

// lockDataDir takes an exclusive, non-blocking lock on <dir>/popgate.lock and writes our pid.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w: choose a writable --data-dir", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%w with data dir %s (pid %s): stop it first, or give this one another --data-dir", ErrAlreadyRunning, dir, strings.TrimSpace(string(pid)))
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}
