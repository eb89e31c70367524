package control

import (
	"context"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// The tenants' settings of the in-tunnel resolver (issue 17) that the controller keeps and
// hands every node in the tenants' Desired: their own upstreams.

// SetDNSUpstreams makes ups (store.ParseDNSUpstream's forms) the tenant's upstreams, in
// order, and publishes them: every PoP forwards the tenant's queries to them within the
// publication. None returns the tenant to the node's upstreams.
func (c *Controller) SetDNSUpstreams(ctx context.Context, tenant string, ups []string) ([]store.DNSUpstream, error) {
	out, err := c.store.SetDNSUpstreams(ctx, tenant, ups)
	if err != nil {
		return nil, err
	}
	c.changed(ctx)
	return out, nil
}

// DNSUpstreams returns the tenant's upstreams; none: it uses the node's.
func (c *Controller) DNSUpstreams(ctx context.Context, tenant string) ([]store.DNSUpstream, error) {
	return c.store.DNSUpstreams(ctx, tenant)
}

// tenantDNS is the resolver settings of tenant id in snap, as nodes get them.
func tenantDNS(snap *store.Snapshot, id int64) plane.TenantDNS {
	var d plane.TenantDNS
	for _, u := range snap.DNSUpstreams[id] {
		d.Upstreams = append(d.Upstreams, plane.DNSUpstreamOf(u))
	}
	return d
}
