package store

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Groups and site prefixes of peers, read in one query: a UNION of the group rows (kind 0:
// peer_id, group names separated by ',', which names cannot contain) and the site rows
// (kind 1: peer_id, site name, one prefix per row). Each half takes a filter, the same for
// both: all peers, one tenant's, or one peer's. For all peers, one row per peer with
// group_concat is a tenth faster than one row per group; for fewer, grouping would need a
// temporary B-tree, so those read a row per group.
const (
	extrasGroups = `SELECT g.peer_id, 0, g.name, NULL, NULL FROM peer_groups AS g `
	extrasSites  = `SELECT s.peer_id, 1, s.name, sp.addr, sp.bits FROM sites AS s
	LEFT JOIN site_prefixes AS sp ON sp.tenant_id = s.tenant_id AND sp.site = s.name `

	extrasAll = `SELECT g.peer_id, 0, group_concat(g.name, ','), NULL, NULL FROM peer_groups AS g GROUP BY g.peer_id ` +
		"UNION ALL " + extrasSites
	extrasTenant = extrasGroups + "JOIN peers AS p ON p.id = g.peer_id WHERE p.tenant_id = ? " +
		"UNION ALL " + extrasSites + "WHERE s.tenant_id = ?"
	extrasPeer = extrasGroups + "WHERE g.peer_id = ? UNION ALL " + extrasSites + "WHERE s.peer_id = ?"
)

// loadPeerExtras fills in the Groups, Site and SitePrefixes of ps with one query. It reads
// the rows of the narrowest filter that covers ps and skips rows of other peers.
func loadPeerExtras(ctx context.Context, q querier, ps []Peer) error {
	if len(ps) == 0 {
		return nil
	}
	query, args := extrasAll, []any(nil)
	switch {
	case len(ps) == 1:
		query, args = extrasPeer, []any{ps[0].ID, ps[0].ID}
	case !slices.ContainsFunc(ps, func(p Peer) bool { return p.TenantID != ps[0].TenantID }):
		query, args = extrasTenant, []any{ps[0].TenantID, ps[0].TenantID}
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("store: read groups and sites: %w", err)
	}
	defer rows.Close()

	find := peerFinder(ps)
	type member struct {
		i    int // index in ps
		name string
	}
	type prefix struct {
		i int
		p netip.Prefix
	}
	var (
		members  []member
		prefixes []prefix
		names    = map[string]string{} // one string per distinct group or site name
		peerID   int64
		kind     int
		name     sql.RawBytes
		addr     sql.RawBytes // nil for NULL
		bits     sql.NullInt64
	)
	for rows.Next() {
		if err := rows.Scan(&peerID, &kind, &name, &addr, &bits); err != nil {
			return fmt.Errorf("store: read groups and sites: %w", err)
		}
		i := find(peerID)
		if i < 0 {
			continue
		}
		if kind == 0 {
			for rest, more := []byte(name), true; more; {
				var g []byte
				g, rest, more = bytes.Cut(rest, []byte{','})
				members = append(members, member{i, intern(names, g)})
			}
			continue
		}
		n := intern(names, name)
		ps[i].Site = n
		if addr == nil {
			continue // a site without prefixes, written by hand
		}
		p, ok := prefixFromRow(addr, bits.Int64)
		if !ok {
			return fmt.Errorf("store: read sites: a prefix of site %s of peer %d is malformed", n, peerID)
		}
		prefixes = append(prefixes, prefix{i, p})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: read groups and sites: %w", err)
	}

	// Hand each peer a piece of one shared array, capped so that appending to one peer's
	// slice cannot overwrite the next one's. Rows usually arrive in order already.
	byMember := func(a, b member) int { return cmp.Or(cmp.Compare(a.i, b.i), strings.Compare(a.name, b.name)) }
	if !slices.IsSortedFunc(members, byMember) {
		slices.SortFunc(members, byMember)
	}
	groups := make([]string, len(members))
	for j := 0; j < len(members); {
		k := j
		for ; k < len(members) && members[k].i == members[j].i; k++ {
			groups[k] = members[k].name
		}
		ps[members[j].i].Groups = groups[j:k:k]
		j = k
	}
	byPrefix := func(a, b prefix) int { return cmp.Or(cmp.Compare(a.i, b.i), a.p.Compare(b.p)) }
	if !slices.IsSortedFunc(prefixes, byPrefix) {
		slices.SortFunc(prefixes, byPrefix)
	}
	pfxs := make([]netip.Prefix, len(prefixes))
	for j := 0; j < len(prefixes); {
		k := j
		for ; k < len(prefixes) && prefixes[k].i == prefixes[j].i; k++ {
			pfxs[k] = prefixes[k].p
		}
		ps[prefixes[j].i].SitePrefixes = pfxs[j:k:k]
		j = k
	}
	return nil
}

// intern returns b as a string, the same string for the same bytes.
func intern(m map[string]string, b []byte) string {
	s, ok := m[string(b)] // no allocation for the lookup
	if !ok {
		s = string(b)
		m[s] = s
	}
	return s
}

// peerFinder returns a function that maps a peer ID to its index in ps, or -1. It searches
// ps itself when ps is ordered by ID (as a scan of the table returns it), else a sorted index.
func peerFinder(ps []Peer) func(id int64) int {
	byID := func(p Peer, id int64) int { return cmp.Compare(p.ID, id) }
	if slices.IsSortedFunc(ps, func(a, b Peer) int { return cmp.Compare(a.ID, b.ID) }) {
		return func(id int64) int {
			if i, ok := slices.BinarySearchFunc(ps, id, byID); ok {
				return i
			}
			return -1
		}
	}
	order := make([]int32, len(ps))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(ps[a].ID, ps[b].ID) })
	return func(id int64) int {
		if j, ok := slices.BinarySearchFunc(order, id, func(i int32, id int64) int { return cmp.Compare(ps[i].ID, id) }); ok {
			return int(order[j])
		}
		return -1
	}
}
