package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// The in-tunnel DNS service: LocalAddrs:53 over UDP and TCP, relayed to DNSUpstreams. It
// is a plain relay, not a resolver: queries and answers pass unchanged. Its UDP flows are
// terminated in gVisor (the only UDP gVisor terminates); its TCP flows like any other
// (tcp.go).

const (
	dnsPort = 53
	// dnsUpstreamTimeout is how long one upstream may take to answer (UDP) or accept (TCP)
	// before the next is tried.
	dnsUpstreamTimeout = 2 * time.Second
	// dnsHeaderLen is the fixed DNS header; its first two bytes are the query ID.
	dnsHeaderLen = 12
	// dnsIdleTimeout ends a DNS service flow sooner than UDPIdleTimeout: stub resolvers
	// use a fresh source port per query, so each flow typically carries one exchange.
	dnsIdleTimeout = 10 * time.Second
)

var errNoUpstream = errors.New("netstack: no DNS upstream answered")

// dnsPort reports whether port is the DNS service on a local address.
func (e *Exit) dnsPort(port uint16) bool {
	return port == dnsPort && (len(e.cfg.DNSUpstreams) > 0 || e.cfg.DNSServer != nil)
}

// serveDNSTCP completes the handshake of a TCP connection to the DNS service and hands it
// to Config.DNSServer; af is the flow's admission, released by the caller.
func (e *Exit) serveDNSTCP(r *tcp.ForwarderRequest, af *acctFlow) {
	id := r.ID()
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		return
	}
	r.Complete(false)
	setKeepalive(ep)
	f := &dnsTCPFlow{ep: ep, c: gonet.NewTCPConn(&wq, ep)}
	if !e.acct.assure(af) || !e.track(f) {
		f.abort()
		return
	}
	defer e.forget(f)
	e.st.tcpFlows.Add(1)
	defer e.st.tcpFlows.Add(-1)
	e.cfg.DNSServer(e.owner(addrFrom(id.RemoteAddress)), remoteOf(id), f.c)
	f.c.Close()
}

// dnsTCPFlow is a TCP connection to the DNS service served by Config.DNSServer.
type dnsTCPFlow struct {
	ep   tcpip.Endpoint
	c    *gonet.TCPConn
	once sync.Once
}

// abort resets the connection (an eviction, or the exit closing), unblocking the server.
func (f *dnsTCPFlow) abort() {
	f.once.Do(func() {
		f.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true})
		f.c.Close()
	})
}

// dialDNS connects to the first upstream that accepts, for the TCP service.
func (e *Exit) dialDNS(ctx context.Context, network string) (net.Conn, error) {
	var errs []error
	for _, up := range e.cfg.DNSUpstreams {
		dctx, cancel := context.WithTimeout(ctx, dnsUpstreamTimeout)
		c, err := e.cfg.Dialer.DialContext(dctx, network, up.String())
		cancel()
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: %w", errNoUpstream, errors.Join(errs...))
}

// handleLocalUDP is gVisor's UDP forwarder callback for a datagram to a LocalAddr that no
// flow claims, called synchronously by Write. It must not block: it creates the client
// leg, which queues this first datagram, and leaves the rest to the flow's goroutine. Only
// the DNS port is served; every other port is refused with ICMP port unreachable.
func (e *Exit) handleLocalUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	dst := netip.AddrPortFrom(addrFrom(id.LocalAddress), id.LocalPort)
	src := remoteOf(id)
	if !e.dnsPort(dst.Port()) {
		e.sendUnreachable(src, dst, false)
		return
	}
	f := &dnsFlow{e: e, src: src, idle: min(e.cfg.UDPIdleTimeout, dnsIdleTimeout)}
	if f.acct = e.admit(src.Addr(), kindUDP, f); f.acct == nil {
		e.sendUnreachable(src, dst, true)
		return
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		e.acct.release(f.acct)
		return
	}
	if !f.setClient(gonet.NewUDPConn(&wq, ep)) || !e.goFlow(f, f.serve) {
		f.abort()
		e.acct.release(f.acct)
	}
}

// dnsBufSize is a query or answer buffer: a whole datagram.
const dnsBufSize = 64 << 10

// dnsFlow is one client addr:port talking to the DNS service.
type dnsFlow struct {
	e     *Exit
	src   netip.AddrPort
	idle  time.Duration // close after this long without a query
	clock idleDeadline  // the last query; the client leg's read deadline
	acct  *acctFlow     // set before the flow is admitted, never changed

	mu      sync.Mutex     // guards client (until serve starts), host, aborted
	client  *gonet.UDPConn // the client leg, in gVisor; set once before serve starts
	host    net.Conn       // the upstream being asked
	aborted bool
}

// setClient sets the client leg; false, and the leg closed, when the flow was aborted (an
// eviction) before it had one.
func (f *dnsFlow) setClient(c *gonet.UDPConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aborted {
		c.Close()
		return false
	}
	f.client = c
	return true
}

// serve answers the flow's queries: each goes to the upstreams in order and the first
// matching answer goes back. The flow ends after f.idle without queries.
func (f *dnsFlow) serve() {
	e := f.e
	defer e.acct.release(f.acct)
	e.st.udpFlows.Add(1)
	defer e.st.udpFlows.Add(-1)
	defer f.abort()

	f.clock.touch(e.now())
	qp, rp := getBuf(), getBuf()
	defer putBuf(qp)
	defer putBuf(rp)
	q, resp := (*qp)[:dnsBufSize], (*rp)[:dnsBufSize]
	replied := false
	for {
		n, err := f.read(q)
		if err != nil {
			return
		}
		if n < dnsHeaderLen {
			continue
		}
		a, err := f.ask(q[:n], resp)
		if err != nil {
			e.log.Debug("dns: query failed", "src", f.src, "err", err)
			if f.isAborted() {
				return
			}
			continue // the client retries or gives up, as with a lost datagram
		}
		if _, err := f.client.Write(a); err != nil {
			return
		}
		if !replied { // the first answer assures the flow
			if replied = true; !e.acct.assure(f.acct) {
				return
			}
		}
	}
}

// ask sends query to each upstream in turn and returns the first answer with its ID.
func (f *dnsFlow) ask(query, resp []byte) ([]byte, error) {
	e := f.e
	for _, up := range e.cfg.DNSUpstreams {
		ctx, cancel := context.WithTimeout(e.ctx, dnsUpstreamTimeout)
		c, err := e.cfg.Dialer.DialContext(ctx, "udp", up.String())
		cancel()
		if err != nil {
			e.st.dialFailures.Add(1)
			continue
		}
		if !f.setHost(c) { // Close aborts the flow and with it this socket
			return nil, net.ErrClosed
		}
		a, err := exchange(c, query, resp)
		f.clearHost(c)
		if err == nil {
			return a, nil
		}
		e.st.dialFailures.Add(1)
		if f.isAborted() || e.ctx.Err() != nil {
			return nil, net.ErrClosed
		}
	}
	return nil, errNoUpstream
}

// exchange sends one query on c and waits for the answer with the same ID.
func exchange(c net.Conn, query, resp []byte) ([]byte, error) {
	c.SetDeadline(time.Now().Add(dnsUpstreamTimeout))
	if _, err := c.Write(query); err != nil {
		return nil, err
	}
	for {
		n, err := c.Read(resp)
		if err != nil {
			return nil, err
		}
		if n >= dnsHeaderLen && resp[0] == query[0] && resp[1] == query[1] {
			return resp[:n], nil
		}
	}
}

func (f *dnsFlow) clearHost(c net.Conn) {
	f.mu.Lock()
	if f.host == c {
		f.host = nil
	}
	f.mu.Unlock()
	c.Close()
}

func (f *dnsFlow) isAborted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.aborted
}

// read reads one query from the client leg, refreshing the flow's idle clock. It returns an
// error when the client leg fails or the flow has been idle for f.idle.
func (f *dnsFlow) read(buf []byte) (int, error) {
	for {
		f.clock.arm(f.e, f.client, f.idle)
		n, err := f.client.Read(buf)
		if err == nil {
			f.clock.touch(f.e.now())
			return n, nil
		}
		if deadline, expired := f.clock.fired(err, f.e, f.idle); !deadline || expired {
			return 0, err
		}
	}
}

// setHost records the upstream socket so abort closes it; false (and c closed) if the
// flow was already aborted.
func (f *dnsFlow) setHost(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aborted {
		c.Close()
		return false
	}
	f.host = c
	return true
}

// abort closes the client leg and the upstream socket, unblocking every read. Idempotent.
func (f *dnsFlow) abort() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.aborted {
		return
	}
	f.aborted = true
	if f.client != nil {
		f.client.Close()
	}
	if f.host != nil {
		f.host.Close()
	}
}
