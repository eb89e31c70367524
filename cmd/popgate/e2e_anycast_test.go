package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// TestE2EAnycastEndpoint: a stock client reaches a PoP at an address the PoP holds besides
// the one facing the client (an anycast address, on lo). The PoP must answer from that
// address: answered from another, the client roams to it (its endpoint changes) and no
// longer follows the anycast address to another PoP when this one fails.
func TestE2EAnycastEndpoint(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping")
	topo := testbed.NewTopology(t)
	const anycast, port = "198.18.0.1", 47301
	topo.Pop.MustRun(t, "ip", "address", "add", anycast+"/32", "dev", "lo")
	topo.Cli.MustRun(t, "ip", "route", "add", anycast+"/32", "via", topo.PopCliAddr.String())

	n := &e2eNode{t: t, bin: bin, topo: topo, dataDir: t.TempDir(), ifname: topo.Name("pg"), port: port, mode: "userspace", dns: "127.0.0.1:53"}
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, n.ifname+".sock")) })
	if err := n.start(); err != nil {
		t.Fatalf("e2e: popgate serve did not start: %v", err)
	}
	n.mustCLI(t, "tenant", "add", "acme")
	conf := n.mustCLI(t, "peer", "add", "--tenant", "acme", "laptop")
	cfg := e2eCheckConfig(t, conf, n.endpoint())
	want := fmt.Sprintf("%s:%d", anycast, port)
	conf = strings.Replace(conf, "Endpoint = "+n.endpoint(), "Endpoint = "+want, 1)
	if !strings.Contains(conf, want) {
		t.Fatalf("no Endpoint = %s in the config:\n%s", n.endpoint(), conf)
	}
	ifname := topo.Name("wgc")
	c := testbed.StartClient(t, topo.Cli, ifname, conf)

	// Traffic into the tunnel: a handshake, and answers to the node's own overlay address.
	dst := cfg.Interface.DNS[0]
	testbed.Poll(t, 30*time.Second, "a handshake with the PoP", func(ctx context.Context) error {
		topo.Cli.Run(ctx, "ping", "-c", "2", "-i", "0.2", "-W", "1", dst)
		out, err := topo.Cli.Run(ctx, "wg", "show", ifname, "latest-handshakes")
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) < 2 || f[1] == "0" {
			return fmt.Errorf("no handshake yet: %q", out)
		}
		return nil
	})
	topo.Cli.Run(context.Background(), "ping", "-c", "5", "-i", "0.2", "-W", "1", dst)
	out := topo.Cli.MustRun(t, "wg", "show", ifname, "endpoints")
	if f := strings.Fields(out); len(f) < 2 || f[1] != want {
		show, _ := c.Show(context.Background())
		t.Errorf("client's endpoint %q, want %s: the PoP answered from another address\n%s", out, want, show)
	}
}
