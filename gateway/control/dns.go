package control

import (
	"context"
	"net/netip"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// DNSZones lists the tenant's split DNS zones by name.
func (c *Controller) DNSZones(ctx context.Context, tenant string) ([]store.DNSZone, error) {
	return c.store.DNSZones(ctx, tenant)
}

// AddDNSZone gives the tenant a split DNS zone whose names its peers resolve through
// servers in its sites (or at its peers): every PoP asks them within the publication.
func (c *Controller) AddDNSZone(ctx context.Context, tenant, zone string, servers []netip.AddrPort) (store.DNSZone, error) {
	z, err := c.store.AddDNSZone(ctx, tenant, zone, servers)
	if err != nil {
		return z, err
	}
	c.changed(ctx)
	return z, nil
}

// RemoveDNSZone takes the tenant's split zone away; its names resolve like any other again.
func (c *Controller) RemoveDNSZone(ctx context.Context, tenant, zone string) error {
	if _, err := c.store.RemoveDNSZone(ctx, tenant, zone); err != nil {
		return err
	}
	c.changed(ctx)
	return nil
}

// tenantDNS returns what the Desired says of a tenant's DNS: its zones.
func tenantDNS(zones []store.DNSZone) plane.TenantDNS {
	var d plane.TenantDNS
	for _, z := range zones {
		d.Zones = append(d.Zones, plane.DNSZone{Name: z.Name, Servers: z.Servers})
	}
	return d
}
