package testbed

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
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

// TestTestbedManyClientsAndSite proves the bridge with more than one client and a site behind a
// connector, with stock parts only: two clients of the stock gateway and a site connector,
// configured only from the wg-quick files, reach the internet and the site's LAN host, which
// answers through the tunnel.
func TestTestbedManyClientsAndSite(t *testing.T) {
	RequireRoot(t)
	RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping", "iptables", "ip6tables")
	topo := NewTopology(t)
	macBefore := strings.TrimSpace(topo.Pop.MustRun(t, "cat", "/sys/class/net/"+topo.PopCliLink+"/address"))
	cli2 := topo.NewClient(t)
	lan := netip.MustParsePrefix("10.10.0.0/24")
	site := NewSite(t, topo, lan)
	if out := cli2.MustRun(t, "ip", "-4", "-o", "address", "show"); !strings.Contains(out, "192.0.2.10/24") {
		t.Errorf("the first NewClient has no 192.0.2.10/24:\n%s", out)
	}
	if site.UnderlayAddr != netip.MustParseAddr("192.0.2.11") || site.ConnectorAddr != netip.MustParseAddr("10.10.0.1") ||
		site.HostAddr != netip.MustParseAddr("10.10.0.2") {
		t.Errorf("site addresses: underlay %s, connector %s, host %s", site.UnderlayAddr, site.ConnectorAddr, site.HostAddr)
	}
	if mac := strings.TrimSpace(topo.Pop.MustRun(t, "cat", "/sys/class/net/"+topo.PopCliLink+"/address")); mac != macBefore {
		t.Errorf("the bridge's MAC changed from %s to %s when namespaces were attached", macBefore, mac)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The underlay: every attached namespace reaches Pop and the others over the bridge; the
	// LAN host reaches its connector; nothing reaches Net or the LAN without a tunnel.
	for _, c := range []struct {
		from *Netns
		to   netip.Addr
	}{
		{topo.Cli, topo.PopCliAddr}, {cli2, topo.PopCliAddr}, {site.Connector, topo.PopCliAddr},
		{cli2, topo.CliAddr}, {site.LAN, site.ConnectorAddr},
	} {
		if err := PingN(ctx, c.from, c.to, 1, 2*time.Second); err != nil {
			t.Errorf("underlay: %v", err)
		}
	}
	for _, c := range []struct {
		from *Netns
		to   netip.Addr
	}{{cli2, topo.NetAddr4}, {topo.Cli, site.HostAddr}, {site.LAN, topo.PopCliAddr}} {
		if err := PingN(ctx, c.from, c.to, 1, time.Second); err == nil {
			t.Errorf("%s reaches %s without a tunnel: the topology leaks", c.from, c.to)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	srv := StartStockServer(t, topo, StockServerOptions{})
	StartClient(t, topo.Cli, topo.Name("wgc"), srv.AddPeer(t))
	StartClient(t, cli2, topo.Name("wgd"), srv.AddPeer(t))
	conn := site.StartConnector(t, topo.Name("wgt"), srv.AddSitePeer(t, lan))
	if out := site.LAN.MustRun(t, "ip", "-4", "route", "show", "100.64.0.0/10"); !strings.Contains(out, "via "+site.ConnectorAddr.String()) {
		t.Errorf("the LAN host does not route the overlay via the connector: %q", out)
	}
	text := ServeText(t, site.LAN, netip.AddrPortFrom(site.HostAddr, 80).String(), "site\n")
	for _, ns := range []*Netns{topo.Cli, cli2} {
		Poll(t, 30*time.Second, "ping "+topo.NetAddr4.String()+" from "+ns.Name, func(ctx context.Context) error {
			return PingN(ctx, ns, topo.NetAddr4, 1, time.Second)
		})
		Poll(t, 30*time.Second, "GET from the site's LAN host from "+ns.Name, func(ctx context.Context) error {
			body, err := GetText(ctx, ns, fmt.Sprintf("http://%s:%d/", site.HostAddr, text))
			if err == nil && body != "site\n" {
				err = fmt.Errorf("body %q, want %q", body, "site\n")
			}
			return err
		})
	}
	// The LAN host reaches the clients' overlay addresses through the connector.
	cliAddr := netip.MustParseAddr("100.64.0.2")
	if err := Ping(ctx, site.LAN, cliAddr); err != nil {
		t.Errorf("LAN host to a client's overlay address: %v", err)
	}
	if out, err := conn.Show(ctx); err != nil || !strings.Contains(out, "latest handshake") {
		t.Errorf("the connector's wg show has no handshake (%v):\n%s", err, out)
	}
}

// TestTestbedEchoFlowAndServers checks the servers and the one-socket echo flow on loopback.
func TestTestbedEchoFlowAndServers(t *testing.T) {
	RequireRoot(t)
	RequireTools(t, "ip")
	ns := NewNetns(t, "srv")
	lo := netip.MustParseAddr("127.0.0.1")
	echo := StartUDPEchoOn(t, ns, "127.0.0.1:7")
	if echo.Port != 7 {
		t.Errorf("StartUDPEchoOn :7 listens on port %d", echo.Port)
	}
	flow := StartEchoFlow(t, ns, echo.Addr(lo), 20*time.Millisecond)
	Poll(t, 10*time.Second, "echo flow answers", func(context.Context) error {
		if flow.Replies() < 5 {
			return fmt.Errorf("%d replies to %d datagrams", flow.Replies(), flow.Sent())
		}
		return nil
	})
	if time.Since(flow.LastReply()) > 5*time.Second {
		t.Errorf("LastReply = %v", flow.LastReply())
	}
	flow.Stop()
	flow.Stop()

	port := ServeBanner(t, ns, "127.0.0.1:0", "SSH-2.0-testbed\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b, err := ReadBanner(ctx, ns, netip.AddrPortFrom(lo, uint16(port))); err != nil || b != "SSH-2.0-testbed\r\n" {
		t.Errorf("ReadBanner = %q, %v", b, err)
	}
	files := ServeRandomFileWith(t, ns, FileServerOptions{Addr: "127.0.0.1:0", SizeMB: 1, Rate: 4 << 20, Index: "index\n"})
	if b, err := GetText(ctx, ns, fmt.Sprintf("http://127.0.0.1:%d/", files.Port)); err != nil || b != "index\n" {
		t.Errorf("GET / = %q, %v", b, err)
	}
	var progress atomic.Int64
	start := time.Now()
	n, sha, err := DownloadProgress(ctx, ns, files.URL(lo), &progress)
	if err != nil || n != files.Size || sha != files.SHA256 || progress.Load() != n {
		t.Errorf("DownloadProgress = %d, %s, %v (progress %d), want %d bytes %s", n, sha, err, progress.Load(), files.Size, files.SHA256)
	}
	// 1 MiB at 4 MiB/s: the rate limit makes it last about 250 ms.
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("a rate-limited download of 1 MiB at 4 MiB/s took only %v", d)
	}
}
