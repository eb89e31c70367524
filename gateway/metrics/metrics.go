// Package metrics exposes a node's report (plane.Report) as Prometheus metrics, and says
// whether the node is ready to serve.
package metrics

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/popgate/popgate/gateway/plane"
)

// Facts are what the metrics and readiness need to know of a node beyond its report: who
// hands it its desired state, and how current that is. serve fills them for the appliance
// from its controller; a node that joined a controller fills them from its node sync.
type Facts struct {
	// Roles are the node's roles (controller, pop, exit).
	Roles []string
	// DesiredGeneration is the generation of the newest desired state the node knows of
	// (its controller's last publication); 0 while there is none.
	DesiredGeneration int64
	// PublishError says why the newest desired state did not reach the node ("" when it
	// did).
	PublishError string
	// StaleSince is when the node lost its controller, and so may serve a desired state
	// older than the controller's; zero while it is current (always in the appliance).
	StaleSince time.Time
	// EventsDropped counts the events (plane.Event) the node dropped before its controller
	// had them, or the controller before it recorded them: more came than it could keep.
	EventsDropped uint64
}

// Node is a node that joined the controller, as the controller's node list shows it.
type Node struct {
	Name string
	// Connected: it has a sync stream with the controller now.
	Connected bool
	// LastSeen is when its last report arrived; zero while none did.
	LastSeen time.Time
	// AppliedGeneration is the generation of the last desired state it applied.
	AppliedGeneration int64
}

// Config is what a Collector reads at each scrape.
type Config struct {
	// Report returns the node's report. Required.
	Report func() plane.Report
	// Facts returns the node's facts; nil: none (roles unknown, no desired state known).
	Facts func() Facts
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Nodes returns the nodes that joined the node's controller, for the node families
	// (popgate_nodes, popgate_node_…); nil on a node without the controller role: no node
	// families. An error fails the scrape.
	Nodes func() ([]Node, error)
	// MaxPeerSeries, when above 0, adds per-peer series (labels tenant and peer) for at most
	// that many peers: the first by tenant and name. The others have none, and
	// popgate_peers_without_series counts them. Default 0: no per-peer series. At most
	// MaxPeerSeriesLimit.
	MaxPeerSeries int
}

// MaxPeerSeriesLimit bounds Config.MaxPeerSeries: six series a peer.
const MaxPeerSeriesLimit = 10_000

// MaxRuleSeries bounds the policy rules a tenant has series of: its first MaxRuleSeries
// rules, each with its index, then the rest summed as rule="other", and the default.
const MaxRuleSeries = 100

// Collector builds the node's metrics from its report at each scrape. Their cardinality is
// bounded: per node, per reason (fixed sets), per tenant, per tenant rule up to
// MaxRuleSeries, per other node (backbone links; on a controller, the nodes that joined it);
// there are no per-peer series unless MaxPeerSeries asks for them.
type Collector struct {
	cfg Config
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector for cfg.
func New(cfg Config) (*Collector, error) {
	if cfg.Report == nil {
		return nil, errors.New("metrics: Config.Report is nil: pass the node's Report")
	}
	if cfg.MaxPeerSeries < 0 || cfg.MaxPeerSeries > MaxPeerSeriesLimit {
		return nil, fmt.Errorf("metrics: Config.MaxPeerSeries is %d: use 0 (no per-peer series) to %d", cfg.MaxPeerSeries, MaxPeerSeriesLimit)
	}
	if cfg.Facts == nil {
		cfg.Facts = func() Facts { return Facts{} }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Collector{cfg: cfg}, nil
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("popgate_"+name, help, labels, nil)
}

// The families. Counters count since the process started (plane.Report); gauges are now.
var (
	buildInfo = desc("build_info", "The popgate build: 1, labelled with its version and the Go version.", "version", "goversion")
	nodeInfo  = desc("node_info", "The node: 1, labelled with its name, region and roles (comma-separated).", "name", "region", "roles")
	startTime = desc("start_time_seconds", "When the node started serving, in seconds since the Unix epoch.")
	uptime    = desc("uptime_seconds", "How long the node has served.")

	desiredGeneration = desc("desired_generation", "Generation of the newest desired state the node knows of.")
	appliedGeneration = desc("applied_generation", "Generation of the desired state the node applied in full last.")
	applyFailing      = desc("desired_apply_failing", "1 when the node could not apply the newest desired state (see popgate status), else 0.")
	eventsDropped     = desc("events_dropped_total", "Events (link down, failover, …) dropped before they were recorded: more came than the node or controller could keep.")
	desiredStaleness  = desc("desired_staleness_seconds", "How long the node has served without its controller (its desired state may be old); 0 while current.")
	ready             = desc("ready", "1 when the node is ready to serve, as /readyz says (device up, newest desired state applied), else 0.")

	hsInitiations = desc("handshake_initiations_total", "Well-formed WireGuard handshake initiations received on the shared socket.")
	hsRouted      = desc("handshake_initiations_routed_total", "Handshake initiations handed to the device of the initiator's tenant.")
	hsCookies     = desc("handshake_cookie_replies_total", "Handshake initiations answered with a cookie reply (under load, without a valid mac2).")
	hsRejected    = desc("handshake_initiations_rejected_total", "Handshake initiations dropped, by reason.", "reason")
	hsUnderLoad   = desc("handshake_under_load", "1 while handshake initiations need a valid mac2 (the node is under load), else 0.")
	hsQueued      = desc("handshake_initiations_queued", "Handshake initiations waiting for the handshake workers.")

	dnsQueries    = desc("dns_queries_total", "Queries to the in-tunnel resolver, by what became of them: local (a tenant's names, the overlay's reverse), cache, forwarded, blocked (NXDOMAIN: on one of the tenant's blocklists), split (to a tenant's split zone's server), failed (SERVFAIL), rate_limited, malformed.", "result")
	dnsLogDropped = desc("dns_log_dropped_total", "Queries of tenants whose DNS query log is on that the node dropped before the controller had them: more came than its log holds (10,000) while the controller was away or slow.")

	rxBytes    = desc("received_bytes_total", "WireGuard datagram bytes received from peers, removed peers included.")
	txBytes    = desc("sent_bytes_total", "WireGuard datagram bytes sent to peers, removed peers included.")
	rxPackets  = desc("received_packets_total", "IP packets from peers the packet path passed (policy drops excluded).")
	txPackets  = desc("sent_packets_total", "IP packets towards peers the packet path passed (policy drops excluded).")
	nodeDrops  = desc("undeliverable_packets_total", "Packets towards peers that found no peer, by reason.", "reason")
	online     = desc("peers_online", "Peers with a handshake in the last 3 minutes.")
	exitSocks  = desc("exit_sockets", "Host sockets the userspace exit's flows hold.")
	exitBudget = desc("exit_sockets_max", "Host sockets the userspace exit may hold (the open files limit less a reserve).")
	exitRetx   = desc("exit_tcp_retransmits_total", "TCP segments the userspace exit sent again towards clients (loss on the client leg).")
	exitRTO    = desc("exit_tcp_timeouts_total", "Retransmission timeouts of the userspace exit's TCP towards clients: losses repaired only after a timer, each stalling its flow.")

	tRxBytes       = desc("tenant_received_bytes_total", "WireGuard datagram bytes received from the tenant's peers.", "tenant")
	tTxBytes       = desc("tenant_sent_bytes_total", "WireGuard datagram bytes sent to the tenant's peers.", "tenant")
	tRxPackets     = desc("tenant_received_packets_total", "IP packets from the tenant's peers the packet path passed.", "tenant")
	tTxPackets     = desc("tenant_sent_packets_total", "IP packets towards the tenant's peers the packet path passed.", "tenant")
	tFlows         = desc("tenant_tracked_flows", "Connections the tenant's firewall tracks.", "tenant")
	tExitFlows     = desc("tenant_exit_flows", "The tenant's flows through the userspace exit, by protocol.", "tenant", "protocol")
	tDrops         = desc("tenant_dropped_packets_total", "The tenant's dropped packets, by reason (the firewall's as direction.reason).", "tenant", "reason")
	tEvicted       = desc("tenant_evicted_flows_total", "The tenant's flows without a reply closed early to make room, by the bound that needed it.", "tenant", "bound")
	pRxBytes       = desc("peer_received_bytes_total", "WireGuard datagram bytes received from the peer (--metrics-peers).", "tenant", "peer")
	pTxBytes       = desc("peer_sent_bytes_total", "WireGuard datagram bytes sent to the peer (--metrics-peers).", "tenant", "peer")
	pRxPackets     = desc("peer_received_packets_total", "IP packets from the peer the packet path passed (--metrics-peers).", "tenant", "peer")
	pTxPackets     = desc("peer_sent_packets_total", "IP packets towards the peer the packet path passed (--metrics-peers).", "tenant", "peer")
	pOnline        = desc("peer_online", "1 while the peer has a session (a handshake in the last 3 minutes), else 0 (--metrics-peers).", "tenant", "peer")
	pHandshake     = desc("peer_last_handshake_timestamp_seconds", "When the peer last completed a handshake, in seconds since the Unix epoch (--metrics-peers).", "tenant", "peer")
	pWithoutSeries = desc("peers_without_series", "Peers the node reports that have no per-peer series: past --metrics-peers.")

	linkUp          = desc("backbone_link_up", "The backbone link to the node: 1 up, 0 down, -1 unknown (a new link its probes have not judged yet).", "node")
	linkRTT         = desc("backbone_link_rtt_seconds", "Smoothed round trip of the probes on the backbone link to the node; absent before the first answer.", "node")
	linkLoss        = desc("backbone_link_loss_ratio", "Fraction of the latest probes (up to 100) on the backbone link to the node that went unanswered.", "node")
	linkTransitions = desc("backbone_link_transitions_total", "Times the backbone link to the node became up or down (label to), since this node made the link.", "node", "to")

	nodes         = desc("nodes", "Nodes that joined the controller, by state: connected (a sync stream now), offline (reported before, no stream now), never (never reported).", "state")
	nodeConnected = desc("node_connected", "1 while the node has a sync stream with the controller, else 0.", "node")
	nodeApplied   = desc("node_applied_generation", "Generation of the desired state the node applied last, as it reported.", "node")
	nodeLastSeen  = desc("node_last_seen_timestamp_seconds", "When the node's last report reached the controller, in seconds since the Unix epoch; absent before its first.", "node")

	tRuleHits = desc("tenant_policy_rule_hits_total", "New flows each rule of the tenant's policy decided, by rule index (from 0), other (past the first 100) and default; a changed rule starts again.", "tenant", "rule")
)

// Describe sends every family's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{buildInfo, nodeInfo, startTime, uptime,
		desiredGeneration, appliedGeneration, applyFailing, desiredStaleness, eventsDropped, ready,
		hsInitiations, hsRouted, hsCookies, hsRejected, hsUnderLoad, hsQueued, dnsQueries, dnsLogDropped,
		rxBytes, txBytes, rxPackets, txPackets, nodeDrops, online, exitSocks, exitBudget, exitRetx, exitRTO,
		tRxBytes, tTxBytes, tRxPackets, tTxPackets, tFlows, tExitFlows, tDrops, tEvicted, tRuleHits,
		linkUp, linkRTT, linkLoss, linkTransitions} {
		ch <- d
	}
	if c.cfg.Nodes != nil {
		for _, d := range []*prometheus.Desc{nodes, nodeConnected, nodeApplied, nodeLastSeen} {
			ch <- d
		}
	}
	if c.cfg.MaxPeerSeries > 0 {
		for _, d := range []*prometheus.Desc{pRxBytes, pTxBytes, pRxPackets, pTxPackets, pOnline, pHandshake, pWithoutSeries} {
			ch <- d
		}
	}
}

// Collect reads the report and the facts and sends the metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	r := c.cfg.Report()
	f := c.cfg.Facts()
	now := c.cfg.Now()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	bool01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	byReason := func(d *prometheus.Desc, m map[string]uint64, labels ...string) {
		for reason, v := range m {
			counter(d, v, append(labels, reason)...)
		}
	}

	n := &r.Node
	gauge(buildInfo, 1, n.Version, runtime.Version())
	gauge(nodeInfo, 1, n.Name, n.Region, strings.Join(f.Roles, ","))
	if !n.StartedAt.IsZero() {
		gauge(startTime, float64(n.StartedAt.UnixNano())/1e9)
		gauge(uptime, max(now.Sub(n.StartedAt).Seconds(), 0))
	}
	gauge(desiredGeneration, float64(max(f.DesiredGeneration, r.Generation)))
	gauge(appliedGeneration, float64(r.Generation))
	gauge(applyFailing, bool01(r.ApplyError != "" || f.PublishError != ""))
	stale := 0.0
	if !f.StaleSince.IsZero() {
		stale = max(now.Sub(f.StaleSince).Seconds(), 0)
	}
	gauge(desiredStaleness, stale)
	counter(eventsDropped, f.EventsDropped)
	gauge(ready, bool01(Ready(r, f, now, 0) == nil))

	hs := &n.Handshakes
	counter(hsInitiations, hs.Initiations)
	counter(hsRouted, hs.Routed)
	counter(hsCookies, hs.CookieReplies)
	byReason(hsRejected, hs.Drops)
	gauge(hsUnderLoad, bool01(hs.UnderLoad))
	gauge(hsQueued, float64(hs.Queued))

	byReason(dnsQueries, map[string]uint64{"local": n.DNS.Local, "cache": n.DNS.CacheHits, "forwarded": n.DNS.Forwarded, "blocked": n.DNS.Blocked,
		"split": n.DNS.Split, "failed": n.DNS.Failed, "rate_limited": n.DNS.RateLimited, "malformed": n.DNS.Malformed})
	counter(dnsLogDropped, n.DNS.LogDropped)

	counter(rxBytes, n.Traffic.RxBytes)
	counter(txBytes, n.Traffic.TxBytes)
	counter(rxPackets, n.Traffic.RxPackets)
	counter(txPackets, n.Traffic.TxPackets)
	byReason(nodeDrops, n.Drops)
	gauge(exitSocks, float64(n.ExitSockets))
	gauge(exitBudget, float64(n.ExitSocketBudget))
	counter(exitRetx, n.ExitTCPRetransmits)
	counter(exitRTO, n.ExitTCPTimeouts)

	peersOnline := 0
	for i := range r.Peers {
		if r.Peers[i].Online {
			peersOnline++
		}
	}
	gauge(online, float64(peersOnline))

	for i := range r.Tenants {
		t := &r.Tenants[i]
		name := t.Name
		if name == "" {
			name = strconv.FormatInt(t.ID, 10)
		}
		counter(tRxBytes, t.Traffic.RxBytes, name)
		counter(tTxBytes, t.Traffic.TxBytes, name)
		counter(tRxPackets, t.Traffic.RxPackets, name)
		counter(tTxPackets, t.Traffic.TxPackets, name)
		gauge(tFlows, float64(t.Flows), name)
		gauge(tExitFlows, float64(t.ExitTCP), name, "tcp")
		gauge(tExitFlows, float64(t.ExitUDP), name, "udp")
		gauge(tExitFlows, float64(t.ExitICMP), name, "icmp")
		byReason(tDrops, t.Drops, name)
		byReason(tEvicted, t.Evicted, name)
		c.ruleHits(ch, name, t.Rules)
	}
	if c.cfg.MaxPeerSeries > 0 {
		c.peers(ch, r.Peers)
	}
	links(ch, r.Links)
	if c.cfg.Nodes != nil {
		c.nodes(ch)
	}
}

// links sends the backbone links' series, labelled with the name of the node each reaches
// (its ID when the report has no name).
func links(ch chan<- prometheus.Metric, ls []plane.LinkState) {
	seen := make(map[string]bool, len(ls))
	for i := range ls {
		l := &ls[i]
		name := l.Name
		if name == "" {
			name = strconv.FormatUint(uint64(l.Node), 10)
		}
		if seen[name] {
			continue // a rename under way: two IDs with one name, for a moment
		}
		seen[name] = true
		up := -1.0
		switch l.State {
		case plane.LinkUp:
			up = 1
		case plane.LinkDown:
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(linkUp, prometheus.GaugeValue, up, name)
		if l.RTT > 0 {
			ch <- prometheus.MustNewConstMetric(linkRTT, prometheus.GaugeValue, l.RTT.Seconds(), name)
		}
		ch <- prometheus.MustNewConstMetric(linkLoss, prometheus.GaugeValue, l.Loss, name)
		ch <- prometheus.MustNewConstMetric(linkTransitions, prometheus.CounterValue, float64(l.Ups), name, plane.LinkUp)
		ch <- prometheus.MustNewConstMetric(linkTransitions, prometheus.CounterValue, float64(l.Downs), name, plane.LinkDown)
	}
}

// nodes sends the series of the nodes that joined the controller: how many are in each
// state, and each one's.
func (c *Collector) nodes(ch chan<- prometheus.Metric) {
	ns, err := c.cfg.Nodes()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(nodes, fmt.Errorf("the node list: %w", err))
		return
	}
	var connected, offline, never int
	for i := range ns {
		n := &ns[i]
		on := 0.0
		switch {
		case n.Connected:
			connected++
			on = 1
		case n.LastSeen.IsZero():
			never++
		default:
			offline++
		}
		ch <- prometheus.MustNewConstMetric(nodeConnected, prometheus.GaugeValue, on, n.Name)
		ch <- prometheus.MustNewConstMetric(nodeApplied, prometheus.GaugeValue, float64(n.AppliedGeneration), n.Name)
		if !n.LastSeen.IsZero() {
			ch <- prometheus.MustNewConstMetric(nodeLastSeen, prometheus.GaugeValue, float64(n.LastSeen.UnixNano())/1e9, n.Name)
		}
	}
	for state, v := range map[string]int{"connected": connected, "offline": offline, "never": never} {
		ch <- prometheus.MustNewConstMetric(nodes, prometheus.GaugeValue, float64(v), state)
	}
}

// peers sends the per-peer series of the first MaxPeerSeries peers by tenant and name (a
// stable choice: the same peers keep their series from one scrape to the next).
func (c *Collector) peers(ch chan<- prometheus.Metric, peers []plane.PeerState) {
	label := func(p *plane.PeerState) (string, string) {
		name := p.Name
		if name == "" {
			name = p.PublicKey.String()
		}
		return p.Tenant, name
	}
	order := make([]int, len(peers))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ta, na := label(&peers[a])
		tb, nb := label(&peers[b])
		return cmp.Or(strings.Compare(ta, tb), strings.Compare(na, nb))
	})
	n := min(len(order), c.cfg.MaxPeerSeries)
	prevTenant, prevName := "", ""
	for j, i := range order[:n] {
		p := &peers[i]
		tenant, name := label(p)
		if j > 0 && tenant == prevTenant && name == prevName {
			continue // a rename under way: two keys with one name, for a moment
		}
		prevTenant, prevName = tenant, name
		for _, m := range []struct {
			d *prometheus.Desc
			v uint64
		}{{pRxBytes, p.RxBytes}, {pTxBytes, p.TxBytes}, {pRxPackets, p.RxPackets}, {pTxPackets, p.TxPackets}} {
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v), tenant, name)
		}
		online := 0.0
		if p.Online {
			online = 1
		}
		ch <- prometheus.MustNewConstMetric(pOnline, prometheus.GaugeValue, online, tenant, name)
		if !p.LastHandshake.IsZero() {
			ch <- prometheus.MustNewConstMetric(pHandshake, prometheus.GaugeValue, float64(p.LastHandshake.UnixNano())/1e9, tenant, name)
		}
	}
	ch <- prometheus.MustNewConstMetric(pWithoutSeries, prometheus.GaugeValue, float64(len(order)-n))
}

// ruleHits sends a tenant's rule hit counters: rules is its policy's rules in order, then
// its default. Each counter carries when it started (Since) as its created timestamp.
func (c *Collector) ruleHits(ch chan<- prometheus.Metric, tenant string, rules []plane.RuleStat) {
	if len(rules) == 0 {
		return
	}
	send := func(rs plane.RuleStat, rule string) {
		if rs.Since.IsZero() {
			ch <- prometheus.MustNewConstMetric(tRuleHits, prometheus.CounterValue, float64(rs.Hits), tenant, rule)
			return
		}
		ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(tRuleHits, prometheus.CounterValue, float64(rs.Hits), rs.Since, tenant, rule)
	}
	def, rules := rules[len(rules)-1], rules[:len(rules)-1]
	for i, rs := range rules[:min(len(rules), MaxRuleSeries)] {
		send(rs, strconv.Itoa(i))
	}
	if len(rules) > MaxRuleSeries {
		// The newest start of the summed rules: the sum restarts when any of them does.
		other := plane.RuleStat{}
		for _, rs := range rules[MaxRuleSeries:] {
			other.Hits += rs.Hits
			if rs.Since.After(other.Since) {
				other.Since = rs.Since
			}
		}
		send(other, "other")
	}
	send(def, "default")
}

// NewRegistry returns a registry with c and the Go runtime's and the process's collectors.
func NewRegistry(c *Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, col := range []prometheus.Collector{c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return reg, nil
}

// Ready says why the node is not ready to serve, or nil when it is: started (its device is
// up), the newest desired state it knows of applied in full, and its desired state not
// stale for longer than maxStale (0: any staleness is fine: a node fails static). The error
// is one line, for a load balancer's or an operator's eyes.
func Ready(r plane.Report, f Facts, now time.Time, maxStale time.Duration) error {
	switch {
	case r.Node.StartedAt.IsZero():
		return errors.New("the WireGuard device is not up yet")
	case f.DesiredGeneration == 0 && r.Generation == 0:
		return errors.New("no desired state applied yet")
	case f.PublishError != "":
		return fmt.Errorf("the desired state of generation %d did not reach the data plane: %s", f.DesiredGeneration, oneLine(f.PublishError))
	case r.ApplyError != "":
		return fmt.Errorf("the desired state of generation %d does not apply: %s", r.Failed, oneLine(r.ApplyError))
	case r.Generation < f.DesiredGeneration:
		return fmt.Errorf("the desired state of generation %d is not applied yet (applied: %d)", f.DesiredGeneration, r.Generation)
	case maxStale > 0 && !f.StaleSince.IsZero() && now.Sub(f.StaleSince) > maxStale:
		return fmt.Errorf("the desired state is stale: no controller since %s", f.StaleSince.UTC().Format(time.RFC3339))
	}
	return nil
}

func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
