package gateway

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/popgate/popgate/store"
)

// clientConfig is everything a wg-quick file for one peer needs.
type clientConfig struct {
	Tenant, Peer, Region string
	Site                 string     // set for a site connector
	PrivateKey           *store.Key // nil: the user holds it; a placeholder comment is written
	Addresses            []netip.Addr
	DNS                  []netip.Addr
	MTU                  int
	ServerPublicKey      store.Key
	Endpoint             string
	AllowedIPs           []netip.Prefix
}

// render writes the wg-quick(8) file. wg-quick strip accepts it.
func (c clientConfig) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# popgate: peer %s of tenant %s, region %s\n", c.Peer, c.Tenant, c.Region)
	if c.Site != "" {
		fmt.Fprintf(&b, "# Site connector of site %s: run it on a host of that LAN with IP forwarding on\n", c.Site)
		b.WriteString("# (sysctl net.ipv4.ip_forward=1, net.ipv6.conf.all.forwarding=1) and route the\n")
		b.WriteString("# overlay prefixes below to this host from the LAN's router.\n")
	}
	b.WriteString("[Interface]\n")
	if c.PrivateKey != nil {
		fmt.Fprintf(&b, "PrivateKey = %s\n", c.PrivateKey)
	} else {
		b.WriteString("# This peer was created from your public key: put its private key here.\n")
		b.WriteString("# PrivateKey = <your private key>\n")
	}
	addrs := make([]string, len(c.Addresses))
	for i, a := range c.Addresses {
		addrs[i] = netip.PrefixFrom(a, a.BitLen()).String()
	}
	fmt.Fprintf(&b, "Address = %s\n", strings.Join(addrs, ", "))
	if len(c.DNS) > 0 {
		dns := make([]string, len(c.DNS))
		for i, a := range c.DNS {
			dns[i] = a.String()
		}
		fmt.Fprintf(&b, "DNS = %s\n", strings.Join(dns, ", "))
	}
	fmt.Fprintf(&b, "MTU = %d\n", c.MTU)
	b.WriteString("\n[Peer]\n")
	fmt.Fprintf(&b, "PublicKey = %s\n", c.ServerPublicKey)
	fmt.Fprintf(&b, "Endpoint = %s\n", c.Endpoint)
	allowed := make([]string, len(c.AllowedIPs))
	for i, p := range c.AllowedIPs {
		allowed[i] = p.String()
	}
	fmt.Fprintf(&b, "AllowedIPs = %s\n", strings.Join(allowed, ", "))
	b.WriteString("PersistentKeepalive = 25\n")
	return b.String()
}
