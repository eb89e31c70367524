package testbed

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// Network is TESTBED.md's many-node topology: one namespace, Switch, holds three bridges, and
// every node and client is a namespace with a veth link into one or more of them.
//
//	wan       192.0.2.0/24                 clients and the PoPs' public addresses (Switch: .1)
//	backbone  203.0.113.0/24, 2001:db8:b::/64  controller, PoPs, exits (Switch: .1, ::1)
//	internet  198.51.100.0/24, 2001:db8:1::/64 exits and the hosts they reach (Switch: .1, ::1)
//
// Switch forwards only what a test routes through it: the anycast addresses of AddAnycast,
// which it routes to the PoPs that announce them, like an upstream router would after BGP.
// Clients have no route beyond the wan bridge but those anycast addresses, so they reach
// the backbone and the internet only through a tunnel. Nodes on the internet bridge route
// their default (IPv4 and IPv6) to the Internet host, the way exits reach the world.
type Network struct {
	Switch *Netns
	// Internet is a host on the internet bridge (198.51.100.2, 2001:db8:1::2): what exits
	// reach. Its replies go back to whichever exit sent the packet (it routes nothing).
	Internet *Netns
	Suffix   string

	mu    sync.Mutex
	next  map[string]int // bridge → last byte of its next free address
	count int            // namespaces attached, for names
}

// Bridge names of a Network.
const (
	WAN      = "wan"
	Backbone = "bb"
	Internet = "inet"
)

// bridge is one of the Network's bridges: its addressing.
type bridge struct {
	v4, v6 netip.Prefix // v6 invalid: IPv4 only
}

var bridges = map[string]bridge{
	WAN:      {v4: netip.MustParsePrefix("192.0.2.0/24")},
	Backbone: {v4: netip.MustParsePrefix("203.0.113.0/24"), v6: netip.MustParsePrefix("2001:db8:b::/64")},
	Internet: {v4: netip.MustParsePrefix("198.51.100.0/24"), v6: netip.MustParsePrefix("2001:db8:1::/64")},
}

// InternetAddr4 and InternetAddr6 are the Internet host's addresses.
var (
	InternetAddr4 = netip.MustParseAddr("198.51.100.2")
	InternetAddr6 = netip.MustParseAddr("2001:db8:1::2")
)

// NetNode is a namespace attached to some of a Network's bridges.
type NetNode struct {
	NS *Netns
	// Addr4 and Addr6 are its addresses on each bridge it is attached to (Addr6 only where
	// the bridge has IPv6).
	Addr4 map[string]netip.Addr
	Addr6 map[string]netip.Addr
	// Links are its link names by bridge.
	Links map[string]string
}

// NewNetwork creates Switch with the three bridges, and the Internet host. The test's
// cleanup removes them.
func NewNetwork(t testing.TB) *Network {
	t.Helper()
	n := &Network{Suffix: uniqueSuffix(), next: map[string]int{WAN: 10, Backbone: 10, Internet: 10}}
	n.Switch = newNetnsNamed(t, nsPrefix+n.Suffix+"-sw")
	for _, name := range []string{WAN, Backbone, Internet} {
		mac, err := randomMAC()
		if err != nil {
			t.Fatal(err)
		}
		br := bridges[name]
		n.Switch.MustRun(t, "ip", "link", "add", name, "address", mac.String(), "type", "bridge")
		n.Switch.MustRun(t, "ip", "address", "add", netip.PrefixFrom(br.v4.Addr().Next(), br.v4.Bits()).String(), "dev", name)
		if br.v6.IsValid() {
			n.Switch.MustRun(t, "ip", "address", "add", netip.PrefixFrom(br.v6.Addr().Next(), br.v6.Bits()).String(), "dev", name, "nodad")
		}
		n.Switch.MustRun(t, "ip", "link", "set", name, "up")
	}
	if err := n.Switch.EnableForwarding(); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	// Switch routes anycast traffic back out of the bridge it came in on; a Linux router then
	// tells the client (ICMP redirect) to send to the PoP directly, and the client would keep
	// talking to a dead PoP after its route is withdrawn. Routers between a client and a PoP
	// are on other links, so Switch sends no redirects.
	for _, key := range []string{"net.ipv4.conf.all.send_redirects", "net.ipv4.conf.default.send_redirects"} {
		if err := n.Switch.Sysctl(key, "0"); err != nil {
			t.Fatalf("testbed: %v", err)
		}
	}
	for _, name := range []string{WAN, Backbone, Internet} {
		if err := n.Switch.Sysctl("net.ipv4.conf."+name+".send_redirects", "0"); err != nil {
			t.Fatalf("testbed: %v", err)
		}
	}
	// Spread flows to one anycast address over its PoPs by ports too, as ECMP routers do.
	if err := n.Switch.Sysctl("net.ipv4.fib_multipath_hash_policy", "1"); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	n.Internet = newNetnsNamed(t, nsPrefix+n.Suffix+"-internet")
	n.attach(t, n.Internet, Internet, InternetAddr4, InternetAddr6)
	return n
}

// AddNode creates the namespace "<network>-<role><n>" attached to the given bridges with the
// next free address of each. On the internet bridge it gets default routes to the Internet
// host.
func (n *Network) AddNode(t testing.TB, role string, on ...string) *NetNode {
	t.Helper()
	n.mu.Lock()
	n.count++
	name := fmt.Sprintf("%s%s-%s%d", nsPrefix, n.Suffix, role, n.count)
	n.mu.Unlock()
	node := &NetNode{NS: newNetnsNamed(t, name), Addr4: map[string]netip.Addr{}, Addr6: map[string]netip.Addr{}, Links: map[string]string{}}
	for _, br := range on {
		b, ok := bridges[br]
		if !ok {
			t.Fatalf("testbed: no bridge %q (want %s, %s or %s)", br, WAN, Backbone, Internet)
		}
		host := n.nextHost(t, br)
		a4 := addrAt(b.v4, host)
		var a6 netip.Addr
		if b.v6.IsValid() {
			a6 = addrAt(b.v6, host)
		}
		node.Links[br] = n.attach(t, node.NS, br, a4, a6)
		node.Addr4[br] = a4
		if a6.IsValid() {
			node.Addr6[br] = a6
		}
		if br == Internet {
			node.NS.MustRun(t, "ip", "-4", "route", "add", "default", "via", InternetAddr4.String())
			node.NS.MustRun(t, "ip", "-6", "route", "add", "default", "via", InternetAddr6.String())
		}
	}
	return node
}

// AddClient creates a client namespace on the wan bridge.
func (n *Network) AddClient(t testing.TB) *NetNode { return n.AddNode(t, "cli", WAN) }

// AddAnycast makes addr (an IPv4 address outside the bridges, e.g. 198.18.0.1) the anycast
// address of pops: each holds it on its loopback, Switch routes it to all of them (ECMP),
// and every client there is now or later routes it through Switch. Announce changes which
// PoPs Switch routes it to.
//
// With preferSource, each PoP's route to the wan bridge also names addr as the source
// address, so that everything the PoP sends there leaves from addr (an operator's
// `ip route … src`); without it, a PoP answers from addr only if its software replies from
// the address a packet arrived at (sticky sockets).
func (n *Network) AddAnycast(t testing.TB, addr netip.Addr, preferSource bool, pops ...*NetNode) {
	t.Helper()
	for _, p := range pops {
		p.NS.MustRun(t, "ip", "address", "add", netip.PrefixFrom(addr, 32).String(), "dev", "lo")
		if preferSource {
			p.NS.MustRun(t, "ip", "route", "replace", bridges[WAN].v4.String(), "dev", p.Links[WAN], "proto", "kernel", "scope", "link", "src", addr.String())
		}
	}
	n.Announce(t, addr, pops...)
}

// Announce routes addr in Switch to exactly pops (over the wan bridge), as a router does
// once the PoPs that still announce it are known: Announce(t, addr, p2) after p1 died is
// its withdrawal.
func (n *Network) Announce(t testing.TB, addr netip.Addr, pops ...*NetNode) {
	t.Helper()
	args := []string{"ip", "-4", "route", "replace", netip.PrefixFrom(addr, 32).String()}
	if len(pops) == 1 {
		args = append(args, "via", pops[0].Addr4[WAN].String())
	}
	for _, p := range pops {
		if len(pops) > 1 {
			args = append(args, "nexthop", "via", p.Addr4[WAN].String())
		}
	}
	n.Switch.MustRun(t, args...)
}

// RouteVia makes node route dst through Switch (a client reaching an anycast address).
func (n *Network) RouteVia(t testing.TB, node *NetNode, dst netip.Addr) {
	t.Helper()
	node.NS.MustRun(t, "ip", "-4", "route", "replace", netip.PrefixFrom(dst, 32).String(), "via", bridges[WAN].v4.Addr().Next().String())
}

func (n *Network) nextHost(t testing.TB, br string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := n.next[br]
	if h > 254 {
		t.Fatalf("testbed: no free address left on bridge %s", br)
	}
	n.next[br] = h + 1
	return h
}

// attach links ns to bridge br with a4 (and a6 when valid) and returns the link's name in ns.
func (n *Network) attach(t testing.TB, ns *Netns, br string, a4, a6 netip.Addr) string {
	t.Helper()
	s := uniqueSuffix()
	link, port := "v"+br[:1]+s, "p"+br[:1]+s
	b := bridges[br]
	addrs := []netip.Prefix{netip.PrefixFrom(a4, b.v4.Bits())}
	if a6.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(a6, b.v6.Bits()))
	}
	Veth(t, VethEnd{NS: ns, Name: link, Addrs: addrs}, VethEnd{NS: n.Switch, Name: port})
	n.Switch.MustRun(t, "ip", "link", "set", port, "master", br)
	return link
}

// addrAt is the address with the last byte host in p (p at least a /24).
func addrAt(p netip.Prefix, host int) netip.Addr {
	b := p.Addr().AsSlice()
	b[len(b)-1] = byte(host)
	a, _ := netip.AddrFromSlice(b)
	return a
}

// String helps test logs: the node's namespace and addresses.
func (nd *NetNode) String() string {
	var parts []string
	for _, br := range []string{WAN, Backbone, Internet} {
		if a, ok := nd.Addr4[br]; ok {
			parts = append(parts, br+"="+a.String())
		}
	}
	return nd.NS.Name + " (" + strings.Join(parts, " ") + ")"
}
