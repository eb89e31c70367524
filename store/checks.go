package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Checks (issue 16): DNS names, URLs and every region's public endpoint watched from the PoPs.
// A check is desired state (the nodes run it), so adding and removing one advances the
// generation and is audited; its results are bookkeeping, which does neither.

// checksVersion is the schema version that added checks and their results.
const checksVersion = 12

// Check kinds.
const (
	CheckDNS       = "dns"
	CheckHTTP      = "http"
	CheckHandshake = "handshake"
)

// Bounds of checks.
const (
	// MinCheckEvery and MaxCheckEvery bound how often a check runs; DefaultCheckEvery is
	// its default.
	MinCheckEvery     = 10 * time.Second
	MaxCheckEvery     = time.Hour
	DefaultCheckEvery = time.Minute
	// MaxChecksPerTenant bounds each tenant's checks, MaxOperatorChecks the operator's,
	// so that no tenant makes the PoPs spend what the others need.
	MaxChecksPerTenant = 20
	MaxOperatorChecks  = 100
	// CheckRetention is how long results are kept (PruneCheckResults).
	CheckRetention = 7 * 24 * time.Hour
	// MaxCheckTarget bounds a target (a URL, a name).
	MaxCheckTarget = 2048
	// maxCheckText bounds a result's error and detail.
	maxCheckText = 300
	// maxFromTerms bounds the terms of a check's from.
	maxFromTerms = 8
)

// CheckFromAll, the default from, runs a check on every PoP (of the tenant's regions, for
// a tenant's check); checkFromOtherRegions is a handshake check's: every PoP of another
// region than the one checked.
const (
	CheckFromAll          = "all"
	checkFromOtherRegions = "other-regions"
)

// NetCheck is one check. (Check is the database check of 'popgate db check'.)
type NetCheck struct {
	ID int64
	// TenantID and TenantName are its tenant's; 0 and "" for the operator's.
	TenantID   int64
	TenantName string
	// Name is unique among the operator's checks and within a tenant; a handshake check's
	// is "region:" and the region's name.
	Name string
	Kind string
	// Target is a DNS name (dns), a URL (http) or the region's endpoint (handshake).
	Target string
	// Expect is an address the answer must hold (dns, "": any answer) or a status
	// ("": 200).
	Expect string
	Every  time.Duration
	// From says where it runs: CheckFromAll, or "region:NAME" and "node:NAME" terms
	// (ParseCheckFrom); a handshake check's is "other-regions".
	From string
	// Region and RegionKey are a handshake check's region and its public key.
	Region    string
	RegionKey Key
	CreatedAt time.Time
}

// Global reports whether c is the operator's, not a tenant's.
func (c *NetCheck) Global() bool { return c.TenantID == 0 }

// NewNetCheck is a check to add.
type NewNetCheck struct {
	// Tenant is the tenant's name; "" for the operator's.
	Tenant string
	Name   string
	Kind   string // CheckDNS or CheckHTTP
	Target string
	Expect string
	// Every: 0 is DefaultCheckEvery.
	Every time.Duration
	// From: "" is CheckFromAll.
	From string
}

// CheckTarget names a check in the audit log: "check:NAME" for the operator's,
// "check:TENANT/NAME" for a tenant's.
func CheckTarget(tenant, name string) string {
	if tenant == "" {
		return "check:" + name
	}
	return "check:" + tenant + "/" + name
}

// RegionCheckName is the name of region's handshake check.
func RegionCheckName(region string) string { return "region:" + region }

const checkNameRule = "use 1-32 lower-case letters, digits and '-', starting with a letter or digit"

// ValidateCheckName reports whether name is a valid check name (a DNS label, like a tenant's).
// The error wraps ErrInvalid.
func ValidateCheckName(name string) error {
	if problem := nameProblem(name, 32, isTenantNameByte); problem != "" {
		return errorf(ErrInvalid, "check name %q is invalid: %s; %s", truncate(name, 80), problem, checkNameRule)
	}
	return nil
}

// ValidateCheck checks a check's kind, target and expectation, and for a tenant's check
// (tenant true) that its target is no address of the PoPs' own networks (PublicAddr): a
// tenant must not make the PoPs reach what only they reach. The error wraps ErrInvalid.
func ValidateCheck(kind, target, expect string, tenant bool) error {
	switch kind {
	case CheckDNS:
		if err := validateDNSName(target); err != nil {
			return err
		}
		if expect != "" {
			if a, err := netip.ParseAddr(expect); err != nil || a.Zone() != "" {
				return errorf(ErrInvalid, "expect %q is not an IP address: a DNS check expects an address the answer must hold, e.g. 192.0.2.10, or nothing (any answer)", truncate(expect, 80))
			}
		}
	case CheckHTTP:
		if err := validateCheckURL(target, tenant); err != nil {
			return err
		}
		if expect != "" {
			if n, err := strconv.Atoi(expect); err != nil || n < 100 || n > 599 || expect[0] == '0' || expect[0] == '+' {
				return errorf(ErrInvalid, "expect %q is not an HTTP status: give a number from 100 to 599, e.g. 200 (the default) or 301", truncate(expect, 80))
			}
		}
	case CheckHandshake:
		return errorf(ErrInvalid, "handshake checks are not added: every region's endpoint is checked from the PoPs of the other regions by itself")
	default:
		return errorf(ErrInvalid, "check kind %q is unknown: use dns or http", truncate(kind, 40))
	}
	return nil
}

// validateDNSName checks a name a DNS check resolves: at most 253 characters in labels of 1-63
// letters, digits, '-' and '_', with or without the root's dot.
func validateDNSName(name string) error {
	bad := func(why string) error {
		return errorf(ErrInvalid, "%q is not a DNS name (%s): give a name such as www.example.com", truncate(name, 80), why)
	}
	n := strings.TrimSuffix(name, ".")
	if n == "" || len(n) > 253 {
		return bad("1-253 characters")
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" || len(label) > 63 {
			return bad("each label has 1-63 characters")
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' && c != '_' {
				return bad(fmt.Sprintf("%q is not allowed", rune(c)))
			}
		}
	}
	return nil
}

// validateCheckURL checks an HTTP check's URL: http or https, a host, a port (when given) of
// 1-65535, no credentials, at most MaxCheckTarget printable ASCII characters; for a tenant's
// (tenant), no host that names the PoPs' own networks (an address PublicAddr refuses,
// localhost).
func validateCheckURL(raw string, tenant bool) error {
	u, err := url.Parse(raw)
	switch {
	case len(raw) > MaxCheckTarget || strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r > '~' }):
		return errorf(ErrInvalid, "the URL %q is longer than %d characters or holds spaces or other than printable ASCII: escape them (%%20)", truncate(raw, 80), MaxCheckTarget)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errorf(ErrInvalid, "%q is not an http or https URL: give e.g. https://www.example.com/health", truncate(raw, 80))
	case u.User != nil:
		return errorf(ErrInvalid, "the URL %q holds credentials, which every admin who lists checks would see: check a URL that needs none", truncate(raw, 80))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errorf(ErrInvalid, "the URL %q has a bad port: use 1-65535", truncate(raw, 80))
		}
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if tenant && !PublicAddr(a) {
			return errorf(ErrInvalid, "%s is not a public address: a tenant's check may reach only the internet, not the PoPs' own networks", host)
		}
		return nil
	}
	if err := validateDNSName(host); err != nil {
		return err
	}
	if tenant && (strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") || strings.HasSuffix(strings.ToLower(strings.TrimSuffix(host, ".")), ".localhost")) {
		return errorf(ErrInvalid, "%s names this host: a tenant's check may reach only the internet", host)
	}
	return nil
}

// PublicAddr reports whether a is an address of the internet at large: not loopback,
// private (RFC 1918, unique local), link-local, multicast, unspecified, shared (100.64.0.0/10,
// which also holds the overlay), "this network" (0.0.0.0/8), IETF protocol assignments
// (192.0.0.0/24), benchmarking (198.18.0.0/15) or reserved (240.0.0.0/4 and the broadcast
// address). A tenant's checks reach only such addresses; the documentation ranges, which
// the internet does not route either, are allowed (tests use them).
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("2001::/23"),      // IETF protocol assignments
}

// CheckFrom is where a check runs, parsed (ParseCheckFrom).
type CheckFrom struct {
	All     bool
	Regions []string
	Nodes   []string
}

// ParseCheckFrom reads where a check runs: "all" (every PoP), or a comma-separated list of
// up to 8 terms "region:NAME" (the region's PoPs) and "node:NAME" (that node, whatever its
// roles). Whether the regions and nodes exist is not checked here: a term that names none
// matches no node. The error wraps ErrInvalid.
func ParseCheckFrom(s string) (CheckFrom, error) {
	var f CheckFrom
	if strings.TrimSpace(s) == "" || strings.TrimSpace(s) == CheckFromAll {
		f.All = true
		return f, nil
	}
	terms := strings.Split(s, ",")
	if len(terms) > maxFromTerms {
		return f, errorf(ErrInvalid, "from %q has %d terms, at most %d: pick fewer regions and nodes, or all", truncate(s, 80), len(terms), maxFromTerms)
	}
	for _, t := range terms {
		t = strings.TrimSpace(t)
		kind, name, _ := strings.Cut(t, ":")
		switch kind {
		case "region":
			if err := ValidateRegionName(name); err != nil {
				return f, err
			}
			if !slices.Contains(f.Regions, name) {
				f.Regions = append(f.Regions, name)
			}
		case "node":
			if err := ValidateNodeName(name); err != nil {
				return f, err
			}
			if !slices.Contains(f.Nodes, name) {
				f.Nodes = append(f.Nodes, name)
			}
		default:
			if t == CheckFromAll {
				return f, errorf(ErrInvalid, "from %q: all goes alone, not with regions and nodes", truncate(s, 80))
			}
			return f, errorf(ErrInvalid, "from term %q is unknown: use all, region:NAME or node:NAME (several with commas)", truncate(t, 80))
		}
	}
	return f, nil
}

// String is f in its one stored form: "all", or the regions and then the nodes, each
// sorted.
func (f CheckFrom) String() string {
	if f.All {
		return CheckFromAll
	}
	var terms []string
	for _, r := range slices.Sorted(slices.Values(f.Regions)) {
		terms = append(terms, "region:"+r)
	}
	for _, n := range slices.Sorted(slices.Values(f.Nodes)) {
		terms = append(terms, "node:"+n)
	}
	return strings.Join(terms, ",")
}

func checkNotFound(tenant, name string) error {
	if tenant == "" {
		return errorf(ErrNotFound, "check %q not found: list checks with 'popgate check list'", truncate(name, 80))
	}
	return errorf(ErrNotFound, "check %q of tenant %q not found: list checks with 'popgate check list --tenant %s'", truncate(name, 80), truncate(tenant, 80), truncate(tenant, 80))
}

// AddNetCheck adds a DNS or HTTP check. The error wraps ErrInvalid for a bad name, kind,
// target, expectation, interval or from, or when the tenant (or the operator) has as many
// checks as it may; ErrNotFound for an unknown tenant; ErrExists when the name is taken.
func (s *Store) AddNetCheck(ctx context.Context, nc NewNetCheck) (NetCheck, error) {
	if err := ValidateCheckName(nc.Name); err != nil {
		return NetCheck{}, err
	}
	if err := ValidateCheck(nc.Kind, nc.Target, nc.Expect, nc.Tenant != ""); err != nil {
		return NetCheck{}, err
	}
	if nc.Every == 0 {
		nc.Every = DefaultCheckEvery
	}
	if nc.Every < MinCheckEvery || nc.Every > MaxCheckEvery || nc.Every%time.Second != 0 {
		return NetCheck{}, errorf(ErrInvalid, "a check runs every %s to %s in whole seconds, not every %s", MinCheckEvery, MaxCheckEvery, nc.Every)
	}
	from, err := ParseCheckFrom(nc.From)
	if err != nil {
		return NetCheck{}, err
	}
	c := NetCheck{TenantName: nc.Tenant, Name: nc.Name, Kind: nc.Kind, Target: nc.Target, Expect: nc.Expect, Every: nc.Every,
		From: from.String(), CreatedAt: fromMicros(micros(s.now()))}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var tenantID any // NULL for the operator's
		limit, whose := MaxOperatorChecks, "the operator"
		if nc.Tenant != "" {
			t, err := getTenant(ctx, tx, nc.Tenant)
			if err != nil {
				return err
			}
			c.TenantID, tenantID = t.ID, t.ID
			limit, whose = MaxChecksPerTenant, "tenant "+nc.Tenant
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM checks WHERE ifnull(tenant_id, 0) = ? AND name IS NOT NULL", c.TenantID).Scan(&n); err != nil {
			return fmt.Errorf("store: count checks: %w", err)
		}
		if n >= limit {
			return errorf(ErrInvalid, "%s has %d checks, the most it may have: remove one first ('popgate check remove')", whose, n)
		}
		var taken bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM checks WHERE ifnull(tenant_id, 0) = ? AND name = ?)", c.TenantID, nc.Name).Scan(&taken); err != nil {
			return fmt.Errorf("store: read checks: %w", err)
		}
		if taken {
			return errorf(ErrExists, "check %q exists already: choose another name, or remove it first", nc.Name)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO checks (tenant_id, name, kind, target, expect, every_s, from_spec, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, tenantID, c.Name, c.Kind, c.Target, c.Expect, int64(c.Every/time.Second), c.From, micros(c.CreatedAt))
		if err != nil {
			return fmt.Errorf("store: add check %s: %w", nc.Name, err)
		}
		if c.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: add check %s: %w", nc.Name, err)
		}
		detail := fmt.Sprintf("%s %s every %s from %s", c.Kind, c.Target, c.Every, c.From)
		if c.Expect != "" {
			detail += "; expect " + c.Expect
		}
		return s.logChange(ctx, tx, nc.Tenant, "check.add", CheckTarget(nc.Tenant, nc.Name), detail)
	})
	if err != nil {
		return NetCheck{}, err
	}
	return c, nil
}

// RemoveNetCheck removes tenant's check name ("" for the operator's) with its results. A
// region's handshake check goes only with its region. The error wraps ErrNotFound when there
// is no such check, ErrInvalid for a region's.
func (s *Store) RemoveNetCheck(ctx context.Context, tenant, name string) error {
	if tenant == "" && strings.HasPrefix(name, "region:") {
		return errorf(ErrInvalid, "check %s is the region's own: it goes when the region is removed", truncate(name, 80))
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		c, err := s.getNetCheck(ctx, tx, tenant, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM checks WHERE id = ?", c.ID); err != nil {
			return fmt.Errorf("store: remove check %s: %w", name, err)
		}
		return s.logChange(ctx, tx, tenant, "check.remove", CheckTarget(tenant, name), c.Kind+" "+c.Target)
	})
}

// NetCheck returns tenant's check name ("" and "region:NAME" for a region's handshake
// check); the error wraps ErrNotFound when there is none.
func (s *Store) NetCheck(ctx context.Context, tenant, name string) (NetCheck, error) {
	return s.getNetCheck(ctx, s.db, tenant, name)
}

// NetChecks returns every check: the operator's (the regions' first, by region), then each
// tenant's by tenant, each by name.
func (s *Store) NetChecks(ctx context.Context) ([]NetCheck, error) {
	return s.queryNetChecks(ctx, s.db, "", nil)
}

// checkSelect reads a check with its tenant's and region's names; a handshake check's name
// and target are its region's.
const checkSelect = `SELECT c.id, ifnull(c.tenant_id, 0), ifnull(t.name, ''),
	CASE WHEN c.kind = 'handshake' THEN 'region:' || r.name ELSE c.name END,
	c.kind, ifnull(c.target, r.endpoint), c.expect, c.every_s, c.from_spec, ifnull(r.name, ''), r.public_key, c.created_at
	FROM checks AS c LEFT JOIN tenants AS t ON t.id = c.tenant_id LEFT JOIN regions AS r ON r.id = c.region_id `

const checkOrder = `ORDER BY c.tenant_id IS NOT NULL, t.name, c.kind <> 'handshake', 4`

func (s *Store) scanNetCheck(scan func(...any) error) (NetCheck, error) {
	var c NetCheck
	var every, created int64
	var pub []byte
	if err := scan(&c.ID, &c.TenantID, &c.TenantName, &c.Name, &c.Kind, &c.Target, &c.Expect, &every, &c.From, &c.Region, &pub, &created); err != nil {
		return NetCheck{}, err
	}
	c.Every, c.CreatedAt = time.Duration(every)*time.Second, fromMicros(created)
	if c.Kind == CheckHandshake {
		c.RegionKey = s.nodePub // the home region's key is the node key
		if pub != nil {
			c.RegionKey = Key(pub)
		}
	}
	return c, nil
}

func (s *Store) queryNetChecks(ctx context.Context, q querier, where string, args []any) ([]NetCheck, error) {
	if s.version < checksVersion {
		return nil, nil // a test's older schema
	}
	rows, err := q.QueryContext(ctx, checkSelect+where+checkOrder, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list checks: %w", err)
	}
	defer rows.Close()
	var out []NetCheck
	for rows.Next() {
		c, err := s.scanNetCheck(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("store: list checks: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *Store) getNetCheck(ctx context.Context, q querier, tenant, name string) (NetCheck, error) {
	var where string
	var args []any
	switch region, isRegion := strings.CutPrefix(name, "region:"); {
	case tenant == "" && isRegion:
		where, args = "WHERE c.kind = 'handshake' AND r.name = ? ", []any{region}
	case tenant == "":
		where, args = "WHERE c.tenant_id IS NULL AND c.name = ? ", []any{name}
	default:
		where, args = "WHERE t.name = ? AND c.name = ? ", []any{tenant, name}
	}
	cs, err := s.queryNetChecks(ctx, q, where, args)
	if err != nil {
		return NetCheck{}, err
	}
	if len(cs) == 0 {
		if tenant != "" {
			if _, err := getTenant(ctx, q, tenant); err != nil {
				return NetCheck{}, err
			}
		}
		return NetCheck{}, checkNotFound(tenant, name)
	}
	return cs[0], nil
}

// CheckResult is what one node saw of one check in one minute.
type CheckResult struct {
	Check int64
	// Node is the node's backbone ID (1: the controller's own node).
	Node uint32
	// Minute is the minute's start, in the controller's clock.
	Minute     time.Time
	OK, Failed int
	// LatencyP50 and LatencyMax are the median and the longest latency of the runs that
	// passed; zero when none did.
	LatencyP50, LatencyMax time.Duration
	// Error is the minute's last failure; Detail the last run's answer (addresses, a
	// status).
	Error, Detail string
}

// RecordCheckResults records results, each replacing what was recorded for its check, node
// and minute (a node reports a minute again while it runs): a report sent twice changes
// nothing. Results of checks that no longer exist, of minutes older than CheckRetention, or
// without a run are dropped. It is bookkeeping: the generation stays and nothing is
// audited.
func (s *Store) RecordCheckResults(ctx context.Context, rs []CheckResult) error {
	if len(rs) == 0 {
		return nil
	}
	oldest := s.now().Add(-CheckRetention).Unix() / 60
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO check_results (check_id, minute, node, ok, failed, latency_p50_us, latency_max_us, error, detail)
			SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS (SELECT 1 FROM checks WHERE id = ?1)
			ON CONFLICT (check_id, minute, node) DO UPDATE SET ok = excluded.ok, failed = excluded.failed,
				latency_p50_us = excluded.latency_p50_us, latency_max_us = excluded.latency_max_us,
				error = excluded.error, detail = excluded.detail`)
		if err != nil {
			return fmt.Errorf("store: record check results: %w", err)
		}
		defer stmt.Close()
		for _, r := range rs {
			minute := r.Minute.Unix() / 60
			if minute < oldest || r.OK < 0 || r.Failed < 0 || r.OK+r.Failed == 0 || r.Node == 0 {
				continue
			}
			p50, mx := max(r.LatencyP50.Microseconds(), 0), max(r.LatencyMax.Microseconds(), 0)
			mx = max(mx, p50)
			if _, err := stmt.ExecContext(ctx, r.Check, minute, int64(r.Node), r.OK, r.Failed, p50, mx,
				clean(r.Error, maxCheckText), clean(r.Detail, maxCheckText)); err != nil {
				return fmt.Errorf("store: record check results: %w", err)
			}
		}
		return nil
	})
}

// PruneCheckResults deletes results older than CheckRetention and returns how many it
// deleted. Bookkeeping: the generation stays.
func (s *Store) PruneCheckResults(ctx context.Context) (int64, error) {
	if s.version < checksVersion {
		return 0, nil
	}
	oldest := s.now().Add(-CheckRetention).Unix() / 60
	var n int64
	err := s.writeAuth(ctx, func(tx *sql.Tx) error {
		// One check at a time, so that each delete is a range of the primary key.
		rows, err := tx.QueryContext(ctx, "SELECT id FROM checks")
		if err != nil {
			return fmt.Errorf("store: prune check results: %w", err)
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("store: prune check results: %w", err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: prune check results: %w", err)
		}
		for _, id := range ids {
			res, err := tx.ExecContext(ctx, "DELETE FROM check_results WHERE check_id = ? AND minute < ?", id, oldest)
			if err != nil {
				return fmt.Errorf("store: prune check results: %w", err)
			}
			d, _ := res.RowsAffected()
			n += d
		}
		return nil
	})
	return n, err
}

// CheckResults returns check's results since since, oldest first, each minute's by node.
func (s *Store) CheckResults(ctx context.Context, check int64, since time.Time) ([]CheckResult, error) {
	if s.version < checksVersion {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT minute, node, ok, failed, latency_p50_us, latency_max_us, error, detail
		FROM check_results WHERE check_id = ? AND minute >= ? ORDER BY minute, node`, check, since.Unix()/60)
	if err != nil {
		return nil, fmt.Errorf("store: read check results: %w", err)
	}
	defer rows.Close()
	var out []CheckResult
	for rows.Next() {
		r := CheckResult{Check: check}
		var minute, node, p50, mx int64
		if err := rows.Scan(&minute, &node, &r.OK, &r.Failed, &p50, &mx, &r.Error, &r.Detail); err != nil {
			return nil, fmt.Errorf("store: read check results: %w", err)
		}
		r.Minute, r.Node = time.Unix(minute*60, 0).UTC(), uint32(node)
		r.LatencyP50, r.LatencyMax = time.Duration(p50)*time.Microsecond, time.Duration(mx)*time.Microsecond
		out = append(out, r)
	}
	return out, rows.Err()
}

// CheckBin is a check's results over one stretch of time, every node's together.
type CheckBin struct {
	Start      time.Time
	OK, Failed int
	// Latency is the mean of the minutes' medians that had a pass; LatencyMax the longest.
	Latency, LatencyMax time.Duration
}

// CheckBins returns check's results since since in bins of width (whole minutes), oldest
// first; bins without a result are left out.
func (s *Store) CheckBins(ctx context.Context, check int64, since time.Time, width time.Duration) ([]CheckBin, error) {
	if s.version < checksVersion {
		return nil, nil
	}
	w := max(int64(width/time.Minute), 1)
	rows, err := s.db.QueryContext(ctx, `SELECT minute / ?2 AS bin, sum(ok), sum(failed),
		ifnull(avg(CASE WHEN ok > 0 THEN latency_p50_us END), 0), max(latency_max_us)
		FROM check_results WHERE check_id = ?1 AND minute >= ?3 GROUP BY bin ORDER BY bin`, check, w, since.Unix()/60)
	if err != nil {
		return nil, fmt.Errorf("store: read check results: %w", err)
	}
	defer rows.Close()
	var out []CheckBin
	for rows.Next() {
		var b CheckBin
		var bin, mx int64
		var mean float64
		if err := rows.Scan(&bin, &b.OK, &b.Failed, &mean, &mx); err != nil {
			return nil, fmt.Errorf("store: read check results: %w", err)
		}
		b.Start = time.Unix(bin*w*60, 0).UTC()
		b.Latency, b.LatencyMax = time.Duration(mean)*time.Microsecond, time.Duration(mx)*time.Microsecond
		out = append(out, b)
	}
	return out, rows.Err()
}

// NodeMinutes returns how many distinct minutes since since each node reported a result of
// any check in, by node (its backbone ID): how long it ran and reached the controller, for
// a node that runs checks (every PoP of a network of several regions does).
func (s *Store) NodeMinutes(ctx context.Context, since time.Time) (map[uint32]int, error) {
	out := map[uint32]int{}
	if s.version < checksVersion {
		return out, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT node, count(DISTINCT minute) FROM check_results INDEXED BY check_results_node
		WHERE node >= 1 AND minute >= ? GROUP BY node`, since.Unix()/60)
	if err != nil {
		return nil, fmt.Errorf("store: read check results: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var node int64
		var n int
		if err := rows.Scan(&node, &n); err != nil {
			return nil, fmt.Errorf("store: read check results: %w", err)
		}
		out[uint32(node)] = n
	}
	return out, rows.Err()
}
