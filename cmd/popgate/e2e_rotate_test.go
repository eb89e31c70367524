package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// TestE2ERotate: after `popgate peer rotate`, a stock client with the old config gets nothing
// through and is gone from the device, and a stock client configured from the config the
// command printed gets through.
func TestE2ERotate(t *testing.T) {
	n, tr := startUserspaceNode(t, "pg", 51821)
	topo := n.topo
	n.mustCLI(t, "tenant", "add", "acme")
	oldConf := n.mustCLI(t, "peer", "add", "--tenant", "acme", "laptop")
	oldCfg := e2eCheckConfig(t, oldConf, n.endpoint())
	oldPub, err := testbed.PublicKey(oldCfg.Interface.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	old := testbed.StartClient(t, topo.Cli, topo.Name("wgo"), oldConf)
	testbed.Poll(t, 60*time.Second, "traffic with the first config", func(context.Context) error { return tr.works() })

	newConf := n.mustCLI(t, "peer", "rotate", "--tenant", "acme", "laptop")
	newCfg := e2eCheckConfig(t, newConf, n.endpoint())
	newPub, err := testbed.PublicKey(newCfg.Interface.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if newPub == oldPub || !slices.Equal(newCfg.Interface.Addresses, oldCfg.Interface.Addresses) {
		t.Fatalf("peer rotate: key %s → %s, addresses %v → %v; want a new key and the same addresses",
			oldPub, newPub, oldCfg.Interface.Addresses, newCfg.Interface.Addresses)
	}
	if p, ok := e2eFindPeer(n.mustPeers(t), "acme", "laptop"); !ok || p.PublicKey != newPub {
		t.Errorf("peer list after rotate: %+v (found %v), want public key %s", p, ok, newPub)
	}

	// The old config: its session is gone from the device and nothing gets through.
	tr.waitBlocked(t, "peer rotate")
	out := topo.Pop.MustRun(t, "wg", "show", n.ifname)
	if strings.Contains(out, oldPub) {
		t.Errorf("wg show %s still lists the old key %s after the rotation:\n%s", n.ifname, oldPub, out)
	}

	// The new config, on the same device (the same addresses), imported as printed.
	if err := old.Stop(); err != nil {
		t.Logf("stopping the old client: %v", err)
	}
	testbed.StartClient(t, topo.Cli, topo.Name("wgn"), newConf)
	testbed.Poll(t, 60*time.Second, "traffic with the new config", func(context.Context) error { return tr.works() })
	testbed.Poll(t, 30*time.Second, "ping over IPv6 with the new config", func(ctx context.Context) error {
		return testbed.PingN(ctx, topo.Cli, topo.NetAddr6, 1, time.Second)
	})
	testbed.Poll(t, 30*time.Second, "wg show to list the new key", func(ctx context.Context) error {
		out, err := topo.Pop.Run(ctx, "wg", "show", n.ifname)
		if err != nil {
			return err
		}
		if !strings.Contains(out, newPub) {
			return fmt.Errorf("wg show %s does not list %s", n.ifname, newPub)
		}
		return nil
	})
	audit := n.mustCLI(t, "audit", "--action", "peer.rotate")
	if !strings.Contains(audit, "peer.rotate") || !strings.Contains(audit, "cli") {
		t.Errorf("audit has no peer.rotate by cli:\n%s", audit)
	}
}
