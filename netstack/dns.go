package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// The in-tunnel DNS service: LocalAddrs:53 over UDP and TCP, relayed to DNSUpstreams. It
// is a plain relay, not a resolver: queries and answers pass unchanged.

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
	return port == dnsPort && len(e.cfg.DNSUpstreams) > 0
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

// serveDNS is the UDP service for one client addr:port: each query goes to the upstreams
// in order and the first matching answer goes back. The flow ends after dnsIdleTimeout
// (or UDPIdleTimeout if shorter) without queries.
func (f *udpFlow) serveDNS() {
	e := f.e
	defer e.releaseFlow()
	e.st.udpFlows.Add(1)
	defer e.st.udpFlows.Add(-1)
	defer f.abort()

	f.last.Store(e.now())
	qp, rp := getBuf(), getBuf()
	defer putBuf(qp)
	defer putBuf(rp)
	q, resp := (*qp)[:udpBufSize], (*rp)[:udpBufSize]
	var armed bool
	for {
		n, err := f.read(f.client, q, &armed)
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
	}
}

// ask sends query to each upstream in turn and returns the first answer with its ID.
func (f *udpFlow) ask(query, resp []byte) ([]byte, error) {
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

func (f *udpFlow) clearHost(c net.Conn) {
	f.mu.Lock()
	if f.host == c {
		f.host = nil
	}
	f.mu.Unlock()
	c.Close()
}

func (f *udpFlow) isAborted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.aborted
}
