package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// SetPeerGroups replaces the groups of the peer name of tenant with groups and returns the
// peer as stored. Group names follow the peer-name rule; duplicates are dropped; at most
// MaxPeerGroups remain. An empty list takes the peer out of every group. Giving the groups
// it already has changes nothing, not even UpdatedAt. The error wraps ErrInvalid for a bad
// name or too many groups and ErrNotFound when the tenant or peer does not exist.
func (s *Store) SetPeerGroups(ctx context.Context, tenant, name string, groups []string) (Peer, error) {
	groups, err := normGroups(name, groups)
	if err != nil {
		return Peer{}, err
	}
	var p Peer
	err = s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if p, err = getPeer(ctx, tx, tenant, name); err != nil {
			return err
		}
		if slices.Equal(p.Groups, groups) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM peer_groups WHERE peer_id = ?", p.ID); err != nil {
			return fmt.Errorf("store: update groups of peer %s: %w", name, err)
		}
		if err := insertGroups(ctx, tx, p.ID, groups); err != nil {
			return err
		}
		now := fromMicros(micros(s.now()))
		if err := touchPeer(ctx, tx, p.ID, now); err != nil {
			return err
		}
		p.Groups, p.UpdatedAt = groups, now
		return s.logChange(ctx, tx, tenant, "peer.update", PeerTarget(tenant, name), groupsDetail(groups))
	})
	if err != nil {
		return Peer{}, err
	}
	return p, nil
}

// normGroups checks the groups given for the peer named peer and returns them sorted without
// duplicates; nil when there are none.
func normGroups(peer string, groups []string) ([]string, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	for _, g := range groups {
		if err := ValidateGroupName(g); err != nil {
			return nil, err
		}
	}
	gs := slices.Compact(slices.Sorted(slices.Values(groups)))
	if len(gs) > MaxPeerGroups {
		return nil, errorf(ErrInvalid, "peer %q would be in %d groups, at most %d are allowed: drop some, or merge groups that are used alike", peer, len(gs), MaxPeerGroups)
	}
	return slices.Clip(gs), nil
}

// insertGroups adds the peer with id to groups.
func insertGroups(ctx context.Context, tx *sql.Tx, id int64, groups []string) error {
	if len(groups) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO peer_groups (peer_id, name) VALUES (?, ?)")
	if err != nil {
		return fmt.Errorf("store: add groups: %w", err)
	}
	defer stmt.Close()
	for _, g := range groups {
		if _, err := stmt.ExecContext(ctx, id, g); err != nil {
			return fmt.Errorf("store: add group %s: %w", g, err)
		}
	}
	return nil
}

// groupsDetail words a peer's groups for the audit log: "groups eng,ops" or "no groups".
func groupsDetail(groups []string) string {
	if len(groups) == 0 {
		return "no groups"
	}
	return "groups " + strings.Join(groups, ",")
}
