package main

// The end-to-end test of tenants as isolated networks: one `popgate serve` with two tenants,
// each with two stock clients and a site connector in front of a LAN with the same prefix,
// all configured only from the text `popgate peer add` printed. It checks groups and ports in
// policy, isolation between tenants, hairpin between peers of one tenant, per-tenant routes to
// sites, stateful replies, the counters of `status --json`, and a live policy change that cuts
// one flow while a download keeps running. Needs root and the tools of `make test-deps`.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/webui"
)

// e2eLAN is the prefix of both tenants' sites.
var e2eLAN = netip.MustParsePrefix("10.10.0.0/24")

// e2eAcmePolicy is acme's policy: eng reaches the web server in Net and the office's web
// server, everyone the UDP echo in Net; nothing else. e2eAcmeCut is the same without the
// UDP rule, set while traffic runs.
const (
	e2eAcmePolicy = "default deny\n" +
		"allow group:eng -> 198.51.100.2 tcp 80\n" +
		"allow group:eng -> site:office tcp 80\n" +
		"allow any -> 198.51.100.2 udp 7\n"
	e2eAcmeCut = "default deny\n" +
		"allow group:eng -> 198.51.100.2 tcp 80\n" +
		"allow group:eng -> site:office tcp 80\n"
	// e2eBravoOpen lets bravo's peers reach each other (and everything else).
	e2eBravoOpen = "default deny\n" +
		"allow any -> any\n"
)

// e2eCutDeadline is how soon after `policy set` a flow the new policy denies must stop: the
// product promises a second, the test allows for a loaded machine.
const e2eCutDeadline = 2500 * time.Millisecond

// e2eTenantPeer is a peer of the test and the namespace it runs in.
type e2eTenantPeer struct {
	tenant, name string
	ns           *testbed.Netns
	v4, v6       netip.Addr // overlay addresses, from the printed config
}

func (p *e2eTenantPeer) String() string { return p.tenant + "/" + p.name }

// e2eCheck is one named check of what a namespace reaches. A check that something works is
// polled; one that something is blocked (blocked set) gets one attempt of e2eBlockedWait,
// which it must survive without getting through.
type e2eCheck struct {
	name    string
	blocked bool
	fn      func(ctx context.Context) error
}

// e2eBlockedWait is how long a blocked check tries to get through: a connect times out, two
// pings go unanswered, an echo stays silent.
const e2eBlockedWait = 4 * time.Second

// e2eExpect runs the checks at once, those that something works polled until they pass or
// timeout passes, and reports every failure after all finished. It stops the test when a
// check that something works failed.
func e2eExpect(t *testing.T, timeout time.Duration, checks ...e2eCheck) {
	t.Helper()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			if !c.blocked {
				errs[i] = testbed.PollErr(context.Background(), timeout, c.fn)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), e2eBlockedWait)
			defer cancel()
			errs[i] = c.fn(ctx)
		})
	}
	wg.Wait()
	fatal := false
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", checks[i].name, err)
			fatal = fatal || !checks[i].blocked
		}
	}
	if fatal {
		t.FailNow()
	}
}

// e2eGet: GET url from p's namespace answers want.
func e2eGet(p *e2eTenantPeer, ns *testbed.Netns, url, want string) e2eCheck {
	return e2eCheck{fmt.Sprintf("%s GET %s", p, url), false, func(ctx context.Context) error {
		body, err := testbed.GetText(ctx, ns, url)
		if err == nil && body != want {
			err = fmt.Errorf("answered %q, want %q", body, want)
		}
		return err
	}}
}

// e2ePing: one ping from ns to addr is answered.
func e2ePing(who string, ns *testbed.Netns, addr netip.Addr) e2eCheck {
	return e2eCheck{fmt.Sprintf("%s ping %s", who, addr), false, func(ctx context.Context) error {
		return testbed.PingN(ctx, ns, addr, 1, time.Second)
	}}
}

// e2eEcho: a UDP echo from ns to dst comes back.
func e2eEcho(who string, ns *testbed.Netns, dst netip.AddrPort) e2eCheck {
	return e2eCheck{fmt.Sprintf("%s udp echo %s", who, dst), false, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		return testbed.EchoUDP(ctx, ns, dst)
	}}
}

// e2eNoPing: two pings from ns to addr go unanswered.
func e2eNoPing(who string, ns *testbed.Netns, addr netip.Addr) e2eCheck {
	return e2eCheck{fmt.Sprintf("%s must not reach %s (ping)", who, addr), true, func(ctx context.Context) error {
		if err := testbed.PingN(ctx, ns, addr, 2, time.Second); err == nil {
			return fmt.Errorf("ping answered")
		}
		return nil
	}}
}

// e2eNoConnect: a TCP connect from ns to dst fails or times out (within the check's
// timeout).
func e2eNoConnect(who string, ns *testbed.Netns, dst netip.AddrPort) e2eCheck {
	return e2eCheck{fmt.Sprintf("%s must not connect to %s (tcp)", who, dst), true, func(ctx context.Context) error {
		c, err := ns.DialContext(ctx, "tcp", dst.String())
		if err != nil {
			return nil
		}
		c.Close()
		return fmt.Errorf("connected")
	}}
}

// e2eNoEcho: a UDP echo from ns to dst does not come back.
func e2eNoEcho(who string, ns *testbed.Netns, dst netip.AddrPort) e2eCheck {
	return e2eCheck{fmt.Sprintf("%s must not get udp echo from %s", who, dst), true, func(ctx context.Context) error {
		if testbed.EchoUDP(ctx, ns, dst) == nil {
			return fmt.Errorf("echo answered")
		}
		return nil
	}}
}

// mustCLIStdin is mustCLI with stdin, for commands that read "-".
func (n *e2eNode) mustCLIStdin(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, n.bin, append(args, "--data-dir", n.dataDir)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("popgate %s: %v\nstderr: %s\nstdout: %s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String()
}

// tenantStatus returns the tenants of `status --json` by name.
func (n *e2eNode) tenantStatus(ctx context.Context) (map[string]webui.APITenantStatus, error) {
	stdout, stderr, err := n.cli(ctx, "status", "--json")
	if err != nil {
		return nil, fmt.Errorf("popgate status --json: %w: %s", err, strings.TrimSpace(stderr))
	}
	var st webui.APIStatus
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		return nil, fmt.Errorf("popgate status --json: %w: %s", err, stdout)
	}
	out := map[string]webui.APITenantStatus{}
	for _, ts := range st.Tenants {
		out[ts.Name] = ts
	}
	return out, nil
}

// e2eDrops sums the drop counters whose reason (after any "from_peer." or "to_peer.") is
// reason.
func e2eDrops(ts webui.APITenantStatus, reason string) uint64 {
	var sum uint64
	for k, v := range ts.Drops {
		if k == reason || strings.HasSuffix(k, "."+reason) {
			sum += v
		}
	}
	return sum
}

func TestE2ETenantsUserspace(t *testing.T) { testE2ETenants(t, "userspace") }

func TestE2ETenantsKernel(t *testing.T) { testE2ETenants(t, "kernel") }

// testE2ETenants runs the scenario of the tenants issue in one exit mode.
func testE2ETenants(t *testing.T, mode string) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "ping")
	begin := time.Now()
	topo := testbed.NewTopology(t)
	net4 := topo.NetAddr4
	n := &e2eNode{t: t, bin: bin, topo: topo, dataDir: t.TempDir(), ifname: topo.Name("pg"), port: 51821, mode: mode,
		dns: netip.AddrPortFrom(net4, 53).String()} // nothing answers there: the test asks no names
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, n.ifname+".sock")) })

	// The "internet": a web server on :80 with a download slow enough to last seconds, an
	// SSH-like banner on :22, a UDP echo on :7.
	files := testbed.ServeRandomFileWith(t, topo.Net, testbed.FileServerOptions{Addr: ":80", SizeMB: 12, Rate: 2 << 20, Index: "net\n"})
	testbed.ServeBanner(t, topo.Net, ":22", "SSH-2.0-popgate-e2e\r\n")
	testbed.StartUDPEchoOn(t, topo.Net, ":7")
	web, ssh, echo := netip.AddrPortFrom(net4, 80), netip.AddrPortFrom(net4, 22), netip.AddrPortFrom(net4, 7)
	netURL := "http://" + web.String() + "/"

	if err := n.start(); err != nil {
		t.Fatalf("e2e: popgate serve did not start: %v", err)
	}
	var st webui.APIStatus
	if err := json.Unmarshal([]byte(n.mustCLI(t, "status", "--json")), &st); err != nil || st.Device.ExitMode != mode {
		t.Fatalf("status --json: exit mode %q (%v), want %q", st.Device.ExitMode, err, mode)
	}

	// Tenants, peers, sites, routes and policy, all through the CLI.
	n.mustCLI(t, "tenant", "add", "acme")
	n.mustCLI(t, "tenant", "add", "bravo")
	sites := map[string]*testbed.Site{}
	for _, tenant := range []string{"acme", "bravo"} {
		site := testbed.NewSite(t, topo, e2eLAN)
		sites[tenant] = site
		// The LAN host's web server says whose site it is.
		testbed.ServeText(t, site.LAN, netip.AddrPortFrom(site.HostAddr, 80).String(), tenant+"\n")
	}
	newPeer := func(tenant, name, ifPrefix string, ns *testbed.Netns, flags ...string) *e2eTenantPeer {
		t.Helper()
		args := append([]string{"peer", "add", "--tenant", tenant}, flags...)
		conf := n.mustCLI(t, append(args, name)...)
		var cfg *testbed.Config
		if site := sites[tenant]; ns == site.Connector {
			cfg = e2eCheckSiteConfig(t, conf, n.endpoint())
			site.StartConnector(t, topo.Name(ifPrefix), conf)
		} else {
			cfg = e2eCheckConfig(t, conf, n.endpoint())
			testbed.StartClient(t, ns, topo.Name(ifPrefix), conf)
		}
		p := &e2eTenantPeer{tenant: tenant, name: name, ns: ns}
		for _, a := range cfg.Interface.Addresses {
			if a.Addr().Is4() {
				p.v4 = a.Addr()
			} else {
				p.v6 = a.Addr()
			}
		}
		return p
	}
	alice := newPeer("acme", "alice", "wca", topo.Cli, "--group", "eng")
	bob := newPeer("acme", "bob", "wcb", topo.NewClient(t))
	carol := newPeer("bravo", "carol", "wcc", topo.NewClient(t))
	dave := newPeer("bravo", "dave", "wcd", topo.NewClient(t))
	site := "--site=office"
	prefix := "--site-prefix=" + e2eLAN.String()
	acmeGW := newPeer("acme", "office-gw", "wsa", sites["acme"].Connector, site, prefix)
	bravoGW := newPeer("bravo", "office-gw", "wsb", sites["bravo"].Connector, site, prefix)
	// The isolation checks address peers of the other tenant by their overlay addresses, which
	// the node hands out from one pool: no two peers share one.
	seen := map[netip.Addr]*e2eTenantPeer{}
	for _, p := range []*e2eTenantPeer{alice, bob, carol, dave, acmeGW, bravoGW} {
		for _, a := range []netip.Addr{p.v4, p.v6} {
			if !a.IsValid() || seen[a] != nil {
				t.Fatalf("%s has overlay address %s, also %v's (or none)", p, a, seen[a])
			}
			seen[a] = p
		}
	}
	for _, tenant := range []string{"acme", "bravo"} {
		n.mustCLI(t, "route", "add", "--tenant", tenant, "--via", "site:office", e2eLAN.String())
		var rs webui.APIRoutes
		out := n.mustCLI(t, "route", "list", "--tenant", tenant, "--json")
		if err := json.Unmarshal([]byte(out), &rs); err != nil {
			t.Fatalf("route list --json: %v: %s", err, out)
		}
		for _, want := range []webui.APIRoute{{Prefix: e2eLAN.String(), Via: "site:office"}, {Prefix: "0.0.0.0/0", Via: "internet"}, {Prefix: "::/0", Via: "internet"}} {
			if !slices.ContainsFunc(rs.Routes, func(r webui.APIRoute) bool { return r.Prefix == want.Prefix && r.Via == want.Via }) {
				t.Errorf("routes of %s = %+v, want %+v among them", tenant, rs.Routes, want)
			}
		}
	}
	policyFile := filepath.Join(t.TempDir(), "acme.policy")
	if err := os.WriteFile(policyFile, []byte(e2eAcmePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	n.mustCLI(t, "policy", "set", "--tenant", "acme", policyFile)
	if shown := n.mustCLI(t, "policy", "show", "--tenant", "acme"); !strings.Contains(shown, "udp 7") || !strings.Contains(shown, "site:office") {
		t.Errorf("policy show --tenant acme does not show the policy just set:\n%s", shown)
	}
	// Listeners on the clients' overlay addresses, for the checks that nobody else reaches them.
	for _, p := range []*e2eTenantPeer{alice, bob, dave} {
		testbed.ServeText(t, p.ns, ":8080", p.name+"\n")
	}
	t.Logf("set up %s with 2 tenants, 6 stock clients in %v", mode, time.Since(begin).Round(time.Millisecond))

	// Everything that must work comes up (the handshakes are in these polls).
	lanURL := "http://" + netip.AddrPortFrom(sites["acme"].HostAddr, 80).String() + "/"
	e2eExpect(t, 60*time.Second,
		e2eGet(alice, alice.ns, netURL, "net\n"),
		e2eEcho(bob.String(), bob.ns, echo),
		e2ePing(carol.String(), carol.ns, net4),
		e2ePing(dave.String(), dave.ns, net4),
		e2eGet(alice, alice.ns, lanURL, "acme\n"),
		e2eGet(carol, carol.ns, lanURL, "bravo\n"),
		e2eGet(dave, dave.ns, lanURL, "bravo\n"),
		e2eGet(alice, alice.ns, fmt.Sprintf("http://%s/", netip.AddrPortFrom(alice.v4, 8080)), "alice\n"), // locally
	)
	t.Logf("all clients and sites up after %v", time.Since(begin).Round(time.Millisecond))

	t.Run("policy and isolation", func(t *testing.T) {
		acmeLAN, bravoLAN := sites["acme"].LAN, sites["bravo"].LAN
		at := func(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, 8080) }
		e2eExpect(t, 30*time.Second,
			// Groups and ports: eng reaches :80 only; bob, in no group, neither.
			e2eNoConnect(alice.String(), alice.ns, ssh),
			e2eNoConnect(bob.String(), bob.ns, web),
			e2eNoConnect(bob.String(), bob.ns, ssh),
			// bravo reaches none of acme's peers, nor acme's site connector.
			e2eNoPing(carol.String(), carol.ns, alice.v4),
			e2eNoPing(carol.String(), carol.ns, alice.v6),
			e2eNoPing(carol.String(), carol.ns, bob.v4),
			e2eNoPing(carol.String(), carol.ns, acmeGW.v4),
			e2eNoConnect(carol.String(), carol.ns, at(alice.v4)),
			e2eNoConnect(carol.String(), carol.ns, at(alice.v6)),
			e2eNoConnect(carol.String(), carol.ns, at(bob.v4)),
			e2eNoPing(dave.String(), dave.ns, alice.v4),
			e2eNoPing("bravo's LAN host", bravoLAN, alice.v4),
			// Nor the other way.
			e2eNoPing(alice.String(), alice.ns, carol.v4),
			e2eNoPing(alice.String(), alice.ns, bravoGW.v4),
			e2eNoConnect(bob.String(), bob.ns, at(dave.v4)),
			// Peers of bravo do not reach each other under the default policy (hairpin).
			e2eNoPing(carol.String(), carol.ns, dave.v4),
			e2eNoPing(carol.String(), carol.ns, dave.v6),
			e2eNoConnect(carol.String(), carol.ns, at(dave.v4)),
			// Nothing reaches a peer unasked, not even from its own tenant's site ...
			e2eNoPing("acme's LAN host", acmeLAN, alice.v4),
			e2eNoConnect("acme's LAN host", acmeLAN, at(alice.v4)),
			// ... while the peer's own flows to the site get their replies.
			e2eGet(alice, alice.ns, lanURL, "acme\n"),
			e2eGet(carol, carol.ns, lanURL, "bravo\n"),
			e2eEcho(alice.String(), alice.ns, echo),
		)
	})

	// Issue 17 on one node: each tenant's split zone, answered by a DNS server in its own
	// site, whatever the tenant's policy (acme's denies most); the appliance asks from node
	// 1's own address.
	t.Run("split DNS", func(t *testing.T) {
		appliance, _ := e2eOverlay.NodeAddrs(plane.ControllerNode)
		e2eSplitDNS(t, n.cli, []splitDNSTenant{
			{name: "acme", site: sites["acme"], client: alice.ns, pop: appliance, where: "through its site at the appliance"},
			{name: "bravo", site: sites["bravo"], client: carol.ns, pop: appliance, where: "through its site at the appliance"},
		})
	})

	t.Run("status counters", func(t *testing.T) {
		status := func() (acme, bravo webui.APITenantStatus) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ts, err := n.tenantStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return ts["acme"], ts["bravo"]
		}
		acme, bravo := status()
		hits := map[int]uint64{}
		for _, r := range acme.Rules {
			hits[r.Line] = r.Hits
		}
		for line := 2; line <= 4; line++ { // the three allow rules of e2eAcmePolicy
			if hits[line] == 0 {
				t.Errorf("acme's rule on line %d has no hits, though flows matched it", line)
			}
		}
		if e2eDrops(acme, "default_deny") == 0 {
			t.Errorf("acme counts no default_deny drops")
		}
		if e2eDrops(bravo, "policy_deny") == 0 {
			t.Errorf("bravo counts no policy_deny drops (carol -> dave under the default policy)")
		}
		t.Logf("acme: rules %+v, drops %v; bravo: drops %v", acme.Rules, acme.Drops, bravo.Drops)

		// The pings of acme's LAN host to alice are counted as default_deny drops.
		before := e2eDrops(acme, "default_deny")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if testbed.PingN(ctx, sites["acme"].LAN, alice.v4, 3, time.Second) == nil {
			t.Errorf("acme's LAN host reached %s", alice.v4)
		}
		testbed.Poll(t, 10*time.Second, "acme's default_deny drops to count the LAN host's 3 pings", func(context.Context) error {
			acme, _ := status()
			if d := e2eDrops(acme, "default_deny") - before; d < 3 {
				return fmt.Errorf("%d more: %v", d, acme.Drops)
			}
			return nil
		})
	})

	t.Run("hairpin by policy", func(t *testing.T) {
		n.mustCLIStdin(t, e2eBravoOpen, "policy", "set", "--tenant", "bravo", "-")
		e2eExpect(t, 30*time.Second,
			e2ePing(carol.String(), carol.ns, dave.v4),
			e2ePing(carol.String(), carol.ns, dave.v6),
			e2eGet(carol, carol.ns, fmt.Sprintf("http://%s/", netip.AddrPortFrom(dave.v4, 8080)), "dave\n"),
		)
		// "any -> any" is any address of bravo's own network: still nothing of acme.
		e2eExpect(t, 30*time.Second,
			e2eNoPing(carol.String(), carol.ns, alice.v4),
			e2eNoConnect(carol.String(), carol.ns, netip.AddrPortFrom(alice.v4, 8080)),
			e2eNoPing("bravo's LAN host", sites["bravo"].LAN, alice.v4),
			e2eGet(carol, carol.ns, lanURL, "bravo\n"),
		)
	})

	t.Run("live policy change", func(t *testing.T) {
		flow := testbed.StartEchoFlow(t, alice.ns, echo, 100*time.Millisecond)
		testbed.Poll(t, 30*time.Second, "udp echo flow from alice", func(context.Context) error {
			if time.Since(flow.LastReply()) > 500*time.Millisecond {
				return fmt.Errorf("%d replies to %d datagrams, the last at %v", flow.Replies(), flow.Sent(), flow.LastReply())
			}
			return nil
		})
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		dl := testbed.StartDownload(dctx, alice.ns, files.URL(net4))
		testbed.Poll(t, 30*time.Second, "download to start", func(context.Context) error {
			if p := dl.Progress.Load(); p < 1<<20 {
				return fmt.Errorf("%d bytes so far", p)
			}
			return nil
		})
		if ts, err := n.tenantStatus(context.Background()); err != nil || ts["acme"].Flows == 0 {
			t.Errorf("status --json: acme tracks no flows during a download (%v): %+v", err, ts["acme"])
		}

		// Both flows run right up to the change.
		testbed.Poll(t, 10*time.Second, "udp echo flow to be answered just before the policy change", func(context.Context) error {
			if since := time.Since(flow.LastReply()); since > 300*time.Millisecond {
				return fmt.Errorf("last answered %v ago (%d answers to %d datagrams)", since.Round(time.Millisecond), flow.Replies(), flow.Sent())
			}
			return nil
		})
		setAt := time.Now()
		atChange := dl.Progress.Load()
		n.mustCLIStdin(t, e2eAcmeCut, "policy", "set", "--tenant", "acme", "-")
		took := time.Since(setAt)
		// Cut: no answer for 500 ms, and the last one within the deadline of the command.
		testbed.Poll(t, e2eCutDeadline+500*time.Millisecond, "udp echo flow to be cut", func(context.Context) error {
			if since := time.Since(flow.LastReply()); since < 500*time.Millisecond {
				return fmt.Errorf("answered %v ago", since.Round(time.Millisecond))
			}
			return nil
		})
		e2eExpect(t, 30*time.Second,
			e2eNoEcho(alice.String()+" (new flow)", alice.ns, echo),
			e2eNoEcho(bob.String()+" (new flow)", bob.ns, echo),
			e2eGet(alice, alice.ns, netURL, "net\n"), // what the new policy allows still works
		)
		cut := flow.LastReply().Sub(setAt)
		if cut > e2eCutDeadline {
			t.Errorf("the udp echo flow was answered %v after `policy set` started, want none after %v", cut.Round(time.Millisecond), e2eCutDeadline)
		}
		t.Logf("udp echo flow: last answer %v after `policy set` started (the command took %v; %d answers to %d datagrams)",
			cut.Round(time.Millisecond), took.Round(time.Millisecond), flow.Replies(), flow.Sent())

		r := dl.Wait()
		switch {
		case r.Err != nil:
			t.Errorf("download during the policy change: %v", r.Err)
		case r.N != files.Size || r.SHA256 != files.SHA256:
			t.Errorf("download: got %d bytes sha256 %s, want %d bytes %s", r.N, r.SHA256, files.Size, files.SHA256)
		case atChange >= files.Size:
			t.Errorf("the download was over before the policy change: make it last longer")
		default:
			t.Logf("download of %d MiB completed intact %v after the policy change (%d MiB before it)",
				files.Size>>20, time.Since(setAt).Round(time.Millisecond), atChange>>20)
		}
	})

	t.Run("groups are editable", func(t *testing.T) {
		n.mustCLI(t, "peer", "set", "--tenant", "acme", "--group", "eng", "bob")
		e2eExpect(t, 30*time.Second, e2eGet(bob, bob.ns, netURL, "net\n"))
		e2eExpect(t, 30*time.Second, e2eNoConnect(bob.String(), bob.ns, ssh))
	})
	t.Logf("%s: %v in all", mode, time.Since(begin).Round(time.Millisecond))
}

// e2eCheckSiteConfig checks the config `peer add --site` printed for a connector: like a
// client's, but with AllowedIPs the overlay prefixes only (100.64.0.0/10 and a ULA /48), so
// that the LAN keeps its own way out and its replies to clients go through the tunnel.
func e2eCheckSiteConfig(t *testing.T, conf, endpoint string) *testbed.Config {
	t.Helper()
	cfg, err := testbed.ParseConfig(conf)
	if err != nil {
		t.Fatalf("peer add --site printed no valid wg-quick file: %v\n%s", err, conf)
	}
	if len(cfg.Interface.Addresses) != 2 || cfg.Interface.PrivateKey == "" || len(cfg.Peers) != 1 {
		t.Fatalf("site connector config: want a private key, two addresses and one peer:\n%s", conf)
	}
	p := cfg.Peers[0]
	if p.Endpoint != endpoint {
		t.Errorf("site connector config: Endpoint = %q, want %q", p.Endpoint, endpoint)
	}
	allowed := slices.Clone(p.AllowedIPs)
	slices.SortFunc(allowed, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	ula := netip.MustParsePrefix("fd00::/8")
	if len(allowed) != 2 || allowed[0] != netip.MustParsePrefix("100.64.0.0/10") ||
		allowed[1].Bits() != 48 || !ula.Contains(allowed[1].Addr()) {
		t.Errorf("site connector config: AllowedIPs = %v, want 100.64.0.0/10 and the overlay's ULA /48 only", p.AllowedIPs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := testbed.WGQuickStrip(ctx, "pgcheck", conf); err != nil {
		t.Errorf("wg-quick does not accept the site connector config: %v", err)
	}
	if t.Failed() {
		t.Fatalf("the config:\n%s", conf)
	}
	return cfg
}
