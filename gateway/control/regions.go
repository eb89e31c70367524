package control

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// The controller's own region is serve's --region (Config.Region): its key is the node key
// and its endpoint Config.PublicEndpoint, so its client configs are those an appliance
// always wrote. Other regions have keys of their own, generated and sealed by the store, and
// are served by the PoPs that join for them.

// ensureHomeRegion records the controller's own region, with the endpoint its configs use.
func (c *Controller) ensureHomeRegion(ctx context.Context) error {
	if _, err := c.store.EnsureHomeRegion(ctx, c.cfg.Region, c.cfg.PublicEndpoint); err != nil {
		return fmt.Errorf("control: record the controller's region %s: %w", c.cfg.Region, err)
	}
	return nil
}

// HomeRegion returns the name of the controller's own region (serve's --region).
func (c *Controller) HomeRegion() string { return c.cfg.Region }

// Regions returns every region ordered by name, each with the tenants limited to it.
func (c *Controller) Regions(ctx context.Context) ([]store.Region, error) {
	return c.store.Regions(ctx)
}

// Region returns one region with the tenants limited to it; the error wraps
// store.ErrNotFound when there is none.
func (c *Controller) Region(ctx context.Context, name string) (store.Region, error) {
	return c.store.Region(ctx, name)
}

// AddRegion creates region name, with a WireGuard key of its own, whose clients connect to
// endpoint (host:port).
func (c *Controller) AddRegion(ctx context.Context, name, endpoint string) (store.Region, error) {
	r, err := c.store.AddRegion(ctx, name, endpoint)
	if err != nil {
		return r, err
	}
	c.changed(ctx)
	return r, nil
}

// SetRegion changes the endpoint of region name. Configs already handed out keep the old one
// until they are imported again.
func (c *Controller) SetRegion(ctx context.Context, name, endpoint string) (store.Region, error) {
	r, err := c.store.SetRegionEndpoint(ctx, name, endpoint)
	if err != nil {
		return r, err
	}
	c.changed(ctx)
	return r, nil
}

// RemoveRegion deletes region name and its key; it refuses the controller's own region and
// the only region of a tenant.
func (c *Controller) RemoveRegion(ctx context.Context, name string) error {
	if err := c.store.RemoveRegion(ctx, name); err != nil {
		return err
	}
	c.changed(ctx)
	return nil
}

// SetTenantRegions limits tenant to regions, or (none) allows it everywhere. Its peers'
// configs for other regions are refused from then on, and the PoPs of other regions stop
// serving its peers.
func (c *Controller) SetTenantRegions(ctx context.Context, tenant string, regions []string) (TenantInfo, error) {
	if _, err := c.store.SetTenantRegions(ctx, tenant, regions); err != nil {
		return TenantInfo{}, err
	}
	c.changed(ctx)
	return c.tenantInfo(ctx, tenant)
}

// tenantInfo reads one tenant with its peer count and regions.
func (c *Controller) tenantInfo(ctx context.Context, tenant string) (TenantInfo, error) {
	t, err := c.store.Tenant(ctx, tenant)
	if err != nil {
		return TenantInfo{}, err
	}
	n, err := c.store.CountPeers(ctx, tenant)
	if err != nil {
		return TenantInfo{}, err
	}
	ti := tenantInfo(t, n)
	ti.Regions, err = c.store.TenantRegions(ctx, tenant)
	return ti, err
}

// DesiredFor returns the desired state of region's PoPs: the tenants allowed there with
// their peers and routes, every region's public part, and the region's private key unless
// region is the controller's own (whose PoP, the appliance, has the node key). It is built
// from the state last published. The error wraps store.ErrNotFound for an unknown region.
func (c *Controller) DesiredFor(ctx context.Context, region string) (*plane.Desired, error) {
	snap, err := c.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return c.desiredForSnap(ctx, snap, region)
}

// snapshot returns the state last published, or reads it before the first publication.
func (c *Controller) snapshot(ctx context.Context) (*store.Snapshot, error) {
	if snap := c.read.Load(); snap != nil {
		return snap, nil
	}
	s, err := c.store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return &s, nil
}

func (c *Controller) desiredForSnap(ctx context.Context, snap *store.Snapshot, region string) (*plane.Desired, error) {
	if region == "" {
		region = c.cfg.Region
	}
	d := c.desiredFor(snap, region)
	if !slices.ContainsFunc(d.Regions, func(r plane.Region) bool { return r.Name == region }) {
		return nil, fmt.Errorf("region %q not found: list regions with 'popgate region list': %w", region, store.ErrNotFound)
	}
	if region != c.cfg.Region {
		k, err := c.store.RegionPrivateKey(ctx, region)
		if err != nil {
			return nil, err
		}
		d.RegionKey = &k
	}
	return d, nil
}

// desiredFor turns a snapshot of the store into the state region's PoPs apply, without the
// region key. The controller's own region is always among the regions, even before Start
// recorded it.
func (c *Controller) desiredFor(snap *store.Snapshot, region string) *plane.Desired {
	d := &plane.Desired{
		Format:     plane.Format,
		Generation: snap.Generation,
		Overlay:    c.overlay,
		Region:     region,
		Regions:    make([]plane.Region, 0, len(snap.Regions)+1),
	}
	for _, r := range snap.Regions {
		if r.Home && r.Name != c.cfg.Region {
			continue // serve's --region changed and Start has not recorded it yet
		}
		d.Regions = append(d.Regions, plane.Region{Name: r.Name, Endpoint: r.Endpoint, PublicKey: r.PublicKey})
	}
	if !slices.ContainsFunc(d.Regions, func(r plane.Region) bool { return r.Name == c.cfg.Region }) {
		d.Regions = append(d.Regions, plane.Region{Name: c.cfg.Region, Endpoint: c.cfg.PublicEndpoint, PublicKey: c.serverKey})
		slices.SortFunc(d.Regions, func(a, b plane.Region) int { return strings.Compare(a.Name, b.Name) })
	}
	allowed := make(map[int64]bool, len(snap.Tenants))
	lists := blocklistRefs(snap)
	d.Tenants = make([]plane.Tenant, 0, len(snap.Tenants))
	zones := make(map[int64][]store.DNSZone)
	for _, z := range snap.DNSZones {
		zones[z.TenantID] = append(zones[z.TenantID], z)
	}
	for _, t := range snap.Tenants {
		rs := snap.TenantRegions[t.ID]
		if len(rs) > 0 && !slices.Contains(rs, region) {
			continue
		}
		allowed[t.ID] = true
		d.Tenants = append(d.Tenants, plane.Tenant{ID: t.ID, Name: t.Name, Domain: t.Domain, SplitTunnel: t.SplitTunnel, Policy: snap.Policies[t.ID],
			MaxFlowsPerPeer: t.MaxFlowsPerPeer, MaxFlows: t.MaxFlows, Regions: rs, DNS: tenantDNS(snap, t.ID, zones[t.ID], lists[t.ID])})
	}
	d.Peers = make([]plane.Peer, 0, len(snap.Peers))
	for i := range snap.Peers {
		p := &snap.Peers[i]
		if !allowed[p.TenantID] {
			continue
		}
		d.Peers = append(d.Peers, plane.PeerOf(p))
	}
	d.Routes = make([]plane.Route, 0, len(snap.Routes))
	for _, r := range snap.Routes {
		if allowed[r.TenantID] {
			d.Routes = append(d.Routes, plane.Route{Tenant: r.TenantID, Prefix: r.Prefix, Via: r.Via})
		}
	}
	return d
}

// regionTarget is where a client config of region sends its client: the endpoint and the
// server key. "" is the controller's own region.
type regionTarget struct {
	name     string
	endpoint string
	key      store.Key
}

// configRegion resolves the region a config of tenant is for, and refuses a region the
// tenant is not allowed in, saying how to allow it.
func (c *Controller) configRegion(ctx context.Context, tenant, region string) (regionTarget, error) {
	target := regionTarget{name: c.cfg.Region, endpoint: c.cfg.PublicEndpoint, key: c.serverKey}
	if region != "" && region != c.cfg.Region {
		r, err := c.store.Region(ctx, region)
		if err != nil {
			return regionTarget{}, err
		}
		target = regionTarget{name: r.Name, endpoint: r.Endpoint, key: r.PublicKey}
	}
	allowed, err := c.store.TenantRegions(ctx, tenant)
	if err != nil {
		return regionTarget{}, err
	}
	if len(allowed) > 0 && !slices.Contains(allowed, target.name) {
		return regionTarget{}, invalidError{fmt.Errorf("tenant %s is not allowed in region %s (only in %s): pick one of those with --region, or allow it with 'popgate tenant set --tenant %s --regions %s'",
			tenant, target.name, strings.Join(allowed, ", "), tenant, strings.Join(append(slices.Clone(allowed), target.name), ","))}
	}
	return target, nil
}

// ConfigRegions returns the regions tenant's peers may get configs for: the controller's own
// first (with the endpoint and key its configs use), then the others by name. The error
// wraps store.ErrNotFound when there is no such tenant.
func (c *Controller) ConfigRegions(ctx context.Context, tenant string) ([]store.Region, error) {
	allowed, err := c.store.TenantRegions(ctx, tenant)
	if err != nil {
		return nil, err
	}
	all, err := c.store.Regions(ctx)
	if err != nil {
		return nil, err
	}
	ok := func(name string) bool { return len(allowed) == 0 || slices.Contains(allowed, name) }
	var out []store.Region
	if ok(c.cfg.Region) {
		out = append(out, store.Region{Name: c.cfg.Region, Endpoint: c.cfg.PublicEndpoint, PublicKey: c.serverKey, Home: true})
	}
	for _, r := range all {
		if r.Name != c.cfg.Region && !r.Home && ok(r.Name) {
			out = append(out, r)
		}
	}
	return out, nil
}
