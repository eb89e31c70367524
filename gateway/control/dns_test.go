package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/plane/planetest"
	"github.com/popgate/popgate/store"
)

// TestControllerDNSUpstreams: a tenant's upstreams reach the nodes in its Desired, and only
// its own; reset takes them away again.
func TestControllerDNSUpstreams(t *testing.T) {
	ctx := context.Background()
	c, dp := newTestController(t)
	for _, tenant := range []string{"acme", "bravo"} {
		if _, err := c.AddTenant(ctx, tenant); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SetDNSUpstreams(ctx, "acme", []string{"tls://dns.quad9.net@9.9.9.9", "149.112.112.112"}); err != nil {
		t.Fatal(err)
	}
	upstreams := func(tenant string) string {
		d := dp.Desired()
		if d == nil {
			return "no desired state"
		}
		for _, tn := range d.Tenants {
			if tn.Name == tenant {
				return fmt.Sprint(tn.DNS.Upstreams)
			}
		}
		return "no tenant " + tenant
	}
	waitDesired := func(tenant, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for upstreams(tenant) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s's upstreams in the desired state: %s, want %s", tenant, upstreams(tenant), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	want := fmt.Sprint([]plane.DNSUpstream{{Addr: netip.MustParseAddrPort("9.9.9.9:853"), TLSName: "dns.quad9.net"}, {Addr: netip.MustParseAddrPort("149.112.112.112:53")}})
	waitDesired("acme", want)
	if got := upstreams("bravo"); got != "[]" {
		t.Errorf("bravo's upstreams: %s, want none", got)
	}
	if _, err := c.SetDNSUpstreams(ctx, "acme", []string{"192.168.1.1"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a private upstream: %v", err)
	}
	if _, err := c.SetDNSUpstreams(ctx, "acme", nil); err != nil {
		t.Fatal(err)
	}
	waitDesired("acme", "[]")
}

// logPlane is a data plane with a query log.
type logPlane struct {
	*planetest.DataPlane
	mu sync.Mutex
	qs []plane.DNSQuery
}

func (p *logPlane) add(tenant int64, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.qs = append(p.qs, plane.DNSQuery{Seq: uint64(len(p.qs) + 1), At: time.Now(), Tenant: tenant, Peer: "laptop",
		Client: netip.MustParseAddr("100.64.0.2"), Name: name, Type: "A", Outcome: plane.DNSOutcomeCache, Rcode: "NOERROR"})
}

func (p *logPlane) DNSLogAfter(seq uint64) []plane.DNSQuery {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq >= uint64(len(p.qs)) {
		return nil
	}
	return slices.Clone(p.qs[seq:min(len(p.qs), int(seq)+plane.MaxReportDNSLog)])
}

var _ DNSLogSource = (*logPlane)(nil)

// TestControllerOwnDNSLog: turning a tenant's log on reaches the nodes; the controller's own
// node's logged queries are recorded once each, as its own node's, and only of tenants whose
// log is on; turning it off deletes them.
func TestControllerOwnDNSLog(t *testing.T) {
	ctx := context.Background()
	st, dp := openTestStore(t), &logPlane{DataPlane: &planetest.DataPlane{}}
	c := startController(t, st, dp, Config{PublicEndpoint: "vpn.example.com:51820", MTU: 1420, Region: "local", TrafficSampleEvery: time.Hour})
	acme, err := c.AddTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	bravo, err := c.AddTenant(ctx, "bravo")
	if err != nil {
		t.Fatal(err)
	}
	if set, err := c.EnableDNSLog(ctx, "acme", 2*time.Hour); err != nil || !set.Enabled || set.Keep != 2*time.Hour {
		t.Fatalf("EnableDNSLog: %+v, %v", set, err)
	}
	logOn := func(tenant string) bool {
		if d := dp.Desired(); d != nil {
			for _, tn := range d.Tenants {
				if tn.Name == tenant {
					return tn.DNS.QueryLog
				}
			}
		}
		return false
	}
	waitFor(t, "acme's log to be on in the desired state", func() bool { return logOn("acme") })
	if logOn("bravo") {
		t.Error("bravo's log is on in the desired state")
	}
	for i := range 1200 {
		dp.add(acme.ID, fmt.Sprintf("a%d.example.com", i))
	}
	dp.add(bravo.ID, "b.example.com") // its log is off
	entries := func(tenant string) []store.DNSLogEntry {
		es, _, err := c.DNSLog(ctx, store.DNSLogQuery{Tenant: tenant, Limit: store.MaxDNSLogPage})
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	waitFor(t, "the own node's queries to be recorded", func() bool { return len(entries("acme")) >= 1200 })
	time.Sleep(2 * ownDNSLogEvery) // another read: nothing twice
	if es := entries("acme"); len(es) != 1200 || es[0].Node != c.OwnNodeName() || es[0].Name != "a1199.example.com" {
		t.Errorf("acme's log: %d entries, newest %+v", len(es), es[0])
	}
	if es := entries("bravo"); len(es) != 0 {
		t.Errorf("bravo's log holds %d entries", len(es))
	}
	if n, err := c.DisableDNSLog(ctx, "acme"); err != nil || n != 1200 {
		t.Errorf("DisableDNSLog: %d, %v", n, err)
	}
	waitFor(t, "acme's log to be off in the desired state", func() bool { return !logOn("acme") })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
