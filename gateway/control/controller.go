// Package control is the controller: the operations admins perform, client configs, and the
// publication of desired state to the data plane.
package control

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// DataPlane is what the controller needs of a node: apply a desired state, report back. The
// appliance's own node (gateway.Node) is one; a remote node is reached through one.
type DataPlane interface {
	// Apply makes the node's data plane match d; d is not modified afterwards.
	Apply(ctx context.Context, d *plane.Desired) error
	// Report returns the node's live state and counters.
	Report() plane.Report
	// PeerState returns what Report says of one peer, and whether it says anything, at the
	// cost of that peer rather than of the whole report.
	PeerState(k store.Key) (plane.PeerState, bool)
}

// Config configures a Controller; New calls Validate. The node's settings that client
// configs repeat (ListenPort, MTU, Region) have no defaults here: they are the node's, and
// serve passes them (their defaults live in gateway).
type Config struct {
	// PublicEndpoint is the host:port written into client configs. Default: the first
	// global unicast address of the host (IPv4 first) and ListenPort.
	PublicEndpoint string
	// ListenPort is the node's UDP port, for the default PublicEndpoint. Required without
	// a PublicEndpoint.
	ListenPort int
	// MTU is the tunnel MTU written into client configs: the node's. Required.
	MTU int
	// Region names the region client configs are for: the node's. Required.
	Region string
	// ClientDNS makes client configs use the node's in-tunnel DNS (its overlay addresses):
	// set it when the node has resolvers to forward to. Default false: no DNS line.
	ClientDNS bool
	// RetryEvery is how often a desired state that failed to reach the data plane is
	// published again. Default 5 s.
	RetryEvery time.Duration
	// Nodes, when set, lets nodes join this controller (see nodes.go). Default nil: the
	// appliance alone.
	Nodes *NodesConfig
	// Backbone is the controller's own node's backbone, when it runs one (see
	// BackboneConfig). Default: none.
	Backbone BackboneConfig
	// Roles are the node's roles, for status. Default: controller, pop and exit (the
	// appliance).
	Roles []string
	// Events tunes the events and the webhook (events.go). Default: the zero value's.
	Events EventsConfig
	// TrafficSampleEvery is how often the controller reads its own node's counters for the
	// traffic history (joined nodes' come with their reports). Default 5 s.
	TrafficSampleEvery time.Duration
}

// Validate fills defaults and rejects bad values with a message naming the field and the fix.
func (c *Config) Validate() error {
	if c.PublicEndpoint == "" && (c.ListenPort < 1 || c.ListenPort > 65535) {
		return fmt.Errorf("control: Config.ListenPort %d is out of range: pass the node's port (1-65535), or a PublicEndpoint", c.ListenPort)
	}
	if c.MTU < 1280 {
		return fmt.Errorf("control: Config.MTU %d is below 1280: pass the node's tunnel MTU", c.MTU)
	}
	if c.Region == "" {
		return errors.New("control: Config.Region is empty: pass the node's region")
	}
	if len(c.Roles) == 0 {
		c.Roles = []string{"controller", plane.RolePoP, plane.RoleExit}
	}
	if c.RetryEvery == 0 {
		c.RetryEvery = 5 * time.Second
	}
	c.Events.validate()
	if c.TrafficSampleEvery == 0 {
		c.TrafficSampleEvery = 5 * time.Second
	}
	if c.TrafficSampleEvery < 0 {
		return fmt.Errorf("control: Config.TrafficSampleEvery %s is negative: pass a period, or 0 for the default", c.TrafficSampleEvery)
	}
	if c.PublicEndpoint != "" {
		if err := ValidateEndpoint(c.PublicEndpoint); err != nil {
			return err
		}
	}
	if c.Backbone.Endpoint != "" || !c.Backbone.PublicKey.IsZero() {
		if c.Backbone.PublicKey.IsZero() {
			return errors.New("control: Config.Backbone has an endpoint but no public key: pass the backbone's public key")
		}
		if err := store.ValidateEndpoint(c.Backbone.Endpoint); err != nil {
			return fmt.Errorf("control: Config.Backbone.Endpoint: %w", err)
		}
		if c.Backbone.Name == "" {
			c.Backbone.Name = "controller"
		}
		if err := store.ValidateNodeName(c.Backbone.Name); err != nil {
			return fmt.Errorf("control: Config.Backbone.Name: %w", err)
		}
		if c.Backbone.Roles == nil {
			c.Backbone.Roles = []string{plane.RolePoP, plane.RoleExit}
		}
	}
	return nil
}

// Controller holds the operations admins perform, whichever way they come in (CLI over the
// control socket, JSON API, web UI): one implementation behind all of them. Each change is
// committed to the store and then published to the data plane before the call returns. A
// committed change is a done change: when the data plane fails to apply it, the call still
// succeeds, the failure is logged and shown in Status, and the state is published again with
// the next change and every Config.RetryEvery until it applies.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store
	dp    DataPlane
	// Fixed at New: the installation's overlay and the key clients' configs name.
	overlay   plane.Overlay
	serverKey store.Key

	// pubMu serialises publications, so that the data plane gets generations in order.
	pubMu sync.Mutex
	// read is the desired state as last published: listings are served from it, so that a
	// page of 10,000 peers needs no database read. Never modified once stored.
	read atomic.Pointer[store.Snapshot]
	// published is the outcome of the last publication.
	published atomic.Pointer[publication]

	// changedMu guards changedCh, closed at each publication (Changed).
	changedMu sync.Mutex
	changedCh chan struct{}

	// now is the clock of the traffic history; time.Now but in tests.
	now func() time.Time
	// traffic samples the nodes' counters for the traffic history (traffic.go);
	// trafficMu is held to read the history and, exclusively, to write it, so that a read
	// sees each delta once: pending or stored.
	traffic   *trafficSampler
	trafficMu sync.RWMutex

	// where is where peers are (NodeReported); ids maps the published peers' keys to IDs.
	where where
	idsMu sync.Mutex
	ids   struct {
		snap *store.Snapshot
		m    map[store.Key]int64
	}

	// ev is the event log's side of the controller (events.go).
	ev events
	// results takes the nodes' check results to the store (checks.go); ownChecks: the
	// controller's own node runs checks, whose results it reads itself.
	results   checkResults
	ownChecks atomic.Bool
	// ownDNSLogSeq is the newest query of the own node's log recorded (dns.go); only
	// ownDNSLog's goroutine touches it.
	ownDNSLogSeq uint64
	// fetchSem bounds the blocklist fetches under way (blocklists.go).
	fetchSem chan struct{}

	closing   chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// publication is the outcome of publishing a desired state.
type publication struct {
	gen int64 // generation published
	err error // why it did not reach the data plane; nil when it did
}

// New returns a controller for the desired state in st, published to dp. Start publishes it
// the first time.
func New(cfg Config, st *store.Store, dp DataPlane, log *slog.Logger) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil || dp == nil {
		return nil, errors.New("control: New needs a store and a data plane")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.PublicEndpoint == "" {
		cfg.PublicEndpoint = net.JoinHostPort(defaultHost(), strconv.Itoa(cfg.ListenPort))
		log.Warn("no public endpoint set: client configs will use a guess; set --public-endpoint to the host:port clients reach", "endpoint", cfg.PublicEndpoint)
	}
	c := &Controller{cfg: cfg, log: log, store: st, dp: dp, serverKey: st.NodePublicKey(), closing: make(chan struct{}),
		changedCh: make(chan struct{}), results: newCheckResults(), fetchSem: make(chan struct{}, maxFetches),
		now: time.Now, traffic: newTrafficSampler(time.Now())}
	c.ev.queue = make(chan store.Event, maxQueuedEvents)
	c.overlay.V4, c.overlay.V6 = st.OverlayPrefixes()
	c.overlay.Gateway4, c.overlay.Gateway6 = st.GatewayAddrs()
	c.published.Store(&publication{})
	return c, nil
}

// Start records the controller's own region (Config.Region, with the node key and
// Config.PublicEndpoint) when it changed, publishes the desired state to the data plane and returns when it is applied, or
// why it could not be; then it keeps publishing again after failures until Close.
func (c *Controller) Start(ctx context.Context) error {
	if err := c.ensureHomeRegion(ctx); err != nil {
		return err
	}
	if err := c.publish(ctx); err != nil {
		return err
	}
	if err := c.startEvents(ctx); err != nil {
		return err
	}
	c.every(c.cfg.RetryEvery, c.retry)
	c.every(ownChecksEvery, c.ownCheckReport)
	c.every(ownDNSLogEvery, c.ownDNSLog)
	c.every(dnsLogPruneEvery, c.pruneDNSLog)
	c.every(refreshEvery, c.refreshDue)
	if c.cfg.Backbone.on() {
		c.every(time.Second, c.ownReport)
	}
	c.wg.Add(2)
	go c.resultsLoop()
	go c.trafficLoop()
	return nil
}

// Close stops publishing and waits for a publication under way, then stops the events'
// writer and watch and the webhook's sender (an attempt under way ends first). Idempotent.
func (c *Controller) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.where.mu.Lock()
		if c.where.timer != nil && c.where.timer.Stop() {
			c.wg.Done() // publishWhere will not run
		}
		c.where.mu.Unlock()
		c.wg.Wait()
		c.closeEvents()
	})
	return nil
}

// Config returns the controller's configuration, defaults filled in.
func (c *Controller) Config() Config { return c.cfg }

// every calls f every d, on a goroutine of its own, until the controller closes: Close
// waits for a call under way.
func (c *Controller) every(d time.Duration, f func(now time.Time)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-c.closing:
				return
			case now := <-t.C:
				f(now)
			}
		}
	}()
}

// retry publishes again when the last publication failed (every RetryEvery).
func (c *Controller) retry(time.Time) {
	if c.published.Load().err == nil {
		return
	}
	if err := c.publish(context.Background()); err == nil {
		c.log.Info("the desired state reached the data plane again", "generation", c.published.Load().gen)
	}
}

// publish reads the desired state and hands it to the data plane. It carries on when ctx is
// cancelled: the change it publishes is stored already.
func (c *Controller) publish(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	snap, err := c.store.Snapshot(ctx)
	if err != nil {
		err = fmt.Errorf("read the desired state: %w", err)
		c.published.Store(&publication{gen: c.published.Load().gen, err: err})
		return err
	}
	c.read.Store(&snap)
	c.notifyChanged() // remote nodes read c.read
	d := c.desiredFor(&snap, c.cfg.Region)
	if c.cfg.Backbone.on() {
		c.withBackbone(d, &snap, plane.ControllerNode)
	}
	d.Checks = checksFor(&snap, c.ownCheckNode())
	c.ownChecks.Store(len(d.Checks) > 0)
	err = c.dp.Apply(ctx, d)
	if err != nil {
		err = fmt.Errorf("apply generation %d: %w", snap.Generation, err)
	}
	c.published.Store(&publication{gen: snap.Generation, err: err})
	return err
}

// changed publishes a change that is committed: a failure to apply it is logged (and shown
// in Status), not returned, and publish runs again with the next change or retry.
func (c *Controller) changed(ctx context.Context) {
	if err := c.publish(ctx); err != nil {
		c.log.Error("a change is stored but the data plane did not apply it; publishing it again every "+c.cfg.RetryEvery.String(), "err", err)
	}
}

// storedPeers returns the peers as last published (every change publishes), of one tenant or
// (tenant "") all, ordered by tenant and name. The slice is shared: read only.
func (c *Controller) storedPeers(tenant string) []store.Peer {
	snap := c.read.Load()
	if snap == nil {
		return nil
	}
	if tenant == "" {
		return snap.Peers
	}
	var out []store.Peer
	for _, p := range snap.Peers {
		if p.TenantName == tenant {
			out = append(out, p)
		}
	}
	return out
}

// flowLimits returns tenant t's bounds in force on the flows of one peer and of the tenant.
func flowLimits(t store.Tenant) (perPeer, total int) {
	return plane.Tenant{MaxFlowsPerPeer: t.MaxFlowsPerPeer, MaxFlows: t.MaxFlows}.FlowLimits()
}

// TenantInfo is a tenant and its number of peers. Its MaxFlowsPerPeer and MaxFlows are the
// bounds in force: the tenant's own, or the node's defaults.
type TenantInfo struct {
	store.Tenant
	Peers int
	// Regions are the regions the tenant is limited to, sorted; nil: every region.
	Regions []string
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
	for _, p := range c.storedPeers("") {
		count[p.TenantID]++
	}
	var regions map[int64][]string
	if snap := c.read.Load(); snap != nil {
		regions = snap.TenantRegions
	}
	out := make([]TenantInfo, len(ts))
	for i, t := range ts {
		out[i] = tenantInfo(t, count[t.ID])
		out[i].Regions = regions[t.ID]
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
	// Region is the region the returned config connects to; "": the controller's own. A
	// region the tenant is not allowed in is refused before anything is stored.
	Region string
}

// AddPeer creates a peer and returns it with its wg-quick config (with a placeholder for the
// private key when the user brought the key). The peer can connect when AddPeer returns.
func (c *Controller) AddPeer(ctx context.Context, req AddPeerRequest) (PeerInfo, string, error) {
	target, err := c.configRegion(ctx, req.Tenant, req.Region)
	if err != nil {
		return PeerInfo{}, "", err
	}
	np := store.NewPeer{TenantName: req.Tenant, Name: req.Name, Groups: req.Groups, Site: req.Site, SitePrefixes: req.SitePrefixes}
	var priv store.Key
	if req.PublicKey != "" {
		k, err := store.ParseKey(req.PublicKey)
		if err != nil {
			return PeerInfo{}, "", err
		}
		np.PublicKey = &k
	} else {
		if priv, err = store.GeneratePrivateKey(); err != nil {
			return PeerInfo{}, "", err
		}
		np.PrivateKey = &priv
	}
	p, err := c.store.AddPeer(ctx, np)
	if err != nil {
		return PeerInfo{}, "", err
	}
	c.changed(ctx)
	var pk *store.Key
	if np.PrivateKey != nil {
		pk = &priv
	}
	cc, err := c.clientConfig(ctx, p, pk, target)
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
	c.changed(ctx)
	return c.Peer(ctx, tenant, name)
}

// SetPeerSite makes the peer the connector of site with LAN prefixes, or (site "") an
// ordinary peer again.
func (c *Controller) SetPeerSite(ctx context.Context, tenant, name, site string, prefixes []netip.Prefix) (PeerInfo, error) {
	if _, err := c.store.SetPeerSite(ctx, tenant, name, site, prefixes); err != nil {
		return PeerInfo{}, err
	}
	c.changed(ctx)
	return c.Peer(ctx, tenant, name)
}

// Policy returns the tenant's policy file; isDefault when the tenant never set one.
func (c *Controller) Policy(ctx context.Context, tenant string) (text string, isDefault bool, err error) {
	text, _, err = c.store.Policy(ctx, tenant)
	if err != nil {
		return "", false, err
	}
	if text == "" {
		return plane.DefaultPolicy(c.overlay), true, nil
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
	c.changed(ctx)
	return rs, warnings, nil
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

// compilePolicy parses and compiles a tenant's policy text against its peers and sites.
// Every problem is an error: the rule set is returned as well when only references are
// unresolved (they then match nothing).
func compilePolicy(text string, peers []store.Peer) (*firewall.RuleSet, error) {
	pol, err := firewall.Parse(text)
	if err != nil {
		return nil, err
	}
	// The view the node compiles the policy against in the end, of the same peers.
	pp := make([]plane.Peer, len(peers))
	for i := range peers {
		pp[i] = plane.PeerOf(&peers[i])
	}
	view := plane.PolicyView(pp)
	return firewall.Compile(pol, &view)
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
	c.changed(ctx)
	return r, nil
}

// RemoveRoute deletes the tenant's route for prefix.
func (c *Controller) RemoveRoute(ctx context.Context, tenant string, prefix netip.Prefix) error {
	if _, err := c.store.RemoveRoute(ctx, tenant, prefix); err != nil {
		return err
	}
	c.changed(ctx)
	return nil
}

// SetTenantSplitTunnel switches the tenant's client configs between all traffic and only
// the tenant's routes. Configs already handed out change only when re-imported.
func (c *Controller) SetTenantSplitTunnel(ctx context.Context, tenant string, on bool) (TenantInfo, error) {
	if _, err := c.store.SetTenantSplitTunnel(ctx, tenant, on); err != nil {
		return TenantInfo{}, err
	}
	return c.tenantInfo(ctx, tenant)
}

// SetTenantDomain sets the DNS domain of the tenant's peer names ("": the default,
// <tenant>.internal); every PoP answers the new names within the publication.
func (c *Controller) SetTenantDomain(ctx context.Context, tenant, domain string) (TenantInfo, error) {
	if _, err := c.store.SetTenantDomain(ctx, tenant, domain); err != nil {
		return TenantInfo{}, err
	}
	c.changed(ctx)
	return c.tenantInfo(ctx, tenant)
}

// SetTenantLimits changes the tenant's flow bounds (nil: unchanged, 0: the node's default);
// they apply to new flows when it returns. Flows above a lowered bound stay until they end.
func (c *Controller) SetTenantLimits(ctx context.Context, tenant string, l store.TenantLimits) (TenantInfo, error) {
	if _, err := c.store.SetTenantLimits(ctx, tenant, l); err != nil {
		return TenantInfo{}, err
	}
	c.changed(ctx)
	return c.tenantInfo(ctx, tenant)
}

// invalidError marks a validation failure (→ HTTP 400) whose own message is the one to show.
type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{store.ErrInvalid, e.err} }

// Peer returns one peer with its live state, asking the data plane about that peer alone
// (DataPlane.PeerState): its cost does not grow with the other peers.
func (c *Controller) Peer(ctx context.Context, tenant, name string) (PeerInfo, error) {
	p, err := c.store.Peer(ctx, tenant, name)
	if err != nil {
		return PeerInfo{}, err
	}
	live := liveState{now: time.Now()}
	if st, ok := c.dp.PeerState(p.PublicKey); ok {
		live.peers = map[store.Key]*plane.PeerState{p.PublicKey: &st}
	}
	return live.info(p), nil
}

// ListPeers returns the peers of tenant (every tenant when tenant is empty) with live state.
func (c *Controller) ListPeers(ctx context.Context, tenant string) ([]PeerInfo, error) {
	if tenant != "" {
		if _, err := c.store.Tenant(ctx, tenant); err != nil {
			return nil, err
		}
	}
	return c.withStats(c.storedPeers(tenant)), nil
}

// Peers is ListPeers one peer at a time, in the same order: nothing is built up front, so a
// caller that writes each peer out as it comes holds one, not 100,000. The peers are those
// last published and their live state is read when Peers is called; every range over the
// sequence yields the same peers.
func (c *Controller) Peers(ctx context.Context, tenant string) (iter.Seq[PeerInfo], error) {
	if tenant != "" {
		if _, err := c.store.Tenant(ctx, tenant); err != nil {
			return nil, err
		}
	}
	all := c.storedPeers("") // shared and never modified: no copy, no filtered slice
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

// liveState is the peers' state on the node, from one report, for a listing.
type liveState struct {
	peers map[store.Key]*plane.PeerState
	now   time.Time
}

func (c *Controller) live() liveState {
	return liveOf(c.dp.Report().Peers)
}

func liveOf(peers []plane.PeerState) liveState {
	l := liveState{peers: make(map[store.Key]*plane.PeerState, len(peers)), now: time.Now()}
	for i := range peers {
		l.peers[peers[i].PublicKey] = &peers[i]
	}
	return l
}

// info is the stored peer p with its live state. A peer that is disabled or expired shows no
// session, whatever the node still reports of it.
func (l *liveState) info(p store.Peer) PeerInfo {
	pi := PeerInfo{Peer: p}
	s := l.peers[p.PublicKey]
	if s == nil {
		return pi
	}
	// Counters since the node started, kept while the peer is disabled.
	pi.RxPackets, pi.TxPackets = s.RxPackets, s.TxPackets
	pi.RxBytes, pi.TxBytes = s.RxBytes, s.TxBytes
	if p.Enabled && !p.Expired(l.now) {
		pi.Online = s.Online
		pi.Endpoint = s.Endpoint
		pi.LastHandshake = s.LastHandshake
	}
	return pi
}

// PeerConfig renders the peer's wg-quick config again, for region ("": the controller's
// own): the same key and addresses everywhere, the region's endpoint and server key. A
// region the tenant is not allowed in is refused (ErrInvalid), naming the fix.
func (c *Controller) PeerConfig(ctx context.Context, tenant, name, region string) (string, error) {
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
	target, err := c.configRegion(ctx, tenant, region)
	if err != nil {
		return "", err
	}
	cc, err := c.clientConfig(ctx, p, pk, target)
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
// again once it has the new config, which is for region ("": the controller's own; one the
// tenant is not allowed in is refused before the key changes).
func (c *Controller) RotatePeerKey(ctx context.Context, tenant, name, publicKey, region string) (PeerInfo, string, error) {
	target, err := c.configRegion(ctx, tenant, region)
	if err != nil {
		return PeerInfo{}, "", err
	}
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
	c.changed(ctx)
	cc, err := c.clientConfig(ctx, p, priv, target)
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
	c.changed(ctx)
	return PeerInfo{Peer: p}, nil
}

// RemovePeer deletes a peer; it loses access at once and its addresses become free.
func (c *Controller) RemovePeer(ctx context.Context, tenant, name string) error {
	if _, err := c.store.RemovePeer(ctx, tenant, name); err != nil {
		return err
	}
	c.changed(ctx)
	return nil
}

// clientConfig assembles the wg-quick file of peer p for the region target; priv is nil when
// the user holds the key.
// A site connector routes only the overlay through the tunnel (its LAN stays local) and uses
// no DNS of ours; a peer of a split-tunnel tenant routes the overlay and the tenant's routes
// other than the default ones; everyone else routes everything.
func (c *Controller) clientConfig(ctx context.Context, p store.Peer, priv *store.Key, target regionTarget) (clientConfig, error) {
	ov := c.overlay
	cc := clientConfig{
		Tenant:          p.TenantName,
		Peer:            p.Name,
		Region:          target.name,
		PrivateKey:      priv,
		Addresses:       []netip.Addr{p.IPv4, p.IPv6},
		MTU:             c.cfg.MTU,
		ServerPublicKey: target.key,
		Endpoint:        target.endpoint,
		AllowedIPs:      []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	}
	if p.Site != "" {
		cc.Site = p.Site
		cc.AllowedIPs = []netip.Prefix{ov.V4, ov.V6}
		return cc, nil
	}
	if c.cfg.ClientDNS {
		cc.DNS = []netip.Addr{ov.Gateway4, ov.Gateway6}
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
		cc.AllowedIPs = []netip.Prefix{ov.V4, ov.V6}
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
