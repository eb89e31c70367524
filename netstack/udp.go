package netstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The UDP relay: datagrams to non-local destinations do not go through gVisor. Write finds
// each datagram's flow (client addr:port, destination addr:port) in e.udp and sends its
// payload on the flow's connected host socket from Write's own goroutine, the datagrams of
// one flow in one Write batch with one sendmmsg (udpsend.go). One goroutine per flow dials
// the destination, then reads the host socket with recvmmsg and hands each batch read to
// Output as IP packets built in place (udpreply.go).
//
// gVisor still sees UDP to LocalAddrs (the DNS service, refusals: dns.go) and the datagrams
// that need reassembly or header parsing (fragments, IPv4 options, IPv6 extension headers);
// it hands the latter back to the relay (handleUDPPacket).

const (
	// udpDialQueue bounds the datagrams a new flow holds while its dial runs; later ones
	// are dropped (DropFlowQueueFull). A UDP dial is a socket and a connect, no round trip.
	udpDialQueue = 16
	// udpRxBatch is the most datagrams one recvmmsg reads, and so the most replies (before
	// fragmentation) of one Output call.
	udpRxBatch = 16
)

// udpKey names a UDP flow. IPv4 addresses are stored IPv4-mapped (the classifier drops
// IPv4-mapped IPv6 addresses, so the two families never meet).
type udpKey struct {
	src, dst     [16]byte // the client's address, the destination's
	sport, dport uint16
}

func makeUDPKey(src, dst netip.AddrPort) udpKey {
	return udpKey{src: src.Addr().As16(), dst: dst.Addr().As16(), sport: src.Port(), dport: dst.Port()}
}

// udpTable maps keys to the live flows. Read for every flow of every Write batch, written
// when a flow starts or ends.
type udpTable struct {
	mu sync.RWMutex // guards m
	m  map[udpKey]*udpFlow
}

func (t *udpTable) get(k udpKey) *udpFlow {
	t.mu.RLock()
	f := t.m[k]
	t.mu.RUnlock()
	return f
}

// remove forgets f if it is still the flow of its key.
func (t *udpTable) remove(f *udpFlow) {
	t.mu.Lock()
	if t.m[f.key] == f {
		delete(t.m, f.key)
	}
	t.mu.Unlock()
}

// udpFlow is one client addr:port ↔ destination addr:port pair and its host socket.
type udpFlow struct {
	e        *Exit
	key      udpKey
	src, dst netip.AddrPort // the client's, the destination's
	reply    replyHeader    // destination → client
	clock    idleDeadline   // last datagram either way (touched once per batch); the reader's deadline
	acct     *acctFlow      // set before the flow is in the table, never changed

	// host and raw are set once, under mu, before ready; read without mu once ready.
	host  net.Conn
	raw   syscall.RawConn // host's, when batched syscalls apply to it; else nil
	ready atomic.Bool     // the dial succeeded and the queue has been sent
	// noRuns is set when the host refused a run of datagrams in one message (UDP GSO):
	// the flow sends one datagram a message from then on.
	noRuns atomic.Bool

	mu     sync.Mutex // guards queue, closed; held while the queue is sent
	queue  [][]byte   // copies of the datagrams that arrived during the dial, in order
	closed bool
}

// udpFlowFor returns the flow of k, starting one if there is none. It returns nil, and the
// datagram is to be dropped, when a limit refuses the flow (the client is told: ICMP
// administratively prohibited) or Close has begun. It never blocks on the dial.
func (e *Exit) udpFlowFor(k udpKey, src, dst netip.AddrPort) *udpFlow {
	if f := e.udp.get(k); f != nil {
		return f
	}
	f := &udpFlow{e: e, key: k, src: src, dst: dst}
	// Admitted before it is in the table, so an eviction's abort can find the table
	// unlocked; aborted meanwhile, it ends as soon as it runs.
	if f.acct = e.admit(src.Addr(), kindUDP, f); f.acct == nil {
		e.sendUnreachable(src, dst, true)
		return nil
	}
	e.udp.mu.Lock()
	if old := e.udp.m[k]; old != nil {
		e.udp.mu.Unlock()
		e.acct.release(f.acct)
		return old
	}
	f.reply = newReplyHeader(dst, src)
	f.clock.touch(e.now())
	e.udp.m[k] = f
	e.udp.mu.Unlock()
	e.st.udpFlows.Add(1)
	if !e.goFlow(f, f.run) {
		e.udp.remove(f)
		e.st.udpFlows.Add(-1)
		e.acct.release(f.acct)
		return nil
	}
	return f
}

// run dials the destination, sends what was queued meanwhile, and relays replies until the
// flow has been idle both ways for its idle timeout (UDPUnrepliedTimeout until the first
// reply, then UDPIdleTimeout), the host socket fails, it is evicted, or Close.
func (f *udpFlow) run() {
	e := f.e
	defer e.acct.release(f.acct)
	defer e.st.udpFlows.Add(-1)
	defer f.abort()

	ctx, cancel := context.WithTimeout(e.ctx, dialTimeout)
	host, err := e.cfg.Dialer.DialContext(ctx, "udp", f.dst.String())
	cancel()
	if err != nil {
		e.st.dialFailures.Add(1)
		e.log.Debug("udp: dial failed", "src", f.src, "dst", f.dst, "err", err)
		return
	}
	if !f.connect(host) {
		return
	}
	if f.raw != nil {
		f.readBatches()
	} else {
		f.readEach()
	}
}

// connect makes host the flow's socket and sends the queued datagrams, in order, before
// any later one can go (Write waits on f.mu until ready). False, host closed, if the flow
// was aborted meanwhile.
func (f *udpFlow) connect(host net.Conn) bool {
	tx := f.e.getTx()
	defer f.e.putTx(tx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		host.Close()
		return false
	}
	f.host, f.raw = host, udpRawConn(host)
	tx.sendNow(f, f.queue)
	f.queue = nil
	f.ready.Store(true)
	return true
}

// enqueue keeps copies of datagrams of a flow whose dial has not finished; false, nothing
// kept, once the dial has finished (the caller then sends them itself).
func (f *udpFlow) enqueue(payloads [][]byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ready.Load() {
		return false
	}
	drop := uint64(0)
	for _, p := range payloads {
		if f.closed || len(f.queue) >= udpDialQueue {
			drop++
			continue
		}
		f.queue = append(f.queue, append([]byte(nil), p...))
	}
	if drop > 0 {
		r := DropFlowQueueFull
		if f.closed {
			r = DropHostSendFailed
		}
		f.e.st.drops[r].Add(drop)
	}
	return true
}

// abort removes the flow from the table and closes its host socket, which ends its
// reader. Idempotent.
func (f *udpFlow) abort() {
	f.e.udp.remove(f)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.queue = nil
	host := f.host
	f.mu.Unlock()
	if host != nil {
		host.Close()
	}
}

// rxSlots are the buffers of one recvmmsg: udpRxBatch slots of udpSlotSize, each with
// headroom for the reply's headers. About 1 MiB: a flow borrows them only while datagrams
// are ready, never while it waits.
type rxSlots struct {
	mem  []byte
	msgs recvMsgs
}

var rxSlotsPool = sync.Pool{New: func() any {
	s := &rxSlots{mem: make([]byte, udpRxBatch*udpSlotSize)}
	for i := range udpRxBatch {
		s.msgs.setBuf(i, s.slot(i)[udpRoom:])
	}
	return s
}}

func (s *rxSlots) slot(i int) []byte { return s.mem[i*udpSlotSize : (i+1)*udpSlotSize] }

// slotPool holds single slots, for host sockets read one datagram a call.
var slotPool = sync.Pool{New: func() any {
	b := make([]byte, udpSlotSize)
	return &b
}}

// fragPool holds the buffers of fragmented replies (fragBufSize).
var fragPool = sync.Pool{New: func() any {
	b := make([]byte, fragBufSize)
	return &b
}}

// udpReader is the reply side of one flow: its goroutine's state.
type udpReader struct {
	f       *udpFlow
	replied bool     // a datagram came back: the flow is assured
	slots   *rxSlots // borrowed while datagrams are ready
	n       int      // datagrams in slots, from the last recv
	errno   syscall.Errno
	recv    func(fd uintptr) bool // r.recvFD, bound once
	pkts    [][]byte              // the packets of one Output call
	frags   []*[]byte             // fragPool buffers behind pkts
}

// readBatches relays replies with recvmmsg until the flow ends.
func (f *udpFlow) readBatches() {
	r := &udpReader{f: f}
	r.recv = r.recvFD
	defer func() {
		if r.slots != nil {
			rxSlotsPool.Put(r.slots)
		}
	}()
	for {
		f.clock.arm(f.e, f.host, r.idle())
		r.n, r.errno = 0, 0
		err := f.raw.Read(r.recv)
		if err == nil && r.errno != 0 {
			err = r.errno
		}
		if err != nil {
			if !r.readError(err) {
				return
			}
			continue
		}
		f.clock.touch(f.e.now())
		if !r.reply() {
			return
		}
		for i := range r.n {
			r.add(r.slots.slot(i), r.slots.msgs.size(i))
		}
		r.emit()
	}
}

// recvFD is the syscall.RawConn callback: one recvmmsg into borrowed slots. On EAGAIN it
// returns the slots and asks the poller to wait. Until the flow's first reply it first looks
// whether anything waits at all: the reader's first call comes before anything can have,
// and a flood of new flows would otherwise borrow (and the pool allocate) a megabyte of
// slots for each of them at once.
func (r *udpReader) recvFD(fd uintptr) bool {
	if !r.replied && r.slots == nil {
		errno := pending(fd)
		for errno == syscall.EINTR {
			errno = pending(fd)
		}
		switch errno {
		case 0:
		case syscall.EAGAIN:
			return false
		default: // the socket's error, which the peek took: report it
			r.errno = errno
			return true
		}
	}
	for {
		if r.slots == nil {
			r.slots = rxSlotsPool.Get().(*rxSlots)
		}
		n, errno := r.slots.msgs.recv(fd)
		switch errno {
		case 0:
			r.n = n
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			rxSlotsPool.Put(r.slots)
			r.slots = nil
			return false
		default:
			r.errno = errno
			return true
		}
	}
}

// readEach relays replies one Read a datagram, for host sockets that are not *net.UDPConn.
func (f *udpFlow) readEach() {
	r := &udpReader{f: f}
	bp := slotPool.Get().(*[]byte)
	defer slotPool.Put(bp)
	slot := *bp
	for {
		f.clock.arm(f.e, f.host, r.idle())
		n, err := f.host.Read(slot[udpRoom:])
		if err != nil {
			if !r.readError(err) {
				return
			}
			continue
		}
		f.clock.touch(f.e.now())
		if !r.reply() {
			return
		}
		r.add(slot, n)
		r.emit()
	}
}

// idle is the flow's idle timeout: shorter until it got a reply.
func (r *udpReader) idle() time.Duration {
	if r.replied {
		return r.f.e.cfg.UDPIdleTimeout
	}
	return r.f.e.cfg.UDPUnrepliedTimeout
}

// reply notes that a datagram came back; on the first it marks the flow assured, so that
// it is never evicted. False when it was evicted already: the flow ends.
func (r *udpReader) reply() bool {
	if r.replied {
		return true
	}
	r.replied = true
	return r.f.e.acct.assure(r.f.acct)
}

// readError handles an error reading the host socket and reports whether the flow goes
// on: ECONNREFUSED (the destination answered ICMP port unreachable, which is no reply) is
// passed to the client; the idle deadline ends the flow if it has been idle both ways,
// else is re-armed.
func (r *udpReader) readError(err error) bool {
	f := r.f
	if errors.Is(err, syscall.ECONNREFUSED) {
		f.e.sendUnreachable(f.src, f.dst, false)
		return true
	}
	deadline, expired := f.clock.fired(err, f.e, r.idle())
	return deadline && !expired
}

// add appends the reply packets of the n-byte datagram in slot (payload at udpRoom).
func (r *udpReader) add(slot []byte, n int) {
	h, mtu := &r.f.reply, r.f.e.cfg.MTU
	if n > h.maxPayload() {
		return // an IPv6 socket's datagram too large for IPv4; only a custom Dialer makes one
	}
	var frag []byte
	if !h.fits(n, mtu) {
		bp := fragPool.Get().(*[]byte)
		r.frags = append(r.frags, bp)
		frag = *bp
	}
	r.pkts = h.appendReply(r.pkts, slot, n, mtu, frag, r.f.e.fragID.Add(1))
}

// emit hands the packets to Output and returns the fragment buffers.
func (r *udpReader) emit() {
	r.f.e.emitBatch(r.pkts)
	clear(r.pkts)
	r.pkts = r.pkts[:0]
	for _, bp := range r.frags {
		fragPool.Put(bp)
	}
	clear(r.frags)
	r.frags = r.frags[:0]
}

// handleUDPPacket is gVisor's UDP handler for a datagram no endpoint claims: UDP to a
// LocalAddr goes to the forwarder (handleLocalUDP); anything else is a datagram gVisor had
// to reassemble or parse (fragments, IPv4 options, IPv6 extension headers), relayed like
// the others. Called synchronously by Write.
func (e *Exit) handleUDPPacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	dst := netip.AddrPortFrom(addrFrom(id.LocalAddress), id.LocalPort)
	if e.isLocal(dst.Addr()) {
		return e.udpForwarder.HandlePacket(id, pkt)
	}
	src := remoteOf(id)
	n := int(header.UDP(pkt.TransportHeader().Slice()).Length()) - udpHeaderLen
	if n < 0 || n > pkt.Data().Size() {
		e.st.drop(DropMalformed)
		return true
	}
	payload := pkt.Data().AsRange().Capped(n).ToSlice()
	tx := e.getTx()
	tx.add(makeUDPKey(src, dst), src, dst, payload)
	tx.flush()
	e.putTx(tx)
	return true
}

// sendUnreachable tells client that its datagram to dst went nowhere: port unreachable
// from dst itself, or administratively prohibited from the exit when a limit refused the flow.
// The quoted datagram is rebuilt from the flow's addresses; that is all a client stack
// needs to find its socket.
func (e *Exit) sendUnreachable(client, dst netip.AddrPort, prohibited bool) {
	from := dst.Addr()
	if prohibited {
		from = e.localFor(dst.Addr())
	}
	bp := getBuf()
	e.emit(buildUDPUnreachable(*bp, from, client, dst, prohibited))
	putBuf(bp)
}
