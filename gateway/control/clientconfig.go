package control

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
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

// ValidateEndpoint checks a host:port written into client configs.
func ValidateEndpoint(ep string) error {
	host, port, err := net.SplitHostPort(ep)
	if err != nil || host == "" {
		return fmt.Errorf("public endpoint %q is not host:port: use e.g. vpn.example.com:51820 or 203.0.113.7:51820 ([v6]:port for IPv6)", ep)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("public endpoint %q has a bad port: use 1-65535", ep)
	}
	if strings.ContainsAny(host, " /\\,=\"'") {
		return fmt.Errorf("public endpoint %q has a bad host: use a DNS name or an IP address", ep)
	}
	return nil
}

// defaultHost guesses the address clients reach: the first global unicast address of the host.
func defaultHost() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		var v6 string
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil || !p.Addr().IsGlobalUnicast() {
				continue
			}
			if p.Addr().Is4() {
				return p.Addr().String()
			}
			if v6 == "" {
				v6 = p.Addr().String()
			}
		}
		if v6 != "" {
			return v6
		}
	}
	return "127.0.0.1"
}
