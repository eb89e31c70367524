package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOpenDataDirMakesItPrivate: a data dir that exists with mode 0755 is 0700 after
// openDataDir, which logs that once; the next open finds it private and says nothing.
func TestOpenDataDirMakesItPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	for i, wantLog := range []bool{true, false} {
		var logs bytes.Buffer
		d, err := openDataDir(context.Background(), dir, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("start %d: data dir mode %v, %v; want 0700", i+1, fi.Mode().Perm(), err)
		}
		said := strings.Count(logs.String(), "made it private")
		if wantLog && (said != 1 || !strings.Contains(logs.String(), "mode_was=0755")) || !wantLog && said != 0 {
			t.Errorf("start %d logged:\n%s", i+1, logs.String())
		}
	}
}

// TestOpenDataDirOnce: a second serve on the same data dir is refused while the first holds
// it, and may open it once the first has let go.
func TestOpenDataDirOnce(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	d, err := openDataDir(context.Background(), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openDataDir(context.Background(), dir, log); !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), "(pid "+strconv.Itoa(os.Getpid())+")") {
		t.Fatalf("second open of the data dir: err = %v, want ErrAlreadyRunning naming our pid", err)
	}
	d.Close()
	d, err = openDataDir(context.Background(), dir, log)
	if err != nil {
		t.Fatalf("open after the first let go: %v", err)
	}
	d.Close()
}
