package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/internal/readturn"
	"github.com/popgate/popgate/gateway/plane"
)

// kernelExit hands exit traffic to a kernel TUN; the kernel routes it and iptables MASQUERADEs
// it (rules owned by firewall.HostRules). Replies come back through the TUN. The tenant
// devices read it themselves (see tunDevice.Read), one at a time with the same turn as the
// shared socket's (readturn): whoever holds turn reads straight into wireguard-go's buffers,
// keeps the packets of its own tenant and queues the others' to their devices. So a reply costs no goroutine hand-off and no copy beyond the
// TUN's own when it is for the reading tenant, and one copy otherwise.
type kernelExit struct {
	log     *slog.Logger
	dev     tun.Device
	file    *os.File // dev's; its read deadline wakes a reader whose device is closing
	name    string
	rules   *firewall.HostRules
	sysctls map[string]string // forwarding sysctls we changed → their old values
	// turn is held by the one goroutine reading dev, and marks its device while it may be
	// blocked there. A reader that finds dev closed keeps it, so nobody reads a closed TUN
	// again.
	turn *readturn.Turn[tunDevice]
	once sync.Once
}

// newKernelExit creates the TUN <name>, routes the overlay through it, turns on forwarding and
// installs the host rules. On error everything done so far is undone.
func newKernelExit(name string, mtu, listenPort int, ov plane.Overlay, log *slog.Logger) (_ *kernelExit, err error) {
	k := &kernelExit{log: log, name: name, sysctls: map[string]string{}, turn: readturn.New[tunDevice]()}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	k.rules, err = firewall.NewHostRules(firewall.HostRulesConfig{
		TunName: name, ListenPort: listenPort, OverlayV4: ov.V4, OverlayV6: ov.V6,
	}, log)
	if err != nil {
		return nil, err
	}
	k.dev, err = tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("kernel exit: create TUN %s: %w: kernel mode needs CAP_NET_ADMIN and /dev/net/tun; or use --exit-mode userspace", name, err)
	}
	if k.file = k.dev.File(); k.file == nil {
		return nil, fmt.Errorf("kernel exit: TUN %s has no file to set read deadlines on", name)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("kernel exit: %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("kernel exit: bring %s up: %w", name, err)
	}
	if err := k.rules.Install(context.Background()); err != nil {
		return nil, err
	}
	prefixes := []net.IPNet{prefixToIPNet(ov.V4)}
	if err := k.setSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
		return nil, err
	}
	if k.rules.IPv6() {
		prefixes = append(prefixes, prefixToIPNet(ov.V6))
		if err := k.setSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1"); err != nil {
			return nil, err
		}
	}
	for i := range prefixes {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &prefixes[i], Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteReplace(r); err != nil {
			return nil, fmt.Errorf("kernel exit: route %s via %s: %w", prefixes[i].String(), name, err)
		}
	}
	return k, nil
}

// ipv6 reports whether IPv6 exit traffic may take the kernel path (NAT for IPv6 installed).
func (k *kernelExit) ipv6() bool { return k.rules.IPv6() }

// Write hands a batch to the kernel. bufs keep offset bytes of headroom (wireguard-go's
// buffers always do), which the TUN's offloads use for their header.
func (k *kernelExit) Write(bufs [][]byte, offset int) {
	if _, err := k.dev.Write(bufs, offset); err != nil && !errors.Is(err, os.ErrClosed) {
		k.log.Debug("write to kernel TUN", "err", err)
	}
}

// read reads what the kernel routes into the TUN (replies towards peers) into bufs, like
// tun.Device.Read. The caller must hold k.turn. A read blocked here returns with an error
// matching os.ErrDeadlineExceeded after wake.
func (k *kernelExit) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return k.dev.Read(bufs, sizes, offset)
}

// wake makes the read in progress, if any, return (os.ErrDeadlineExceeded): a device that
// closes must not stay blocked in the TUN.
func (k *kernelExit) wake() { k.file.SetReadDeadline(time.Now()) }

// rearm clears the deadline wake set. Only the turn holder calls it, before it checks
// whether its device closed (see tunDevice.readKernel).
func (k *kernelExit) rearm() { k.file.SetReadDeadline(time.Time{}) }

func (k *kernelExit) setSysctl(path, value string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("kernel exit: %w", err)
	}
	if strings.TrimSpace(string(old)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("kernel exit: enable forwarding (%s): %w", path, err)
	}
	k.sysctls[path] = strings.TrimSpace(string(old))
	return nil
}

// Close removes the host rules, the TUN (and with it its routes) and restores the forwarding
// sysctls it changed. Idempotent.
func (k *kernelExit) Close() error {
	k.once.Do(func() {
		if k.rules != nil {
			k.rules.Close()
		}
		if k.dev != nil {
			k.dev.Close()
		}
		for path, old := range k.sysctls {
			if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
				k.log.Warn("restore sysctl", "path", path, "err", err)
			}
		}
	})
	return nil
}

func prefixToIPNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
