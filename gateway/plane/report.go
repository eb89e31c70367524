package plane

import (
	"time"

	"github.com/popgate/popgate/store"
)

// Report is what a node tells the controller about itself: which desired state it serves,
// and its live state and counters. Counters count from the node's start and never go back
// while it runs: disabling, removing or adding a peer, or applying a policy again, keeps
// what they counted (a changed policy rule starts again, and RuleStat.Since says when).
type Report struct {
	// Format is the layout: Format.
	Format int `json:"format"`
	// Generation is that of the last Desired the node applied in full; 0 before the first.
	Generation int64 `json:"generation"`
	// ApplyError says why the node could not apply the last Desired it was given (of
	// generation Failed), "" when it applied it. The node then serves what it applied
	// before, or part of the new state; it tries again with the next Desired.
	ApplyError string     `json:"apply_error,omitempty"`
	Failed     int64      `json:"failed,omitempty"`
	Node       NodeStatus `json:"node"`
	// Peers holds the peers the node has something to report of: those served now with
	// packets counted or a session, and those it trimmed from their device recently. A
	// peer missing here has neither.
	Peers []PeerState `json:"peers,omitempty"`
	// Tenants holds the counters of the tenants the node serves.
	Tenants []TenantState `json:"tenants,omitempty"`
	// Links are the node's backbone links to the other nodes, as its probes see them,
	// ordered by node ID; none without a backbone.
	Links []LinkState `json:"links,omitempty"`
	// Events are the node's events (events.go) the controller may not have yet, oldest
	// first, at most MaxReportEvents; none from a node of an older version.
	Events []Event `json:"events,omitempty"`
	// Checks are the results of the node's checks in the last few minutes, a minute each
	// (the current one still growing), newest first, at most MaxCheckResults. A minute
	// is reported again while it grows and a few times after: the controller keeps the
	// latest word on each.
	Checks []CheckResult `json:"checks,omitempty"`
	// DNSLog are the queries the node logged for the tenants whose query log is on
	// (TenantDNS.QueryLog) that the controller may not have yet, oldest first, at most
	// MaxReportDNSLog; numbered like Events, and sent on the same terms.
	DNSLog []DNSQuery `json:"dns_log,omitempty"`
}

// LinkState is one backbone link, from the reporting node to Node (gateway/backbone's
// LinkState, in short).
type LinkState struct {
	Node uint32 `json:"node"` // Node.ID
	// Name is that node's name (Node.Name), "" when the node did not have it.
	Name string `json:"name,omitempty"`
	// State is LinkUp, LinkDown or LinkUnknown (no probe answered yet).
	State string `json:"state"`
	// RTT is the smoothed probe round trip; zero before the first answer.
	RTT time.Duration `json:"rtt_ns,omitempty"`
	// Loss is the fraction of the latest probes (up to 100) that were missed.
	Loss float64 `json:"loss,omitempty"`
	// Since is when the link entered State.
	Since time.Time `json:"since,omitzero"`
	// Ups and Downs count the times the link became up and down since the node made it (its
	// first up included; they start again from zero when the link is made again).
	Ups   uint64 `json:"ups,omitempty"`
	Downs uint64 `json:"downs,omitempty"`
}

// Backbone link states, as LinkState.State.
const (
	LinkUnknown = "unknown"
	LinkUp      = "up"
	LinkDown    = "down"
)

// NodeStatus is what a node is and how it runs.
type NodeStatus struct {
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	Region    string    `json:"region"`
	StartedAt time.Time `json:"started_at"`
	// Interface names the WireGuard device (wg show INTERFACE); UAPISocket is its socket, ""
	// when wg show is unavailable.
	Interface  string `json:"interface"`
	UAPISocket string `json:"uapi_socket,omitempty"`
	ListenPort int    `json:"listen_port"`
	MTU        int    `json:"mtu"`
	// ExitMode is the exit in use: userspace or kernel.
	ExitMode string `json:"exit_mode"`
	// Drops counts packets towards peers that found no peer, by reason.
	Drops map[string]uint64 `json:"drops,omitempty"`
	// ExitSockets are the host sockets the userspace exit's flows hold now, at most
	// ExitSocketBudget (the open files limit less a reserve).
	ExitSockets      int `json:"exit_sockets"`
	ExitSocketBudget int `json:"exit_socket_budget"`
	// ExitTCPRetransmits and ExitTCPTimeouts count the userspace exit's TCP segments sent
	// again towards clients and its retransmission timeouts: loss on the client leg.
	ExitTCPRetransmits uint64 `json:"exit_tcp_retransmits,omitempty"`
	ExitTCPTimeouts    uint64 `json:"exit_tcp_timeouts,omitempty"`
	// Handshakes are the shared socket's handshake counters (a flood shows here).
	Handshakes HandshakeStatus `json:"handshakes"`
	// Traffic is what the node's devices carried since it started, for every tenant and
	// peer it served, removed ones included.
	Traffic Traffic `json:"traffic"`
	// DNS counts the in-tunnel resolver's queries since the node started.
	DNS DNSStats `json:"dns,omitzero"`
}

// DNSStats counts what became of the in-tunnel resolver's queries (gateway/resolver).
type DNSStats struct {
	Queries     uint64 `json:"queries"`
	Local       uint64 `json:"local"`        // answered from a tenant's names or the overlay's reverse
	CacheHits   uint64 `json:"cache_hits"`   // answered from the cache
	Forwarded   uint64 `json:"forwarded"`    // sent to an upstream
	Blocked     uint64 `json:"blocked"`      // NXDOMAIN: on one of the tenant's blocklists
	Split       uint64 `json:"split"`        // sent to a tenant's split zone's server
	Failed      uint64 `json:"failed"`       // SERVFAIL: no upstream answered, or too many waiting
	RateLimited uint64 `json:"rate_limited"` // dropped: the client was over its rate
	Malformed   uint64 `json:"malformed"`    // not a DNS query
	// LogDropped counts the logged queries dropped before the controller had them: more
	// came than the node keeps (its query log's ring) while the controller was away or slow.
	LogDropped uint64 `json:"log_dropped,omitempty"`
}

// Traffic counts what peers sent (rx: received by the node) and were sent (tx): bytes are
// WireGuard datagram bytes, from the devices; packets are the IP packets the packet path
// passed (policy drops excluded).
type Traffic struct {
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

// Add adds o to t.
func (t *Traffic) Add(o Traffic) {
	t.RxBytes += o.RxBytes
	t.TxBytes += o.TxBytes
	t.RxPackets += o.RxPackets
	t.TxPackets += o.TxPackets
}

// HandshakeStatus is what the node's shared socket did with handshake initiations since it
// started: the figures of a handshake flood. Every initiation received counts once in
// Routed, CookieReplies or Drops, or is still Queued (or inside a handshake worker).
type HandshakeStatus struct {
	Initiations   uint64 `json:"initiations"`    // well-formed initiations received
	Routed        uint64 `json:"routed"`         // handed to the device of the initiator's tenant
	CookieReplies uint64 `json:"cookie_replies"` // answered with a cookie reply: under load, without a valid mac2
	UnderLoad     bool   `json:"under_load"`     // initiations need a valid mac2 now
	Queued        int    `json:"queued"`         // waiting for the handshake workers now
	// Drops by reason: bad_mac1 (not for this node's key), cookie_limited (under load without
	// mac2, and the cookie replies' rate spent), rate_limited (under load, its source over its
	// rate), queue_full, bad_initiation (the static key does not decrypt), unknown_peer,
	// no_device (the tenant's device is not open), device_queue_full.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// PeerState is one peer's live state on the node. Its counters survive the peer being
// disabled and enabled again (and trimmed from its device while idle); they are forgotten
// when the peer leaves the desired state, and then count in its tenant's totals.
type PeerState struct {
	PublicKey store.Key `json:"public_key"`
	// Tenant and Name are the peer's tenant's name and its own, as the node last had them
	// in its desired state.
	Tenant string `json:"tenant,omitempty"`
	Name   string `json:"name,omitempty"`
	// Online: the peer is served and completed a handshake within the last 3 minutes (a
	// session lives at most that long).
	Online        bool      `json:"online,omitempty"`
	Endpoint      string    `json:"endpoint,omitempty"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	// RxBytes and TxBytes count WireGuard datagram bytes, from the device.
	RxBytes uint64 `json:"rx_bytes,omitempty"`
	TxBytes uint64 `json:"tx_bytes,omitempty"`
	// RxPackets and TxPackets count the IP packets the packet path passed from and to the
	// peer (policy drops excluded).
	RxPackets uint64 `json:"rx_packets,omitempty"`
	TxPackets uint64 `json:"tx_packets,omitempty"`
}

// TenantState holds one tenant's counters on the node.
type TenantState struct {
	ID   int64  `json:"id"`   // Tenant.ID
	Name string `json:"name"` // Tenant.Name
	// Traffic is what the tenant's peers carried since the node started, removed peers
	// included.
	Traffic Traffic `json:"traffic"`
	// Flows is the connections the tenant's firewall tracks now.
	Flows int64 `json:"flows"`
	// ExitTCP, ExitUDP and ExitICMP are the tenant's flows through the userspace exit now
	// (echo requests waiting for a reply for ICMP).
	ExitTCP  int `json:"exit_tcp"`
	ExitUDP  int `json:"exit_udp"`
	ExitICMP int `json:"exit_icmp"`
	// Drops by reason: the packet path's, the exit's refusals at a bound
	// (flow_limit_peer, flow_limit_tenant, flow_limit_node, fd_budget), and the firewall's
	// as "<direction>.<reason>".
	Drops map[string]uint64 `json:"drops,omitempty"`
	// Evicted counts the tenant's flows that never got a reply, closed early to make room
	// for a new flow: in the exit by the bound that needed room, in the firewall's table as
	// "conntrack".
	Evicted map[string]uint64 `json:"evicted,omitempty"`
	// Rules are the hit counters of the tenant's policy: its rules in order, then the
	// default.
	Rules []RuleStat `json:"rules,omitempty"`
}

// RuleStat is one policy rule and how many new flows it decided since Since
// (firewall.RuleStat): when the node first applied a policy with this rule at this place.
type RuleStat struct {
	Line  int       `json:"line"`
	Rule  string    `json:"rule"`
	Hits  uint64    `json:"hits"`
	Since time.Time `json:"since,omitzero"`
}
