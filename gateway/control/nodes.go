package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/popgate/popgate/gateway/nodesync"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// NodesConfig lets nodes join the controller.
type NodesConfig struct {
	// Addr is the host:port nodes reach the controller's node listener at, written into
	// join tokens. Required.
	Addr string
	// Pin is the controller certificate's pin, written into join tokens. Required.
	Pin nodesync.Pin
	// Links returns the nodes with a sync stream now, by name. Default: none.
	Links func() map[string]nodesync.Link
}

// Join tokens live at least a minute and at most a week; an hour by default.
const (
	DefaultNodeTokenLife = time.Hour
	MaxNodeTokenLife     = 7 * 24 * time.Hour
)

// ErrNoNodes is wrapped by the errors of node operations on a controller that does not
// accept nodes.
var ErrNoNodes = errors.New("this controller does not accept nodes")

func (c *Controller) nodesConfig() (*NodesConfig, error) {
	if c.cfg.Nodes == nil {
		return nil, invalidError{fmt.Errorf("%w: start it with --controller-addr HOST:PORT (the address nodes reach it at)", ErrNoNodes)}
	}
	return c.cfg.Nodes, nil
}

// NodeToken makes a one-time join token for a node with roles ("pop", "exit", "pop,exit") in
// region ("" for a PoP: the controller's own region; none for an exit-only node), named name
// (optional), valid for life (0: DefaultNodeTokenLife), and returns it as the line a node
// joins with.
func (c *Controller) NodeToken(ctx context.Context, roles, region, name string, life time.Duration) (string, store.JoinToken, error) {
	nc, err := c.nodesConfig()
	if err != nil {
		return "", store.JoinToken{}, err
	}
	if life == 0 {
		life = DefaultNodeTokenLife
	}
	if life < time.Minute || life > MaxNodeTokenLife {
		return "", store.JoinToken{}, invalidError{fmt.Errorf("a join token may live from a minute to %d days, not %s: give another --expires", int(MaxNodeTokenLife/(24*time.Hour)), life)}
	}
	roles, err = store.ParseNodeRoles(roles)
	if err != nil {
		return "", store.JoinToken{}, err
	}
	if region == "" && roles != store.RoleExit {
		region = c.cfg.Region
	}
	if region != "" {
		if _, err := c.store.Region(ctx, region); err != nil && region != c.cfg.Region {
			return "", store.JoinToken{}, err
		}
	}
	jt, secret, err := c.store.CreateJoinToken(ctx, store.NewJoinToken{Roles: roles, Region: region, Name: name, ExpiresAt: time.Now().Add(life)})
	if err != nil {
		return "", store.JoinToken{}, err
	}
	tok := nodesync.Token{Addr: nc.Addr, Pin: nc.Pin, ID: jt.ID, Secret: secret, Expires: jt.ExpiresAt}
	return tok.Encode(), jt, nil
}

// NodeInfo is a node as the node list shows it.
type NodeInfo struct {
	store.Node
	// Connected: it has a sync stream now, since ConnectedSince.
	Connected      bool
	ConnectedSince time.Time
	// Current is the generation of the desired state published now; the node is in sync
	// when its AppliedGeneration has reached it.
	Current int64
	// ApplyError is why the node could not apply the last desired state it was sent.
	ApplyError string
	// BackboneID is its backbone ID; Links its backbone links as it last reported them.
	BackboneID uint32
	Links      []plane.LinkState
}

// Nodes returns the nodes that joined, ordered by name.
func (c *Controller) Nodes(ctx context.Context) ([]NodeInfo, error) {
	ns, err := c.store.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var links map[string]nodesync.Link
	if c.cfg.Nodes != nil && c.cfg.Nodes.Links != nil {
		links = c.cfg.Nodes.Links()
	}
	cur := c.published.Load().gen
	out := make([]NodeInfo, len(ns))
	for i, n := range ns {
		out[i] = NodeInfo{Node: n, Current: cur, BackboneID: nodeID(n)}
		if n.LastReport != "" {
			var rep struct {
				Links []plane.LinkState `json:"links"`
			}
			if json.Unmarshal([]byte(n.LastReport), &rep) == nil {
				out[i].Links = rep.Links
			}
		}
		if l, ok := links[n.Name]; ok {
			out[i].Connected, out[i].ConnectedSince, out[i].ApplyError = true, l.Since, l.ApplyError
			if l.Applied > out[i].AppliedGeneration {
				out[i].AppliedGeneration = l.Applied
			}
		}
	}
	return out, nil
}

// SetNodeBackbone records node n's backbone as it reports it now (a node that joined without
// --backbone-endpoint, or moved) and publishes the change: the other nodes' backbone peers
// follow. The change is audited as the node's own.
func (c *Controller) SetNodeBackbone(ctx context.Context, n store.Node, endpoint string, key store.Key) (store.Node, error) {
	ctx = store.WithActor(ctx, store.Actor{Name: store.NodeTarget(n.Name), Remote: "node sync"})
	updated, err := c.store.SetNodeBackbone(ctx, n.ID, endpoint, key)
	if err != nil {
		return store.Node{}, err
	}
	c.changed(ctx)
	return updated, nil
}

// RemoveNode revokes node name: its stream closes at once, it can no longer sync, and it is
// in no node's desired state any more. It returns the routes that listed it as an exit
// (store.Store.RemoveNode): they lost it, or went with it when it was their last exit.
func (c *Controller) RemoveNode(ctx context.Context, name string) ([]store.ExitDropped, error) {
	_, dropped, err := c.store.RemoveNode(ctx, name)
	if err != nil {
		return nil, err
	}
	c.changed(ctx)
	return dropped, nil
}

// NodeDesired returns the desired state of node n: its region's (DesiredFor), with the
// region's private key. A PoP of the controller's own region gets the node key, which that
// region's clients know. Self is n's backbone ID (its store ID + 1), Nodes the other nodes
// with a backbone (the controller's own when it runs one), and PeerNodes where peers are.
func (c *Controller) NodeDesired(ctx context.Context, n store.Node) (*plane.Desired, error) {
	snap, err := c.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(snap.Nodes, func(x store.Node) bool { return x.ID == n.ID }) {
		// A node that joined since the last publication: publish, so that the other
		// nodes (and this one) know it (its backbone, the checks it runs and answers).
		c.changed(ctx)
		if snap, err = c.snapshot(ctx); err != nil {
			return nil, err
		}
	}
	d, err := c.desiredForSnap(ctx, snap, n.Region)
	if err != nil {
		return nil, err
	}
	if id := nodeID(n); id <= plane.MaxNodeID {
		c.withBackbone(d, snap, id)
	}
	d.Checks = checksFor(snap, joinedCheckNode(n))
	if d.RegionKey == nil && n.Roles != store.RoleExit {
		k, err := c.store.NodePrivateKey(ctx)
		if err != nil {
			return nil, err
		}
		d.RegionKey = &k
	}
	return d, nil
}

// Changed returns a channel closed at the next publication of the desired state.
func (c *Controller) Changed() <-chan struct{} {
	c.changedMu.Lock()
	defer c.changedMu.Unlock()
	return c.changedCh
}

func (c *Controller) notifyChanged() {
	c.changedMu.Lock()
	close(c.changedCh)
	c.changedCh = make(chan struct{})
	c.changedMu.Unlock()
}

var _ nodesync.Source = (*Controller)(nil)
