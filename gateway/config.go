// Package gateway is a node's data plane: the WireGuard devices, the packet path, the exits,
// and Apply, which makes them match a desired state (gateway/plane).
package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/netstack"
	"github.com/popgate/popgate/store"
)

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
	// DefaultBackbonePort is the backbone's UDP port (backbone.DefaultListenPort).
	DefaultBackbonePort = 51821
)

// Config configures a node. The zero value of each field selects the documented default;
// call Validate (New does) before use.
type Config struct {
	// PrivateKey is the node's WireGuard private key (store.NodePrivateKey). Required.
	PrivateKey store.Key
	// Overlay is the installation's overlay addressing (the store's OverlayPrefixes and
	// GatewayAddrs), fixed for the node's life: the exits are built for it, and Apply
	// refuses a desired state for another. Required.
	Overlay plane.Overlay
	// Interface names the WireGuard device (UAPI socket /var/run/wireguard/<Interface>.sock).
	// Default "popgate0".
	Interface string
	// ListenPort is the UDP port of the access device. Default 51820.
	ListenPort int
	// AnyPort makes Start bind a port the system picks, and Config().ListenPort report it once
	// Start has bound it. ListenPort must then be 0. For tests, which cannot pick a free port
	// for a node beforehand without a race; a node in service needs a port its clients know.
	AnyPort bool
	// MTU of the tunnel. Default 1420.
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

	// BackboneKey is the node's backbone private key (store.BackbonePrivateKey). Zero: the
	// node has no backbone, and a desired state that gives it one (plane.Desired.Self) is
	// served without it (nothing crosses to other nodes). Default zero.
	BackboneKey store.Key
	// BackbonePort is the backbone's UDP port, bound when the first desired state with a
	// Self arrives. With AnyPort it must be 0 and the system picks it too. Default 51821.
	BackbonePort int
	// NoExit: the node has no exit role. Its tenants' internet traffic goes over the backbone
	// to exits (plane.Route), none leaves through this node, and backbone traffic for the
	// internet is refused. Default false: the node is an exit.
	NoExit bool
	// Clock is the time peers' expiry is judged by. A joined node passes its controller's
	// time as it reckons it (nodesync.Client.ControllerTime), so that a node whose clock is
	// off expires peers when the controller would. Default time.Now.
	Clock func() time.Time
	// PeerArrived, when set, is called (on a goroutine of the node's, never concurrently)
	// shortly after a peer that the desired state places at another node, or at none,
	// started a handshake at this node, when its handshake is likely complete: a joined node
	// reports then (nodesync.Client.ReportNow), so that the controller places the peer here
	// and tells the other nodes within a second rather than at the next periodic report.
	// It must not block. Default nil: nothing is called.
	PeerArrived func()
	// OnEvent hears each event the node sees (events.go: backbone links down and back, a
	// route's exit changed), in order, from the goroutine that saw it (the backbone's
	// prober, the sweep, an Apply): it must not block. Default: none (the log says them).
	OnEvent func(plane.Event)
	// Blobs returns the content of a blocklist by its SHA-256 (plane.TenantDNS): the
	// appliance reads its store (store.Store.Blob), a joined node its own store or else its
	// controller (nodesync.Client.Blob). The node calls it on a goroutine of its own, never
	// from an Apply or the packet path, and checks what it returns against the hash.
	// Default nil: the tenants' blocklists are not enforced (the log says so).
	Blobs func(ctx context.Context, sum [32]byte) ([]byte, error)
	// backboneTuning shortens the backbone's probe timers in tests; zero: its defaults.
	backboneTuning backboneTuning

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

func (c *Config) now() time.Time {
	if c.Clock == nil {
		return time.Now()
	}
	return c.Clock()
}

// validatePort checks the UDP port named what: 0 with anyPort (the system picks it), else
// 1-65535, def for 0.
func validatePort(port *int, what string, def int, anyPort bool) error {
	switch {
	case anyPort && *port != 0:
		return fmt.Errorf("%s %d with AnyPort: set one of the two", what, *port)
	case anyPort:
		return nil
	case *port == 0:
		*port = def
	}
	if *port < 1 || *port > 65535 {
		return fmt.Errorf("%s %d is out of range: use 1-65535", what, *port)
	}
	return nil
}

// Validate fills defaults and rejects bad values with a message naming the field and the fix.
// It checks the settings an operator gives; New also checks PrivateKey and Overlay, which
// come from the store.
func (c *Config) Validate() error {
	if c.Interface == "" {
		c.Interface = DefaultInterface
	}
	if !firewall.ValidInterfaceName(c.Interface) {
		return fmt.Errorf("interface %q is not a valid interface name: use %s", c.Interface, firewall.InterfaceNameRule)
	}
	if err := validatePort(&c.ListenPort, "listen port", DefaultListenPort, c.AnyPort); err != nil {
		return err
	}
	if err := validatePort(&c.BackbonePort, "backbone port", DefaultBackbonePort, c.AnyPort); err != nil {
		return err
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
	return nil
}
