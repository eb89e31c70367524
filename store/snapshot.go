package store

import "context"

// Snapshot is the desired network state as one read transaction saw it: what the controller
// turns into the state every node applies.
type Snapshot struct {
	// Generation is the database's change counter at the time of the read (see Generation).
	Generation int64
	// Tenants ordered by name (as ListTenants).
	Tenants []Tenant
	// Peers ordered by tenant name, then name (as ListPeers with tenant ""). Snapshots
	// share it while no peer changes (see snapshotPeers): read only.
	Peers []Peer
	// Routes in ListRoutes' order.
	Routes []Route
	// Policies holds the policy text of every tenant that set one, by tenant ID (as
	// Policies): a tenant missing from it has the default policy.
	Policies map[int64]string
	// Regions ordered by name (as Regions), public parts only: no private key.
	Regions []Region
	// TenantRegions holds the regions of every tenant limited to some, sorted, by tenant
	// ID: a tenant missing from it is allowed in every region.
	TenantRegions map[int64][]string
	// Nodes are the nodes that joined, ordered by name (as Nodes): a removed node is in no
	// later snapshot.
	Nodes []Node
	// Checks are every check, as NetChecks orders them.
	Checks []NetCheck
	// DNSZones are every tenant's split DNS zones, as DNSZones orders them.
	DNSZones []DNSZone
	// DNSUpstreams holds the upstreams of every tenant that set some, in order, by tenant
	// ID: a tenant missing from it uses the node's.
	DNSUpstreams map[int64][]DNSUpstream
	// DNSLogs holds the query log settings of every tenant whose log is on, by tenant ID.
	DNSLogs map[int64]DNSLogSettings
	// Blocklists are every tenant's DNS blocklists, by tenant and name (as Blocklists with
	// tenant ""), without their contents.
	Blocklists []Blocklist
}

// Snapshot reads the tenants, peers, routes, policies and regions with the generation they belong to,
// in one read transaction: a change committed meanwhile is either wholly in it (and in its
// Generation) or not at all.
func (s *Store) Snapshot(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	err := s.read(ctx, func(q querier) error {
		var err error
		if snap.Generation, err = generation(ctx, q); err != nil {
			return err
		}
		if snap.Tenants, err = listTenants(ctx, q); err != nil {
			return err
		}
		if snap.Peers, err = s.snapshotPeers(ctx, q, snap.Tenants); err != nil {
			return err
		}
		if snap.Routes, err = queryRoutes(ctx, q, ""); err != nil {
			return err
		}
		if snap.Policies, err = policies(ctx, q); err != nil {
			return err
		}
		if s.version < regionsVersion {
			return nil // a test's older schema
		}
		if snap.Regions, err = listRegions(ctx, q, s.nodePub); err != nil {
			return err
		}
		if snap.TenantRegions, err = allTenantRegions(ctx, q); err != nil {
			return err
		}
		if s.version < nodesVersion {
			return nil
		}
		if snap.Nodes, err = queryNodes(ctx, q); err != nil {
			return err
		}
		if snap.Checks, err = s.queryNetChecks(ctx, q, "", nil); err != nil {
			return err
		}
		if s.version < dnsZonesVersion {
			return nil
		}
		if snap.DNSZones, err = queryDNSZones(ctx, q, ""); err != nil {
			return err
		}
		if s.version < dnsUpstreamsVersion {
			return nil
		}
		if snap.DNSUpstreams, err = allDNSUpstreams(ctx, q); err != nil {
			return err
		}
		if snap.DNSLogs, err = allDNSLogSettings(ctx, q); err != nil {
			return err
		}
		if s.version < blocklistsVersion {
			return nil
		}
		snap.Blocklists, err = s.queryBlocklists(ctx, q, "")
		return err
	})
	if err != nil {
		return Snapshot{}, err
	}
	return snap, nil
}
