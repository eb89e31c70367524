package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// logEntry is an entry of tenant id for name, asked by peer at at.
func logEntry(id int64, peer, name string, at time.Time) DNSLogEntry {
	return DNSLogEntry{TenantID: id, At: at, Node: "p1", Peer: peer, Client: netip.MustParseAddr("100.64.0.2"), Name: name,
		Type: "A", Outcome: "forwarded", Rcode: "NOERROR", Latency: 1500 * time.Microsecond}
}

func entryNames(es []DNSLogEntry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return strings.Join(out, " ")
}

func countLog(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM dns_log").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDNSLogSettings: a tenant's log is off until turned on, keeps 24 h unless told, 1 h to
// 7 d; turning it off deletes its entries; each change advances the generation (the nodes
// log only while it is on) and is audited.
func TestDNSLogSettings(t *testing.T) {
	ctx := WithActor(context.Background(), Actor{Name: "root"})
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	if set, err := s.DNSLogSettings(ctx, "acme"); err != nil || set.Enabled {
		t.Fatalf("a new tenant's log: %+v, %v; want off", set, err)
	}
	for _, keep := range []time.Duration{30 * time.Minute, 8 * 24 * time.Hour, 90*time.Minute + time.Second, -time.Hour} {
		if _, err := s.EnableDNSLog(ctx, "acme", keep); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "1h to 7d") {
			t.Errorf("keep %s: %v, want ErrInvalid", keep, err)
		}
	}
	if _, err := s.EnableDNSLog(ctx, "initech", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown tenant: %v", err)
	}
	g0, _ := s.Generation(ctx)
	set, err := s.EnableDNSLog(ctx, "acme", 0)
	if err != nil || !set.Enabled || set.Keep != DefaultDNSLogKeep || set.EnabledAt.IsZero() {
		t.Fatalf("EnableDNSLog: %+v, %v", set, err)
	}
	if g, _ := s.Generation(ctx); g <= g0 {
		t.Error("turning the log on did not advance the generation")
	}
	again, err := s.EnableDNSLog(ctx, "acme", 7*24*time.Hour)
	if err != nil || again.Keep != 7*24*time.Hour || !again.EnabledAt.Equal(set.EnabledAt) {
		t.Errorf("a longer keep: %+v, %v; want 168h since %s", again, err, set.EnabledAt)
	}
	if n, err := s.AddDNSLog(ctx, []DNSLogEntry{logEntry(acme.ID, "laptop", "a.example.com", s.now())}); err != nil || n != 1 {
		t.Fatalf("AddDNSLog: %d, %v", n, err)
	}
	if n, err := s.DisableDNSLog(ctx, "acme"); err != nil || n != 1 {
		t.Errorf("DisableDNSLog: %d, %v; want 1 entry deleted", n, err)
	}
	if n, err := s.DisableDNSLog(ctx, "acme"); err != nil || n != 0 {
		t.Errorf("DisableDNSLog again: %d, %v", n, err)
	}
	if set, _ := s.DNSLogSettings(ctx, "acme"); set.Enabled || countLog(t, s) != 0 {
		t.Errorf("after disable: %+v, %d entries", set, countLog(t, s))
	}
	es, _, _ := s.ListAudit(ctx, AuditQuery{Action: "dns.log"})
	var got []string
	for _, e := range es {
		got = append(got, e.Action+" "+e.Target+" "+e.Detail)
	}
	want := "dns.log.disable dnslog:acme 1 entry deleted; dns.log.enable dnslog:acme entries kept 7d; dns.log.enable dnslog:acme entries kept 1d"
	if strings.Join(got, "; ") != want {
		t.Errorf("audit:\n%s\nwant\n%s", strings.Join(got, "; "), want)
	}
}

// TestDNSLogEntries: entries are kept only of tenants whose log is on and only while young
// enough; each tenant reads only its own, newest first, a page at a time, by peer and time;
// what a node sends is cleaned to fit.
func TestDNSLogEntries(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s := openOpts(t, Options{Path: t.TempDir() + "/popgate.db", Now: clock.Now})
	acme, globex, initech := mustTenant(t, s, "acme"), mustTenant(t, s, "globex"), mustTenant(t, s, "initech")
	for _, tn := range []string{"acme", "globex"} {
		if _, err := s.EnableDNSLog(ctx, tn, 0); err != nil {
			t.Fatal(err)
		}
	}
	now := clock.Now()
	var es []DNSLogEntry
	for i := range 5 {
		es = append(es, logEntry(acme.ID, "laptop", fmt.Sprintf("a%d.example.com", i), now.Add(time.Duration(i)*time.Second)))
	}
	es = append(es,
		logEntry(acme.ID, "phone", "phone.example.com", now.Add(10*time.Second)),
		logEntry(globex.ID, "laptop", "g.example.com", now),
		logEntry(initech.ID, "laptop", "i.example.com", now),                   // its log is off
		logEntry(acme.ID, "laptop", "old.example.com", now.Add(-25*time.Hour)), // older than kept
		logEntry(99, "laptop", "nobody.example.com", now),                      // no such tenant
	)
	odd := logEntry(globex.ID, "x\x00y", "WEIRD.Example.COM", now.Add(time.Second))
	odd.Type, odd.Outcome, odd.Rcode, odd.Latency = "a a", "Blocked!", strings.Repeat("X", 40), -time.Second
	es = append(es, odd)
	if n, err := s.AddDNSLog(ctx, es); err != nil || n != 8 {
		t.Fatalf("AddDNSLog: %d, %v; want 8 recorded", n, err)
	}

	for _, c := range []struct {
		q    DNSLogQuery
		want string
		more bool
	}{
		{DNSLogQuery{Tenant: "acme"}, "phone.example.com a4.example.com a3.example.com a2.example.com a1.example.com a0.example.com", false},
		{DNSLogQuery{Tenant: "acme", Limit: 2}, "phone.example.com a4.example.com", true},
		{DNSLogQuery{Tenant: "acme", Limit: 2, Offset: 4}, "a1.example.com a0.example.com", false},
		{DNSLogQuery{Tenant: "acme", Peer: "laptop", Limit: 5}, "a4.example.com a3.example.com a2.example.com a1.example.com a0.example.com", false},
		{DNSLogQuery{Tenant: "acme", Since: now.Add(2 * time.Second), Until: now.Add(4 * time.Second)}, "a3.example.com a2.example.com", false},
		{DNSLogQuery{Tenant: "globex"}, "weird.example.com g.example.com", false},
		{DNSLogQuery{Tenant: "initech"}, "", false},
	} {
		got, more, err := s.DNSLog(ctx, c.q)
		if err != nil || entryNames(got) != c.want || more != c.more {
			t.Errorf("DNSLog(%+v) = %q, more %v, %v; want %q, more %v", c.q, entryNames(got), more, err, c.want, c.more)
		}
	}
	got, _, _ := s.DNSLog(ctx, DNSLogQuery{Tenant: "globex", Limit: 1})
	if e := got[0]; e.Peer != "x\uFFFDy" || e.Type != "OTHER" || e.Outcome != "other" || e.Rcode != "OTHER" || e.Latency != 0 ||
		e.Node != "p1" || e.Client != netip.MustParseAddr("100.64.0.2") || !e.At.Equal(now.Add(time.Second)) {
		t.Errorf("a cleaned entry: %+v", e)
	}
	got, _, _ = s.DNSLog(ctx, DNSLogQuery{Tenant: "acme", Limit: 1})
	if got[0].Latency != 1500*time.Microsecond || got[0].TenantID != acme.ID {
		t.Errorf("an entry: %+v", got[0])
	}
	if _, _, err := s.DNSLog(ctx, DNSLogQuery{Tenant: "acme", Limit: MaxDNSLogPage + 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a page too long: %v", err)
	}
	if _, _, err := s.DNSLog(ctx, DNSLogQuery{Tenant: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown tenant: %v", err)
	}
	// They go with their tenant.
	if _, err := s.DisableDNSLog(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTenant(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	if n := countLog(t, s); n != 0 {
		t.Errorf("%d entries left", n)
	}
}

// TestNodeDNSLog: a node's entries are recorded once: a report sent again adds nothing, a
// restarted node starts again from 1; a removed node's are refused.
func TestNodeDNSLog(t *testing.T) {
	ctx := WithActor(context.Background(), Actor{Name: "root"})
	clock := newClock()
	s := openOpts(t, Options{Path: t.TempDir() + "/popgate.db", Now: clock.Now})
	acme := mustTenant(t, s, "acme")
	if _, err := s.EnableDNSLog(ctx, "acme", 0); err != nil {
		t.Fatal(err)
	}
	tok, secret := joinToken(t, s, NewJoinToken{Roles: "pop", ExpiresAt: clock.Now().Add(time.Hour)})
	n, err := s.RedeemJoinToken(ctx, Redemption{TokenID: tok.ID, Secret: secret, Name: "p1", Pin: [32]byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	e := func(seq uint64) NodeDNSLogEntry {
		return NodeDNSLogEntry{Seq: seq, DNSLogEntry: logEntry(acme.ID, "laptop", fmt.Sprintf("q%d.example.com", seq), clock.Now())}
	}
	for _, c := range []struct {
		boot int64
		es   []NodeDNSLogEntry
		want int
	}{
		{7, []NodeDNSLogEntry{e(1), e(2)}, 2},
		{7, []NodeDNSLogEntry{e(1), e(2)}, 0},       // sent again
		{7, []NodeDNSLogEntry{e(2), e(3), e(4)}, 2}, // partly new
		{9, []NodeDNSLogEntry{e(1)}, 1},             // restarted
		{9, []NodeDNSLogEntry{e(1), e(1 << 63)}, 0}, // a number out of range
	} {
		if got, err := s.AddNodeDNSLog(ctx, n.ID, c.boot, c.es); err != nil || got != c.want {
			t.Errorf("AddNodeDNSLog(boot %d, %d entries) = %d, %v; want %d", c.boot, len(c.es), got, err, c.want)
		}
	}
	if c, err := s.NodeDNSLogCursor(ctx, n.ID); err != nil || c != (EventCursor{Boot: 9, Seq: 1}) {
		t.Errorf("cursor %+v, %v", c, err)
	}
	if got := countLog(t, s); got != 5 {
		t.Errorf("%d entries, want 5", got)
	}
	if _, _, err := s.RemoveNode(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	_, err = s.AddNodeDNSLog(ctx, n.ID, 9, []NodeDNSLogEntry{e(2)})
	wantErr(t, err, ErrNotFound, "removed")
}

// TestPruneDNSLog: entries older than their tenant keeps them go, then those beyond the
// bound of each tenant, oldest first, and none of another tenant's.
func TestPruneDNSLog(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	s := openOpts(t, Options{Path: t.TempDir() + "/popgate.db", Now: clock.Now})
	acme, globex := mustTenant(t, s, "acme"), mustTenant(t, s, "globex")
	if _, err := s.EnableDNSLog(ctx, "acme", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnableDNSLog(ctx, "globex", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	var es []DNSLogEntry
	for i := range 30 {
		at := start.Add(time.Duration(i) * time.Minute)
		es = append(es, logEntry(acme.ID, "laptop", fmt.Sprintf("a%d", i), at), logEntry(globex.ID, "laptop", fmt.Sprintf("g%d", i), at))
	}
	clock.Advance(30 * time.Minute)
	if _, err := s.AddDNSLog(ctx, es); err != nil {
		t.Fatal(err)
	}
	// 70 minutes on: acme keeps an hour (a10…a29), globex a day, at most 25 each.
	clock.Advance(40 * time.Minute)
	n, err := s.PruneDNSLog(ctx, 25)
	if err != nil || n != 10+5 {
		t.Errorf("PruneDNSLog = %d, %v; want 15 (10 too old of acme's, 5 beyond the bound of globex's)", n, err)
	}
	a, _, _ := s.DNSLog(ctx, DNSLogQuery{Tenant: "acme", Limit: 100})
	g, _, _ := s.DNSLog(ctx, DNSLogQuery{Tenant: "globex", Limit: 100})
	if len(a) != 20 || a[19].Name != "a10" || len(g) != 25 || g[24].Name != "g5" || g[0].Name != "g29" {
		t.Errorf("after pruning: acme %d (oldest %s), globex %d (%s … %s)", len(a), a[len(a)-1].Name, len(g), g[0].Name, g[len(g)-1].Name)
	}
	if n, err := s.PruneDNSLog(ctx, 25); err != nil || n != 0 {
		t.Errorf("PruneDNSLog again: %d, %v", n, err)
	}
	// Entries of a tenant whose log is off (written behind the store's back) go too.
	if _, err := s.db.Exec("DELETE FROM dns_log_settings WHERE tenant_id = ?", globex.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneDNSLog(ctx, 25); err != nil || n != 25 || countLog(t, s) != 20 {
		t.Errorf("with globex's log off: pruned %d, %v; %d left", n, err, countLog(t, s))
	}
	// Many at once: in batches.
	var many []DNSLogEntry
	for i := range 2*dnsLogPruneBatch + 5 {
		many = append(many, logEntry(acme.ID, "laptop", "m", clock.Now().Add(-time.Duration(i)*time.Millisecond)))
	}
	if _, err := s.AddDNSLog(ctx, many); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneDNSLog(ctx, 100); err != nil || countLog(t, s) != 100 || n != int64(len(many)+20-100) {
		t.Errorf("pruning %d to 100: %d, %v; %d left", len(many)+20, n, err, countLog(t, s))
	}
}

// TestDNSSchemaRefusesBadRows: the schema of migration 0015 refuses what Go would never
// write, written with raw SQL.
func TestDNSSchemaRefusesBadRows(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	acme := mustTenant(t, s, "acme")
	goodLog := func() map[string]any {
		return map[string]any{"tenant_id": acme.ID, "at": 1, "node": "p1", "peer": "laptop", "client": "100.64.0.2",
			"name": "www.example.com", "qtype": "AAAA", "outcome": "forwarded", "rcode": "NOERROR", "latency_us": 10}
	}
	with := func(row map[string]any, col string, v any) map[string]any { row[col] = v; return row }
	for _, tc := range []struct {
		name  string
		table string
		row   map[string]any
	}{
		{"upstream position 0", "dns_upstreams", map[string]any{"tenant_id": acme.ID, "position": 0, "upstream": "9.9.9.9:53"}},
		{"upstream position 5", "dns_upstreams", map[string]any{"tenant_id": acme.ID, "position": 5, "upstream": "9.9.9.9:53"}},
		{"upstream of no tenant", "dns_upstreams", map[string]any{"tenant_id": 999, "position": 1, "upstream": "9.9.9.9:53"}},
		{"upstream with a space", "dns_upstreams", map[string]any{"tenant_id": acme.ID, "position": 1, "upstream": "9.9.9.9 :53"}},
		{"log keep under an hour", "dns_log_settings", map[string]any{"tenant_id": acme.ID, "keep_s": 60, "enabled_at": 1}},
		{"log keep over 7 days", "dns_log_settings", map[string]any{"tenant_id": acme.ID, "keep_s": 604801, "enabled_at": 1}},
		{"log entry of no tenant", "dns_log", with(goodLog(), "tenant_id", 999)},
		{"log entry without a name", "dns_log", with(goodLog(), "name", "")},
		{"log entry type lower case", "dns_log", with(goodLog(), "qtype", "aaaa")},
		{"log entry outcome upper case", "dns_log", with(goodLog(), "outcome", "Forwarded")},
		{"log entry rcode too long", "dns_log", with(goodLog(), "rcode", strings.Repeat("X", 17))},
		{"log entry negative latency", "dns_log", with(goodLog(), "latency_us", -1)},
		{"log entry at zero", "dns_log", with(goodLog(), "at", 0)},
		{"log cursor of no node", "dns_log_cursors", map[string]any{"node_id": 999, "boot": 1, "seq": 1}},
	} {
		if err := insertRow(ctx, s, tc.table, tc.row); err == nil {
			t.Errorf("%s: the schema took the row", tc.name)
		}
	}
	if err := insertRow(ctx, s, "dns_log", goodLog()); err != nil {
		t.Errorf("a good log entry: %v", err)
	}
}
