package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CheckReport is what Check found in a database.
type CheckReport struct {
	Path string
	// Version is the schema version of the file, Latest the one this popgate migrates to.
	Version, Latest int
	// Rows counts the rows of each table, by table name.
	Rows map[string]int64
	// Problems lists what is wrong, one sentence each; empty: nothing is.
	Problems []string
	// Notes are worth knowing but not wrong, e.g. that serve will upgrade the schema.
	Notes []string
}

// OK reports whether Check found no problem.
func (r CheckReport) OK() bool { return len(r.Problems) == 0 }

// maxCheckProblems bounds the problems of one kind that a report lists.
const maxCheckProblems = 20

// Check examines the popgate database at path without changing it: SQLite's integrity_check
// (which also evaluates every CHECK constraint) and foreign_key_check, then what popgate
// keeps true itself and no constraint can say: the database file is private; the node key
// and every server-generated private key, region key and TOTP secret open with the key file at keyPath
// (default: secret.key beside the database); each peer's IPv6 address goes with its IPv4
// address; the overlay high-water mark, the limits on groups and site prefixes, sites that
// do not overlap, and an enabled owner. It reads one consistent snapshot through a connection on which SQLite refuses every
// change (query_only), so it works while popgate serve uses the database, and on a stopped
// node's (where closing it may fold the write-ahead log into the file, as closing any last
// SQLite connection does: the same content). The error is for a check that could not run (no
// such file, not a popgate database); what is wrong with the database is in the report.
func Check(ctx context.Context, path, keyPath string) (CheckReport, error) {
	// query_only: SQLite's integrity_check skips the CHECK constraints on a connection
	// opened read-only, so only a file that cannot be opened for writing is.
	var notes []string
	db, path, err := openExisting(path, openQueryOnly)
	if err == nil {
		if err = db.PingContext(ctx); err != nil {
			db.Close()
			if db, path, err = openExisting(path, openReadOnly); err == nil {
				notes = append(notes, "the database file cannot be opened for writing, so SQLite's integrity_check did not evaluate the CHECK constraints: run the check as the user popgate serve runs as (or root)")
			}
		}
	}
	if err != nil {
		return CheckReport{}, err
	}
	defer db.Close()
	if keyPath == "" {
		keyPath = defaultKeyPath(path)
	}
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		return CheckReport{}, err
	}
	r := CheckReport{Path: path, Latest: len(ms), Rows: map[string]int64{}, Notes: notes}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return r, fmt.Errorf("store: check %s: %w", path, err)
	}
	defer tx.Rollback()
	if r.Version, err = schemaVersion(ctx, tx, path); err != nil {
		return r, err
	}
	c := &checker{ctx: ctx, tx: tx, r: &r}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		c.problem("the database file has mode %04o, so other users may read it (password hashes, sessions, the audit log): make it private with 'chmod 600 %s'", fi.Mode().Perm(), path)
	}
	c.sqlite()
	c.countRows()
	switch {
	case r.Version > r.Latest:
		c.problem("schema version %d is newer than this popgate's (%d): check it with the popgate that wrote it", r.Version, r.Latest)
		return r, c.err
	case r.Version < r.Latest:
		r.Notes = append(r.Notes, fmt.Sprintf("schema version %d: popgate serve upgrades it to %d when it starts", r.Version, r.Latest))
	}
	c.invariants(keyPath)
	return r, c.err
}

// How openExisting opens a database.
type openMode int

const (
	openReadWrite openMode = iota
	openQueryOnly          // for writing, but SQLite refuses every change
	openReadOnly           // read-only file access
)

// openExisting opens the database file at path, after checking that it exists; it changes no
// setting of the file (unlike Open, which makes it WAL) and allows one connection, so that
// every statement sees the same transaction. It returns the absolute path.
func openExisting(path string, mode openMode) (*sql.DB, string, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, "", fmt.Errorf("store: database path: %w", err)
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", errorf(ErrNotFound, "there is no database %s: name the data dir of popgate serve (--data-dir)", path)
	}
	if err != nil {
		return nil, "", fmt.Errorf("store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, "", errorf(ErrInvalid, "%s is not a database file: name the data dir of popgate serve (--data-dir)", path)
	}
	u := url.URL{Scheme: "file", Path: path}
	q := url.Values{}
	q.Set("mode", "rw") // never create
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	switch mode {
	case openQueryOnly:
		q.Add("_pragma", "query_only(1)")
	case openReadOnly:
		q.Set("mode", "ro")
		q.Add("_pragma", "query_only(1)")
	}
	u.RawQuery = q.Encode()
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, "", fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return db, path, nil
}

// schemaVersion returns the schema version of a popgate database, and an error wrapping
// ErrInvalid when q is not one.
func schemaVersion(ctx context.Context, q querier, path string) (int, error) {
	var appID, version int
	if err := q.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return 0, fmt.Errorf("store: read %s: %w: is it an SQLite database?", path, err)
	}
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, fmt.Errorf("store: read %s: %w", path, err)
	}
	if appID != applicationID || version == 0 {
		return 0, errorf(ErrInvalid, "%s is not a popgate database (SQLite application_id %#x, user_version %d): name the data dir of popgate serve", path, appID, version)
	}
	return version, nil
}

// checker runs the checks of Check in one read transaction.
type checker struct {
	ctx context.Context
	tx  *sql.Tx
	r   *CheckReport
	err error // the first query that failed; the check stops adding problems after it
}

func (c *checker) problem(format string, args ...any) {
	c.r.Problems = append(c.r.Problems, fmt.Sprintf(format, args...))
}

// fail records a query that could not run.
func (c *checker) fail(what string, err error) {
	if c.err == nil && err != nil {
		c.err = fmt.Errorf("store: check %s: %s: %w", c.r.Path, what, err)
	}
}

// rows runs query and calls fn with each row's Scan; it stops at the first error.
func (c *checker) rows(query string, fn func(scan func(...any) error) error, args ...any) {
	if c.err != nil {
		return
	}
	rows, err := c.tx.QueryContext(c.ctx, query, args...)
	if err != nil {
		c.fail(query, err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			c.fail(query, err)
			return
		}
	}
	c.fail(query, rows.Err())
}

// sqlite runs SQLite's own checks.
func (c *checker) sqlite() {
	n := 0
	c.rows("PRAGMA integrity_check", func(scan func(...any) error) error {
		var msg string
		if err := scan(&msg); err != nil {
			return err
		}
		if msg != "ok" {
			if n++; n <= maxCheckProblems {
				c.problem("SQLite integrity_check: %s", msg)
			}
		}
		return nil
	})
	n = 0
	c.rows("PRAGMA foreign_key_check", func(scan func(...any) error) error {
		var table, parent string
		var rowid sql.NullInt64
		var fkid int64
		if err := scan(&table, &rowid, &parent, &fkid); err != nil {
			return err
		}
		if n++; n <= maxCheckProblems {
			c.problem("SQLite foreign_key_check: row %d of table %s refers to a row of %s that does not exist", rowid.Int64, table, parent)
		}
		return nil
	})
}

// countRows fills in Rows.
func (c *checker) countRows() {
	var tables []string
	c.rows("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name", func(scan func(...any) error) error {
		var name string
		err := scan(&name)
		tables = append(tables, name)
		return err
	})
	for _, t := range tables {
		var n int64
		// The name comes from sqlite_schema; quoting keeps any name a name.
		err := c.tx.QueryRowContext(c.ctx, `SELECT count(*) FROM "`+strings.ReplaceAll(t, `"`, `""`)+`"`).Scan(&n)
		c.fail("count rows of "+t, err)
		c.r.Rows[t] = n
	}
}

// invariants checks what popgate keeps true itself, as far as the schema version has it.
func (c *checker) invariants(keyPath string) {
	s := &Store{path: c.r.Path, keyPath: keyPath}
	secret, err := readSecret(keyPath)
	if err == nil {
		s.aead, err = newAEAD(secret)
		clear(secret)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("it does not exist")
		}
		c.problem("the key file %s cannot be used (%v), so nothing sealed in the database was checked: without the key file this database was made with, its server-generated private keys are lost; restore the key file from the backup of this data dir", keyPath, strings.TrimPrefix(err.Error(), "store: "))
	}
	c.nodeSettings(s)
	c.peers(s)
	if c.r.Version >= 2 {
		c.generation()
		c.peerGroups()
		c.sites(s)
	}
	if c.r.Version >= 3 {
		c.admins(s)
	}
	if c.r.Version >= regionsVersion {
		c.regions(s)
	}
	if c.r.Version >= nodesVersion {
		c.desiredCache(s)
	}
	if c.r.Version >= eventsVersion {
		c.webhook(s)
	}
}

// webhook: the webhook's sealed secret opens with the key file.
func (c *checker) webhook(s *Store) {
	c.rows("SELECT secret_enc FROM webhook", func(scan func(...any) error) error {
		var sealed []byte
		if err := scan(&sealed); err != nil || s.aead == nil {
			return err
		}
		if _, err := s.openBytes(sealed, []byte(adWebhook)); err != nil {
			c.problem("the webhook's secret %s: set the webhook again ('popgate event webhook set URL'), which makes a new secret", strings.TrimPrefix(err.Error(), "sealed secret "))
		}
		return nil
	})
}

// regions: each region's sealed key opens, bound to its name, and belongs to its public key.
func (c *checker) regions(s *Store) {
	c.rows("SELECT name, private_key_enc, public_key FROM regions WHERE private_key_enc IS NOT NULL ORDER BY name", func(scan func(...any) error) error {
		var name string
		var sealed, pub []byte
		if err := scan(&name, &sealed, &pub); err != nil {
			return err
		}
		if s.aead == nil {
			return nil
		}
		k, err := s.openKey(sealed, regionAD(name))
		switch {
		case err != nil:
			c.problem("region %s: its private key %s: restore the key file this database was made with, or remove the region and add it again (its clients then need new configs)", name, strings.TrimPrefix(err.Error(), "sealed key "))
		case len(pub) != KeyLen || k.PublicKey() != Key(pub):
			c.problem("region %s: its private key does not belong to its public key: restore the database from a backup", name)
		}
		return nil
	})
}

// desiredCache: a joined node's kept desired state opens with the key file.
func (c *checker) desiredCache(s *Store) {
	c.rows("SELECT generation, sealed FROM desired_cache", func(scan func(...any) error) error {
		var gen int64
		var sealed []byte
		if err := scan(&gen, &sealed); err != nil {
			return err
		}
		if s.aead == nil {
			return nil
		}
		if _, err := s.openDesired(gen, sealed); err != nil {
			c.problem("%s", strings.TrimPrefix(err.Error(), "store: "))
		}
		return nil
	})
}

// nodeSettings: the node's key opens; the IPv6 prefix is a ULA /48. s.aead is nil when the
// key file could not be read; s.ula is set on success.
func (c *checker) nodeSettings(s *Store) {
	settings := map[string]string{}
	c.rows("SELECT key, value FROM settings", func(scan func(...any) error) error {
		var k, v string
		err := scan(&k, &v)
		settings[k] = v
		return err
	})
	if v, ok := settings[settingNodePrivateKey]; !ok {
		c.problem("setting %s (the node's WireGuard key) is missing: restore the database from a backup", settingNodePrivateKey)
	} else if s.aead != nil {
		if _, err := s.openNodeKey(v); err != nil {
			c.problem("%s", err)
		}
	}
	if v, ok := settings[settingBackbonePrivateKey]; ok && s.aead != nil {
		sealed, err := base64.StdEncoding.DecodeString(v)
		if err == nil {
			_, err = s.openKey(sealed, []byte(adBackbone))
		}
		if err != nil {
			c.problem("setting %s (the node's backbone key) does not open with the key file (%v): restore the database and the key file from the same backup", settingBackbonePrivateKey, err)
		}
	}
	p, err := netip.ParsePrefix(settings[settingIPv6Prefix])
	if err != nil || !validULAPrefix(p) {
		c.problem("setting %s is %q, not a ULA /48 like fd12:3456:789a::/48: restore the database from a backup", settingIPv6Prefix, settings[settingIPv6Prefix])
	} else {
		s.ula = p
	}
	if v, ok := settings[settingIPv4HighWater]; ok {
		hw, err := strconv.ParseUint(v, 10, 32)
		var top sql.NullInt64
		c.fail("highest IPv4 address", c.tx.QueryRowContext(c.ctx, "SELECT max(ipv4) FROM peers").Scan(&top))
		if err != nil || top.Valid && uint64(top.Int64) > hw {
			c.problem("setting %s is %q, below the address of a peer (%s): restore the database from a backup", settingIPv4HighWater, v, addrFromUint32(uint32(top.Int64)))
		}
	}
}

// peers: each peer's sealed private key opens and belongs to its public key; its IPv6
// address is the one that goes with its IPv4 address, which is outside the nodes' block.
func (c *checker) peers(s *Store) {
	bad := 0
	c.rows(`SELECT t.name, p.name, p.public_key, p.private_key_enc, p.ipv4, p.ipv6
		FROM peers AS p JOIN tenants AS t ON t.id = p.tenant_id ORDER BY t.name, p.name`, func(scan func(...any) error) error {
		var tenant, name string
		var pub, sealed, v6 []byte
		var v4 int64
		if err := scan(&tenant, &name, &pub, &sealed, &v4, &v6); err != nil {
			return err
		}
		var why string
		switch {
		case len(pub) != KeyLen:
			why = "its public key is malformed"
		case nodeBlockV4().Contains(addrFromUint32(uint32(v4))):
			// The nodes' own addresses: a packet for the node with this one would reach
			// the node, not the peer (the address went to the peer before the block was
			// kept out of the pool).
			why = fmt.Sprintf("its address %s lies in %s, the nodes' own addresses since popgate kept them out of the peers' pool, so a node that has it takes its packets: remove the peer and add it again to give it a new address ('popgate peer remove', 'popgate peer add'), then give its user the new config", addrFromUint32(uint32(v4)), nodeBlockV4())
		case s.ula.IsValid() && netip.AddrFrom16([16]byte(v6)) != s.ipv6For(uint32(v4)):
			why = fmt.Sprintf("its IPv6 address %s does not go with its IPv4 address %s (want %s)", netip.AddrFrom16([16]byte(v6)), addrFromUint32(uint32(v4)), s.ipv6For(uint32(v4)))
		case sealed != nil && s.aead != nil:
			k, err := s.openKey(sealed, peerAD(Key(pub)))
			if err != nil {
				why = "its private key " + strings.TrimPrefix(err.Error(), "sealed key ")
			} else if k.PublicKey() != Key(pub) {
				why = "its private key does not belong to its public key"
			}
		}
		if why != "" {
			if bad++; bad <= maxCheckProblems {
				c.problem("peer %s of tenant %s: %s", name, tenant, why)
			}
		}
		return nil
	})
	if bad > maxCheckProblems {
		c.problem("… and %d more peers like these", bad-maxCheckProblems)
	}
}

func (c *checker) generation() {
	var n int
	c.fail("generation", c.tx.QueryRowContext(c.ctx, "SELECT count(*) FROM generation").Scan(&n))
	if c.err == nil && n != 1 {
		c.problem("table generation has %d rows, not 1: nodes cannot tell whether anything changed; restore the database from a backup", n)
	}
}

func (c *checker) peerGroups() {
	c.rows(`SELECT t.name, p.name, count(*) FROM peer_groups AS g JOIN peers AS p ON p.id = g.peer_id
		JOIN tenants AS t ON t.id = p.tenant_id GROUP BY g.peer_id HAVING count(*) > ?`, func(scan func(...any) error) error {
		var tenant, name string
		var n int
		err := scan(&tenant, &name, &n)
		c.problem("peer %s of tenant %s is in %d groups, more than %d", name, tenant, n, MaxPeerGroups)
		return err
	}, MaxPeerGroups)
}

// sites: 1 to MaxSitePrefixes prefixes each, none inside the overlay networks, none
// overlapping those of another site of the tenant.
func (c *checker) sites(s *Store) {
	type site struct {
		tenant, name string
		prefixes     []netip.Prefix
	}
	var sites []*site
	byKey := map[[2]string]*site{}
	c.rows(`SELECT t.name, s.name, sp.addr, sp.bits FROM sites AS s JOIN tenants AS t ON t.id = s.tenant_id
		LEFT JOIN site_prefixes AS sp ON sp.tenant_id = s.tenant_id AND sp.site = s.name ORDER BY t.name, s.name`, func(scan func(...any) error) error {
		var tenant, name string
		var addr []byte
		var bits sql.NullInt64
		if err := scan(&tenant, &name, &addr, &bits); err != nil {
			return err
		}
		st := byKey[[2]string{tenant, name}]
		if st == nil {
			st = &site{tenant: tenant, name: name}
			byKey[[2]string{tenant, name}] = st
			sites = append(sites, st)
		}
		if p, ok := prefixFromRow(addr, bits.Int64); ok {
			st.prefixes = append(st.prefixes, p)
		}
		return nil
	})
	overlay := []netip.Prefix{overlayV4()}
	if s.ula.IsValid() {
		overlay = append(overlay, s.ula)
	}
	for i, st := range sites {
		if n := len(st.prefixes); n < 1 || n > MaxSitePrefixes {
			c.problem("site %s of tenant %s has %d prefixes, not 1 to %d", st.name, st.tenant, n, MaxSitePrefixes)
		}
		for _, p := range st.prefixes {
			if o := slices.IndexFunc(overlay, p.Overlaps); o >= 0 {
				c.problem("site %s of tenant %s: prefix %s overlaps the overlay network %s", st.name, st.tenant, p, overlay[o])
			}
		}
		for _, other := range sites[i+1:] {
			if other.tenant != st.tenant {
				continue
			}
			for _, p := range st.prefixes {
				if o := slices.IndexFunc(other.prefixes, p.Overlaps); o >= 0 {
					c.problem("sites %s and %s of tenant %s overlap: %s and %s", st.name, other.name, st.tenant, p, other.prefixes[o])
				}
			}
		}
	}
}

// admins: TOTP secrets open; an enabled owner exists when any admin does.
func (c *checker) admins(s *Store) {
	var admins, owners int
	c.rows(`SELECT id, name, role, disabled, totp_secret_enc, totp_pending_enc FROM admins ORDER BY name`, func(scan func(...any) error) error {
		var id int64
		var name, role string
		var disabled bool
		var secret, pending []byte
		if err := scan(&id, &name, &role, &disabled, &secret, &pending); err != nil {
			return err
		}
		admins++
		if role == RoleOwner && !disabled {
			owners++
		}
		for _, sealed := range [][]byte{secret, pending} {
			if sealed == nil || s.aead == nil {
				continue
			}
			if _, err := s.openBytes(sealed, totpAD(id)); err != nil {
				c.problem("admin %s: its TOTP secret %s: disable TOTP for it ('popgate admin disable-totp %s') and enrol again", name, strings.TrimPrefix(err.Error(), "sealed secret "), name)
			}
		}
		return nil
	})
	if admins > 0 && owners == 0 {
		c.problem("no admin is an enabled owner, so nobody can manage admins in the web UI: make one with 'popgate admin add --role owner NAME'")
	}
}

// RowSummary lists the tables with their row counts: "admins 2, peers 7, …".
func (r CheckReport) RowSummary() string {
	var b strings.Builder
	for _, t := range slices.Sorted(maps.Keys(r.Rows)) {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", t, r.Rows[t])
	}
	return b.String()
}
