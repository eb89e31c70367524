package firewall

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// ErrKernelModeUnavailable is wrapped by the errors of NewHostRules and Install that mean the
// kernel exit cannot work on this host as it is: the iptables command is missing or the
// process lacks CAP_NET_ADMIN. The error text says what
// to install or grant; with --exit-mode auto the caller falls back to the userspace exit.
var ErrKernelModeUnavailable = errors.New("kernel exit mode is unavailable")

// errHostRulesClosed is returned by Install after Close.
var errHostRulesClosed = errors.New("host rules are closed")

// hostChain is a chain of ours and the one built-in chain that jumps to it.
type hostChain struct {
	table   string // "filter" or "nat"
	builtin string // the built-in chain holding the jump
	chain   string // our chain
}

// jump is the rule spec of the jump from h.builtin to h.chain.
func (h hostChain) jump() []string { return []string{"-j", h.chain} }

// hostChains lists our chains in the order Install fills them. Chain names are fixed, so one
// kernel-mode popgate runs per network namespace.
var hostChains = [...]hostChain{
	{table: "filter", builtin: "INPUT", chain: "POPGATE-INPUT"},
	{table: "filter", builtin: "FORWARD", chain: "POPGATE-FORWARD"},
	{table: "nat", builtin: "POSTROUTING", chain: "POPGATE-POSTROUTING"},
}

// HostRulesConfig configures HostRules. The zero value of each optional field selects the
// documented default; call Validate (NewHostRules does) before use.
type HostRulesConfig struct {
	// TunName is the kernel TUN through which exit traffic leaves the packet path and through
	// which its replies come back. Required.
	TunName string
	// ListenPort is the WireGuard UDP port accepted in INPUT. Default 51820.
	ListenPort int
	// EgressInterface, when set, is the only interface that exit traffic is forwarded to and
	// masqueraded on; forwarding from the TUN to any other interface is dropped. Default "":
	// forward to and masquerade on any interface but the TUN.
	EgressInterface string
	// OverlayV4 and OverlayV6 are the overlay source prefixes to masquerade. The zero Prefix
	// leaves that family without NAT (its INPUT and FORWARD rules are still installed). At
	// least one is required.
	OverlayV4, OverlayV6 netip.Prefix

	// newIPTables replaces the go-iptables constructor in tests. Default newRealIPTables.
	newIPTables func(proto iptables.Protocol) (iptablesAPI, error)
}

// Validate fills defaults and rejects bad values with a message naming the field and the fix.
func (c *HostRulesConfig) Validate() error {
	if c.TunName == "" {
		return errors.New("host rules: TunName is empty: set it to the kernel TUN of the exit")
	}
	if !ValidInterfaceName(c.TunName) {
		return fmt.Errorf("host rules: TunName %q is not an interface name: use %s", c.TunName, InterfaceNameRule)
	}
	if c.ListenPort == 0 {
		c.ListenPort = 51820
	}
	if c.ListenPort < 1 || c.ListenPort > 65535 {
		return fmt.Errorf("host rules: ListenPort %d is out of range: use 1-65535", c.ListenPort)
	}
	if c.EgressInterface != "" {
		if !ValidInterfaceName(c.EgressInterface) {
			return fmt.Errorf("host rules: EgressInterface %q is not an interface name: use %s, or leave it empty for any", c.EgressInterface, InterfaceNameRule)
		}
		if c.EgressInterface == c.TunName {
			return fmt.Errorf("host rules: EgressInterface %q is the TUN itself: name the uplink, or leave it empty for any", c.EgressInterface)
		}
	}
	if c.OverlayV4.IsValid() && !c.OverlayV4.Addr().Is4() {
		return fmt.Errorf("host rules: OverlayV4 %s is not an IPv4 prefix: use the IPv4 overlay, e.g. 100.64.0.0/10", c.OverlayV4)
	}
	if c.OverlayV6.IsValid() && (!c.OverlayV6.Addr().Is6() || c.OverlayV6.Addr().Is4In6()) {
		return fmt.Errorf("host rules: OverlayV6 %s is not an IPv6 prefix: use the IPv6 overlay, e.g. fd00:1::/48", c.OverlayV6)
	}
	if !c.OverlayV4.IsValid() && !c.OverlayV6.IsValid() {
		return errors.New("host rules: OverlayV4 and OverlayV6 are both empty: set the overlay prefixes to masquerade")
	}
	c.OverlayV4, c.OverlayV6 = c.OverlayV4.Masked(), c.OverlayV6.Masked()
	return nil
}

// chainRules returns the rules of each of our chains for one family, indexed like hostChains, each
// spelt exactly as `iptables -S` prints it so that Install can compare them with what is there.
func (c *HostRulesConfig) chainRules(v6 bool) [len(hostChains)][][]string {
	tun := c.TunName
	input := [][]string{
		{"-p", "udp", "-m", "udp", "--dport", strconv.Itoa(c.ListenPort), "-j", "ACCEPT"},
	}

	var forward [][]string
	if c.EgressInterface != "" {
		forward = append(forward,
			[]string{"-i", tun, "-o", c.EgressInterface, "-j", "ACCEPT"},
			[]string{"-i", tun, "-j", "DROP"})
	} else {
		forward = append(forward, []string{"-i", tun, "-j", "ACCEPT"})
	}
	// Only replies may reach the overlay from outside: the kernel exit is not an inbound path.
	forward = append(forward,
		[]string{"-o", tun, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		[]string{"-o", tun, "-j", "DROP"})

	var postrouting [][]string
	src := c.OverlayV4
	if v6 {
		src = c.OverlayV6
	}
	if src.IsValid() {
		out := []string{"!", "-o", tun}
		if c.EgressInterface != "" {
			out = []string{"-o", c.EgressInterface}
		}
		rule := append([]string{"-s", src.String()}, out...)
		postrouting = append(postrouting, append(rule, "-j", "MASQUERADE"))
	}
	return [len(hostChains)][][]string{input, forward, postrouting}
}

// HostRules owns the iptables rules of the kernel-mode exit, for IPv4 and IPv6: in each
// family, chains of our own (filter POPGATE-INPUT, filter POPGATE-FORWARD, nat
// POPGATE-POSTROUTING), each reached by exactly one jump inserted first in INPUT, FORWARD and
// POSTROUTING. They accept the WireGuard UDP port, forward exit traffic out of the TUN and only
// replies back into it, and masquerade overlay sources. No other rule is touched.
//
// IPv6 is best effort: when ip6tables is missing, or the kernel lacks IPv6 or its nat table,
// HostRules logs one warning and manages IPv4 only; IPv6 reports which. The caller must then
// not hand IPv6 exit traffic to the kernel, where it would leave without NAT.
//
// Methods are safe for concurrent use; they run one at a time.
type HostRules struct {
	cfg HostRulesConfig
	log *slog.Logger

	mu     sync.Mutex
	v4     *hostFamily // never nil
	v6     *hostFamily // nil once IPv6 turned out to be unavailable
	closed bool
}

// hostFamily is one address family's iptables command.
type hostFamily struct {
	name string // "IPv4" or "IPv6"
	bin  string // "iptables" or "ip6tables"
	ipt  iptablesAPI
}

// NewHostRules checks the configuration and that iptables can be driven, without changing any
// rule. It fails with an error wrapping ErrKernelModeUnavailable when the iptables command is
// missing or the process lacks CAP_NET_ADMIN. A nil log discards.
func NewHostRules(cfg HostRulesConfig, log *slog.Logger) (*HostRules, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	newIPT := cfg.newIPTables
	if newIPT == nil {
		newIPT = newRealIPTables
	}
	h := &HostRules{cfg: cfg, log: log}
	var err error
	if h.v4, err = openHostFamily(newIPT, false); err != nil {
		return nil, err
	}
	if h.v6, err = openHostFamily(newIPT, true); err != nil {
		log.Warn("IPv6 host rules are unavailable: the kernel exit carries IPv4 only", "err", err)
	}
	return h, nil
}

// openHostFamily makes the iptables command of one family and probes it: `iptables --version`
// works unprivileged, a listing of the nat table does not, and it needs the table.
func openHostFamily(newIPT func(iptables.Protocol) (iptablesAPI, error), v6 bool) (*hostFamily, error) {
	f := &hostFamily{name: "IPv4", bin: "iptables"}
	proto := iptables.ProtocolIPv4
	if v6 {
		f.name, f.bin, proto = "IPv6", "ip6tables", iptables.ProtocolIPv6
	}
	ipt, err := newIPT(proto)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%w: the %s command is not installed: install it (apt-get install iptables), or use --exit-mode userspace (%w)",
				ErrKernelModeUnavailable, f.bin, err)
		}
		return nil, fmt.Errorf("%s: %w", f.bin, err)
	}
	f.ipt = ipt
	ok, err := ipt.ChainExists("nat", "POSTROUTING")
	if err != nil {
		return nil, f.explain(err, "list the nat table")
	}
	if !ok {
		return nil, fmt.Errorf("%s: the nat table has no POSTROUTING chain", f.bin)
	}
	return f, nil
}

// explain wraps an iptables error with what we were doing; a lack of privilege becomes
// ErrKernelModeUnavailable with what to do about it.
func (f *hostFamily) explain(err error, format string, args ...any) error {
	msg := err.Error()
	if strings.Contains(msg, "Permission denied") || strings.Contains(msg, "Operation not permitted") ||
		strings.Contains(msg, "you must be root") {
		return fmt.Errorf("%w: %s needs CAP_NET_ADMIN: run popgate as root or grant it CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN), or use --exit-mode userspace (%w)",
			ErrKernelModeUnavailable, f.bin, err)
	}
	return fmt.Errorf("%s: %s: %w", f.bin, fmt.Sprintf(format, args...), err)
}

// IPv6 reports whether HostRules manages IPv6 rules too (see HostRules).
func (h *HostRules) IPv6() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.v6 != nil
}

// Install makes the host rules what the configuration asks for: each chain of ours holds
// exactly our rules, and exactly one jump leads to it, inserted first in its built-in chain
// when absent. It is idempotent and replaces what an earlier run left behind. A chain that
// already holds the right rules is left alone, so installing again opens no gap; one that
// differs is flushed and refilled (for a moment it is empty).
//
// On an IPv4 error, rules may be half installed: Uninstall or Close removes them. An IPv6
// error is logged once, the IPv6 rules are removed and HostRules carries on with IPv4 only.
// ctx is checked between iptables commands.
func (h *HostRules) Install(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errHostRulesClosed
	}
	if err := h.v4.install(ctx, h.cfg.chainRules(false)); err != nil {
		return fmt.Errorf("install %s host rules: %w", h.v4.name, err)
	}
	if h.v6 != nil {
		if err := h.v6.install(ctx, h.cfg.chainRules(true)); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("install %s host rules: %w", h.v6.name, err)
			}
			h.log.Warn("IPv6 host rules cannot be installed: the kernel exit carries IPv4 only", "err", err)
			if err := h.v6.uninstall(context.WithoutCancel(ctx)); err != nil {
				h.log.Warn("removing half-installed IPv6 host rules", "err", err)
			}
			h.v6 = nil
		}
	}
	h.log.Info("host rules installed", "tun", h.cfg.TunName, "listen_port", h.cfg.ListenPort,
		"egress", h.cfg.EgressInterface, "ipv6", h.v6 != nil)
	return nil
}

// Uninstall removes the jumps to our chains and the chains, in every family, and leaves every
// other rule alone. It is idempotent, removes what a failed Install left, and carries on past
// errors, returning them all. Install may be called again afterwards.
func (h *HostRules) Uninstall(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.uninstallLocked(ctx)
}

// Close removes the rules as Uninstall does; afterwards Install fails. A second Close does
// nothing and returns nil.
func (h *HostRules) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	return h.uninstallLocked(context.Background())
}

func (h *HostRules) uninstallLocked(ctx context.Context) error {
	var errs []error
	for _, f := range []*hostFamily{h.v4, h.v6} {
		if f == nil {
			continue
		}
		if err := f.uninstall(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove %s host rules: %w", f.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	h.log.Info("host rules removed", "tun", h.cfg.TunName)
	return nil
}

// install fills our chains, then adds the jumps to them; rules is indexed like hostChains.
func (f *hostFamily) install(ctx context.Context, rules [len(hostChains)][][]string) error {
	for i, hk := range hostChains {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.syncChain(hk, rules[i]); err != nil {
			return err
		}
	}
	for _, hk := range hostChains {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.ensureJump(hk); err != nil {
			return err
		}
	}
	return nil
}

// syncChain makes hk.chain exist and hold exactly rules, leaving it alone when it already does.
func (f *hostFamily) syncChain(hk hostChain, rules [][]string) error {
	ok, err := f.ipt.ChainExists(hk.table, hk.chain)
	if err != nil {
		return f.explain(err, "look for chain %s %s", hk.table, hk.chain)
	}
	if ok {
		have, err := f.ipt.List(hk.table, hk.chain)
		if err != nil {
			return f.explain(err, "list chain %s %s", hk.table, hk.chain)
		}
		if slices.Equal(have, hostChainListing(hk.chain, rules)) {
			return nil
		}
	}
	if err := f.ipt.ClearChain(hk.table, hk.chain); err != nil {
		return f.explain(err, "create or flush chain %s %s", hk.table, hk.chain)
	}
	for _, r := range rules {
		if err := f.ipt.Append(hk.table, hk.chain, r...); err != nil {
			return f.explain(err, "append to %s %s", hk.table, hk.chain)
		}
	}
	return nil
}

// hostChainListing is what List returns for a user chain holding rules.
func hostChainListing(chain string, rules [][]string) []string {
	out := []string{"-N " + chain}
	for _, r := range rules {
		out = append(out, "-A "+chain+" "+strings.Join(r, " "))
	}
	return out
}

// jumpCount counts the jumps to hk.chain in hk.builtin.
func (f *hostFamily) jumpCount(hk hostChain) (int, error) {
	have, err := f.ipt.List(hk.table, hk.builtin)
	if err != nil {
		return 0, f.explain(err, "list chain %s %s", hk.table, hk.builtin)
	}
	line := "-A " + hk.builtin + " " + strings.Join(hk.jump(), " ")
	n := 0
	for _, l := range have {
		if l == line {
			n++
		}
	}
	return n, nil
}

// ensureJump leaves exactly one jump to hk.chain in hk.builtin, inserting it first when absent.
func (f *hostFamily) ensureJump(hk hostChain) error {
	n, err := f.jumpCount(hk)
	if err != nil {
		return err
	}
	if n == 0 {
		if err := f.ipt.Insert(hk.table, hk.builtin, 1, hk.jump()...); err != nil {
			return f.explain(err, "insert the jump from %s %s", hk.table, hk.builtin)
		}
		return nil
	}
	for ; n > 1; n-- {
		if err := f.ipt.Delete(hk.table, hk.builtin, hk.jump()...); err != nil {
			return f.explain(err, "delete a duplicate jump from %s %s", hk.table, hk.builtin)
		}
	}
	return nil
}

// uninstall removes each of our chains that exists and the jumps to it, carrying on past errors.
func (f *hostFamily) uninstall(ctx context.Context) error {
	var errs []error
	for _, hk := range hostChains {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := f.removeChain(hk); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeChain deletes the jumps to hk.chain, then the chain. A jump cannot exist without its
// chain, so a missing chain means there is nothing to do.
func (f *hostFamily) removeChain(hk hostChain) error {
	ok, err := f.ipt.ChainExists(hk.table, hk.chain)
	if err != nil {
		return f.explain(err, "look for chain %s %s", hk.table, hk.chain)
	}
	if !ok {
		return nil
	}
	n, err := f.jumpCount(hk)
	if err != nil {
		return err
	}
	for ; n > 0; n-- {
		if err := f.ipt.Delete(hk.table, hk.builtin, hk.jump()...); err != nil {
			return f.explain(err, "delete the jump from %s %s", hk.table, hk.builtin)
		}
	}
	if err := f.ipt.ClearChain(hk.table, hk.chain); err != nil {
		return f.explain(err, "flush chain %s %s", hk.table, hk.chain)
	}
	if err := f.ipt.DeleteChain(hk.table, hk.chain); err != nil {
		return f.explain(err, "delete chain %s %s", hk.table, hk.chain)
	}
	return nil
}

// capNetAdmin is the bit of CAP_NET_ADMIN in the capability sets of /proc/<pid>/status.
const capNetAdmin = 12

// KernelModeAvailable reports whether the kernel exit can work in this process: it has
// CAP_NET_ADMIN in its effective set, /dev/net/tun opens, and the iptables command is
// installed. The string says why not (or, when true, what was found), for logging the choice
// of --exit-mode auto.
func KernelModeAvailable() (bool, string) {
	return kernelModeAvailable("/proc/self/status", "/dev/net/tun", exec.LookPath)
}

func kernelModeAvailable(statusPath, tunPath string, lookPath func(string) (string, error)) (bool, string) {
	has, err := hasEffectiveCap(statusPath, capNetAdmin)
	if err != nil {
		return false, "cannot read the capabilities of the process: " + err.Error()
	}
	if !has {
		return false, "the process lacks CAP_NET_ADMIN: run as root or grant it CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN)"
	}
	tun, err := os.OpenFile(tunPath, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("%s cannot be opened: %v (load the tun kernel module; in a container, pass the device in)", tunPath, err)
	}
	tun.Close()
	if _, err := lookPath("iptables"); err != nil {
		return false, "the iptables command is not installed: install it (apt-get install iptables)"
	}
	return true, "the process has CAP_NET_ADMIN, " + tunPath + " and iptables"
}

// hasEffectiveCap reads the CapEff line of a /proc/<pid>/status file.
func hasEffectiveCap(statusPath string, bit uint) (bool, error) {
	f, err := os.Open(statusPath)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, fmt.Errorf("%s: CapEff %q is not a hex number", statusPath, strings.TrimSpace(v))
		}
		return caps&(1<<bit) != 0, nil
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	return false, fmt.Errorf("%s has no CapEff line", statusPath)
}
