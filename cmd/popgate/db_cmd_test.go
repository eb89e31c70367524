package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

// TestDBCheckAndBackupCommands runs db check and backup on a data dir whose database a
// store holds open, as serve would.
func TestDBCheckAndBackupCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.Open(ctx, store.Options{Path: filepath.Join(dir, databaseName)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	run := func(wantCode int, args ...string) *testApp {
		t.Helper()
		ta := newTestApp(t, nil)
		if code := ta.runArgs(args...); code != wantCode {
			t.Fatalf("popgate %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, wantCode, ta.stdout, ta.stderr)
		}
		return ta
	}

	ta := run(exitOK, "db", "check", "--data-dir", dir)
	for _, w := range []string{"database " + filepath.Join(dir, databaseName) + ": schema version", "rows: admins 0, ", "tenants 1", "ok: SQLite's integrity"} {
		if !strings.Contains(ta.stdout.String(), w) {
			t.Errorf("db check lacks %q:\n%s", w, ta.stdout)
		}
	}

	backup := filepath.Join(t.TempDir(), "popgate-backup.db")
	ta = run(exitOK, "backup", "--data-dir", dir, backup)
	if ta.stdout.Len() != 0 {
		t.Errorf("backup wrote on stdout: %q", ta.stdout)
	}
	for _, w := range []string{"popgate: backed up " + filepath.Join(dir, databaseName), "1 tenants, 0 peers, 0 admins) to " + backup, "mode 0600)",
		"a restore also needs the key file " + filepath.Join(dir, store.KeyFileName)} {
		if !strings.Contains(ta.stderr.String(), w) {
			t.Errorf("backup's notes lack %q:\n%s", w, ta.stderr)
		}
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v", fi, err)
	}
	ta = run(exitRuntime, "backup", "--data-dir", dir, backup)
	checkOneErrorLine(t, ta.stderr.String(), backup+" exists", "--force")
	run(exitOK, "backup", "--force", "--data-dir", dir, backup)

	// The backup is a database db check reads, with the key file beside it.
	restored := t.TempDir()
	copyTestFile(t, backup, filepath.Join(restored, databaseName))
	copyTestFile(t, filepath.Join(dir, store.KeyFileName), filepath.Join(restored, store.KeyFileName))
	run(exitOK, "db", "check", "--data-dir", restored)
	// Without the key file it is not usable, and db check says so.
	os.Remove(filepath.Join(restored, store.KeyFileName))
	ta = run(exitRuntime, "db", "check", "--data-dir", restored)
	if !strings.Contains(ta.stdout.String(), "problem: the key file "+filepath.Join(restored, store.KeyFileName)+" cannot be used") {
		t.Errorf("db check without the key file:\n%s", ta.stdout)
	}
	checkOneErrorLine(t, ta.stderr.String(), "has 1 problem (listed above)", "Backup and restore")

	empty := t.TempDir()
	ta = run(exitRuntime, "db", "check", "--data-dir", empty)
	checkOneErrorLine(t, ta.stderr.String(), "there is no database "+filepath.Join(empty, databaseName))
	ta = run(exitRuntime, "backup", "--data-dir", empty, filepath.Join(empty, "b.db"))
	checkOneErrorLine(t, ta.stderr.String(), "there is no database")
	ta = run(exitUsage, "backup", "--data-dir", dir)
	checkOneErrorLine(t, ta.stderr.String(), "backup: missing FILE")
	ta = run(exitUsage, "db", "--data-dir", dir)
	checkOneErrorLine(t, ta.stderr.String(), "db: unknown subcommand")

	// POPGATE_DATA_DIR names the data dir, as for the admin commands.
	ta = newTestApp(t, map[string]string{envDataDir: dir})
	if code := ta.runArgs("db", "check"); code != exitOK {
		t.Errorf("db check with %s: %d %s", envDataDir, code, ta.stderr)
	}
	for _, args := range [][]string{{"help", "db", "check"}, {"backup", "--help"}} {
		ta := run(exitOK, args...)
		if !strings.Contains(ta.stdout.String(), "--data-dir DIR") || !strings.Contains(ta.stdout.String(), "Example:") {
			t.Errorf("%q:\n%s", args, ta.stdout)
		}
	}
}

func copyTestFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBackupRestoreRunningNode backs up a running popgate serve while the CLI keeps adding
// peers, restores the backup into a new data dir as README.md says (the database and the
// key file), starts serve there and finds every tenant and peer of the backup, each with the
// same client config as on the original node.
func TestBackupRestoreRunningNode(t *testing.T) {
	cli := func(dir string, args ...string) (string, error) {
		ta := newTestApp(t, nil)
		if code := ta.runArgs(append(args, "--data-dir", dir)...); code != exitOK {
			return ta.stdout.String(), fmt.Errorf("popgate %q: exit %d: %s", args, code, ta.stderr)
		}
		return ta.stdout.String(), nil
	}
	mustCLI := func(dir string, args ...string) string {
		t.Helper()
		out, err := cli(dir, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	_, stopCapture := captureStderr(t) // the first admin's password line
	defer stopCapture()

	orig := t.TempDir()
	stopOrig := startServe(t, orig, 1)
	mustCLI(orig, "tenant", "add", "acme")
	mustCLI(orig, "tenant", "add", "beta")
	mustCLI(orig, "peer", "add", "--tenant", "beta", "phone")

	// Peers keep coming while the backup runs.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	added, started := make(chan int, 1), make(chan struct{})
	var startOnce sync.Once
	wg.Add(1)
	go func() {
		defer wg.Done()
		n := 0
		defer func() { added <- n; startOnce.Do(func() { close(started) }) }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := cli(orig, "peer", "add", "--tenant", "acme", fmt.Sprintf("laptop-%d", n)); err != nil {
				t.Error(err)
				return
			}
			if n++; n == 3 {
				startOnce.Do(func() { close(started) })
			}
		}
	}()
	<-started
	mustCLI(orig, "db", "check")
	backup := filepath.Join(t.TempDir(), "backup.db")
	mustCLI(orig, "backup", backup)
	close(stop)
	wg.Wait()
	t.Logf("%d peers added while the backup ran", <-added)

	configs := map[string]string{} // tenant/peer → config, on the original node
	for _, p := range listPeers(t, mustCLI(orig, "peer", "list", "--json")) {
		configs[p] = mustCLI(orig, "peer", "config", "--tenant", strings.Split(p, "/")[0], strings.Split(p, "/")[1])
	}
	stopOrig()

	// Restore: the backup becomes popgate.db of a new data dir, with the key file.
	restored := t.TempDir()
	copyTestFile(t, backup, filepath.Join(restored, databaseName))
	copyTestFile(t, filepath.Join(orig, store.KeyFileName), filepath.Join(restored, store.KeyFileName))
	mustCLI(restored, "db", "check")
	r, err := store.Check(context.Background(), backup, filepath.Join(orig, store.KeyFileName))
	if err != nil || !r.OK() {
		t.Fatalf("the backup: %+v, %v", r, err)
	}
	stopRestored := startServe(t, restored, 2)
	defer stopRestored()
	var tenants webui.APITenants
	if err := json.Unmarshal([]byte(mustCLI(restored, "tenant", "list", "--json")), &tenants); err != nil || len(tenants.Tenants) != 2 {
		t.Errorf("tenants after the restore: %+v, %v", tenants, err)
	}
	peers := listPeers(t, mustCLI(restored, "peer", "list", "--json"))
	if int64(len(peers)) != r.Rows["peers"] || !slices.Contains(peers, "beta/phone") {
		t.Errorf("peers after the restore: %q; the backup holds %d", peers, r.Rows["peers"])
	}
	for _, p := range peers {
		want, ok := configs[p]
		if !ok {
			t.Errorf("restored peer %s was not on the original node", p)
			continue
		}
		if got := mustCLI(restored, "peer", "config", "--tenant", strings.Split(p, "/")[0], strings.Split(p, "/")[1]); got != want {
			t.Errorf("config of %s after the restore:\n%s\nbefore:\n%s", p, got, want)
		}
	}
}

// listPeers returns "tenant/peer" of each peer in a peer list --json answer.
func listPeers(t *testing.T, out string) []string {
	t.Helper()
	var ps webui.APIPeers
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("peer list --json: %v\n%s", err, out)
	}
	var names []string
	for _, p := range ps.Peers {
		names = append(names, p.Tenant+"/"+p.Name)
	}
	return names
}

// startServe runs popgate serve in the process on dir (userspace exit, loopback ports, and
// the flags extra) until the returned stop, and waits until the control socket answers.
func startServe(t *testing.T, dir string, n int, extra ...string) (stop func()) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	c.Close()
	ta := newTestApp(t, nil)
	sc, err := ta.loadServeConfig(append([]string{"--data-dir", dir, "--web-addr", "127.0.0.1:0", "--listen-port", port,
		"--public-endpoint", "127.0.0.1:51820", "--exit-mode", "userspace", "--interface", fmt.Sprintf("pgb%d-%d", os.Getpid()%100000, n)}, extra...))
	if err != nil {
		t.Fatal(err)
	}
	logs := new(syncBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, sc, slog.New(slog.NewTextHandler(logs, nil))) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for newTestApp(t, nil).runArgs("status", "--data-dir", dir) != exitOK {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("serve did not answer; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return stop
}

// serveCLI runs popgate command lines, with the real clock, against the serve whose data
// dir is dir (startServe's).
type serveCLI struct {
	t   *testing.T
	dir string
}

// run runs the command line; code is its exit status.
func (c serveCLI) run(args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	ta := newTestApp(c.t, nil)
	ta.now = time.Now
	code = ta.runArgs(append(args, "--data-dir", c.dir)...)
	return code, ta.stdout.String(), ta.stderr.String()
}

// must runs the command line and fails the test unless it succeeds.
func (c serveCLI) must(args ...string) (stdout, stderr string) {
	c.t.Helper()
	code, stdout, stderr := c.run(args...)
	if code != exitOK {
		c.t.Fatalf("popgate %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return stdout, stderr
}

// refused checks that the command line fails with exit wantCode, printing nothing on stdout
// and one line holding want on stderr.
func (c serveCLI) refused(wantCode int, want string, args ...string) {
	c.t.Helper()
	code, stdout, stderr := c.run(args...)
	if code != wantCode || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		c.t.Errorf("popgate %s: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", strings.Join(args, " "), code, stdout, stderr, wantCode, want)
	}
}
