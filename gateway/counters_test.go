package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// TestNodeCountersNeverGoBack: the node's, the tenant's and the peer's counters keep what
// they counted when a peer is disabled (its device closes with it), enabled again, trimmed
// or removed, and the policy's rule hits when an unrelated peer is added (which compiles the
// rule set again) or the same policy is applied again; a changed policy starts its changed
// rules at zero and says since when.
func TestNodeCountersNeverGoBack(t *testing.T) {
	ctx := context.Background()
	cfg := Config{exitDialer: testServers(t, []byte("hello"))}
	network := onMemNet(&cfg)
	node := startBareNode(t, cfg)
	clientKey, _ := store.GeneratePrivateKey()
	laptop := plane.Peer{ID: 7, Tenant: 1, Name: "laptop", PublicKey: clientKey.PublicKey(), Enabled: true,
		IPv4: netip.MustParseAddr("100.64.0.2"), IPv6: netip.MustParseAddr("fd00:aaaa:bbbb::2")}
	otherKey, _ := store.GeneratePrivateKey()
	other := plane.Peer{ID: 8, Tenant: 1, Name: "phone", PublicKey: otherKey.PublicKey(), Enabled: true,
		IPv4: netip.MustParseAddr("100.64.0.3"), IPv6: netip.MustParseAddr("fd00:aaaa:bbbb::3")}
	gen := int64(0)
	apply := func(peers ...plane.Peer) {
		t.Helper()
		gen++
		if err := node.Apply(ctx, desiredOf(gen, peers...)); err != nil {
			t.Fatal(err)
		}
	}
	apply(laptop)
	client := network.startClient(t, fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = %s/32, %s/128\n\n[Peer]\nPublicKey = %s\nEndpoint = %s\n",
		clientKey, laptop.IPv4, laptop.IPv6, node.Config().PrivateKey.PublicKey(), memNodeEndpoint))
	eventually(t, "the client through the exit", 20*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })

	type counts struct {
		node, tenant, peer plane.Traffic
		hits               []uint64
		since              []time.Time
		drops              uint64
	}
	read := func() counts {
		t.Helper()
		r := node.Report()
		var c counts
		c.node = r.Node.Traffic
		if len(r.Tenants) != 1 {
			t.Fatalf("tenants reported: %+v", r.Tenants)
		}
		c.tenant = r.Tenants[0].Traffic
		for _, rs := range r.Tenants[0].Rules {
			c.hits = append(c.hits, rs.Hits)
			c.since = append(c.since, rs.Since)
		}
		for _, v := range r.Tenants[0].Drops {
			c.drops += v
		}
		if p, ok := reportedPeer(r, laptop.PublicKey); ok {
			c.peer = plane.Traffic{RxBytes: p.RxBytes, TxBytes: p.TxBytes, RxPackets: p.RxPackets, TxPackets: p.TxPackets}
		}
		return c
	}
	notLess := func(what string, before, after counts) {
		t.Helper()
		for _, x := range []struct {
			name string
			b, a plane.Traffic
		}{{"node", before.node, after.node}, {"tenant", before.tenant, after.tenant}, {"peer", before.peer, after.peer}} {
			if x.a.RxBytes < x.b.RxBytes || x.a.TxBytes < x.b.TxBytes || x.a.RxPackets < x.b.RxPackets || x.a.TxPackets < x.b.TxPackets {
				t.Errorf("%s: the %s's traffic went back from %+v to %+v", what, x.name, x.b, x.a)
			}
		}
		if after.drops < before.drops {
			t.Errorf("%s: the tenant's drops went back from %d to %d", what, before.drops, after.drops)
		}
	}

	c0 := read()
	if c0.peer.RxBytes == 0 || c0.peer.RxPackets == 0 || c0.tenant != c0.peer || c0.node != c0.peer {
		t.Fatalf("after traffic: node %+v, tenant %+v, peer %+v: want the peer's traffic everywhere", c0.node, c0.tenant, c0.peer)
	}
	if len(c0.hits) != 3 || c0.hits[1] == 0 || c0.since[0].IsZero() {
		t.Fatalf("rule hits after traffic: %v since %v", c0.hits, c0.since)
	}

	// An unrelated peer added: the rule set is compiled again with the same rules.
	apply(laptop, other)
	c1 := read()
	notLess("a peer added", c0, c1)
	if fmt.Sprint(c1.hits) != fmt.Sprint(c0.hits) || fmt.Sprint(c1.since) != fmt.Sprint(c0.since) {
		t.Errorf("a peer added: rule hits %v since %v, before %v since %v", c1.hits, c1.since, c0.hits, c0.since)
	}

	// Disabled: the device leaves (and with both disabled, the tenant's device closes).
	laptop.Enabled, other.Enabled = false, false
	apply(laptop, other)
	client.lostAccess(t, "disabled")
	c2 := read()
	notLess("disabled", c1, c2)
	if node.snap.Load().tenants[1].dev != nil {
		t.Error("the tenant's device is still open with no peer enabled")
	}

	// Enabled again: the counters go on from where they were.
	laptop.Enabled = true
	apply(laptop, other)
	eventually(t, "the client enabled again", 40*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })
	c3 := read()
	notLess("enabled again", c2, c3)
	if c3.peer.RxBytes <= c2.peer.RxBytes || c3.peer.RxPackets <= c2.peer.RxPackets {
		t.Errorf("enabled again: the peer's counters did not grow: %+v, before %+v", c3.peer, c2.peer)
	}

	// The same policy applied again (a new generation, nothing changed), then a changed one.
	apply(laptop, other)
	c4 := read()
	notLess("applied again", c3, c4)
	if c4.hits[1] < c3.hits[1] {
		t.Errorf("applied again: rule hits %v, before %v", c4.hits, c3.hits)
	}
	gen++
	d := desiredOf(gen, laptop, other)
	d.Tenants[0].Policy = strings.Replace(plane.DefaultPolicy(testOverlay), "allow any -> any\n", "allow any -> any udp\n", 1)
	if err := node.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	c5 := read()
	if c5.hits[0] < c4.hits[0] || !c5.since[0].Equal(c4.since[0]) || c5.hits[1] != 0 || !c5.since[1].After(c4.since[1]) {
		t.Errorf("a changed rule: hits %v since %v, before %v since %v: want the first carried on, the second from zero since now",
			c5.hits, c5.since, c4.hits, c4.since)
	}

	// Removed: its traffic stays in the tenant's and the node's totals.
	apply(other)
	c6 := read()
	c6.peer = c5.peer // no longer reported
	notLess("removed", c5, c6)
	if c6.tenant.RxBytes < c5.peer.RxBytes {
		t.Errorf("removed: the tenant's traffic %+v lost the peer's %+v", c6.tenant, c5.peer)
	}
}
