package testbed

import (
	"net/netip"
	"testing"
)

// AddSite creates a site (see Site) on the Network: its connector is a node on the wan
// bridge, like a client, named after role as AddNode names it; its LAN, with the IPv4 prefix
// lan (at least 2 host addresses), is a namespace of its own behind the connector. Sites of
// different tenants may use the same prefix. The test's cleanup removes them.
func (n *Network) AddSite(t testing.TB, role string, lan netip.Prefix) *Site {
	t.Helper()
	lan = lan.Masked()
	if !lan.Addr().Is4() || lan.Bits() > 30 {
		t.Fatalf("testbed: site LAN %s: want an IPv4 prefix of /30 or shorter", lan)
	}
	conn := n.AddNode(t, role, WAN)
	return newSite(t, conn.NS, conn.Addr4[WAN], lan)
}
