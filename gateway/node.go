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
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/backbone"
	"github.com/popgate/popgate/gateway/checks"
	"github.com/popgate/popgate/gateway/internal/udpbind"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/resolver"
	"github.com/popgate/popgate/gateway/wgmux"
	"github.com/popgate/popgate/netstack"
	"github.com/popgate/popgate/store"
)

// Node is a node's data plane: the devices that terminate WireGuard for every tenant on one
// UDP port, the packet path and the exits. Apply tells it what to serve, Report what it does.
type Node struct {
	cfg       Config
	log       *slog.Logger
	ov        plane.Overlay
	key       store.Key // the node's private key
	startedAt time.Time

	snap   atomic.Pointer[snapshot]
	filter *firewall.Filter
	mux    *wgmux.Mux
	holder *wgmux.Bind        // keeps the shared UDP socket open while no tenant has a device
	exit   *netstack.Exit     // in-tunnel services, and the exit in userspace mode
	dns    *resolver.Resolver // the overlay addresses' DNS over UDP
	// blocks gives the resolver the tenants' blocklists; nil before Start and without
	// Config.Blobs (blocksWarned: a desired state with blocklists was logged then).
	blocks       *blocklists
	blocksWarned atomic.Bool
	// zonesKey is what the resolver's zones were last built from; guarded by mu.
	zonesKey zonesKey
	kexit    *kernelExit // the exit in kernel mode; nil otherwise
	// idle: no tenant has a device, so no device's goroutine reads the shared socket, and
	// the holder's do (readWhileIdle); idleWake tells them it became so.
	idle     atomic.Bool
	idleWake chan struct{}
	// exits are where the tenants' packet paths send traffic (see tunDevice.setExits).
	exitLocal, exit4, exit6 exitWriter
	drops                   [numDropReasons]atomic.Uint64 // deliveries towards peers that found none
	// bb is the backbone, from the first desired state with a Self (applyBackboneLocked);
	// bbCtx is the node's life for it, bbWarned whether a backbone without a key was logged.
	bb       bbPath
	bbCtx    context.Context
	bbWarned atomic.Bool
	// checks runs the checks of the desired state (Desired.Checks) on goroutines of its
	// own; nil before Start.
	checks *checks.Runner

	uapi     net.Listener
	uapiPath string
	// uapiConns are the UAPI socket's open connections, closed by Close.
	uapiMu    sync.Mutex
	uapiConns map[net.Conn]struct{}

	// mu serialises applies and guards devs, policies, desired and expiry.
	mu       sync.Mutex
	devs     map[int64]*tenantDevice
	policies map[int64]appliedPolicy
	// desired is the state applied last; the expiry timer applies it again.
	desired *plane.Desired
	expiry  *time.Timer // applies desired at the next peer expiry; tracked by wg
	// resume remembers where peers disabled while connected were connected from, to start
	// a handshake there when they are enabled again (see resumePeersLocked).
	resume map[store.Key]resumePoint
	// applied is the outcome of the last apply, for Report.
	applied atomic.Pointer[applyState]

	// lastSeen keeps the endpoint and last handshake of peers that left their device
	// (trimmed while idle, or disabled); their bytes are in their counters.
	lastSeenMu sync.Mutex
	lastSeen   map[store.Key]peerStats

	// ctrMu guards counters, retired and tenantDrops: the counters that outlive snapshots
	// and devices, so that none goes back while the node runs. Taken after a device's mu.
	ctrMu sync.Mutex
	// counters holds the counters of every peer of the desired state that was ever served;
	// apply adds them and, for peers that left the desired state, adds them to retired.
	counters map[store.Key]*peerCounters
	// retired is what the peers that left the desired state carried, by tenant.
	retired map[int64]*plane.Traffic
	// tenantDrops are the packet path's drops of each tenant of the desired state, kept
	// across its devices (a tenant without an enabled peer has none).
	tenantDrops map[int64]*[numDropReasons]atomic.Uint64

	// arrived wakes arrivalLoop; nil without Config.PeerArrived. arrivals counts the
	// handshakes here of peers placed elsewhere.
	arrived  chan struct{}
	arrivals atomic.Uint64

	closing   chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns a node for cfg. Start brings the devices up; Apply gives them peers.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PrivateKey.IsZero() {
		return nil, errors.New("gateway: Config.PrivateKey is zero: pass the node's key (store.NodePrivateKey)")
	}
	if err := cfg.Overlay.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: Config.Overlay: %w", err)
	}
	n := &Node{cfg: cfg, log: log, ov: cfg.Overlay, key: cfg.PrivateKey, devs: map[int64]*tenantDevice{}, policies: map[int64]appliedPolicy{},
		closing: make(chan struct{}), idleWake: make(chan struct{}, 2), lastSeen: map[store.Key]peerStats{}, counters: map[store.Key]*peerCounters{},
		retired: map[int64]*plane.Traffic{}, tenantDrops: map[int64]*[numDropReasons]atomic.Uint64{}}
	n.applied.Store(&applyState{})
	if n.cfg.NodeName == "" {
		n.cfg.NodeName, _ = os.Hostname()
	}
	if len(n.cfg.DNSUpstreams) == 0 {
		n.cfg.DNSUpstreams = resolvConfNameservers("/etc/resolv.conf")
	}
	return n, nil
}

// Start creates the exits and the shared UDP socket and starts serving: what, Apply says.
// On error the node must still be closed.
func (n *Node) Start(ctx context.Context) error {
	n.startedAt = time.Now()
	n.bbCtx = ctx
	var err error
	if n.filter, err = firewall.New(firewall.Config{}, n.log.With("component", "firewall")); err != nil {
		return err
	}
	n.snap.Store(newSnapshot(desired{}, n.ov))

	// The socket first: with AnyPort, the port it gets is the one the kernel exit's host
	// rules accept. Until Apply, no tenant has a device, so what arrives is dropped.
	socket := n.cfg.socket
	if socket == nil {
		socket = udpbind.NewDefault()
	}
	n.mux, err = wgmux.New(wgmux.Config{Socket: socket, PrivateKey: n.key, Route: n.routeInitiation, Holds: n.deviceHolds}, n.log.With("component", "mux"))
	if err != nil {
		return err
	}
	n.holder = n.mux.Bind(0)
	fns, port, err := n.holder.Open(uint16(n.cfg.ListenPort))
	if err != nil {
		return fmt.Errorf("listen on UDP port %d: %w: is another WireGuard server using it? choose another --listen-port", n.cfg.ListenPort, err)
	}
	n.cfg.ListenPort = int(port)
	n.idle.Store(true)
	n.readWhileIdle(fns)

	budget := n.cfg.fdBudget
	if budget == 0 {
		var limit int
		budget, limit = fdBudget()
		n.log.Info("exit flows may hold a share of the open files limit; the rest is kept for the control socket, web UI, database and devices",
			"open_files_limit", limit, "exit_sockets", budget)
	}
	// The resolver at the overlay addresses: the tenants' names, their split zones through
	// their packet paths, and the rest forwarded; over UDP from the packet path (tun.go),
	// over TCP from the exit's stack (serveDNSTCP).
	if n.dns, err = resolver.New(resolver.Config{Upstreams: n.cfg.DNSUpstreams, Overlay: n.ov, SendSplit: n.sendSplit}, n.log.With("component", "dns")); err != nil {
		return err
	}
	if err := n.dns.Start(); err != nil {
		return err
	}
	ecfg := netstack.Config{
		MTU:          n.exitMTU(),
		LocalAddrs:   []netip.Addr{n.ov.Gateway4, n.ov.Gateway6},
		DNSUpstreams: n.cfg.DNSUpstreams,
		DNSServer:    n.serveDNSTCP,
		Output:       n.deliverBatch,
		FDBudget:     budget,
		Owner:        n.exitOwner,
	}
	if n.cfg.exitDialer != nil {
		ecfg.Dialer = n.cfg.exitDialer
	}
	exit, err := netstack.New(ecfg, n.log.With("component", "exit"))
	if err != nil {
		return fmt.Errorf("userspace exit: %w", err)
	}
	n.exit = exit
	if err := n.startExit(); err != nil {
		return err
	}
	if n.cfg.Blobs != nil {
		n.blocks = newBlocklists(n.cfg.Blobs, n.dns, n.log.With("component", "blocklists"))
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-n.closing:
					cancel()
				case <-ctx.Done():
				}
			}()
			n.blocks.run(ctx)
		}()
	}

	n.checks, err = checks.New(checks.Config{DNSUpstreams: n.cfg.DNSUpstreams, HandshakeKey: n.cfg.BackboneKey, Now: n.cfg.now},
		n.log.With("component", "checks"))
	if err != nil {
		return err
	}
	n.checks.Start()

	n.wg.Add(1)
	go n.sweepLoop()
	if n.cfg.PeerArrived != nil {
		n.arrived = make(chan struct{}, 1)
		n.wg.Add(1)
		go n.arrivalLoop(arrivalCalls[:])
	}
	n.serveUAPI()
	n.log.Info("the data plane is up",
		"interface", n.cfg.Interface, "listen_port", n.cfg.ListenPort,
		"public_key", n.key.PublicKey().String(),
		"exit_mode", n.cfg.ExitMode, "overlay", n.ov.V4.String()+","+n.ov.V6.String())
	return nil
}

// routeInitiation tells the Mux which tenant's device owns a handshake initiator, and puts the
// peer into that device first if it is not there (a cold peer). The Mux does not ask about an
// initiation it routes by its source address to a device that answered there lately (see
// wgmux.Config.Holds): a peer placed elsewhere that comes back from there within minutes,
// still in its device, is then reported by the next report rather than at once.
func (n *Node) routeInitiation(initiator store.Key) (int64, bool) {
	snap := n.snap.Load()
	e := snap.byKey[initiator]
	if e == nil || e.tenant.dev == nil {
		return 0, false
	}
	if err := e.tenant.dev.materialise(e, time.Now()); err != nil {
		n.log.Warn("add a peer to its device on handshake", "tenant", e.tenant.name, "peer", e.name, "err", err)
		return 0, false
	}
	if snap.self != 0 && e.ctr.placed.Load() != uint32(snap.self) {
		n.peerArrived() // the controller is to learn where it is now
	}
	return e.tenantID, true
}

// deviceHolds tells the Mux whether a tenant's device holds a peer now (see
// wgmux.Config.Holds).
func (n *Node) deviceHolds(tenantID int64, initiator store.Key) bool {
	e := n.snap.Load().byKey[initiator]
	if e == nil || e.tenantID != tenantID || e.tenant.dev == nil {
		return false
	}
	return e.tenant.dev.dev.LookupPeer(device.NoisePublicKey(initiator)) != nil
}

// exitOwner tells the userspace exit whose a client address is, and its bounds. A site's
// LAN never reaches the exit (tunDevice.Write): every address it sees is a peer's, but for
// a peer removed an instant ago, which counts as nobody's.
func (n *Node) exitOwner(a netip.Addr) netstack.Owner {
	e := n.snap.Load().byAddr[a]
	if e == nil {
		return netstack.Owner{}
	}
	return netstack.Owner{
		Peer: e.id, Tenant: e.tenantID, PeerName: e.name, TenantName: e.tenant.name,
		MaxPeerFlows: e.tenant.maxFlowsPerPeer, MaxTenantFlows: e.tenant.maxFlows,
	}
}

// serveDNSTCP serves a TCP connection to the node's DNS service (netstack.Config.DNSServer)
// with the resolver, as the tenant of the peer it comes from. A client that is no peer (a
// host behind a site connector: the exit's one stack cannot tell the tenants' LANs apart)
// is not served: it asks over UDP, which the packet path answers per tenant.
func (n *Node) serveDNSTCP(o netstack.Owner, client netip.AddrPort, c net.Conn) {
	if o.Tenant != 0 {
		n.dns.ServeTCP(o.Tenant, client.Addr(), c)
	}
}

// readWhileIdle reads the shared socket through the holder's receive functions fns while
// no tenant has a device: the devices' goroutines read it otherwise, and without them the
// initiations of other nodes' handshake checks (which the Mux answers itself) would wait
// unread. Once a device exists, a reader stops after the read it is in (whose datagrams it
// hands to their devices, as any reader does), or at once if it waits for its turn (setIdle
// interrupts it), until the node is idle again. They end
// when the socket closes.
func (n *Node) readWhileIdle(fns []conn.ReceiveFunc) {
	// A few datagrams a read (each buffer holds what GRO coalesces): the idle node's
	// traffic is handshakes.
	batch := min(n.holder.BatchSize(), 8)
	for _, fn := range fns {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			bufs, sizes, eps := make([][]byte, batch), make([]int, batch), make([]conn.Endpoint, batch)
			for i := range bufs {
				bufs[i] = make([]byte, device.MaxMessageSize)
			}
			for {
				for !n.idle.Load() {
					select {
					case <-n.closing:
						return
					case <-n.idleWake:
					}
				}
				if _, err := fn(bufs, sizes, eps); err != nil {
					if errors.Is(err, net.ErrClosed) || n.closed() {
						return
					}
					select { // a failing socket: the Mux logs it; do not spin
					case <-n.closing:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}()
	}
}

// setIdle records whether no tenant has a device now, waking the idle readers when so.
func (n *Node) setIdle(idle bool) {
	if n.idle.Swap(idle) == idle {
		return
	}
	if !idle {
		// A reader of the holder waiting for its turn would make the Mux keep a steal timer
		// running after each burst of the devices' traffic, for a read it no longer wants.
		n.holder.Interrupt()
		return
	}
	for range 2 { // one per address family
		select {
		case n.idleWake <- struct{}{}:
		default:
		}
	}
}

// fdReserve is what fdBudget keeps of the open files limit for everything but exit flows:
// the shared UDP socket, the control socket and its clients, the web UI and its clients,
// health checks, the database (a file, its WAL and shared memory per connection), the UAPI
// socket, the kernel exit's TUN, the runtime's own.
const fdReserve = 1024

// fdBudget returns the host sockets the userspace exit's flows may hold: the open files
// limit (RLIMIT_NOFILE, which serve raises to its hard limit first) less fdReserve, or less a
// quarter of it when it is below 4 × fdReserve; and the limit.
func fdBudget() (budget, limit int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return netstack.DefaultMaxFlows, 0
	}
	limit = int(min(rl.Cur, 1<<30))
	return budgetOf(limit), limit
}

// budgetOf is fdBudget's share of an open files limit.
func budgetOf(limit int) int { return limit - min(fdReserve, limit/4) }

// deliverBatch takes packets from the userspace exit towards peers (fromExit decides each);
// runs of packets for one tenant are queued to its device together. Called concurrently; must
// not block for long.
func (n *Node) deliverBatch(pkts [][]byte) {
	db := deliverBatches.Get().(*deliverBatch)
	db.bb, db.drops = &n.bb, &n.drops
	snap := n.snap.Load()
	now := n.filter.Now()
	for _, raw := range pkts {
		switch to, remote, via := fromExit(snap, n.filter, &db.pkt, raw, now, &n.drops); {
		case remote != nil:
			db.addRemote(remote, via, raw)
		case to != nil:
			db.add(to, raw)
		}
	}
	db.flush()
	deliverBatches.Put(db)
}

// sweepLoop expires tracked flows, trims idle peers from the devices and refreshes the
// backbone view's losses until the node closes.
func (n *Node) sweepLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.sweepEvery)
	defer t.Stop()
	lastTrim := time.Now()
	for {
		select {
		case <-n.closing:
			return
		case now := <-t.C:
			n.filter.Sweep()
			if n.bb.dev.Load() != nil {
				n.rebuildBB() // the loss of links not Up, for traffic that has no Up link
			}
			if now.Sub(lastTrim) >= n.cfg.trimEvery {
				lastTrim = now
				n.trimPeers(now)
			}
		}
	}
}

// trimPeers removes peers idle past cfg.peerIdle from every device, remembering their last
// state so status still shows when they were last seen.
func (n *Node) trimPeers(now time.Time) {
	n.mu.Lock()
	devs := make([]*tenantDevice, 0, len(n.devs))
	for _, td := range n.devs {
		devs = append(devs, td)
	}
	n.mu.Unlock()
	for _, td := range devs {
		gone, err := td.trim(now, n.cfg.peerIdle, n.leftDevice)
		if err != nil {
			n.log.Warn("trim idle peers", "tenant_id", td.id, "err", err)
			continue
		}
		if gone > 0 {
			n.log.Debug("trimmed idle peers", "tenant_id", td.id, "peers", gone)
		}
	}
}

// startExit picks the exit mode and wires the exits into the packet path. auto means kernel
// when the process may (CAP_NET_ADMIN, /dev/net/tun, iptables), userspace otherwise.
func (n *Node) startExit() error {
	us := userspaceExit{n.exit}
	if n.cfg.NoExit {
		// No exit role: the userspace stack serves the in-tunnel services only, and the
		// packet path sends the internet's traffic over the backbone (tunDevice.Write).
		n.cfg.ExitMode = "none"
		n.exitLocal = us
		return nil
	}
	mode := n.cfg.ExitMode
	if mode == ExitAuto {
		mode = ExitUserspace
		if ok, why := firewall.KernelModeAvailable(); ok {
			mode = ExitKernel
		} else {
			n.log.Info("exit mode auto: using the userspace exit", "why_not_kernel", why)
		}
	}
	var exit4, exit6 exitWriter = us, us
	if mode == ExitKernel {
		k, err := newKernelExit(n.cfg.Interface, n.exitMTU(), n.cfg.ListenPort, n.ov, n.log.With("component", "kernel-exit"))
		switch {
		case err != nil && n.cfg.ExitMode == ExitKernel:
			return err
		case err != nil:
			n.log.Warn("exit mode auto: the kernel exit failed, using the userspace exit", "err", err)
			mode = ExitUserspace
		default:
			n.kexit = k
			exit4 = k
			if k.ipv6() {
				exit6 = k
			} else {
				n.log.Warn("IPv6 exit traffic uses the userspace exit: IPv6 NAT (ip6tables) is unavailable")
			}
		}
	}
	n.cfg.ExitMode = mode
	n.exitLocal, n.exit4, n.exit6 = us, exit4, exit6
	return nil
}

// exitMTU is the MTU of the exits' link towards the peers: the tunnel's, or on a node with a
// backbone what the backbone carries when that is less, so that replies for peers at other
// nodes fit it (UDP is fragmented to it, and the kernel answers DF packets too big with
// ICMP); the node's own peers lose only a few bytes a packet.
func (n *Node) exitMTU() int {
	if n.cfg.BackboneKey.IsZero() {
		return n.cfg.MTU
	}
	return min(n.cfg.MTU, backbone.DefaultMTU)
}

// userspaceExit adapts the gVisor exit to the packet path.
type userspaceExit struct{ *netstack.Exit }

// Write strips the headroom in place (bufs is the packet path's scratch) and hands the
// packets to gVisor, which copies them.
func (u userspaceExit) Write(bufs [][]byte, offset int) {
	for i := range bufs {
		bufs[i] = bufs[i][offset:]
	}
	u.Exit.Write(bufs)
}

// Config returns the node's effective configuration (defaults filled in).
func (n *Node) Config() Config { return n.cfg }

// Close stops the node: the UAPI listener and its connections, the checks, the expiry timer, the
// tenants' devices (and with them the packet path), the shared socket, the exits; then it
// waits for the node's goroutines. An Apply under way finishes first; later ones return
// ErrClosed and change nothing. Idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.closing)
		n.closeUAPI()
		if n.checks != nil {
			n.checks.Close()
		}
		n.mu.Lock() // an Apply starting the backbone finishes first
		if d := n.bb.dev.Load(); d != nil {
			d.Close() // first: what it delivers goes into the devices
		}
		n.mu.Unlock()
		n.mu.Lock()
		n.stopExpiryLocked()
		for id, td := range n.devs {
			td.close()
			delete(n.devs, id)
		}
		n.mu.Unlock()
		if n.mux != nil {
			n.mux.Close() // and the holder's bind with it
		}
		if n.kexit != nil {
			n.kexit.Close()
		}
		if n.exit != nil {
			n.exit.Close()
		}
		if n.dns != nil {
			n.dns.Close()
		}
		n.wg.Wait()
	})
	return nil
}

// resolvConfNameservers reads the nameservers of a resolv.conf file, port 53: addresses the
// userspace exit takes.
func resolvConfNameservers(path string) []netip.AddrPort {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.Zone() != "" {
			continue
		}
		// 0.0.0.0 and :: mean this host to the resolver library (a connect to them reaches
		// it); the exit takes only addresses it can name.
		switch a = a.Unmap(); {
		case a == netip.IPv4Unspecified():
			a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		case a == netip.IPv6Unspecified():
			a = netip.IPv6Loopback()
		}
		out = append(out, netip.AddrPortFrom(a, 53))
	}
	return out
}
