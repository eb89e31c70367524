package webui

import "time"

// JSON shapes of the /api/v1 API. The control socket (HTTP over the unix socket
// <data-dir>/popgate.sock, mode 0600), the CLI and (later) the web UI's API all use these.
//
// Routes (bodies and answers are JSON unless noted; errors answer APIError with 400 for bad
// input, 404 for an unknown tenant or peer, 409 for a duplicate or conflict, 500 otherwise):
//
//	GET    /api/v1/status                                   → APIStatus
//	GET    /api/v1/tenants                                  → APITenants
//	POST   /api/v1/tenants                 APINewTenant     → 201 APITenant
//	DELETE /api/v1/tenants/{tenant}                         → 204
//	GET    /api/v1/peers[?tenant=T]                         → APIPeers
//	POST   /api/v1/tenants/{tenant}/peers  APINewPeer       → 201 APIPeerCreated
//	GET    /api/v1/tenants/{tenant}/peers/{peer}            → APIPeer
//	GET    /api/v1/tenants/{tenant}/peers/{peer}/config     → 200 text/plain wg-quick file
//	POST   /api/v1/tenants/{tenant}/peers/{peer}/enable     → APIPeer
//	POST   /api/v1/tenants/{tenant}/peers/{peer}/disable    → APIPeer
//	DELETE /api/v1/tenants/{tenant}/peers/{peer}            → 204
//	PATCH  /api/v1/tenants/{tenant}/peers/{peer} APIPeerUpdate → APIPeer
//	PATCH  /api/v1/tenants/{tenant}         APITenantUpdate  → APITenant
//	PATCH  /api/v1/tenants/{tenant}/limits  APITenantLimits  → APITenant (owners only on the
//	                                                           web address)
//	GET    /api/v1/tenants/{tenant}/policy                  → 200 text/plain policy file
//	                                                           (header Popgate-Policy-Default: true
//	                                                           when the tenant never set one)
//	PUT    /api/v1/tenants/{tenant}/policy  text/plain      → APIPolicySet (with warnings for
//	                                                           names the tenant lacks); 400 with
//	                                                           every mistake, one "line N: ..." per line
//	POST   /api/v1/tenants/{tenant}/peers/{peer}/rotate [APIPeerRotate] → APIPeerCreated: a new
//	                                                           key and config; the old key is refused
//	GET    /api/v1/tenants/{tenant}/routes                  → APIRoutes
//	POST   /api/v1/tenants/{tenant}/routes  APIRoute        → 201 APIRoute
//	DELETE /api/v1/tenants/{tenant}/routes?prefix=P         → 204
//	GET    /api/v1/tenants/{tenant}/dns/zones               → APIDNSZones
//	POST   /api/v1/tenants/{tenant}/dns/zones APIDNSZone    → 201 APIDNSZone
//	DELETE /api/v1/tenants/{tenant}/dns/zones?zone=Z        → 204
//	GET    /api/v1/tenants/{tenant}/traffic[?range=24h|7d]  → APITraffic
//	GET    /api/v1/tenants/{tenant}/peers/{peer}/traffic[?range=1h|24h|48h] → APITraffic

// APIError is the body of every non-2xx answer.
type APIError struct {
	Error string `json:"error"`
}

// APITenant is one tenant.
type APITenant struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Peers     int       `json:"peers"`
	// SplitTunnel: client configs route only the tenant's routes (and the overlay) through
	// the tunnel instead of all traffic.
	SplitTunnel bool `json:"split_tunnel"`
	// MaxFlowsPerPeer and MaxFlows bound the flows one peer of the tenant, and all of them
	// together, may have open at once (through the exit, and tracked by the firewall): the
	// tenant's own bounds or the node's defaults.
	MaxFlowsPerPeer int `json:"max_flows_per_peer"`
	MaxFlows        int `json:"max_flows"`
	// Regions are the regions the tenant is limited to, sorted; absent: every region.
	Regions []string `json:"regions,omitempty"`
	// Domain is the DNS domain of its peers' names at the in-tunnel resolver
	// (<peer>.<domain>): its own or the default, <tenant>.internal.
	Domain string `json:"domain"`
}

// APITenantUpdate is the body of PATCH /api/v1/tenants/{tenant}; nil fields stay as they are.
type APITenantUpdate struct {
	SplitTunnel *bool `json:"split_tunnel,omitempty"`
	// Regions limits the tenant to these regions; [] or ["all"]: every region. Owners only.
	Regions *[]string `json:"regions,omitempty"`
	// Domain sets the DNS domain of the tenant's peer names; "": back to the default.
	Domain *string `json:"domain,omitempty"`
}

// APIRegion is one region: where its clients connect and the server key their configs name.
type APIRegion struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	// PublicKey is the region's WireGuard public key, the server key of its configs.
	PublicKey string `json:"public_key"`
	// Home is true for the controller's own region, whose key is the node key and whose
	// endpoint is serve's --public-endpoint.
	Home      bool      `json:"home"`
	CreatedAt time.Time `json:"created_at"`
	// Tenants are the tenants limited to a set of regions that includes this one.
	Tenants []string `json:"tenants"`
}

// APIRegions answers GET /api/v1/regions, ordered by name.
type APIRegions struct {
	Regions []APIRegion `json:"regions"`
}

// APINewRegion is the body of POST /api/v1/regions.
type APINewRegion struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
}

// APIRegionUpdate is the body of PATCH /api/v1/regions/{region}.
type APIRegionUpdate struct {
	Endpoint *string `json:"endpoint,omitempty"`
}

// APITenantLimits is the body of PATCH /api/v1/tenants/{tenant}/limits: the tenant's flow
// bounds, 1 to 1048576, or 0 for the node's default; absent fields stay as they are.
type APITenantLimits struct {
	MaxFlowsPerPeer *int `json:"max_flows_per_peer,omitempty"`
	MaxFlows        *int `json:"max_flows,omitempty"`
}

// APIRoute is one route of a tenant: traffic for Prefix leaves through Via, "internet",
// "site:NAME" or exit nodes in order, "exit:x1,exit:x2". The longest matching prefix wins.
type APIRoute struct {
	Prefix string `json:"prefix"`
	Via    string `json:"via"`
	// Exits are the exits of a route via exit nodes, in order, with their state; only in
	// answers to GET.
	Exits []APIRouteExit `json:"exits,omitempty"`
}

// APIRouteExit is one exit of a route through exit nodes, as the nodes' probes see it.
type APIRouteExit struct {
	Name string `json:"name"`
	// State is up, down, partial (some nodes reach it, others do not) or unknown (no node
	// reported a link to it yet).
	State string `json:"state"`
	// InUse: the first exit that is up or partly up, which carries the traffic.
	InUse bool `json:"in_use,omitempty"`
}

// APIRoutes answers GET /api/v1/tenants/{tenant}/routes, longest prefixes first.
type APIRoutes struct {
	Routes []APIRoute `json:"routes"`
}

// APIDNSZone is a split DNS zone of a tenant: its peers' queries for names in Zone go to
// Servers, in order, through the tenant's own routes (servers in its sites, or its peers).
type APIDNSZone struct {
	// Zone is lower case without the final dot in answers; "." is every name.
	Zone string `json:"zone"`
	// Servers are IP addresses with an optional port (53 when none); answers give the port.
	Servers []string `json:"servers"`
}

// APIDNSZones answers GET /api/v1/tenants/{tenant}/dns/zones, by zone.
type APIDNSZones struct {
	Zones []APIDNSZone `json:"zones"`
}

// APIPolicySet answers a successful PUT of a policy.
type APIPolicySet struct {
	Rules   int    `json:"rules"`
	Default string `json:"default"` // the default action: allow or deny
	// Warnings name what the policy refers to that the tenant does not have (yet): groups
	// without peers, peers and sites that do not exist. Those rules match nothing until they do.
	Warnings []APIPolicyWarning `json:"warnings,omitempty"`
}

// APIPolicyWarning is one warning about a policy that was set: its line (0: the whole file)
// and what to check.
type APIPolicyWarning struct {
	Line    int    `json:"line"`
	Message string `json:"message"`
}

// APITenants answers GET /api/v1/tenants.
type APITenants struct {
	Tenants []APITenant `json:"tenants"`
}

// APINewTenant is the body of POST /api/v1/tenants.
type APINewTenant struct {
	Name string `json:"name"`
}

// APIPeer is one peer with its live state.
type APIPeer struct {
	Tenant    string    `json:"tenant"`
	Name      string    `json:"name"`
	PublicKey string    `json:"public_key"`
	IPv4      string    `json:"ipv4"`
	IPv6      string    `json:"ipv6"`
	Enabled   bool      `json:"enabled"`
	CreatedAt time.Time `json:"created_at"`
	// ServerKey is true when the server generated the key pair (config can be printed again).
	ServerKey bool `json:"server_key"`
	// Groups the peer is in, sorted; Site and SitePrefixes are set for a site connector.
	Groups       []string `json:"groups,omitempty"`
	Site         string   `json:"site,omitempty"`
	SitePrefixes []string `json:"site_prefixes,omitempty"`
	// ExpiresAt is when the peer stops being let in, as if disabled; absent: never.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Live state from the device; zero when the peer never connected.
	Online        bool       `json:"online"`
	Endpoint      string     `json:"endpoint,omitempty"`
	LastHandshake *time.Time `json:"last_handshake,omitempty"`
	RxBytes       uint64     `json:"rx_bytes"`
	TxBytes       uint64     `json:"tx_bytes"`
	// RxPackets and TxPackets count IP packets through the packet path from and to the peer
	// since serve started.
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

// APIPeers answers GET /api/v1/peers[?tenant=T]. The server writes it a peer at a time and
// the CLI reads it the same way: 100,000 peers are ≈ 42 MB of JSON, held whole by neither.
type APIPeers struct {
	Peers []APIPeer `json:"peers"`
}

// APINewPeer is the body of POST /api/v1/tenants/{tenant}/peers. PublicKey is optional: when
// empty the server generates the key pair.
type APINewPeer struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key,omitempty"`
	// Groups, optional; Site and SitePrefixes, optional, make the peer a site connector
	// (both or neither).
	Groups       []string `json:"groups,omitempty"`
	Site         string   `json:"site,omitempty"`
	SitePrefixes []string `json:"site_prefixes,omitempty"`
	// Region, optional, is the region of the config in the answer: its endpoint and
	// server key. Default: the controller's own region.
	Region string `json:"region,omitempty"`
}

// APIPeerUpdate is the body of PATCH /api/v1/tenants/{tenant}/peers/{peer}; nil fields stay
// as they are. Groups replaces the set ([] clears it). Site "" with no prefixes stops the peer
// being a site connector.
type APIPeerUpdate struct {
	Groups       *[]string `json:"groups,omitempty"`
	Site         *string   `json:"site,omitempty"`
	SitePrefixes *[]string `json:"site_prefixes,omitempty"`
}

// APIPeerRotate is the optional body of POST /api/v1/tenants/{tenant}/peers/{peer}/rotate.
// PublicKey empty (or no body): the server generates the new key pair, which only a peer whose
// key the server generated may ask for; a peer whose user brought its key needs the new one.
type APIPeerRotate struct {
	PublicKey string `json:"public_key,omitempty"`
	// Region, optional, is the region of the config in the answer. Default: the
	// controller's own region.
	Region string `json:"region,omitempty"`
}

// APIPeerCreated answers POST /api/v1/tenants/{tenant}/peers and .../peers/{peer}/rotate.
// Config is the complete wg-quick file; when the user brought their own key its PrivateKey
// line is a comment placeholder.
type APIPeerCreated struct {
	Peer   APIPeer `json:"peer"`
	Config string  `json:"config"`
}

// APIStatus answers GET /api/v1/status.
type APIStatus struct {
	Node    APINode           `json:"node"`
	Device  APIDevice         `json:"device"`
	Peers   APIPeerCounts     `json:"peers"`
	Desired *APIDesiredState  `json:"desired,omitempty"`
	Tenants []APITenantStatus `json:"tenants"`
	// Controller is set on a node that joined a controller: how its sync stands.
	Controller *APIControllerLink `json:"controller,omitempty"`
	// Backbone is set on a node with a backbone: its links to the other nodes, by node ID.
	Backbone *APIBackbone `json:"backbone,omitempty"`
}

// APIBackbone is a node's backbone: its port and public key, and its links by node ID.
type APIBackbone struct {
	Port      int               `json:"port"`
	PublicKey string            `json:"public_key"`
	Links     []APIBackboneLink `json:"links"`
}

// APIControllerLink is how a joined node's sync with its controller stands.
type APIControllerLink struct {
	// Address is the controller's host:port.
	Address string `json:"address"`
	// Connected: the node has a sync stream now, since Since; otherwise it is without its
	// controller (stale) since Since.
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	// FromCache: the node serves the desired state it kept, saved at SavedAt, because the
	// controller has not answered since it started.
	FromCache bool       `json:"from_cache,omitempty"`
	SavedAt   *time.Time `json:"saved_at,omitempty"`
	// LastError says why the last connection failed or ended.
	LastError string `json:"last_error,omitempty"`
}

// APIDesiredState says whether the node's data plane serves what the store holds.
type APIDesiredState struct {
	// Generation counts the changes to the network's state: that of the desired state the
	// controller published last.
	Generation int64 `json:"generation"`
	// Applied is the generation the node applied last, in full.
	Applied int64 `json:"applied"`
	// Error says why the desired state did not reach the data plane; absent when it did. The
	// changes are stored and apply once the cause is gone (the controller tries again every
	// few seconds).
	Error string `json:"error,omitempty"`
}

// APITenantStatus holds one tenant's counters.
type APITenantStatus struct {
	Name    string `json:"name"`
	Peers   int    `json:"peers"`
	Online  int    `json:"online"`
	RxBytes uint64 `json:"rx_bytes"`
	TxBytes uint64 `json:"tx_bytes"`
	// RxPackets and TxPackets count IP packets from and to the tenant's peers.
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	// Flows is the number of tracked connections.
	Flows int `json:"flows"`
	// ExitFlows are the tenant's flows through the userspace exit now.
	ExitFlows APIExitFlows `json:"exit_flows"`
	// MaxFlowsPerPeer and MaxFlows are the tenant's flow bounds in force.
	MaxFlowsPerPeer int `json:"max_flows_per_peer"`
	MaxFlows        int `json:"max_flows"`
	// Drops counts dropped packets by reason: from the packet path (malformed, unknown_source,
	// cross_tenant, no_route), the exit's bounds (flow_limit_peer, flow_limit_tenant,
	// flow_limit_node, fd_budget: packets that would have opened a flow) and the firewall
	// (policy_deny, default_deny, conntrack_limit_peer, conntrack_limit_tenant,
	// conntrack_full, ...), the latter prefixed with the direction ("from_peer." or
	// "to_peer.").
	Drops map[string]uint64 `json:"drops,omitempty"`
	// Evicted counts the tenant's flows that never got a reply and were closed early to make
	// room for a new one at a bound: in the exit by the bound's name, as in Drops; in the
	// firewall as "conntrack".
	Evicted map[string]uint64 `json:"evicted,omitempty"`
	// Rules are the policy's rules in order, then the default, with their hits since the
	// policy was last applied.
	Rules []APIRuleStat `json:"rules"`
}

// APIExitFlows counts flows through the userspace exit: TCP (dialling or relaying), UDP,
// and ICMP echo requests waiting for their reply.
type APIExitFlows struct {
	TCP  int `json:"tcp"`
	UDP  int `json:"udp"`
	ICMP int `json:"icmp"`
}

// APIRuleStat is one policy rule and how many new flows it decided.
type APIRuleStat struct {
	Line int    `json:"line"`
	Rule string `json:"rule"`
	Hits uint64 `json:"hits"`
	// Since is when the counter started: when the rule, with the same rules above it, was
	// first applied; a changed rule starts again. Absent when unknown.
	Since *time.Time `json:"since,omitempty"`
}

// APINode describes the running node.
type APINode struct {
	Name          string    `json:"name"`
	Version       string    `json:"version"`
	Roles         []string  `json:"roles"`
	Region        string    `json:"region"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	// Goroutines and RSSBytes describe the serve process.
	Goroutines int    `json:"goroutines"`
	RSSBytes   uint64 `json:"rss_bytes"`
}

// APIDevice describes the node's access WireGuard device.
type APIDevice struct {
	Interface      string   `json:"interface"`
	PublicKey      string   `json:"public_key"`
	ListenPort     int      `json:"listen_port"`
	PublicEndpoint string   `json:"public_endpoint"`
	MTU            int      `json:"mtu"`
	ExitMode       string   `json:"exit_mode"`
	Addresses      []string `json:"addresses"`
	UAPISocket     string   `json:"uapi_socket,omitempty"`
	RxBytes        uint64   `json:"rx_bytes"`
	TxBytes        uint64   `json:"tx_bytes"`
	// Drops counts packets the packet path dropped, by reason.
	Drops map[string]uint64 `json:"drops,omitempty"`
	// ExitSockets are the host sockets the userspace exit's flows hold, at most
	// ExitSocketBudget: the open files limit less what the node keeps for everything else.
	ExitSockets      int `json:"exit_sockets"`
	ExitSocketBudget int `json:"exit_socket_budget"`
	// Handshakes counts what the UDP socket did with handshake initiations.
	Handshakes APIHandshakes `json:"handshakes"`
}

// APIHandshakes counts the handshake initiations the node received since it started, and what
// became of each: routed to its tenant, answered with a cookie reply, dropped (by reason), or
// still queued.
type APIHandshakes struct {
	Initiations   uint64 `json:"initiations"`
	Routed        uint64 `json:"routed"`
	CookieReplies uint64 `json:"cookie_replies"`
	// UnderLoad: initiations need a valid mac2 (proof of their source address) now.
	UnderLoad bool `json:"under_load"`
	Queued    int  `json:"queued"`
	// Drops by reason: bad_mac1, cookie_limited, rate_limited, queue_full, bad_initiation,
	// unknown_peer, no_device, device_queue_full.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// APIPeerCounts summarises the peers.
type APIPeerCounts struct {
	Total   int `json:"total"`
	Enabled int `json:"enabled"`
	Online  int `json:"online"`
}

// APIJoinedNode is a node that joined the controller.
type APIJoinedNode struct {
	Name string `json:"name"`
	// Roles are pop, exit or pop,exit.
	Roles string `json:"roles"`
	// Region is the region the node serves; absent: none (an exit).
	Region string `json:"region,omitempty"`
	// Pin is the SHA-256 of its certificate's public key, base64url: what authenticates it.
	Pin string `json:"pin"`
	// BackboneEndpoint and BackbonePublicKey are its backbone's, absent when it gave none.
	BackboneEndpoint  string `json:"backbone_endpoint,omitempty"`
	BackbonePublicKey string `json:"backbone_public_key,omitempty"`
	// Version is the popgate version it last reported.
	Version  string    `json:"version,omitempty"`
	JoinedAt time.Time `json:"joined_at"`
	// LastSeen is when it last reported; absent: never.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// Connected: it has a sync stream now, since ConnectedSince.
	Connected      bool       `json:"connected"`
	ConnectedSince *time.Time `json:"connected_since,omitempty"`
	// AppliedGeneration is the generation of the desired state it applied last; Current
	// the one published now.
	AppliedGeneration int64 `json:"applied_generation"`
	Current           int64 `json:"current_generation"`
	// ApplyError says why it could not apply the last desired state; absent: it did.
	ApplyError string `json:"apply_error,omitempty"`
	// BackboneID is its backbone ID (its store ID + 1; the controller's own node is 1).
	BackboneID uint32 `json:"backbone_id"`
	// Links are its backbone links as it last reported them; absent: none.
	Links []APIBackboneLink `json:"links,omitempty"`
}

// APIBackboneLink is a node's backbone link to another node, as its probes see it.
type APIBackboneLink struct {
	// Node names the node it reaches ("" when that node is unknown here).
	Node string `json:"node"`
	// NodeID is that node's backbone ID.
	NodeID uint32 `json:"node_id"`
	// State is up, down or unknown (no probe answered yet).
	State string `json:"state"`
	// RTTMicros is the smoothed probe round trip in microseconds; absent before the first
	// answer.
	RTTMicros int64 `json:"rtt_us,omitempty"`
	// LossPercent is the share of the latest probes (up to 100) missed, rounded.
	LossPercent int `json:"loss_percent"`
}

// APIJoinedNodes answers GET /api/v1/nodes, ordered by name.
type APIJoinedNodes struct {
	Nodes []APIJoinedNode `json:"nodes"`
}

// APINewNodeToken is the body of POST /api/v1/nodes/tokens.
type APINewNodeToken struct {
	// Roles are pop, exit or pop,exit.
	Roles string `json:"roles"`
	// Region is the node's region; absent: the controller's own for a PoP, none for an exit.
	Region string `json:"region,omitempty"`
	// Name, when set, is the only name the node may join with.
	Name string `json:"name,omitempty"`
	// ExpiresIn is the token's validity in seconds, 60 to 604800; absent: an hour.
	ExpiresIn int64 `json:"expires_in,omitempty"`
}

// APINodeToken answers POST /api/v1/nodes/tokens. Token ("popgate-join-1.…") is shown this
// once; a node joins with it ('popgate serve --join TOKEN').
type APINodeToken struct {
	Token     string    `json:"token"`
	Roles     string    `json:"roles"`
	Region    string    `json:"region,omitempty"`
	Name      string    `json:"name,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// APIEvent is one event: a state change an operator wants to hear of (a backbone link down
// or back, a route's exit changed, a node offline or back, a peer about to expire). The
// webhook's body is one APIEvent.
type APIEvent struct {
	// ID increases in the order events were recorded.
	ID   int64     `json:"id"`
	Time time.Time `json:"time"`
	// Kind is link.down, link.up, failover, node.connected, node.offline, node.back,
	// peer.expiring, check.down or check.back (more may come).
	Kind string `json:"kind"`
	// Node is the node it happened at ("controller" for the controller's own).
	Node string `json:"node"`
	// Tenant is the tenant it concerns; absent for the network's.
	Tenant string `json:"tenant,omitempty"`
	// Subject names what changed: link:p1/x1, route:acme/10.0.0.0/8, internet:p1,
	// node:p1, peer:acme/laptop.
	Subject string `json:"subject"`
	Message string `json:"message"`
	// Data holds the details, for machines (from, to, loss_percent, expires_at, …).
	Data map[string]string `json:"data,omitempty"`
}

// APIEvents answers GET /api/v1/events; More: another page follows (offset += limit).
type APIEvents struct {
	Events []APIEvent `json:"events"`
	More   bool       `json:"more"`
}

// APIWebhook is the webhook events are sent to, and how its delivery goes; never its
// secret.
type APIWebhook struct {
	URL       string    `json:"url"`
	CreatedAt time.Time `json:"created_at"`
	// Delivered, Failed, GivenUp and Dropped count the events delivered, the attempts that
	// failed, the events given up after failing for a day and those dropped from a backlog
	// of more than 1,000, since the webhook was set.
	Delivered int64 `json:"delivered"`
	Failed    int64 `json:"failed"`
	GivenUp   int64 `json:"given_up"`
	Dropped   int64 `json:"dropped"`
	// Queued is how many events wait to be sent (1,001 means more than 1,000).
	Queued int `json:"queued"`
	// LastAttempt is when an event was last sent, LastOK when one was last delivered;
	// LastError why the latest attempt failed.
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	LastOK      *time.Time `json:"last_ok,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	// Retrying is the ID of the event being retried, NextAttempt when.
	Retrying    int64      `json:"retrying,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
}

// APIWebhookSet is the body of PUT /api/v1/events/webhook.
type APIWebhookSet struct {
	// URL is where events go: http or https, without user name or password.
	URL string `json:"url"`
}

// APIWebhookCreated answers PUT /api/v1/events/webhook: the webhook and its new secret,
// shown this once, which signs every delivery (header X-Popgate-Signature).
type APIWebhookCreated struct {
	Webhook APIWebhook `json:"webhook"`
	Secret  string     `json:"secret"`
}

// APICheck is a check: what it watches, from where, and what it found.
type APICheck struct {
	// Name is unique among the operator's checks and within a tenant; a region's handshake
	// check is "region:" and the region's name.
	Name string `json:"name"`
	// Tenant is the tenant whose check it is; absent: the operator's.
	Tenant string `json:"tenant,omitempty"`
	// Kind is dns, http or handshake.
	Kind string `json:"kind"`
	// Target is the DNS name, the URL, or the region's endpoint.
	Target string `json:"target"`
	// Expect is the address the DNS answer must hold or the HTTP status expected; absent:
	// any answer, 200.
	Expect       string `json:"expect,omitempty"`
	EverySeconds int    `json:"every_seconds"`
	// From is all, region: and node: terms, or other-regions for a handshake check.
	From string `json:"from"`
	// Region is a handshake check's region.
	Region    string    `json:"region,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Runners are the nodes that run it now.
	Runners []string `json:"runners"`
	// Day is what it found in the last 24 hours; Week in the last 7 days (only when one
	// check is asked for).
	Day  APICheckWindow  `json:"day"`
	Week *APICheckWindow `json:"week,omitempty"`
	// Latest is each node's latest minute.
	Latest []APICheckLatest `json:"latest"`
}

// APICheckWindow is a check's runs over a stretch of time, every node's together.
type APICheckWindow struct {
	OK     int64 `json:"ok"`
	Failed int64 `json:"failed"`
	// UptimePercent is the share of runs that passed; absent without a run.
	UptimePercent *float64 `json:"uptime_percent,omitempty"`
	// P50Micros and P95Micros are percentiles of the minutes' median latencies, in
	// microseconds; absent without a pass.
	P50Micros int64 `json:"p50_us,omitempty"`
	P95Micros int64 `json:"p95_us,omitempty"`
}

// APICheckLatest is one node's latest minute of a check.
type APICheckLatest struct {
	Node   string    `json:"node"`
	Minute time.Time `json:"minute"`
	OK     int       `json:"ok"`
	Failed int       `json:"failed"`
	// LatencyMicros and LatencyMaxMicros are the median and the longest latency of the
	// minute's runs that passed; absent without a pass.
	LatencyMicros    int64 `json:"latency_us,omitempty"`
	LatencyMaxMicros int64 `json:"latency_max_us,omitempty"`
	// Error is the minute's last failure; Detail the last answer (addresses, a status).
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// APIChecks answers GET /api/v1/checks: the operator's checks (the regions' first), then
// each tenant's.
type APIChecks struct {
	Checks []APICheck `json:"checks"`
}

// APINewCheck is the body of POST /api/v1/checks and POST /api/v1/tenants/{tenant}/checks.
type APINewCheck struct {
	Name string `json:"name"`
	// Kind is dns or http.
	Kind   string `json:"kind"`
	Target string `json:"target"`
	Expect string `json:"expect,omitempty"`
	// EverySeconds is the interval, 10 to 3600; absent: 60.
	EverySeconds int `json:"every_seconds,omitempty"`
	// From is where it runs: all (absent), or region:NAME and node:NAME terms.
	From string `json:"from,omitempty"`
}

// APITraffic answers GET /api/v1/tenants/{tenant}/traffic and
// GET /api/v1/tenants/{tenant}/peers/{peer}/traffic: what the tenant's (or the peer's)
// devices carried over the range, summed over every node, in buckets of StepSeconds. Rx is
// what the peers sent (received by the nodes), tx what they were sent.
type APITraffic struct {
	Tenant string `json:"tenant"`
	// Peer is the peer's name; absent for a tenant's history.
	Peer string `json:"peer,omitempty"`
	// Range is the range asked for: 24h or 7d for a tenant, 1h, 24h or 48h for a peer.
	Range string `json:"range"`
	// StepSeconds is the length of each point's bucket: 300 or more for a day, 3600 for a
	// week.
	StepSeconds int64 `json:"step_seconds"`
	// Points are the buckets of the range, oldest first, without gaps (zero: no traffic);
	// the last is the bucket the present is in, so far.
	Points []APITrafficPoint `json:"points"`
	// RxBytes, TxBytes, RxPackets and TxPackets are the sums of the points.
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

// APITrafficPoint is one bucket of a traffic history: bytes (WireGuard datagrams) and IP
// packets each way.
type APITrafficPoint struct {
	// At is the start of the bucket.
	At        time.Time `json:"at"`
	RxBytes   uint64    `json:"rx_bytes"`
	TxBytes   uint64    `json:"tx_bytes"`
	RxPackets uint64    `json:"rx_packets"`
	TxPackets uint64    `json:"tx_packets"`
}

// APIDNSUpstreams answers GET, PUT and DELETE /api/v1/tenants/{tenant}/dns/upstreams: the
// resolvers the in-tunnel resolver forwards the tenant's queries to.
type APIDNSUpstreams struct {
	Tenant string `json:"tenant"`
	// Upstreams are the tenant's own, in the order they are tried: ADDR:PORT (plain DNS) or
	// tls://NAME@ADDR:PORT (DNS over TLS); empty when it uses the node's.
	Upstreams []string `json:"upstreams"`
	// NodeDefault: the tenant has none of its own; every node forwards its queries to the
	// node's upstreams (serve's --dns-upstream).
	NodeDefault bool `json:"node_default"`
}

// APIDNSUpstreamsSet is the body of PUT /api/v1/tenants/{tenant}/dns/upstreams.
type APIDNSUpstreamsSet struct {
	// Upstreams are 1 to 4 resolvers on public addresses, tried in order: ADDR[:PORT] for
	// plain DNS (port 53), tls://NAME@ADDR[:PORT] for DNS over TLS (port 853).
	Upstreams []string `json:"upstreams"`
}

// APIDNSLog answers GET /api/v1/tenants/{tenant}/dns/log: the tenant's logged DNS queries,
// newest first. The log holds personal data (who asked for which name, when): it is off
// unless the tenant turns it on.
type APIDNSLog struct {
	Tenant string `json:"tenant"`
	// Enabled: the log is on; KeepSeconds is how long it keeps entries and EnabledAt since
	// when it is on (both absent when it is off).
	Enabled     bool             `json:"enabled"`
	KeepSeconds int64            `json:"keep_seconds,omitempty"`
	EnabledAt   *time.Time       `json:"enabled_at,omitempty"`
	Entries     []APIDNSLogEntry `json:"entries"`
	// More: older entries match too (page with offset).
	More bool `json:"more"`
}

// APIDNSLogEntry is one logged query.
type APIDNSLogEntry struct {
	// Time is when the query came.
	Time time.Time `json:"time"`
	// Node is the node that answered it.
	Node string `json:"node"`
	// Peer is the name of the peer that asked; absent for a host behind a site's connector.
	Peer string `json:"peer,omitempty"`
	// Client is the address that asked.
	Client string `json:"client"`
	// Name is the name asked for, without the final dot; Type the question's type.
	Name string `json:"name"`
	Type string `json:"type"`
	// Outcome is what the resolver did: local (the tenant's names, the overlay's reverse),
	// cache, forwarded (an upstream answered), blocked (on one of the tenant's blocklists:
	// NXDOMAIN), split (a server of one of the tenant's split zones answered), failed,
	// refused (and, on newer nodes, others).
	Outcome string `json:"outcome"`
	// Rcode is the answer's: NOERROR, NXDOMAIN, SERVFAIL, …
	Rcode string `json:"rcode"`
	// LatencyMicros is the time from the query to the answer, in microseconds.
	LatencyMicros int64 `json:"latency_us"`
}

// APIDNSLogSettings answers POST /api/v1/tenants/{tenant}/dns/log/enable and /disable.
type APIDNSLogSettings struct {
	Tenant  string `json:"tenant"`
	Enabled bool   `json:"enabled"`
	// KeepSeconds and EnabledAt: as APIDNSLog's, absent when the log is off.
	KeepSeconds int64      `json:"keep_seconds,omitempty"`
	EnabledAt   *time.Time `json:"enabled_at,omitempty"`
	// Deleted is how many entries turning the log off deleted.
	Deleted int64 `json:"deleted,omitempty"`
}

// APIDNSLogEnable is the body of POST /api/v1/tenants/{tenant}/dns/log/enable.
type APIDNSLogEnable struct {
	// KeepSeconds is how long entries are kept: 3600 (1 hour) to 604800 (7 days) in whole
	// minutes; absent: 86400 (24 hours).
	KeepSeconds int64 `json:"keep_seconds,omitempty"`
}

// APIBlocklist is one of a tenant's DNS blocklists: where it comes from, what it holds and how
// its last fetch went. Its names, and their subdomains, are NXDOMAIN to the tenant's peers.
type APIBlocklist struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
	// URL is where the controller fetches it; absent for a list uploaded from a file.
	URL string `json:"url,omitempty"`
	// EverySeconds is how often it is fetched; absent for an uploaded list.
	EverySeconds int `json:"every_seconds,omitempty"`
	// SHA256 names its content: the names, sorted, one a line.
	SHA256 string `json:"sha256"`
	// Names is how many names it blocks; Skipped how many entries of its source were no
	// name to block (invalid names, addresses, localhost, other adblock rules).
	Names   int `json:"names"`
	Skipped int `json:"skipped"`
	// UpdatedAt is when its content last changed; CheckedAt when it was last fetched or
	// uploaded, whatever came of it.
	UpdatedAt time.Time `json:"updated_at"`
	CheckedAt time.Time `json:"checked_at"`
	// NextFetchAt is about when it is fetched next; absent for an uploaded list.
	NextFetchAt *time.Time `json:"next_fetch_at,omitempty"`
	// Error is why the last fetch failed, at ErrorAt: the list keeps the content of the
	// last good one. Absent when it succeeded.
	Error     string     `json:"error,omitempty"`
	ErrorAt   *time.Time `json:"error_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// APIBlocklists answers GET /api/v1/tenants/{tenant}/dns/blocklists: the tenant's lists by
// name.
type APIBlocklists struct {
	Blocklists []APIBlocklist `json:"blocklists"`
}

// APINewBlocklist is the body of POST /api/v1/tenants/{tenant}/dns/blocklists: a list the
// controller fetches from a URL.
type APINewBlocklist struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// EverySeconds is how often it is fetched, 3600 to 604800; absent: 86400.
	EverySeconds int `json:"every_seconds,omitempty"`
}
