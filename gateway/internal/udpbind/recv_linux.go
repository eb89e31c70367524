package udpbind

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"
)

// carryKeep is the largest carry buffer kept for the next overflow once drained.
const carryKeep = 1 << 20

// receiver reads one socket. With GRO one message may hold many datagrams, which need a
// buffer each: the read goes into the last m of the caller's buffers, and each message's
// datagrams are then copied forward into the first ones. m is chosen from the most datagrams
// one message brought lately (perMsg), so that a flood of small datagrams fills every buffer
// and a bulk transfer (up to 64 per message) reads a few messages. What does not fit waits in
// the carry for the next call.
type receiver struct {
	mu   sync.Mutex // one read at a time; guards the fields below
	s    *socket
	msgs [conn.IdealBatchSize]ipv6.Message
	oob  [conn.IdealBatchSize][]byte

	perMsg int // the most datagrams a message brings, lately (see nextPerMsg)

	carry     []byte    // datagrams that did not fit, back to back
	carried   []carried // their places in carry, in order
	carryNext int       // the first not yet returned
}

type carried struct {
	off, n int
	ep     *Endpoint
}

func (r *receiver) init(s *socket) {
	r.s = s
	for i := range r.msgs {
		r.oob[i] = make([]byte, rxControlLen)
	}
	r.perMsg = 1
}

// readMessages is how many messages a read into n buffers asks for when a message brings up
// to perMsg datagrams.
func readMessages(n, perMsg int) int {
	return min(max(n/max(perMsg, 1), 1), n)
}

// nextPerMsg is perMsg after a read whose fullest message brought most datagrams: most, or
// half the previous perMsg if that is more. One read that finds a single datagram (the reader
// caught up with a bulk sender) must not make the next ask for 128 messages of up to 64
// datagrams each, thousands of which would wait in the carry: with the average per message of
// the last read, which did that, growing the carry took 7.8 % of serve's CPU in a TCP upload.
// A flood of single datagrams after a bulk transfer still reads whole batches within six
// reads.
func nextPerMsg(perMsg, most int) int {
	return max(most, perMsg/2, 1)
}

// receiveIPv4 and receiveIPv6 are the receive functions (their names tell wireguard-go and the
// Mux the family: conn.ReceiveFunc.PrettyName).
func (s *socket) receiveIPv4(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	return s.rx.receive(bufs, sizes, eps)
}

func (s *socket) receiveIPv6(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	return s.rx.receive(bufs, sizes, eps)
}

func (r *receiver) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(len(bufs), len(sizes), len(eps), len(r.msgs))
	if n == 0 {
		return 0, nil
	}
	if r.s.closed.Load() {
		return 0, net.ErrClosed // also with datagrams carried
	}
	if r.carryNext < len(r.carried) {
		return r.drain(bufs[:n], sizes, eps), nil
	}
	m := n
	if r.s.gro {
		m = readMessages(n, r.perMsg)
	}
	first := n - m
	msgs := r.msgs[:m]
	for i := range msgs {
		msgs[i].Buffers = bufs[first+i : first+i+1]
		msgs[i].OOB = r.oob[i]
		msgs[i].Addr = nil
	}
	got, err := r.s.batch.ReadBatch(msgs, 0)
	if err != nil {
		return 0, err
	}
	st := &r.s.b.stats
	st[cReads].Add(1)
	st[cMessages].Add(uint64(got))

	pos, most, coalesced := 0, 1, 0
	var last *Endpoint
	for i := range got {
		msg := &msgs[i]
		slot := first + i
		meta := parseControl(msg.OOB[:msg.NN])
		ep := last
		if ua, ok := msg.Addr.(*net.UDPAddr); ok {
			ep = r.endpoint(last, ua, meta)
		} else if ep == nil {
			ep = &Endpoint{}
		}
		last = ep
		data := bufs[slot][:msg.N]
		g := meta.gso
		if g <= 0 || g >= len(data) {
			g = max(len(data), 1)
		} else {
			coalesced++
			most = max(most, (len(data)+g-1)/g)
		}
		for off := 0; ; off += g {
			end := min(off+g, len(data))
			// Copy forward only into buffers already read from: pos <= slot. At pos ==
			// slot the datagram moves to the front of its own buffer, before the ones
			// after it, which stay where they are.
			if len(r.carried) == 0 && pos <= slot {
				if off != 0 || pos != slot {
					copy(bufs[pos], data[off:end])
				}
				sizes[pos], eps[pos] = end-off, ep
				pos++
			} else {
				r.carried = append(r.carried, carried{off: len(r.carry), n: end - off, ep: ep})
				r.carry = append(r.carry, data[off:end]...)
			}
			if end >= len(data) {
				break
			}
		}
	}
	r.perMsg = nextPerMsg(r.perMsg, most)
	st[cCoalesced].Add(uint64(coalesced))
	st[cDatagrams].Add(uint64(pos))
	st[cCarried].Add(uint64(len(r.carried)))
	return pos, nil
}

// endpoint returns the endpoint of a datagram from ua that arrived as meta says: last when
// that is the same, else a new one.
func (r *receiver) endpoint(last *Endpoint, ua *net.UDPAddr, meta rxMeta) *Endpoint {
	ip, _ := netip.AddrFromSlice(ua.IP)
	dst := netip.AddrPortFrom(ip.Unmap().WithZone(ua.Zone), uint16(ua.Port))
	var ifindex int32
	if meta.local.Is6() && (meta.local.IsLinkLocalUnicast() || meta.local.IsLinkLocalMulticast()) {
		ifindex = meta.ifindex // a link-local source needs its interface
	}
	if last != nil && last.dst == dst && last.src == meta.local && last.ifindex == ifindex && !last.noSrc.Load() {
		return last
	}
	return &Endpoint{dst: dst, src: meta.local, ifindex: ifindex}
}

// drain returns carried datagrams, as many as fit.
func (r *receiver) drain(bufs [][]byte, sizes []int, eps []conn.Endpoint) int {
	pos := 0
	for ; pos < len(bufs) && r.carryNext < len(r.carried); pos++ {
		c := r.carried[r.carryNext]
		r.carryNext++
		sizes[pos] = copy(bufs[pos], r.carry[c.off:c.off+c.n])
		eps[pos] = c.ep
	}
	if r.carryNext == len(r.carried) {
		clear(r.carried) // drop the endpoints
		r.carried, r.carryNext = r.carried[:0], 0
		r.carry = r.carry[:0]
		if cap(r.carry) > carryKeep {
			r.carry = nil
		}
	}
	r.s.b.stats[cDatagrams].Add(uint64(pos))
	return pos
}
