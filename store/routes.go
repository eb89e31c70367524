package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// defaultRoutes returns the routes every tenant starts with, both via the internet.
func defaultRoutes() [2]netip.Prefix {
	return [2]netip.Prefix{
		netip.PrefixFrom(netip.IPv4Unspecified(), 0),
		netip.PrefixFrom(netip.IPv6Unspecified(), 0),
	}
}

// AddRoute adds a route to tenant: traffic for prefix goes via the exit named by via
// (ParseVia): ViaInternet, "site:NAME" for one of the tenant's sites, or "exit:x1,exit:x2",
// joined nodes with the exit role in order of preference. prefix must be masked
// (10.10.0.0/24, not 10.10.0.1/24) and may not lie inside the overlay networks (see
// OverlayPrefixes). The error wraps ErrInvalid for a bad prefix or via or a node without the
// exit role, ErrNotFound when the tenant, the site or an exit node does not exist, and
// ErrExists when the tenant has a route for prefix.
func (s *Store) AddRoute(ctx context.Context, tenant string, prefix netip.Prefix, via string) (Route, error) {
	if err := ValidateTenantName(tenant); err != nil {
		return Route{}, err
	}
	if err := s.checkRoutePrefix(prefix); err != nil {
		return Route{}, err
	}
	v, err := ParseVia(via)
	if err != nil {
		return Route{}, err
	}
	r := Route{TenantName: tenant, Prefix: prefix, Via: via, CreatedAt: fromMicros(micros(s.now()))}
	err = s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		r.TenantID = t.ID
		if v.Site != "" {
			var ok bool
			if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM sites WHERE tenant_id = ? AND name = ?)",
				t.ID, v.Site).Scan(&ok); err != nil {
				return fmt.Errorf("store: read sites: %w", err)
			}
			if !ok {
				return errorf(ErrNotFound, "site %q not found in tenant %q: make one of its peers the site's connector first, or route via %s", v.Site, tenant, ViaInternet)
			}
		}
		exits, err := exitNodes(ctx, tx, v.Exits)
		if err != nil {
			return err
		}
		if old, err := getRoute(ctx, tx, t, prefix); err == nil {
			return errorf(ErrExists, "tenant %q already has a route for %s (via %s): remove it first to send %s elsewhere", tenant, prefix, old.Via, prefix)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := insertRoute(ctx, tx, t.ID, prefix, v, exits, r.CreatedAt); err != nil {
			return err
		}
		return s.logChange(ctx, tx, tenant, "route.add", RouteTarget(tenant, prefix), "via "+via)
	})
	if err != nil {
		return Route{}, err
	}
	return r, nil
}

// exitNodes returns the IDs of the nodes named, which must have joined with the exit role.
func exitNodes(ctx context.Context, q querier, names []string) ([]int64, error) {
	ids := make([]int64, 0, len(names))
	for _, name := range names {
		var id int64
		var roles string
		err := q.QueryRowContext(ctx, "SELECT id, roles FROM nodes WHERE name = ?", name).Scan(&id, &roles)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errorf(ErrNotFound, "exit node %q not found: list the nodes with 'popgate node list', or join an exit node of that name first ('popgate node token --roles exit --name %s')", name, name)
		}
		if err != nil {
			return nil, fmt.Errorf("store: read nodes: %w", err)
		}
		if !strings.Contains(roles, RoleExit) {
			return nil, errorf(ErrInvalid, "node %q is not an exit (its roles: %s): route via a node that joined with the exit role ('popgate node list' shows roles; 'popgate node token --roles exit' makes one)", name, roles)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// RemoveRoute deletes the route for prefix from tenant and returns it as it was. The default
// routes may be removed too: then the tenant reaches only what its other routes name. The
// error wraps ErrInvalid for a prefix that is not masked and ErrNotFound when the tenant or
// the route does not exist.
func (s *Store) RemoveRoute(ctx context.Context, tenant string, prefix netip.Prefix) (Route, error) {
	if err := prefixFormatError("route prefix", prefix); err != nil {
		return Route{}, err
	}
	var r Route
	err := s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		if r, err = getRoute(ctx, tx, t, prefix); err != nil {
			return err
		}
		addr, bits := prefixArgs(prefix)
		if _, err := tx.ExecContext(ctx, "DELETE FROM routes WHERE tenant_id = ? AND addr = ? AND bits = ?",
			t.ID, addr, bits); err != nil {
			return fmt.Errorf("store: remove route %s: %w", prefix, err)
		}
		return s.logChange(ctx, tx, tenant, "route.remove", RouteTarget(tenant, prefix), "was via "+r.Via)
	})
	if err != nil {
		return Route{}, err
	}
	return r, nil
}

// ListRoutes returns the routes of tenant, or of all tenants when tenant is "", ordered by
// tenant name, then prefix length from the longest, then address (IPv4 first): the order in
// which a longest-prefix match tries them. The error wraps ErrNotFound when tenant does not
// exist.
func (s *Store) ListRoutes(ctx context.Context, tenant string) ([]Route, error) {
	var rs []Route
	err := s.read(ctx, func(q querier) error {
		var err error
		if tenant == "" {
			rs, err = queryRoutes(ctx, q, "")
			return err
		}
		if _, err := getTenant(ctx, q, tenant); err != nil {
			return err
		}
		rs, err = queryRoutes(ctx, q, "WHERE t.name = ? ", tenant)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// checkRoutePrefix refuses a prefix that is malformed or lies inside an overlay network,
// where the peers' own addresses are.
func (s *Store) checkRoutePrefix(p netip.Prefix) error {
	if err := prefixFormatError("route prefix", p); err != nil {
		return err
	}
	v4, v6 := s.OverlayPrefixes()
	for _, o := range []netip.Prefix{v4, v6} {
		if p.Bits() >= o.Bits() && o.Contains(p.Addr()) {
			return errorf(ErrInvalid, "route prefix %s lies inside the overlay network %s, whose addresses belong to peers: route a prefix outside it", p, o)
		}
	}
	return nil
}

// compareRoutePrefixes orders prefixes as ListRoutes does: longest first, then by address
// with IPv4 before IPv6.
func compareRoutePrefixes(a, b netip.Prefix) int {
	return cmp.Or(cmp.Compare(b.Bits(), a.Bits()), a.Addr().Compare(b.Addr()))
}

// insertRoute adds the route prefix → v to the tenant with id; exits are v.Exits' node IDs.
func insertRoute(ctx context.Context, tx *sql.Tx, tenantID int64, prefix netip.Prefix, v Via, exits []int64, created time.Time) error {
	kind, viaSite := "internet", any(nil)
	switch {
	case v.Site != "":
		kind, viaSite = "site", v.Site
	case len(exits) > 0:
		kind = "exit"
	}
	addr, bits := prefixArgs(prefix)
	if _, err := tx.ExecContext(ctx, `INSERT INTO routes (tenant_id, addr, bits, via_kind, via_site, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, tenantID, addr, bits, kind, viaSite, micros(created)); err != nil {
		return fmt.Errorf("store: add route %s: %w", prefix, err)
	}
	for i, id := range exits {
		if _, err := tx.ExecContext(ctx, `INSERT INTO route_exits (tenant_id, addr, bits, position, node_id) VALUES (?, ?, ?, ?, ?)`,
			tenantID, addr, bits, i, id); err != nil {
			return fmt.Errorf("store: add route %s: %w", prefix, err)
		}
	}
	return nil
}

// getRoute returns the route for prefix of tenant t; the error wraps ErrNotFound.
func getRoute(ctx context.Context, q querier, t Tenant, prefix netip.Prefix) (Route, error) {
	addr, bits := prefixArgs(prefix)
	rs, err := queryRoutes(ctx, q, "WHERE r.tenant_id = ? AND r.addr = ? AND r.bits = ? ", t.ID, addr, bits)
	if err != nil {
		return Route{}, err
	}
	if len(rs) == 0 {
		return Route{}, errorf(ErrNotFound, "tenant %q has no route for %s: list its routes with 'popgate route list --tenant %s'", t.Name, prefix, t.Name)
	}
	return rs[0], nil
}

// routeSelect is the start of every route query; callers append a WHERE clause.
const routeSelect = `SELECT r.tenant_id, t.name, r.addr, r.bits, r.via_kind, r.via_site, r.created_at
	FROM routes AS r JOIN tenants AS t ON t.id = r.tenant_id `

// queryRoutes runs routeSelect+where in ListRoutes' order. It returns an empty list, not
// nil, when nothing matches.
func queryRoutes(ctx context.Context, q querier, where string, args ...any) ([]Route, error) {
	rows, err := q.QueryContext(ctx, routeSelect+where+"ORDER BY t.name, r.bits DESC, length(r.addr), r.addr", args...)
	if err != nil {
		return nil, fmt.Errorf("store: read routes: %w", err)
	}
	defer rows.Close()
	rs := []Route{}
	viaExits := map[routeRow]int{} // routes via exits: index in rs
	for rows.Next() {
		var r Route
		var addr []byte
		var bits, created int64
		var kind string
		var site sql.NullString
		if err := rows.Scan(&r.TenantID, &r.TenantName, &addr, &bits, &kind, &site, &created); err != nil {
			return nil, fmt.Errorf("store: read routes: %w", err)
		}
		var ok bool
		if r.Prefix, ok = prefixFromRow(addr, bits); !ok {
			return nil, fmt.Errorf("store: read routes: a route of tenant %s is malformed", r.TenantName)
		}
		switch kind {
		case "site":
			r.Via = ViaSitePrefix + site.String
		case "exit":
			viaExits[routeRow{r.TenantID, string(addr), bits}] = len(rs)
		default:
			r.Via = ViaInternet
		}
		r.CreatedAt = fromMicros(created)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read routes: %w", err)
	}
	rows.Close()
	if len(viaExits) == 0 {
		return rs, nil
	}
	// One read of every route's exits: fewer round trips than one per route, and there are
	// few routes via exits.
	erows, err := q.QueryContext(ctx, `SELECT e.tenant_id, e.addr, e.bits, n.name FROM route_exits AS e
		JOIN nodes AS n ON n.id = e.node_id ORDER BY e.tenant_id, e.addr, e.bits, e.position`)
	if err != nil {
		return nil, fmt.Errorf("store: read route exits: %w", err)
	}
	defer erows.Close()
	exits := make(map[int]*Via, len(viaExits))
	for erows.Next() {
		var k routeRow
		var addr []byte
		var name string
		if err := erows.Scan(&k.tenant, &addr, &k.bits, &name); err != nil {
			return nil, fmt.Errorf("store: read route exits: %w", err)
		}
		k.addr = string(addr)
		i, ok := viaExits[k]
		if !ok {
			continue
		}
		if exits[i] == nil {
			exits[i] = &Via{}
		}
		exits[i].Exits = append(exits[i].Exits, name)
	}
	if err := erows.Err(); err != nil {
		return nil, fmt.Errorf("store: read route exits: %w", err)
	}
	for _, i := range viaExits {
		if exits[i] == nil {
			return nil, fmt.Errorf("store: read routes: route %s of tenant %s goes via exits but lists none", rs[i].Prefix, rs[i].TenantName)
		}
		rs[i].Via = exits[i].String()
	}
	return rs, nil
}

// routeRow is a route's primary key.
type routeRow struct {
	tenant int64
	addr   string
	bits   int64
}
