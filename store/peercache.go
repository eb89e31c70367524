package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
// tenant, as q sees them.
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

	// Tenants in the order of their peers: bytewise by name, as listPeers sorts.
	order := slices.Clone(tenants)
	slices.SortFunc(order, func(a, b Tenant) int { return strings.Compare(a.Name, b.Name) })
	var stale []int64
	for _, t := range order {
		if ct, ok := c.tenants[t.ID]; !ok || ct.version != versions[t.ID] || ct.name != t.Name {
			stale = append(stale, t.ID)
		}
	}
	if len(stale) == 0 && c.tenants != nil && len(c.tenants) == len(order) {
		return c.peers, nil
	}
	// Reading the whole table in storage order beats one indexed query per tenant once
	// many tenants changed (and on the first call).
	if c.tenants == nil || len(stale) > max(8, len(order)/4) {
		ps, err := listPeers(ctx, q, "")
		if err != nil {
			return nil, err
		}
		c.fullReads++
		c.fill(ps, order, versions)
		return ps, nil
	}
	fresh := make(map[int64][]Peer, len(stale))
	n := 0
	for _, id := range stale {
		ps, err := queryPeers(ctx, q, 0, "WHERE p.tenant_id = ? ORDER BY p.name", id)
		if err != nil {
			return nil, err
		}
		fresh[id] = ps
		c.tenantReads++
	}
	for _, t := range order {
		if ps, ok := fresh[t.ID]; ok {
			n += len(ps)
		} else {
			ct := c.tenants[t.ID]
			n += ct.end - ct.start
		}
	}
	out := make([]Peer, 0, n)
	for _, t := range order {
		if ps, ok := fresh[t.ID]; ok {
			out = append(out, ps...)
		} else {
			ct := c.tenants[t.ID]
			out = append(out, c.peers[ct.start:ct.end]...)
		}
	}
	c.fill(out, order, versions)
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
