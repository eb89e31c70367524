package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/backbone"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/resolver"
	"github.com/popgate/popgate/store"
)

// tenantDevice is one tenant's wireguard-go device: its own cryptokey routing table, so tenants
// may route the same private prefixes to their own sites. All devices share the node's key and
// UDP socket (see wgmux.Mux).
//
// A device holds only the tenant's active peers: wireguard-go costs ~25 KiB and two goroutines
// per peer and holds at most 65,536, while a PoP serves far more registered peers. A peer is
// materialised when its handshake initiation arrives (the Mux decrypts the initiator's static key
// first) and trimmed after it has been idle past the session lifetime.
type tenantDevice struct {
	id  int64
	tun *tunDevice
	dev *device.Device

	mu sync.Mutex // guards peers and serialises IpcSet
	// peers is what the device holds: public key → allowed prefixes and when it was added.
	peers map[store.Key]devicePeer

	// buffers is what wireguard-go holds as buffers for this device, however idle (see
	// Node.DeviceBufferBytes).
	buffers uint64
}

type devicePeer struct {
	allowed []netip.Prefix
	added   time.Time
}

func (td *tenantDevice) close() { td.dev.Close() }

// appliedPolicy remembers what a tenant's rule set was compiled from, so an unchanged policy
// is not compiled again.
type appliedPolicy struct {
	key [sha256.Size]byte // policyKey
	rs  *firewall.RuleSet
}

// ErrClosed is returned by Apply on a closed node.
var ErrClosed = errors.New("the node is closed")

// Apply makes the data plane match d: devices, the packet path's snapshot, rule sets and flow
// bounds. Peers that did not change are not touched, so their sessions and flows continue.
// It reads nothing from the store. Peers expire by Config.Clock: Apply judges them now,
// and the node applies d again by itself when the next one expires. The node keeps d for that:
// the caller must not modify it afterwards. A d that does not validate, or is for another
// overlay, changes nothing; after Close, Apply returns ErrClosed and changes nothing. When
// applying fails halfway, the node serves what it got to and Report says why; the next Apply
// tries again.
func (n *Node) Apply(ctx context.Context, d *plane.Desired) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Overlay != n.ov {
		return fmt.Errorf("%w: it is for the overlay %s, %s and this node serves %s, %s: the node belongs to another installation",
			plane.ErrInvalid, d.Overlay.V4, d.Overlay.V6, n.ov.V4, n.ov.V6)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed() {
		return ErrClosed
	}
	n.desired = d
	err := n.applyLocked(d, n.cfg.now())
	n.noteApplied(d.Generation, err)
	return err
}

// applyAtExpiry applies the last desired state again when a peer's expiry has come.
func (n *Node) applyAtExpiry() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed() || n.desired == nil {
		return
	}
	err := n.applyLocked(n.desired, n.cfg.now())
	if err != nil {
		n.log.Error("apply the desired state at a peer's expiry", "generation", n.desired.Generation, "err", err)
	}
	n.noteApplied(n.desired.Generation, err)
}

// noteApplied records the outcome of applying generation gen, for Report.
func (n *Node) noteApplied(gen int64, err error) {
	st := *n.applied.Load()
	if err != nil {
		st.err, st.failed = err.Error(), gen
	} else {
		st.gen, st.err, st.failed = gen, "", 0
	}
	n.applied.Store(&st)
}

// zonesKey is what the resolver's zones were built from: a generation and how many peers
// were served.
type zonesKey struct {
	gen    int64
	served int
}

// applyState is what Report says of the last Apply.
type applyState struct {
	gen    int64  // generation applied in full
	err    string // why the last Apply failed, "" when it did not
	failed int64  // its generation
}

func (n *Node) closed() bool {
	select {
	case <-n.closing:
		return true
	default:
		return false
	}
}

// applyLocked makes the data plane match d at now. Must hold n.mu.
func (n *Node) applyLocked(dd *plane.Desired, now time.Time) error {
	d := desired{tenants: dd.Tenants, peers: dd.Peers, routes: dd.Routes, now: now, addrID: plane.AddrID(dd.Self)}
	if !n.cfg.BackboneKey.IsZero() {
		d.self, d.selfName, d.nodes, d.peerNodes = backbone.NodeID(dd.Self), n.cfg.NodeName, dd.Nodes, dd.PeerNodes
	}
	// An expired peer is a disabled one (plane.Peer.Served); the next expiry applies again.
	n.scheduleExpiryLocked(dd, now)
	if n.checks != nil {
		n.checks.Set(dd.Checks)
	}
	// The other nodes check this node's endpoint with handshakes from their backbone keys:
	// the Mux answers those itself.
	monitors := make([]store.Key, 0, len(dd.Nodes))
	for _, nd := range dd.Nodes {
		monitors = append(monitors, nd.BackboneKey)
	}
	if n.mux != nil {
		n.mux.SetMonitors(monitors)
	}
	byTenant := peersByTenant(d.peers)
	enabled := map[int64]int{}
	served := 0
	for i := range d.peers {
		if d.peers[i].Served(now) {
			enabled[d.peers[i].Tenant]++
			served++
		}
	}
	// The resolver's zones change with the store (the generation) and with expiries (the
	// peers served); not when only where peers are changed, which a client moving to
	// another PoP publishes to every node.
	if zk := (zonesKey{dd.Generation, served}); n.dns != nil && zk != n.zonesKey {
		n.dns.SetZones(resolver.BuildZones(dd, func(p *plane.Peer) bool { return p.Served(now) }))
		n.zonesKey = zk
	}
	n.setBlocklistsLocked(dd.Tenants)
	// Devices first, so the snapshot can point at their packet paths.
	d.tuns = map[int64]*tunDevice{}
	d.devs = map[int64]*tenantDevice{}
	for _, t := range d.tenants {
		if enabled[t.ID] == 0 {
			continue
		}
		td := n.devs[t.ID]
		if td == nil {
			var err error
			if td, err = n.newTenantDevice(t.ID); err != nil {
				return fmt.Errorf("apply: tenant %s: %w", t.Name, err)
			}
			n.devs[t.ID] = td
		}
		d.tuns[t.ID] = td.tun
		d.devs[t.ID] = td
	}
	// Policy before traffic: a new tenant's first packet meets its rule set.
	live := map[int64]bool{}
	for _, t := range d.tenants {
		live[t.ID] = true
		n.applyPolicyLocked(t, byTenant[t.ID], dd.Overlay, now)
		perPeer, total := t.FlowLimits()
		n.filter.SetLimits(t.ID, total, perPeer)
	}
	tenantNames := make(map[int64]string, len(d.tenants))
	for _, t := range d.tenants {
		tenantNames[t.ID] = t.Name
	}
	d.counters = func(p *plane.Peer) *peerCounters {
		n.ctrMu.Lock()
		defer n.ctrMu.Unlock()
		c := n.counters[p.PublicKey]
		if c == nil {
			c = &peerCounters{tenantID: p.Tenant}
			n.counters[p.PublicKey] = c
		}
		c.name = p.Name
		if t := tenantNames[p.Tenant]; t != "" {
			c.tenant = t
		}
		return c
	}
	// The backbone's peers before the snapshot that routes over them.
	bbErr := n.applyBackboneLocked(context.Background(), dd)
	snap := newSnapshot(d, n.ov)
	n.snap.Store(snap)
	if n.dns != nil {
		n.dns.SetNodeAddrs(snap.nodeAddr[0], snap.nodeAddr[1])
	}
	if n.bb.dev.Load() != nil {
		// The routes of the new snapshot take note of the exits they use now, so that the
		// next link change is told as a failover of theirs.
		n.rebuildBB()
	}

	left := map[store.Key]string{} // endpoints of connected peers that leave a device
	leave := func(tenantID int64, gone map[store.Key]peerStats) {
		for k, st := range gone {
			if st.endpoint != "" && st.online(now) {
				left[k] = st.endpoint
			}
		}
		n.leftDevice(tenantID, gone)
	}
	for id, td := range n.devs {
		if d.tuns[id] == nil {
			td.closeAndLeave(leave)
			delete(n.devs, id)
			continue
		}
		if err := td.sync(snap, leave); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	n.setIdle(len(n.devs) == 0)
	n.resumePeersLocked(snap, left, now)
	n.forgetLocked(dd)
	for id := range n.policies {
		if !live[id] {
			n.filter.SetRuleSet(id, nil)
			delete(n.policies, id)
		}
	}
	return bbErr
}

// setBlocklistsLocked hands the tenants' blocklists to the resolver's loader. Must hold n.mu.
func (n *Node) setBlocklistsLocked(tenants []plane.Tenant) {
	if n.blocks != nil {
		n.blocks.set(tenants)
		return
	}
	if n.dns != nil && slices.ContainsFunc(tenants, func(t plane.Tenant) bool { return len(t.DNS.Blocklists) > 0 }) && !n.blocksWarned.Swap(true) {
		n.log.Warn("tenants have DNS blocklists, but this node has no source of their contents (Config.Blobs): they are not enforced")
	}
}

// peersByTenant groups peers by tenant without copying them: the controller lists them by
// tenant, so each tenant's peers are one run of the slice, and the groups share its array.
func peersByTenant(peers []plane.Peer) map[int64][]plane.Peer {
	out := map[int64][]plane.Peer{}
	for i := 0; i < len(peers); {
		id := peers[i].Tenant
		j := i + 1
		for j < len(peers) && peers[j].Tenant == id {
			j++
		}
		if prev, ok := out[id]; ok {
			// Another run of the same tenant: prev is capped, so this copies, leaving peers
			// as it is.
			out[id] = append(prev, peers[i:j]...)
		} else {
			out[id] = peers[i:j:j]
		}
		i = j
	}
	return out
}

// scheduleExpiryLocked arms a timer that applies d again when the next peer served at now
// expires; it replaces the timer of the previous apply. The timer's function is tracked by
// n.wg from the moment it is armed. Must hold n.mu.
func (n *Node) scheduleExpiryLocked(d *plane.Desired, now time.Time) {
	n.stopExpiryLocked()
	var next time.Time
	for i := range d.Peers {
		p := &d.Peers[i]
		if p.Enabled && p.ExpiresAt.After(now) && (next.IsZero() || p.ExpiresAt.Before(next)) {
			next = p.ExpiresAt
		}
	}
	if next.IsZero() {
		return
	}
	n.wg.Add(1)
	n.expiry = time.AfterFunc(next.Sub(now)+10*time.Millisecond, func() {
		defer n.wg.Done()
		n.applyAtExpiry()
	})
}

// stopExpiryLocked stops the expiry timer. A timer that already fired finishes on its own
// (it finds the node closed, or applies the current state). Must hold n.mu.
func (n *Node) stopExpiryLocked() {
	if n.expiry != nil && n.expiry.Stop() {
		n.wg.Done()
	}
	n.expiry = nil
}

// newTenantDevice creates and brings up tenant id's device on the shared socket.
func (n *Node) newTenantDevice(id int64) (*tenantDevice, error) {
	name := fmt.Sprintf("%s.%d", n.cfg.Interface, id)
	tun := newTunDevice(name, n.cfg.MTU, id, &n.snap, n.filter)
	tun.drops = n.tenantDropsOf(id)
	tun.setExits(n.exitLocal, n.exit4, n.exit6)
	tun.bb, tun.noExit, tun.dns = &n.bb, n.cfg.NoExit, n.dns
	if n.kexit != nil {
		tun.setKernelExit(n.kexit, &n.drops)
	}
	wglog := n.log.With("component", "wireguard", "tenant_id", id)
	bind := n.mux.Bind(id)
	if n.kexit == nil {
		tun.flight = newInFlight(inFlightStale)
		bind.OnSent(tun.flight.sent)
	}
	dev := device.NewDevice(tun, bind, &device.Logger{
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
	// A receive batch per ReceiveFunc (RoutineReceiveIncoming) and a read batch
	// (RoutineReadFromTUN) of MaxMessageSize buffers each, held from the start.
	buffers := uint64(bind.Receivers()+1) * uint64(dev.BatchSize()) * device.MaxMessageSize
	return &tenantDevice{id: id, tun: tun, dev: dev, peers: map[store.Key]devicePeer{}, buffers: buffers}, nil
}

// DeviceBufferBytes is the heap the tenants' wireguard-go devices hold as packet buffers: 24 MiB
// a device with IPv4 and IPv6 sockets (a batch of 128 buffers of 64 KiB per receive goroutine,
// one for reading its TUN), allocated when it starts. Few are ever
// written past their first page, so most of it is never resident, but the garbage collector
// counts all of it as live heap (see cmd/popgate's gcPacer).
func (n *Node) DeviceBufferBytes() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var sum uint64
	for _, td := range n.devs {
		sum += td.buffers
	}
	return sum
}

// sync brings the peers the device holds in line with the snapshot: peers no longer enabled
// in this tenant leave, and held peers whose prefixes changed are updated, in one IpcSet.
// Peers not held stay out until they handshake (see materialise). leave is given the
// leaving peers' last state, under td.mu.
func (td *tenantDevice) sync(snap *snapshot, leave func(int64, map[store.Key]peerStats)) error {
	td.mu.Lock()
	defer td.mu.Unlock()
	var b strings.Builder
	var leaving []store.Key
	for k, dp := range td.peers {
		e := snap.byKey[k]
		switch {
		case e == nil || e.tenantID != td.id:
			fmt.Fprintf(&b, "public_key=%x\nremove=true\n", k[:])
			leaving = append(leaving, k)
		case !slices.Equal(dp.allowed, e.allowed):
			writePeer(&b, e)
			td.peers[k] = devicePeer{allowed: e.allowed, added: dp.added}
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if len(leaving) > 0 {
		leave(td.id, td.statesLocked(leaving))
	}
	for _, k := range leaving {
		delete(td.peers, k)
	}
	return td.dev.IpcSet(b.String())
}

// closeAndLeave closes the device, giving leave the last state of every peer it held first.
func (td *tenantDevice) closeAndLeave(leave func(int64, map[store.Key]peerStats)) {
	td.mu.Lock()
	keys := make([]store.Key, 0, len(td.peers))
	for k := range td.peers {
		keys = append(keys, k)
	}
	leave(td.id, td.statesLocked(keys))
	clear(td.peers)
	td.mu.Unlock()
	td.close()
}

// statesLocked returns the device's state of those of keys it holds. Must hold td.mu.
func (td *tenantDevice) statesLocked(keys []store.Key) map[store.Key]peerStats {
	out := make(map[store.Key]peerStats, len(keys))
	text, err := td.dev.IpcGet()
	if err != nil {
		return out // a faster resume and the bytes of this stint are lost
	}
	stats := map[store.Key]peerStats{}
	parsePeerStats(text, stats)
	for _, k := range keys {
		if st, ok := stats[k]; ok {
			out[k] = st
		}
	}
	return out
}

// resumeWindow is how long popgate remembers where a peer that was disabled while connected
// was connected from (see resumePeersLocked).
const resumeWindow = time.Hour

// resumePoint is where a peer disabled while connected was connected from, and when it left.
type resumePoint struct {
	endpoint string
	left     time.Time
}

// resumePeersLocked remembers where the peers in left (connected when they left their
// device) were connected from, and brings back the remembered peers that are enabled again
// (see tenantDevice.resume). Memories older than resumeWindow are dropped. Must hold n.mu.
func (n *Node) resumePeersLocked(snap *snapshot, left map[store.Key]string, now time.Time) {
	for k, ep := range left {
		if snap.byKey[k] == nil {
			if n.resume == nil {
				n.resume = map[store.Key]resumePoint{}
			}
			n.resume[k] = resumePoint{endpoint: ep, left: now}
		}
	}
	for k, rp := range n.resume {
		e := snap.byKey[k]
		switch {
		case now.Sub(rp.left) > resumeWindow:
			delete(n.resume, k)
		case e != nil:
			delete(n.resume, k)
			td := n.devs[e.tenantID]
			if td == nil {
				continue
			}
			if err := td.resume(e, rp.endpoint, now); err != nil {
				n.log.Warn("cannot start a handshake with a peer enabled again; it reconnects at its next handshake",
					"tenant_id", e.tenantID, "endpoint", rp.endpoint, "err", err)
			}
		}
	}
}

func writePeer(b *strings.Builder, e *peerEntry) {
	fmt.Fprintf(b, "public_key=%x\nreplace_allowed_ips=true\n", e.publicKey[:])
	for _, p := range e.allowed {
		fmt.Fprintf(b, "allowed_ip=%s\n", p)
	}
}

// materialise puts an enabled peer into its tenant's device (if it is not there yet), so the
// handshake initiation that named it can be answered.
func (td *tenantDevice) materialise(e *peerEntry, now time.Time) error {
	td.mu.Lock()
	defer td.mu.Unlock()
	if _, ok := td.peers[e.publicKey]; ok {
		return nil
	}
	var b strings.Builder
	writePeer(&b, e)
	if err := td.dev.IpcSet(b.String()); err != nil {
		return err
	}
	td.peers[e.publicKey] = devicePeer{allowed: e.allowed, added: now}
	return nil
}

// resumeKeepalive is the persistent keepalive interval (seconds) resume turns on for a moment:
// any non-zero value sends one keepalive at once.
const resumeKeepalive = 25

// resume puts a peer that is enabled again back into the device with the endpoint it was
// connected from when it was disabled, and makes the device start a handshake there. The
// client, whose session the device dropped, answers it as the responder, so traffic
// resumes at once instead of at the client's own next handshake, which a stock client
// starts only 15 s after its packets go unanswered (10 s keepalive timeout + 5 s rekey
// timeout). wireguard-go has no "handshake now" operation: turning a persistent keepalive
// on sends a keepalive at once, which without a session starts a handshake; it is turned
// off again right away, so the device sends nothing more of its own accord. A peer that is
// held already (it handshook first) is left alone. On error the peer is taken out again, so
// it comes back the usual way, through materialise.
func (td *tenantDevice) resume(e *peerEntry, endpoint string, now time.Time) error {
	td.mu.Lock()
	defer td.mu.Unlock()
	k := e.publicKey
	if _, ok := td.peers[k]; ok {
		return nil
	}
	var b strings.Builder
	writePeer(&b, e)
	fmt.Fprintf(&b, "endpoint=%s\npersistent_keepalive_interval=%d\n", endpoint, resumeKeepalive)
	err := td.dev.IpcSet(b.String())
	if err == nil {
		err = td.dev.IpcSet(fmt.Sprintf("public_key=%x\npersistent_keepalive_interval=0\n", k[:]))
	}
	if err != nil {
		if rerr := td.dev.IpcSet(fmt.Sprintf("public_key=%x\nremove=true\n", k[:])); rerr != nil {
			// Held, so that sync removes it when it is disabled again.
			td.peers[k] = devicePeer{allowed: e.allowed, added: now}
		}
		return err
	}
	td.peers[k] = devicePeer{allowed: e.allowed, added: now}
	return nil
}

// trim removes peers that have not completed a handshake within idle (and were added longer
// ago than that): their sessions are dead, and they come back through materialise. leave is
// given the removed peers' last state (for status and counters), under td.mu; trim returns
// how many it removed.
func (td *tenantDevice) trim(now time.Time, idle time.Duration, leave func(int64, map[store.Key]peerStats)) (int, error) {
	td.mu.Lock()
	defer td.mu.Unlock()
	// Read under mu: what leave adds to the counters must be what Report last read.
	text, err := td.dev.IpcGet()
	if err != nil {
		return 0, err
	}
	stats := map[store.Key]peerStats{}
	parsePeerStats(text, stats)
	var b strings.Builder
	gone := map[store.Key]peerStats{}
	for k, dp := range td.peers {
		st := stats[k]
		last := st.lastHandshake
		if last.IsZero() {
			last = dp.added
		}
		if now.Sub(last) < idle || now.Sub(dp.added) < idle {
			continue
		}
		fmt.Fprintf(&b, "public_key=%x\nremove=true\n", k[:])
		delete(td.peers, k)
		gone[k] = st
	}
	if b.Len() == 0 {
		return 0, nil
	}
	leave(td.id, gone)
	return len(gone), td.dev.IpcSet(b.String())
}

// policyKey identifies what a tenant's rule set is compiled from: the policy text and what of
// each peer plane.PolicyView passes on. A hash, because the key is kept for every tenant and a
// every apply computes it for every tenant: the text would be ≈ 100 bytes a peer.
func policyKey(text string, peers []plane.Peer) [sha256.Size]byte {
	h := sha256.New()
	io.WriteString(h, text)
	// Names, groups and sites never hold control characters, so these separators cannot
	// be forged by a name.
	b := []byte{0}
	for i := range peers {
		p := &peers[i]
		b = append(b, p.Name...)
		b = append(b, 0)
		b = p.IPv4.AppendTo(b)
		b = append(b, 0)
		b = p.IPv6.AppendTo(b)
		b = append(b, 0)
		for _, g := range p.Groups {
			b = append(b, g...)
			b = append(b, 1)
		}
		b = append(b, 0)
		b = append(b, p.Site...)
		b = append(b, 0)
		for _, pf := range p.SitePrefixes {
			b = pf.AppendTo(b)
			b = append(b, 1)
		}
		b = append(b, '\n')
		h.Write(b)
		b = b[:0]
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func compileView(text string, view *firewall.View) (*firewall.RuleSet, error) {
	pol, err := firewall.Parse(text)
	if err != nil {
		return nil, err
	}
	return firewall.Compile(pol, view)
}

// applyPolicyLocked compiles and installs tenant t's rule set when its policy or its peers
// changed. A policy that no longer compiles (say, it names a removed peer) keeps
// working with the unresolved names matching nothing; one that does not parse at all falls back
// to the default policy. Both are logged.
func (n *Node) applyPolicyLocked(t plane.Tenant, peers []plane.Peer, ov plane.Overlay, now time.Time) {
	text := t.Policy
	if text == "" {
		text = plane.DefaultPolicy(ov)
	}
	key := policyKey(text, peers)
	if prev, ok := n.policies[t.ID]; ok && prev.key == key {
		return
	}
	view := plane.PolicyView(peers)
	rs, err := compileView(text, &view)
	if err != nil {
		n.log.Warn("policy of tenant has problems", "tenant", t.Name, "err", err)
	}
	if rs == nil {
		if rs, err = compileView(plane.DefaultPolicy(ov), &view); err != nil || rs == nil {
			n.log.Error("default policy does not compile", "tenant", t.Name, "err", err)
			return
		}
	}
	// The rules that did not change go on counting (a peer added or removed recompiles).
	rs.CarryHits(n.policies[t.ID].rs, now)
	n.filter.SetRuleSet(t.ID, rs)
	n.policies[t.ID] = appliedPolicy{key: key, rs: rs}
}
