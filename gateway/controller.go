package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/popgate/popgate/store"
)

// Controller holds the operations admins perform, whichever way they come in (CLI over the
// control socket, JSON API, web UI): one implementation behind all of them. Each change is
// committed to the store and then applied to the device before the call returns.
type Controller struct {
	node  *Node
	store *store.Store
}

// TenantInfo is a tenant and its number of peers.
type TenantInfo struct {
	store.Tenant
	Peers int
}

// PeerInfo is a stored peer and its live state in the device.
type PeerInfo struct {
	store.Peer
	Online        bool
	Endpoint      string
	LastHandshake time.Time // zero: never
	RxBytes       uint64
	TxBytes       uint64
}

// Status describes the running node.
type Status struct {
	NodeName       string
	Version        string
	Roles          []string
	Region         string
	StartedAt      time.Time
	Interface      string
	PublicKey      store.Key
	ListenPort     int
	PublicEndpoint string
	MTU            int
	ExitMode       string
	Addresses      []netip.Addr
	UAPISocket     string
	PeersTotal     int
	PeersEnabled   int
	PeersOnline    int
	RxBytes        uint64
	TxBytes        uint64
	Drops          map[string]uint64
}

// AddTenant creates a tenant.
func (c *Controller) AddTenant(ctx context.Context, name string) (store.Tenant, error) {
	return c.store.AddTenant(ctx, name)
}

// ListTenants returns every tenant with its peer count.
func (c *Controller) ListTenants(ctx context.Context) ([]TenantInfo, error) {
	ts, err := c.store.ListTenants(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]TenantInfo, len(ts))
	for i, t := range ts {
		n, err := c.store.CountPeers(ctx, t.Name)
		if err != nil {
			return nil, err
		}
		out[i] = TenantInfo{Tenant: t, Peers: n}
	}
	return out, nil
}

// RemoveTenant deletes a tenant that has no peers left.
func (c *Controller) RemoveTenant(ctx context.Context, name string) error {
	return c.store.RemoveTenant(ctx, name)
}

// AddPeer creates a peer in tenant. With publicKey empty the server generates the key pair and
// keeps the private key (encrypted) so the config can be printed again; otherwise publicKey is
// the user's and the config carries a placeholder for the private key. It returns the peer and
// its wg-quick config; the peer can connect when AddPeer returns.
func (c *Controller) AddPeer(ctx context.Context, tenant, name, publicKey string) (PeerInfo, string, error) {
	np := store.NewPeer{TenantName: tenant, Name: name}
	var priv store.Key
	if publicKey != "" {
		k, err := store.ParseKey(publicKey)
		if err != nil {
			return PeerInfo{}, "", err
		}
		np.PublicKey = &k
	} else {
		var err error
		if priv, err = store.GeneratePrivateKey(); err != nil {
			return PeerInfo{}, "", err
		}
		np.PrivateKey = &priv
	}
	p, err := c.store.AddPeer(ctx, np)
	if err != nil {
		return PeerInfo{}, "", err
	}
	if err := c.node.Reconcile(ctx); err != nil {
		return PeerInfo{}, "", err
	}
	var pk *store.Key
	if np.PrivateKey != nil {
		pk = &priv
	}
	return PeerInfo{Peer: p}, c.node.clientConfig(p, pk).render(), nil
}

// Peer returns one peer with its live state.
func (c *Controller) Peer(ctx context.Context, tenant, name string) (PeerInfo, error) {
	p, err := c.store.Peer(ctx, tenant, name)
	if err != nil {
		return PeerInfo{}, err
	}
	return c.withStats([]store.Peer{p})[0], nil
}

// ListPeers returns the peers of tenant (every tenant when tenant is empty) with live state.
func (c *Controller) ListPeers(ctx context.Context, tenant string) ([]PeerInfo, error) {
	if tenant != "" {
		if _, err := c.store.Tenant(ctx, tenant); err != nil {
			return nil, err
		}
	}
	ps, err := c.store.ListPeers(ctx, tenant)
	if err != nil {
		return nil, err
	}
	return c.withStats(ps), nil
}

func (c *Controller) withStats(ps []store.Peer) []PeerInfo {
	stats := c.node.peerStats()
	now := time.Now()
	out := make([]PeerInfo, len(ps))
	for i, p := range ps {
		pi := PeerInfo{Peer: p}
		if s, ok := stats[p.PublicKey]; ok && p.Enabled {
			pi.Online = s.online(now)
			pi.Endpoint = s.endpoint
			pi.LastHandshake = s.lastHandshake
			pi.RxBytes, pi.TxBytes = s.rxBytes, s.txBytes
		}
		out[i] = pi
	}
	return out
}

// PeerConfig renders the peer's wg-quick config again.
func (c *Controller) PeerConfig(ctx context.Context, tenant, name string) (string, error) {
	p, err := c.store.Peer(ctx, tenant, name)
	if err != nil {
		return "", err
	}
	var pk *store.Key
	if p.HasPrivateKey {
		k, err := c.store.PeerPrivateKey(ctx, tenant, name)
		if err != nil {
			return "", err
		}
		pk = &k
	}
	return c.node.clientConfig(p, pk).render(), nil
}

// SetPeerEnabled enables or disables a peer; a disabled peer is removed from the device at once
// and keeps its addresses and keys.
func (c *Controller) SetPeerEnabled(ctx context.Context, tenant, name string, enabled bool) (PeerInfo, error) {
	p, err := c.store.SetPeerEnabled(ctx, tenant, name, enabled)
	if err != nil {
		return PeerInfo{}, err
	}
	if err := c.node.Reconcile(ctx); err != nil {
		return PeerInfo{}, err
	}
	return PeerInfo{Peer: p}, nil
}

// RemovePeer deletes a peer; it loses access at once and its addresses become free.
func (c *Controller) RemovePeer(ctx context.Context, tenant, name string) error {
	if _, err := c.store.RemovePeer(ctx, tenant, name); err != nil {
		return err
	}
	return c.node.Reconcile(ctx)
}

// Status reports the node, its device and its peers.
func (c *Controller) Status(ctx context.Context) (Status, error) {
	n := c.node
	ps, err := c.store.ListPeers(ctx, "")
	if err != nil {
		return Status{}, err
	}
	st := Status{
		NodeName:       n.cfg.NodeName,
		Version:        n.cfg.Version,
		Roles:          []string{"controller", "pop", "exit"},
		Region:         n.cfg.Region,
		StartedAt:      n.startedAt,
		Interface:      n.cfg.Interface,
		PublicKey:      n.key.PublicKey(),
		ListenPort:     n.cfg.ListenPort,
		PublicEndpoint: n.cfg.PublicEndpoint,
		MTU:            n.cfg.MTU,
		ExitMode:       n.cfg.ExitMode,
		Addresses:      []netip.Addr{n.ov.gw4, n.ov.gw6},
		UAPISocket:     n.uapiPath,
		PeersTotal:     len(ps),
	}
	if n.tun != nil {
		st.Drops = n.tun.dropCounts()
	}
	stats := n.peerStats()
	now := time.Now()
	for _, p := range ps {
		if !p.Enabled {
			continue
		}
		st.PeersEnabled++
		if s, ok := stats[p.PublicKey]; ok {
			if s.online(now) {
				st.PeersOnline++
			}
			st.RxBytes += s.rxBytes
			st.TxBytes += s.txBytes
		}
	}
	return st, nil
}

// clientConfig assembles the wg-quick file of peer p; priv is nil when the user holds the key.
func (n *Node) clientConfig(p store.Peer, priv *store.Key) clientConfig {
	cc := clientConfig{
		Tenant:          p.TenantName,
		Peer:            p.Name,
		Region:          n.cfg.Region,
		PrivateKey:      priv,
		Addresses:       []netip.Addr{p.IPv4, p.IPv6},
		MTU:             n.cfg.MTU,
		ServerPublicKey: n.key.PublicKey(),
		Endpoint:        n.cfg.PublicEndpoint,
		AllowedIPs:      []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	}
	if len(n.cfg.DNSUpstreams) > 0 {
		cc.DNS = []netip.Addr{n.ov.gw4, n.ov.gw6}
	}
	return cc
}

// String helps logs.
func (p PeerInfo) String() string { return fmt.Sprintf("%s/%s", p.TenantName, p.Name) }
