package firewall

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Timeouts are how long a tracked flow lives after its last packet, by state. Zero fields
// take the default, which is Linux conntrack's.
type Timeouts struct {
	TCPSynSent     time.Duration // SYN seen, no SYN-ACK yet. Default 120 s.
	TCPSynRecv     time.Duration // SYN-ACK seen, no final ACK yet. Default 60 s.
	TCPEstablished time.Duration // Default 5 days.
	TCPFinWait     time.Duration // one side sent FIN. Default 120 s.
	TCPTimeWait    time.Duration // both sides sent FIN. Default 120 s.
	TCPClose       time.Duration // RST seen. Default 10 s.
	UDP            time.Duration // no reply seen yet. Default 30 s.
	UDPReplied     time.Duration // packets seen both ways. Default 120 s.
	ICMP           time.Duration // echo request/reply. Default 30 s.
	Other          time.Duration // any other IP protocol, tracked by addresses. Default 600 s.
	Fragment       time.Duration // how long later fragments of an accepted first fragment pass. Default 60 s.
}

func (t *Timeouts) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.TCPSynSent, 120*time.Second)
	def(&t.TCPSynRecv, 60*time.Second)
	def(&t.TCPEstablished, 5*24*time.Hour)
	def(&t.TCPFinWait, 120*time.Second)
	def(&t.TCPTimeWait, 120*time.Second)
	def(&t.TCPClose, 10*time.Second)
	def(&t.UDP, 30*time.Second)
	def(&t.UDPReplied, 120*time.Second)
	def(&t.ICMP, 30*time.Second)
	def(&t.Other, 600*time.Second)
	def(&t.Fragment, 60*time.Second)
}

// TCP states of a tracked flow, simplified from Linux conntrack: no sequence tracking, and
// CLOSE_WAIT/LAST_ACK fold into ctFinWait.
const (
	ctSynSent uint8 = iota + 1
	ctSynRecv
	ctEstablished
	ctFinWait
	ctTimeWait
	ctClose
)

// entry flag bits.
const (
	flagReplied  = 1 << iota // a packet went the reply way
	flagFinOrig              // the originator sent FIN
	flagFinReply             // the responder sent FIN
)

// flowKey names a flow in both directions: endpoint a is the lower of the two (address,
// port) pairs, so a packet and its reply give the same key. It has no padding so that the
// map hashes it as plain memory.
type flowKey struct {
	tenant int64
	a, b   [16]byte // IPv4 as IPv4-mapped IPv6
	pa, pb uint16   // ports; for ICMP echo both are the identifier
	proto  uint16   // IP protocol number (16 bits wide so that the struct has no padding)
	v6     uint16
}

// setFlow makes k the key of the flow a packet from src:sport to dst:dport belongs to, and
// reports whether the packet goes from a to b. The endpoints are ordered by any fixed total
// order (here: address bytes read as little-endian words, then port), cheap to compute.
func (k *flowKey) setFlow(tenant int64, proto uint8, src, dst netip.Addr, sport, dport uint16) bool {
	k.tenant, k.proto, k.v6 = tenant, uint16(proto), 0
	if src.Is6() {
		k.v6 = 1
	}
	k.a, k.b = src.As16(), dst.As16()
	k.pa, k.pb = sport, dport
	if c := compare16(&k.a, &k.b); c > 0 || c == 0 && sport > dport {
		k.a, k.b = k.b, k.a
		k.pa, k.pb = dport, sport
		return false
	}
	return true
}

// makeFlowKey is setFlow returning the key.
func makeFlowKey(tenant int64, proto uint8, src, dst netip.Addr, sport, dport uint16) (flowKey, bool) {
	var k flowKey
	aToB := k.setFlow(tenant, proto, src, dst, sport, dport)
	return k, aToB
}

func compare16(x, y *[16]byte) int {
	for i := 0; i < 16; i += 8 {
		xv, yv := binary.LittleEndian.Uint64(x[i:]), binary.LittleEndian.Uint64(y[i:])
		if xv != yv {
			if xv < yv {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (k *flowKey) addr(b *[16]byte) netip.Addr {
	a := netip.AddrFrom16(*b)
	if k.v6 == 0 {
		return a.Unmap()
	}
	return a
}

// hash picks the shard; the shard's map hashes the key again with its own seed.
func (k *flowKey) hash(seed uint64) uint64 {
	h := seed ^ uint64(k.tenant)*0x9e3779b97f4a7c15
	h = mix(h, binary.LittleEndian.Uint64(k.a[0:8]))
	h = mix(h, binary.LittleEndian.Uint64(k.a[8:16]))
	h = mix(h, binary.LittleEndian.Uint64(k.b[0:8]))
	h = mix(h, binary.LittleEndian.Uint64(k.b[8:16]))
	return mix(h, uint64(k.pa)|uint64(k.pb)<<16|uint64(k.proto)<<32)
}

func mix(h, v uint64) uint64 {
	hi, lo := bits.Mul64(h^v, 0xa0761d6478bd642f)
	return hi ^ lo
}

// entry is one tracked flow. Its fields are guarded by its shard's mutex, except those the
// comments give to its peer's.
type entry struct {
	key      flowKey
	tenant   *tenant
	peer     *Peer  // the peer the flow counts against; nil: none
	expires  int64  // monotonic nanoseconds
	gen      uint32 // generation of the rule set that last allowed the flow
	origAtoB bool   // the flow's first packet went from a to b
	state    uint8  // ctSynSent... for TCP
	flags    uint8

	// Guarded by peer.mu: on the peer's list of evictable entries, and its links there.
	listed     bool
	prev, next *entry
}

// evictable reports whether e may be dropped early to make room for a new flow of its peer:
// it never saw a reply, or it is a closed TCP connection (TIME_WAIT or after a RST), like
// the entries Linux's early drop and connlimit leave aside.
func (e *entry) evictable() bool {
	return e.flags&flagReplied == 0 || e.key.proto == ipprotoTCP && e.state >= ctTimeWait
}

// Peer is one peer's share of a Filter's flow table. The packet path passes it with each
// packet of the peer's (CheckAt): the new flows it opens count against it, and its tenant's
// per-peer bound (SetLimits) applies to them. When the peer is at a bound, its oldest
// evictable flow (one without a reply, or a closed TCP connection) is forgotten to make room;
// only when it has none is the new flow dropped. A flood of new flows thus recycles its own
// entries while the peer's established flows go on.
//
// The zero Peer is ready to use; it must not be copied. Keep one per peer for as long as the
// peer exists: its flows refer to it.
type Peer struct {
	tenant, name atomic.Pointer[string] // for the log

	mu      sync.Mutex // guards everything below and the list fields of its entries
	flows   int        // tracked flows counted against the peer
	head    *entry     // evictable entries, oldest first
	tail    *entry
	logged  [2]bool  // the peer bound, the tenant bound: logged before …
	lastLog [2]int64 // … at this Filter.now
}

// SetName names the peer and its tenant in the Filter's log. Safe to call at any time.
func (p *Peer) SetName(tenant, peer string) {
	if t := p.tenant.Load(); t == nil || *t != tenant {
		p.tenant.Store(&tenant)
	}
	if n := p.name.Load(); n == nil || *n != peer {
		p.name.Store(&peer)
	}
}

func (p *Peer) names() (tenant, peer string) {
	if t := p.tenant.Load(); t != nil {
		tenant = *t
	}
	if n := p.name.Load(); n != nil {
		peer = *n
	}
	return tenant, peer
}

// Flows returns the number of tracked flows counted against the peer.
func (p *Peer) Flows() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flows
}

// pushLocked appends e, newly evictable, to the list.
func (p *Peer) pushLocked(e *entry) {
	e.listed, e.prev, e.next = true, p.tail, nil
	if p.tail != nil {
		p.tail.next = e
	} else {
		p.head = e
	}
	p.tail = e
}

func (p *Peer) unlistLocked(e *entry) {
	if !e.listed {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		p.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		p.tail = e.prev
	}
	e.listed, e.prev, e.next = false, nil, nil
}

// relistLocked moves e on or off its peer's list after a packet changed whether it is
// evictable (wasEvictable). The caller holds e's shard lock.
func (e *entry) relistLocked(wasEvictable bool) {
	p := e.peer
	if p == nil {
		return
	}
	if now := e.evictable(); now != wasEvictable {
		p.mu.Lock()
		if now {
			p.pushLocked(e)
		} else {
			p.unlistLocked(e)
		}
		p.mu.Unlock()
	}
}

// origFlow returns the flow as its first packet had it, for re-checking against policy.
func (e *entry) origFlow() Flow {
	k := &e.key
	f := Flow{Src: k.addr(&k.a), Dst: k.addr(&k.b), Proto: uint8(k.proto), DstPort: k.pb}
	if !e.origAtoB {
		f.Src, f.Dst, f.DstPort = f.Dst, f.Src, k.pa
	}
	if k.proto != ipprotoTCP && k.proto != ipprotoUDP {
		f.DstPort = 0
	}
	return f
}

// update outcomes.
const (
	updOK      = iota
	updInvalid // the packet does not fit the flow's state
	updRestart // a SYN reopens a closed flow: track it afresh
)

// updateLocked advances e by pkt, going the original way when orig, and sets its expiry.
func (e *entry) updateLocked(pkt *Packet, orig bool, now int64, to *Timeouts) int {
	if e.peer == nil {
		return e.advanceLocked(pkt, orig, now, to)
	}
	was := e.evictable()
	r := e.advanceLocked(pkt, orig, now, to)
	if r != updRestart {
		e.relistLocked(was)
	}
	return r
}

// advanceLocked is updateLocked without the peer's bookkeeping.
func (e *entry) advanceLocked(pkt *Packet, orig bool, now int64, to *Timeouts) int {
	if !orig {
		e.flags |= flagReplied
	}
	var ttl time.Duration
	switch e.key.proto {
	case ipprotoTCP:
		fl := pkt.TCPFlags
		switch {
		case fl&TCPRst != 0:
			e.state = ctClose
		case fl&TCPSyn != 0 && fl&TCPAck == 0:
			if e.state == ctTimeWait || e.state == ctClose {
				return updRestart
			}
		case fl&TCPSyn != 0:
			if !orig && e.state == ctSynSent {
				e.state = ctSynRecv
			}
		case fl&TCPFin != 0:
			if orig {
				e.flags |= flagFinOrig
			} else {
				e.flags |= flagFinReply
			}
			if e.flags&(flagFinOrig|flagFinReply) == flagFinOrig|flagFinReply {
				e.state = max(e.state, ctTimeWait)
			} else {
				e.state = max(e.state, ctFinWait)
			}
		case orig && e.state == ctSynRecv:
			e.state = ctEstablished
		}
		switch e.state {
		case ctSynSent:
			ttl = to.TCPSynSent
		case ctSynRecv:
			ttl = to.TCPSynRecv
		case ctEstablished:
			ttl = to.TCPEstablished
		case ctFinWait:
			ttl = to.TCPFinWait
		case ctTimeWait:
			ttl = to.TCPTimeWait
		default:
			ttl = to.TCPClose
		}
	case ipprotoUDP:
		ttl = to.UDP
		if e.flags&flagReplied != 0 {
			ttl = to.UDPReplied
		}
	case ipprotoICMP, ipprotoICMPv6:
		if isEchoRequest(pkt.Proto, pkt.ICMPType) != orig {
			return updInvalid
		}
		ttl = to.ICMP
	default:
		ttl = to.Other
	}
	e.expires = now + int64(ttl)
	return updOK
}

// tcpValidFlags reports whether the SYN/ACK/RST/FIN combination can occur in a connection:
// after the first SYN every segment carries ACK.
func tcpValidFlags(fl uint8) bool {
	switch fl & (TCPSyn | TCPAck | TCPRst | TCPFin) {
	case TCPSyn, TCPSyn | TCPAck, TCPRst, TCPRst | TCPAck, TCPAck, TCPFin | TCPAck:
		return true
	}
	return false
}

// fragKey names the fragments of one IP packet.
type fragKey struct {
	tenant   int64
	src, dst [16]byte
	id       uint32
	proto    uint16
	v6       uint16
}

func (k *fragKey) hash(seed uint64) uint64 {
	h := seed ^ uint64(k.tenant)*0x9e3779b97f4a7c15
	h = mix(h, binary.LittleEndian.Uint64(k.src[0:8]))
	h = mix(h, binary.LittleEndian.Uint64(k.src[8:16]))
	h = mix(h, binary.LittleEndian.Uint64(k.dst[0:8]))
	h = mix(h, binary.LittleEndian.Uint64(k.dst[8:16]))
	return mix(h, uint64(k.id)|uint64(k.proto)<<32)
}

func makeFragKey(tenant int64, pkt *Packet) fragKey {
	k := fragKey{tenant: tenant, src: pkt.Src.As16(), dst: pkt.Dst.As16(), id: pkt.FragID, proto: uint16(pkt.Proto)}
	if pkt.Src.Is6() {
		k.v6 = 1
	}
	return k
}

// fragSlot remembers one accepted first fragment. The table is direct-mapped: a newer
// packet's fragments may evict an older one's, whose later fragments are then dropped.
type fragSlot struct {
	key     fragKey
	expires int64
	gen     uint32
}

const (
	numShards     = 64
	fragsPerShard = 64 // 4,096 packets in reassembly at once over all shards
	entryChunk    = 64 // entries allocated at a time
)

// ctShard is one lock's share of the flow table.
type ctShard struct {
	mu    sync.Mutex
	flows map[flowKey]*entry
	free  []*entry
	frags [fragsPerShard]fragSlot
	_     [64]byte // keep neighbouring shards' locks off one cache line
}

// allocLocked returns a zeroed entry from the free list, refilling it a chunk at a time.
func (s *ctShard) allocLocked() *entry {
	if len(s.free) == 0 {
		chunk := make([]entry, entryChunk)
		for i := range chunk {
			s.free = append(s.free, &chunk[i])
		}
	}
	e := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return e
}

// removeLocked deletes e from the shard and gives its place back to the free list.
func (s *ctShard) removeLocked(e *entry) {
	delete(s.flows, e.key)
	if p := e.peer; p != nil {
		p.mu.Lock()
		p.unlistLocked(e)
		p.flows--
		p.mu.Unlock()
	}
	e.tenant.release()
	*e = entry{}
	s.free = append(s.free, e)
}
