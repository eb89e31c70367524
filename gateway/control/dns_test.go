package control

import (
	"context"
	"errors"
	"net/netip"
	"testing"

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
