package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/plane/planetest"
	"github.com/popgate/popgate/store"
)

// TestDNSZonesPublished: a tenant's split zone reaches the data plane in that tenant's
// Desired, and goes with its removal; another tenant's has none.
func TestDNSZonesPublished(t *testing.T) {
	ctx := context.Background()
	c, dp, _ := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820"})
	lan := netip.MustParsePrefix("10.10.0.0/24")
	for _, tn := range []string{"acme", "beta"} {
		if _, err := c.AddTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: tn, Name: "gw", Site: "office", SitePrefixes: []netip.Prefix{lan}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AddRoute(ctx, tn, lan, "site:office"); err != nil {
			t.Fatal(err)
		}
	}
	servers := []netip.AddrPort{netip.MustParseAddrPort("10.10.0.53:53")}
	if _, err := c.AddDNSZone(ctx, "acme", "corp.example", servers); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddDNSZone(ctx, "acme", "lab.example", []netip.AddrPort{netip.MustParseAddrPort("10.9.0.53:53")}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a server routed to the internet: %v", err)
	}
	zones := func() map[string]string {
		d := dp.Desired()
		if err := d.Validate(); err != nil {
			t.Fatalf("the Desired does not validate: %v", err)
		}
		out := map[string]string{}
		for _, tn := range d.Tenants {
			for _, z := range tn.DNS.Zones {
				out[tn.Name] += z.Name + " " + z.Servers[0].String()
			}
		}
		return out
	}
	if got := zones(); len(got) != 1 || got["acme"] != "corp.example 10.10.0.53:53" {
		t.Errorf("published zones %q, want acme's corp.example alone", got)
	}
	if zs, err := c.DNSZones(ctx, "beta"); err != nil || len(zs) != 0 {
		t.Errorf("beta's zones %+v, %v", zs, err)
	}
	if err := c.RemoveDNSZone(ctx, "acme", "corp.example"); err != nil {
		t.Fatal(err)
	}
	if got := zones(); len(got) != 0 {
		t.Errorf("zones after the removal: %q", got)
	}
}

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

// TestTenantDNSAllParts: a tenant's split zones, its own upstreams, its blocklists and its
// query log reach the data plane together in its one TenantDNS, and the Desired validates.
func TestTenantDNSAllParts(t *testing.T) {
	ctx := context.Background()
	c, dp, _ := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820"})
	lan := netip.MustParsePrefix("10.10.0.0/24")
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "gw", Site: "office", SitePrefixes: []netip.Prefix{lan}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddRoute(ctx, "acme", lan, "site:office"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddDNSZone(ctx, "acme", "corp.example", []netip.AddrPort{netip.MustParseAddrPort("10.10.0.53:53")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetDNSUpstreams(ctx, "acme", []string{"tls://dns.quad9.net@9.9.9.9"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnableDNSLog(ctx, "acme", 0); err != nil {
		t.Fatal(err)
	}
	b, err := c.UploadBlocklist(ctx, "acme", "ads", strings.NewReader("0.0.0.0 ads.example.com\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	want := plane.TenantDNS{
		Zones:      []plane.DNSZone{{Name: "corp.example", Servers: []netip.AddrPort{netip.MustParseAddrPort("10.10.0.53:53")}}},
		Upstreams:  []plane.DNSUpstream{{Addr: netip.MustParseAddrPort("9.9.9.9:853"), TLSName: "dns.quad9.net"}},
		Blocklists: []plane.BlocklistRef{{Name: "ads", SHA256: b.SHA256, Names: 1}},
		QueryLog:   true,
	}
	d := dp.Desired()
	if err := d.Validate(); err != nil {
		t.Fatalf("the Desired does not validate: %v", err)
	}
	if len(d.Tenants) != 1 || fmt.Sprint(d.Tenants[0].DNS) != fmt.Sprint(want) {
		t.Errorf("acme's DNS in the Desired: %+v, want %+v", d.Tenants, want)
	}
}
