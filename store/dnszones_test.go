package store

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func aps(ss ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}

// TestDNSZones: a zone's servers must be in the tenant's reach (a site route, a peer of
// its), each refusal says what to do; zones list in order with their servers, one tenant's
// never in another's list, and go with their tenant.
func TestDNSZones(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	mustTenant(t, s, "acme")
	mustTenant(t, s, "globex")
	gw := mustPeer(t, s, newPeer(t, "acme", "gw"))
	if _, err := s.SetPeerSite(ctx, "acme", "gw", "office", pfxs("10.10.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRoute(ctx, "acme", pfx("10.10.0.0/24"), "site:office"); err != nil {
		t.Fatal(err)
	}
	other := mustPeer(t, s, newPeer(t, "globex", "laptop"))

	z, err := s.AddDNSZone(ctx, "acme", "Corp.Example.COM.", aps("10.10.0.53:53", "10.10.0.54:5353"))
	if err != nil {
		t.Fatal(err)
	}
	if z.Name != "corp.example.com" || z.TenantName != "acme" || len(z.Servers) != 2 {
		t.Errorf("added %+v", z)
	}
	if _, err := s.AddDNSZone(ctx, "acme", ".", aps(netip.AddrPortFrom(gw.IPv6, 53).String())); err != nil {
		t.Errorf("the root zone to a peer's IPv6 address: %v", err)
	}

	for _, c := range []struct {
		tenant, zone string
		servers      []netip.AddrPort
		want         error
		msg          string
	}{
		{"acme", "corp.example.com", aps("10.10.0.53:53"), ErrExists, "already has DNS zone corp.example.com (servers 10.10.0.53:53, 10.10.0.54:5353): remove it first"},
		{"acme", "lab.example", aps("10.9.0.53:53"), ErrInvalid, "10.9.0.53 is routed via internet (acme's route 0.0.0.0/0), not to one of its sites: route a prefix"},
		{"globex", "lab.example", aps("10.10.0.53:53"), ErrInvalid, "10.10.0.53 is routed via internet (globex's route 0.0.0.0/0)"},
		{"acme", "lab.example", aps(netip.AddrPortFrom(other.IPv4, 53).String()), ErrInvalid, "is in the overlay but is no peer of acme's"},
		{"acme", "lab.example", aps("100.64.0.1:53"), ErrInvalid, "is in the overlay but is no peer of acme's"},
		{"acme", "x.acme.internal", aps("10.10.0.53:53"), ErrInvalid, "lies in acme.internal, tenant acme's own domain"},
		{"acme", "lab..example", aps("10.10.0.53:53"), ErrInvalid, "DNS zone \"lab..example\" has an empty or too long label"},
		{"acme", "lab.example", nil, ErrInvalid, "has 0 servers: give 1 to 4"},
		{"acme", "lab.example", aps("10.10.0.53:53", "10.10.0.53:53"), ErrInvalid, "given twice"},
		{"acme", "lab.example", aps("127.0.0.1:53"), ErrInvalid, "is not an address a query can be sent to"},
		{"acme", "lab.example", aps("10.10.0.53:0"), ErrInvalid, "port 0 is no port"},
		{"nobody", "lab.example", aps("10.10.0.53:53"), ErrNotFound, ""},
	} {
		_, err := s.AddDNSZone(ctx, c.tenant, c.zone, c.servers)
		if !errors.Is(err, c.want) || !strings.Contains(fmtErr(err), c.msg) {
			t.Errorf("AddDNSZone(%s, %s, %v) = %v, want %v saying %q", c.tenant, c.zone, c.servers, err, c.want, c.msg)
		}
	}
	// Without the default routes, a server outside every route.
	for _, p := range defaultRoutes() {
		if _, err := s.RemoveRoute(ctx, "acme", p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddDNSZone(ctx, "acme", "lab.example", aps("10.9.0.53:53")); !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "10.9.0.53 is in none of acme's routes: add a route for it first") {
		t.Errorf("a server outside every route: %v", err)
	}

	zs, err := s.DNSZones(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, z := range zs {
		got = append(got, z.Name+" "+formatServers(z.Servers))
	}
	if want := []string{". [" + gw.IPv6.String() + "]:53", "corp.example.com 10.10.0.53:53, 10.10.0.54:5353"}; !slices.Equal(got, want) {
		t.Errorf("acme's zones %q, want %q", got, want)
	}
	if zs, err := s.DNSZones(ctx, "globex"); err != nil || len(zs) != 0 {
		t.Errorf("globex's zones %+v, %v, want none", zs, err)
	}
	if _, err := s.DNSZones(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("zones of no tenant: %v", err)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil || len(snap.DNSZones) != 2 {
		t.Errorf("snapshot zones %+v, %v", snap.DNSZones, err)
	}

	if _, err := s.RemoveDNSZone(ctx, "globex", "corp.example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("globex removing acme's zone: %v", err)
	}
	if z, err := s.RemoveDNSZone(ctx, "acme", "CORP.example.com."); err != nil || z.Name != "corp.example.com" {
		t.Errorf("RemoveDNSZone: %+v, %v", z, err)
	}
	// The zone "." to the peer gw goes with the tenant (a tenant goes once its peers did).
	if _, err := s.RemoveRoute(ctx, "acme", pfx("10.10.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemovePeer(ctx, "acme", "gw"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if zs, err := s.DNSZones(ctx, ""); err != nil || len(zs) != 0 {
		t.Errorf("zones after the tenant went: %+v, %v", zs, err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestParseDNSServer(t *testing.T) {
	for in, want := range map[string]string{
		"10.10.0.53":       "10.10.0.53:53",
		"10.10.0.53:5353":  "10.10.0.53:5353",
		"fd00::53":         "[fd00::53]:53",
		"[fd00::53]":       "[fd00::53]:53",
		"[fd00::53]:5353":  "[fd00::53]:5353",
		"dns.corp.example": "",
		"::ffff:10.0.0.1":  "",
		"10.10.0.53:0":     "",
		"":                 "",
	} {
		ap, err := ParseDNSServer(in)
		switch {
		case want == "" && err == nil:
			t.Errorf("ParseDNSServer(%q) = %v, want an error", in, ap)
		case want != "" && (err != nil || ap.String() != want):
			t.Errorf("ParseDNSServer(%q) = %v, %v, want %s", in, ap, err, want)
		}
	}
}
