package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Region is a named location with a public endpoint and a WireGuard key of its own, served
// by one or more PoPs. Client configs of a region carry its Endpoint and PublicKey.
type Region struct {
	ID   int64
	Name string
	// Endpoint is the host:port clients of the region connect to. The home region's is
	// serve's --public-endpoint, recorded when the controller starts.
	Endpoint string
	// PublicKey is the public half of the region's key; the node key's for the home region.
	PublicKey Key
	// Home is true for the controller's own region, whose key is the node key.
	Home      bool
	CreatedAt time.Time
	// Tenants are the tenants limited to a set of regions that includes this one, sorted;
	// tenants allowed everywhere are not listed.
	Tenants []string
}

// regionsVersion is the schema version that added regions.
const regionsVersion = 7

// adRegionPrefix starts the additional data of a region's sealed key; the name follows.
const adRegionPrefix = "popgate region private key v1\x00"

func regionAD(name string) []byte { return append([]byte(adRegionPrefix), name...) }

// regionRule is the rule of region names, the same as serve's --region.
const regionRule = "use 1-32 lower-case letters, digits and '-', starting with a letter or digit, e.g. fra or us-east-1"

// maxEndpoint bounds a region endpoint: a DNS name of 253 characters, brackets, ':' and a port.
const maxEndpoint = 261

// RegionTarget names region r in the audit log: "region:fra".
func RegionTarget(r string) string { return "region:" + r }

// ValidateRegionName reports whether name is a valid region name: 1-32 characters of a-z,
// 0-9 and '-', not starting with '-' (a DNS label). The error wraps ErrInvalid.
func ValidateRegionName(name string) error {
	if problem := nameProblem(name, maxTenantName, isTenantNameByte); problem != "" {
		return errorf(ErrInvalid, "region name %q is invalid: %s; %s", truncate(name, 80), problem, regionRule)
	}
	return nil
}

// ValidateEndpoint checks a host:port that clients connect to: a DNS name or an IP address
// and a port in 1-65535. The error wraps ErrInvalid.
func ValidateEndpoint(ep string) error {
	host, port, err := net.SplitHostPort(ep)
	if err != nil || host == "" {
		return errorf(ErrInvalid, "endpoint %q is not host:port: use e.g. vpn.example.com:51820 or 203.0.113.7:51820 ([v6]:port for IPv6)", truncate(ep, 80))
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || port[0] == '0' || port[0] == '+' {
		return errorf(ErrInvalid, "endpoint %q has a bad port: use 1-65535", truncate(ep, 80))
	}
	if len(ep) > maxEndpoint || strings.ContainsAny(host, " /\\,=\"'") || strings.IndexFunc(host, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return errorf(ErrInvalid, "endpoint %q has a bad host: use a DNS name (at most 253 characters, ASCII) or an IP address", truncate(ep, 80))
	}
	return nil
}

func regionNotFound(name string) error {
	return errorf(ErrNotFound, "region %q not found: list regions with 'popgate region list'", truncate(name, 80))
}

// AddRegion creates the region name with clients' endpoint and a new WireGuard key, sealed
// with the key file's secret and bound to the name. The error wraps ErrInvalid for a bad
// name or endpoint and ErrExists when the name is taken.
func (s *Store) AddRegion(ctx context.Context, name, endpoint string) (Region, error) {
	if err := ValidateRegionName(name); err != nil {
		return Region{}, err
	}
	if err := ValidateEndpoint(endpoint); err != nil {
		return Region{}, err
	}
	priv, err := GeneratePrivateKey()
	if err != nil {
		return Region{}, err
	}
	sealed, err := s.sealKey(priv, regionAD(name))
	if err != nil {
		return Region{}, err
	}
	r := Region{Name: name, Endpoint: endpoint, PublicKey: priv.PublicKey(), CreatedAt: fromMicros(micros(s.now()))}
	clear(priv[:])
	err = s.write(ctx, func(tx *sql.Tx) error {
		if _, err := s.getRegion(ctx, tx, name); err == nil {
			return errorf(ErrExists, "region %q already exists: choose another name, or change its endpoint with 'popgate region set %s --endpoint HOST:PORT'", name, name)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO regions (name, endpoint, private_key_enc, public_key, created_at) VALUES (?, ?, ?, ?, ?)",
			name, endpoint, sealed, r.PublicKey[:], micros(r.CreatedAt))
		if err != nil {
			return fmt.Errorf("store: add region %s: %w", name, err)
		}
		if r.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: add region %s: %w", name, err)
		}
		return s.logChange(ctx, tx, "", "region.add", RegionTarget(name), "endpoint "+endpoint+"; key "+r.PublicKey.String())
	})
	if err != nil {
		return Region{}, err
	}
	return r, nil
}

// EnsureHomeRegion makes name the controller's own region, whose key is the node key, with
// endpoint (serve's --public-endpoint), and returns it. It creates the region when there is
// none (a new database, or one from before regions), renames it when serve's --region
// changed, and records a changed endpoint; when nothing changed it writes nothing. Like the
// node key made at Open, this is the node's own set-up, which no admin did: the generation
// advances, the audit log records nothing. The error
// wraps ErrInvalid for a bad name or endpoint, and ErrExists when another region (with a key
// of its own) has the name.
func (s *Store) EnsureHomeRegion(ctx context.Context, name, endpoint string) (Region, error) {
	if err := ValidateRegionName(name); err != nil {
		return Region{}, err
	}
	if err := ValidateEndpoint(endpoint); err != nil {
		return Region{}, err
	}
	var r Region
	err := s.writeTx(ctx, kindNode, func(tx *sql.Tx) error {
		home, err := s.homeRegion(ctx, tx)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if other, err := s.getRegion(ctx, tx, name); err == nil && !other.Home {
			return errorf(ErrExists, "region %q has a key of its own, so it cannot be this controller's region (whose key is the node key): start serve with another --region, or remove region %s first", name, name)
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if home.ID == 0 {
			r = Region{Name: name, Endpoint: endpoint, PublicKey: s.nodePub, Home: true, CreatedAt: fromMicros(micros(s.now()))}
			res, err := tx.ExecContext(ctx, "INSERT INTO regions (name, endpoint, created_at) VALUES (?, ?, ?)", name, endpoint, micros(r.CreatedAt))
			if err != nil {
				return fmt.Errorf("store: add region %s: %w", name, err)
			}
			if r.ID, err = res.LastInsertId(); err != nil {
				return fmt.Errorf("store: add region %s: %w", name, err)
			}
			return nil
		}
		r = home
		if home.Name == name && home.Endpoint == endpoint {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE regions SET name = ?, endpoint = ? WHERE id = ?", name, endpoint, home.ID); err != nil {
			return fmt.Errorf("store: update region %s: %w", home.Name, err)
		}
		r.Name, r.Endpoint = name, endpoint
		return nil
	})
	if err != nil {
		return Region{}, err
	}
	return r, nil
}

// Region returns the region name with the tenants limited to it; the error wraps
// ErrNotFound when there is none.
func (s *Store) Region(ctx context.Context, name string) (Region, error) {
	var r Region
	err := s.read(ctx, func(q querier) error {
		var err error
		if r, err = s.getRegion(ctx, q, name); err != nil {
			return err
		}
		r.Tenants, err = regionTenants(ctx, q, r.ID)
		return err
	})
	return r, err
}

// HomeRegion returns the controller's own region; the error wraps ErrNotFound before
// EnsureHomeRegion made it.
func (s *Store) HomeRegion(ctx context.Context) (Region, error) {
	return s.homeRegion(ctx, s.db)
}

// Regions returns every region ordered by name, each with the tenants limited to it.
func (s *Store) Regions(ctx context.Context) ([]Region, error) {
	var rs []Region
	err := s.read(ctx, func(q querier) error {
		var err error
		rs, err = listRegions(ctx, q, s.nodePub)
		return err
	})
	return rs, err
}

// SetRegionEndpoint changes the endpoint clients of region name connect to and returns the
// region. Configs already handed out change only when re-imported. The home region's
// endpoint is serve's --public-endpoint and is refused here (ErrInvalid); the error wraps
// ErrNotFound when there is no such region.
func (s *Store) SetRegionEndpoint(ctx context.Context, name, endpoint string) (Region, error) {
	if err := ValidateEndpoint(endpoint); err != nil {
		return Region{}, err
	}
	var r Region
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if r, err = s.getRegion(ctx, tx, name); err != nil {
			return err
		}
		if r.Home {
			return errorf(ErrInvalid, "region %s is the controller's own: its endpoint is popgate serve's --public-endpoint; change that and restart", name)
		}
		if r.Endpoint == endpoint {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE regions SET endpoint = ? WHERE id = ?", endpoint, r.ID); err != nil {
			return fmt.Errorf("store: update region %s: %w", name, err)
		}
		r.Endpoint = endpoint
		if r.Tenants, err = regionTenants(ctx, tx, r.ID); err != nil {
			return err
		}
		return s.logChange(ctx, tx, "", "region.update", RegionTarget(name), "endpoint "+endpoint)
	})
	if err != nil {
		return Region{}, err
	}
	return r, nil
}

// RemoveRegion deletes region name and its key, and takes it out of the regions of the
// tenants limited to it. It refuses (ErrInvalid) the controller's own region, and a region
// that is the only one some tenant is allowed in (naming them: they would otherwise be
// allowed everywhere). The error wraps ErrNotFound when there is no such region.
func (s *Store) RemoveRegion(ctx context.Context, name string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		r, err := s.getRegion(ctx, tx, name)
		if err != nil {
			return err
		}
		if r.Home {
			return errorf(ErrInvalid, "region %s is the controller's own (its key is the node key): it cannot be removed; serve's --region names it", name)
		}
		pops, err := queryStrings(ctx, tx, `SELECT name FROM nodes WHERE region = ? ORDER BY name`, name)
		if err != nil {
			return err
		}
		if len(pops) > 0 {
			return errorf(ErrInvalid, "region %s is still served by %s %s: remove %s first ('popgate node remove %s')",
				name, plural(len(pops), "node", "nodes"), strings.Join(pops, ", "), plural(len(pops), "it", "them"), pops[0])
		}
		only, err := queryStrings(ctx, tx, `SELECT t.name FROM tenant_regions AS tr JOIN tenants AS t ON t.id = tr.tenant_id
			WHERE tr.region_id = ? AND NOT EXISTS (SELECT 1 FROM tenant_regions AS o WHERE o.tenant_id = tr.tenant_id AND o.region_id != tr.region_id)
			ORDER BY t.name`, r.ID)
		if err != nil {
			return err
		}
		if len(only) > 0 {
			return errorf(ErrInvalid, "region %s is the only region of %s %s: give %s another region first ('popgate tenant set --tenant %s --regions REGION', or --regions all)",
				name, plural(len(only), "tenant", "tenants"), strings.Join(only, ", "), plural(len(only), "it", "them"), only[0])
		}
		limited, err := regionTenants(ctx, tx, r.ID)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM tenant_regions WHERE region_id = ?", r.ID); err != nil {
			return fmt.Errorf("store: remove region %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM regions WHERE id = ?", r.ID); err != nil {
			return fmt.Errorf("store: remove region %s: %w", name, err)
		}
		detail := ""
		if len(limited) > 0 {
			detail = "no longer in the regions of " + strings.Join(limited, ", ")
		}
		return s.logChange(ctx, tx, "", "region.remove", RegionTarget(name), detail)
	})
}

// RegionPrivateKey returns the WireGuard private key of region name: its own, or the node
// key for the home region. The error wraps ErrNotFound when there is no such region and
// ErrInvalid when the sealed key does not open with the key file.
func (s *Store) RegionPrivateKey(ctx context.Context, name string) (Key, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, "SELECT private_key_enc FROM regions WHERE name = ?", name).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, regionNotFound(name)
	}
	if err != nil {
		return Key{}, fmt.Errorf("store: read region %s: %w", name, err)
	}
	if sealed == nil {
		return s.NodePrivateKey(ctx)
	}
	k, err := s.openKey(sealed, regionAD(name))
	if err != nil {
		return Key{}, errorf(ErrInvalid, "the key of region %s in %s: %v: restore the key file this database was made with", name, s.path, err)
	}
	return k, nil
}

// TenantRegions returns the regions tenant is limited to, sorted; nil: every region. The
// error wraps ErrNotFound when there is no such tenant.
func (s *Store) TenantRegions(ctx context.Context, tenant string) ([]string, error) {
	var names []string
	err := s.read(ctx, func(q querier) error {
		t, err := getTenant(ctx, q, tenant)
		if err != nil {
			return err
		}
		names, err = tenantRegions(ctx, q, t.ID)
		return err
	})
	return names, err
}

// SetTenantRegions limits tenant to regions, or (none given) allows it in every region, and
// returns the regions as stored, sorted. Duplicates are dropped; giving the regions it has
// changes nothing. The error wraps ErrNotFound when the tenant or one of the regions does
// not exist.
func (s *Store) SetTenantRegions(ctx context.Context, tenant string, regions []string) ([]string, error) {
	want := slices.Clone(regions)
	slices.Sort(want)
	want = slices.Compact(want)
	for _, r := range want {
		if err := ValidateRegionName(r); err != nil {
			return nil, err
		}
	}
	if len(want) == 0 {
		want = nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		have, err := tenantRegions(ctx, tx, t.ID)
		if err != nil {
			return err
		}
		if slices.Equal(have, want) {
			return nil
		}
		ids := make([]int64, len(want))
		for i, name := range want {
			r, err := s.getRegion(ctx, tx, name)
			if err != nil {
				return err
			}
			ids[i] = r.ID
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM tenant_regions WHERE tenant_id = ?", t.ID); err != nil {
			return fmt.Errorf("store: set regions of tenant %s: %w", tenant, err)
		}
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, "INSERT INTO tenant_regions (tenant_id, region_id) VALUES (?, ?)", t.ID, id); err != nil {
				return fmt.Errorf("store: set regions of tenant %s: %w", tenant, err)
			}
		}
		detail := "regions all"
		if len(want) > 0 {
			detail = "regions " + strings.Join(want, ",")
		}
		return s.logChange(ctx, tx, tenant, "tenant.update", TenantTarget(tenant), detail)
	})
	if err != nil {
		return nil, err
	}
	return want, nil
}

const regionColumns = "id, name, endpoint, public_key, created_at"

func scanRegion(scan func(...any) error, nodePub Key) (Region, error) {
	var r Region
	var pub []byte
	var created int64
	if err := scan(&r.ID, &r.Name, &r.Endpoint, &pub, &created); err != nil {
		return Region{}, err
	}
	r.CreatedAt = fromMicros(created)
	if pub == nil {
		r.Home, r.PublicKey = true, nodePub
	} else {
		r.PublicKey = Key(pub)
	}
	return r, nil
}

// getRegion returns the region name without its tenants; the error wraps ErrNotFound when
// there is none.
func (s *Store) getRegion(ctx context.Context, q querier, name string) (Region, error) {
	r, err := scanRegion(q.QueryRowContext(ctx, "SELECT "+regionColumns+" FROM regions WHERE name = ?", name).Scan, s.nodePub)
	if errors.Is(err, sql.ErrNoRows) {
		return Region{}, regionNotFound(name)
	}
	if err != nil {
		return Region{}, fmt.Errorf("store: read region %s: %w", name, err)
	}
	return r, nil
}

func (s *Store) homeRegion(ctx context.Context, q querier) (Region, error) {
	r, err := scanRegion(q.QueryRowContext(ctx, "SELECT "+regionColumns+" FROM regions WHERE private_key_enc IS NULL").Scan, s.nodePub)
	if errors.Is(err, sql.ErrNoRows) {
		return Region{}, errorf(ErrNotFound, "there is no home region yet: popgate serve creates it when it starts")
	}
	if err != nil {
		return Region{}, fmt.Errorf("store: read the home region: %w", err)
	}
	return r, nil
}

// listRegions returns every region by name with the tenants limited to it; the home
// region's key is nodePub.
func listRegions(ctx context.Context, q querier, nodePub Key) ([]Region, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+regionColumns+" FROM regions ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("store: list regions: %w", err)
	}
	defer rows.Close()
	rs := []Region{}
	byID := map[int64]int{}
	for rows.Next() {
		r, err := scanRegion(rows.Scan, nodePub)
		if err != nil {
			return nil, fmt.Errorf("store: list regions: %w", err)
		}
		byID[r.ID] = len(rs)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list regions: %w", err)
	}
	rows.Close()
	trs, err := q.QueryContext(ctx, "SELECT tr.region_id, t.name FROM tenant_regions AS tr JOIN tenants AS t ON t.id = tr.tenant_id ORDER BY t.name")
	if err != nil {
		return nil, fmt.Errorf("store: list regions: %w", err)
	}
	defer trs.Close()
	for trs.Next() {
		var id int64
		var t string
		if err := trs.Scan(&id, &t); err != nil {
			return nil, fmt.Errorf("store: list regions: %w", err)
		}
		if i, ok := byID[id]; ok {
			rs[i].Tenants = append(rs[i].Tenants, t)
		}
	}
	return rs, trs.Err()
}

// allTenantRegions returns the regions of every tenant limited to some, by tenant ID,
// each sorted.
func allTenantRegions(ctx context.Context, q querier) (map[int64][]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT tr.tenant_id, r.name FROM tenant_regions AS tr JOIN regions AS r ON r.id = tr.region_id ORDER BY tr.tenant_id, r.name")
	if err != nil {
		return nil, fmt.Errorf("store: read tenant regions: %w", err)
	}
	defer rows.Close()
	m := map[int64][]string{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, fmt.Errorf("store: read tenant regions: %w", err)
		}
		m[id] = append(m[id], name)
	}
	return m, rows.Err()
}

func tenantRegions(ctx context.Context, q querier, tenantID int64) ([]string, error) {
	return queryStrings(ctx, q, "SELECT r.name FROM tenant_regions AS tr JOIN regions AS r ON r.id = tr.region_id WHERE tr.tenant_id = ? ORDER BY r.name", tenantID)
}

func regionTenants(ctx context.Context, q querier, regionID int64) ([]string, error) {
	return queryStrings(ctx, q, "SELECT t.name FROM tenant_regions AS tr JOIN tenants AS t ON t.id = tr.tenant_id WHERE tr.region_id = ? ORDER BY t.name", regionID)
}

// queryStrings returns the one text column of query's rows; nil when there are none.
func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("store: query: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
