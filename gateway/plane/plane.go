// Package plane is the contract between the controller and a node's data plane: the desired
// state the controller publishes (Desired) and what a node reports back (Report).
//
// Both are plain values that survive a JSON round trip unchanged, so that a node in another
// process or on another machine can receive one over the network and keep the last one in its
// own database. A node checks every Desired it receives with Validate before it applies it.
package plane

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/popgate/popgate/store"
)

// Format is the layout of Desired and Report this popgate writes and reads. A change that a
// node of the previous layout would misread (a field whose meaning changes, one that must not
// be ignored) takes a new Format; fields that an older node may ignore do not.
const Format = 1

// Desired is what a node's data plane must do: every tenant, its peers, routes and policy, as
// the store held them at one generation.
type Desired struct {
	// Format is the layout: Format.
	Format int `json:"format"`
	// Generation is the store's change counter the state was read at (store.Generation): a
	// later Desired has a higher one. Re-applying a Desired of the same generation changes
	// nothing but what depends on the clock (peer expiry).
	Generation int64 `json:"generation"`
	// Overlay is the installation's addressing, fixed for its life.
	Overlay Overlay `json:"overlay"`
	// Tenants in any order; IDs and names are unique.
	Tenants []Tenant `json:"tenants"`
	// Peers of every tenant, grouped by tenant (a node may rely on it for speed, not for
	// correctness). Public keys and overlay addresses are unique across tenants.
	Peers []Peer `json:"peers"`
	// Routes of every tenant.
	Routes []Route `json:"routes"`

	// Regions are every region of the installation, public parts only, ordered by name;
	// names and public keys are unique.
	Regions []Region `json:"regions,omitempty"`
	// Region is the region this Desired is for: its Tenants are those allowed there (with
	// their peers and routes). "": an older controller's, for every tenant.
	Region string `json:"region,omitempty"`
	// RegionKey is Region's private key, only in a Desired sent to that region's PoPs over
	// the node sync; nil when the node serves the region with its own node key (the
	// controller's region, the appliance's own Desired). It must belong to Region's
	// PublicKey.
	RegionKey *store.Key `json:"region_key,omitempty"`

	// Self is the backbone ID of the node this Desired is for (Node.ID); 0 in a Desired for
	// a node without a backbone (the appliance).
	Self uint32 `json:"self,omitempty"`
	// Nodes are the other nodes of the network that have a backbone, ordered by ID: the
	// node keeps backbone links to those it needs (a PoP to exits and other PoPs, an exit
	// to PoPs). A node missing here is dropped from the backbone at once.
	Nodes []Node `json:"nodes,omitempty"`
	// PeerNodes say where peers are: the node at which each peer last completed a
	// handshake, as that node announced it. Traffic for a peer from another node (replies
	// from an exit, other peers, sites) goes there. A peer missing here is at no node.
	PeerNodes []PeerNode `json:"peer_nodes,omitempty"`
	// PeerNodesVersion rises at every change of PeerNodes, also within one Generation: a
	// Desired of the same Generation and a higher PeerNodesVersion differs from the one
	// before only in PeerNodes, which a node may then apply alone. It restarts from 0 when
	// the controller does.
	PeerNodesVersion int64 `json:"peer_nodes_version,omitempty"`

	// Checks are the checks this node runs (see Check): those whose from names it, and
	// the handshake checks of the regions other than its own. None: it runs none.
	Checks []Check `json:"checks,omitempty"`
}

// ControllerNode is the backbone ID of the controller's own node; a joined node's ID is its
// store ID plus one (store IDs are never reused).
const ControllerNode uint32 = 1

// Node is another node of the network, as its backbone knows it.
type Node struct {
	// ID is the node's backbone ID (ControllerNode, or its store ID + 1): unique, never reused.
	ID   uint32 `json:"id"`
	Name string `json:"name"`
	// Roles are among RolePoP and RoleExit.
	Roles  []string `json:"roles"`
	Region string   `json:"region,omitempty"`
	// BackboneEndpoint is where its backbone listens ("host:port"); BackboneKey is its
	// backbone's WireGuard public key.
	BackboneEndpoint string    `json:"backbone_endpoint"`
	BackboneKey      store.Key `json:"backbone_key"`
}

// Node roles.
const (
	RolePoP  = "pop"
	RoleExit = "exit"
)

// PeerNode is where one peer is: the backbone ID of the node it last completed a handshake
// at.
type PeerNode struct {
	Peer int64  `json:"peer"` // Peer.ID
	Node uint32 `json:"node"` // Node.ID
}

// Region is a region's public part: clients of the region connect to Endpoint and know the
// PoPs by PublicKey.
type Region struct {
	Name      string    `json:"name"`
	Endpoint  string    `json:"endpoint"`
	PublicKey store.Key `json:"public_key"`
}

// Overlay is the installation's overlay addressing: every peer's addresses lie in V4 and V6,
// and Gateway4 and Gateway6 are the node's own (in-tunnel DNS and services).
type Overlay struct {
	V4       netip.Prefix `json:"v4"`
	V6       netip.Prefix `json:"v6"`
	Gateway4 netip.Addr   `json:"gateway4"`
	Gateway6 netip.Addr   `json:"gateway6"`
}

// The node's flow bounds, for tenants that set none of their own (Tenant.MaxFlowsPerPeer 0):
// per peer like a carrier-grade NAT's port block per subscriber (a busy desktop holds a few
// hundred flows, so 4,096 is ten times that), per tenant a quarter of the userspace exit's
// 65,536 (netstack.DefaultMaxFlows), so that no one tenant takes more than a quarter of
// the node. They bound exit flows and the firewall's tracked connections alike.
const (
	DefaultMaxFlowsPerPeer   = 4096
	DefaultMaxFlowsPerTenant = 16384
)

// Tenant is one tenant's settings.
type Tenant struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	// Domain is the DNS domain of its peers' names (lower case, no final dot); "": the
	// default, <name>.internal.
	Domain string `json:"domain,omitempty"`
	// SplitTunnel: the tenant's client configs route only its routes and the overlay (the
	// data plane routes the same either way).
	SplitTunnel bool `json:"split_tunnel,omitempty"`
	// Policy is the tenant's policy text (firewall.Parse); "": the default policy,
	// DefaultPolicy(Overlay). The node compiles it against the tenant's peers and sites.
	Policy string `json:"policy,omitempty"`
	// MaxFlowsPerPeer and MaxFlows bound the flows of one peer and of the whole tenant;
	// 0: DefaultMaxFlowsPerPeer, DefaultMaxFlowsPerTenant (see FlowLimits).
	MaxFlowsPerPeer int `json:"max_flows_per_peer,omitempty"`
	MaxFlows        int `json:"max_flows,omitempty"`
	// Regions are the regions the tenant is limited to, sorted; empty: every region.
	Regions []string `json:"regions,omitempty"`
	// DNS is what the in-tunnel resolver does for the tenant beyond its peers' names (dns.go).
	DNS TenantDNS `json:"dns,omitzero"`
}

// FlowLimits returns the tenant's bounds in force on the flows of one peer and of the tenant.
func (t Tenant) FlowLimits() (perPeer, total int) {
	perPeer, total = t.MaxFlowsPerPeer, t.MaxFlows
	if perPeer == 0 {
		perPeer = DefaultMaxFlowsPerPeer
	}
	if total == 0 {
		total = DefaultMaxFlowsPerTenant
	}
	return perPeer, total
}

// Peer is one client device or site connector.
type Peer struct {
	ID        int64      `json:"id"`
	Tenant    int64      `json:"tenant"` // Tenant.ID
	Name      string     `json:"name"`
	PublicKey store.Key  `json:"public_key"`
	IPv4      netip.Addr `json:"ipv4"`
	IPv6      netip.Addr `json:"ipv6"`
	Enabled   bool       `json:"enabled,omitempty"`
	// ExpiresAt is when the peer stops being served, as if disabled; zero: never. The node
	// decides with its own clock.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Groups    []string  `json:"groups,omitempty"`
	// Site and SitePrefixes make the peer the connector of a site: traffic for the prefixes
	// goes to it, traffic from them enters through it.
	Site         string         `json:"site,omitempty"`
	SitePrefixes []netip.Prefix `json:"site_prefixes,omitempty"`
}

// Served reports whether p is to be served at now: enabled and not expired.
func (p *Peer) Served(now time.Time) bool {
	return p.Enabled && (p.ExpiresAt.IsZero() || now.Before(p.ExpiresAt))
}

// Route sends a tenant's traffic for Prefix through Via: ViaInternet, "site:" and the name of
// one of the tenant's sites (while no enabled peer connects the site, its traffic is
// dropped), or an ordered list of exits, "exit:x1,exit:x2" (node names): the first healthy
// one carries the traffic. ViaInternet means the node's own exit when it has the exit role,
// else the healthy exits of its region, else the nearest healthy exit by measured RTT.
type Route struct {
	Tenant int64        `json:"tenant"` // Tenant.ID
	Prefix netip.Prefix `json:"prefix"`
	Via    string       `json:"via"`
}

// ViaInternet is the Route.Via of the node's own internet exit.
const ViaInternet = store.ViaInternet

// DefaultPolicy is the policy of a tenant that never set one: peers reach whatever the tenant
// routes (the internet, its sites), not each other, and nothing reaches them unasked.
func DefaultPolicy(ov Overlay) string {
	return fmt.Sprintf(`# The default policy of a tenant: its peers reach what the tenant routes (the
# internet, its sites) but not each other, and nothing reaches them unasked.
# Replace it with 'popgate policy set --tenant NAME FILE'.
default deny
deny any -> %s, %s
allow any -> any
`, ov.V4, ov.V6)
}
