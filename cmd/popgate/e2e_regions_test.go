package main

import (
	"strings"
	"testing"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// TestE2ERegionConfigs: with a second region added, a peer's config for that region carries
// its endpoint and server key and is otherwise the peer's (the same key and addresses, and
// wg-quick takes it); the config of the node's own region is what peer add printed and a stock
// client connects with it. (A PoP of the other region comes with joining nodes.)
func TestE2ERegionConfigs(t *testing.T) {
	n, tr := startUserspaceNode(t, "rg", 42051)
	topo := n.topo

	n.mustCLI(t, "tenant", "add", "acme")
	home := n.mustCLI(t, "peer", "add", "--tenant", "acme", "laptop")
	homeCfg := e2eCheckConfig(t, home, n.endpoint())
	n.mustCLI(t, "region", "add", "fra", "--endpoint", "vpn-fra.example.com:42052")
	fra := n.mustCLI(t, "peer", "config", "--tenant", "acme", "--region", "fra", "laptop")
	fraCfg := e2eCheckConfig(t, fra, "vpn-fra.example.com:42052")
	if fraCfg.Interface.PrivateKey != homeCfg.Interface.PrivateKey || len(fraCfg.Interface.Addresses) != 2 ||
		fraCfg.Interface.Addresses[0] != homeCfg.Interface.Addresses[0] || fraCfg.Interface.Addresses[1] != homeCfg.Interface.Addresses[1] {
		t.Errorf("the fra config is another peer's:\n%s\nthe home config:\n%s", fra, home)
	}
	if fraCfg.Peers[0].PublicKey == homeCfg.Peers[0].PublicKey {
		t.Error("fra's config names the node's key, not fra's own")
	}
	if !strings.Contains(n.mustCLI(t, "region", "list"), fraCfg.Peers[0].PublicKey) {
		t.Error("region list does not show the key fra's config names")
	}
	if again := n.mustCLI(t, "peer", "config", "--tenant", "acme", "laptop"); again != home {
		t.Errorf("the home config changed when fra was added:\n%s\nwas:\n%s", again, home)
	}

	testbed.StartClient(t, topo.Cli, topo.Name("rgc"), home)
	tr.check(t, false)
}
