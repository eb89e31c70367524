package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// dnsZonesVersion is the schema version that added split DNS zones.
const dnsZonesVersion = 14

// Bounds of a tenant's split DNS zones.
const (
	MaxDNSZones       = 64 // zones of one tenant
	MaxDNSZoneServers = 4  // servers of one zone
)

// DNSZone is a split DNS zone of a tenant: its peers' queries for names in it go to its
// servers, through the tenant's own routes.
type DNSZone struct {
	TenantID   int64
	TenantName string
	// Name is lower case without the final dot; "." is every name.
	Name string
	// Servers are tried in order: addresses inside one of the tenant's site routes, or its
	// peers' overlay addresses.
	Servers   []netip.AddrPort
	CreatedAt time.Time
}

// DNSZoneTarget names tenant t's zone: "dnszone:acme/corp.example.com".
func DNSZoneTarget(t, zone string) string { return "dnszone:" + t + "/" + zone }

// CanonicalDNSZone returns zone lower case without the final dot ("." stays "."), or an
// error wrapping ErrInvalid when it is no zone name: labels of a-z, 0-9, '-' and '_', 1 to
// 63 bytes each, 253 bytes in all.
func CanonicalDNSZone(zone string) (string, error) {
	const rule = "give a DNS zone such as corp.example.com, 10.in-addr.arpa or . (every name): labels of a-z, 0-9, '-' and '_' separated by dots"
	z := strings.ToLower(zone)
	if z == "." {
		return z, nil
	}
	z = strings.TrimSuffix(z, ".")
	if zone == "" {
		return "", errorf(ErrInvalid, "DNS zone is missing: %s", rule)
	}
	if z == "" || len(z) > 253 {
		return "", errorf(ErrInvalid, "DNS zone %q is %d bytes: %s, at most 253 bytes", truncate(zone, 80), len(z), rule)
	}
	for _, l := range strings.Split(z, ".") {
		if len(l) == 0 || len(l) > 63 {
			return "", errorf(ErrInvalid, "DNS zone %q has an empty or too long label: %s", truncate(zone, 80), rule)
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", errorf(ErrInvalid, "DNS zone %q has %q in label %q: %s", truncate(zone, 80), string(rune(c)), truncate(l, 70), rule)
			}
		}
	}
	return z, nil
}

// ParseDNSServer reads a split zone's server: an IP address with an optional port (53 when
// none): 10.10.0.53, 10.10.0.53:5353, fd00::53, [fd00::53]:53. The error wraps ErrInvalid.
func ParseDNSServer(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		a, aerr := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
		if aerr != nil {
			return netip.AddrPort{}, errorf(ErrInvalid, "DNS server %q: give an IP address with an optional port, e.g. 10.10.0.53, 10.10.0.53:5353 or [fd00::53]:53 (not a name: finding it would take DNS)", truncate(s, 80))
		}
		ap = netip.AddrPortFrom(a, 53)
	}
	if err := ValidateDNSServer(ap); err != nil {
		return netip.AddrPort{}, err
	}
	return ap, nil
}

// ValidateDNSServer refuses a server address no query can be sent to: a zone, port 0, an
// IPv4-mapped IPv6 address (write IPv4 as IPv4), the unspecified, loopback, link-local or
// multicast addresses. The error wraps ErrInvalid.
func ValidateDNSServer(ap netip.AddrPort) error {
	a := ap.Addr()
	switch {
	case !a.IsValid() || a.Zone() != "":
		return errorf(ErrInvalid, "DNS server %s: give an IP address without a zone", ap)
	case a.Is4In6():
		return errorf(ErrInvalid, "DNS server %s is an IPv4-mapped IPv6 address: write it as %s", ap, netip.AddrPortFrom(a.Unmap(), ap.Port()))
	case ap.Port() == 0:
		return errorf(ErrInvalid, "DNS server %s: port 0 is no port: leave the port out for 53", ap)
	case a.IsUnspecified() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsLinkLocalMulticast():
		return errorf(ErrInvalid, "DNS server %s is not an address a query can be sent to in a site: give the address of a DNS server in one of the tenant's sites", ap)
	}
	return nil
}

// formatServers lists servers for the audit log and messages: "10.10.0.53:53, [fd00::53]:53".
func formatServers(servers []netip.AddrPort) string {
	parts := make([]string, len(servers))
	for i, s := range servers {
		parts[i] = s.String()
	}
	return strings.Join(parts, ", ")
}

// AddDNSZone gives tenant the split zone zone (CanonicalDNSZone), answered by servers in
// order (1 to MaxDNSZoneServers, ValidateDNSServer). Each server must be reachable through
// the tenant's own packet path: inside a route of the tenant via one of its sites (the
// longest route that holds it), or the overlay address of one of its peers. A zone inside
// the tenant's own domain (its peers' names, which popgate answers itself) is refused. The
// error wraps ErrInvalid for a bad zone or server, or a server out of the tenant's reach,
// ErrNotFound when the tenant does not exist, and ErrExists when it has the zone already.
func (s *Store) AddDNSZone(ctx context.Context, tenant, zone string, servers []netip.AddrPort) (DNSZone, error) {
	if err := ValidateTenantName(tenant); err != nil {
		return DNSZone{}, err
	}
	name, err := CanonicalDNSZone(zone)
	if err != nil {
		return DNSZone{}, err
	}
	if len(servers) == 0 || len(servers) > MaxDNSZoneServers {
		return DNSZone{}, errorf(ErrInvalid, "DNS zone %s has %d servers: give 1 to %d", name, len(servers), MaxDNSZoneServers)
	}
	for i, sv := range servers {
		if err := ValidateDNSServer(sv); err != nil {
			return DNSZone{}, err
		}
		for _, o := range servers[:i] {
			if o == sv {
				return DNSZone{}, errorf(ErrInvalid, "DNS server %s is given twice for zone %s: give each once", sv, name)
			}
		}
	}
	z := DNSZone{TenantName: tenant, Name: name, Servers: servers, CreatedAt: fromMicros(micros(s.now()))}
	err = s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		z.TenantID = t.ID
		domain := t.Domain
		if domain == "" {
			domain = DefaultTenantDomain(t.Name)
		}
		if name == domain || strings.HasSuffix(name, "."+domain) {
			return errorf(ErrInvalid, "DNS zone %s lies in %s, tenant %s's own domain, whose names popgate answers itself (its peers): choose a zone outside it", name, domain, tenant)
		}
		if old, err := getDNSZone(ctx, tx, t, name); err == nil {
			return errorf(ErrExists, "tenant %q already has DNS zone %s (servers %s): remove it first to give it other servers", tenant, name, formatServers(old.Servers))
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM dns_zones WHERE tenant_id = ?", t.ID).Scan(&n); err != nil {
			return fmt.Errorf("store: read DNS zones: %w", err)
		}
		if n >= MaxDNSZones {
			return errorf(ErrInvalid, "tenant %q has %d DNS zones, the most it may have: remove one first", tenant, n)
		}
		for _, sv := range servers {
			if err := s.checkDNSServerReach(ctx, tx, t, sv.Addr()); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO dns_zones (tenant_id, zone, created_at) VALUES (?, ?, ?)", t.ID, name, micros(z.CreatedAt)); err != nil {
			return fmt.Errorf("store: add DNS zone %s: %w", name, err)
		}
		for i, sv := range servers {
			if _, err := tx.ExecContext(ctx, "INSERT INTO dns_zone_servers (tenant_id, zone, position, addr, port) VALUES (?, ?, ?, ?, ?)",
				t.ID, name, i, sv.Addr().AsSlice(), int(sv.Port())); err != nil {
				return fmt.Errorf("store: add DNS zone %s: %w", name, err)
			}
		}
		return s.logChange(ctx, tx, tenant, "dns.zone.add", DNSZoneTarget(tenant, name), "servers "+formatServers(servers))
	})
	if err != nil {
		return DNSZone{}, err
	}
	return z, nil
}

// checkDNSServerReach refuses a server address that tenant t's packet path does not lead
// to: one of its peers' overlay addresses, or an address whose longest route of t goes to
// one of its sites.
func (s *Store) checkDNSServerReach(ctx context.Context, q querier, t Tenant, a netip.Addr) error {
	v4, v6 := s.OverlayPrefixes()
	if v4.Contains(a) || v6.Contains(a) {
		var peer string
		var err error
		if a.Is4() {
			err = q.QueryRowContext(ctx, "SELECT name FROM peers WHERE tenant_id = ? AND ipv4 = ?", t.ID, int64(binary.BigEndian.Uint32(a.AsSlice()))).Scan(&peer)
		} else {
			err = q.QueryRowContext(ctx, "SELECT name FROM peers WHERE tenant_id = ? AND ipv6 = ?", t.ID, a.AsSlice()).Scan(&peer)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(ErrInvalid, "DNS server %s is in the overlay but is no peer of %s's: give the address of a DNS server in one of %s's sites, or of one of its peers ('popgate peer list --tenant %s')", a, t.Name, t.Name, t.Name)
		}
		if err != nil {
			return fmt.Errorf("store: read peers: %w", err)
		}
		return nil
	}
	rs, err := queryRoutes(ctx, q, "WHERE r.tenant_id = ? ", t.ID)
	if err != nil {
		return err
	}
	for _, r := range rs { // longest first
		if !r.Prefix.Contains(a) {
			continue
		}
		if strings.HasPrefix(r.Via, ViaSitePrefix) {
			return nil
		}
		return errorf(ErrInvalid, "%s is routed via %s (%s's route %s), not to one of its sites: route a prefix that holds it to the site with the DNS server first ('popgate route add --tenant %s --via site:NAME PREFIX')", a, r.Via, t.Name, r.Prefix, t.Name)
	}
	return errorf(ErrInvalid, "%s is in none of %s's routes: add a route for it first ('popgate route add --tenant %s --via site:NAME PREFIX')", a, t.Name, t.Name)
}

// RemoveDNSZone removes tenant's split zone and returns it as it was. The error wraps
// ErrInvalid for a bad zone name and ErrNotFound when the tenant or the zone does not exist.
func (s *Store) RemoveDNSZone(ctx context.Context, tenant, zone string) (DNSZone, error) {
	name, err := CanonicalDNSZone(zone)
	if err != nil {
		return DNSZone{}, err
	}
	var z DNSZone
	err = s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		if z, err = getDNSZone(ctx, tx, t, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM dns_zones WHERE tenant_id = ? AND zone = ?", t.ID, name); err != nil {
			return fmt.Errorf("store: remove DNS zone %s: %w", name, err)
		}
		return s.logChange(ctx, tx, tenant, "dns.zone.remove", DNSZoneTarget(tenant, name), "was servers "+formatServers(z.Servers))
	})
	if err != nil {
		return DNSZone{}, err
	}
	return z, nil
}

// DNSZones returns the split zones of tenant, or of every tenant when tenant is "", ordered
// by tenant name, then zone. The error wraps ErrNotFound when tenant does not exist.
func (s *Store) DNSZones(ctx context.Context, tenant string) ([]DNSZone, error) {
	var zs []DNSZone
	err := s.read(ctx, func(q querier) error {
		var err error
		if tenant == "" {
			zs, err = queryDNSZones(ctx, q, "")
			return err
		}
		if _, err := getTenant(ctx, q, tenant); err != nil {
			return err
		}
		zs, err = queryDNSZones(ctx, q, "WHERE t.name = ? ", tenant)
		return err
	})
	if err != nil {
		return nil, err
	}
	return zs, nil
}

// getDNSZone returns tenant t's zone name; the error wraps ErrNotFound.
func getDNSZone(ctx context.Context, q querier, t Tenant, name string) (DNSZone, error) {
	zs, err := queryDNSZones(ctx, q, "WHERE z.tenant_id = ? AND z.zone = ? ", t.ID, name)
	if err != nil {
		return DNSZone{}, err
	}
	if len(zs) == 0 {
		return DNSZone{}, errorf(ErrNotFound, "tenant %q has no DNS zone %s: list its zones with 'popgate dns zone list --tenant %s'", t.Name, name, t.Name)
	}
	return zs[0], nil
}

// queryDNSZones returns the zones where selects (on z, dns_zones, and t, tenants) with their
// servers, by tenant name and zone; an empty list, not nil, when none.
func queryDNSZones(ctx context.Context, q querier, where string, args ...any) ([]DNSZone, error) {
	rows, err := q.QueryContext(ctx, `SELECT z.tenant_id, t.name, z.zone, z.created_at, s.addr, s.port
		FROM dns_zones AS z JOIN tenants AS t ON t.id = z.tenant_id
		LEFT JOIN dns_zone_servers AS s ON s.tenant_id = z.tenant_id AND s.zone = z.zone `+where+
		"ORDER BY t.name, z.zone, s.position", args...)
	if err != nil {
		return nil, fmt.Errorf("store: read DNS zones: %w", err)
	}
	defer rows.Close()
	zs := []DNSZone{}
	for rows.Next() {
		var z DNSZone
		var created int64
		var addr []byte
		var port sql.NullInt64
		if err := rows.Scan(&z.TenantID, &z.TenantName, &z.Name, &created, &addr, &port); err != nil {
			return nil, fmt.Errorf("store: read DNS zones: %w", err)
		}
		if n := len(zs); n == 0 || zs[n-1].TenantID != z.TenantID || zs[n-1].Name != z.Name {
			z.CreatedAt = fromMicros(created)
			zs = append(zs, z)
		}
		if a, ok := netip.AddrFromSlice(addr); ok && port.Valid {
			last := &zs[len(zs)-1]
			last.Servers = append(last.Servers, netip.AddrPortFrom(a, uint16(port.Int64)))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read DNS zones: %w", err)
	}
	return zs, nil
}
