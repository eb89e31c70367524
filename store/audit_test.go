package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAudit(t *testing.T) {
	ctx := context.Background()
	s, clock := openClocked(t)
	t0 := clock.Now()
	entries := []AuditEntry{
		{At: t0, Actor: "root", Remote: "192.0.2.1", Action: "signin"},
		{At: t0.Add(time.Second), Actor: "root", Remote: "192.0.2.1", Tenant: "acme", Action: "peer.add", Target: "acme/laptop"},
		{At: t0.Add(2 * time.Second), Actor: "token:ci", Remote: "198.51.100.7", Tenant: "beta", Action: "peer.remove", Target: "beta/phone"},
		{At: t0.Add(3 * time.Second), Actor: "alice", Remote: "192.0.2.9", Tenant: "acme", Action: "policy.set", Target: "acme"},
		{At: t0.Add(3 * time.Second), Actor: "alice", Remote: "192.0.2.9", Action: "signout"},
	}
	for _, e := range entries {
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	actions := func(es []AuditEntry) string {
		var out []string
		for _, e := range es {
			out = append(out, e.Action)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		q    AuditQuery
		want string
		more bool
	}{
		{AuditQuery{}, "signout,policy.set,peer.remove,peer.add,signin", false},
		{AuditQuery{Limit: 2}, "signout,policy.set", true},
		{AuditQuery{Limit: 2, Offset: 2}, "peer.remove,peer.add", true},
		{AuditQuery{Limit: 2, Offset: 4}, "signin", false},
		{AuditQuery{Tenant: "acme"}, "policy.set,peer.add", false},
		{AuditQuery{Actor: "root"}, "peer.add,signin", false},
		{AuditQuery{Action: "peer."}, "peer.remove,peer.add", false},
		{AuditQuery{Action: "peer"}, "peer.remove,peer.add", false},
		{AuditQuery{Action: "pee"}, "", false},
		{AuditQuery{Action: "peer.add"}, "peer.add", false},
		{AuditQuery{Action: "policy"}, "policy.set", false},
		{AuditQuery{Action: "signin"}, "signin", false},
		{AuditQuery{Action: "%."}, "", false},
		{AuditQuery{Since: t0.Add(time.Second), Until: t0.Add(3 * time.Second)}, "peer.remove,peer.add", false},
	} {
		got, more, err := s.ListAudit(ctx, tc.q)
		if err != nil || actions(got) != tc.want || more != tc.more {
			t.Errorf("ListAudit(%+v) = %s, %v, %v; want %s, %v", tc.q, actions(got), more, err, tc.want, tc.more)
		}
	}
	got, _, _ := s.ListAudit(ctx, AuditQuery{Limit: 1, Offset: 3})
	if e := got[0]; e.Actor != "root" || e.Remote != "192.0.2.1" || e.Tenant != "acme" || e.Target != "acme/laptop" || !e.At.Equal(t0.Add(time.Second).Truncate(time.Microsecond)) {
		t.Errorf("entry = %+v", e)
	}

	// Hostile input is stored, cut and defused; a zero time is the store's clock.
	if err := s.AppendAudit(ctx, AuditEntry{Actor: "evil\n2026-01-01 root signin", Remote: strings.Repeat("9", 100),
		Tenant: "Not A Tenant", Action: "signin.failed", Target: strings.Repeat("t", 300), Detail: "\x1b[2Jcleared"}); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.ListAudit(ctx, AuditQuery{Action: "signin.failed"})
	if len(got) != 1 {
		t.Fatalf("hostile entry: %+v", got)
	}
	e := got[0]
	if strings.ContainsAny(e.Actor+e.Detail, "\n\x1b") || len([]rune(e.Remote)) != 64 || len([]rune(e.Target)) != 256 || e.Tenant != "" || !e.At.Equal(t0.Truncate(time.Microsecond)) {
		t.Errorf("hostile entry stored as %+v", e)
	}
	if err := s.AppendAudit(ctx, AuditEntry{Actor: "root"}); err == nil {
		t.Error("entry without an action accepted")
	}
}

func TestAuditPaging(t *testing.T) {
	ctx := context.Background()
	s, clock := openClocked(t)
	for i := range 120 {
		if err := s.AppendAudit(ctx, AuditEntry{At: clock.Now().Add(time.Duration(i) * time.Second), Actor: "root", Action: fmt.Sprintf("a%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	for off := 0; ; off += 50 {
		page, more, err := s.ListAudit(ctx, AuditQuery{Offset: off})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			all = append(all, e.Action)
		}
		if !more {
			break
		}
	}
	if len(all) != 120 || all[0] != "a119" || all[119] != "a000" {
		t.Errorf("paged through %d entries, %v … %v", len(all), all[:1], all[len(all)-1:])
	}
	if page, _, _ := s.ListAudit(ctx, AuditQuery{Limit: 5000}); len(page) != 120 {
		t.Errorf("%d entries with a big limit", len(page))
	}
	plan := queryPlan(t, s.db, "SELECT id FROM audit_log WHERE tenant = ? ORDER BY at DESC, id DESC LIMIT 51", "acme")
	if !strings.Contains(plan, "audit_log_tenant") || strings.Contains(plan, "TEMP B-TREE") {
		t.Errorf("the tenant's audit page does not use its index:\n%s", plan)
	}
}
