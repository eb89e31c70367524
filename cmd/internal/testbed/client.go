package testbed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// UAPIDir is where wireguard-go puts its control sockets, <ifname>.sock. It is one directory
// for all namespaces.
const UAPIDir = "/var/run/wireguard"

// ClientOptions tunes StartClientWith.
type ClientOptions struct {
	// WireGuardGo is the wireguard-go binary. Default "wireguard-go" from PATH (Debian's);
	// give the path of an upstream build to test against that one.
	WireGuardGo string
}

// Client is a stock WireGuard client: wireguard-go configured with wg(8) and ip(8) from a
// wg-quick file, the way wg-quick would do it.
type Client struct {
	NS     *Netns
	Ifname string
	Config *Config // the parsed file
	Proc   *Proc   // wireguard-go
}

// StartClient brings up a client in ns from wg-quick text with Debian's wireguard-go.
// See StartClientWith.
func StartClient(t testing.TB, ns *Netns, ifname, conf string) *Client {
	t.Helper()
	return StartClientWith(t, ns, ifname, conf, ClientOptions{})
}

// StartClientWith brings up a client in ns from wg-quick text: it runs `wireguard-go -f
// ifname`, feeds `wg-quick strip` of the text to `wg setconf`, adds every Address, sets the
// MTU, brings the link up and routes each peer's AllowedIPs into the tunnel (0.0.0.0/0 as
// 0.0.0.0/1 + 128.0.0.0/1 and ::/0 as ::/1 + 8000::/1, so the underlay's own routes stay;
// an endpoint inside AllowedIPs first gets a host route through the underlay). DNS servers
// go to /etc/netns/<ns>/resolv.conf, seen by commands that ns.Run runs. Hooks (PostUp, …) are
// not run. t's cleanup stops the client and removes its UAPI socket.
func StartClientWith(t testing.TB, ns *Netns, ifname, conf string, opts ClientOptions) *Client {
	t.Helper()
	cfg, err := ParseConfig(conf)
	if err != nil {
		t.Fatalf("testbed: client config: %v\n%s", err, conf)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stripped, err := WGQuickStrip(ctx, ifname, conf)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	proc := StartWireGuardGo(t, ns, ifname, opts.WireGuardGo)
	c := &Client{NS: ns, Ifname: ifname, Config: cfg, Proc: proc}

	setconf := filepath.Join(t.TempDir(), ifname+".setconf")
	if err := os.WriteFile(setconf, []byte(stripped), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.MustRun(t, "wg", "setconf", ifname, setconf)
	if cfg.Interface.MTU > 0 {
		ns.MustRun(t, "ip", "link", "set", "dev", ifname, "mtu", fmt.Sprint(cfg.Interface.MTU))
	}
	for _, p := range cfg.Interface.Addresses {
		if err := ns.AddAddr(ctx, ifname, p); err != nil {
			t.Fatalf("testbed: %v", err)
		}
	}
	ns.MustRun(t, "ip", "link", "set", "dev", ifname, "up")
	if err := c.addRoutes(ctx); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	if len(cfg.Interface.DNS) > 0 {
		var b strings.Builder
		for _, d := range cfg.Interface.DNS {
			if _, err := netip.ParseAddr(d); err == nil {
				fmt.Fprintf(&b, "nameserver %s\n", d)
			} else {
				fmt.Fprintf(&b, "search %s\n", d)
			}
		}
		dir := filepath.Join("/etc/netns", ns.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *Client) addRoutes(ctx context.Context) error {
	table := "main"
	switch strings.ToLower(c.Config.Interface.Table) {
	case "off":
		return nil
	case "", "auto":
	default:
		table = c.Config.Interface.Table
	}
	for _, peer := range c.Config.Peers {
		if ep, err := peer.EndpointAddrPort(); err == nil {
			addr := ep.Addr().Unmap()
			if slices.ContainsFunc(peer.AllowedIPs, func(p netip.Prefix) bool { return p.Contains(addr) }) {
				if err := c.pinEndpoint(ctx, addr); err != nil {
					return err
				}
			}
		}
		for _, p := range peer.AllowedIPs {
			p = p.Masked()
			routes := []netip.Prefix{p}
			if p.Bits() == 0 {
				if p.Addr().Is4() {
					routes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/1")}
				} else {
					routes = []netip.Prefix{netip.MustParsePrefix("::/1"), netip.MustParsePrefix("8000::/1")}
				}
			}
			for _, r := range routes {
				if _, err := c.NS.Run(ctx, "ip", "route", "replace", r.String(), "dev", c.Ifname, "table", table); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// pinEndpoint routes the endpoint through the underlay with a host route, as the underlay
// routes it now, so that AllowedIPs covering it do not loop the tunnel into itself.
func (c *Client) pinEndpoint(ctx context.Context, ep netip.Addr) error {
	out, err := c.NS.Run(ctx, "ip", "route", "get", ep.String())
	if err != nil {
		return nil // no underlay route: nothing to keep
	}
	f := strings.Fields(out)
	args := []string{"ip", "route", "replace", netip.PrefixFrom(ep, ep.BitLen()).String()}
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" || f[i] == "dev" {
			args = append(args, f[i], f[i+1])
		}
	}
	_, err = c.NS.Run(ctx, args...)
	return err
}

// Show returns `wg show <ifname>` of the client.
func (c *Client) Show(ctx context.Context) (string, error) {
	return c.NS.Run(ctx, "wg", "show", c.Ifname)
}

// Stop stops the client's wireguard-go; its interface goes away with it.
func (c *Client) Stop() error { return c.Proc.Stop(10 * time.Second) }

// StartWireGuardGo runs `wireguard-go -f ifname` (bin; "" is "wireguard-go" from PATH) in ns
// with verbose logging and waits for its UAPI socket. t's cleanup stops it and removes the
// socket.
func StartWireGuardGo(t testing.TB, ns *Netns, ifname, bin string) *Proc {
	t.Helper()
	if bin == "" {
		bin = "wireguard-go"
	}
	sock := filepath.Join(UAPIDir, ifname+".sock")
	// The directory is shared by all namespaces: a socket that answers belongs to a live
	// device of the same name (in this test or another namespace); one that does not is
	// stale, from a killed run.
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		t.Fatalf("testbed: a live wireguard-go device already serves %s: give every interface of a test its own name", sock)
	}
	_ = os.Remove(sock)
	p, err := ns.Start(t, "env", "LOG_LEVEL=verbose", bin, "-f", ifname)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		_ = p.Stop(10 * time.Second)
		_ = os.Remove(sock)
	})
	err = PollErr(context.Background(), 15*time.Second, func(context.Context) error {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("exited (%v)", err)
		}
		_, err := os.Stat(sock)
		return err
	})
	if err != nil {
		t.Fatalf("testbed: %s -f %s in %s did not come up: %v\n%s", bin, ifname, ns, err, p.LogTail(50))
	}
	return p
}

// WGQuickStrip returns `wg-quick strip` of a wg-quick file: the part `wg setconf` reads. It
// fails when wg-quick refuses the file or warns about it.
func WGQuickStrip(ctx context.Context, ifname, conf string) (string, error) {
	dir, err := os.MkdirTemp("", "pgtb-wgquick-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, ifname+".conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "wg-quick", "strip", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("wg-quick strip: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		return "", fmt.Errorf("wg-quick strip warns: %s", s)
	}
	return stdout.String(), nil
}

// BuildUpstreamWireGuardGo builds upstream wireguard-go from the module golang.zx2c4.com/wireguard
// that this module requires (with GSO/GRO offloads, unlike Debian's) into a temp dir of t and
// returns its path, for ClientOptions.WireGuardGo and StockServerOptions.WireGuardGo. The test's
// working directory must be inside this module, as it is under go test.
func BuildUpstreamWireGuardGo(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wireguard-go")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "golang.zx2c4.com/wireguard").CombinedOutput()
	if err != nil {
		t.Fatalf("testbed: build upstream wireguard-go: %v\n%s", err, out)
	}
	return bin
}
