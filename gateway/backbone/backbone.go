// Package backbone is the node-to-node WireGuard device: it carries tenants' packets between
// nodes with a tenant label, and probes each link for its health.
//
// Each node runs a second wireguard-go device, on a UDP socket of its own (Config.ListenPort,
// default 51821), keyed by the node's backbone key, whose peers are the other nodes it needs
// (SetPeers). The device's tun.Device is in memory and owned by the package: no kernel TUN,
// no root.
//
// # Tenant label
//
// In front of each tenant packet the backbone puts an outer IPv4 header (20 bytes, protocol
// 253, source and destination the two nodes' backbone addresses, NodeID.Addr) and a 4-byte
// label, the tenant ID: 24 bytes a packet (Overhead). Label 0 is the backbone's own probes.
// Why this form:
//   - wireguard-go delivers only IP packets whose source lies in the sending peer's
//     AllowedIPs, so an outer IP header is needed anyway; each peer's AllowedIPs is its one
//     backbone address, so the outer source authenticates the sending node for free: a node
//     can only send with its own address, and the receive path accepts a label only from a
//     current peer.
//   - IPv4's is the smallest IP header; a 4-byte label after it (24 B) beats embedding the
//     tenant in an IPv6 address (40 B) and GRE with a key (28 B).
//
// # MTU
//
// With a 1,500-byte underlay: IPv6 1500 − 40 (IPv6) − 8 (UDP) − 32 (WireGuard: 16 header,
// 16 tag) − 24 (label) = 1,396 bytes for the tenant packet; over IPv4 (20-byte header)
// 1,416. The default tenant MTU (Config.MTU) is 1,396, which fits both. Send refuses larger
// packets with ErrTooBig; the caller answers them with ICMP too big and clamps TCP MSS.
//
// # Health
//
// Every Config.ProbeEvery (300 ms) the Device sends each peer a probe (label 0: echo, a
// sequence number and the send time); the peer answers. A probe without an answer after
// Config.ProbeTimeout is missed. A link is Down after Config.DownAfter (3) misses in a row
// and Up again only after Config.UpAfter (3 s) of answers without a miss, so a flapping link
// does not bounce the traffic that depends on it. Links reports RTT (latest, smoothed) and
// loss over the latest 100 probes; Config.OnLinkChange is told of every change of state.
package backbone

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/gateway/internal/udpbind"
	"github.com/popgate/popgate/store"
)

// The defaults of Config.
const (
	DefaultListenPort   = 51821
	DefaultMTU          = 1396 // 1500 − 40 − 8 − 32 − 24: see the package doc
	DefaultProbeEvery   = 300 * time.Millisecond
	DefaultProbeTimeout = 500 * time.Millisecond
	DefaultDownAfter    = 3
	DefaultUpAfter      = 3 * time.Second
)

// Errors callers branch on.
var (
	// ErrTooBig: a packet is larger than the tenant MTU (Device.MTU) and was not sent (the
	// others of the batch were). The caller answers its sender with ICMP too big.
	ErrTooBig = errors.New("backbone: packet larger than the tenant MTU")
	// ErrNoPeer: the destination is not a backbone peer (SetPeers). Nothing was sent.
	ErrNoPeer = errors.New("backbone: no such peer")
	// ErrProbeLabel: tenant 0 is the probes' label. Nothing was sent.
	ErrProbeLabel = errors.New("backbone: tenant 0 is reserved for probes")
	// ErrClosed: the Device is closed.
	ErrClosed = errors.New("backbone: closed")
)

// Config configures a Device. The zero value of each field selects the documented default;
// New calls Validate.
type Config struct {
	// Node is this node's ID (1 to MaxNodeID); its backbone address derives from it. Required.
	Node NodeID
	// PrivateKey is the node's backbone (Curve25519) key. Required.
	PrivateKey store.Key
	// ListenPort is the backbone's UDP port. Default 51821.
	ListenPort int
	// AnyPort binds a port the system picks (Device.Port tells it after Start); ListenPort
	// must then be 0. For tests.
	AnyPort bool
	// MTU is the largest tenant packet Send takes. Default 1396, which crosses a 1,500-byte
	// IPv6 or IPv4 underlay without fragmentation.
	MTU int
	// ProbeEvery is how often each peer is probed. Default 300 ms.
	ProbeEvery time.Duration
	// ProbeTimeout is how long a probe waits for its answer before it counts as missed; it
	// bounds the RTT a link may have and still be Up. Default 500 ms; at most 10 ProbeEvery.
	ProbeTimeout time.Duration
	// DownAfter is how many probes missed in a row make a link Down. Default 3.
	DownAfter int
	// UpAfter is how long a Down link must answer without a miss before it is Up. Default 3 s.
	UpAfter time.Duration
	// Deliver takes the tenant packets that arrive: pkts are consecutive packets of one batch
	// from one node with one tenant label, the inner packets without the outer header. It is
	// called from wireguard-go's receive goroutines, one per peer, so concurrently for
	// different peers; pkts and their bytes are valid only during the call. It must not block
	// for long: it holds up that peer's traffic. Nil drops them.
	Deliver func(from NodeID, tenant uint32, pkts [][]byte)
	// OnLinkChange is told of each change of a link's state, in order, from the prober's
	// goroutine: it must return soon (the probes wait for it) and must not call Close (which
	// waits for the prober). Nil: nobody is told (Links still shows the state).
	OnLinkChange func(LinkState)

	bind conn.Bind // tests; default conn.NewDefaultBind()
}

// Validate fills in the defaults and rejects bad values with a message naming the field.
func (c *Config) Validate() error {
	if !c.Node.valid() {
		return fmt.Errorf("backbone: node id %d is out of range: use 1-%d", c.Node, MaxNodeID)
	}
	if c.PrivateKey.IsZero() {
		return errors.New("backbone: the private key is missing: pass the node's backbone key")
	}
	if c.AnyPort {
		if c.ListenPort != 0 {
			return fmt.Errorf("backbone: listen port %d with AnyPort: set one of the two", c.ListenPort)
		}
	} else {
		if c.ListenPort == 0 {
			c.ListenPort = DefaultListenPort
		}
		if c.ListenPort < 1 || c.ListenPort > 65535 {
			return fmt.Errorf("backbone: listen port %d is out of range: use 1-65535", c.ListenPort)
		}
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 1280 || c.MTU > 9000-Overhead {
		return fmt.Errorf("backbone: tenant mtu %d is out of range: use 1280-%d (1396 suits a 1,500-byte underlay)", c.MTU, 9000-Overhead)
	}
	if c.ProbeEvery == 0 {
		c.ProbeEvery = DefaultProbeEvery
	}
	if c.ProbeEvery < 10*time.Millisecond {
		return fmt.Errorf("backbone: probe interval %v is too short: use 10ms or more (300ms is the default)", c.ProbeEvery)
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = max(DefaultProbeTimeout, c.ProbeEvery)
	}
	if c.ProbeTimeout <= 0 || c.ProbeTimeout > 10*c.ProbeEvery {
		return fmt.Errorf("backbone: probe timeout %v is out of range: use more than 0 and at most 10 probe intervals (%v)", c.ProbeTimeout, 10*c.ProbeEvery)
	}
	if c.DownAfter == 0 {
		c.DownAfter = DefaultDownAfter
	}
	if c.DownAfter < 1 || c.DownAfter > lossWindow/2 {
		return fmt.Errorf("backbone: down after %d misses is out of range: use 1-%d", c.DownAfter, lossWindow/2)
	}
	if c.UpAfter == 0 {
		c.UpAfter = DefaultUpAfter
	}
	if c.UpAfter < 0 {
		return fmt.Errorf("backbone: up after %v is negative: use 0 or more (3s is the default)", c.UpAfter)
	}
	return nil
}

// Peer is another node on the backbone.
type Peer struct {
	Node      NodeID
	Name      string // for logs and Links; optional
	PublicKey store.Key
	Endpoint  netip.AddrPort // where it listens for the backbone
}

// LinkState is the health of the link to one peer.
type LinkState struct {
	Node     NodeID
	Name     string
	Endpoint netip.AddrPort
	State    State
	Since    time.Time // when State was entered (the link's creation while Unknown)
	// RTT is the latest probe's round trip, SmoothedRTT the running average (7/8 old, 1/8
	// new); zero before the first answer.
	RTT, SmoothedRTT time.Duration
	// Lost of Probes: the probes judged among the latest 100 and how many were missed.
	Lost, Probes int
	// MissesInRow counts the latest probes missed in a row.
	MissesInRow int
	// Ups and Downs count the times the link became Up and Down since it was made (its
	// first Up included; a peer removed and added again starts a new link, from zero).
	Ups, Downs uint64
	// Tenant traffic (probes not counted): packets and bytes of the inner packets.
	TxPackets, TxBytes, RxPackets, RxBytes uint64
}

// Loss is the fraction of the judged probes that were missed (0 when none was judged).
func (l LinkState) Loss() float64 {
	if l.Probes == 0 {
		return 0
	}
	return float64(l.Lost) / float64(l.Probes)
}

// link is the state of one peer that outlives a SetPeers keeping it.
type link struct {
	mu sync.Mutex // guards the fields below
	h  *health
	// added is when the link was made; heard whether the peer's probes have arrived since
	// (see initiateHold).
	added time.Time
	heard bool

	txPackets, txBytes, rxPackets, rxBytes atomic.Uint64
}

func newLink(cfg Config, now time.Time) *link {
	return &link{h: newHealth(cfg.ProbeTimeout, cfg.DownAfter, cfg.UpAfter, now), added: now}
}

// peerEntry is one peer in a snapshot: immutable but for its link's state.
type peerEntry struct {
	Peer
	hdr  header // the outer header towards it
	link *link
}

// snapshot is the peer set the packet path reads, swapped whole by SetPeers.
type snapshot struct {
	peers map[NodeID]*peerEntry
}

// Device is a node's backbone device. Send, SetPeers and Links are safe for concurrent use.
type Device struct {
	cfg   Config
	log   *slog.Logger
	pub   store.Key
	tun   *memTun
	dev   *device.Device
	epoch time.Time // probe send times are nanoseconds since epoch

	snap    atomic.Pointer[snapshot]
	scratch sync.Pool // *[][]byte, the receive path's runs
	nudge   chan struct{}
	drops   [numDrops]atomic.Uint64
	port    atomic.Uint32

	mu      sync.Mutex // guards the fields below and serialises IpcSet
	started bool
	closed  bool
	dirty   bool // an IpcSet failed: the device's peers are not known
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// New creates the backbone device with no peers. It holds the device's goroutines (not yet
// its socket) until Close.
func New(cfg Config, log *slog.Logger) (*Device, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := newDevice(cfg, log)
	bind := cfg.bind
	if bind == nil {
		bind = udpbind.NewDefault()
	}
	wglog := log.With("component", "wireguard")
	d.dev = device.NewDevice(d.tun, bind, &device.Logger{
		Verbosef: func(format string, args ...any) {
			if wglog.Enabled(context.Background(), slog.LevelDebug) {
				wglog.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) { wglog.Error(fmt.Sprintf(format, args...)) },
	})
	if err := d.dev.IpcSet(fmt.Sprintf("private_key=%x\nlisten_port=%d\n", cfg.PrivateKey[:], cfg.ListenPort)); err != nil {
		d.dev.Close()
		return nil, fmt.Errorf("backbone: configure device: %w", err)
	}
	return d, nil
}

// newDevice is a Device without its wireguard-go device: the packet path alone.
func newDevice(cfg Config, log *slog.Logger) *Device {
	d := &Device{
		cfg:   cfg,
		log:   log,
		pub:   cfg.PrivateKey.PublicKey(),
		epoch: time.Now(),
		nudge: make(chan struct{}, 1),
	}
	d.snap.Store(&snapshot{peers: map[NodeID]*peerEntry{}})
	d.scratch.New = func() any { s := make([][]byte, 0, conn.IdealBatchSize); return &s }
	d.tun = newMemTun(cfg.MTU+Overhead, d.receive)
	return d
}

// Start binds the socket and starts probing. The probes stop when ctx ends or at Close.
func (d *Device) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.started {
		return errors.New("backbone: started twice")
	}
	if err := d.dev.Up(); err != nil {
		return fmt.Errorf("backbone: bring the device up on UDP port %d: %w", d.cfg.ListenPort, err)
	}
	if p, err := d.boundPort(); err != nil {
		return err
	} else {
		d.port.Store(uint32(p))
	}
	d.started = true
	ctx, d.stop = context.WithCancel(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.probeLoop(ctx)
	}()
	return nil
}

func (d *Device) boundPort() (int, error) {
	s, err := d.dev.IpcGet()
	if err != nil {
		return 0, fmt.Errorf("backbone: read the device's port: %w", err)
	}
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "listen_port="); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("backbone: the device has no port after Up")
}

// Port is the UDP port the device listens on, once started.
func (d *Device) Port() int { return int(d.port.Load()) }

// MTU is the largest tenant packet Send takes.
func (d *Device) MTU() int { return d.cfg.MTU }

// Close stops the prober, then the device (its socket and goroutines); senders blocked on a
// full queue return ErrClosed. It returns when every goroutine of the Device has ended.
// Idempotent.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	if d.stop != nil {
		d.stop()
	}
	d.mu.Unlock()
	d.wg.Wait()
	d.dev.Close() // closes the tun and the socket, waits for wireguard-go's goroutines
	return nil
}

// SetPeers makes the device's peers exactly peers. A node no longer listed is dropped at once
// (nothing more from it is delivered); a node whose key and endpoint are unchanged keeps its
// session and its link's history.
func (d *Device) SetPeers(peers []Peer) error {
	if err := d.checkPeers(peers); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	old := d.snap.Load().peers
	next := &snapshot{peers: make(map[NodeID]*peerEntry, len(peers))}
	now := time.Now()
	var b strings.Builder
	if d.dirty {
		b.WriteString("replace_peers=true\n")
	}
	for _, p := range peers {
		e := &peerEntry{Peer: p, hdr: makeHeader(d.cfg.Node, p.Node)}
		o := old[p.Node]
		kept := o != nil && o.PublicKey == p.PublicKey
		if kept {
			e.link = o.link
		} else {
			e.link = newLink(d.cfg, now)
		}
		switch {
		case d.dirty || !kept:
			writePeer(&b, p)
		case o.Endpoint != p.Endpoint:
			fmt.Fprintf(&b, "public_key=%x\nupdate_only=true\nendpoint=%s\n", p.PublicKey[:], p.Endpoint)
		}
		next.peers[p.Node] = e
	}
	var removes strings.Builder
	for id, o := range old {
		if n := next.peers[id]; n == nil || n.PublicKey != o.PublicKey {
			fmt.Fprintf(&removes, "public_key=%x\nremove=true\n", o.PublicKey[:])
		}
	}
	// Swap first: from here on nothing from a removed node is delivered, even a packet
	// wireguard-go decrypted before the removal below.
	d.snap.Store(next)
	conf := b.String()
	if !d.dirty {
		conf = removes.String() + conf
	}
	if conf == "" {
		return nil
	}
	if err := d.dev.IpcSet(conf); err != nil {
		d.dirty = true
		return fmt.Errorf("backbone: set peers: %w", err)
	}
	d.dirty = false
	return nil
}

func writePeer(b *strings.Builder, p Peer) {
	fmt.Fprintf(b, "public_key=%x\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s/32\n",
		p.PublicKey[:], p.Endpoint, p.Node.Addr())
}

func (d *Device) checkPeers(peers []Peer) error {
	ids := make(map[NodeID]bool, len(peers))
	keys := make(map[store.Key]bool, len(peers))
	for _, p := range peers {
		switch {
		case !p.Node.valid():
			return fmt.Errorf("backbone: peer %q: node id %d is out of range: use 1-%d", p.Name, p.Node, MaxNodeID)
		case p.Node == d.cfg.Node:
			return fmt.Errorf("backbone: peer %q has this node's id %d: a node is not its own peer", p.Name, p.Node)
		case ids[p.Node]:
			return fmt.Errorf("backbone: node id %d is listed twice: list each node once", p.Node)
		case p.PublicKey.IsZero():
			return fmt.Errorf("backbone: peer %v (%q) has no public key", p.Node, p.Name)
		case p.PublicKey == d.pub:
			return fmt.Errorf("backbone: peer %v (%q) has this node's public key", p.Node, p.Name)
		case keys[p.PublicKey]:
			return fmt.Errorf("backbone: peer %v (%q): its public key is another peer's too: each node has its own", p.Node, p.Name)
		case !p.Endpoint.IsValid() || p.Endpoint.Port() == 0:
			return fmt.Errorf("backbone: peer %v (%q) has no endpoint: give the address and port it listens on", p.Node, p.Name)
		}
		ids[p.Node], keys[p.PublicKey] = true, true
	}
	return nil
}

// Send queues pkts (tenant packets, IPv4 or IPv6) towards node to with tenant's label, in
// order, blocking while the device's queue is full. It copies them: the caller may reuse pkts
// when it returns. Packets larger than MTU are not sent: Send sends the others and returns
// ErrTooBig. Empty packets are skipped. It allocates nothing.
//
// Use the links that are Up: tenant packets that open a new link from both ends at once
// make both start a handshake, which wireguard-go resolves only after 5 s (the probes avoid
// this, see initiateHold).
func (d *Device) Send(to NodeID, tenant uint32, pkts [][]byte) error {
	if tenant == ProbeTenant {
		return ErrProbeLabel
	}
	e := d.snap.Load().peers[to]
	if e == nil {
		return ErrNoPeer
	}
	var ps [sendBatch]*packet
	tooBig := false
	var n, bytes uint64
	for len(pkts) > 0 {
		k := 0
		for ; len(pkts) > 0 && k < len(ps); pkts = pkts[1:] {
			pkt := pkts[0]
			if len(pkt) > d.cfg.MTU {
				tooBig = true
				continue
			}
			if len(pkt) == 0 {
				continue
			}
			p := d.tun.get()
			p.b = p.b[:Overhead+len(pkt)]
			e.hdr.put(p.b, tenant, len(pkt))
			copy(p.b[Overhead:], pkt)
			ps[k] = p
			k++
			bytes += uint64(len(pkt))
		}
		if !d.tun.push(ps[:k]) {
			return ErrClosed
		}
		n += uint64(k)
		clear(ps[:k])
	}
	e.link.txPackets.Add(n)
	e.link.txBytes.Add(bytes)
	if tooBig {
		return ErrTooBig
	}
	return nil
}

// receive is the receive path: wireguard-go wrote bufs (decrypted, their outer source in the
// sending peer's AllowedIPs). Tenant packets go to Deliver in runs of one node and tenant;
// probes are answered or recorded.
func (d *Device) receive(bufs [][]byte, offset int) {
	snap := d.snap.Load()
	sp := d.scratch.Get().(*[][]byte)
	run := (*sp)[:0]
	var runFrom *peerEntry
	var runTenant uint32
	for _, b := range bufs {
		m, ok := decode(b[offset:])
		if !ok {
			d.drops[DropMalformed].Add(1)
			continue
		}
		e := snap.peers[m.from]
		if e == nil {
			d.drops[DropNotPeer].Add(1)
			continue
		}
		if m.to != d.cfg.Node {
			d.drops[DropNotForUs].Add(1)
			continue
		}
		if m.tenant == ProbeTenant {
			d.probeIn(e, m.payload)
			continue
		}
		if len(m.payload) == 0 {
			d.drops[DropNoTenant].Add(1)
			continue
		}
		if len(run) > 0 && (e != runFrom || m.tenant != runTenant) {
			d.deliver(runFrom, runTenant, run)
			run = run[:0]
		}
		runFrom, runTenant = e, m.tenant
		run = append(run, m.payload)
	}
	if len(run) > 0 {
		d.deliver(runFrom, runTenant, run)
	}
	clear(run)
	*sp = run[:0]
	d.scratch.Put(sp)
}

func (d *Device) deliver(from *peerEntry, tenant uint32, pkts [][]byte) {
	var bytes uint64
	for _, p := range pkts {
		bytes += uint64(len(p))
	}
	from.link.rxPackets.Add(uint64(len(pkts)))
	from.link.rxBytes.Add(bytes)
	if d.cfg.Deliver != nil {
		d.cfg.Deliver(from.Node, tenant, pkts)
	}
}

// DropCounts returns the receive path's drops by reason (Drop.String).
func (d *Device) DropCounts() map[string]uint64 {
	m := make(map[string]uint64, numDrops)
	for r := Drop(0); r < numDrops; r++ {
		m[r.String()] = d.drops[r].Load()
	}
	return m
}

// Links returns the state of every peer's link, by node ID.
func (d *Device) Links() []LinkState {
	snap := d.snap.Load()
	out := make([]LinkState, 0, len(snap.peers))
	for _, e := range snap.peers {
		out = append(out, e.state())
	}
	slices.SortFunc(out, func(a, b LinkState) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

func (e *peerEntry) state() LinkState {
	l := e.link
	l.mu.Lock()
	h := l.h
	s := LinkState{
		Node: e.Node, Name: e.Name, Endpoint: e.Endpoint,
		State: h.state, Since: h.since, RTT: h.rtt, SmoothedRTT: h.srtt, MissesInRow: h.misses,
		Ups: h.ups, Downs: h.downs,
	}
	s.Lost, s.Probes = h.loss()
	l.mu.Unlock()
	s.TxPackets, s.TxBytes = l.txPackets.Load(), l.txBytes.Load()
	s.RxPackets, s.RxBytes = l.rxPackets.Load(), l.rxBytes.Load()
	return s
}
