package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// StockServerOptions tunes StartStockServer. The zero value is the baseline of TESTBED.md.
type StockServerOptions struct {
	// WireGuardGo is the wireguard-go binary. Default "wireguard-go" from PATH (Debian's).
	WireGuardGo string
	// ListenPort is the UDP port. Default 51820.
	ListenPort int
	// MTU of the tunnel, on the server and in client configs. Default 1420.
	MTU int
}

// StockServer is the baseline gateway built from stock parts in the topology's Pop: a
// wireguard-go device, kernel forwarding and iptables/ip6tables MASQUERADE towards Net. It
// serves the overlay 100.64.0.0/10 and fd00:64::/64 (server .1 / ::1, clients from .2 / ::2).
type StockServer struct {
	Ifname     string
	PublicKey  string
	Endpoint   netip.AddrPort // Pop's address facing Cli and the listen port
	MTU        int
	Proc       *Proc // wireguard-go
	topo       *Topology
	nextClient int
}

// StartStockServer brings up the baseline gateway in topo.Pop; t's cleanup stops it (the
// forwarding and NAT rules go away with the namespace).
func StartStockServer(t testing.TB, topo *Topology, opts StockServerOptions) *StockServer {
	t.Helper()
	if opts.ListenPort == 0 {
		opts.ListenPort = 51820
	}
	if opts.MTU == 0 {
		opts.MTU = 1420
	}
	priv, pub, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	s := &StockServer{
		Ifname:     topo.Name("wgs"),
		PublicKey:  pub,
		Endpoint:   netip.AddrPortFrom(topo.PopCliAddr, uint16(opts.ListenPort)),
		MTU:        opts.MTU,
		topo:       topo,
		nextClient: 2,
	}
	keyFile := filepath.Join(t.TempDir(), "server.key")
	if err := os.WriteFile(keyFile, []byte(priv+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pop := topo.Pop
	s.Proc = StartWireGuardGo(t, pop, s.Ifname, opts.WireGuardGo)
	pop.MustRun(t, "wg", "set", s.Ifname, "private-key", keyFile, "listen-port", fmt.Sprint(opts.ListenPort))
	pop.MustRun(t, "ip", "link", "set", "dev", s.Ifname, "mtu", fmt.Sprint(opts.MTU))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range []string{"100.64.0.1/10", "fd00:64::1/64"} {
		if err := pop.AddAddr(ctx, s.Ifname, netip.MustParsePrefix(p)); err != nil {
			t.Fatalf("testbed: %v", err)
		}
	}
	pop.MustRun(t, "ip", "link", "set", "dev", s.Ifname, "up")
	if err := pop.EnableForwarding(); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	pop.MustRun(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "100.64.0.0/10", "-o", topo.PopNetLink, "-j", "MASQUERADE")
	pop.MustRun(t, "ip6tables", "-t", "nat", "-A", "POSTROUTING", "-s", "fd00:64::/64", "-o", topo.PopNetLink, "-j", "MASQUERADE")
	return s
}

// AddPeer adds a client with a new key pair and returns its wg-quick file: both overlay
// addresses, the MTU, and a peer with the server's key and endpoint, AllowedIPs 0.0.0.0/0,
// ::/0 and PersistentKeepalive 25 — the shape of a config popgate prints.
func (s *StockServer) AddPeer(t testing.TB) string {
	t.Helper()
	return s.addPeer(t, nil, "0.0.0.0/0, ::/0")
}

// AddSitePeer adds a site connector for the LAN prefix lan and returns its wg-quick file: as
// AddPeer's, but with AllowedIPs the overlay only (100.64.0.0/10, fd00:64::/64), so the LAN
// keeps its own way out and answers clients through the tunnel. The server routes lan to it.
func (s *StockServer) AddSitePeer(t testing.TB, lan netip.Prefix) string {
	t.Helper()
	conf := s.addPeer(t, []netip.Prefix{lan}, "100.64.0.0/10, fd00:64::/64")
	s.topo.Pop.MustRun(t, "ip", "route", "replace", lan.Masked().String(), "dev", s.Ifname)
	return conf
}

func (s *StockServer) addPeer(t testing.TB, extra []netip.Prefix, clientAllowed string) string {
	t.Helper()
	priv, pub, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	n := s.nextClient
	s.nextClient++
	v4 := netip.AddrFrom4([4]byte{100, 64, byte(n >> 8), byte(n)})
	v6 := netip.MustParseAddr(fmt.Sprintf("fd00:64::%x", n))
	allowed := v4.String() + "/32," + v6.String() + "/128"
	for _, p := range extra {
		allowed += "," + p.Masked().String()
	}
	s.topo.Pop.MustRun(t, "wg", "set", s.Ifname, "peer", pub, "allowed-ips", allowed)
	var b strings.Builder
	fmt.Fprintf(&b, "[Interface]\nPrivateKey = %s\nAddress = %s/32, %s/128\nMTU = %d\n\n", priv, v4, v6, s.MTU)
	fmt.Fprintf(&b, "[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\nPersistentKeepalive = 25\n", s.PublicKey, s.Endpoint, clientAllowed)
	return b.String()
}
