package testbed

import (
	"context"
	"io"
	"net/netip"
	"testing"
	"time"
)

// TestNetworkAnycast builds the many-node network: a client reaches an anycast address at
// whichever PoP Switch routes it to, and at the other once the first is withdrawn; nodes on
// the internet bridge reach the Internet host; the client reaches neither the backbone nor
// the internet bridge.
func TestNetworkAnycast(t *testing.T) {
	RequireRoot(t)
	RequireTools(t, "ip", "ping")
	n := NewNetwork(t)
	p1 := n.AddNode(t, "pop", WAN, Backbone)
	p2 := n.AddNode(t, "pop", WAN, Backbone)
	x := n.AddNode(t, "exit", Backbone, Internet)
	cli := n.AddClient(t)
	anycast := netip.MustParseAddr("198.18.0.1")
	n.AddAnycast(t, anycast, false, p1)
	p2.NS.MustRun(t, "ip", "address", "add", "198.18.0.1/32", "dev", "lo")
	n.RouteVia(t, cli, anycast)

	// Which PoP answers: a TCP server on the anycast address in each says its name.
	for _, p := range []*NetNode{p1, p2} {
		l, err := p.NS.Listen("tcp", "198.18.0.1:8000")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		name := p.NS.Name
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				io.WriteString(c, name)
				c.Close()
			}
		}()
	}
	who := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := cli.NS.DialContext(ctx, "tcp", "198.18.0.1:8000")
		if err != nil {
			t.Fatalf("client → anycast: %v", err)
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := who(); got != p1.NS.Name {
		t.Fatalf("anycast answered by %q, want %s", got, p1.NS.Name)
	}
	n.Announce(t, anycast, p2) // p1 withdrawn
	if got := who(); got != p2.NS.Name {
		t.Fatalf("after the withdrawal anycast answered by %q, want %s", got, p2.NS.Name)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := x.NS.Run(ctx, "ping", "-c1", "-W2", InternetAddr4.String()); err != nil {
		t.Fatalf("exit → internet host: %v\n%s", err, out)
	}
	if out, err := p1.NS.Run(ctx, "ping", "-c1", "-W2", x.Addr4[Backbone].String()); err != nil {
		t.Fatalf("PoP → exit over the backbone bridge: %v\n%s", err, out)
	}
	if out, err := p1.NS.Run(ctx, "ping", "-6", "-c1", "-W2", x.Addr6[Backbone].String()); err != nil {
		t.Fatalf("PoP → exit over the backbone bridge, IPv6: %v\n%s", err, out)
	}
	for _, dst := range []netip.Addr{InternetAddr4, x.Addr4[Backbone]} {
		if _, err := cli.NS.Run(ctx, "ping", "-c1", "-W1", dst.String()); err == nil {
			t.Fatalf("client reached %s outside a tunnel", dst)
		}
	}
}
