package netstack

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// linkEndpoint is the exit's NIC: a point-to-point IP link with no link header, no queue
// and no goroutine. Inbound packets are delivered synchronously by Write's goroutine
// (consecutive TCP segments of a flow in one batch coalesced, coalesce.go); outbound packets
// are handed to out, in batches, on the goroutine gVisor writes them from.
//
// It advertises host GSO (SupportedGSO), so gVisor's TCP builds one segment, with a partial
// checksum, per up to 64 KiB instead of one per MSS, and WritePackets splits it into
// MTU-sized packets with full checksums (tso.go). Each direction copies a packet at most
// once: inbound into a gVisor buffer, outbound into a pooled batch (a packet gVisor finished
// is passed without a copy when it lies in one view).
//
// Because nothing is queued nothing is dropped here: backpressure is whatever out does,
// which avoids the retransmission storms of a dropping queue.
//
// Later (issue: performance): coalescing across Write calls would need a flush timer;
// within a batch it is free.
type linkEndpoint struct {
	mtu atomic.Uint32
	out func(pkts [][]byte)
	gro bool // coalesce inbound TCP segments
	// verifyRX makes gVisor verify inbound checksums. Off for the exit (see Capabilities);
	// on for the tests' client stack, so that it checks every checksum the exit computes.
	// It rules out gro: the NIC resets RXChecksumValidated from Capabilities, so a
	// coalesced segment (whose TCP checksum is its first segment's) would then fail.
	verifyRX bool

	mu         sync.RWMutex // guards dispatcher, onClose
	dispatcher stack.NetworkDispatcher
	onClose    func()

	inPool  sync.Pool // *inbound
	outPool sync.Pool // *outBatch

	// coalesced counts the TCP segments that entered the stack inside another's packet.
	coalesced atomic.Uint64
}

var (
	_ stack.LinkEndpoint = (*linkEndpoint)(nil)
	_ stack.GSOEndpoint  = (*linkEndpoint)(nil)
)

func newLinkEndpoint(mtu uint32, out func([][]byte), groEnabled bool) *linkEndpoint {
	l := &linkEndpoint{out: out, gro: groEnabled}
	l.mtu.Store(mtu)
	l.inPool.New = func() any { return &inbound{l: l} }
	l.outPool.New = func() any { return newOutBatch() }
	return l
}

// inbound delivers one batch of packets into the stack, in order. Not safe for concurrent
// use; each Write takes its own from a pool.
type inbound struct {
	l *linkEndpoint
	d stack.NetworkDispatcher

	// run holds TCP segments of one flow waiting to enter as one packet (coalesce.go): the
	// caller's bytes, valid until finish. first and last are its ends' headers, total the
	// length of the packet they make.
	run         [][]byte
	first, last seg
	total       int
}

// beginInbound starts a batch. The caller must call finish.
func (l *linkEndpoint) beginInbound() *inbound {
	in := l.inPool.Get().(*inbound)
	l.mu.RLock()
	in.d = l.dispatcher
	l.mu.RUnlock()
	return in
}

// deliver hands one IP packet (validated and trimmed by parsePacket) to the stack, or adds
// it to the run of its flow's segments; p must stay valid until finish.
func (in *inbound) deliver(p []byte, v6 bool) {
	if in.d == nil {
		return
	}
	if !in.l.gro || in.l.verifyRX {
		in.dispatch(copyIn(p), v6)
		return
	}
	s, ok := parseSeg(p, v6)
	if len(in.run) > 0 {
		if ok && in.total+s.payload < maxRun && follows(in.run[0], &in.first, &in.last, p, &s) {
			in.run = append(in.run, p)
			in.last = s
			in.total += s.payload
			return
		}
		in.flushRun()
	}
	if ok && s.startsRun() {
		in.run = append(in.run, p)
		in.first, in.last, in.total = s, s, len(p)
		return
	}
	in.dispatch(copyIn(p), v6)
}

// flushRun hands the run to the stack: one packet, whatever its length.
func (in *inbound) flushRun() {
	var pkt *stack.PacketBuffer
	if len(in.run) == 1 {
		pkt = copyIn(in.run[0])
	} else {
		pkt = coalesce(in.run, &in.first, &in.last, in.total)
		in.l.coalesced.Add(uint64(len(in.run) - 1))
	}
	in.dispatch(pkt, in.first.ip == ipv6HeaderLen)
	clear(in.run)
	in.run = in.run[:0]
}

// copyIn copies p into a packet buffer.
func copyIn(p []byte) *stack.PacketBuffer {
	return stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
}

// dispatch hands pkt to the stack and drops the caller's reference.
func (in *inbound) dispatch(pkt *stack.PacketBuffer, v6 bool) {
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	if v6 {
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	}
	// See Capabilities: WireGuard authenticated the packet, checksums add nothing.
	pkt.RXChecksumValidated = !in.l.verifyRX
	in.d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
	pkt.DecRef()
}

// finish delivers the run still waiting and returns in to the pool.
func (in *inbound) finish() {
	if in.d != nil && len(in.run) > 0 {
		in.flushRun()
	}
	clear(in.run)
	in.run = in.run[:0]
	in.d = nil
	in.l.inPool.Put(in)
}

// WritePackets hands gVisor's outbound packets to out, in batches of up to outBatchMax:
// TCP segments built for GSO split into packets that fit the MTU, every other packet as
// gVisor built it. It never fails, and drops only a GSO segment whose headers it cannot
// parse, which gVisor does not build.
func (l *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	mtu := int(l.mtu.Load())
	b := l.outPool.Get().(*outBatch)
	for _, pkt := range pkts.AsSlice() {
		switch pkt.GSOOptions.Type {
		case stack.GSOTCPv4, stack.GSOTCPv6:
			b.addTCPSegments(pkt, mtu, l.out)
		default:
			b.addPacket(pkt, l.out)
		}
	}
	b.flush(l.out)
	l.outPool.Put(b)
	return pkts.Len(), nil
}

// contiguous returns the packet's bytes without copying when they lie in one view, else nil.
func contiguous(pkt *stack.PacketBuffer) []byte {
	vl, off := pkt.AsViewList()
	var only []byte
	for v := vl.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		s = s[off:]
		off = 0
		if only != nil {
			return nil
		}
		only = s
	}
	return only
}

// gsoMaxSize bounds the segments gVisor's TCP builds for GSO. Its sender keeps a segment's
// payload below GSOMaxSize minus the largest TCP header (transport/tcp/snd.go sendData), so
// with 64 KiB the IP and TCP headers still fit IPv4's total length and IPv6's payload length.
const gsoMaxSize = 1 << 16

// GSOMaxSize implements stack.GSOEndpoint.
func (*linkEndpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements stack.GSOEndpoint: "host" GSO, whose segments come with options
// (MSS, a partial checksum) for the link to split, unlike gVisor's own GSO, which splits
// them in gVisor, one PacketBuffer per MTU.
func (*linkEndpoint) SupportedGSO() stack.SupportedGSO { return stack.HostGSOSupported }

// MTU implements stack.LinkEndpoint.
func (l *linkEndpoint) MTU() uint32 { return l.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.
func (l *linkEndpoint) SetMTU(mtu uint32) { l.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint: there is no link header.
func (*linkEndpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint: an IP link has none.
func (*linkEndpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint.
func (*linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint. Receive checksums are not verified: every
// client packet was authenticated by WireGuard, so a bad checksum can only come from the
// client itself and hurts only its own flow. Transmit checksums are computed, since clients
// verify them: by gVisor, except for GSO TCP segments, which WritePackets completes per
// packet (gVisor leaves their checksum partial whatever this says, so
// CapabilityTXChecksumOffload would only leave UDP, SYN and RST checksums empty).
func (l *linkEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	if l.verifyRX {
		return 0
	}
	return stack.CapabilityRXChecksumOffload
}

// Attach implements stack.LinkEndpoint.
func (l *linkEndpoint) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (l *linkEndpoint) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

// Wait implements stack.LinkEndpoint: there are no goroutines to wait for.
func (*linkEndpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (*linkEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint: there is no link header.
func (*linkEndpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint: there is no link header.
func (*linkEndpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint.
func (l *linkEndpoint) Close() {
	l.mu.Lock()
	f := l.onClose
	l.onClose = nil
	l.mu.Unlock()
	if f != nil {
		f()
	}
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (l *linkEndpoint) SetOnCloseAction(f func()) {
	l.mu.Lock()
	l.onClose = f
	l.mu.Unlock()
}

// bufPool holds scratch buffers big enough for any IP packet.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 1<<16)
	return &b
}}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }
