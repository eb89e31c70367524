package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store/clocktest"
)

// content is the canonical content of names (sorted by the caller).
func content(skipped int, names ...string) BlocklistContent {
	body := []byte{}
	for _, n := range names {
		body = append(body, n+"\n"...)
	}
	return BlocklistContent{Body: body, SHA256: sha256.Sum256(body), Names: len(names), Skipped: skipped}
}

func mustGeneration(t *testing.T, s *Store) int64 {
	t.Helper()
	g, err := s.Generation(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func blobCount(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM dns_blobs").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func lastAudit(t *testing.T, s *Store) AuditEntry {
	t.Helper()
	es, _, err := s.ListAudit(context.Background(), AuditQuery{Limit: 1})
	if err != nil || len(es) == 0 {
		t.Fatalf("ListAudit: %v, %d entries", err, len(es))
	}
	return es[0]
}

func TestBlocklists(t *testing.T) {
	ctx := WithActor(context.Background(), Actor{Name: "alice", Remote: "test"})
	clock := clocktest.New(time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC))
	s := openOpts(t, Options{Path: filepath.Join(t.TempDir(), "popgate.db"), Now: clock.Now})
	mustTenant(t, s, "acme")
	mustTenant(t, s, "globex")
	ads := content(2, "ads.example.com", "tracker.example.net")

	gen := mustGeneration(t, s)
	b, err := s.AddBlocklist(ctx, NewBlocklist{Tenant: "acme", Name: "ads", URL: "https://lists.example/hosts", PrivateOK: true, Content: ads})
	if err != nil {
		t.Fatal(err)
	}
	if b.Every != DefaultBlocklistEvery || b.Names != 2 || b.Skipped != 2 || b.SHA256 != ads.SHA256 || !b.PrivateOK {
		t.Errorf("added %+v", b)
	}
	if g := mustGeneration(t, s); g <= gen {
		t.Errorf("generation %d after adding a list, was %d", g, gen)
	}
	if e := lastAudit(t, s); e.Action != "dns.blocklist.add" || e.Target != "blocklist:acme/ads" || e.Tenant != "acme" || e.Actor != "alice" {
		t.Errorf("audit entry %+v", e)
	}
	// The same content for another tenant: one blob for both.
	if _, err := s.AddBlocklist(ctx, NewBlocklist{Tenant: "globex", Name: "mine", Content: ads}); err != nil {
		t.Fatal(err)
	}
	if n := blobCount(t, s); n != 1 {
		t.Errorf("%d blobs for two lists of one content, want 1", n)
	}
	got, err := s.Blocklists(ctx, "globex")
	if err != nil || len(got) != 1 || got[0].Name != "mine" || !got[0].Uploaded() || got[0].Every != 0 || got[0].Names != 2 {
		t.Fatalf("globex's lists: %+v, %v", got, err)
	}
	all, err := s.Blocklists(ctx, "")
	if err != nil || len(all) != 2 || all[0].TenantName != "acme" || all[1].TenantName != "globex" {
		t.Fatalf("every list: %+v, %v", all, err)
	}
	body, err := s.Blob(ctx, ads.SHA256)
	if err != nil || string(body) != string(ads.Body) {
		t.Errorf("Blob: %q, %v", body, err)
	}

	for _, c := range []struct {
		name string
		nb   NewBlocklist
		want error
	}{
		{"name taken", NewBlocklist{Tenant: "acme", Name: "ads", Content: ads}, ErrExists},
		{"no tenant", NewBlocklist{Tenant: "nobody", Name: "ads", Content: ads}, ErrNotFound},
		{"bad name", NewBlocklist{Tenant: "acme", Name: "Ads!", Content: ads}, ErrInvalid},
		{"bad url", NewBlocklist{Tenant: "acme", Name: "x", URL: "ftp://example.com/x", Content: ads}, ErrInvalid},
		{"credentials", NewBlocklist{Tenant: "acme", Name: "x", URL: "https://u:p@example.com/x", Content: ads}, ErrInvalid},
		{"too often", NewBlocklist{Tenant: "acme", Name: "x", URL: "https://example.com/x", Every: time.Minute, Content: ads}, ErrInvalid},
		{"hash mismatch", NewBlocklist{Tenant: "acme", Name: "x", Content: BlocklistContent{Body: []byte("a.b\n"), Names: 1}}, ErrInvalid},
		{"too many names", NewBlocklist{Tenant: "acme", Name: "x", Content: func() BlocklistContent {
			c := content(0)
			c.Names = MaxBlocklistNames + 1
			return c
		}()}, ErrInvalid},
	} {
		gen := mustGeneration(t, s)
		if _, err := s.AddBlocklist(ctx, c.nb); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
		if g := mustGeneration(t, s); g != gen {
			t.Errorf("%s: the generation moved", c.name)
		}
	}

	// A fetch of the same content notes the time only: no generation, no audit.
	clock.Advance(time.Hour)
	gen, audit := mustGeneration(t, s), lastAudit(t, s)
	r, changed, err := s.RefreshedBlocklist(ctx, b.ID, content(3, "ads.example.com", "tracker.example.net"))
	if err != nil || changed || !r.CheckedAt.Equal(clock.Now().UTC().Truncate(time.Microsecond)) || r.Skipped != 3 {
		t.Errorf("refresh with the same content: %+v, changed %v, %v", r, changed, err)
	}
	if mustGeneration(t, s) != gen || lastAudit(t, s).ID != audit.ID {
		t.Error("a refresh with the same content advanced the generation or was audited")
	}
	// A failed fetch keeps the content and says why.
	if err := s.FailedBlocklist(ctx, b.ID, "GET https://lists.example/hosts: 503 Service Unavailable"); err != nil {
		t.Fatal(err)
	}
	f, err := s.Blocklist(ctx, "acme", "ads")
	if err != nil || f.SHA256 != ads.SHA256 || !strings.Contains(f.Error, "503") || f.ErrorAt.IsZero() {
		t.Errorf("after a failed fetch: %+v, %v", f, err)
	}
	if mustGeneration(t, s) != gen {
		t.Error("a failed fetch advanced the generation")
	}
	// A failed list is tried again within BlocklistRetry, not its whole interval.
	if due, err := s.DueBlocklists(ctx, clock.Now().Add(BlocklistRetry-time.Second)); err != nil || len(due) != 0 {
		t.Errorf("due before the retry: %+v, %v", due, err)
	}
	if due, err := s.DueBlocklists(ctx, clock.Now().Add(BlocklistRetry)); err != nil || len(due) != 1 {
		t.Errorf("due at the retry: %+v, %v", due, err)
	}
	// New content: generation, audit, the error cleared; the old blob stays for globex.
	more := content(0, "ads.example.com", "more.example.org", "tracker.example.net")
	r, changed, err = s.RefreshedBlocklist(ctx, b.ID, more)
	if err != nil || !changed || r.SHA256 != more.SHA256 || r.Names != 3 || r.Error != "" {
		t.Errorf("refresh with new content: %+v, changed %v, %v", r, changed, err)
	}
	if mustGeneration(t, s) <= gen || lastAudit(t, s).Action != "dns.blocklist.refresh" {
		t.Error("new content did not advance the generation or was not audited")
	}
	if n := blobCount(t, s); n != 2 {
		t.Errorf("%d blobs, want 2 (globex still holds the old)", n)
	}

	// Due: nothing right after a fetch; the list once its day has passed.
	if due, err := s.DueBlocklists(ctx, clock.Now()); err != nil || len(due) != 0 {
		t.Errorf("due right after a fetch: %+v, %v", due, err)
	}
	if due, err := s.DueBlocklists(ctx, clock.Now().Add(DefaultBlocklistEvery)); err != nil || len(due) != 1 || due[0].ID != b.ID {
		t.Errorf("due a day later: %+v, %v", due, err)
	}

	// Uploads replace an uploaded list's content, never a fetched one's.
	if _, err := s.ReplaceBlocklistContent(ctx, "acme", "ads", more); !errors.Is(err, ErrInvalid) {
		t.Errorf("upload to a fetched list: %v, want ErrInvalid", err)
	}
	if u, err := s.ReplaceBlocklistContent(ctx, "globex", "mine", more); err != nil || u.SHA256 != more.SHA256 || lastAudit(t, s).Action != "dns.blocklist.upload" {
		t.Errorf("upload: %+v, %v", u, err)
	}
	if n := blobCount(t, s); n != 1 {
		t.Errorf("%d blobs once no list holds the old content, want 1", n)
	}
	if _, err := s.ReplaceBlocklistContent(ctx, "globex", "nosuch", more); !errors.Is(err, ErrNotFound) {
		t.Errorf("upload to no list: %v", err)
	}

	// Remove: the blob goes with the last list that holds it, also when a tenant goes.
	if err := s.RemoveBlocklist(ctx, "acme", "ads"); err != nil {
		t.Fatal(err)
	}
	if e := lastAudit(t, s); e.Action != "dns.blocklist.remove" {
		t.Errorf("audit entry %+v", e)
	}
	if err := s.RemoveBlocklist(ctx, "acme", "ads"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
	if n := blobCount(t, s); n != 1 {
		t.Errorf("%d blobs, want 1 (globex's)", n)
	}
	if err := s.RemoveTenant(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	if n := blobCount(t, s); n != 0 {
		t.Errorf("%d blobs after the last tenant with lists went, want 0", n)
	}
	if _, err := s.Blob(ctx, more.SHA256); !errors.Is(err, ErrNotFound) {
		t.Errorf("Blob of gone content: %v", err)
	}
	if _, _, err := s.RefreshedBlocklist(ctx, b.ID, more); !errors.Is(err, ErrNotFound) {
		t.Errorf("a fetch of a removed list: %v", err)
	}
	if err := s.FailedBlocklist(ctx, b.ID, "x"); err != nil {
		t.Errorf("a failed fetch of a removed list: %v", err)
	}
}

func TestBlocklistBounds(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	for i := range MaxBlocklists {
		if _, err := s.AddBlocklist(ctx, NewBlocklist{Tenant: "acme", Name: "l" + string(rune('a'+i)), Content: content(0, "a.example.com")}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.AddBlocklist(ctx, NewBlocklist{Tenant: "acme", Name: "more", Content: content(0, "a.example.com")})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("list %d: %v, want ErrInvalid", MaxBlocklists+1, err)
	}
	t.Log(err)

	// The names of a tenant's lists together.
	mustTenant(t, s, "big")
	big := content(0, "big.example.com")
	big.Names = MaxBlocklistNames // stands in for a million names: the bound counts Names
	for _, n := range []string{"one", "two"} {
		if _, err := s.AddBlocklist(ctx, NewBlocklist{Tenant: "big", Name: n, Content: big}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.AddBlocklist(ctx, NewBlocklist{Tenant: "big", Name: "three", Content: content(0, "b.example.com")})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "2000001 names") {
		t.Fatalf("a third list over the tenant's bound: %v, want ErrInvalid", err)
	}
	// Replacing one list's content counts the others only.
	if _, err := s.ReplaceBlocklistContent(ctx, "big", "two", big); err != nil {
		t.Errorf("the same size again: %v", err)
	}
}

// TestNodeBlobs: a joined node keeps the contents it serves in its own database, and drops
// those it no longer serves.
func TestNodeBlobs(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	a, b := content(0, "a.example.com"), content(0, "b.example.com")
	gen := mustGeneration(t, s)
	for _, c := range []BlocklistContent{a, b, a} {
		if err := s.SaveBlob(ctx, c.SHA256, c.Body, c.Names); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveBlob(ctx, a.SHA256, b.Body, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("a body that is not the hash's: %v, want ErrInvalid", err)
	}
	if n := blobCount(t, s); n != 2 {
		t.Errorf("%d blobs, want 2", n)
	}
	if err := s.KeepBlobs(ctx, [][32]byte{b.SHA256}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Blob(ctx, a.SHA256); !errors.Is(err, ErrNotFound) {
		t.Errorf("a dropped blob: %v", err)
	}
	if body, err := s.Blob(ctx, b.SHA256); err != nil || string(body) != "b.example.com\n" {
		t.Errorf("a kept blob: %q, %v", body, err)
	}
	empty := content(0)
	if err := s.SaveBlob(ctx, empty.SHA256, empty.Body, 0); err != nil {
		t.Fatal(err)
	}
	if body, err := s.Blob(ctx, empty.SHA256); err != nil || body == nil || len(body) != 0 {
		t.Errorf("the empty list: %q, %v", body, err)
	}
	if mustGeneration(t, s) != gen {
		t.Error("a node's blobs advanced the generation")
	}
}

func TestBlocklistSchemaRefuses(t *testing.T) {
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	c := content(0, "a.example.com")
	if _, err := s.db.Exec("INSERT INTO dns_blobs (sha256, names, body, created_at) VALUES (?, 1, ?, 1)", c.SHA256[:], c.Body); err != nil {
		t.Fatal(err)
	}
	row := func(set string) string {
		return "INSERT INTO dns_blocklists (tenant_id, name, url, every_s, private_ok, sha256, skipped, updated_at, checked_at, created_at) " + set
	}
	good := []any{acme.ID, "ok", "https://x.example/l", 86400, 0, c.SHA256[:], 0, 1, 1, 1}
	with := func(i int, v any) []any { r := append([]any{}, good...); r[i] = v; return r }
	for _, tc := range []struct {
		name string
		args []any
	}{
		{"name upper case", with(1, "Ads")},
		{"url with a space", with(2, "https://x.example/a b")},
		{"fetched too often", with(3, 60)},
		{"url without every", with(3, 0)},
		{"uploaded with every", with(2, "")},
		{"unknown content", with(5, make([]byte, 32))},
		{"short hash", with(5, []byte{1})},
		{"negative skipped", with(6, -1)},
		{"private_ok 2", with(4, 2)},
	} {
		if _, err := s.db.Exec(row("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), tc.args...); err == nil {
			t.Errorf("%s: the schema took it", tc.name)
		}
	}
	if _, err := s.db.Exec(row("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), good...); err != nil {
		t.Errorf("a good row: %v", err)
	}
	up := with(2, "")
	up[3], up[1] = 0, "up"
	if _, err := s.db.Exec(row("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), up...); err != nil {
		t.Errorf("a good uploaded row: %v", err)
	}
	up[1], up[4] = "up2", 1
	if _, err := s.db.Exec(row("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), up...); err == nil {
		t.Errorf("an uploaded list with private_ok: the schema took it")
	}
}
