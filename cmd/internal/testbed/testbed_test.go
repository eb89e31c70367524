package testbed

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	keyA = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	keyB = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
)

func TestParseConfig(t *testing.T) {
	good := "[Interface]\n" +
		"# a comment\n" +
		"PrivateKey = " + keyA + "\n" +
		"address = 100.64.0.2/32, fd00::2/128  # trailing comment\n" +
		"Address = 10.0.0.1\n" +
		"DNS = 100.64.0.1, corp.example\n" +
		"MTU = 1420\n" +
		"\n" +
		"[peer]\n" +
		"PublicKey = " + keyB + "\n" +
		"Endpoint = 192.0.2.1:51820\n" +
		"AllowedIPs = 0.0.0.0/0, ::/0\n" +
		"AllowedIPs = 10.1.0.0/16\n" +
		"PersistentKeepalive = 25\n"
	c, err := ParseConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs := []netip.Prefix{
		netip.MustParsePrefix("100.64.0.2/32"), netip.MustParsePrefix("fd00::2/128"), netip.MustParsePrefix("10.0.0.1/32"),
	}
	if !slices.Equal(c.Interface.Addresses, wantAddrs) {
		t.Errorf("Addresses = %v, want %v", c.Interface.Addresses, wantAddrs)
	}
	if c.Interface.PrivateKey != keyA || c.Interface.MTU != 1420 || !slices.Equal(c.Interface.DNS, []string{"100.64.0.1", "corp.example"}) {
		t.Errorf("Interface = %+v", c.Interface)
	}
	if len(c.Peers) != 1 {
		t.Fatalf("Peers = %+v", c.Peers)
	}
	p := c.Peers[0]
	wantAllowed := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"), netip.MustParsePrefix("10.1.0.0/16")}
	if p.PublicKey != keyB || p.Endpoint != "192.0.2.1:51820" || p.PersistentKeepalive != 25 || !slices.Equal(p.AllowedIPs, wantAllowed) {
		t.Errorf("Peer = %+v", p)
	}
	if ep, err := p.EndpointAddrPort(); err != nil || ep != netip.MustParseAddrPort("192.0.2.1:51820") {
		t.Errorf("EndpointAddrPort = %v, %v", ep, err)
	}

	bad := []struct{ name, text string }{
		{"empty", ""},
		{"no interface", "[Peer]\nPublicKey = " + keyB + "\n"},
		{"unknown section", "[Interface]\n[Foo]\n"},
		{"unknown key", "[Interface]\nColour = blue\n"},
		{"key outside section", "PrivateKey = " + keyA + "\n[Interface]\n"},
		{"no equals", "[Interface]\nPrivateKey\n"},
		{"short key", "[Interface]\nPrivateKey = AAAA\n"},
		{"not base64", "[Interface]\nPrivateKey = " + strings.Repeat("!", 44) + "\n"},
		{"bad address", "[Interface]\nAddress = 100.64.0.300/32\n"},
		{"bad prefix length", "[Interface]\nAddress = 100.64.0.2/33\n"},
		{"bad mtu", "[Interface]\nMTU = big\n"},
		{"listen port range", "[Interface]\nListenPort = 70000\n"},
		{"twice", "[Interface]\nMTU = 1420\nMTU = 1280\n"},
		{"two interfaces", "[Interface]\n[Interface]\n"},
		{"peer without key", "[Interface]\n[Peer]\nAllowedIPs = 0.0.0.0/0\n"},
		{"bad allowed ip", "[Interface]\n[Peer]\nPublicKey = " + keyB + "\nAllowedIPs = everything\n"},
		{"bad keepalive", "[Interface]\n[Peer]\nPublicKey = " + keyB + "\nPersistentKeepalive = -1\n"},
	}
	for _, tc := range bad {
		if c, err := ParseConfig(tc.text); err == nil {
			t.Errorf("%s: ParseConfig accepted %q: %+v", tc.name, tc.text, c)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("[Interface]\nPrivateKey = " + keyA + "\nAddress = 100.64.0.2/32\n[Peer]\nPublicKey = " + keyB + "\nAllowedIPs = ::/0\n")
	f.Add("[Interface]\nMTU = 1420 # x\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseConfig(text)
		if err != nil {
			return
		}
		for _, p := range c.Peers {
			if p.PublicKey == "" {
				t.Fatalf("accepted a peer without PublicKey: %q", text)
			}
		}
	})
}

func TestKeys(t *testing.T) {
	// From wg(8): `echo yAnz… | wg pubkey`.
	pub, err := PublicKey(keyA)
	if err != nil || pub != "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=" {
		t.Errorf("PublicKey(%s) = %q, %v", keyA, pub, err)
	}
	priv, pub, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := PublicKey(priv); again != pub {
		t.Errorf("GenerateKeyPair: public %s does not match private (%s)", pub, again)
	}
}

// TestNetnsDo checks that Do runs in the namespace and that sockets made there stay there.
func TestNetnsDo(t *testing.T) {
	RequireRoot(t)
	RequireTools(t, "ip")
	ns := NewNetns(t, "do")
	if _, err := os.Stat(filepath.Join("/var/run/netns", ns.Name)); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := ns.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"lo"}) {
		t.Errorf("interfaces in a new namespace = %v, want [lo]", names)
	}
	echo := StartUDPEcho(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EchoUDP(ctx, ns, echo.Addr(netip.MustParseAddr("127.0.0.1"))); err != nil {
		t.Errorf("echo on the namespace's loopback: %v", err)
	}
	if out := ns.MustRun(t, "ip", "-o", "link", "show", "lo"); !strings.Contains(out, "UP") {
		t.Errorf("lo is not up: %s", out)
	}
}

// TestStockGateway proves the harness with stock parts only: Debian's wireguard-go as the
// server in Pop with kernel forwarding and MASQUERADE, a stock client in Cli, and HTTP, UDP and
// ping over IPv4 and IPv6 through the tunnel to Net. It is also the baseline of `make bench`.
func TestStockGateway(t *testing.T) {
	RequireRoot(t)
	RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping", "iptables", "ip6tables")
	t.Run("debian", func(t *testing.T) { testStockGateway(t, "") })
	t.Run("upstream", func(t *testing.T) { testStockGateway(t, BuildUpstreamWireGuardGo(t)) })
}

// testStockGateway runs the stock gateway and client with the wireguard-go binary wggo ("" is
// Debian's) on both ends.
func testStockGateway(t *testing.T, wggo string) {
	topo := NewTopology(t)
	files := ServeRandomFile(t, topo.Net, 20)
	echo := StartUDPEcho(t, topo.Net)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Without a tunnel Cli cannot reach Net at all.
	if err := PingN(ctx, topo.Cli, topo.NetAddr4, 1, time.Second); err == nil {
		t.Fatal("Cli reaches Net without a tunnel: the topology leaks")
	}

	srv := StartStockServer(t, topo, StockServerOptions{WireGuardGo: wggo})
	conf := srv.AddPeer(t)
	client := StartClientWith(t, topo.Cli, topo.Name("wgc"), conf, ClientOptions{WireGuardGo: wggo})

	Poll(t, 30*time.Second, "first ping through the tunnel", func(ctx context.Context) error {
		return PingN(ctx, topo.Cli, topo.NetAddr4, 1, time.Second)
	})
	for _, addr := range []netip.Addr{topo.NetAddr4, topo.NetAddr6} {
		start := time.Now()
		if err := files.CheckDownload(ctx, topo.Cli, addr); err != nil {
			t.Errorf("download: %v", err)
		} else {
			t.Logf("downloaded %d MiB from %s in %v", files.Size>>20, addr, time.Since(start).Round(time.Millisecond))
		}
		ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
		if err := EchoUDP(ectx, topo.Cli, echo.Addr(addr)); err != nil {
			t.Errorf("udp echo: %v", err)
		}
		ecancel()
		if err := Ping(ctx, topo.Cli, addr); err != nil {
			t.Errorf("ping: %v", err)
		}
	}

	show := topo.Pop.MustRun(t, "wg", "show", srv.Ifname, "dump")
	clientPub, _ := PublicKey(client.Config.Interface.PrivateKey)
	if !strings.Contains(show, clientPub) {
		t.Errorf("server's wg show does not list the client %s:\n%s", clientPub, show)
	}
	if out, err := client.Show(ctx); err != nil || !strings.Contains(out, "latest handshake") {
		t.Errorf("client's wg show has no handshake (%v):\n%s", err, out)
	}
}
