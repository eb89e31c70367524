package control

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestRegionConfigs: a config for region fra carries fra's endpoint and public key and differs
// from the home region's in nothing else; the home region's config is the one an appliance
// always wrote (the node key, --public-endpoint).
func TestRegionConfigs(t *testing.T) {
	ctx := context.Background()
	c, _, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820"})
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	fra, err := c.AddRegion(ctx, "fra", "vpn-fra.example.com:51820")
	if err != nil {
		t.Fatal(err)
	}
	_, home, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	homeLines := "PublicKey = " + st.NodePublicKey().String() + "\nEndpoint = vpn.example.com:51820\n"
	if !strings.HasPrefix(home, "# popgate: peer laptop of tenant acme, region local\n") || !strings.Contains(home, homeLines) {
		t.Fatalf("home config:\n%s", home)
	}
	for _, region := range []string{"", "local"} {
		if again, err := c.PeerConfig(ctx, "acme", "laptop", region); err != nil || again != home {
			t.Errorf("PeerConfig(%q) = %v\n%s\nwant\n%s", region, err, again, home)
		}
	}
	got, err := c.PeerConfig(ctx, "acme", "laptop", "fra")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(home, "region local", "region fra", 1)
	want = strings.Replace(want, homeLines, "PublicKey = "+fra.PublicKey.String()+"\nEndpoint = vpn-fra.example.com:51820\n", 1)
	if got != want {
		t.Errorf("fra config:\n%s\nwant\n%s", got, want)
	}
	_, err = c.PeerConfig(ctx, "acme", "laptop", "nope")
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), `region "nope" not found`) {
		t.Errorf("an unknown region: %v", err)
	}

	// A tenant limited to fra gets fra's configs only, and the refusal names the fix.
	ti, err := c.SetTenantRegions(ctx, "acme", []string{"fra"})
	if err != nil || !slices.Equal(ti.Regions, []string{"fra"}) || ti.Peers != 1 {
		t.Fatalf("SetTenantRegions: %+v, %v", ti, err)
	}
	_, err = c.PeerConfig(ctx, "acme", "laptop", "")
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "tenant acme is not allowed in region local (only in fra)") ||
		!strings.Contains(err.Error(), "'popgate tenant set --tenant acme --regions fra,local'") {
		t.Errorf("a region the tenant is not allowed in: %v", err)
	}
	if got2, err := c.PeerConfig(ctx, "acme", "laptop", "fra"); err != nil || got2 != got {
		t.Errorf("fra config after the limit: %v", err)
	}
	if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "phone", Region: "local"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("AddPeer in a region the tenant is not allowed in: %v", err)
	}
	if _, err := st.Peer(ctx, "acme", "phone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused peer was stored: %v", err)
	}
	p, conf, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "phone", Region: "fra"})
	if err != nil || !strings.Contains(conf, "Endpoint = vpn-fra.example.com:51820\n") {
		t.Fatalf("AddPeer in fra: %v\n%s", err, conf)
	}
	old := p.PublicKey
	if _, _, err := c.RotatePeerKey(ctx, "acme", "phone", "", "local"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("RotatePeerKey for a region the tenant is not allowed in: %v", err)
	}
	if p, _ := st.Peer(ctx, "acme", "phone"); p.PublicKey != old {
		t.Error("a refused rotation changed the key")
	}
	if _, conf, err := c.RotatePeerKey(ctx, "acme", "phone", "", "fra"); err != nil || !strings.Contains(conf, fra.PublicKey.String()) {
		t.Errorf("RotatePeerKey in fra: %v\n%s", err, conf)
	}

	// A one-time link: a refused region leaves it usable.
	now := time.Now()
	_, token, err := c.CreateDownloadLink(ctx, "acme", "laptop", "root", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.RedeemDownloadLink(ctx, token, now, "local"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("redeeming for a region the tenant is not allowed in: %v", err)
	}
	if _, cfg, err := c.RedeemDownloadLink(ctx, token, now, "fra"); err != nil || cfg != got {
		t.Errorf("redeeming for fra: %v", err)
	}
}

// TestDesiredFor: each region's PoPs get the tenants allowed there, the region's key unless it
// is the controller's own, and the appliance keeps getting its own region's.
func TestDesiredFor(t *testing.T) {
	ctx := context.Background()
	c, dp, st := newTestControllerStore(t, Config{PublicEndpoint: "vpn.example.com:51820"})
	for _, tn := range []string{"acme", "beta"} {
		if _, err := c.AddTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: tn, Name: "laptop"}); err != nil {
			t.Fatal(err)
		}
	}
	fra, err := c.AddRegion(ctx, "fra", "vpn-fra.example.com:51820")
	if err != nil {
		t.Fatal(err)
	}
	if d := dp.Desired(); d.Region != "local" || d.RegionKey != nil || len(d.Regions) != 2 || len(d.Tenants) != 2 {
		t.Fatalf("the appliance's Desired: region %q, key %v, regions %+v, %d tenants", d.Region, d.RegionKey, d.Regions, len(d.Tenants))
	}
	if _, err := c.SetTenantRegions(ctx, "beta", []string{"fra"}); err != nil {
		t.Fatal(err)
	}
	names := func(ts []string) string { return strings.Join(ts, ",") }
	tenantsOf := func(region string) (string, int, *store.Key) {
		t.Helper()
		d, err := c.DesiredFor(ctx, region)
		if err != nil {
			t.Fatalf("DesiredFor(%s): %v", region, err)
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("DesiredFor(%s) does not validate: %v", region, err)
		}
		var ts []string
		for _, tn := range d.Tenants {
			ts = append(ts, tn.Name)
		}
		return names(ts), len(d.Peers), d.RegionKey
	}
	if ts, peers, k := tenantsOf("local"); ts != "acme" || peers != 1 || k != nil {
		t.Errorf("local: tenants %s, %d peers, key %v", ts, peers, k)
	}
	if ts, peers, k := tenantsOf(""); ts != "acme" || peers != 1 || k != nil {
		t.Errorf(`"": tenants %s, %d peers, key %v`, ts, peers, k)
	}
	ts, peers, k := tenantsOf("fra")
	if ts != "acme,beta" || peers != 2 || k == nil || k.PublicKey() != fra.PublicKey {
		t.Errorf("fra: tenants %s, %d peers, key %v", ts, peers, k)
	}
	if d := dp.Desired(); len(d.Tenants) != 1 || d.Tenants[0].Name != "acme" || len(d.Peers) != 1 {
		t.Errorf("the appliance serves %d tenants, %d peers; beta is limited to fra", len(d.Tenants), len(d.Peers))
	}
	if _, err := c.DesiredFor(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DesiredFor an unknown region: %v", err)
	}

	// Region operations publish; removal is refused while beta has only fra.
	if err := c.RemoveRegion(ctx, "fra"); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "tenant beta") {
		t.Errorf("removing beta's only region: %v", err)
	}
	if _, err := c.SetRegion(ctx, "fra", "fra2.example.com:443"); err != nil {
		t.Fatal(err)
	}
	if d := dp.Desired(); d.Regions[0].Endpoint != "fra2.example.com:443" {
		t.Errorf("the new endpoint was not published: %+v", d.Regions)
	}
	if _, err := c.SetTenantRegions(ctx, "beta", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveRegion(ctx, "fra"); err != nil {
		t.Fatal(err)
	}
	if d := dp.Desired(); len(d.Regions) != 1 || len(d.Tenants) != 2 {
		t.Errorf("after removing fra: regions %+v, %d tenants", d.Regions, len(d.Tenants))
	}
	if rs, err := c.Regions(ctx); err != nil || len(rs) != 1 || !rs[0].Home || rs[0].PublicKey != st.NodePublicKey() || rs[0].Endpoint != "vpn.example.com:51820" {
		t.Errorf("Regions: %+v, %v", rs, err)
	}
	tis, err := c.ListTenants(ctx)
	if err != nil || len(tis) != 2 || tis[1].Regions != nil {
		t.Errorf("ListTenants: %+v, %v", tis, err)
	}
}
