package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

func tenantNotFound(name string) error {
	return errorf(ErrNotFound, "tenant %q not found: list tenants with 'popgate tenant list'", truncate(name, 80))
}

// AddTenant creates the tenant name with the default routes 0.0.0.0/0 and ::/0 via the
// internet and split tunnel off. The error wraps ErrInvalid for a bad name and ErrExists
// when the name is taken.
func (s *Store) AddTenant(ctx context.Context, name string) (Tenant, error) {
	if err := ValidateTenantName(name); err != nil {
		return Tenant{}, err
	}
	t := Tenant{Name: name, CreatedAt: fromMicros(micros(s.now()))}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := getTenant(ctx, tx, name); err == nil {
			return errorf(ErrExists, "tenant %q already exists: choose another name", name)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO tenants (name, created_at) VALUES (?, ?)",
			name, micros(t.CreatedAt))
		if err != nil {
			return fmt.Errorf("store: add tenant %s: %w", name, err)
		}
		t.ID, err = res.LastInsertId()
		if err != nil {
			return fmt.Errorf("store: add tenant %s: %w", name, err)
		}
		for _, p := range defaultRoutes() {
			if err := insertRoute(ctx, tx, t.ID, p, Via{Internet: true}, nil, t.CreatedAt); err != nil {
				return err
			}
		}
		return s.logChange(ctx, tx, name, "tenant.add", TenantTarget(name), "")
	})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// Tenant returns the tenant name; the error wraps ErrNotFound when there is none.
func (s *Store) Tenant(ctx context.Context, name string) (Tenant, error) {
	return getTenant(ctx, s.db, name)
}

// ListTenants returns all tenants ordered by name.
func (s *Store) ListTenants(ctx context.Context) ([]Tenant, error) {
	return listTenants(ctx, s.db)
}

func listTenants(ctx context.Context, q querier) ([]Tenant, error) {
	rows, err := q.QueryContext(ctx, "SELECT id, name, created_at, split_tunnel, max_flows_per_peer, max_flows, coalesce(domain, '') FROM tenants ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("store: list tenants: %w", err)
	}
	defer rows.Close()
	var ts []Tenant
	for rows.Next() {
		var t Tenant
		var created int64
		var perPeer, flows sql.NullInt64
		if err := rows.Scan(&t.ID, &t.Name, &created, &t.SplitTunnel, &perPeer, &flows, &t.Domain); err != nil {
			return nil, fmt.Errorf("store: list tenants: %w", err)
		}
		t.CreatedAt = fromMicros(created)
		t.MaxFlowsPerPeer, t.MaxFlows = int(perPeer.Int64), int(flows.Int64)
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list tenants: %w", err)
	}
	return ts, nil
}

// SetTenantSplitTunnel turns split tunnel on or off for tenant and returns the tenant as
// stored. Setting the state it already has changes nothing. The error wraps ErrNotFound when
// there is no such tenant.
func (s *Store) SetTenantSplitTunnel(ctx context.Context, name string, on bool) (Tenant, error) {
	var t Tenant
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if t, err = getTenant(ctx, tx, name); err != nil || t.SplitTunnel == on {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE tenants SET split_tunnel = ? WHERE id = ?", on, t.ID); err != nil {
			return fmt.Errorf("store: update tenant %s: %w", name, err)
		}
		t.SplitTunnel = on
		return s.logChange(ctx, tx, name, "tenant.update", TenantTarget(name), "split tunnel "+onOff(on))
	})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// SetTenantDomain sets the DNS domain of tenant's peer names (ValidateDomain); "" returns
// it to the default, <tenant>.internal. The error wraps ErrNotFound for an unknown tenant,
// ErrInvalid for a bad domain, ErrExists for another tenant's.
func (s *Store) SetTenantDomain(ctx context.Context, name, domain string) (Tenant, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == DefaultTenantDomain(name) {
		domain = ""
	}
	if domain != "" {
		if err := ValidateDomain(domain); err != nil {
			return Tenant{}, err
		}
	}
	var t Tenant
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if t, err = getTenant(ctx, tx, name); err != nil || t.Domain == domain {
			return err
		}
		if domain != "" {
			var other string
			err := tx.QueryRowContext(ctx, `SELECT name FROM tenants WHERE id != ? AND (domain = ? OR ? = name || '.internal')`, t.ID, domain, domain).Scan(&other)
			if err == nil {
				return errorf(ErrExists, "the domain %s is another tenant's: choose another", domain)
			} else if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("store: read tenants: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE tenants SET domain = ? WHERE id = ?", nullIfEmpty(domain), t.ID); err != nil {
			return fmt.Errorf("store: update tenant %s: %w", name, err)
		}
		t.Domain = domain
		shown := domain
		if shown == "" {
			shown = DefaultTenantDomain(name) + " (the default)"
		}
		return s.logChange(ctx, tx, name, "tenant.update", TenantTarget(name), "DNS domain "+shown)
	})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// DefaultTenantDomain is the DNS domain of a tenant that set none: <tenant>.internal.
func DefaultTenantDomain(tenant string) string { return tenant + ".internal" }

// ValidateDomain checks a tenant's DNS domain: lower-case labels of a-z, 0-9 and '-' (not at
// either end), 1-63 bytes each, at least two, at most 253 bytes in all.
func ValidateDomain(domain string) error {
	const rule = "use a DNS name such as corp.example.com: labels of a-z, 0-9 and '-', not starting or ending with '-', separated by dots"
	if len(domain) == 0 || len(domain) > 253 {
		return errorf(ErrInvalid, "domain %q is %d bytes: %s, at most 253 bytes", truncate(domain, 80), len(domain), rule)
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return errorf(ErrInvalid, "domain %q has one label: %s", truncate(domain, 80), rule)
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return errorf(ErrInvalid, "domain %q has a bad label %q: %s", truncate(domain, 80), truncate(l, 70), rule)
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return errorf(ErrInvalid, "domain %q has %q in label %q: %s", truncate(domain, 80), string(rune(c)), truncate(l, 70), rule)
			}
		}
	}
	return nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// TenantLimits changes a tenant's flow bounds: nil leaves one as it is, 0 returns it to
// the node's default.
type TenantLimits struct {
	MaxFlowsPerPeer, MaxFlows *int
}

// SetTenantLimits changes the flow bounds of tenant and returns the tenant as stored. The
// error wraps ErrInvalid for a bound outside 0 (the default) to MaxFlowLimit, and ErrNotFound
// when there is no such tenant.
func (s *Store) SetTenantLimits(ctx context.Context, name string, l TenantLimits) (Tenant, error) {
	for _, b := range []struct {
		flag string
		v    *int
	}{{"max flows per peer", l.MaxFlowsPerPeer}, {"max flows", l.MaxFlows}} {
		if b.v != nil && (*b.v < 0 || *b.v > MaxFlowLimit) {
			return Tenant{}, errorf(ErrInvalid, "%s %d is out of range: use 1 to %d, or 0 for the node's default", b.flag, *b.v, MaxFlowLimit)
		}
	}
	var t Tenant
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if t, err = getTenant(ctx, tx, name); err != nil {
			return err
		}
		if l.MaxFlowsPerPeer != nil {
			t.MaxFlowsPerPeer = *l.MaxFlowsPerPeer
		}
		if l.MaxFlows != nil {
			t.MaxFlows = *l.MaxFlows
		}
		nullIfZero := func(v int) any {
			if v == 0 {
				return nil
			}
			return v
		}
		res, err := tx.ExecContext(ctx, "UPDATE tenants SET max_flows_per_peer = ?, max_flows = ? WHERE id = ? AND (max_flows_per_peer IS NOT ? OR max_flows IS NOT ?)",
			nullIfZero(t.MaxFlowsPerPeer), nullIfZero(t.MaxFlows), t.ID, nullIfZero(t.MaxFlowsPerPeer), nullIfZero(t.MaxFlows))
		if err != nil {
			return fmt.Errorf("store: update tenant %s: %w", name, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // unchanged: nothing to record
		}
		bound := func(v int) string {
			if v == 0 {
				return "default"
			}
			return strconv.Itoa(v)
		}
		return s.logChange(ctx, tx, name, "tenant.update", TenantTarget(name),
			fmt.Sprintf("max flows per peer %s, max flows %s", bound(t.MaxFlowsPerPeer), bound(t.MaxFlows)))
	})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// RemoveTenant deletes the tenant name together with its routes and policy. It refuses
// (ErrInvalid) while the tenant has peers; the error wraps ErrNotFound when there is no such
// tenant.
func (s *Store) RemoveTenant(ctx context.Context, name string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, name)
		if err != nil {
			return err
		}
		n, err := countPeers(ctx, tx, t.ID)
		if err != nil {
			return err
		}
		if n > 0 {
			return errorf(ErrInvalid, "tenant %s still has %d %s: remove %s first", name, n, plural(n, "peer", "peers"), plural(n, "it", "them"))
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM tenants WHERE id = ?", t.ID); err != nil {
			return fmt.Errorf("store: remove tenant %s: %w", name, err)
		}
		return s.logChange(ctx, tx, name, "tenant.remove", TenantTarget(name), "")
	})
}

// CountPeers returns the number of peers of tenant, or of all tenants when tenant is "". The
// error wraps ErrNotFound when tenant does not exist.
func (s *Store) CountPeers(ctx context.Context, tenant string) (int, error) {
	if tenant == "" {
		var n int
		if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM peers").Scan(&n); err != nil {
			return 0, fmt.Errorf("store: count peers: %w", err)
		}
		return n, nil
	}
	t, err := getTenant(ctx, s.db, tenant)
	if err != nil {
		return 0, err
	}
	return countPeers(ctx, s.db, t.ID)
}

// getTenant returns the tenant name; the error wraps ErrNotFound when there is none.
func getTenant(ctx context.Context, q querier, name string) (Tenant, error) {
	t := Tenant{Name: name}
	var created int64
	var perPeer, flows sql.NullInt64
	err := q.QueryRowContext(ctx, "SELECT id, created_at, split_tunnel, max_flows_per_peer, max_flows, coalesce(domain, '') FROM tenants WHERE name = ?", name).Scan(&t.ID, &created, &t.SplitTunnel, &perPeer, &flows, &t.Domain)
	if errors.Is(err, sql.ErrNoRows) {
		return Tenant{}, tenantNotFound(name)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("store: read tenant %s: %w", name, err)
	}
	t.CreatedAt = fromMicros(created)
	t.MaxFlowsPerPeer, t.MaxFlows = int(perPeer.Int64), int(flows.Int64)
	return t, nil
}

// countPeers returns the number of peers of the tenant with id tenantID.
func countPeers(ctx context.Context, q querier, tenantID int64) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM peers WHERE tenant_id = ?", tenantID).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count peers: %w", err)
	}
	return n, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// onOff words a switch for the audit log.
func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
