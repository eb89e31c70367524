// Package gateway wires a popgate node together: the WireGuard device, the packet path, the
// userspace exit, and the reconcile of desired state from the store into the device.
package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/netstack"
	"github.com/popgate/popgate/store"
)

// The node's flow bounds, for tenants that set none of their own (store.Tenant.MaxFlows…):
// per peer like a carrier-grade NAT's port block per subscriber (a busy desktop holds a few
// hundred flows, so 4,096 is ten times that), per tenant a quarter of the userspace exit's
// 65,536 (netstack.DefaultMaxFlows), so that no one tenant takes more than a quarter of
// the node. They bound exit flows and the firewall's tracked connections alike.
const (
	DefaultMaxFlowsPerPeer   = 4096
	DefaultMaxFlowsPerTenant = 16384
)

// flowLimits returns tenant t's bounds on the flows of one peer and of the tenant.
func flowLimits(t store.Tenant) (perPeer, total int) {
	perPeer, total = t.MaxFlowsPerPeer, t.MaxFlows
	if perPeer == 0 {
		perPeer = DefaultMaxFlowsPerPeer
	}
	if total == 0 {
		total = DefaultMaxFlowsPerTenant
	}
	return perPeer, total
}

// Exit modes.
const (
	ExitAuto      = "auto"
	ExitUserspace = "userspace"
	ExitKernel    = "kernel"
)

// The defaults of Config, the one place they are written: Validate fills them in, and the
// serve command shows them in its help and starts from them.
const (
	DefaultInterface  = "popgate0"
	DefaultListenPort = 51820
	DefaultMTU        = 1420
	DefaultExitMode   = ExitAuto
	DefaultRegion     = "local"
)

// Config configures a node. The zero value of each field selects the documented default;
// call Validate (New does) before use.
type Config struct {
	// DataDir holds the database, the key file and the control socket. Required.
	DataDir string
	// Interface names the WireGuard device (UAPI socket /var/run/wireguard/<Interface>.sock).
	// Default "popgate0".
	Interface string
	// ListenPort is the UDP port of the access device. Default 51820.
	ListenPort int
	// PublicEndpoint is the host:port written into client configs. Default: the first
	// non-loopback address of the host and ListenPort.
	PublicEndpoint string
	// MTU of the tunnel, written into client configs. Default 1420.
	MTU int
	// ExitMode is auto, userspace or kernel. Default auto.
	ExitMode string
	// Region is the name of the region this node serves. Default "local".
	Region string
	// NodeName names this node. Default: the host name.
	NodeName string
	// DNSUpstreams are the resolvers the in-tunnel DNS service forwards to. Empty: the
	// nameservers of /etc/resolv.conf; when there are none, configs carry no DNS line.
	DNSUpstreams []netip.AddrPort
	// Version is reported by status.
	Version string

	// exitDialer replaces the userspace exit's host dialer in tests.
	exitDialer netstack.Dialer
	// socket replaces the shared UDP socket in tests (a wgmuxtest.Socket). Default:
	// conn.NewDefaultBind().
	socket conn.Bind
	// fdBudget bounds the host sockets of the userspace exit's flows. Default: the process's
	// descriptor limit (RLIMIT_NOFILE) at Start less fdReserve.
	fdBudget int
	// sweepEvery, trimEvery and peerIdle pace the housekeeping: flow expiry, and removing peers
	// from their device after peerIdle without a handshake. Tests shorten them.
	sweepEvery, trimEvery, peerIdle time.Duration
}

// Validate fills defaults and rejects bad values with a message naming the field and the fix.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("data dir is empty: set --data-dir (or POPGATE_DATA_DIR) to a writable directory")
	}
	if c.Interface == "" {
		c.Interface = DefaultInterface
	}
	if !firewall.ValidInterfaceName(c.Interface) {
		return fmt.Errorf("interface %q is not a valid interface name: use %s", c.Interface, firewall.InterfaceNameRule)
	}
	if c.ListenPort == 0 {
		c.ListenPort = DefaultListenPort
	}
	if c.ListenPort < 1 || c.ListenPort > 65535 {
		return fmt.Errorf("listen port %d is out of range: use 1-65535", c.ListenPort)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 1280 || c.MTU > 9000 {
		return fmt.Errorf("mtu %d is out of range: use 1280-9000 (1420 suits most links)", c.MTU)
	}
	switch c.ExitMode {
	case "":
		c.ExitMode = DefaultExitMode
	case ExitAuto, ExitUserspace, ExitKernel:
	default:
		return fmt.Errorf("exit mode %q is unknown: use auto, userspace or kernel", c.ExitMode)
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.sweepEvery == 0 {
		c.sweepEvery = 5 * time.Second
	}
	if c.trimEvery == 0 {
		c.trimEvery = 30 * time.Second
	}
	if c.peerIdle == 0 {
		// A session lives at most 3 minutes (REJECT_AFTER_TIME) and an active peer re-keys
		// every 2: a peer without a handshake for 5 minutes has no session left.
		c.peerIdle = 5 * time.Minute
	}
	if c.PublicEndpoint != "" {
		if err := validateEndpoint(c.PublicEndpoint); err != nil {
			return err
		}
	}
	return nil
}

// validateEndpoint checks a host:port written into client configs.
func validateEndpoint(ep string) error {
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
