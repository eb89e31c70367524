// Package netstack is the userspace exit (TCP in a gVisor stack, UDP relayed directly) and the in-tunnel services.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Dialer re-originates flows from the host. *net.Dialer implements it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

var _ Dialer = (*net.Dialer)(nil)

// Config configures an Exit. The zero value of each field selects the documented default;
// New calls Validate.
type Config struct {
	// MTU of the link towards clients: the largest IP packet Output receives. Default 1420.
	MTU int
	// LocalAddrs are the node's own overlay addresses (e.g. 100.64.0.1, fdxx::1). In-tunnel
	// services (DNS, ICMP echo) live here; every other port on them is refused. Default none.
	LocalAddrs []netip.Addr
	// DNSUpstreams receive the queries sent to LocalAddrs:53 over UDP and TCP, in order: the
	// first that answers wins. Empty: no DNS service (port 53 is refused like any other).
	DNSUpstreams []netip.AddrPort
	// DNSServer, when set, serves the TCP connections to LocalAddrs:53 itself (the node's
	// resolver), instead of relaying them to DNSUpstreams: it gets the connection's owner,
	// the client's address and the connection (a client leg in gVisor, with CloseWrite and
	// deadlines), serves it until it ends and closes it. It runs on the connection's own
	// goroutine.
	DNSServer func(o Owner, client netip.AddrPort, c net.Conn)
	// Output receives the IP packets the exit sends towards clients, a batch at a time: each
	// pkts[i] is one packet. The slice and the packets are valid only during the call. It may
	// be called concurrently (also from within Write, for ICMP errors), must not block for
	// long, and must not call Write synchronously. Required.
	Output func(pkts [][]byte)
	// Dialer re-originates TCP and UDP flows and reaches DNSUpstreams. A UDP flow's socket
	// that is a *net.UDPConn is written and read in batches (sendmmsg, recvmmsg on Linux);
	// any other net.Conn one datagram a call, and its Write may then block Exit.Write.
	// Default &net.Dialer{}.
	Dialer Dialer
	// Pinger re-originates ICMP echo. A successful New takes ownership: Exit.Close closes
	// it. Default: a host pinger on unprivileged ICMP datagram sockets (allowed when
	// net.ipv4.ping_group_range includes our gid), else raw sockets when privileged, else
	// none (echo to non-local destinations is dropped and counted, one log line says why).
	Pinger Pinger
	// UDPIdleTimeout closes a UDP flow (and its host socket) that got a reply and then saw
	// no datagram either way for this long. Default 2m (like conntrack's UDP stream timeout).
	UDPIdleTimeout time.Duration
	// UDPUnrepliedTimeout closes a UDP flow that never got a reply after this long without a
	// datagram, so that a flood of new flows frees its sockets fast. Default 30s (like
	// conntrack's unreplied UDP timeout); at most UDPIdleTimeout.
	UDPUnrepliedTimeout time.Duration
	// MaxFlows bounds the node's flows: TCP and UDP flows, including those still
	// dialling, and echo requests waiting for a reply. A new flow above it first closes the
	// oldest flow that never got a reply; when there is none it is refused (TCP RST, UDP
	// ICMP administratively prohibited, echo dropped) and counted (see Limit). Default 65536.
	MaxFlows int
	// FDBudget bounds the host sockets that flows hold (TCP, UDP, DNS), like MaxFlows, so
	// that the process keeps descriptors for everything else it serves. Default MaxFlows.
	FDBudget int
	// Owner tells whose a client address is when it opens a flow: the peer and tenant its
	// flows count against, and their limits (see Limit). It must be cheap and must not
	// block; it is not called for packets of open flows. Default: every address belongs to
	// one owner without limits of its own.
	Owner func(client netip.Addr) Owner

	// disableGRO turns off inbound GRO; for benchmarks comparing the two.
	disableGRO bool
}

// Defaults.
const (
	DefaultMTU                 = 1420
	DefaultUDPIdleTimeout      = 2 * time.Minute
	DefaultUDPUnrepliedTimeout = 30 * time.Second
	DefaultMaxFlows            = 65536
)

// Validate fills defaults and rejects bad values with a message naming the field and the fix.
func (c *Config) Validate() error {
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 1280 || c.MTU > 65535 {
		return fmt.Errorf("netstack: MTU %d is out of range: use 1280-65535 (1420 suits WireGuard)", c.MTU)
	}
	for i, a := range c.LocalAddrs {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
			return fmt.Errorf("netstack: LocalAddrs[%d] %v is not a usable overlay address: use unicast addresses such as 100.64.0.1 or fd00::1", i, a)
		}
		c.LocalAddrs[i] = a
	}
	for i, u := range c.DNSUpstreams {
		if !u.IsValid() || u.Port() == 0 || u.Addr().IsUnspecified() {
			return fmt.Errorf("netstack: DNSUpstreams[%d] %v is not a resolver address: use ip:port such as 192.0.2.53:53", i, u)
		}
	}
	if c.Output == nil {
		return errors.New("netstack: Output is nil: set it to the function that sends packets towards clients")
	}
	if c.Dialer == nil {
		c.Dialer = &net.Dialer{}
	}
	if c.UDPIdleTimeout == 0 {
		c.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if c.UDPIdleTimeout < 0 {
		return fmt.Errorf("netstack: UDPIdleTimeout %v is negative: use a positive duration such as 2m", c.UDPIdleTimeout)
	}
	if c.UDPUnrepliedTimeout == 0 {
		c.UDPUnrepliedTimeout = min(DefaultUDPUnrepliedTimeout, c.UDPIdleTimeout)
	}
	if c.UDPUnrepliedTimeout < 0 || c.UDPUnrepliedTimeout > c.UDPIdleTimeout {
		return fmt.Errorf("netstack: UDPUnrepliedTimeout %v is out of range: use a positive duration no longer than UDPIdleTimeout (%v), such as 30s", c.UDPUnrepliedTimeout, c.UDPIdleTimeout)
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.MaxFlows < 0 {
		return fmt.Errorf("netstack: MaxFlows %d is negative: use a positive bound such as 65536", c.MaxFlows)
	}
	if c.FDBudget == 0 {
		c.FDBudget = c.MaxFlows
	}
	if c.FDBudget < 0 {
		return fmt.Errorf("netstack: FDBudget %d is negative: use a positive number of sockets, such as the descriptor limit less a reserve", c.FDBudget)
	}
	return nil
}

// Exit is the userspace exit of a PoP: it re-originates client flows from host sockets.
// TCP is terminated in a gVisor stack; UDP to the internet is relayed datagram by datagram
// without it (udp.go); ICMP echo goes to the Pinger. Its methods are safe for concurrent
// use.
type Exit struct {
	cfg   Config
	log   *slog.Logger
	local []netip.Addr // cfg.LocalAddrs, unmapped; never modified after New
	start time.Time    // origin of the monotonic clock behind now()

	stack        *stack.Stack
	link         *linkEndpoint
	udpForwarder *udp.Forwarder // UDP to LocalAddrs: the DNS service

	udp    udpTable      // the relayed UDP flows
	txPool sync.Pool     // *udpTx, one per Write
	fragID atomic.Uint32 // identifies the fragments of a relayed reply larger than the MTU

	// ctx is cancelled by Close; it bounds every dial and ping.
	ctx    context.Context
	cancel context.CancelFunc

	// writeMu is held shared by Write and exclusively by Close, so that Close waits for
	// running Writes and none starts after it.
	writeMu sync.RWMutex
	closed  atomic.Bool

	mu       sync.Mutex // guards flows, flowsOff
	flows    map[flowCloser]struct{}
	flowsOff bool           // set by Close: no new flow may start
	wg       sync.WaitGroup // every goroutine the exit starts; Add only under mu with !flowsOff

	acct *acct // every flow, counted against the limits

	pinger     Pinger
	pings      pingTable
	closeOnce  sync.Once
	closeError error

	st counters
}

// flowCloser is a live flow that Close must tear down.
type flowCloser interface{ abort() }

// New validates cfg, builds the gVisor stack and starts the exit. The caller must Close it.
// A nil log discards.
func New(cfg Config, log *slog.Logger) (*Exit, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.LocalAddrs = append([]netip.Addr(nil), cfg.LocalAddrs...)
	cfg.DNSUpstreams = append([]netip.AddrPort(nil), cfg.DNSUpstreams...)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Exit{
		cfg:   cfg,
		log:   log,
		local: cfg.LocalAddrs,
		start: time.Now(),
		flows: make(map[flowCloser]struct{}),
		udp:   udpTable{m: make(map[udpKey]*udpFlow)},
	}
	e.txPool.New = func() any { return newUDPTx(e) }
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.acct = newAcct(cfg.MaxFlows, cfg.FDBudget, e.now, log)
	e.pings.init(e.acct)

	e.link = newLinkEndpoint(uint32(cfg.MTU), e.emitBatch, !cfg.disableGRO)
	s, err := newStack(e.link)
	if err != nil {
		e.cancel()
		return nil, err
	}
	e.stack = s
	e.installForwarders()

	e.pinger = cfg.Pinger
	if e.pinger == nil {
		e.pinger = newHostPinger(log, pingModeAuto)
	}
	if err := e.pinger.Start(e.onEchoReply); err != nil {
		// Not fatal: ping through the exit is unavailable, everything else works.
		log.Warn("ping through the exit is unavailable", "err", err)
	}
	e.goFlow(nil, e.expirePings)
	return e, nil
}

// now is a monotonic clock in nanoseconds since New; cheap enough for the packet path.
func (e *Exit) now() int64 { return int64(time.Since(e.start)) }

// isLocal reports whether a is one of the node's own overlay addresses.
func (e *Exit) isLocal(a netip.Addr) bool {
	for _, l := range e.local {
		if l == a {
			return true
		}
	}
	return false
}

// localFor returns a local address of a's family, or a itself when there is none.
func (e *Exit) localFor(a netip.Addr) netip.Addr {
	for _, l := range e.local {
		if l.Is4() == a.Is4() {
			return l
		}
	}
	return a
}

// emit hands one packet towards clients (ICMP, unreachables: the rare ones).
func (e *Exit) emit(pkt []byte) {
	one := [1][]byte{pkt}
	e.emitBatch(one[:])
}

// emitBatch hands packets towards clients. Every outbound packet goes through it.
func (e *Exit) emitBatch(pkts [][]byte) {
	if e.closed.Load() || len(pkts) == 0 {
		return
	}
	e.st.packetsOut.Add(uint64(len(pkts)))
	e.cfg.Output(pkts)
}

// Write hands the exit a batch of client IP packets, each starting at pkts[i][0]. It copies
// what it keeps, so the caller may reuse the buffers when it returns. It never blocks for
// long: TCP segments are queued to gVisor's processors; UDP datagrams of established flows
// are sent on their host sockets before it returns (one sendmmsg per flow, never waiting
// for room: what a socket does not take is dropped), those of flows still dialling are
// queued to them. After Close it does nothing.
func (e *Exit) Write(pkts [][]byte) {
	e.writeMu.RLock()
	defer e.writeMu.RUnlock()
	if e.closed.Load() || len(pkts) == 0 {
		return
	}
	e.st.packetsIn.Add(uint64(len(pkts)))
	in := e.link.beginInbound()
	tx := e.getTx()
	for _, p := range pkts {
		e.writeOne(in, tx, p)
	}
	tx.flush()
	in.finish()
	e.putTx(tx)
}

// writeOne classifies one packet: drop it, answer or re-originate ICMP echo, add a UDP
// datagram to the batch of the relay, or hand it to gVisor.
func (e *Exit) writeOne(in *inbound, tx *udpTx, p []byte) {
	var pi pktInfo
	if r := parsePacket(p, &pi); r != dropNone {
		e.st.drop(r)
		return
	}
	p = p[:pi.length]
	switch {
	case pi.echo:
		e.handleEcho(p, &pi)
	case pi.udp && !e.isLocal(pi.dst):
		tx.addPacket(p, &pi)
	default:
		if tx.pending() && mayBeRelayedUDP(p, &pi) && !e.isLocal(pi.dst) {
			// gVisor hands it back to the relay at once (handleUDPPacket): send what came
			// before it first, so that a flow's datagrams keep their order.
			tx.flush()
		}
		in.deliver(p, pi.v6)
	}
}

// mayBeRelayedUDP reports whether gVisor may hand p, a packet the classifier left to it,
// back to the UDP relay: IPv4 UDP (fragments, options), or IPv6 not plainly TCP (UDP behind
// extension headers).
func mayBeRelayedUDP(p []byte, pi *pktInfo) bool {
	if pi.v6 {
		return p[6] != protoTCP
	}
	return p[9] == protoUDP
}

// Close stops the exit: no Write has effect after it; it closes every flow (host sockets
// and gVisor endpoints), the pinger and the stack, and waits for every goroutine it
// started. Output is not called after Close returns. Close is idempotent.
func (e *Exit) Close() error {
	e.closeOnce.Do(func() {
		// 1. No new packets: wait for running Writes.
		e.writeMu.Lock()
		e.closed.Store(true)
		e.writeMu.Unlock()
		e.cancel() // abort dials in flight

		// 2. No new flows; tear down live ones.
		e.mu.Lock()
		e.flowsOff = true
		live := make([]flowCloser, 0, len(e.flows))
		for f := range e.flows {
			live = append(live, f)
		}
		e.mu.Unlock()
		for _, f := range live {
			f.abort()
		}

		// 3. The pinger's sockets and readers.
		e.closeError = e.pinger.Close()

		// 4. gVisor: abort remaining endpoints, stop its processors, remove the NIC.
		e.stack.Destroy()

		// 5. Our own goroutines.
		e.wg.Wait()
	})
	return e.closeError
}

// goFlow starts fn on a goroutine that Close waits for, and registers f so Close aborts it.
// It returns false, starting nothing, once Close has begun.
func (e *Exit) goFlow(f flowCloser, fn func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.flowsOff {
		return false
	}
	if f != nil {
		e.flows[f] = struct{}{}
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer e.forget(f)
		fn()
	}()
	return true
}

// enter registers the calling goroutine (one that gVisor started) with Close. It returns
// false once Close has begun; otherwise the caller must call e.wg.Done when it returns.
func (e *Exit) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.flowsOff {
		return false
	}
	e.wg.Add(1)
	return true
}

// track registers a live flow so Close aborts it; false once Close has begun.
func (e *Exit) track(f flowCloser) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.flowsOff {
		return false
	}
	e.flows[f] = struct{}{}
	return true
}

func (e *Exit) forget(f flowCloser) {
	if f == nil {
		return
	}
	e.mu.Lock()
	delete(e.flows, f)
	e.mu.Unlock()
}

// owner returns whose the client address a is.
func (e *Exit) owner(a netip.Addr) Owner {
	if e.cfg.Owner == nil {
		return Owner{}
	}
	return e.cfg.Owner(a)
}

// admit counts a new flow of kind for the client address src; target is aborted should
// the flow be evicted to make room for another. It evicts flows that never got a reply when
// a limit is reached (see Limit) and returns nil, counted, when it must refuse. The caller
// must hold no lock that a flow's abort takes, and must release the flow when it ends.
func (e *Exit) admit(src netip.Addr, kind flowKind, target flowCloser) *acctFlow {
	o := e.owner(src)
	var buf [maxEvictions]flowCloser
	f, _, victims := e.acct.admit(&o, kind, target, buf[:0])
	for _, v := range victims {
		v.abort()
	}
	if f == nil {
		e.st.flowsRefused.Add(1)
	}
	return f
}

// TenantFlows returns every tenant's share of the exit, by the Owner.Tenant of its flows.
func (e *Exit) TenantFlows() map[int64]TenantFlows { return e.acct.tenantFlows() }
