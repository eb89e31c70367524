package netstack

import (
	"errors"
	"net/netip"
	"syscall"
)

// udpTxMaxFlows bounds the flows one Write batch groups; a datagram of one more flow first
// sends what the batch holds, so finding a datagram's group stays cheap.
const udpTxMaxFlows = 32

// udpTx collects the relayed datagrams of one Write batch, grouped by flow in arrival
// order, and sends each flow's group with one sendmmsg. The payloads are the caller's
// bytes, valid until Write returns: nothing is copied on an established flow. Not safe for
// concurrent use; each Write takes one from e.txPool.
type udpTx struct {
	e     *Exit
	ents  []udpTxEnt
	flows []udpTxFlow
	last  int // index in flows of the previous datagram's flow; -1 when none

	// Scratch of one flow's send.
	payloads [][]byte
	msgs     sendMsgs
	flow     *udpFlow              // whose datagrams msgs holds
	send     func(fd uintptr) bool // tx.sendFD, bound once
	next     int                   // the first message of msgs not yet tried
	failed   int                   // datagrams of msgs the socket refused one by one
	inRuns   int                   // datagrams sent inside runs
	refused  bool                  // the socket reported ECONNREFUSED (a destination's ICMP error)
}

type udpTxEnt struct {
	p    []byte
	next int32 // the flow's next datagram in ents; -1 at its last
}

type udpTxFlow struct {
	f          *udpFlow
	head, tail int32 // the flow's first and last datagram in ents
}

func newUDPTx(e *Exit) *udpTx {
	tx := &udpTx{e: e, last: -1}
	tx.send = tx.sendFD
	return tx
}

func (e *Exit) getTx() *udpTx   { return e.txPool.Get().(*udpTx) }
func (e *Exit) putTx(tx *udpTx) { e.txPool.Put(tx) }

// addPacket adds the payload of the unfragmented datagram p (classified in pi).
func (tx *udpTx) addPacket(p []byte, pi *pktInfo) {
	u := p[pi.l4:]
	sport, dport := uint16(u[0])<<8|uint16(u[1]), uint16(u[2])<<8|uint16(u[3])
	n := int(uint16(u[4])<<8 | uint16(u[5]))
	src, dst := netip.AddrPortFrom(pi.src, sport), netip.AddrPortFrom(pi.dst, dport)
	tx.add(makeUDPKey(src, dst), src, dst, u[udpHeaderLen:n])
}

// add appends one datagram of the flow k (src → dst), starting the flow if needed.
func (tx *udpTx) add(k udpKey, src, dst netip.AddrPort, payload []byte) {
	i := tx.last
	if i < 0 || tx.flows[i].f.key != k {
		i = tx.find(k)
		if i < 0 {
			f := tx.e.udpFlowFor(k, src, dst)
			if f == nil {
				return
			}
			if len(tx.flows) == udpTxMaxFlows {
				tx.flush()
			}
			i = len(tx.flows)
			tx.flows = append(tx.flows, udpTxFlow{f: f, head: -1, tail: -1})
		}
		tx.last = i
	}
	at := int32(len(tx.ents))
	tx.ents = append(tx.ents, udpTxEnt{p: payload, next: -1})
	fl := &tx.flows[i]
	if fl.tail < 0 {
		fl.head = at
	} else {
		tx.ents[fl.tail].next = at
	}
	fl.tail = at
}

func (tx *udpTx) find(k udpKey) int {
	for i := range tx.flows {
		if tx.flows[i].f.key == k {
			return i
		}
	}
	return -1
}

// pending reports whether datagrams wait for flush.
func (tx *udpTx) pending() bool { return len(tx.ents) > 0 }

// flush sends what tx holds, flow by flow, and empties it.
func (tx *udpTx) flush() {
	if len(tx.ents) == 0 {
		return
	}
	now := tx.e.now()
	for i := range tx.flows {
		fl := &tx.flows[i]
		for j := fl.head; j >= 0; j = tx.ents[j].next {
			tx.payloads = append(tx.payloads, tx.ents[j].p)
		}
		f := fl.f
		if f.ready.Load() || !f.enqueue(tx.payloads) {
			tx.sendNow(f, tx.payloads)
		}
		f.clock.touch(now)
		clear(tx.payloads)
		tx.payloads = tx.payloads[:0]
	}
	clear(tx.ents)
	tx.ents = tx.ents[:0]
	clear(tx.flows)
	tx.flows = tx.flows[:0]
	tx.last = -1
}

// sendNow sends payloads on the host socket of f, which is ready (or being readied under
// f.mu), without blocking: what the socket does not take at once is dropped and counted.
// ECONNREFUSED, an earlier datagram's ICMP port unreachable reported by the socket, is
// passed to the client.
func (tx *udpTx) sendNow(f *udpFlow, payloads [][]byte) {
	if len(payloads) == 0 {
		return
	}
	unsent := 0
	tx.refused = false
	if f.raw != nil {
		runs := !f.noRuns.Load()
		for i := 0; i < len(payloads); {
			n := 1
			if runs {
				n = udpRun(payloads[i:])
			}
			if n > 1 {
				tx.msgs.addRun(payloads[i : i+n])
			} else {
				tx.msgs.add(payloads[i])
			}
			i += n
		}
		tx.flow, tx.next, tx.failed, tx.inRuns = f, 0, 0, 0
		f.raw.Write(tx.send) // fails only when the socket is closed: nothing was sent
		unsent = tx.failed + tx.msgs.segments(tx.next)
		if tx.inRuns > 0 {
			tx.e.st.udpSegmented.Add(uint64(tx.inRuns))
		}
		tx.msgs.reset()
		tx.flow = nil
	} else {
		for _, p := range payloads {
			if _, err := f.host.Write(p); err != nil {
				unsent++
				if errors.Is(err, syscall.ECONNREFUSED) {
					tx.refused = true
				}
			}
		}
	}
	if unsent > 0 {
		tx.e.st.drops[DropHostSendFailed].Add(uint64(unsent))
	}
	if tx.refused {
		tx.e.sendUnreachable(f.src, f.dst, false)
	}
}

// Runs of datagrams sent as one message that the kernel segments (UDP GSO, UDP_SEGMENT):
// the host's stack routes, filters and queues a run once, as stock's kernel forwarding does
// a GRO'd TUN write, where one message per datagram costs all of that per datagram.
const (
	udpRunMaxSegs = 64 // UDP_MAX_SEGMENTS of Linux before 6.9 (128 since)
	// udpRunMaxSize is the largest datagram a run holds: 1500 − 40 − 8, what a route with
	// an MTU of 1500 takes in one packet under IPv6. Clients' datagrams fit the tunnel's
	// MTU; larger ones came reassembled from fragments and go one by one.
	udpRunMaxSize  = 1452
	udpRunMaxBytes = 65000 // below IP's 64 KiB, whichever the family
)

// udpRun returns how many datagrams from ps[0] on one run can carry: a run holds datagrams
// of one size, then at most one shorter; 1 when ps[0] cannot start one.
func udpRun(ps [][]byte) int {
	size := len(ps[0])
	if size == 0 || size > udpRunMaxSize {
		return 1
	}
	n, total := 1, size
	for n < len(ps) && n < udpRunMaxSegs {
		l := len(ps[n])
		if l == 0 || l > size || total+l > udpRunMaxBytes {
			break
		}
		n++
		total += l
		if l < size {
			break
		}
	}
	return n
}

// sendFD is the syscall.RawConn callback: sendmmsg until every datagram is sent or the
// socket takes no more. It never asks the poller to wait: Write must not block.
func (tx *udpTx) sendFD(fd uintptr) bool {
	for tx.next < tx.msgs.len() {
		n, errno := tx.msgs.send(fd, tx.next)
		switch {
		case errno == 0:
			tx.inRuns += tx.msgs.runSegments(tx.next, tx.next+n)
			tx.next += n
		case errno == syscall.EINTR:
		case errno == syscall.ECONNREFUSED && !tx.refused:
			tx.refused = true // the error is consumed; the datagrams can still go
		case (errno == syscall.EINVAL || errno == syscall.EIO || errno == syscall.EMSGSIZE) && tx.msgs.isRun(tx.next):
			// The kernel, the route or the device refuses to segment (an old kernel, a
			// smaller MTU, no checksum offload): this flow sends one datagram a message.
			tx.flow.noRuns.Store(true)
			tx.msgs.split(tx.next)
		case errno == syscall.EMSGSIZE:
			tx.next++ // this one is too large for the socket; the rest may go
			tx.failed++
		default: // EAGAIN (the send buffer is full), or the socket failed
			return true
		}
	}
	return true
}
