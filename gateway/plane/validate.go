package plane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/popgate/popgate/store"
)

// ErrInvalid is wrapped by every error of Validate.
var ErrInvalid = errors.New("invalid desired state")

// Validate checks what a node relies on before it applies d: the layout is Format; regions
// have valid unique names, endpoints and public keys, the region d is for is one of them and
// its key (when d carries one) belongs to it, and every tenant is allowed there; the
// overlay is one IPv4 and one IPv6 prefix holding the gateway addresses; IDs, tenant names,
// site names within a tenant, public keys and overlay addresses are unique (a key or an
// address twice would hand one tenant's traffic to another); every peer and route belongs to
// a tenant of d; names follow the store's rules (no control characters); addresses lie in
// the overlay; prefixes are masked; a route's via parses (ParseVia); a tenant's DNS zones are
// unique valid names with 1 to store.MaxDNSZoneServers valid servers, its DNS upstreams are
// as the store writes them (public addresses) and its blocklists are bounded and named
// (validateDNS); flow bounds lie in 0 to store.MaxFlowLimit; the backbone's nodes and where peers are make sense (validateBackbone); checks are well formed (validateChecks). Peer names are unique within a tenant in the store, which
// Validate does not check again: a name twice harms no other tenant, and the check would cost
// a map of every peer. Validate is for a Desired that crossed a network or a file; it costs
// maps of every key and address (BenchmarkValidate). The error, wrapping ErrInvalid, names
// the first problem and where it is.
func (d *Desired) Validate() error {
	if d == nil {
		return invalid("no desired state (nil)")
	}
	if d.Format != Format {
		return invalid("format %d, this node reads format %d: run the same popgate version on the node and the controller", d.Format, Format)
	}
	if d.Generation < 0 {
		return invalid("generation %d is negative", d.Generation)
	}
	if err := d.Overlay.Validate(); err != nil {
		return err
	}
	regions := make(map[string]*Region, len(d.Regions))
	regionKeys := make(map[store.Key]bool, len(d.Regions))
	for i := range d.Regions {
		r := &d.Regions[i]
		if err := store.ValidateRegionName(r.Name); err != nil {
			return invalid("region %d: %v", i, err)
		}
		if regions[r.Name] != nil {
			return invalid("region %q is there twice", r.Name)
		}
		if err := store.ValidateEndpoint(r.Endpoint); err != nil {
			return invalid("region %q: %v", r.Name, err)
		}
		if r.PublicKey.IsZero() || regionKeys[r.PublicKey] {
			return invalid("region %q: public key %s is zero or another region's too", r.Name, r.PublicKey)
		}
		regions[r.Name], regionKeys[r.PublicKey] = r, true
	}
	if d.Region != "" && regions[d.Region] == nil {
		return invalid("the state is for region %q, which is not among its regions", d.Region)
	}
	if d.RegionKey != nil && (d.Region == "" || d.RegionKey.PublicKey() != regions[d.Region].PublicKey) {
		return invalid("the region key does not belong to region %q's public key", d.Region)
	}
	tenants := make(map[int64]bool, len(d.Tenants))
	tenantNames := make(map[string]bool, len(d.Tenants))
	for i := range d.Tenants {
		t := &d.Tenants[i]
		if t.ID <= 0 || tenants[t.ID] {
			return invalid("tenant %q: id %d is not a unique positive number", t.Name, t.ID)
		}
		if err := store.ValidateTenantName(t.Name); err != nil {
			return invalid("tenant %d: %v", t.ID, err)
		}
		if tenantNames[t.Name] {
			return invalid("tenant %q is there twice", t.Name)
		}
		if !inRange(t.MaxFlowsPerPeer) || !inRange(t.MaxFlows) {
			return invalid("tenant %q: flow bounds %d per peer, %d in all: use 0 (the default) to %d", t.Name, t.MaxFlowsPerPeer, t.MaxFlows, store.MaxFlowLimit)
		}
		for j, r := range t.Regions {
			if regions[r] == nil || j > 0 && t.Regions[j-1] >= r {
				return invalid("tenant %q: its regions %q are not sorted regions of the state without duplicates", t.Name, t.Regions)
			}
		}
		if d.Region != "" && len(t.Regions) > 0 && !slices.Contains(t.Regions, d.Region) {
			return invalid("tenant %q is not allowed in region %q, which the state is for", t.Name, d.Region)
		}
		if err := t.validateDNS(); err != nil {
			return err
		}
		tenants[t.ID], tenantNames[t.Name] = true, true
	}

	type named struct {
		tenant int64
		name   string
	}
	ids := make(map[int64]bool, len(d.Peers))
	keys := make(map[store.Key]bool, len(d.Peers))
	addrs := make(map[netip.Addr]bool, 2*len(d.Peers))
	sites := map[named]bool{}
	for i := range d.Peers {
		p := &d.Peers[i]
		at := peerAt{p}
		switch {
		case p.ID <= 0 || ids[p.ID]:
			return invalid("%s: the id is not a unique positive number", at)
		case !tenants[p.Tenant]:
			return invalid("%s: there is no such tenant", at)
		case p.PublicKey.IsZero() || keys[p.PublicKey]:
			return invalid("%s: public key %s is zero or another peer's too", at, p.PublicKey)
		case !p.IPv4.Is4() || !d.Overlay.V4.Contains(p.IPv4) || p.IPv4 == d.Overlay.Gateway4 || addrs[p.IPv4]:
			return invalid("%s: IPv4 address %s is not a free address of the overlay %s", at, p.IPv4, d.Overlay.V4)
		case !p.IPv6.Is6() || !d.Overlay.V6.Contains(p.IPv6) || p.IPv6 == d.Overlay.Gateway6 || addrs[p.IPv6]:
			return invalid("%s: IPv6 address %s is not a free address of the overlay %s", at, p.IPv6, d.Overlay.V6)
		case len(p.Groups) > store.MaxPeerGroups:
			return invalid("%s: %d groups, at most %d", at, len(p.Groups), store.MaxPeerGroups)
		case (p.Site == "") != (len(p.SitePrefixes) == 0):
			return invalid("%s: a site needs its prefixes and prefixes need a site (site %q, %d prefixes)", at, p.Site, len(p.SitePrefixes))
		case len(p.SitePrefixes) > store.MaxSitePrefixes:
			return invalid("%s: %d site prefixes, at most %d", at, len(p.SitePrefixes), store.MaxSitePrefixes)
		}
		if err := store.ValidatePeerName(p.Name); err != nil {
			return invalid("%s: %v", at, err)
		}
		for _, g := range p.Groups {
			if err := store.ValidateGroupName(g); err != nil {
				return invalid("%s: %v", at, err)
			}
		}
		if p.Site != "" {
			if err := store.ValidateSiteName(p.Site); err != nil {
				return invalid("%s: %v", at, err)
			}
			if sites[named{p.Tenant, p.Site}] {
				return invalid("%s: the tenant has two connectors of site %q", at, p.Site)
			}
			sites[named{p.Tenant, p.Site}] = true
		}
		for _, pf := range p.SitePrefixes {
			if err := checkPrefix(pf); err != nil {
				return invalid("%s: site prefix %s: %v", at, pf, err)
			}
		}
		ids[p.ID], keys[p.PublicKey] = true, true
		addrs[p.IPv4], addrs[p.IPv6] = true, true
	}

	type routeKey struct {
		tenant int64
		prefix netip.Prefix
	}
	routes := make(map[routeKey]bool, len(d.Routes))
	for _, r := range d.Routes {
		at := routeAt{r}
		if !tenants[r.Tenant] {
			return invalid("%s: there is no such tenant", at)
		}
		if err := checkPrefix(r.Prefix); err != nil {
			return invalid("%s: %v", at, err)
		}
		if routes[routeKey{r.Tenant, r.Prefix}] {
			return invalid("%s: the tenant has two routes for the prefix", at)
		}
		routes[routeKey{r.Tenant, r.Prefix}] = true
		if _, err := ParseVia(r.Via); err != nil {
			return invalid("%s: %v", at, err)
		}
	}
	if err := d.validateChecks(tenants); err != nil {
		return err
	}
	return d.validateBackbone(ids)
}

// validateBackbone checks Self, Nodes and PeerNodes: IDs between 1 and MaxNodeID, unique,
// Self not among Nodes; valid names, known roles, host:port endpoints, public keys neither
// zero nor shared; each PeerNode names a peer of d (peers holds their IDs) once, at Self or
// one of Nodes.
func (d *Desired) validateBackbone(peers map[int64]bool) error {
	if d.Self > MaxNodeID {
		return invalid("self: node id %d is above %d", d.Self, MaxNodeID)
	}
	nodes := make(map[uint32]bool, len(d.Nodes)+1)
	keys := make(map[store.Key]bool, len(d.Nodes))
	if d.Self != 0 {
		nodes[d.Self] = true
	}
	for i := range d.Nodes {
		n := &d.Nodes[i]
		switch {
		case n.ID == 0 || n.ID > MaxNodeID:
			return invalid("node %q: id %d is not between 1 and %d", n.Name, n.ID, MaxNodeID)
		case nodes[n.ID]:
			return invalid("node %q: id %d is there twice (or is this node's own)", n.Name, n.ID)
		case n.BackboneKey.IsZero() || keys[n.BackboneKey]:
			return invalid("node %q: backbone key %s is zero or another node's too", n.Name, n.BackboneKey)
		}
		if err := store.ValidateNodeName(n.Name); err != nil {
			return invalid("node %d: %v", n.ID, err)
		}
		for j, r := range n.Roles {
			if r != RolePoP && r != RoleExit || slices.Contains(n.Roles[:j], r) {
				return invalid("node %q: roles %q are not among %q and %q without duplicates", n.Name, n.Roles, RolePoP, RoleExit)
			}
		}
		if n.Region != "" {
			if err := store.ValidateRegionName(n.Region); err != nil {
				return invalid("node %q: %v", n.Name, err)
			}
		}
		if err := store.ValidateEndpoint(n.BackboneEndpoint); err != nil {
			return invalid("node %q: backbone %v", n.Name, err)
		}
		nodes[n.ID], keys[n.BackboneKey] = true, true
	}
	placed := make(map[int64]bool, len(d.PeerNodes))
	for _, pn := range d.PeerNodes {
		switch {
		case !peers[pn.Peer]:
			return invalid("peer node: peer %d is not a peer of the state", pn.Peer)
		case placed[pn.Peer]:
			return invalid("peer node: peer %d is at two nodes", pn.Peer)
		case !nodes[pn.Node]:
			return invalid("peer node: peer %d is at node %d, which is neither this node nor one of its nodes", pn.Peer, pn.Node)
		}
		placed[pn.Peer] = true
	}
	return nil
}

// MaxNodeID is the highest backbone ID: the backbone addresses nodes in 240.0.0.0/4 by
// ID (gateway/backbone), whose last address is not a node's.
const MaxNodeID uint32 = 1<<28 - 2

// Via is a route's parsed Route.Via (store.Via): the internet, a site, or exits in order.
type Via = store.Via

// ParseVia reads a Route.Via (store.ParseVia): "internet", "site:NAME" or
// "exit:x1,exit:x2" (1 to 8 exit nodes by name, in order, none twice).
func ParseVia(via string) (Via, error) { return store.ParseVia(via) }

// Validate checks the overlay as Desired.Validate does.
func (ov Overlay) Validate() error {
	switch {
	case !ov.V4.IsValid() || !ov.V4.Addr().Is4() || ov.V4 != ov.V4.Masked() || ov.V4.Bits() > 30:
		return invalid("overlay IPv4 prefix %s is not a masked IPv4 prefix of at most /30", ov.V4)
	case !ov.V6.IsValid() || !ov.V6.Addr().Is6() || ov.V6.Addr().Is4In6() || ov.V6 != ov.V6.Masked() || ov.V6.Bits() > 126:
		return invalid("overlay IPv6 prefix %s is not a masked IPv6 prefix of at most /126", ov.V6)
	case !ov.V4.Contains(ov.Gateway4) || ov.Gateway4 == ov.V4.Addr():
		return invalid("gateway address %s is not a host of the overlay %s", ov.Gateway4, ov.V4)
	case !ov.V6.Contains(ov.Gateway6) || ov.Gateway6 == ov.V6.Addr():
		return invalid("gateway address %s is not a host of the overlay %s", ov.Gateway6, ov.V6)
	}
	return nil
}

// checkPrefix refuses an invalid or unmasked prefix and an IPv4-mapped IPv6 one.
func checkPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("not a valid prefix")
	case p != p.Masked():
		return fmt.Errorf("has host bits set (%s)", p.Masked())
	case p.Addr().Is4In6():
		return errors.New("an IPv4-mapped IPv6 prefix")
	}
	return nil
}

// peerAt and routeAt name what a message is about; formatted only for an error.
type (
	peerAt  struct{ p *Peer }
	routeAt struct{ r Route }
)

func (a peerAt) String() string {
	return fmt.Sprintf("peer %q (id %d) of tenant %d", a.p.Name, a.p.ID, a.p.Tenant)
}

func (a routeAt) String() string { return fmt.Sprintf("route %s of tenant %d", a.r.Prefix, a.r.Tenant) }

func inRange(bound int) bool { return bound >= 0 && bound <= store.MaxFlowLimit }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
