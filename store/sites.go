package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// SetPeerSite makes the peer name of tenant the connector of site, with the LAN prefixes
// behind it, replacing whatever site it connected before, and returns the peer as stored.
// site "" with no prefixes makes it an ordinary peer again. Giving the site and prefixes it
// already has changes nothing, not even UpdatedAt.
//
// Site names follow the peer-name rule and are unique within the tenant. Prefixes, 1 to
// MaxSitePrefixes, must be masked (10.10.0.0/24, not 10.10.0.1/24), not /0, outside the
// overlay networks (see OverlayPrefixes) and must not overlap each other or the prefixes of
// the tenant's other sites; other tenants may use the same prefixes. Exact duplicates are
// dropped.
//
// The error wraps ErrInvalid for a bad name or prefix, for a name without prefixes or
// prefixes without a name, and when routes use the site the peer connects now and the call
// would remove or rename it (remove the routes first); ErrExists when another peer of the
// tenant connects a site of that name or a site with an overlapping prefix; ErrNotFound when
// the tenant or peer does not exist.
func (s *Store) SetPeerSite(ctx context.Context, tenant, name, site string, prefixes []netip.Prefix) (Peer, error) {
	prefixes, err := s.normSite(name, site, prefixes)
	if err != nil {
		return Peer{}, err
	}
	var p Peer
	err = s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if p, err = getPeer(ctx, tx, tenant, name); err != nil {
			return err
		}
		if p.Site == site && slices.Equal(p.SitePrefixes, prefixes) {
			return nil
		}
		if err := putSite(ctx, tx, p, site, prefixes); err != nil {
			return err
		}
		now := fromMicros(micros(s.now()))
		if err := touchPeer(ctx, tx, p.ID, now); err != nil {
			return err
		}
		p.Site, p.SitePrefixes, p.UpdatedAt = site, prefixes, now
		return s.logChange(ctx, tx, tenant, "peer.update", PeerTarget(tenant, name), siteDetail(site, prefixes))
	})
	if err != nil {
		return Peer{}, err
	}
	return p, nil
}

// Sites returns the sites of tenant ordered by name, or of all tenants ordered by tenant
// name then site name when tenant is "". The error wraps ErrNotFound when tenant does not
// exist.
func (s *Store) Sites(ctx context.Context, tenant string) ([]Site, error) {
	const q = `SELECT s.tenant_id, t.name, s.name, s.peer_id, p.name, sp.addr, sp.bits
		FROM sites AS s
		JOIN tenants AS t ON t.id = s.tenant_id
		JOIN peers AS p ON p.id = s.peer_id
		LEFT JOIN site_prefixes AS sp ON sp.tenant_id = s.tenant_id AND sp.site = s.name `
	var sites []Site
	err := s.read(ctx, func(db querier) error {
		var rows *sql.Rows
		var err error
		if tenant == "" {
			rows, err = db.QueryContext(ctx, q+"ORDER BY t.name, s.name")
		} else {
			if _, err := getTenant(ctx, db, tenant); err != nil {
				return err
			}
			rows, err = db.QueryContext(ctx, q+"WHERE t.name = ? ORDER BY s.name", tenant)
		}
		if err != nil {
			return fmt.Errorf("store: read sites: %w", err)
		}
		defer rows.Close()
		sites = []Site{}
		for rows.Next() {
			var st Site
			var addr []byte
			var bits sql.NullInt64
			if err := rows.Scan(&st.TenantID, &st.TenantName, &st.Name, &st.PeerID, &st.PeerName, &addr, &bits); err != nil {
				return fmt.Errorf("store: read sites: %w", err)
			}
			if n := len(sites); n == 0 || sites[n-1].PeerID != st.PeerID {
				sites = append(sites, st)
			}
			if addr == nil { // a site without prefixes, written by hand
				continue
			}
			pfx, ok := prefixFromRow(addr, bits.Int64)
			if !ok {
				return fmt.Errorf("store: read sites: a prefix of site %s in tenant %s is malformed", st.Name, st.TenantName)
			}
			last := &sites[len(sites)-1]
			last.Prefixes = append(last.Prefixes, pfx)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	for i := range sites {
		slices.SortFunc(sites[i].Prefixes, netip.Prefix.Compare)
	}
	return sites, nil
}

// normSite checks the site and prefixes given for the peer named peer, as far as that is
// possible without the database, and returns the prefixes sorted without duplicates; nil
// when there are none.
func (s *Store) normSite(peer, site string, prefixes []netip.Prefix) ([]netip.Prefix, error) {
	if site == "" {
		if len(prefixes) > 0 {
			return nil, errorf(ErrInvalid, "peer %q has site prefixes but no site name: name the site, or give no prefixes to make it an ordinary peer", peer)
		}
		return nil, nil
	}
	if err := ValidateSiteName(site); err != nil {
		return nil, err
	}
	if len(prefixes) == 0 {
		return nil, errorf(ErrInvalid, "site %q has no prefixes: give the LAN prefixes behind its connector, e.g. 10.10.0.0/24", site)
	}
	v4, v6 := s.OverlayPrefixes()
	for _, p := range prefixes {
		if err := prefixFormatError("site prefix", p); err != nil {
			return nil, err
		}
		if p.Bits() == 0 {
			return nil, errorf(ErrInvalid, "site prefix %s of site %q covers every address: give the LAN prefixes behind its connector, e.g. 10.10.0.0/24", p, site)
		}
		for _, o := range []netip.Prefix{v4, v6} {
			if p.Overlaps(o) {
				return nil, errorf(ErrInvalid, "site prefix %s of site %q overlaps the overlay network %s, whose addresses belong to peers: choose a LAN prefix outside it", p, site, o)
			}
		}
	}
	ps := sortPrefixes(slices.Clone(prefixes))
	if len(ps) > MaxSitePrefixes {
		return nil, errorf(ErrInvalid, "site %q has %d prefixes, at most %d are allowed: summarise them into fewer, larger prefixes", site, len(ps), MaxSitePrefixes)
	}
	for i, a := range ps {
		for _, b := range ps[i+1:] {
			if a.Overlaps(b) { // a sorts first, so it is the larger one
				return nil, errorf(ErrInvalid, "site prefixes %s and %s of site %q overlap: give only %s, which contains %s", a, b, site, a, b)
			}
		}
	}
	return ps, nil
}

// putSite makes p the connector of site with prefixes (as normSite returned them) in tx,
// replacing the site p connects now; site "" only removes that. It refuses to remove or
// rename a site that routes use, to take a name another peer of the tenant uses for its
// site, and prefixes that overlap those of the tenant's other sites.
func putSite(ctx context.Context, tx *sql.Tx, p Peer, site string, prefixes []netip.Prefix) error {
	if p.Site != "" && p.Site != site {
		if err := siteUnused(ctx, tx, p.TenantID, p.TenantName, p.Site); err != nil {
			return err
		}
		// The cascade removes its prefixes.
		if _, err := tx.ExecContext(ctx, "DELETE FROM sites WHERE peer_id = ?", p.ID); err != nil {
			return fmt.Errorf("store: remove site %s: %w", p.Site, err)
		}
	}
	if site == "" {
		return nil
	}
	var other string
	err := tx.QueryRowContext(ctx, `SELECT p.name FROM sites AS s JOIN peers AS p ON p.id = s.peer_id
		WHERE s.tenant_id = ? AND s.name = ? AND s.peer_id != ?`, p.TenantID, site, p.ID).Scan(&other)
	if err == nil {
		return errorf(ErrExists, "site %q already exists in tenant %q, connected by peer %q: choose another name, or remove the site from that peer first", site, p.TenantName, other)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: read sites: %w", err)
	}
	if err := checkSiteOverlap(ctx, tx, p, site, prefixes); err != nil {
		return err
	}
	if p.Site == site {
		if _, err := tx.ExecContext(ctx, "DELETE FROM site_prefixes WHERE tenant_id = ? AND site = ?", p.TenantID, site); err != nil {
			return fmt.Errorf("store: update site %s: %w", site, err)
		}
	} else if _, err := tx.ExecContext(ctx, "INSERT INTO sites (peer_id, tenant_id, name) VALUES (?, ?, ?)",
		p.ID, p.TenantID, site); err != nil {
		return fmt.Errorf("store: add site %s: %w", site, err)
	}
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO site_prefixes (tenant_id, site, addr, bits) VALUES (?, ?, ?, ?)")
	if err != nil {
		return fmt.Errorf("store: add site %s: %w", site, err)
	}
	defer stmt.Close()
	for _, pfx := range prefixes {
		addr, bits := prefixArgs(pfx)
		if _, err := stmt.ExecContext(ctx, p.TenantID, site, addr, bits); err != nil {
			return fmt.Errorf("store: add site %s prefix %s: %w", site, pfx, err)
		}
	}
	return nil
}

// checkSiteOverlap refuses prefixes for the site of peer p that overlap a prefix of another
// site of p's tenant. The tenant's sites are few (each has at most MaxSitePrefixes), so
// comparing with all of them is cheap next to the write.
func checkSiteOverlap(ctx context.Context, tx *sql.Tx, p Peer, site string, prefixes []netip.Prefix) error {
	rows, err := tx.QueryContext(ctx, `SELECT sp.site, p.name, sp.addr, sp.bits
		FROM site_prefixes AS sp
		JOIN sites AS s ON s.tenant_id = sp.tenant_id AND s.name = sp.site
		JOIN peers AS p ON p.id = s.peer_id
		WHERE sp.tenant_id = ? AND s.peer_id != ?`, p.TenantID, p.ID)
	if err != nil {
		return fmt.Errorf("store: read site prefixes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var otherSite, otherPeer string
		var addr []byte
		var bits int64
		if err := rows.Scan(&otherSite, &otherPeer, &addr, &bits); err != nil {
			return fmt.Errorf("store: read site prefixes: %w", err)
		}
		o, ok := prefixFromRow(addr, bits)
		if !ok {
			return fmt.Errorf("store: read site prefixes: a prefix of site %s in tenant %s is malformed", otherSite, p.TenantName)
		}
		for _, pfx := range prefixes {
			if pfx.Overlaps(o) {
				return errorf(ErrExists, "site prefix %s of site %q overlaps %s of site %q (connector peer %q) in tenant %q: the sites of a tenant may not share addresses; choose another prefix, or change site %q first",
					pfx, site, o, otherSite, otherPeer, p.TenantName, otherSite)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: read site prefixes: %w", err)
	}
	return nil
}

// siteUnused returns an error wrapping ErrInvalid that lists the routes using the site of
// the tenant tenantID (named tenant), or nil when none does.
func siteUnused(ctx context.Context, q querier, tenantID int64, tenant, site string) error {
	rows, err := q.QueryContext(ctx, `SELECT addr, bits FROM routes WHERE tenant_id = ? AND via_site = ?`, tenantID, site)
	if err != nil {
		return fmt.Errorf("store: read routes: %w", err)
	}
	defer rows.Close()
	var used []netip.Prefix
	for rows.Next() {
		var addr []byte
		var bits int64
		if err := rows.Scan(&addr, &bits); err != nil {
			return fmt.Errorf("store: read routes: %w", err)
		}
		pfx, ok := prefixFromRow(addr, bits)
		if !ok {
			return fmt.Errorf("store: read routes: a route of tenant %s is malformed", tenant)
		}
		used = append(used, pfx)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: read routes: %w", err)
	}
	if len(used) == 0 {
		return nil
	}
	slices.SortFunc(used, compareRoutePrefixes)
	cmd := fmt.Sprintf("popgate route remove --tenant %s %s", tenant, used[0])
	if len(used) == 1 {
		return errorf(ErrInvalid, "route %s uses site %q of tenant %q: remove it first (%s)", used[0], site, tenant, cmd)
	}
	return errorf(ErrInvalid, "routes %s use site %q of tenant %q: remove them first (%s, and so on)", formatPrefixes(used, 5), site, tenant, cmd)
}

// touchPeer sets the updated_at of the peer with id to now.
func touchPeer(ctx context.Context, tx *sql.Tx, id int64, now time.Time) error {
	if _, err := tx.ExecContext(ctx, "UPDATE peers SET updated_at = ? WHERE id = ?", micros(now), id); err != nil {
		return fmt.Errorf("store: update peer: %w", err)
	}
	return nil
}

// siteDetail words a peer's site for the audit log: "site office 10.1.0.0/24,10.2.0.0/24" or
// "not a site connector".
func siteDetail(site string, prefixes []netip.Prefix) string {
	if site == "" {
		return "not a site connector"
	}
	ps := make([]string, len(prefixes))
	for i, p := range prefixes {
		ps[i] = p.String()
	}
	return "site " + site + " " + strings.Join(ps, ",")
}
