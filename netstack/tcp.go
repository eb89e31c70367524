package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// dialTimeout bounds re-originating one flow; the client's SYN retransmissions wait
	// (gVisor's forwarder dedups them) and get a RST when it expires.
	dialTimeout = 10 * time.Second

	// Keepalive on the client leg finds clients that vanished (roamed away, slept, lost
	// their tunnel) in ≈ 2m + 8×30s, so their host sockets do not linger for hours. Silent
	// but alive clients answer probes through the tunnel and keep their flows.
	tcpKeepaliveIdle     = 2 * time.Minute
	tcpKeepaliveInterval = 30 * time.Second
	tcpKeepaliveCount    = 8

	// relayBufSize is the copy buffer of one direction of one TCP flow, held while the
	// flow lives, so it bounds an idle flow's cost (64 KiB per flow, both ways). Against
	// 128 KiB, BenchmarkTCPDownload showed no difference beyond its run-to-run noise.
	// (Later: wait for readiness without a buffer, borrow one only while data is ready.)
	relayBufSize = 32 << 10
)

var relayBufs = sync.Pool{New: func() any {
	b := make([]byte, relayBufSize)
	return &b
}}

// handleTCP is gVisor's TCP forwarder callback: one goroutine per new SYN. It dials the
// destination first and only then completes the client's handshake, so a refused or
// unreachable destination shows the client a RST, not an accepted-then-closed connection.
func (e *Exit) handleTCP(r *tcp.ForwarderRequest) {
	if !e.enter() {
		r.Complete(true)
		return
	}
	defer e.wg.Done()

	id := r.ID()
	dst := netip.AddrPortFrom(addrFrom(id.LocalAddress), id.LocalPort)
	local := e.isLocal(dst.Addr())
	if local && !e.dnsPort(dst.Port()) {
		r.Complete(true) // nothing listens there
		return
	}
	// Until the client's handshake completes the flow is unreplied: an eviction cancels
	// its dial and the client gets a RST.
	ctx, cancel := context.WithTimeout(e.ctx, dialTimeout)
	defer cancel()
	af := e.admit(addrFrom(id.RemoteAddress), kindTCP, tcpDial(cancel))
	if af == nil {
		r.Complete(true)
		return
	}
	defer e.acct.release(af)
	if local && e.cfg.DNSServer != nil {
		e.serveDNSTCP(r, af)
		return
	}

	var host net.Conn
	var err error
	if local {
		host, err = e.dialDNS(ctx, "tcp")
	} else {
		host, err = e.cfg.Dialer.DialContext(ctx, "tcp", dst.String())
	}
	if err != nil {
		e.st.dialFailures.Add(1)
		e.log.Debug("tcp: dial failed", "src", remoteOf(id), "dst", dst, "err", err)
		r.Complete(true)
		return
	}

	if !e.acct.assure(af) { // evicted while it dialled
		host.Close()
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		// The client gave up (RST) or the stack is closing.
		host.Close()
		r.Complete(true)
		return
	}
	r.Complete(false)
	setKeepalive(ep)
	sizeSendBuffer(ep)

	f := &tcpFlow{ep: ep, client: gonet.NewTCPConn(&wq, ep), host: host}
	if !e.track(f) {
		f.abort()
		return
	}
	defer e.forget(f)
	e.st.tcpFlows.Add(1)
	defer e.st.tcpFlows.Add(-1)
	e.relayTCP(f)
}

// sizeSendBuffer fixes the send buffer of a flow whose client is close by (see
// sendBufferFor), from the RTT its handshake measured; the others keep gVisor's tuning.
func sizeSendBuffer(ep tcpip.Endpoint) {
	var info tcpip.TCPInfoOption
	if err := ep.GetSockOpt(&info); err != nil {
		return
	}
	if n, ok := sendBufferFor(info.RTT); ok {
		ep.SocketOptions().SetSendBufferSize(int64(n), true)
	}
}

// sendBufferFor returns the send buffer for a client leg whose handshake took rtt, and
// whether to fix it there rather than let gVisor grow it up to tcpTXBufMax with the
// congestion window.
//
// gVisor's TCP is Reno without pacing: it grows its window until a packet is lost, and the
// send buffer is what bounds the window. In flight beyond the path's bandwidth-delay product
// is only a queue, and for a client a millisecond away that queue sits in its UDP socket:
// four streams downloading through the userspace exit to a stock client overflowed it (its
// namespace counted RcvbufErrors), and the losses at the ends of bursts cost retransmission
// timeouts (docs/perf-tcp.md). A flow whose handshake took less than tcpTXBufMax /
// tcpPathRate (≈ 5 ms) gets its product at tcpPathRate, at least tcpTXBufNear; the others,
// WAN clients, are not bounded below what they may need.
func sendBufferFor(rtt time.Duration) (int, bool) {
	if rtt <= 0 || rtt.Seconds()*tcpPathRate >= tcpTXBufMax {
		return 0, false
	}
	return max(tcpTXBufNear, int(rtt.Seconds()*tcpPathRate)), true
}

// tcpDial is a TCP flow while its dial runs: evicting it cancels the dial.
type tcpDial context.CancelFunc

func (d tcpDial) abort() { d() }

func setKeepalive(ep tcpip.Endpoint) {
	ep.SocketOptions().SetKeepAlive(true)
	idle := tcpip.KeepaliveIdleOption(tcpKeepaliveIdle)
	ep.SetSockOpt(&idle)
	intvl := tcpip.KeepaliveIntervalOption(tcpKeepaliveInterval)
	ep.SetSockOpt(&intvl)
	ep.SetSockOptInt(tcpip.KeepaliveCountOption, tcpKeepaliveCount)
}

// tcpFlow is one terminated TCP connection and its re-originated twin.
type tcpFlow struct {
	ep     tcpip.Endpoint
	client *gonet.TCPConn // the client leg, in gVisor
	host   net.Conn       // the host socket

	once sync.Once
}

// relayTCP copies both ways until both directions are done, passing a half-close (FIN)
// through as CloseWrite and an error (RST) as an abort of both legs.
func (e *Exit) relayTCP(f *tcpFlow) {
	errc := make(chan error, 1)
	if !e.goFlow(nil, func() { errc <- f.pipe(f.client, f.host) }) {
		f.abort()
		return
	}
	f.pipe(f.host, f.client)
	<-errc
	f.close()
}

// pipe copies src to dst. At EOF it half-closes dst; on any error it aborts the flow,
// which also unblocks the other direction.
func (f *tcpFlow) pipe(dst, src net.Conn) error {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				f.abort()
				return werr
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				closeWrite(dst)
				return nil
			}
			f.abort()
			return rerr
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// close ends a flow whose both directions finished: FIN on both legs.
func (f *tcpFlow) close() {
	f.once.Do(func() {
		f.client.Close()
		f.host.Close()
	})
}

// abort ends a flow at once: RST on both legs (linger 0), unblocking both copies.
func (f *tcpFlow) abort() {
	f.once.Do(func() {
		f.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true})
		if tc, ok := f.host.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		f.client.Close()
		f.host.Close()
	})
}

// addrFrom converts a gVisor address; the stack only carries 4- and 16-byte ones.
func addrFrom(a tcpip.Address) netip.Addr {
	if a.Len() == 4 {
		return netip.AddrFrom4(a.As4())
	}
	return netip.AddrFrom16(a.As16())
}

// remoteOf is the client's side of a forwarded flow.
func remoteOf(id stack.TransportEndpointID) netip.AddrPort {
	return netip.AddrPortFrom(addrFrom(id.RemoteAddress), id.RemotePort)
}
