package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// tenantDevice is one tenant's wireguard-go device: its own cryptokey routing table, so tenants
// may route the same private prefixes to their own sites. All devices share the node's key and
// UDP socket (see Mux).
type tenantDevice struct {
	id  int64
	tun *tunDevice
	dev *device.Device
	// peers is what the device holds: public key → allowed prefixes.
	peers map[store.Key][]netip.Prefix
}

func (td *tenantDevice) close() { td.dev.Close() }

// appliedPolicy remembers what a tenant's rule set was compiled from, so an unchanged policy
// is not swapped (a swap restarts the rule hit counters).
type appliedPolicy struct {
	key string
	rs  *firewall.RuleSet
}

// Reconcile brings the devices, the packet path's snapshot and the firewall in line with the
// store. Peers that did not change are not touched, so their sessions and flows continue.
func (n *Node) Reconcile(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	d, policies, err := n.loadDesired(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	byTenant := map[int64][]store.Peer{}
	enabled := map[int64]int{}
	for _, p := range d.peers {
		byTenant[p.TenantID] = append(byTenant[p.TenantID], p)
		if p.Enabled {
			enabled[p.TenantID]++
		}
	}
	// Devices first, so the snapshot can point at their packet paths.
	d.tuns = map[int64]*tunDevice{}
	for _, t := range d.tenants {
		if enabled[t.ID] == 0 {
			continue
		}
		td := n.devs[t.ID]
		if td == nil {
			if td, err = n.newTenantDevice(t.ID); err != nil {
				return fmt.Errorf("reconcile: tenant %s: %w", t.Name, err)
			}
			n.devs[t.ID] = td
		}
		d.tuns[t.ID] = td.tun
	}
	// Policy before traffic: a new tenant's first packet meets its rule set.
	live := map[int64]bool{}
	for _, t := range d.tenants {
		live[t.ID] = true
		n.applyPolicyLocked(t, byTenant[t.ID], policies[t.ID])
	}
	snap := newSnapshot(d, n.ov)
	n.snap.Store(snap)

	for id, td := range n.devs {
		if d.tuns[id] == nil {
			td.close()
			delete(n.devs, id)
			continue
		}
		if err := td.sync(snap, id); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
	}
	for id := range n.policies {
		if !live[id] {
			n.filter.SetRuleSet(id, nil)
			delete(n.policies, id)
		}
	}
	return nil
}

func (n *Node) loadDesired(ctx context.Context) (desired, map[int64]string, error) {
	var d desired
	var err error
	if d.tenants, err = n.store.ListTenants(ctx); err != nil {
		return d, nil, err
	}
	if d.peers, err = n.store.ListPeers(ctx, ""); err != nil {
		return d, nil, err
	}
	if d.routes, err = n.store.ListRoutes(ctx, ""); err != nil {
		return d, nil, err
	}
	policies, err := n.store.Policies(ctx)
	return d, policies, err
}

// newTenantDevice creates and brings up tenant id's device on the shared socket.
func (n *Node) newTenantDevice(id int64) (*tenantDevice, error) {
	name := fmt.Sprintf("%s.%d", n.cfg.Interface, id)
	tun := newTunDevice(name, n.cfg.MTU, id, &n.snap, n.filter)
	tun.setExits(n.exitLocal, n.exit4, n.exit6)
	wglog := n.log.With("component", "wireguard", "tenant_id", id)
	dev := device.NewDevice(tun, n.mux.Bind(id), &device.Logger{
		Verbosef: func(format string, args ...any) {
			if wglog.Enabled(context.Background(), slog.LevelDebug) {
				wglog.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) { wglog.Error(fmt.Sprintf(format, args...)) },
	})
	if err := dev.IpcSet(fmt.Sprintf("private_key=%x\nlisten_port=%d\n", n.key[:], n.cfg.ListenPort)); err != nil {
		dev.Close()
		return nil, fmt.Errorf("configure device: %w", err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("bring device up: %w", err)
	}
	return &tenantDevice{id: id, tun: tun, dev: dev, peers: map[store.Key][]netip.Prefix{}}, nil
}

// sync applies the difference between what the device holds and the snapshot's enabled peers
// of its tenant, in one IpcSet.
func (td *tenantDevice) sync(snap *snapshot, id int64) error {
	var b strings.Builder
	want := map[store.Key]*peerEntry{}
	for k, e := range snap.byKey {
		if e.tenantID == id {
			want[k] = e
		}
	}
	for k := range td.peers {
		if want[k] == nil {
			fmt.Fprintf(&b, "public_key=%x\nremove=true\n", k[:])
			delete(td.peers, k)
		}
	}
	for k, e := range want {
		if slices.Equal(td.peers[k], e.allowed) {
			continue
		}
		fmt.Fprintf(&b, "public_key=%x\nreplace_allowed_ips=true\n", k[:])
		for _, p := range e.allowed {
			fmt.Fprintf(&b, "allowed_ip=%s\n", p)
		}
		td.peers[k] = e.allowed
	}
	if b.Len() == 0 {
		return nil
	}
	return td.dev.IpcSet(b.String())
}

// defaultPolicy is the policy of a tenant that never set one: peers reach whatever the tenant
// routes (the internet, its sites), not each other, and nothing reaches them unasked.
func (n *Node) defaultPolicy() string {
	return fmt.Sprintf(`# The default policy of a tenant: its peers reach what the tenant routes (the
# internet, its sites) but not each other, and nothing reaches them unasked.
# Replace it with 'popgate policy set --tenant NAME FILE'.
default deny
deny any -> %s, %s
allow any -> any
`, n.ov.v4, n.ov.v6)
}

// tenantView is what the firewall compiles a tenant's policy against.
func tenantView(peers []store.Peer) (firewall.View, string) {
	var v firewall.View
	var key strings.Builder
	for _, p := range peers {
		v.Peers = append(v.Peers, firewall.ViewPeer{Name: p.Name, Addrs: []netip.Addr{p.IPv4, p.IPv6}, Groups: p.Groups})
		fmt.Fprintf(&key, "%s|%s|%s|%v|%s|%v\n", p.Name, p.IPv4, p.IPv6, p.Groups, p.Site, p.SitePrefixes)
		if p.Site != "" {
			v.Sites = append(v.Sites, firewall.ViewSite{Name: p.Site, Prefixes: p.SitePrefixes})
		}
	}
	return v, key.String()
}

// compilePolicy parses and compiles a tenant's policy text against its peers and sites.
// Every problem is an error: the rule set is returned as well when only references are
// unresolved (they then match nothing).
func compilePolicy(text string, peers []store.Peer) (*firewall.RuleSet, error) {
	pol, err := firewall.Parse(text)
	if err != nil {
		return nil, err
	}
	view, _ := tenantView(peers)
	return firewall.Compile(pol, &view)
}

// applyPolicyLocked compiles and installs tenant t's rule set when its policy or its peers
// changed. A stored policy that no longer compiles (say, it names a removed peer) keeps
// working with the unresolved names matching nothing; one that does not parse at all falls back
// to the default policy. Both are logged.
func (n *Node) applyPolicyLocked(t store.Tenant, peers []store.Peer, text string) {
	if text == "" {
		text = n.defaultPolicy()
	}
	_, viewKey := tenantView(peers)
	key := text + "\x00" + viewKey
	if prev, ok := n.policies[t.ID]; ok && prev.key == key {
		return
	}
	rs, err := compilePolicy(text, peers)
	if err != nil {
		n.log.Warn("policy of tenant has problems", "tenant", t.Name, "err", err)
	}
	if rs == nil {
		if rs, err = compilePolicy(n.defaultPolicy(), peers); err != nil || rs == nil {
			n.log.Error("default policy does not compile", "tenant", t.Name, "err", err)
			return
		}
	}
	n.filter.SetRuleSet(t.ID, rs)
	n.policies[t.ID] = appliedPolicy{key: key, rs: rs}
}
