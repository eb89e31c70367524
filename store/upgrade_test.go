package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireTool skips the test when the command tool is missing, or fails it under CI=true,
// where `make test-deps` installed it (as testbed.RequireTools does for the end-to-end tests).
func requireTool(t *testing.T, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("missing %s: run `make test-deps` (as root) to install it", tool)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// debianSQLiteCheck runs the sqlite3 command (Debian 12's is SQLite 3.40, older than the one
// popgate links) on a copy of the closed database at path: integrity_check and
// foreign_key_check, then a .dump loaded into a new database, which evaluates every CHECK
// with that SQLite's functions. Operators use it to look at and repair the database.
func debianSQLiteCheck(t *testing.T, path string) {
	t.Helper()
	sqlite3 := requireTool(t, "sqlite3")
	dir := t.TempDir()
	cp := filepath.Join(dir, "copy.db")
	copyFile(t, path, cp)
	run := func(stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.Command(sqlite3, append([]string{"-bail", "-batch"}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Fatalf("sqlite3 %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	if got := run(nil, cp, "PRAGMA integrity_check; PRAGMA foreign_key_check;"); got != "ok\n" {
		t.Errorf("sqlite3 integrity_check and foreign_key_check of %s:\n%s", path, got)
	}
	dump := run(nil, cp, ".dump")
	run([]byte(dump), filepath.Join(dir, "reloaded.db"))
}

// TestDebianSQLiteReadsDatabase: Debian 12's sqlite3 checks and dumps a database of the
// current schema with a policy in it (0002's CHECK used octet_length(), which it lacks).
func TestDebianSQLiteReadsDatabase(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	mustTenant(t, s, "acme")
	mustPeer(t, s, newPeer(t, "acme", "laptop"))
	if err := s.SetPolicy(ctx, "acme", "# Büro\nallow any -> internet\n", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	debianSQLiteCheck(t, opts.Path)
}
