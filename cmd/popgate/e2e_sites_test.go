package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// siteHost is a TCP server on a site's LAN host that answers each connection with the
// site's name and the address the connection came from, and remembers those addresses:
// which LAN a client reached, and who reached it.
type siteHost struct {
	name string
	mu   sync.Mutex
	from map[netip.Addr]int
}

func serveSiteHost(t *testing.T, ns *testbed.Netns, addr netip.AddrPort, name string) *siteHost {
	t.Helper()
	h := &siteHost{name: name, from: map[netip.Addr]int{}}
	testbed.ServeTCP(t, ns, addr.String(), func(c net.Conn) {
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		h.mu.Lock()
		h.from[from]++
		h.mu.Unlock()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%s %s\n", name, from)
		c.Close()
	})
	return h
}

// reachedBy is how many connections came from a.
func (h *siteHost) reachedBy(a netip.Addr) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.from[a]
}

// askSite connects from ns to the site host at addr and returns its first line.
func askSite(ctx context.Context, ns *testbed.Netns, addr netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp4", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// pingOnce is one ping from ns to addr, waiting at most 1 s for the answer.
func pingOnce(ctx context.Context, ns *testbed.Netns, addr netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, err := ns.Run(ctx, "ping", "-c", "1", "-W", "1", addr.String())
	if err != nil {
		return fmt.Errorf("ping %s: %v: %s", addr, err, strings.TrimSpace(out))
	}
	return nil
}

// overlayAddr4 is the IPv4 overlay address of a wg-quick config.
func overlayAddr4(t *testing.T, conf string) netip.Addr {
	t.Helper()
	cfg, err := testbed.ParseConfig(conf)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, conf)
	}
	for _, a := range cfg.Interface.Addresses {
		if a.Addr().Is4() {
			return a.Addr()
		}
	}
	t.Fatalf("config has no IPv4 address:\n%s", conf)
	return netip.Addr{}
}

// TestE2EBackboneSites is issue 14's sites and region-switch test: a controller alone, PoP
// fra and PoP ams (role pop only), one exit shared by both, and two tenants, acme and
// globex, each with a site on 10.10.0.0/24 — acme's connector at ams, globex's at fra. An
// acme client at fra reaches acme's LAN across the backbone and never globex's; a globex
// client at ams likewise the other way. Then the acme client switches to ams (its config
// for ams on the same interface, as the official apps switch tunnels): it pings at once,
// and a TCP download from the internet host through the shared exit, started at fra, goes
// on and completes intact.
func TestE2EBackboneSites(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping")
	n := testbed.NewNetwork(t)
	lan := netip.MustParsePrefix("10.10.0.0/24")
	const (
		ctrlPort = 46000 // controller's node sync
		popPort  = 46010 // the PoPs' WireGuard port, for clients
		bbPort   = 46020 // every node's backbone
		sitePort = 46050 // the LAN hosts' TCP server
		filePort = 46080 // the internet host's file
	)

	mk := func(role, ifprefix string, on ...string) *netProc {
		return newNetProc(t, bin, n, role, ifprefix, on...)
	}
	ctrl := mk("bsctl", "bsc", testbed.Backbone)
	controllerAddr := netip.AddrPortFrom(ctrl.node.Addr4[testbed.Backbone], ctrlPort).String()
	ctrl.args = []string{"--roles", "controller", "--web-addr", "127.0.0.1:0",
		"--public-endpoint", netip.AddrPortFrom(ctrl.node.Addr4[testbed.Backbone], ctrlPort+1).String(),
		"--controller-addr", controllerAddr}
	fra := mk("bsfra", "bsf", testbed.WAN, testbed.Backbone)
	ams := mk("bsams", "bsa", testbed.WAN, testbed.Backbone)
	exit := mk("bsx", "bsx", testbed.Backbone, testbed.Internet)
	nodes := []*netProc{fra, ams, exit}
	for _, p := range nodes {
		p.args = []string{"--listen-port", fmt.Sprint(popPort), "--interface", p.ifname, "--web-addr", "127.0.0.1:0",
			"--exit-mode", "userspace", "--backbone-port", fmt.Sprint(bbPort),
			"--backbone-endpoint", netip.AddrPortFrom(p.node.Addr4[testbed.Backbone], bbPort).String()}
	}
	ctrl.startController()
	mustCLI := ctrl.mustCLI
	endpoint := func(p *netProc) string { return netip.AddrPortFrom(p.node.Addr4[testbed.WAN], popPort).String() }
	mustCLI("region", "add", "fra", "--endpoint", endpoint(fra))
	mustCLI("region", "add", "ams", "--endpoint", endpoint(ams))
	for _, j := range []struct {
		p                   *netProc
		roles, region, name string
	}{{fra, "pop", "fra", "fra"}, {ams, "pop", "ams", "ams"}, {exit, "exit", "fra", "x1"}} {
		j.p.start("--join", ctrl.joinToken(j.roles, j.region, j.name))
	}
	ctrl.waitInSync(60*time.Second, "fra", "ams", "x1")

	// Two tenants, each with a site on the same LAN prefix: acme's connector at ams,
	// globex's at fra; each tenant's client in the other region.
	type tenant struct {
		name, siteRegion, clientRegion string
		site                           *testbed.Site
		host                           *siteHost
		clientConf                     string
		client                         *testbed.NetNode
		addr                           netip.Addr // the client's overlay IPv4 address
		siteAddr                       netip.Addr // the site connector's
	}
	tenants := []*tenant{
		{name: "acme", siteRegion: "ams", clientRegion: "fra"},
		{name: "globex", siteRegion: "fra", clientRegion: "ams"},
	}
	for _, tn := range tenants {
		mustCLI("tenant", "add", tn.name)
		siteConf := mustCLI("peer", "add", "--tenant", tn.name, "--site", "office", "--site-prefix", lan.String(),
			"--region", tn.siteRegion, "office-gw")
		mustCLI("route", "add", "--tenant", tn.name, "--via", "site:office", lan.String())
		tn.siteAddr = overlayAddr4(t, siteConf)
		tn.clientConf = mustCLI("peer", "add", "--tenant", tn.name, "--region", tn.clientRegion, "laptop")
		tn.addr = overlayAddr4(t, tn.clientConf)
		tn.site = n.AddSite(t, "bssite", lan)
		tn.host = serveSiteHost(t, tn.site.LAN, netip.AddrPortFrom(tn.site.HostAddr, sitePort), tn.name)
		tn.site.StartConnector(t, "bss"+tn.name[:1]+n.Suffix, siteConf)
		tn.client = n.AddNode(t, "bscli", testbed.WAN)
	}
	ctrl.waitInSync(10*time.Second, "fra", "ams", "x1")
	for _, p := range nodes {
		p.waitLinksUp(30*time.Second, p.ifname+"'s backbone links to be up", 2)
	}
	// Each connector has handshaken with its PoP (PersistentKeepalive sends at once), so
	// the controller knows where each site is.
	for _, tn := range tenants {
		testbed.Poll(t, 30*time.Second, tn.name+"'s site connector to reach its PoP", func(ctx context.Context) error {
			return pingOnce(ctx, tn.site.Connector, netip.MustParseAddr("100.64.0.1"))
		})
	}

	// Each tenant's client reaches its own tenant's site across the backbone.
	for _, tn := range tenants {
		testbed.StartClient(t, tn.client.NS, "bsl"+tn.name[:1]+n.Suffix, tn.clientConf)
		site := netip.AddrPortFrom(tn.site.HostAddr, sitePort)
		testbed.Poll(t, 30*time.Second, fmt.Sprintf("%s's client at %s to reach its site at %s", tn.name, tn.clientRegion, tn.siteRegion),
			func(ctx context.Context) error {
				if err := pingOnce(ctx, tn.client.NS, tn.site.HostAddr); err != nil {
					return err
				}
				got, err := askSite(ctx, tn.client.NS, site)
				if err != nil {
					return err
				}
				if want := fmt.Sprintf("%s %s", tn.name, tn.addr); got != want {
					t.Fatalf("%s's client at %s asked 10.10.0.2 and the answer was %q, want %q: it reached another tenant's site", tn.name, tn.clientRegion, got, want)
				}
				return nil
			})
	}
	// A few more asks each; no connection ever reaches the other tenant's host.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	for range 5 {
		for _, tn := range tenants {
			if got, err := askSite(ctx, tn.client.NS, netip.AddrPortFrom(tn.site.HostAddr, sitePort)); err != nil || !strings.HasPrefix(got, tn.name+" ") {
				t.Errorf("%s's client asked its site: %q, %v", tn.name, got, err)
			}
		}
	}
	cancel()
	for i, tn := range tenants {
		other := tenants[1-i]
		if k := other.host.reachedBy(tn.addr); k > 0 {
			t.Errorf("%s's client reached %s's site host %d times", tn.name, other.name, k)
		}
		if k := tn.host.reachedBy(tn.addr); k < 6 {
			t.Errorf("%s's site host saw %d connections from its client, want 6", tn.name, k)
		}
	}

	// Issue 17: each client resolves its tenant's peers, the site connector at the other
	// region among them, at the anycast DNS address, answered by its own PoP; the other
	// tenant's names are NXDOMAIN; nothing answers DNS on the PoPs' public addresses.
	pops := map[string]*netProc{"fra": fra, "ams": ams}
	dnsClients := func() []dnsClient {
		var cs []dnsClient
		for _, tn := range tenants {
			cs = append(cs, dnsClient{tenant: tn.name, ns: tn.client.NS, addr: tn.addr, name: "laptop", pop: pops[tn.clientRegion]})
		}
		return cs
	}
	siteNames := map[string]map[string]netip.Addr{}
	for _, tn := range tenants {
		siteNames[tn.name] = map[string]netip.Addr{"office-gw": tn.siteAddr}
	}
	checkPeerNamesAtPoPs(t, dnsClients(), siteNames, []*netProc{fra, ams})
	checkNoPublicResolver(t, tenants[0].client.NS, fra, ams)

	// Issue 17: a split DNS zone of each tenant, answered by a DNS server in its site across
	// the backbone (e2e_splitdns_test.go).
	var split []splitDNSTenant
	nodeAddrs := e2eNodeAddrs(t, ctrl)
	for _, tn := range tenants {
		split = append(split, splitDNSTenant{name: tn.name, site: tn.site, client: tn.client.NS, pop: nodeAddrs[tn.clientRegion],
			where: fmt.Sprintf("at %s through its site at %s", tn.clientRegion, tn.siteRegion)})
	}
	e2eSplitDNS(t, ctrl.cli, split)

	// acme's client switches from fra to ams while it downloads from the internet host
	// through the shared exit.
	acme := tenants[0]
	fs := testbed.ServeRandomFileWith(t, n.Internet, testbed.FileServerOptions{
		Addr: netip.AddrPortFrom(testbed.InternetAddr4, filePort).String(), SizeMB: 3, Rate: 256 << 10})
	dlCtx, dlCancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer dlCancel()
	dl := testbed.StartDownload(dlCtx, acme.client.NS, fs.URL(testbed.InternetAddr4))
	testbed.Poll(t, 20*time.Second, "the download through fra and the exit to start", func(context.Context) error {
		if dl.Progress.Load() < 512<<10 {
			return fmt.Errorf("%d bytes so far", dl.Progress.Load())
		}
		return nil
	})
	// Watch the stream: the longest time it received nothing, from the switch on.
	var stall atomic.Int64
	watchCtx, watchCancel := context.WithCancel(context.Background())
	defer watchCancel()
	switched := make(chan time.Time, 1)
	go func() {
		var last time.Time
		select {
		case <-watchCtx.Done():
			return
		case last = <-switched:
		}
		lastN := dl.Progress.Load()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-watchCtx.Done():
				return
			case now := <-tick.C:
				if k := dl.Progress.Load(); k != lastN {
					last, lastN = now, k
				}
				if d := now.Sub(last); int64(d) > stall.Load() {
					stall.Store(int64(d))
				}
			}
		}
	}()

	amsConf := mustCLI("peer", "config", "--tenant", "acme", "--region", "ams", "laptop")
	ifname := "bsla" + n.Suffix
	stripCtx, stripCancel := context.WithTimeout(context.Background(), 30*time.Second)
	stripped, err := testbed.WGQuickStrip(stripCtx, ifname, amsConf)
	stripCancel()
	if err != nil {
		t.Fatal(err)
	}
	setconf := filepath.Join(t.TempDir(), ifname+".conf")
	if err := os.WriteFile(setconf, []byte(stripped), 0o600); err != nil {
		t.Fatal(err)
	}
	before := dl.Progress.Load()
	start := time.Now()
	switched <- start
	acme.client.NS.MustRun(t, "wg", "setconf", ifname, setconf)
	// The client's handshake at ams (its persistent keepalive starts it at once), then a
	// ping right after it: answered, through ams and the exit, without waiting for the
	// controller to learn where the client is now.
	var handshake time.Duration
	for handshake == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := acme.client.NS.Run(ctx, "wg", "show", ifname, "latest-handshakes")
		cancel()
		switch f := strings.Fields(out); {
		case err == nil && len(f) == 2 && f[1] != "0":
			handshake = time.Since(start)
		case time.Since(start) > 30*time.Second:
			t.Fatalf("acme's client did not handshake at ams within 30 s: %v %s", err, out)
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	if err := pingOnce(ctx, acme.client.NS, testbed.InternetAddr4); err != nil {
		t.Errorf("right after its handshake at ams, acme's client's first ping to the internet host got no answer: %v", err)
	}
	cancel()
	var firstPing time.Duration
	testbed.Poll(t, 30*time.Second, "acme's client to ping the internet host through ams after the switch", func(ctx context.Context) error {
		if err := pingOnce(ctx, acme.client.NS, testbed.InternetAddr4); err != nil {
			return err
		}
		firstPing = time.Since(start)
		return nil
	})
	atPing := dl.Progress.Load()
	t.Logf("region switch fra → ams: the handshake at ams %v and the first ping answered through ams and the exit %v after wg setconf",
		handshake.Round(time.Millisecond), firstPing.Round(time.Millisecond))
	// Its site is now at its own PoP: still acme's.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	if got, err := askSite(ctx, acme.client.NS, netip.AddrPortFrom(acme.site.HostAddr, sitePort)); err != nil || got != "acme "+acme.addr.String() {
		t.Errorf("acme's client at ams asked its site: %q, %v", got, err)
	}
	cancel()
	// At ams, the same DNS address answers acme's names: now from ams.
	tenants[0].clientRegion = "ams"
	checkPeerNamesAtPoPs(t, dnsClients(), siteNames, []*netProc{fra, ams})
	r := dl.Wait()
	watchCancel()
	t.Logf("the download through the shared exit (256 KiB/s): %d bytes before the switch, %d by the ping after it, %d in all; the longest time it received nothing after the switch: %v",
		before, atPing, r.N, time.Duration(stall.Load()).Round(time.Millisecond))
	if r.Err != nil || r.N != fs.Size || r.SHA256 != fs.SHA256 {
		t.Fatalf("the download started at fra did not survive the switch to ams: %d of %d bytes, %v, intact: %v",
			r.N, fs.Size, r.Err, r.SHA256 == fs.SHA256)
	}
	if k := tenants[1].host.reachedBy(acme.addr); k > 0 {
		t.Errorf("acme's client reached globex's site host %d times", k)
	}
}
