package control

import (
	"context"
	"net/netip"
	"time"

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

// The tenants' settings of the in-tunnel resolver (issue 17) that the controller keeps and
// hands every node in the tenants' Desired: their own upstreams, and whether their query log
// is on. The queries the nodes log come back in their reports (NodeDNSLog) and, for the
// controller's own node, from its data plane (ownDNSLog); the store keeps them for the
// tenant's keep time, at most store.MaxDNSLogRows each (pruned every dnsLogPruneEvery).

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

// tenantDNS is the resolver settings of tenant id in snap, as nodes get them: its split
// zones (the tenant's of snap.DNSZones), its upstreams, its blocklists (the tenant's of
// blocklistRefs) and whether its query log is on.
func tenantDNS(snap *store.Snapshot, id int64, zones []store.DNSZone, lists []plane.BlocklistRef) plane.TenantDNS {
	d := plane.TenantDNS{QueryLog: snap.DNSLogs[id].Enabled, Blocklists: lists}
	for _, z := range zones {
		d.Zones = append(d.Zones, plane.DNSZone{Name: z.Name, Servers: z.Servers})
	}
	for _, u := range snap.DNSUpstreams[id] {
		d.Upstreams = append(d.Upstreams, plane.DNSUpstreamOf(u))
	}
	return d
}

// EnableDNSLog turns the tenant's query log on, keeping entries for keep (0: the default,
// 24 h), and publishes it: the nodes log the tenant's queries within seconds.
func (c *Controller) EnableDNSLog(ctx context.Context, tenant string, keep time.Duration) (store.DNSLogSettings, error) {
	set, err := c.store.EnableDNSLog(ctx, tenant, keep)
	if err != nil {
		return store.DNSLogSettings{}, err
	}
	c.changed(ctx)
	return set, nil
}

// DisableDNSLog turns the tenant's query log off and deletes its entries (it returns how
// many); the nodes stop logging within seconds, and what they logged meanwhile is dropped.
func (c *Controller) DisableDNSLog(ctx context.Context, tenant string) (int64, error) {
	n, err := c.store.DisableDNSLog(ctx, tenant)
	if err != nil {
		return 0, err
	}
	c.changed(ctx)
	return n, nil
}

// DNSLogSettings returns whether the tenant's query log is on.
func (c *Controller) DNSLogSettings(ctx context.Context, tenant string) (store.DNSLogSettings, error) {
	return c.store.DNSLogSettings(ctx, tenant)
}

// DNSLog returns the tenant's logged queries q selects, newest first, and whether more follow.
func (c *Controller) DNSLog(ctx context.Context, q store.DNSLogQuery) ([]store.DNSLogEntry, bool, error) {
	return c.store.DNSLog(ctx, q)
}

// DNSLogSource is a data plane with a query log (gateway.Node): the controller reads its own
// node's logged queries from it.
type DNSLogSource interface {
	// DNSLogAfter returns the queries logged after number seq (those the controller has),
	// oldest first, at most plane.MaxReportDNSLog.
	DNSLogAfter(seq uint64) []plane.DNSQuery
}

// How often the controller reads its own node's query log, and prunes the logs.
const (
	ownDNSLogEvery   = 2 * time.Second
	dnsLogPruneEvery = time.Minute
)

// dnsLogEntry is q, logged at node whose clock is offset ahead of the controller's, as the
// store keeps it.
func dnsLogEntry(q plane.DNSQuery, node string, offset time.Duration) store.DNSLogEntry {
	return store.DNSLogEntry{TenantID: q.Tenant, At: q.At.Add(-offset), Node: node, Peer: q.Peer, Client: q.Client,
		Name: q.Name, Type: q.Type, Outcome: q.Outcome, Rcode: q.Rcode, Latency: q.Latency}
}

// ownDNSLog records what the controller's own node logged since it last looked (every
// ownDNSLogEvery). The node's numbering is this process's, so the cursor lives here.
func (c *Controller) ownDNSLog(time.Time) {
	src, ok := c.dp.(DNSLogSource)
	if !ok {
		return
	}
	for {
		qs := src.DNSLogAfter(c.ownDNSLogSeq)
		if len(qs) == 0 {
			return
		}
		es := make([]store.DNSLogEntry, len(qs))
		for i, q := range qs {
			es[i] = dnsLogEntry(q, c.OwnNodeName(), 0)
		}
		if _, err := c.store.AddDNSLog(context.Background(), es); err != nil {
			c.log.Warn("record the DNS queries the node logged; trying again later", "err", err)
			return
		}
		c.ownDNSLogSeq = qs[len(qs)-1].Seq
		if len(qs) < plane.MaxReportDNSLog {
			return
		}
	}
}

// NodeDNSLogCursor returns the newest logged query of node n recorded (nodesync.Source).
func (c *Controller) NodeDNSLogCursor(ctx context.Context, n store.Node) (store.EventCursor, error) {
	return c.store.NodeDNSLogCursor(ctx, n.ID)
}

// NodeDNSLog records the queries node n logged in its process boot, each once, of the
// tenants whose log is on (nodesync.Source).
func (c *Controller) NodeDNSLog(ctx context.Context, n store.Node, boot int64, qs []plane.DNSQuery, offset time.Duration) error {
	es := make([]store.NodeDNSLogEntry, len(qs))
	for i, q := range qs {
		es[i] = store.NodeDNSLogEntry{Seq: q.Seq, DNSLogEntry: dnsLogEntry(q, n.Name, offset)}
	}
	_, err := c.store.AddNodeDNSLog(ctx, n.ID, boot, es)
	return err
}

// pruneDNSLog deletes the logged queries older than their tenant keeps them, and the oldest
// beyond store.MaxDNSLogRows of each tenant (every dnsLogPruneEvery).
func (c *Controller) pruneDNSLog(time.Time) {
	n, err := c.store.PruneDNSLog(context.Background(), store.MaxDNSLogRows)
	if err != nil {
		c.log.Warn("prune the DNS query logs", "err", err)
		return
	}
	if n > 0 {
		c.log.Debug("pruned the DNS query logs", "entries", n)
	}
}
