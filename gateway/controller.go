package gateway

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// Controller holds the operations admins perform, whichever way they come in (CLI over the
// control socket, JSON API, web UI): one implementation behind all of them. Each change is
// committed to the store and then applied to the device before the call returns.
type Controller struct {
	node  *Node
	store *store.Store
}

// TenantInfo is a tenant and its number of peers. Its MaxFlowsPerPeer and MaxFlows are the
// bounds in force: the tenant's own, or the node's defaults.
type TenantInfo struct {
	store.Tenant
	Peers int
}

// tenantInfo is t with its bounds in force.
func tenantInfo(t store.Tenant, peers int) TenantInfo {
	t.MaxFlowsPerPeer, t.MaxFlows = flowLimits(t)
	return TenantInfo{Tenant: t, Peers: peers}
}

// PeerInfo is a stored peer and its live state in the device.
type PeerInfo struct {
	store.Peer
	Online        bool
	Endpoint      string
	LastHandshake time.Time // zero: never
	RxBytes       uint64    // WireGuard datagram bytes, from the device
	TxBytes       uint64
	// RxPackets and TxPackets count the IP packets the packet path passed from and to the
	// peer since the node started (policy drops excluded).
	RxPackets, TxPackets uint64
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
	// Drops counts packets towards peers that found no peer (node level).
	Drops map[string]uint64
	// ExitSockets are the host sockets the userspace exit's flows hold now, at most
	// ExitSocketBudget (the open files limit less a reserve).
	ExitSockets, ExitSocketBudget int
	// Handshakes are the shared socket's handshake counters (a flood shows here).
	Handshakes HandshakeStatus
	Tenants    []TenantStatus
}

// TenantStatus holds one tenant's counters.
type TenantStatus struct {
	Name                 string
	Peers, Online        int
	RxBytes, TxBytes     uint64
	RxPackets, TxPackets uint64
	Flows                int64
	// ExitTCP, ExitUDP and ExitICMP are the tenant's flows through the userspace exit now
	// (echo requests waiting for a reply for ICMP).
	ExitTCP, ExitUDP, ExitICMP int
	// MaxFlowsPerPeer and MaxFlows are the tenant's bounds in force.
	MaxFlowsPerPeer, MaxFlows int
	// Drops by reason: the packet path's, the exit's refusals at a bound
	// (flow_limit_peer, flow_limit_tenant, flow_limit_node, fd_budget), and the firewall's
	// as "<direction>.<reason>".
	Drops map[string]uint64
	// Evicted counts the tenant's flows that never got a reply, closed early to make room
	// for a new flow: in the exit by the bound that needed room, in the firewall's table as
	// "conntrack".
	Evicted map[string]uint64
	Rules   []firewall.RuleStat
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
	count := map[int64]int{}
	for _, p := range c.node.storedPeers("") {
		count[p.TenantID]++
	}
	out := make([]TenantInfo, len(ts))
	for i, t := range ts {
		out[i] = tenantInfo(t, count[t.ID])
	}
	return out, nil
}

// RemoveTenant deletes a tenant that has no peers left.
func (c *Controller) RemoveTenant(ctx context.Context, name string) error {
	return c.store.RemoveTenant(ctx, name)
}

// AddPeerRequest describes a new peer.
type AddPeerRequest struct {
	Tenant, Name string
	// PublicKey is the user's key; empty: the server generates the key pair and keeps the
	// private key (encrypted) so the config can be printed again.
	PublicKey string
	Groups    []string
	// Site and SitePrefixes make the peer a site connector: its LAN prefixes are reached
	// through it.
	Site         string
	SitePrefixes []netip.Prefix
}

// AddPeer creates a peer and returns it with its wg-quick config (with a placeholder for the
// private key when the user brought the key). The peer can connect when AddPeer returns.
func (c *Controller) AddPeer(ctx context.Context, req AddPeerRequest) (PeerInfo, string, error) {
	np := store.NewPeer{TenantName: req.Tenant, Name: req.Name, Groups: req.Groups, Site: req.Site, SitePrefixes: req.SitePrefixes}
	var priv store.Key
	if req.PublicKey != "" {
		k, err := store.ParseKey(req.PublicKey)
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
	cc, err := c.clientConfig(ctx, p, pk)
	if err != nil {
		return PeerInfo{}, "", err
	}
	return PeerInfo{Peer: p}, cc.render(), nil
}

// SetPeerGroups replaces the peer's groups; policy that names them applies at once.
func (c *Controller) SetPeerGroups(ctx context.Context, tenant, name string, groups []string) (PeerInfo, error) {
	if _, err := c.store.SetPeerGroups(ctx, tenant, name, groups); err != nil {
		return PeerInfo{}, err
	}
	if err := c.node.Reconcile(ctx); err != nil {
		return PeerInfo{}, err
	}
	return c.Peer(ctx, tenant, name)
}

// SetPeerSite makes the peer the connector of site with LAN prefixes, or (site "") an
// ordinary peer again.
func (c *Controller) SetPeerSite(ctx context.Context, tenant, name, site string, prefixes []netip.Prefix) (PeerInfo, error) {
	if _, err := c.store.SetPeerSite(ctx, tenant, name, site, prefixes); err != nil {
		return PeerInfo{}, err
	}
	if err := c.node.Reconcile(ctx); err != nil {
		return PeerInfo{}, err
	}
	return c.Peer(ctx, tenant, name)
}

// Policy returns the tenant's policy file; isDefault when the tenant never set one.
func (c *Controller) Policy(ctx context.Context, tenant string) (text string, isDefault bool, err error) {
	text, _, err = c.store.Policy(ctx, tenant)
	if err != nil {
		return "", false, err
	}
	if text == "" {
		return c.node.defaultPolicy(), true, nil
	}
	return text, false, nil
}

// SetPolicy validates a policy file against the tenant's peers, groups and sites and applies
// it within the call. Every mistake is reported with its line; nothing is stored then. Names of
// groups, peers and sites the tenant does not have (yet) are no mistake: the policy is set,
// they match nothing until they exist, and each is returned as a warning with its line. A text
// larger than store.MaxPolicySize is refused before it is parsed. The audit log records the
// number of rules and the text's digest.
func (c *Controller) SetPolicy(ctx context.Context, tenant, text string) (*firewall.RuleSet, []firewall.Problem, error) {
	if _, err := c.store.Tenant(ctx, tenant); err != nil {
		return nil, nil, err
	}
	if len(text) > store.MaxPolicySize {
		return nil, nil, invalidError{fmt.Errorf("the policy has %d bytes, at most %d (%d MiB) are allowed: say the same with fewer rules, using groups and CIDRs",
			len(text), store.MaxPolicySize, store.MaxPolicySize>>20)}
	}
	peers, err := c.store.ListPeers(ctx, tenant)
	if err != nil {
		return nil, nil, err
	}
	rs, warnings, err := checkPolicy(text, peers)
	if err != nil {
		return nil, nil, err
	}
	if err := c.store.SetPolicy(ctx, tenant, text, rs.Len()); err != nil {
		return nil, nil, err
	}
	return rs, warnings, c.node.Reconcile(ctx)
}

// PolicyWarnings lists what the tenant's policy names that the tenant does not have: groups
// without peers, peers and sites that do not exist. Those rules match nothing until they do.
func (c *Controller) PolicyWarnings(ctx context.Context, tenant string) ([]firewall.Problem, error) {
	text, _, err := c.store.Policy(ctx, tenant)
	if err != nil || text == "" {
		return nil, err // the default policy names nothing
	}
	peers, err := c.store.ListPeers(ctx, tenant)
	if err != nil {
		return nil, err
	}
	_, warnings, err := checkPolicy(text, peers)
	if errors.Is(err, store.ErrInvalid) {
		return nil, nil // a stored policy that no longer compiles is the log's to report
	}
	return warnings, err
}

// checkPolicy compiles text for a tenant with peers. Unknown groups, peers and sites are
// warnings; any other problem is an error wrapping store.ErrInvalid that lists them all.
func checkPolicy(text string, peers []store.Peer) (*firewall.RuleSet, []firewall.Problem, error) {
	rs, err := compilePolicy(text, peers)
	if err == nil {
		return rs, nil, nil
	}
	pe, ok := errors.AsType[*firewall.PolicyError](err)
	if rs == nil || !ok || !errors.Is(err, firewall.ErrUnresolved) {
		return nil, nil, invalidError{err}
	}
	warnings := slices.Clone(pe.Problems)
	if pe.More > 0 {
		warnings = append(warnings, firewall.Problem{Msg: fmt.Sprintf("and %d more names the tenant does not have", pe.More)})
	}
	return rs, warnings, nil
}

// Routes lists the tenant's routes, longest prefix first.
func (c *Controller) Routes(ctx context.Context, tenant string) ([]store.Route, error) {
	if _, err := c.store.Tenant(ctx, tenant); err != nil {
		return nil, err
	}
	return c.store.ListRoutes(ctx, tenant)
}

// AddRoute sends the tenant's traffic for prefix through via ("internet" or "site:NAME").
func (c *Controller) AddRoute(ctx context.Context, tenant string, prefix netip.Prefix, via string) (store.Route, error) {
	r, err := c.store.AddRoute(ctx, tenant, prefix, via)
	if err != nil {
		return r, err
	}
	return r, c.node.Reconcile(ctx)
}

// RemoveRoute deletes the tenant's route for prefix.
func (c *Controller) RemoveRoute(ctx context.Context, tenant string, prefix netip.Prefix) error {
	if _, err := c.store.RemoveRoute(ctx, tenant, prefix); err != nil {
		return err
	}
	return c.node.Reconcile(ctx)
}

// SetTenantSplitTunnel switches the tenant's client configs between all traffic and only
// the tenant's routes. Configs already handed out change only when re-imported.
func (c *Controller) SetTenantSplitTunnel(ctx context.Context, tenant string, on bool) (TenantInfo, error) {
	t, err := c.store.SetTenantSplitTunnel(ctx, tenant, on)
	if err != nil {
		return TenantInfo{}, err
	}
	n, err := c.store.CountPeers(ctx, tenant)
	return tenantInfo(t, n), err
}

// SetTenantLimits changes the tenant's flow bounds (nil: unchanged, 0: the node's default);
// they apply to new flows when it returns. Flows above a lowered bound stay until they end.
func (c *Controller) SetTenantLimits(ctx context.Context, tenant string, l store.TenantLimits) (TenantInfo, error) {
	t, err := c.store.SetTenantLimits(ctx, tenant, l)
	if err != nil {
		return TenantInfo{}, err
	}
	if err := c.node.Reconcile(ctx); err != nil {
		return TenantInfo{}, err
	}
	n, err := c.store.CountPeers(ctx, tenant)
	return tenantInfo(t, n), err
}

// invalidError marks a validation failure (→ HTTP 400) whose own message is the one to show.
type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{store.ErrInvalid, e.err} }

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
	return c.withStats(c.node.storedPeers(tenant)), nil
}

// Peers is ListPeers one peer at a time, in the same order: nothing is built up front, so a
// caller that writes each peer out as it comes holds one, not 100,000. The peers are those of
// the last reconcile and their live state is read when Peers is called; every range over the
// sequence yields the same peers.
func (c *Controller) Peers(ctx context.Context, tenant string) (iter.Seq[PeerInfo], error) {
	if tenant != "" {
		if _, err := c.store.Tenant(ctx, tenant); err != nil {
			return nil, err
		}
	}
	all := c.node.storedPeers("") // shared and never modified: no copy, no filtered slice
	live := c.live()
	return func(yield func(PeerInfo) bool) {
		for i := range all {
			if tenant != "" && all[i].TenantName != tenant {
				continue
			}
			if !yield(live.info(all[i])) {
				return
			}
		}
	}, nil
}

func (c *Controller) withStats(ps []store.Peer) []PeerInfo {
	live := c.live()
	out := make([]PeerInfo, len(ps))
	for i, p := range ps {
		out[i] = live.info(p)
	}
	return out
}

// liveState is the peers' state in the devices and the packet path, read once for a listing.
type liveState struct {
	stats map[store.Key]peerStats
	snap  *snapshot
	now   time.Time
}

func (c *Controller) live() liveState {
	return liveState{stats: c.node.peerStats(), snap: c.node.snap.Load(), now: time.Now()}
}

// info is the stored peer p with its live state.
func (l *liveState) info(p store.Peer) PeerInfo {
	pi := PeerInfo{Peer: p}
	if e := l.snap.byKey[p.PublicKey]; e != nil {
		pi.RxPackets, pi.TxPackets = e.ctr.rxPackets.Load(), e.ctr.txPackets.Load()
	}
	if s, ok := l.stats[p.PublicKey]; ok && p.Enabled && !p.Expired(l.now) {
		pi.Online = s.online(l.now)
		pi.Endpoint = s.endpoint
		pi.LastHandshake = s.lastHandshake
		pi.RxBytes, pi.TxBytes = s.rxBytes, s.txBytes
	}
	return pi
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
	cc, err := c.clientConfig(ctx, p, pk)
	if err != nil {
		return "", err
	}
	return cc.render(), nil
}

// RotatePeerKey gives the peer name of tenant a new key and returns it with its new wg-quick
// config. With publicKey "" the server generates the key pair (and can print the config
// again), which needs a peer whose key the server generated: a peer created from its user's
// public key needs the new public key (ErrInvalid otherwise). The old key is refused from the
// moment RotatePeerKey returns: its session is dropped from the device; the device connects
// again once it has the new config.
func (c *Controller) RotatePeerKey(ctx context.Context, tenant, name, publicKey string) (PeerInfo, string, error) {
	var priv, pub *store.Key
	if publicKey != "" {
		k, err := store.ParseKey(publicKey)
		if err != nil {
			return PeerInfo{}, "", err
		}
		pub = &k
	} else {
		p, err := c.store.Peer(ctx, tenant, name)
		if err != nil {
			return PeerInfo{}, "", err
		}
		if !p.HasPrivateKey {
			return PeerInfo{}, "", invalidError{fmt.Errorf("peer %q of tenant %q was created from its user's public key and popgate holds no private key for it: give the new public key (popgate peer rotate --public-key KEY)", name, tenant)}
		}
		k, err := store.GeneratePrivateKey()
		if err != nil {
			return PeerInfo{}, "", err
		}
		priv = &k
	}
	p, err := c.store.RotatePeerKey(ctx, tenant, name, priv, pub)
	if err != nil {
		return PeerInfo{}, "", err
	}
	if err := c.node.Reconcile(ctx); err != nil {
		return PeerInfo{}, "", err
	}
	cc, err := c.clientConfig(ctx, p, priv)
	if err != nil {
		return PeerInfo{}, "", err
	}
	return PeerInfo{Peer: p}, cc.render(), nil
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
	ps := n.storedPeers("")
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
	if n.mux != nil {
		st.Handshakes = handshakeStatus(n.mux.Stats())
	}
	st.Drops = map[string]uint64{}
	for r := dropReason(0); r < numDropReasons; r++ {
		if v := n.drops[r].Load(); v > 0 {
			st.Drops[r.String()] = v
		}
	}
	tenants, err := c.store.ListTenants(ctx)
	if err != nil {
		return Status{}, err
	}
	es := n.exit.Stats()
	st.ExitSockets, st.ExitSocketBudget = es.HostSockets, es.FDBudget
	exitFlows := n.exit.TenantFlows()
	st.Tenants = make([]TenantStatus, 0, len(tenants)) // byID points into it: no reallocation
	byID := map[int64]*TenantStatus{}
	for _, t := range tenants {
		ts := TenantStatus{Name: t.Name, Drops: map[string]uint64{}, Evicted: map[string]uint64{}}
		ts.MaxFlowsPerPeer, ts.MaxFlows = flowLimits(t)
		if fs, ok := n.filter.TenantStats(t.ID); ok {
			ts.Flows = fs.Flows
			ts.Rules = fs.Rules
			for dir, m := range fs.Drops {
				for reason, v := range m {
					if v > 0 {
						ts.Drops[dir+"."+reason] = v
					}
				}
			}
			if fs.Evicted > 0 {
				ts.Evicted["conntrack"] = fs.Evicted
			}
		}
		if ef, ok := exitFlows[t.ID]; ok {
			ts.ExitTCP, ts.ExitUDP, ts.ExitICMP = ef.TCP, ef.UDP, ef.ICMP
			maps.Copy(ts.Drops, ef.Refused)
			maps.Copy(ts.Evicted, ef.Evicted)
		}
		n.mu.Lock()
		if td := n.devs[t.ID]; td != nil {
			for r, v := range td.tun.dropCounts() {
				if v > 0 {
					ts.Drops[r] = v
				}
			}
		}
		n.mu.Unlock()
		st.Tenants = append(st.Tenants, ts)
		byID[t.ID] = &st.Tenants[len(st.Tenants)-1]
	}
	stats := n.peerStats()
	snap := n.snap.Load()
	now := time.Now()
	for _, p := range ps {
		ts := byID[p.TenantID]
		if ts != nil {
			ts.Peers++
			if e := snap.byKey[p.PublicKey]; e != nil {
				ts.RxPackets += e.ctr.rxPackets.Load()
				ts.TxPackets += e.ctr.txPackets.Load()
			}
		}
		if !p.Enabled || p.Expired(now) {
			continue
		}
		st.PeersEnabled++
		if s, ok := stats[p.PublicKey]; ok {
			online := s.online(now)
			if online {
				st.PeersOnline++
			}
			st.RxBytes += s.rxBytes
			st.TxBytes += s.txBytes
			if ts != nil {
				if online {
					ts.Online++
				}
				ts.RxBytes += s.rxBytes
				ts.TxBytes += s.txBytes
			}
		}
	}
	return st, nil
}

// clientConfig assembles the wg-quick file of peer p; priv is nil when the user holds the key.
// A site connector routes only the overlay through the tunnel (its LAN stays local) and uses
// no DNS of ours; a peer of a split-tunnel tenant routes the overlay and the tenant's routes
// other than the default ones; everyone else routes everything.
func (c *Controller) clientConfig(ctx context.Context, p store.Peer, priv *store.Key) (clientConfig, error) {
	n := c.node
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
	if p.Site != "" {
		cc.Site = p.Site
		cc.AllowedIPs = []netip.Prefix{n.ov.v4, n.ov.v6}
		return cc, nil
	}
	if len(n.cfg.DNSUpstreams) > 0 {
		cc.DNS = []netip.Addr{n.ov.gw4, n.ov.gw6}
	}
	t, err := c.store.Tenant(ctx, p.TenantName)
	if err != nil {
		return cc, err
	}
	if t.SplitTunnel {
		routes, err := c.store.ListRoutes(ctx, p.TenantName)
		if err != nil {
			return cc, err
		}
		cc.AllowedIPs = []netip.Prefix{n.ov.v4, n.ov.v6}
		for _, r := range routes {
			if r.Prefix.Bits() > 0 {
				cc.AllowedIPs = append(cc.AllowedIPs, r.Prefix)
			}
		}
	}
	return cc, nil
}

// String helps logs.
func (p PeerInfo) String() string { return fmt.Sprintf("%s/%s", p.TenantName, p.Name) }
