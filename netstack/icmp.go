package netstack

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// ICMP echo is handled before gVisor: requests to a LocalAddr are answered here; requests
// to anything else are re-originated by the Pinger, and its replies are turned back into
// echo replies from the pinged address to the client.

const (
	// pingTimeout is how long an echo request waits for its reply (ping's default -W is 10s).
	pingTimeout = 10 * time.Second
	// replyTTL is the TTL (hop limit) of the packets the exit synthesises.
	replyTTL = 64
)

// handleEcho answers or re-originates one echo request; p is the whole IP packet. An echo
// request waiting for its reply is a flow of its client's (kindICMP), bounded like the others.
func (e *Exit) handleEcho(p []byte, pi *pktInfo) {
	icmp := p[pi.l4:]
	id := binary.BigEndian.Uint16(icmp[4:6])
	seq := binary.BigEndian.Uint16(icmp[6:8])
	payload := icmp[icmpHeaderLen:]

	if e.isLocal(pi.dst) {
		bp := getBuf()
		e.emit(buildEchoReply(*bp, pi.dst, pi.src, id, seq, payload))
		putBuf(bp)
		e.st.localEchoReplies.Add(1)
		return
	}

	ent := &pingEntry{client: pi.src, clientID: id, expires: e.now() + int64(pingTimeout)}
	if ent.acct = e.admit(pi.src, kindICMP, ent); ent.acct == nil {
		return // counted
	}
	exitID, ok := e.pings.add(pi.dst, seq, ent)
	if !ok {
		e.acct.release(ent.acct)
		e.st.drop(DropPingLimit)
		return
	}
	if err := e.pinger.Ping(e.ctx, pi.dst, exitID, seq, payload); err != nil {
		e.pings.remove(ent)
		if errors.Is(err, ErrPingUnavailable) {
			e.st.drop(DropPingUnavailable)
		} else {
			e.st.drop(DropPingFailed)
		}
		return
	}
	e.st.pingsSent.Add(1)
}

// onEchoReply is the Pinger's reply callback: it finds the client that asked and sends it
// the echo reply.
func (e *Exit) onEchoReply(src netip.Addr, id, seq uint16, payload []byte) {
	src = src.Unmap()
	ent, ok := e.pings.take(pingKey{src, id, seq}, e.now())
	if !ok {
		return // late, duplicate, or not ours (a raw socket sees every reply on the host)
	}
	bp := getBuf()
	defer putBuf(bp)
	e.emit(buildEchoReply(*bp, src, ent.client, ent.clientID, seq, payload))
	e.st.pingsAnswered.Add(1)
}

// expirePings forgets echo requests that went unanswered for pingTimeout, every
// pingTimeout, until Close.
func (e *Exit) expirePings() {
	t := time.NewTicker(pingTimeout)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			e.pings.expire(e.now())
		}
	}
}

// pingKey names one outstanding echo request as the Pinger sees it.
type pingKey struct {
	dst     netip.Addr
	id, seq uint16
}

// pingEntry is one outstanding echo request.
type pingEntry struct {
	t        *pingTable
	key      pingKey // set by add
	client   netip.Addr
	clientID uint16
	expires  int64     // e.now() after which the entry is dead
	acct     *acctFlow // released when the entry leaves the table
}

// abort forgets the request: an eviction (its reply, should it come, is dropped).
func (ent *pingEntry) abort() { ent.t.remove(ent) }

// maxPingIDTries bounds the ids tried for one request whose id is taken.
const maxPingIDTries = 16

// pingTable maps outstanding echo requests back to their clients. Two clients may ping
// the same destination with the same id and seq, so the exit substitutes its own id when
// the client's is taken, like a NAT does for ICMP query ids. Its size is bounded by the
// flow limits, which count every entry.
type pingTable struct {
	acct   *acct
	mu     sync.Mutex // guards m, nextID
	m      map[pingKey]*pingEntry
	nextID uint16
}

func (t *pingTable) init(a *acct) {
	t.acct = a
	t.m = make(map[pingKey]*pingEntry)
	t.nextID = 0x8000
}

// add records ent, a request to dst with seq, and returns the id to send it with; false
// when no id is free.
func (t *pingTable) add(dst netip.Addr, seq uint16, ent *pingEntry) (uint16, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ent.t = t
	id := ent.clientID
	for range maxPingIDTries {
		k := pingKey{dst, id, seq}
		old, taken := t.m[k]
		if !taken || old.expires < ent.expires-int64(pingTimeout) || (old.client == ent.client && old.clientID == ent.clientID) {
			if taken {
				t.forgetLocked(old)
			}
			ent.key = k
			t.m[k] = ent
			return id, true
		}
		id = t.nextID
		t.nextID++
	}
	return 0, false
}

// take removes and returns the live entry for k.
func (t *pingTable) take(k pingKey, now int64) (*pingEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ent, ok := t.m[k]
	if !ok {
		return nil, false
	}
	t.forgetLocked(ent)
	return ent, ent.expires >= now
}

// remove forgets ent if it is still in the table.
func (t *pingTable) remove(ent *pingEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[ent.key] == ent {
		t.forgetLocked(ent)
	}
}

// expire forgets the entries dead at now.
func (t *pingTable) expire(now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ent := range t.m {
		if ent.expires < now {
			t.forgetLocked(ent)
		}
	}
}

func (t *pingTable) forgetLocked(ent *pingEntry) {
	delete(t.m, ent.key)
	t.acct.release(ent.acct)
}

// buildEchoReply writes an IP packet carrying an echo reply from src to dst into buf and
// returns it. A payload that would not fit in buf or in one IP packet is truncated.
func buildEchoReply(buf []byte, src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	typ, hl := byte(icmpv4EchoReply), ipv4HeaderLen
	if src.Is6() {
		typ, hl = icmpv6EchoReply, ipv6HeaderLen
	}
	room := min(len(buf)-hl, 0xffff-ipv4HeaderLen) - icmpHeaderLen
	if len(payload) > room {
		payload = payload[:room]
	}
	icmp := buf[hl : hl+icmpHeaderLen+len(payload)]
	icmp[0], icmp[1] = typ, 0
	binary.BigEndian.PutUint16(icmp[4:6], id)
	binary.BigEndian.PutUint16(icmp[6:8], seq)
	copy(icmp[icmpHeaderLen:], payload)
	return finishICMP(buf, src, dst, len(icmp))
}

// buildUDPUnreachable writes an ICMP destination unreachable from `from` to the client,
// quoting a datagram client → dst rebuilt from the addresses: port unreachable, or
// communication administratively prohibited.
func buildUDPUnreachable(buf []byte, from netip.Addr, client, dst netip.AddrPort, prohibited bool) []byte {
	v6 := client.Addr().Is6()
	hl := ipv4HeaderLen
	typ, code := byte(icmpv4Unreachable), byte(3) // port unreachable
	if prohibited {
		code = 13
	}
	if v6 {
		hl = ipv6HeaderLen
		typ, code = icmpv6Unreachable, 4
		if prohibited {
			code = 1
		}
	}
	icmp := buf[hl : hl+icmpHeaderLen+hl+udpHeaderLen]
	icmp[0], icmp[1] = typ, code
	clear(icmp[4:8]) // unused (and, for v4, the next-hop MTU)
	quote := icmp[icmpHeaderLen:]
	putIPHeader(quote, client.Addr(), dst.Addr(), protoUDP, udpHeaderLen)
	udp := quote[hl:]
	binary.BigEndian.PutUint16(udp[0:2], client.Port())
	binary.BigEndian.PutUint16(udp[2:4], dst.Port())
	binary.BigEndian.PutUint16(udp[4:6], udpHeaderLen)
	clear(udp[6:8])
	return finishICMP(buf, from, client.Addr(), len(icmp))
}

// finishICMP writes the IP header in front of an ICMP(v6) message of n bytes already at
// buf[hl:], computes the ICMP checksum (with the pseudo-header for ICMPv6), and returns
// the packet.
func finishICMP(buf []byte, src, dst netip.Addr, n int) []byte {
	proto, hl := byte(protoICMP), ipv4HeaderLen
	if src.Is6() {
		proto, hl = protoICMPv6, ipv6HeaderLen
	}
	putIPHeader(buf, src, dst, proto, n)
	icmp := buf[hl : hl+n]
	icmp[2], icmp[3] = 0, 0
	var sum uint16
	if proto == protoICMPv6 {
		sum = pseudoHeaderSum(src, dst, proto, n)
	}
	binary.BigEndian.PutUint16(icmp[2:4], ^checksum.Checksum(icmp, sum))
	return buf[:hl+n]
}

// putIPHeader writes an IPv4 (with checksum) or IPv6 header for payloadLen bytes of proto.
func putIPHeader(b []byte, src, dst netip.Addr, proto byte, payloadLen int) {
	if src.Is6() {
		binary.BigEndian.PutUint32(b[0:4], 6<<28)
		binary.BigEndian.PutUint16(b[4:6], uint16(payloadLen))
		b[6], b[7] = proto, replyTTL
		s, d := src.As16(), dst.As16()
		copy(b[8:24], s[:])
		copy(b[24:40], d[:])
		return
	}
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:4], uint16(ipv4HeaderLen+payloadLen))
	clear(b[4:8]) // id, flags, fragment offset
	b[8], b[9] = replyTTL, proto
	b[10], b[11] = 0, 0
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:12], ^checksum.Checksum(b[:ipv4HeaderLen], 0))
}

// pseudoHeaderSum is the (uncomplemented) checksum of the IPv6 pseudo-header.
func pseudoHeaderSum(src, dst netip.Addr, proto byte, length int) uint16 {
	s, d := src.As16(), dst.As16()
	sum := checksum.Checksum(s[:], 0)
	sum = checksum.Checksum(d[:], sum)
	sum = checksum.Combine(sum, uint16(length>>16))
	sum = checksum.Combine(sum, uint16(length))
	return checksum.Combine(sum, uint16(proto))
}
