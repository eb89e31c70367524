package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/cmd/internal/testbed"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/webui"
)

// splitZone is the zone the split DNS tests give their tenants, served by a DNS server in
// a site; splitDNSPort is where the site's server listens.
const (
	splitZone    = "corp.acme.example"
	splitDNSPort = 47053
)

// siteDNS is a DNS server on a site's LAN host, authoritative for splitZone: every A
// question for a name under it is answered with answer, but names starting with "nx",
// which do not exist. It remembers the addresses the queries came from.
type siteDNS struct {
	answer netip.Addr
	mu     sync.Mutex
	from   map[netip.Addr]int
}

func serveSiteDNS(t *testing.T, ns *testbed.Netns, addr netip.AddrPort, answer netip.Addr) *siteDNS {
	t.Helper()
	s := &siteDNS{answer: answer, from: map[netip.Addr]int{}}
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: splitZone + ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns." + splitZone + ".", Mbox: "hostmaster." + splitZone + ".", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 30}
	testbed.ServeUDP(t, ns, addr.String(), func(req []byte, from net.Addr) []byte {
		q := new(dns.Msg)
		if q.Unpack(req) != nil || len(q.Question) != 1 {
			return nil
		}
		if ua, ok := from.(*net.UDPAddr); ok {
			s.mu.Lock()
			s.from[ua.AddrPort().Addr().Unmap()]++
			s.mu.Unlock()
		}
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		name := strings.ToLower(q.Question[0].Name)
		switch {
		case name != splitZone+"." && !strings.HasSuffix(name, "."+splitZone+"."):
			m.Rcode = dns.RcodeRefused
		case strings.HasPrefix(name, "nx"):
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa}
		case q.Question[0].Qtype == dns.TypeA:
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: s.answer.AsSlice()}}
		default:
			m.Ns = []dns.RR{soa}
		}
		b, err := m.Pack()
		if err != nil {
			return nil
		}
		return b
	})
	return s
}

// askedFrom lists the addresses queries came from.
func (s *siteDNS) askedFrom() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.Addr, 0, len(s.from))
	for a := range s.from {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// splitDNSTenant is one tenant of a split DNS check: its site (whose LAN host runs the
// zone's DNS server) and the namespace of its client; pop is the own overlay address of the
// client's PoP (plane.Overlay.NodeAddrs), which asks the site's server, and where says
// where client and site are, for the messages ("at fra through its site at ams").
type splitDNSTenant struct {
	name   string
	site   *testbed.Site
	client *testbed.Netns
	pop    netip.Addr
	where  string
}

// e2eNodeAddrs returns the own overlay address of every node that joined the controller
// ctrl, by name.
func e2eNodeAddrs(t *testing.T, ctrl *netProc) map[string]netip.Addr {
	t.Helper()
	var nodes webui.APIJoinedNodes
	if err := json.Unmarshal([]byte(ctrl.mustCLI("node", "list", "--json")), &nodes); err != nil {
		t.Fatalf("node list --json: %v", err)
	}
	out := map[string]netip.Addr{}
	for _, n := range nodes.Nodes {
		out[n.Name], _ = e2eOverlay.NodeAddrs(n.BackboneID)
	}
	return out
}

// e2eOverlay is the IPv4 overlay every installation has (the IPv6 one is its own).
var e2eOverlay = plane.Overlay{V4: netip.MustParsePrefix("100.64.0.0/10"), V6: netip.MustParsePrefix("fd00::/48")}

// resolveAt asks the in-tunnel resolver from ns for name (A): "RCODE addr…", or the error.
func resolveAt(ctx context.Context, ns *testbed.Netns, name string) string {
	rcode, answers, err := testbed.Resolve(ctx, ns, netip.AddrPortFrom(netip.MustParseAddr("100.64.0.1"), 53), name, dns.TypeA)
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(rcode + " " + strings.Join(answers, " "))
}

// e2eSplitDNS is issue 17's split zone check for tenants (two or more) that each have a
// site on the same LAN prefix: the first tenant's split zone splitZone, served by a DNS
// server on its site's host, resolves for its client through the site (across the backbone
// when the site is at another PoP), asked from the client's PoP's own overlay address; the
// second tenant asking the same name never gets the first's answer, also once it has the
// same zone at the same server address in its own site; a server out of the tenant's
// routes is refused. With the first tenant's query log on, its queries of the zone show in
// 'popgate dns log show' as split (the zone's server answered) or cache, with the time the
// site's server took; the second tenant's log stays off. A blocklist of the first tenant
// (uploaded from a file) that lists a name of the zone makes it NXDOMAIN for its client,
// before the zone's server is asked, logged as blocked; the second tenant's client still
// gets its own zone's answer. cli runs a popgate command against the controller. The zones
// and the list are removed and the log turned off at the end.
func e2eSplitDNS(t *testing.T, cli func(ctx context.Context, args ...string) (stdout, stderr string, err error), tenants []splitDNSTenant) {
	mustCLI := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, stderr, err := cli(ctx, args...)
		if err != nil {
			t.Fatalf("popgate %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}
	servers := make([]*siteDNS, len(tenants))
	for i, tn := range tenants {
		answer := netip.AddrFrom4([4]byte{10, 10, 0, byte(42 + i)})
		servers[i] = serveSiteDNS(t, tn.site.LAN, netip.AddrPortFrom(tn.site.HostAddr, splitDNSPort), answer)
	}
	server := netip.AddrPortFrom(tenants[0].site.HostAddr, splitDNSPort).String()
	first, second := tenants[0], tenants[1]
	name := "db." + splitZone

	// A server out of the tenant's routes is refused, saying what to do.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, stderr, err := cli(ctx, "dns", "zone", "add", "--tenant", first.name, "--server", "10.9.0.53", splitZone)
	cancel()
	if want := "10.9.0.53 is routed via internet"; err == nil || !strings.Contains(stderr, want) {
		t.Errorf("dns zone add with a server the tenant routes to the internet: %v, %q, want it refused saying %q", err, stderr, want)
	}

	mustCLI("dns", "log", "enable", "--tenant", first.name)
	mustCLI("dns", "zone", "add", "--tenant", first.name, "--server", server, splitZone)
	want := "NOERROR " + servers[0].answer.String()
	start := time.Now()
	testbed.Poll(t, 30*time.Second, fmt.Sprintf("%s's client %s to resolve %s", first.name, first.where, name),
		func(ctx context.Context) error {
			if got := resolveAt(ctx, first.client, name); got != want {
				return fmt.Errorf("%s: %q, want %q", name, got, want)
			}
			return nil
		})
	t.Logf("split DNS: %s's zone answered %v after dns zone add", first.name, time.Since(start).Round(time.Millisecond))

	// Latency through the backbone: names the PoP has not cached, then one it has.
	lat := func(names func(i int) string) []time.Duration {
		var ds []time.Duration
		for i := range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			begin := time.Now()
			got := resolveAt(ctx, first.client, names(i))
			ds = append(ds, time.Since(begin))
			cancel()
			if got != want {
				t.Errorf("%s: %q, want %q", names(i), got, want)
			}
		}
		slices.Sort(ds)
		return ds
	}
	misses := lat(func(i int) string { return fmt.Sprintf("h%d.%s", i, splitZone) })
	hits := lat(func(int) string { return name })
	t.Logf("split DNS latency of %s's client %s (20 queries each): uncached p50 %v max %v; cached p50 %v max %v",
		first.name, first.where, misses[10].Round(time.Microsecond), misses[19].Round(time.Microsecond),
		hits[10].Round(time.Microsecond), hits[19].Round(time.Microsecond))
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	if got := resolveAt(ctx, first.client, "nx."+splitZone); got != "NXDOMAIN" {
		t.Errorf("nx.%s: %q, want NXDOMAIN from the site's server", splitZone, got)
	}
	cancel()

	// The second tenant: not the first's answer, without a zone and with its own.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	if got := resolveAt(ctx, second.client, name); strings.Contains(got, servers[0].answer.String()) {
		t.Errorf("%s's client asked %s without a zone of its own and got %s's answer: %q", second.name, name, first.name, got)
	}
	cancel()
	mustCLI("dns", "zone", "add", "--tenant", second.name, "--server", server, splitZone)
	want2 := "NOERROR " + servers[1].answer.String()
	testbed.Poll(t, 30*time.Second, fmt.Sprintf("%s's client %s to resolve %s", second.name, second.where, name),
		func(ctx context.Context) error {
			if got := resolveAt(ctx, second.client, name); got != want2 {
				return fmt.Errorf("%s: %q, want %q", name, got, want2)
			}
			return nil
		})
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	if got := resolveAt(ctx, first.client, name); got != want {
		t.Errorf("%s's client after %s's zone: %q, want %q", first.name, second.name, got, want)
	}
	cancel()

	// Each site's server was asked by the PoP of its tenant's client, from that PoP's own
	// address, never by another.
	for i, tn := range tenants[:2] {
		if got, want := servers[i].askedFrom(), []netip.Addr{tn.pop}; !slices.Equal(got, want) {
			t.Errorf("%s's site DNS server was asked from %v, want only from the own address of its client's PoP, %v", tn.name, got, want)
		}
	}
	// The first tenant's query log: the zone's names as split (the misses above) and cache
	// (the hits), within a report or two; the second tenant's log is off.
	var log webui.APIDNSLog
	testbed.Poll(t, 30*time.Second, fmt.Sprintf("%s's split queries in its DNS query log", first.name), func(ctx context.Context) error {
		out, stderr, err := cli(ctx, "dns", "log", "show", "--tenant", first.name, "--json", "--limit", "1000")
		if err != nil {
			return fmt.Errorf("dns log show: %v: %s", err, stderr)
		}
		log = webui.APIDNSLog{}
		if err := json.Unmarshal([]byte(out), &log); err != nil {
			return err
		}
		for i := range 21 {
			name := fmt.Sprintf("h%d.%s", i, splitZone)
			if i == 20 {
				name = "nx." + splitZone // the last query made
			}
			if !slices.ContainsFunc(log.Entries, func(e webui.APIDNSLogEntry) bool { return e.Name == name && e.Type == "A" }) {
				return fmt.Errorf("%s is not in the log yet (%d entries)", name, len(log.Entries))
			}
		}
		return nil
	})
	var splitLat []time.Duration
	outcomes := map[string]int{}
	for _, e := range log.Entries {
		if !strings.HasSuffix(e.Name, "."+splitZone) || e.Type != "A" {
			continue
		}
		outcomes[e.Outcome]++
		if strings.HasPrefix(e.Name, "h") {
			if e.Outcome != "split" || e.Rcode != "NOERROR" || e.Node == "" {
				t.Errorf("%s in the log: %+v; want split, NOERROR, with the node that answered", e.Name, e)
			}
			splitLat = append(splitLat, time.Duration(e.LatencyMicros)*time.Microsecond)
		}
	}
	if outcomes["split"] < 20 || outcomes["cache"] < 19 {
		t.Errorf("outcomes of %s's queries of %s in its log: %v; want at least 20 split, 19 cache", first.name, splitZone, outcomes)
	}
	if e := log.Entries[slices.IndexFunc(log.Entries, func(e webui.APIDNSLogEntry) bool { return e.Name == "nx."+splitZone })]; e.Outcome != "split" || e.Rcode != "NXDOMAIN" {
		t.Errorf("nx.%s in the log: %+v; want split, NXDOMAIN", splitZone, e)
	}
	slices.Sort(splitLat)
	if len(splitLat) > 0 {
		t.Logf("split DNS latency as %s's query log has it (%d uncached queries): p50 %v, max %v", first.name, len(splitLat),
			splitLat[len(splitLat)/2], splitLat[len(splitLat)-1])
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	if out, stderr, err := cli(ctx, "dns", "log", "show", "--tenant", second.name); err != nil || out != "" || !strings.Contains(stderr, "is off") {
		t.Errorf("%s's query log: %v, %q, %q; want off", second.name, err, out, stderr)
	}
	cancel()

	// The first tenant's blocklist: a name of its zone is blocked before the zone's server
	// would be asked, at its client's PoP (which gets the list's content over the node
	// sync), for it alone.
	blocked := "ads." + splitZone
	listFile := filepath.Join(t.TempDir(), "blocked.txt")
	if err := os.WriteFile(listFile, []byte(blocked+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI("dns", "blocklist", "add", "--tenant", first.name, "--file", listFile, "ads")
	start = time.Now()
	testbed.Poll(t, 30*time.Second, fmt.Sprintf("%s to be NXDOMAIN for %s's client %s", blocked, first.name, first.where),
		func(ctx context.Context) error {
			if got := resolveAt(ctx, first.client, "www."+blocked); got != "NXDOMAIN" {
				return fmt.Errorf("www.%s: %q, want NXDOMAIN", blocked, got)
			}
			return nil
		})
	t.Logf("blocklist: %s's list was in force at its client's PoP %v after dns blocklist add", first.name, time.Since(start).Round(time.Millisecond))
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	if got := resolveAt(ctx, second.client, blocked); got != want2 {
		t.Errorf("%s's client asked %s, on %s's blocklist only: %q, want %q", second.name, blocked, first.name, got, want2)
	}
	if got := resolveAt(ctx, first.client, name); got != want {
		t.Errorf("%s's client asked %s, not on its blocklist: %q, want %q", first.name, name, got, want)
	}
	cancel()
	testbed.Poll(t, 30*time.Second, fmt.Sprintf("www.%s in %s's query log as blocked", blocked, first.name), func(ctx context.Context) error {
		out, stderr, err := cli(ctx, "dns", "log", "show", "--tenant", first.name, "--json", "--limit", "1000")
		if err != nil {
			return fmt.Errorf("dns log show: %v: %s", err, stderr)
		}
		var log webui.APIDNSLog
		if err := json.Unmarshal([]byte(out), &log); err != nil {
			return err
		}
		if !slices.ContainsFunc(log.Entries, func(e webui.APIDNSLogEntry) bool {
			return e.Name == "www."+blocked && e.Outcome == "blocked" && e.Rcode == "NXDOMAIN"
		}) {
			return fmt.Errorf("not in the log yet (%d entries)", len(log.Entries))
		}
		return nil
	})
	mustCLI("dns", "blocklist", "remove", "--tenant", first.name, "ads")
	mustCLI("dns", "log", "disable", "--tenant", first.name)

	out := mustCLI("dns", "zone", "list", "--tenant", first.name)
	if !strings.Contains(out, splitZone) || !strings.Contains(out, server) {
		t.Errorf("dns zone list:\n%s", out)
	}
	for _, tn := range tenants[:2] {
		mustCLI("dns", "zone", "remove", "--tenant", tn.name, splitZone)
	}
}
