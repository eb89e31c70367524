// Package gatewaytest starts a real node for tests, wired as popgate serve wires it: a store in
// a directory, the node's data plane (gateway) on a UDP port the system picks, with the
// userspace exit, and its controller (gateway/control). It needs no root.
package gatewaytest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/popgate/popgate/gateway"
	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// Options configure Start; every field has a default.
type Options struct {
	// Dir holds the store. Default: a temporary directory of the test.
	Dir string
	// Gateway is the node's configuration; PrivateKey and Overlay come from the store.
	// Default: a unique interface name, a port the system picks (AnyPort), the userspace exit.
	Gateway gateway.Config
	// Control is the controller's configuration. Default: PublicEndpoint
	// <PublicHost>:<the node's port>, the node's MTU and region.
	Control control.Config
	// PublicHost is the host of the default PublicEndpoint. Default 127.0.0.1.
	PublicHost string
	// Log receives every component's log. Default: discarded.
	Log *slog.Logger
}

// Node is a started node, its controller and their store, closed at the end of the test.
type Node struct {
	Node  *gateway.Node
	Ctrl  *control.Controller
	Store *store.Store
	// Port is the node's UDP port.
	Port int
}

var nodes atomic.Int64

// Start opens the store, starts the node and its controller and publishes the store's state.
func Start(t testing.TB, o Options) *Node {
	t.Helper()
	ctx := context.Background()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(o.Dir, "popgate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g := o.Gateway
	if g.PrivateKey, err = st.NodePrivateKey(ctx); err != nil {
		t.Fatal(err)
	}
	g.Overlay.V4, g.Overlay.V6 = st.OverlayPrefixes()
	g.Overlay.Gateway4, g.Overlay.Gateway6 = st.GatewayAddrs()
	if g.Interface == "" {
		g.Interface = fmt.Sprintf("pgt%d-%d", os.Getpid()%10000, nodes.Add(1)%1000)
	}
	if g.ExitMode == "" {
		g.ExitMode = gateway.ExitUserspace // the kernel exit would change the host's own firewall
	}
	if g.ListenPort == 0 {
		g.AnyPort = true
	}
	node, err := gateway.New(g, o.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	port := node.Config().ListenPort // bound by Start
	c := o.Control
	if c.PublicEndpoint == "" {
		if o.PublicHost == "" {
			o.PublicHost = "127.0.0.1"
		}
		c.PublicEndpoint = net.JoinHostPort(o.PublicHost, strconv.Itoa(port))
	}
	if c.ListenPort == 0 {
		c.ListenPort = port
	}
	if c.MTU == 0 {
		c.MTU = node.Config().MTU
	}
	if c.Region == "" {
		c.Region = node.Config().Region
	}
	c.ClientDNS = c.ClientDNS || len(node.Config().DNSUpstreams) > 0
	ctrl, err := control.New(c, st, node, o.Log.With("component", "control"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() }) // before the node's
	if err := ctrl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &Node{Node: node, Ctrl: ctrl, Store: st, Port: port}
}
