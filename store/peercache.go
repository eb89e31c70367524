package store

import (
	"context"
	"fmt"
	"sync"
)

// peerVersionsVersion is the migration that counts the changes of each tenant's peers.
const peerVersionsVersion = 17

// peerCache keeps the peers the last Snapshot read, so that the next one rereads only the
// tenants whose peers changed: the count of peer_versions (kept by triggers) or the tenant's
// name (which peers carry) moved. Adding one peer to an installation of 100,000 no longer
// reads all of them again.
type peerCache struct {
	mu sync.Mutex
	// peers is what the last snapshot returned, shared with it: read only.
	peers []Peer
	// tenants says where each tenant's peers are in peers, and under which count and name.
	tenants map[int64]cachedTenant
	// fullReads and tenantReads count the reads of the whole table and of one tenant's
	// peers (for tests).
	fullReads, tenantReads int
}

type cachedTenant struct {
	version    int64
	name       string
	start, end int // peers[start:end]
}

// snapshotPeers returns every peer ordered by tenant name, then name (as listPeers with tenant
// ""), reading in q only the tenants that changed since the last call. tenants are every
// tenant as q sees them, ordered by name (as listTenants: bytewise, the order of the peers).
func (s *Store) snapshotPeers(ctx context.Context, q querier, tenants []Tenant) ([]Peer, error) {
	if s.version < peerVersionsVersion {
		return listPeers(ctx, q, "")
	}
	versions, err := peerVersions(ctx, q)
	if err != nil {
		return nil, err
	}
	c := &s.peerCache
	c.mu.Lock()
	defer c.mu.Unlock()

	fresh := map[int64][]Peer{} // the tenants that changed, nil until read
	for _, t := range tenants {
		if ct, ok := c.tenants[t.ID]; !ok || ct.version != versions[t.ID] || ct.name != t.Name {
			fresh[t.ID] = nil
		}
	}
	if len(fresh) == 0 && len(c.tenants) == len(tenants) && c.tenants != nil {
		return c.peers, nil
	}
	// Reading the whole table in storage order beats one indexed query per tenant once
	// many tenants changed (and on the first call).
	if c.tenants == nil || len(fresh) > max(8, len(tenants)/4) {
		ps, err := listPeers(ctx, q, "")
		if err != nil {
			return nil, err
		}
		c.fullReads++
		c.fill(ps, tenants, versions)
		return ps, nil
	}
	for id := range fresh {
		if fresh[id], err = queryPeers(ctx, q, 0, "WHERE p.tenant_id = ? ORDER BY p.name", id); err != nil {
			return nil, err
		}
		c.tenantReads++
	}
	peersOf := func(t Tenant) []Peer {
		if ps, ok := fresh[t.ID]; ok {
			return ps
		}
		ct := c.tenants[t.ID]
		return c.peers[ct.start:ct.end]
	}
	n := 0
	for _, t := range tenants {
		n += len(peersOf(t))
	}
	out := make([]Peer, 0, n)
	for _, t := range tenants {
		out = append(out, peersOf(t)...)
	}
	c.fill(out, tenants, versions)
	return out, nil
}

// fill makes ps, read under versions, what c keeps: ps holds the peers of the tenants of
// order, in that order.
func (c *peerCache) fill(ps []Peer, order []Tenant, versions map[int64]int64) {
	c.peers = ps
	c.tenants = make(map[int64]cachedTenant, len(order))
	i := 0
	for _, t := range order {
		start := i
		for i < len(ps) && ps[i].TenantID == t.ID {
			i++
		}
		c.tenants[t.ID] = cachedTenant{version: versions[t.ID], name: t.Name, start: start, end: i}
	}
	if i != len(ps) {
		// A peer of a tenant not in order: not possible in one read transaction (peers
		// reference their tenant), but keep nothing rather than something wrong.
		c.peers, c.tenants = nil, nil
	}
}

// peerVersions reads the change count of every tenant whose peers ever changed.
func peerVersions(ctx context.Context, q querier) (map[int64]int64, error) {
	rows, err := q.QueryContext(ctx, "SELECT tenant_id, version FROM peer_versions")
	if err != nil {
		return nil, fmt.Errorf("store: read the peers' change counts: %w", err)
	}
	defer rows.Close()
	vs := make(map[int64]int64)
	for rows.Next() {
		var id, v int64
		if err := rows.Scan(&id, &v); err != nil {
			return nil, fmt.Errorf("store: read the peers' change counts: %w", err)
		}
		vs[id] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read the peers' change counts: %w", err)
	}
	return vs, nil
}
