package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestBackupDuringWrites backs up a database while another goroutine keeps adding tenants
// and peers: each backup is one consistent snapshot (every tenant with the default routes
// its own transaction added, every peer below the high-water mark its transaction set,
// Check finds nothing), 0600, and a node restored from it has every tenant and peer it holds,
// with working private keys.
func TestBackupDuringWrites(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	dir := t.TempDir()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	written, started := make(chan int, 1), make(chan struct{})
	var startOnce sync.Once
	wg.Add(1)
	go func() {
		defer wg.Done()
		n := 0
		defer func() { written <- n; startOnce.Do(func() { close(started) }) }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("t%04d", n)
			if _, err := s.AddTenant(ctx, name); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.AddPeer(ctx, newPeer(t, name, "laptop")); err != nil {
				t.Error(err)
				return
			}
			if n++; n == 3 {
				startOnce.Do(func() { close(started) })
			}
		}
	}()
	<-started
	var backups []BackupInfo
	for i := range 3 {
		info, err := Backup(ctx, opts.Path, filepath.Join(dir, fmt.Sprintf("backup-%d.db", i)), false)
		if err != nil {
			t.Fatal(err)
		}
		backups = append(backups, info)
	}
	close(stop)
	wg.Wait()
	total := <-written
	t.Logf("%d tenants written during the backups; the backups hold %d, %d and %d", total,
		backups[0].Rows["tenants"], backups[1].Rows["tenants"], backups[2].Rows["tenants"])

	for _, info := range backups {
		fi, err := os.Stat(info.Path)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != info.Size || info.Version != s.version {
			t.Errorf("backup %s: %v, %v, %+v", info.Path, fi.Mode(), err, info)
		}
		r, err := Check(ctx, info.Path, s.keyPath)
		if err != nil || !r.OK() {
			t.Errorf("Check of %s: %+v, %v", info.Path, r, err)
		}
		db := rawDB(t, info.Path)
		var bad int
		if err := db.QueryRow(`SELECT count(*) FROM tenants AS t
			WHERE (SELECT count(*) FROM routes WHERE tenant_id = t.id) != 2`).Scan(&bad); err != nil || bad != 0 {
			t.Errorf("%s: %d tenants without their default routes, %v", info.Path, bad, err)
		}
		db.Close()
		if n := info.Rows["tenants"]; n > int64(total) || info.Rows["peers"] > n || info.Rows["peers"] < n-1 {
			t.Errorf("%s: %d tenants, %d peers of %d written", info.Path, n, info.Rows["peers"], total)
		}
	}

	// Restore the last backup into a new data dir, with the key file, as README says.
	last := backups[len(backups)-1]
	restored := filepath.Join(t.TempDir(), "popgate.db")
	copyFile(t, last.Path, restored)
	copyFile(t, s.keyPath, filepath.Join(filepath.Dir(restored), "secret.key"))
	r := openOpts(t, Options{Path: restored})
	ts, err := r.ListTenants(ctx)
	if err != nil || int64(len(ts)) != last.Rows["tenants"] {
		t.Fatalf("restored tenants: %d, %v; the backup had %d", len(ts), err, last.Rows["tenants"])
	}
	orig, err := s.ListPeers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := r.ListPeers(ctx, "")
	if err != nil || int64(len(ps)) != last.Rows["peers"] {
		t.Fatalf("restored peers: %d, %v", len(ps), err)
	}
	for _, p := range ps {
		i := slices.IndexFunc(orig, func(o Peer) bool { return o.PublicKey == p.PublicKey })
		if i < 0 || orig[i].TenantName != p.TenantName || orig[i].IPv4 != p.IPv4 || orig[i].IPv6 != p.IPv6 {
			t.Errorf("restored peer %+v is not the original", p)
			continue
		}
		k, err := r.PeerPrivateKey(ctx, p.TenantName, p.Name)
		if err != nil || k.PublicKey() != p.PublicKey {
			t.Errorf("restored key of %s/%s: %v", p.TenantName, p.Name, err)
		}
	}
	if r.NodePublicKey() != s.NodePublicKey() {
		t.Error("the restored node has another key")
	}
}

func TestBackupRefuses(t *testing.T) {
	ctx := context.Background()
	s, opts := openTest(t)
	mustTenant(t, s, "acme")
	dir := t.TempDir()
	dest := filepath.Join(dir, "popgate-backup.db")
	os.WriteFile(dest, []byte("precious"), 0o644)

	_, err := Backup(ctx, opts.Path, dest, false)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing file: %v", err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "precious" {
		t.Error("the existing file changed")
	}
	info, err := Backup(ctx, opts.Path, dest, true)
	if err != nil || info.Rows["tenants"] != 1 {
		t.Fatalf("overwrite: %+v, %v", info, err)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o600 {
		t.Errorf("replaced file has mode %v", fi.Mode())
	}
	if _, err := Backup(ctx, opts.Path, opts.Path, true); !errors.Is(err, ErrInvalid) {
		t.Errorf("backup onto the database itself: %v", err)
	}
	if _, err := Backup(ctx, filepath.Join(dir, "nothing.db"), filepath.Join(dir, "b.db"), false); !errors.Is(err, ErrNotFound) {
		t.Errorf("no database: %v", err)
	}
	if _, err := Backup(ctx, opts.Path, filepath.Join(dir, "no", "such", "dir.db"), false); err == nil {
		t.Error("backup into a missing directory worked")
	}
	// Nothing else was left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files left in the backup directory: %q", names)
	}
}
