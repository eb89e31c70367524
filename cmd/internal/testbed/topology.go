package testbed

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// Topology is the testbed of TESTBED.md: client namespaces, the gateway namespace and an
// "internet" namespace. The clients hang off a bridge in Pop, so one test can have many.
//
//	Cli 192.0.2.2/24 ── CliLink/PopCliPort ─┐
//	NewClient 192.0.2.10/24, .11, …  ───────┤ PopCliLink, a bridge: 192.0.2.1/24  Pop
//	NewSite's connector (next free .N) ─────┘
//	Pop 198.51.100.1/24, 2001:db8:1::1/64 ── PopNetLink/NetLink ── 198.51.100.2/24, 2001:db8:1::2/64 Net
//
// The clients have no route beyond 192.0.2.0/24, so they reach Net only through a tunnel.
// Pop's default routes point at Net (its upstream); forwarding in Pop is off until a test
// turns it on. Net has no route back to the clients or to any overlay: traffic from the
// tunnel must be NATed in Pop (or terminated there) to be answered. The bridge has a fixed
// MAC address, so attaching a client later does not change it under the others' ARP caches.
type Topology struct {
	Cli, Pop, Net *Netns
	// Suffix is unique to this topology ("<pid>-<n>"); Name builds names from it.
	Suffix string

	// CliLink is Cli's end of its link; PopCliPort the other end, a port of the bridge
	// PopCliLink, which holds PopCliAddr. PopNetLink and NetLink join Pop and Net.
	CliLink, PopCliPort, PopCliLink, PopNetLink, NetLink string

	CliAddr     netip.Addr // 192.0.2.2, Cli's underlay address
	PopCliAddr  netip.Addr // 192.0.2.1, Pop's address facing the clients: the WireGuard endpoint
	PopNetAddr4 netip.Addr // 198.51.100.1
	PopNetAddr6 netip.Addr // 2001:db8:1::1
	NetAddr4    netip.Addr // 198.51.100.2, the servers in Net
	NetAddr6    netip.Addr // 2001:db8:1::2

	mu       sync.Mutex
	nextHost int // last byte of the next address NewClient and NewSite hand out
	attached int // namespaces attached by NewClient and NewSite, for their names
}

// firstExtraHost is the last byte of the first address that NewClient hands out.
const firstExtraHost = 10

// NewTopology creates the namespaces, the bridge and the links; the test's cleanup removes
// them.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	suffix := uniqueSuffix()
	tp := &Topology{
		Suffix:      suffix,
		CliLink:     "vc" + suffix,
		PopCliPort:  "vpc" + suffix,
		PopCliLink:  "bpc" + suffix,
		PopNetLink:  "vpn" + suffix,
		NetLink:     "vn" + suffix,
		CliAddr:     netip.MustParseAddr("192.0.2.2"),
		PopCliAddr:  netip.MustParseAddr("192.0.2.1"),
		PopNetAddr4: netip.MustParseAddr("198.51.100.1"),
		PopNetAddr6: netip.MustParseAddr("2001:db8:1::1"),
		NetAddr4:    netip.MustParseAddr("198.51.100.2"),
		NetAddr6:    netip.MustParseAddr("2001:db8:1::2"),
		nextHost:    firstExtraHost,
	}
	base := nsPrefix + suffix + "-"
	tp.Cli = newNetnsNamed(t, base+"cli")
	tp.Pop = newNetnsNamed(t, base+"pop")
	tp.Net = newNetnsNamed(t, base+"net")

	mac, err := randomMAC()
	if err != nil {
		t.Fatal(err)
	}
	tp.Pop.MustRun(t, "ip", "link", "add", tp.PopCliLink, "address", mac.String(), "type", "bridge")
	tp.Pop.MustRun(t, "ip", "address", "add", netip.PrefixFrom(tp.PopCliAddr, 24).String(), "dev", tp.PopCliLink)
	tp.Pop.MustRun(t, "ip", "link", "set", tp.PopCliLink, "up")
	tp.attach(t, tp.Cli, tp.CliLink, tp.PopCliPort, tp.CliAddr)

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

// NewClient creates another client namespace like Cli: attached to Pop's bridge with the next
// free address from 192.0.2.10/24 on, and no route beyond 192.0.2.0/24. The test's cleanup
// removes it.
func (tp *Topology) NewClient(t testing.TB) *Netns {
	t.Helper()
	ns, _ := tp.newAttached(t, "cli")
	return ns
}

// newAttached creates the namespace "<topology>-<role><n>" attached to Pop's bridge and
// returns it with its address.
func (tp *Topology) newAttached(t testing.TB, role string) (*Netns, netip.Addr) {
	t.Helper()
	tp.mu.Lock()
	host := tp.nextHost
	tp.nextHost++
	tp.attached++
	n := tp.attached
	tp.mu.Unlock()
	if host > 254 {
		t.Fatalf("testbed: no free address left in 192.0.2.0/24 for another %s", role)
	}
	addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(host)})
	ns := newNetnsNamed(t, fmt.Sprintf("%s%s-%s%d", nsPrefix, tp.Suffix, role, n))
	s := uniqueSuffix()
	tp.attach(t, ns, "vc"+s, "vb"+s, addr)
	return ns, addr
}

// attach links ns to Pop's bridge: the veth link (in ns) with addr/24, the port (in Pop) in
// the bridge.
func (tp *Topology) attach(t testing.TB, ns *Netns, link, port string, addr netip.Addr) {
	t.Helper()
	Veth(t,
		VethEnd{NS: ns, Name: link, Addrs: []netip.Prefix{netip.PrefixFrom(addr, 24)}},
		VethEnd{NS: tp.Pop, Name: port})
	tp.Pop.MustRun(t, "ip", "link", "set", port, "master", tp.PopCliLink)
}

// randomMAC returns a random unicast, locally administered MAC address.
func randomMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, err
	}
	mac[0] = mac[0]&^0x01 | 0x02
	return mac, nil
}

// Site is a LAN behind a site connector, for site-to-site tests: the namespace Connector is
// attached to Pop's bridge like a client and joined by a veth link to the namespace LAN, one
// host of the site. Connector holds the prefix's first address, LAN the second with its
// default route via Connector (the LAN's router). StartConnector runs the site connector.
type Site struct {
	Connector *Netns
	LAN       *Netns
	Prefix    netip.Prefix // the LAN, e.g. 10.10.0.0/24
	// ConnectorAddr is Connector's address on the LAN (10.10.0.1), HostAddr LAN's (10.10.0.2).
	ConnectorAddr, HostAddr netip.Addr
	// UnderlayAddr is Connector's address on Pop's bridge.
	UnderlayAddr netip.Addr
	// Client is the running connector, once StartConnector returned.
	Client *Client
}

// NewSite creates a site with the IPv4 LAN prefix lan (at least 2 host addresses) and
// attaches its connector to topo's bridge. The test's cleanup removes it.
func NewSite(t testing.TB, topo *Topology, lan netip.Prefix) *Site {
	t.Helper()
	lan = lan.Masked()
	if !lan.Addr().Is4() || lan.Bits() > 30 {
		t.Fatalf("testbed: site LAN %s: want an IPv4 prefix of /30 or shorter", lan)
	}
	conn, underlay := topo.newAttached(t, "site")
	return newSite(t, conn, underlay, lan)
}

// newSite makes the LAN lan (masked, checked) of a site whose connector conn, at underlay on
// its bridge, exists.
func newSite(t testing.TB, conn *Netns, underlay netip.Addr, lan netip.Prefix) *Site {
	t.Helper()
	s := &Site{
		Connector:     conn,
		LAN:           newNetnsNamed(t, conn.Name+"-lan"),
		Prefix:        lan,
		ConnectorAddr: lan.Addr().Next(),
		UnderlayAddr:  underlay,
	}
	s.HostAddr = s.ConnectorAddr.Next()
	suffix := uniqueSuffix()
	Veth(t,
		VethEnd{NS: s.Connector, Name: "vl" + suffix, Addrs: []netip.Prefix{netip.PrefixFrom(s.ConnectorAddr, lan.Bits())}},
		VethEnd{NS: s.LAN, Name: "vh" + suffix, Addrs: []netip.Prefix{netip.PrefixFrom(s.HostAddr, lan.Bits())}})
	s.LAN.MustRun(t, "ip", "-4", "route", "add", "default", "via", s.ConnectorAddr.String())
	return s
}

// StartConnector runs the site connector in Connector from the wg-quick text conf (as
// StartClient does) and does what the config asks of the site's admin: IP forwarding on in
// the connector, and the config's IPv4 AllowedIPs (the overlay) routed to the connector from
// the LAN host.
func (s *Site) StartConnector(t testing.TB, ifname, conf string) *Client {
	t.Helper()
	c := StartClient(t, s.Connector, ifname, conf)
	if err := s.Connector.EnableForwarding(); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	for _, p := range c.Config.Peers {
		for _, prefix := range p.AllowedIPs {
			if prefix.Addr().Is4() {
				s.LAN.MustRun(t, "ip", "-4", "route", "replace", prefix.Masked().String(), "via", s.ConnectorAddr.String())
			}
		}
	}
	s.Client = c
	return c
}
