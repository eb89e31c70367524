package testbed

import (
	"net/netip"
	"testing"
)

// Topology is the testbed of TESTBED.md: a client namespace, the gateway namespace and an
// "internet" namespace, joined by two veth links.
//
//	Cli 192.0.2.2/24 ── CliLink/PopCliLink ── 192.0.2.1/24 Pop
//	Pop 198.51.100.1/24, 2001:db8:1::1/64 ── PopNetLink/NetLink ── 198.51.100.2/24, 2001:db8:1::2/64 Net
//
// Cli has no route beyond 192.0.2.0/24, so it reaches Net only through a tunnel. Pop's default
// routes point at Net (its upstream); forwarding in Pop is off until a test turns it on. Net
// has no route back to Cli or to any overlay: traffic from the tunnel must be NATed in Pop
// (or terminated there) to be answered.
type Topology struct {
	Cli, Pop, Net *Netns
	// Suffix is unique to this topology ("<pid>-<n>"); Name builds names from it.
	Suffix string

	CliLink, PopCliLink, PopNetLink, NetLink string

	CliAddr     netip.Addr // 192.0.2.2, Cli's underlay address
	PopCliAddr  netip.Addr // 192.0.2.1, Pop's address facing Cli: the WireGuard endpoint
	PopNetAddr4 netip.Addr // 198.51.100.1
	PopNetAddr6 netip.Addr // 2001:db8:1::1
	NetAddr4    netip.Addr // 198.51.100.2, the servers in Net
	NetAddr6    netip.Addr // 2001:db8:1::2
}

// NewTopology creates the namespaces and links; the test's cleanup removes them.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	suffix := uniqueSuffix()
	tp := &Topology{
		Suffix:      suffix,
		CliLink:     "vc" + suffix,
		PopCliLink:  "vpc" + suffix,
		PopNetLink:  "vpn" + suffix,
		NetLink:     "vn" + suffix,
		CliAddr:     netip.MustParseAddr("192.0.2.2"),
		PopCliAddr:  netip.MustParseAddr("192.0.2.1"),
		PopNetAddr4: netip.MustParseAddr("198.51.100.1"),
		PopNetAddr6: netip.MustParseAddr("2001:db8:1::1"),
		NetAddr4:    netip.MustParseAddr("198.51.100.2"),
		NetAddr6:    netip.MustParseAddr("2001:db8:1::2"),
	}
	base := nsPrefix + suffix + "-"
	tp.Cli = newNetnsNamed(t, base+"cli")
	tp.Pop = newNetnsNamed(t, base+"pop")
	tp.Net = newNetnsNamed(t, base+"net")
	Veth(t,
		VethEnd{NS: tp.Cli, Name: tp.CliLink, Addrs: []netip.Prefix{netip.PrefixFrom(tp.CliAddr, 24)}},
		VethEnd{NS: tp.Pop, Name: tp.PopCliLink, Addrs: []netip.Prefix{netip.PrefixFrom(tp.PopCliAddr, 24)}})
	Veth(t,
		VethEnd{NS: tp.Pop, Name: tp.PopNetLink, Addrs: []netip.Prefix{netip.PrefixFrom(tp.PopNetAddr4, 24), netip.PrefixFrom(tp.PopNetAddr6, 64)}},
		VethEnd{NS: tp.Net, Name: tp.NetLink, Addrs: []netip.Prefix{netip.PrefixFrom(tp.NetAddr4, 24), netip.PrefixFrom(tp.NetAddr6, 64)}})
	tp.Pop.MustRun(t, "ip", "-4", "route", "add", "default", "via", tp.NetAddr4.String(), "dev", tp.PopNetLink)
	tp.Pop.MustRun(t, "ip", "-6", "route", "add", "default", "via", tp.NetAddr6.String(), "dev", tp.PopNetLink)
	return tp
}

// Name returns prefix followed by the topology's suffix, for interface names (keep prefix
// to 4 bytes or fewer: names have at most 15) and anything else that must be unique.
func (tp *Topology) Name(prefix string) string { return prefix + tp.Suffix }
