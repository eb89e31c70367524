package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Many nodes (issue 13). A controller keeps the nodes that joined it and the one-time join
// tokens they join with; a joined node keeps its membership (the controller it belongs to)
// and the last desired state it applied, sealed (it holds the region's private key).

// nodesVersion is the schema version that added nodes, join tokens, membership and the
// desired-state cache.
const nodesVersion = 8

// Errors of RedeemJoinToken, which a joining node is told apart.
var (
	// ErrTokenUnknown: no token has that id and secret (mistyped, forged, or made by
	// another controller).
	ErrTokenUnknown = errors.New("unknown join token")
	// ErrTokenUsed: the token was used already; tokens are good for one join.
	ErrTokenUsed = errors.New("join token already used")
	// ErrTokenExpired: the token expired before it was used.
	ErrTokenExpired = errors.New("join token expired")
)

// Role names of nodes other than the controller.
const (
	RolePop  = "pop"
	RoleExit = "exit"
)

// ParseNodeRoles reads a comma-separated list of roles a joining node may have ("pop",
// "exit", "exit,pop") and returns it in its one stored form ("pop", "exit" or "pop,exit").
// The error wraps ErrInvalid.
func ParseNodeRoles(s string) (string, error) {
	var pop, exit bool
	for r := range strings.SplitSeq(s, ",") {
		switch strings.TrimSpace(r) {
		case RolePop:
			pop = true
		case RoleExit:
			exit = true
		default:
			return "", errorf(ErrInvalid, "node roles %q are invalid: give pop, exit or pop,exit", truncate(s, 80))
		}
	}
	switch {
	case pop && exit:
		return "pop,exit", nil
	case pop:
		return RolePop, nil
	default:
		return RoleExit, nil
	}
}

const (
	maxNodeName  = 32
	nodeNameRule = "use 1-32 lower-case letters, digits and '-', starting with a letter or digit"
	maxRegion    = 32
)

// ValidateNodeName reports whether name is a valid node name: the tenant-name rule (a DNS
// label), so that it can appear in host names. The error wraps ErrInvalid.
func ValidateNodeName(name string) error {
	if problem := nameProblem(name, maxNodeName, isTenantNameByte); problem != "" {
		return errorf(ErrInvalid, "node name %q is invalid: %s; %s", truncate(name, 80), problem, nodeNameRule)
	}
	return nil
}

// NodeTarget names node n in the audit log: "node:p1".
func NodeTarget(n string) string { return "node:" + n }

// JoinToken is a one-time token a node joins the controller with. Its secret is given once,
// when it is made; the database keeps its SHA-256.
type JoinToken struct {
	ID int64
	// Roles the node gets ("pop", "exit", "pop,exit"), Region its region ("" for none).
	Roles, Region string
	// Name, when not "", is the only name the node may join with.
	Name      string
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	// UsedAt is zero until the join; UsedBy names the node that joined with it.
	UsedAt time.Time
	UsedBy string
}

// NewJoinToken is what CreateJoinToken needs.
type NewJoinToken struct {
	// Roles as ParseNodeRoles reads them. Required.
	Roles string
	// Region is the node's region; "" for none. The caller checks that it exists.
	Region string
	// Name, optional, fixes the node's name.
	Name string
	// ExpiresAt must be in the future. Required.
	ExpiresAt time.Time
}

// JoinSecretLen is the length of a join token's secret.
const JoinSecretLen = 32

// CreateJoinToken makes a join token and returns it with its secret, which only the caller
// sees. The error wraps ErrInvalid for bad roles, name, region or expiry and ErrExists when a
// node has the name already; then nothing is stored.
func (s *Store) CreateJoinToken(ctx context.Context, nt NewJoinToken) (JoinToken, [JoinSecretLen]byte, error) {
	var secret [JoinSecretLen]byte
	roles, err := ParseNodeRoles(nt.Roles)
	if err != nil {
		return JoinToken{}, secret, err
	}
	if nt.Name != "" {
		if err := ValidateNodeName(nt.Name); err != nil {
			return JoinToken{}, secret, err
		}
	}
	if len(nt.Region) > maxRegion || strings.ContainsFunc(nt.Region, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return JoinToken{}, secret, errorf(ErrInvalid, "region %q is invalid: name an existing region ('popgate region list')", truncate(nt.Region, 80))
	}
	now := fromMicros(micros(s.now()))
	expires := fromMicros(micros(nt.ExpiresAt))
	if !expires.After(now) || expires.After(latestExpiry) {
		return JoinToken{}, secret, errorf(ErrInvalid, "the join token would expire at %s, which is not in the future: give a validity of a minute or more", expires.Format(time.RFC3339))
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return JoinToken{}, secret, fmt.Errorf("store: generate join token secret: %w", err)
	}
	hash := sha256.Sum256(secret[:])
	tok := JoinToken{Roles: roles, Region: nt.Region, Name: nt.Name, CreatedBy: clean(ActorFrom(ctx).Name, 128), CreatedAt: now, ExpiresAt: expires}
	if tok.CreatedBy == "" {
		tok.CreatedBy = "unknown"
	}
	err = s.writeAuth(ctx, func(tx *sql.Tx) error {
		if nt.Name != "" {
			if err := nodeNameFree(ctx, tx, nt.Name); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO join_tokens (secret_hash, roles, region, name, created_by, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, hash[:], roles, nt.Region, nt.Name, tok.CreatedBy, micros(now), micros(expires))
		if err != nil {
			return fmt.Errorf("store: create join token: %w", err)
		}
		if tok.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: create join token: %w", err)
		}
		target := NodeTarget(nt.Name)
		if nt.Name == "" {
			target = NodeTarget("*")
		}
		return s.logChange(ctx, tx, "", "node.token", target, fmt.Sprintf("join token #%d: roles %s, region %q; expires %s", tok.ID, roles, nt.Region, expires.Format(time.RFC3339)))
	})
	if err != nil {
		return JoinToken{}, [JoinSecretLen]byte{}, err
	}
	return tok, secret, nil
}

func nodeNameFree(ctx context.Context, q querier, name string) error {
	var taken bool
	if err := q.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM nodes WHERE name = ?)", name).Scan(&taken); err != nil {
		return fmt.Errorf("store: read nodes: %w", err)
	}
	if taken {
		return errorf(ErrExists, "a node named %q has joined already: choose another name, or remove it first ('popgate node remove %s')", name, name)
	}
	return nil
}

// Node is a node that joined the controller.
type Node struct {
	ID     int64
	Name   string
	Roles  string
	Region string
	// Pin is the SHA-256 of its certificate's SubjectPublicKeyInfo.
	Pin [32]byte
	// BackboneEndpoint ("host:port") and BackbonePublicKey (zero: none) are its backbone's.
	BackboneEndpoint  string
	BackbonePublicKey Key
	Version           string
	JoinedAt          time.Time
	// LastSeen is zero until its first report.
	LastSeen time.Time
	// AppliedGeneration is the generation of the last desired state it applied.
	AppliedGeneration int64
	// LastReport is its last report as it sent it (JSON), or "".
	LastReport string
}

// Redemption is a node's request to join with a token.
type Redemption struct {
	TokenID int64
	Secret  [JoinSecretLen]byte
	// Name is the name the node asks for; "" takes the token's.
	Name string
	// DefaultName is taken when neither Name nor the token names the node (its host name).
	DefaultName string
	Pin         [32]byte
	// BackboneEndpoint and BackbonePublicKey are optional.
	BackboneEndpoint  string
	BackbonePublicKey Key
	Version           string
}

// MaxNodeReport is the longest report RecordNodeReport keeps.
const MaxNodeReport = 16384

// RedeemJoinToken joins a node in one transaction: the token must exist with that secret,
// be unused and unexpired at the store's clock, and the node's name and pin must be free.
// It records the node and marks the token used. The error wraps ErrTokenUnknown,
// ErrTokenUsed, ErrTokenExpired, ErrInvalid (a bad name, or one the token does not allow)
// or ErrExists (the name or the pin is taken); then nothing is stored.
func (s *Store) RedeemJoinToken(ctx context.Context, r Redemption) (Node, error) {
	if len(r.Version) > 64 {
		return Node{}, errorf(ErrInvalid, "the node's version is too long")
	}
	if r.BackboneEndpoint != "" {
		if err := ValidateEndpoint(r.BackboneEndpoint); err != nil {
			return Node{}, err
		}
	}
	now := fromMicros(micros(s.now()))
	var n Node
	err := s.write(ctx, func(tx *sql.Tx) error {
		var tok JoinToken
		var stored []byte
		var created, expires, used int64
		err := tx.QueryRowContext(ctx, `SELECT roles, region, name, created_at, expires_at, coalesce(used_at, 0), coalesce(used_by, ''), secret_hash
			FROM join_tokens WHERE id = ?`, r.TokenID).Scan(&tok.Roles, &tok.Region, &tok.Name, &created, &expires, &used, &tok.UsedBy, &stored)
		hash := sha256.Sum256(r.Secret[:])
		if errors.Is(err, sql.ErrNoRows) || err == nil && subtle.ConstantTimeCompare(stored, hash[:]) != 1 {
			return errorf(ErrTokenUnknown, "the controller does not know this join token: check that it was copied completely, or make a new one on the controller ('popgate node token')")
		}
		if err != nil {
			return fmt.Errorf("store: read join token: %w", err)
		}
		tok.ExpiresAt, tok.UsedAt = fromMicros(expires), optMicros(used)
		if !tok.UsedAt.IsZero() {
			return errorf(ErrTokenUsed, "this join token was used at %s by node %q: tokens are good for one join; make a new one on the controller ('popgate node token')", tok.UsedAt.Format(time.RFC3339), tok.UsedBy)
		}
		if !now.Before(tok.ExpiresAt) {
			return errorf(ErrTokenExpired, "this join token expired at %s: make a new one on the controller ('popgate node token')", tok.ExpiresAt.Format(time.RFC3339))
		}
		name := r.Name
		switch {
		case name == "" && tok.Name == "" && r.DefaultName != "":
			name = r.DefaultName
		case name == "" && tok.Name == "":
			return errorf(ErrInvalid, "the node has no name: give it one (--node-name)")
		case name == "":
			name = tok.Name
		case tok.Name != "" && name != tok.Name:
			return errorf(ErrInvalid, "this join token is for a node named %q, not %q: join with --node-name %s, or make a token without --name", tok.Name, name, tok.Name)
		}
		if err := ValidateNodeName(name); err != nil {
			return err
		}
		if err := nodeNameFree(ctx, tx, name); err != nil {
			return err
		}
		var other string
		err = tx.QueryRowContext(ctx, "SELECT name FROM nodes WHERE cert_pin = ?", r.Pin[:]).Scan(&other)
		if err == nil {
			return errorf(ErrExists, "this node's identity joined already as node %q: it needs no second join", other)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: read nodes: %w", err)
		}
		n = Node{Name: name, Roles: tok.Roles, Region: tok.Region, Pin: r.Pin, BackboneEndpoint: r.BackboneEndpoint,
			BackbonePublicKey: r.BackbonePublicKey, Version: r.Version, JoinedAt: now}
		var bbKey any
		if n.BackbonePublicKey != (Key{}) {
			bbKey = n.BackbonePublicKey[:]
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO nodes (name, roles, region, cert_pin, backbone_endpoint, backbone_public_key, version, joined_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, name, n.Roles, n.Region, r.Pin[:], n.BackboneEndpoint, bbKey, n.Version, micros(now))
		if err != nil {
			return fmt.Errorf("store: add node %s: %w", name, err)
		}
		if n.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: add node %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE join_tokens SET used_at = ?, used_by = ? WHERE id = ?", micros(now), name, r.TokenID); err != nil {
			return fmt.Errorf("store: use join token: %w", err)
		}
		return s.logChange(ctx, tx, "", "node.join", NodeTarget(name), fmt.Sprintf("joined with token #%d: roles %s, region %q, version %s", r.TokenID, n.Roles, n.Region, clean(n.Version, 64)))
	})
	if err != nil {
		return Node{}, err
	}
	return n, nil
}

const nodeSelect = `SELECT id, name, roles, region, cert_pin, backbone_endpoint, coalesce(backbone_public_key, x''), version,
	joined_at, coalesce(last_seen_at, 0), applied_generation, last_report FROM nodes `

func scanNode(scan func(...any) error) (Node, error) {
	var n Node
	var pin, bb []byte
	var joined, seen int64
	if err := scan(&n.ID, &n.Name, &n.Roles, &n.Region, &pin, &n.BackboneEndpoint, &bb, &n.Version, &joined, &seen, &n.AppliedGeneration, &n.LastReport); err != nil {
		return Node{}, err
	}
	copy(n.Pin[:], pin)
	copy(n.BackbonePublicKey[:], bb)
	n.JoinedAt, n.LastSeen = fromMicros(joined), optMicros(seen)
	return n, nil
}

// NodeByPin returns the node whose certificate has pin. The error wraps ErrNotFound when no
// node has it (never joined, or removed).
func (s *Store) NodeByPin(ctx context.Context, pin [32]byte) (Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx, nodeSelect+"WHERE cert_pin = ?", pin[:]).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, errorf(ErrNotFound, "no node has this identity: it was removed, or never joined; join it again with a new token")
	}
	if err != nil {
		return Node{}, fmt.Errorf("store: read node: %w", err)
	}
	return n, nil
}

// Nodes returns every node ordered by name.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	return queryNodes(ctx, s.db)
}

func queryNodes(ctx context.Context, q querier) ([]Node, error) {
	rows, err := q.QueryContext(ctx, nodeSelect+"ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	defer rows.Close()
	out := []Node{}
	for rows.Next() {
		n, err := scanNode(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("store: list nodes: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	return out, nil
}

// ExitDropped is a route that listed a removed node among its exits.
type ExitDropped struct {
	// Route is the route as it is now, without the node; as it was when Removed.
	Route Route
	// Removed: the node was the route's last exit, so the route went with it.
	Removed bool
}

// RemoveNode deletes node name and so its pin: it can no longer authenticate. The token it
// joined with stays (used). Routes that list it as an exit lose it, and a route whose last
// exit it was is removed, all in the same transaction; they are returned in ListRoutes'
// order. Removal is never refused for the routes' sake: removing a node is a revocation (a
// stolen or broken machine), which must not wait until every tenant's routes are edited,
// and a route left without an exit has nowhere to send its traffic. The error wraps
// ErrNotFound when there is no such node.
func (s *Store) RemoveNode(ctx context.Context, name string) (Node, []ExitDropped, error) {
	var n Node
	var dropped []ExitDropped
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = scanNode(tx.QueryRowContext(ctx, nodeSelect+"WHERE name = ?", name).Scan)
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(ErrNotFound, "node %q not found: list nodes with 'popgate node list'", truncate(name, 80))
		}
		if err != nil {
			return fmt.Errorf("store: remove node %s: %w", name, err)
		}
		var before []Route
		if s.version >= routeExitsVersion {
			if before, err = queryRoutes(ctx, tx, `WHERE EXISTS (SELECT 1 FROM route_exits AS e WHERE e.tenant_id = r.tenant_id
				AND e.addr = r.addr AND e.bits = r.bits AND e.node_id = ?) `, n.ID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM nodes WHERE id = ?", n.ID); err != nil {
			return fmt.Errorf("store: remove node %s: %w", name, err)
		}
		for _, r := range before {
			v, _ := ParseVia(r.Via)
			d := ExitDropped{Route: r, Removed: len(v.Exits) == 1}
			if d.Removed {
				addr, bits := prefixArgs(r.Prefix)
				if _, err := tx.ExecContext(ctx, "DELETE FROM routes WHERE tenant_id = ? AND addr = ? AND bits = ?", r.TenantID, addr, bits); err != nil {
					return fmt.Errorf("store: remove route %s: %w", r.Prefix, err)
				}
				if err := s.logChange(ctx, tx, r.TenantName, "route.remove", RouteTarget(r.TenantName, r.Prefix), "was via "+r.Via+"; its last exit, node "+n.Name+", was removed"); err != nil {
					return err
				}
			} else {
				v.Exits = slices.DeleteFunc(v.Exits, func(e string) bool { return e == n.Name })
				d.Route.Via = v.String()
				if err := s.logChange(ctx, tx, r.TenantName, "route.exit_drop", RouteTarget(r.TenantName, r.Prefix), "now via "+d.Route.Via+"; node "+n.Name+" was removed"); err != nil {
					return err
				}
			}
			dropped = append(dropped, d)
		}
		return s.logChange(ctx, tx, "", "node.remove", NodeTarget(n.Name), fmt.Sprintf("roles %s, region %q", n.Roles, n.Region))
	})
	if err != nil {
		return Node{}, nil, err
	}
	return n, dropped, nil
}

// routeExitsVersion is the schema version that added routes via exit nodes.
const routeExitsVersion = 9

// NodeReport is what a node last said of itself.
type NodeReport struct {
	At                time.Time
	Version           string
	AppliedGeneration int64
	// Report, at most MaxNodeReport bytes, is kept as is.
	Report string
}

// RecordNodeReport records node id's report. It is bookkeeping, not desired state: the
// generation stays and nothing is audited. The error wraps ErrNotFound when the node was
// removed, ErrInvalid for a report that is too long.
func (s *Store) RecordNodeReport(ctx context.Context, id int64, r NodeReport) error {
	if len(r.Report) > MaxNodeReport || len(r.Version) > 64 || r.AppliedGeneration < 0 {
		return errorf(ErrInvalid, "node report too long (%d bytes, at most %d) or its generation negative", len(r.Report), MaxNodeReport)
	}
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE nodes SET last_seen_at = ?, version = ?, applied_generation = ?, last_report = ?
			WHERE id = ?`, micros(r.At), clean(r.Version, 64), r.AppliedGeneration, r.Report, id)
		return oneRow(res, err, "node", id)
	})
}

// Membership is a joined node's: the controller it belongs to and what it is there.
type Membership struct {
	ControllerAddr string
	// ControllerPin is the SHA-256 of the controller certificate's SubjectPublicKeyInfo.
	ControllerPin [32]byte
	NodeName      string
	Roles         string
	Region        string
	JoinedAt      time.Time
	// RemovedAt is when the controller removed the node; zero while it is a member.
	RemovedAt time.Time
}

// SetMembership records that this node joined m.ControllerAddr, replacing what was there.
func (s *Store) SetMembership(ctx context.Context, m Membership) error {
	roles, err := ParseNodeRoles(m.Roles)
	if err != nil {
		return err
	}
	if err := ValidateNodeName(m.NodeName); err != nil {
		return err
	}
	if m.ControllerAddr == "" || len(m.ControllerAddr) > 300 || len(m.Region) > maxRegion {
		return errorf(ErrInvalid, "membership: controller address %q or region %q is invalid", truncate(m.ControllerAddr, 80), truncate(m.Region, 80))
	}
	if m.JoinedAt.IsZero() {
		m.JoinedAt = s.now()
	}
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO membership (id, controller_addr, controller_pin, node_name, roles, region, joined_at)
			VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET controller_addr = excluded.controller_addr,
			controller_pin = excluded.controller_pin, node_name = excluded.node_name, roles = excluded.roles,
			region = excluded.region, joined_at = excluded.joined_at, removed_at = NULL`,
			m.ControllerAddr, m.ControllerPin[:], m.NodeName, roles, m.Region, micros(m.JoinedAt))
		if err != nil {
			return fmt.Errorf("store: set membership: %w", err)
		}
		return s.logChange(ctx, tx, "", "node.joined", NodeTarget(m.NodeName), fmt.Sprintf("joined controller %s as %s, roles %s, region %q", m.ControllerAddr, m.NodeName, roles, m.Region))
	})
}

// Membership returns this node's membership. The error wraps ErrNotFound when it never
// joined a controller.
func (s *Store) Membership(ctx context.Context) (Membership, error) {
	var m Membership
	var pin []byte
	var joined, removed int64
	err := s.db.QueryRowContext(ctx, "SELECT controller_addr, controller_pin, node_name, roles, region, joined_at, coalesce(removed_at, 0) FROM membership WHERE id = 1").
		Scan(&m.ControllerAddr, &pin, &m.NodeName, &m.Roles, &m.Region, &joined, &removed)
	if errors.Is(err, sql.ErrNoRows) {
		return Membership{}, errorf(ErrNotFound, "this node has not joined a controller")
	}
	if err != nil {
		return Membership{}, fmt.Errorf("store: read membership: %w", err)
	}
	copy(m.ControllerPin[:], pin)
	m.JoinedAt, m.RemovedAt = fromMicros(joined), optMicros(removed)
	return m, nil
}

// MarkRemoved records that the controller removed this node and forgets the desired state
// it kept, in one transaction: the node serves nothing, also after a restart, until it joins
// again (SetMembership). Without a membership it only forgets the desired state.
func (s *Store) MarkRemoved(ctx context.Context) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM desired_cache"); err != nil {
			return fmt.Errorf("store: forget the desired state: %w", err)
		}
		var name, addr string
		err := tx.QueryRowContext(ctx, "SELECT node_name, controller_addr FROM membership WHERE id = 1").Scan(&name, &addr)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: read membership: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE membership SET removed_at = ? WHERE id = 1", micros(s.now())); err != nil {
			return fmt.Errorf("store: mark the node removed: %w", err)
		}
		return s.logChange(ctx, tx, "", "node.removed", NodeTarget(name), "removed by the controller at "+addr)
	})
}

// adDesired binds a sealed desired state to its row and generation.
const adDesired = "popgate desired cache v1\x00"

func desiredAD(gen int64) []byte {
	return binary.BigEndian.AppendUint64([]byte(adDesired), uint64(gen))
}

// SaveDesired keeps body, the desired state of generation gen a node is about to apply,
// sealed, in place of the one before.
func (s *Store) SaveDesired(ctx context.Context, gen int64, body []byte) error {
	if gen < 0 {
		return errorf(ErrInvalid, "desired state generation %d is negative", gen)
	}
	sealed, err := s.sealBytes(body, desiredAD(gen))
	if err != nil {
		return err
	}
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO desired_cache (id, generation, sealed, saved_at) VALUES (1, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, sealed = excluded.sealed, saved_at = excluded.saved_at`,
			gen, sealed, micros(s.now()))
		if err != nil {
			return fmt.Errorf("store: save desired state: %w", err)
		}
		return nil
	})
}

// LoadDesired returns the desired state SaveDesired kept last, its generation and when it
// was saved. The error wraps ErrNotFound when there is none.
func (s *Store) LoadDesired(ctx context.Context) (gen int64, body []byte, savedAt time.Time, err error) {
	var sealed []byte
	var saved int64
	err = s.db.QueryRowContext(ctx, "SELECT generation, sealed, saved_at FROM desired_cache WHERE id = 1").Scan(&gen, &sealed, &saved)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, time.Time{}, errorf(ErrNotFound, "no desired state is kept")
	}
	if err != nil {
		return 0, nil, time.Time{}, fmt.Errorf("store: read desired state: %w", err)
	}
	body, err = s.openDesired(gen, sealed)
	if err != nil {
		return 0, nil, time.Time{}, err
	}
	return gen, body, fromMicros(saved), nil
}

func (s *Store) openDesired(gen int64, sealed []byte) ([]byte, error) {
	body, err := s.openBytes(sealed, desiredAD(gen))
	if err != nil {
		return nil, fmt.Errorf("store: the kept desired state (generation %d) does not open (%w): it is ignored; the node needs its controller to serve again", gen, err)
	}
	return body, nil
}

// ClearDesired deletes the kept desired state: after a revocation the node must serve
// nothing, also after a restart.
func (s *Store) ClearDesired(ctx context.Context) error {
	return s.writeAuth(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM desired_cache"); err != nil {
			return fmt.Errorf("store: clear desired state: %w", err)
		}
		return nil
	})
}

// SetNodeBackbone records that node id's backbone is reached at endpoint (host:port) with
// key, as the node reports after a restart with another --backbone-endpoint. It is desired
// state (the other nodes' backbone peers change): the generation advances and the change is
// audited under ctx's actor. The error wraps ErrNotFound when the node was removed,
// ErrInvalid for a bad endpoint or key, ErrExists when another node has the key.
func (s *Store) SetNodeBackbone(ctx context.Context, id int64, endpoint string, key Key) (Node, error) {
	if err := ValidateEndpoint(endpoint); err != nil {
		return Node{}, err
	}
	if key == (Key{}) {
		return Node{}, errorf(ErrInvalid, "the node's backbone key is empty")
	}
	var n Node
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = scanNode(tx.QueryRowContext(ctx, nodeSelect+"WHERE id = ?", id).Scan)
		if errors.Is(err, sql.ErrNoRows) {
			return errorf(ErrNotFound, "node #%d not found: it was removed", id)
		}
		if err != nil {
			return fmt.Errorf("store: read node #%d: %w", id, err)
		}
		var other string
		err = tx.QueryRowContext(ctx, "SELECT name FROM nodes WHERE backbone_public_key = ? AND id != ?", key[:], id).Scan(&other)
		if err == nil {
			return errorf(ErrExists, "node %q has this backbone key already", other)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: read nodes: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE nodes SET backbone_endpoint = ?, backbone_public_key = ? WHERE id = ?", endpoint, key[:], id); err != nil {
			return fmt.Errorf("store: set node %s's backbone: %w", n.Name, err)
		}
		what := fmt.Sprintf("backbone endpoint %s (was %s)", endpoint, cmp.Or(n.BackboneEndpoint, "none"))
		if key != n.BackbonePublicKey {
			what += ", new backbone key"
		}
		n.BackboneEndpoint, n.BackbonePublicKey = endpoint, key
		return s.logChange(ctx, tx, "", "node.backbone", NodeTarget(n.Name), what)
	})
	if err != nil {
		return Node{}, err
	}
	return n, nil
}
