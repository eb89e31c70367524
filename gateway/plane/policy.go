package plane

import (
	"net/netip"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// PeerOf is the desired state of a stored peer.
func PeerOf(p *store.Peer) Peer {
	return Peer{ID: p.ID, Tenant: p.TenantID, Name: p.Name, PublicKey: p.PublicKey, IPv4: p.IPv4, IPv6: p.IPv6,
		Enabled: p.Enabled, ExpiresAt: p.ExpiresAt, Groups: p.Groups, Site: p.Site, SitePrefixes: p.SitePrefixes}
}

// PolicyView is what a tenant's policy is compiled against: its peers (name, overlay
// addresses, groups) and the sites their connectors serve. The node compiles the policy it
// is given against the view of the tenant's peers in the desired state, and the controller
// checks a policy against the view of the same peers before it stores it: one view, so what
// the controller accepts is what the node enforces.
func PolicyView(peers []Peer) firewall.View {
	v := firewall.View{Peers: make([]firewall.ViewPeer, 0, len(peers))}
	for _, p := range peers {
		v.Peers = append(v.Peers, firewall.ViewPeer{Name: p.Name, Addrs: []netip.Addr{p.IPv4, p.IPv6}, Groups: p.Groups})
		if p.Site != "" {
			v.Sites = append(v.Sites, firewall.ViewSite{Name: p.Site, Prefixes: p.SitePrefixes})
		}
	}
	return v
}
