package gateway

import (
	"net/netip"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
)

func TestPeersByTenant(t *testing.T) {
	peers := []plane.Peer{{Tenant: 1, Name: "a"}, {Tenant: 1, Name: "b"}, {Tenant: 2, Name: "c"}, {Tenant: 1, Name: "d"}}
	got := peersByTenant(peers)
	names := func(ps []plane.Peer) (s string) {
		for _, p := range ps {
			s += p.Name
		}
		return s
	}
	if len(got) != 2 || names(got[1]) != "abd" || names(got[2]) != "c" {
		t.Errorf("peersByTenant = %v", got)
	}
	if names(peers) != "abcd" {
		t.Errorf("peersByTenant changed its input: %v", peers)
	}
	// One run per tenant, as the controller lists them: no copies.
	got = peersByTenant(peers[:3])
	if &got[1][0] != &peers[0] || &got[2][0] != &peers[2] {
		t.Error("peersByTenant copied a tenant's run of peers")
	}
	if len(peersByTenant(nil)) != 0 {
		t.Error("peersByTenant(nil) is not empty")
	}
}

// TestPolicyKey: the key changes with everything a policy compiles against, and only with it.
func TestPolicyKey(t *testing.T) {
	base := func() []plane.Peer {
		return []plane.Peer{
			{Name: "laptop", IPv4: netip.MustParseAddr("100.64.0.2"), IPv6: netip.MustParseAddr("fd00::2"), Groups: []string{"eng", "ops"}, Enabled: true},
			{Name: "gw", IPv4: netip.MustParseAddr("100.64.0.3"), IPv6: netip.MustParseAddr("fd00::3"), Site: "office",
				SitePrefixes: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}},
		}
	}
	const text = "default deny\nallow group:eng -> site:office\n"
	key := policyKey(text, base())
	for name, change := range map[string]func([]plane.Peer) ([]plane.Peer, string){
		"text": func(ps []plane.Peer) ([]plane.Peer, string) { return ps, text + "\n" },
		"name": func(ps []plane.Peer) ([]plane.Peer, string) { ps[0].Name = "laptop2"; return ps, text },
		"ipv4": func(ps []plane.Peer) ([]plane.Peer, string) {
			ps[0].IPv4 = netip.MustParseAddr("100.64.0.9")
			return ps, text
		},
		"ipv6": func(ps []plane.Peer) ([]plane.Peer, string) {
			ps[1].IPv6 = netip.MustParseAddr("fd00::9")
			return ps, text
		},
		"a group":     func(ps []plane.Peer) ([]plane.Peer, string) { ps[0].Groups = []string{"eng"}; return ps, text },
		"groups join": func(ps []plane.Peer) ([]plane.Peer, string) { ps[0].Groups = []string{"engops"}; return ps, text },
		"site":        func(ps []plane.Peer) ([]plane.Peer, string) { ps[1].Site = "lab"; return ps, text },
		"prefixes": func(ps []plane.Peer) ([]plane.Peer, string) {
			ps[1].SitePrefixes = append(ps[1].SitePrefixes, netip.MustParsePrefix("10.20.0.0/16"))
			return ps, text
		},
		"a peer less": func(ps []plane.Peer) ([]plane.Peer, string) { return ps[:1], text },
		"order":       func(ps []plane.Peer) ([]plane.Peer, string) { return []plane.Peer{ps[1], ps[0]}, text },
	} {
		if ps, txt := change(base()); policyKey(txt, ps) == key {
			t.Errorf("%s changed, the key did not", name)
		}
	}
	same := base()
	same[0].Enabled, same[0].ID, same[1].ExpiresAt = false, 7, time.Now()
	if policyKey(text, same) != key {
		t.Error("the key changed with fields the policy does not see")
	}
}
