package netstack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// udpBufSize is a copy buffer of one direction of a UDP flow: a whole datagram, since a
// host reply may exceed the tunnel MTU (gVisor fragments it) and a client's fragments are
// reassembled. Pooled, but held while the flow lives (see relayBufSize).
const udpBufSize = 64 << 10

// handleUDP is gVisor's UDP forwarder callback, called synchronously by Write for a
// datagram no flow claims. It must not block: it creates the client leg, which queues
// this first datagram, and leaves the dial to the flow's goroutine.
func (e *Exit) handleUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	dst := netip.AddrPortFrom(addrFrom(id.LocalAddress), id.LocalPort)
	src := remoteOf(id)
	local := e.isLocal(dst.Addr())
	if local && !e.dnsPort(dst.Port()) {
		e.sendUnreachable(src, dst, false)
		return
	}
	if !e.reserveFlow() {
		e.sendUnreachable(src, dst, true)
		return
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		e.releaseFlow()
		return
	}
	f := &udpFlow{e: e, client: gonet.NewUDPConn(&wq, ep), src: src, dst: dst, idle: e.cfg.UDPIdleTimeout}
	run := f.relay
	if local {
		run = f.serveDNS
		f.idle = min(f.idle, dnsIdleTimeout)
	}
	if !e.goFlow(f, run) {
		f.client.Close()
		e.releaseFlow()
	}
}

// udpFlow is one (client addr:port, destination addr:port) pair and its host socket.
type udpFlow struct {
	e        *Exit
	client   *gonet.UDPConn // the client leg, in gVisor
	src, dst netip.AddrPort
	idle     time.Duration // close after this long without a datagram either way
	last     atomic.Int64  // e.now() of the last datagram either way

	mu      sync.Mutex // guards host, aborted
	host    net.Conn   // the host socket; for DNS, the upstream being asked
	aborted bool
}

// relay dials the destination and copies datagrams both ways until the flow has been idle
// for UDPIdleTimeout or either leg fails.
func (f *udpFlow) relay() {
	e := f.e
	defer e.releaseFlow()
	e.st.udpFlows.Add(1)
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
	if !f.setHost(host) {
		return
	}
	f.last.Store(e.now())

	done := make(chan struct{})
	if !e.goFlow(nil, func() { defer close(done); f.hostToClient(host) }) {
		return
	}
	f.clientToHost(host)
	f.abort()
	<-done
}

func (f *udpFlow) clientToHost(host net.Conn) {
	bp := getBuf()
	defer putBuf(bp)
	buf := (*bp)[:udpBufSize]
	var armed bool
	for {
		n, err := f.read(f.client, buf, &armed)
		if err != nil {
			return
		}
		// A send error (e.g. ECONNREFUSED left by an earlier ICMP error) is transient for UDP.
		host.Write(buf[:n])
	}
}

func (f *udpFlow) hostToClient(host net.Conn) {
	bp := getBuf()
	defer putBuf(bp)
	buf := (*bp)[:udpBufSize]
	var armed bool
	for {
		n, err := f.read(host, buf, &armed)
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The destination answered ICMP port unreachable: tell the client so.
			f.e.sendUnreachable(f.src, f.dst, false)
			continue
		}
		if err != nil {
			return
		}
		if _, err := f.client.Write(buf[:n]); err != nil {
			return
		}
	}
}

// read reads one datagram from c, refreshing the flow's idle clock. It returns an error
// when c fails or the flow has been idle (both ways) for f.idle. *armed tracks whether c's
// read deadline is set: it is moved only when it fires, not per datagram, because moving
// a deadline costs a timer update (and on gonet an allocation).
func (f *udpFlow) read(c net.Conn, buf []byte, armed *bool) (int, error) {
	idle := int64(f.idle)
	for {
		if !*armed {
			c.SetReadDeadline(f.e.start.Add(time.Duration(f.last.Load() + idle)))
			*armed = true
		}
		n, err := c.Read(buf)
		if err == nil {
			f.last.Store(f.e.now())
			return n, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) && !isTimeout(err) {
			return 0, err
		}
		*armed = false
		if f.e.now()-f.last.Load() >= idle {
			return 0, err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// setHost records the host socket so abort closes it; false (and c closed) if the flow was
// already aborted.
func (f *udpFlow) setHost(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aborted {
		c.Close()
		return false
	}
	f.host = c
	return true
}

// abort closes both legs, unblocking every read. Idempotent.
func (f *udpFlow) abort() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aborted {
		return
	}
	f.aborted = true
	f.client.Close()
	if f.host != nil {
		f.host.Close()
	}
}

// sendUnreachable tells client that its datagram to dst went nowhere: port unreachable
// from dst itself, or administratively prohibited from the exit when MaxFlows is reached.
// The quoted datagram is rebuilt from the flow's addresses (gVisor's forwarder does not
// expose the packet); that is all a client stack needs to find its socket.
func (e *Exit) sendUnreachable(client, dst netip.AddrPort, prohibited bool) {
	from := dst.Addr()
	if prohibited {
		from = e.localFor(dst.Addr())
	}
	bp := getBuf()
	e.emit(buildUDPUnreachable(*bp, from, client, dst, prohibited))
	putBuf(bp)
}
