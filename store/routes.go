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

// AddRoute adds a route to tenant: traffic for prefix goes via the exit named by via, either
// ViaInternet or "site:NAME" for one of the tenant's sites. prefix must be masked
// (10.10.0.0/24, not 10.10.0.1/24) and may not lie inside the overlay networks (see
// OverlayPrefixes). The error wraps ErrInvalid for a bad prefix or via, ErrNotFound when the
// tenant or the site does not exist, and ErrExists when the tenant has a route for prefix.
func (s *Store) AddRoute(ctx context.Context, tenant string, prefix netip.Prefix, via string) (Route, error) {
	if err := ValidateTenantName(tenant); err != nil {
		return Route{}, err
	}
	if err := s.checkRoutePrefix(prefix); err != nil {
		return Route{}, err
	}
	site, err := parseVia(via)
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
		if site != "" {
			var ok bool
			if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM sites WHERE tenant_id = ? AND name = ?)",
				t.ID, site).Scan(&ok); err != nil {
				return fmt.Errorf("store: read sites: %w", err)
			}
			if !ok {
				return errorf(ErrNotFound, "site %q not found in tenant %q: make one of its peers the site's connector first, or route via %s", site, tenant, ViaInternet)
			}
		}
		if old, err := getRoute(ctx, tx, t, prefix); err == nil {
			return errorf(ErrExists, "tenant %q already has a route for %s (via %s): remove it first to send %s elsewhere", tenant, prefix, old.Via, prefix)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := insertRoute(ctx, tx, t.ID, prefix, site, r.CreatedAt); err != nil {
			return err
		}
		return s.logChange(ctx, tx, tenant, "route.add", RouteTarget(tenant, prefix), "via "+via)
	})
	if err != nil {
		return Route{}, err
	}
	return r, nil
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

// parseVia parses the exit of a route: ViaInternet gives site "", "site:NAME" gives NAME.
// Nothing else is accepted, not even other spellings, so that a parsed via prints back as
// it was given. The error wraps ErrInvalid.
func parseVia(via string) (site string, err error) {
	if via == ViaInternet {
		return "", nil
	}
	name, ok := strings.CutPrefix(via, ViaSitePrefix)
	if !ok {
		return "", errorf(ErrInvalid, "route via %q is invalid: use %q or %q followed by the name of one of the tenant's sites, e.g. %q", truncate(via, 80), ViaInternet, ViaSitePrefix, ViaSitePrefix+"office")
	}
	if err := ValidateSiteName(name); err != nil {
		return "", errorf(ErrInvalid, "route via %q is invalid: %v", truncate(via, 80), err)
	}
	return name, nil
}

// formatVia is the inverse of parseVia.
func formatVia(site string) string {
	if site == "" {
		return ViaInternet
	}
	return ViaSitePrefix + site
}

// compareRoutePrefixes orders prefixes as ListRoutes does: longest first, then by address
// with IPv4 before IPv6.
func compareRoutePrefixes(a, b netip.Prefix) int {
	return cmp.Or(cmp.Compare(b.Bits(), a.Bits()), a.Addr().Compare(b.Addr()))
}

// insertRoute adds the route prefix → site ("" for the internet) to the tenant with id.
func insertRoute(ctx context.Context, tx *sql.Tx, tenantID int64, prefix netip.Prefix, site string, created time.Time) error {
	kind, viaSite := "internet", any(nil)
	if site != "" {
		kind, viaSite = "site", site
	}
	addr, bits := prefixArgs(prefix)
	if _, err := tx.ExecContext(ctx, `INSERT INTO routes (tenant_id, addr, bits, via_kind, via_site, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, tenantID, addr, bits, kind, viaSite, micros(created)); err != nil {
		return fmt.Errorf("store: add route %s: %w", prefix, err)
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
const routeSelect = `SELECT r.tenant_id, t.name, r.addr, r.bits, r.via_site, r.created_at
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
	for rows.Next() {
		var r Route
		var addr []byte
		var bits, created int64
		var site sql.NullString
		if err := rows.Scan(&r.TenantID, &r.TenantName, &addr, &bits, &site, &created); err != nil {
			return nil, fmt.Errorf("store: read routes: %w", err)
		}
		var ok bool
		if r.Prefix, ok = prefixFromRow(addr, bits); !ok {
			return nil, fmt.Errorf("store: read routes: a route of tenant %s is malformed", r.TenantName)
		}
		r.Via = formatVia(site.String)
		r.CreatedAt = fromMicros(created)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read routes: %w", err)
	}
	return rs, nil
}
