package plane

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// TestPeerOf: every field of a stored peer that the desired state has is carried over.
func TestPeerOf(t *testing.T) {
	sp := store.Peer{ID: 3, TenantID: 2, TenantName: "acme", Name: "gw", PublicKey: key(9),
		IPv4: netip.MustParseAddr("100.64.0.3"), IPv6: netip.MustParseAddr("fd00::3"), Enabled: true,
		ExpiresAt: time.Unix(1e9, 0), Groups: []string{"ops"}, Site: "hq", SitePrefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	want := Peer{ID: 3, Tenant: 2, Name: "gw", PublicKey: key(9), IPv4: sp.IPv4, IPv6: sp.IPv6, Enabled: true,
		ExpiresAt: sp.ExpiresAt, Groups: sp.Groups, Site: "hq", SitePrefixes: sp.SitePrefixes}
	if got := PeerOf(&sp); !reflect.DeepEqual(got, want) {
		t.Errorf("PeerOf = %+v\nwant %+v", got, want)
	}
}

// TestPolicyView: each peer with its two addresses and groups, and a site for each connector;
// a policy naming them compiles against it with nothing unresolved.
func TestPolicyView(t *testing.T) {
	peers := []Peer{
		{Name: "laptop", IPv4: netip.MustParseAddr("100.64.0.2"), IPv6: netip.MustParseAddr("fd00::2"), Groups: []string{"ops"}},
		{Name: "gw", IPv4: netip.MustParseAddr("100.64.0.3"), IPv6: netip.MustParseAddr("fd00::3"),
			Site: "hq", SitePrefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
	}
	want := firewall.View{
		Peers: []firewall.ViewPeer{
			{Name: "laptop", Addrs: []netip.Addr{peers[0].IPv4, peers[0].IPv6}, Groups: []string{"ops"}},
			{Name: "gw", Addrs: []netip.Addr{peers[1].IPv4, peers[1].IPv6}},
		},
		Sites: []firewall.ViewSite{{Name: "hq", Prefixes: peers[1].SitePrefixes}},
	}
	v := PolicyView(peers)
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("PolicyView = %+v\nwant %+v", v, want)
	}
	pol, err := firewall.Parse("allow group:ops -> site:hq\nallow peer:gw -> peer:laptop tcp 22\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := firewall.Compile(pol, &v); err != nil {
		t.Errorf("a policy naming the view's group, site and peers: %v", err)
	}
	if v := PolicyView(nil); v.Peers == nil || len(v.Peers) != 0 || v.Sites != nil {
		t.Errorf("PolicyView(nil) = %#v, want no peers and no sites", v)
	}
}
