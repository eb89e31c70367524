package main

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// e2eOfflineFloodMin is how many datagrams the test sends towards the offline peer at the
// least: many times what a device lets wireguard-go hold unsent (256 packets per processor
// pair), so that what wireguard-go drops of them fills that window again and again.
const e2eOfflineFloodMin = 20000

// TestE2EOfflinePeerDoesNotStallItsTenant: a stock client sends a stream of datagrams to a
// peer of its own tenant that never connected, which wireguard-go stages and drops without
// sending, while it downloads a file through the userspace exit. The device bounds what
// wireguard-go holds unsent (gateway/inflight.go); packets it never sends must not hold that
// bound shut: the download completes intact and the client still reaches the Internet host.
func TestE2EOfflinePeerDoesNotStallItsTenant(t *testing.T) {
	n, tr := startUserspaceNode(t, "wq", 51831)
	topo := n.topo
	files := testbed.ServeRandomFile(t, topo.Net, 20)
	n.mustCLI(t, "tenant", "add", "acme")
	// Peers of acme may reach each other (the default policy denies it before the device).
	n.mustCLIStdin(t, e2eBravoOpen, "policy", "set", "--tenant", "acme", "-")
	conf := n.mustCLI(t, "peer", "add", "--tenant", "acme", "laptop")
	e2eCheckConfig(t, conf, n.endpoint())
	deskCfg := e2eCheckConfig(t, n.mustCLI(t, "peer", "add", "--tenant", "acme", "desk"), n.endpoint())
	var desk net.UDPAddr
	for _, a := range deskCfg.Interface.Addresses {
		if a.Addr().Is4() {
			desk = net.UDPAddr{IP: a.Addr().AsSlice(), Port: 9}
		}
	}
	if desk.IP == nil {
		t.Fatalf("desk's config has no IPv4 address: %v", deskCfg.Interface.Addresses)
	}
	testbed.StartClient(t, topo.Cli, topo.Name("wql"), conf)
	testbed.Poll(t, 60*time.Second, "traffic through the exit", func(context.Context) error { return tr.works() })

	c, err := topo.Cli.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var sent atomic.Int64
	flooding := make(chan struct{})
	go func() {
		defer close(flooding)
		payload := make([]byte, 1000)
		for i := 0; ctx.Err() == nil; i++ {
			if i%64 == 0 {
				time.Sleep(time.Millisecond)
			}
			if _, err := c.WriteTo(payload, &desk); err == nil {
				sent.Add(1)
			}
		}
	}()
	// The stream runs before and during the download.
	testbed.Poll(t, 30*time.Second, "the stream to the offline peer to get going", func(context.Context) error {
		if s := sent.Load(); s < e2eOfflineFloodMin/4 {
			return fmt.Errorf("%d datagrams sent", s)
		}
		return nil
	})
	start := time.Now()
	if err := files.CheckDownload(ctx, topo.Cli, topo.NetAddr4); err != nil {
		t.Errorf("download during the stream to the offline peer: %v", err)
	} else {
		t.Logf("downloaded %d MiB in %v while sending to the offline peer", files.Size>>20, time.Since(start).Round(time.Millisecond))
	}
	testbed.Poll(t, 30*time.Second, "enough datagrams to the offline peer", func(context.Context) error {
		if s := sent.Load(); s < e2eOfflineFloodMin {
			return fmt.Errorf("%d datagrams sent", s)
		}
		return nil
	})
	testbed.Poll(t, 30*time.Second, "traffic through the exit during the stream to the offline peer", func(context.Context) error { return tr.works() })
	cancel()
	<-flooding
	t.Logf("%d datagrams sent to the offline peer", sent.Load())
}
