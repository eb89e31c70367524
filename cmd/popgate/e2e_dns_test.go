package main

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/cmd/internal/testbed"
)

// dnsClient is a tenant's stock client in a multi-node test, as the DNS checks see it.
type dnsClient struct {
	tenant string
	ns     *testbed.Netns
	addr   netip.Addr // its overlay IPv4 address
	name   string     // its peer name
	pop    *netProc   // the PoP it is connected to
}

// anycastDNS is the DNS server in every client config: the gateway's overlay address, the
// same at every PoP.
var anycastDNS = netip.MustParseAddrPort("100.64.0.1:53")

// dnsAnswer resolves name at server from ns and gives "RCODE answers…", as a user reads dig.
func dnsAnswer(ns *testbed.Netns, server netip.AddrPort, name string, qtype uint16) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rcode, answers, err := testbed.Resolve(ctx, ns, server, name, qtype)
	return strings.TrimSpace(rcode + " " + strings.Join(answers, " ")), err
}

// dnsLocalAnswers is the PoP's count of queries it answered from the tenants' names and
// the overlay's reverse (popgate_dns_queries_total{result="local"} on its /metrics, at its
// default address in its own namespace).
func dnsLocalAnswers(t *testing.T, p *netProc) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := p.node.NS.Run(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:9586/metrics")
	if err != nil {
		t.Fatalf("%s's /metrics: %v\n%s", p.ifname, err, out)
	}
	m := regexp.MustCompile(`(?m)^popgate_dns_queries_total\{result="local"\} (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		return 0 // no query yet
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// checkPeerNamesAtPoPs is issue 17's names check across regions: each client asks the
// anycast DNS address for its tenant's peers (itself, and names given in also), for the same
// names of every other tenant, and for the reverse of its own and the others' addresses. Its
// own tenant's are answered, the others' are NXDOMAIN, and the answers come from the PoP the
// client is connected to (that PoP's count of local answers grows by as many, the others' do
// not). pops are every PoP of the test.
func checkPeerNamesAtPoPs(t *testing.T, clients []dnsClient, also map[string]map[string]netip.Addr, pops []*netProc) {
	t.Helper()
	domain := func(tenant string) string { return tenant + ".internal" }
	for _, c := range clients {
		type q struct {
			name  string
			qtype uint16
			want  string
		}
		own := map[string]netip.Addr{c.name: c.addr}
		for n, a := range also[c.tenant] {
			own[n] = a
		}
		var qs []q
		for n, a := range own {
			qs = append(qs, q{n + "." + domain(c.tenant), dns.TypeA, "NOERROR " + a.String()})
		}
		rev, _ := dns.ReverseAddr(c.addr.String())
		qs = append(qs, q{rev, dns.TypePTR, fmt.Sprintf("NOERROR %s.%s.", c.name, domain(c.tenant))})
		for _, o := range clients {
			if o.tenant == c.tenant {
				continue
			}
			// The other tenant's names and addresses are as unknown as nobody's.
			qs = append(qs, q{o.name + "." + domain(o.tenant), dns.TypeA, "NXDOMAIN"})
			for n := range also[o.tenant] {
				qs = append(qs, q{n + "." + domain(o.tenant), dns.TypeA, "NXDOMAIN"})
			}
			rev, _ := dns.ReverseAddr(o.addr.String())
			qs = append(qs, q{rev, dns.TypePTR, "NXDOMAIN"})
		}
		before := make([]int, len(pops))
		for i, p := range pops {
			before[i] = dnsLocalAnswers(t, p)
		}
		for _, q := range qs {
			got, err := dnsAnswer(c.ns, anycastDNS, q.name, q.qtype)
			if err != nil || got != q.want {
				t.Errorf("%s's client at %s asked %s for %s %s: %q (%v), want %q",
					c.tenant, c.pop.ifname, anycastDNS.Addr(), q.name, dns.TypeToString[q.qtype], got, err, q.want)
			}
		}
		for i, p := range pops {
			got := dnsLocalAnswers(t, p) - before[i]
			switch {
			case p == c.pop && got < len(qs):
				t.Errorf("%s's client is at %s, which answered %d of its %d queries", c.tenant, p.ifname, got, len(qs))
			case p != c.pop && got != 0:
				t.Errorf("%s's client is at %s, but %s answered %d queries meanwhile", c.tenant, c.pop.ifname, p.ifname, got)
			}
		}
		t.Logf("%s's client at %s: %d names answered by its PoP at %s", c.tenant, c.pop.ifname, len(qs), anycastDNS.Addr())
	}
}

// checkNoPublicResolver checks that nothing answers DNS on the PoPs' public addresses: a
// query from the client's namespace (on the WAN, like the internet) over UDP gets no
// answer, and TCP port 53 is closed.
func checkNoPublicResolver(t *testing.T, from *testbed.Netns, pops ...*netProc) {
	t.Helper()
	for _, p := range pops {
		public := netip.AddrPortFrom(p.node.Addr4[testbed.WAN], 53)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		rcode, answers, err := testbed.Resolve(ctx, from, public, "www.example.com", dns.TypeA)
		cancel()
		if err == nil {
			t.Errorf("%s answered DNS on its public address %s: %s %v (an open resolver)", p.ifname, public, rcode, answers)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
		c, err := from.DialContext(ctx, "tcp4", public.String())
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s accepts TCP connections on its public address %s", p.ifname, public)
		}
	}
}
