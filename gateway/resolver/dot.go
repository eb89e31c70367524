package resolver

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/popgate/popgate/gateway/plane"
)

// DNS over TLS (RFC 7858) to the tenants' upstreams that ask for it: a few long-lived TLS
// connections per upstream, each carrying many queries at once (pipelined, 2-byte length
// framing, answers matched by ID in any order), closed when idle, opened again with backoff
// when the server cannot be reached, and at most Config.MaxTLSConns on the node.
//
// The framing is written here rather than taken from miekg/dns's client: its Exchange
// waits for each answer before the next query (one query in flight per connection), and
// dns.Conn's ReadMsg/WriteMsg would need the same reader and writer goroutines around them
// anyway; the framing itself is ten lines.

// Defaults of Config, and the bounds of the connections.
const (
	DefaultMaxTLSConns = 64
	DefaultTLSIdle     = 30 * time.Second
	// tlsConnsPerUpstream bounds the connections to one upstream.
	tlsConnsPerUpstream = 2
	// tlsPipeline is how many queries one connection carries before another is opened
	// (up to tlsConnsPerUpstream); tlsMaxPending is how many it may carry at all.
	tlsPipeline   = 100
	tlsMaxPending = 1000
	// tlsQueue is how many queries may wait for a connection's writer.
	tlsQueue = 256
	// tlsDialTimeout bounds a connection's TCP and TLS handshakes.
	tlsDialTimeout = 10 * time.Second
	// tlsMinBackoff and tlsMaxBackoff bound the wait before an upstream that could not be
	// reached is tried again: doubling, jittered. Meanwhile its queries go to the next.
	tlsMinBackoff = time.Second
	tlsMaxBackoff = 30 * time.Second
)

// dotPools are the resolver's DNS-over-TLS connections, by upstream.
type dotPools struct {
	mu     sync.Mutex
	pools  map[plane.DNSUpstream]*dotPool
	conns  int  // open or opening, every pool's
	closed bool // the resolver closed: no more connections
}

// send sends p over a connection to u, opening one when that is allowed; when none may be
// used (u is in backoff, the node's bound is reached, the resolver closed) p goes to the
// next upstream at once.
func (ps *dotPools) send(r *Resolver, u plane.DNSUpstream, p *pending) {
	ps.mu.Lock()
	pl := ps.pools[u]
	if pl == nil && !ps.closed {
		pl = &dotPool{r: r, ps: ps, up: u, tls: &tls.Config{ServerName: u.TLSName, RootCAs: r.cfg.TLSRoots,
			MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(4)}}
		ps.pools[u] = pl
	}
	ps.mu.Unlock()
	// A second pick when the first connection closed (idle) before it took p.
	for range 2 {
		if pl == nil {
			break
		}
		c := pl.pick()
		if c == nil {
			break
		}
		if c.send(p) {
			return
		}
	}
	r.tryNext(p)
}

// forget drops the pools of upstreams not in live (no tenant has them any more): their
// connections close when idle.
func (ps *dotPools) forget(live map[plane.DNSUpstream]bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for u := range ps.pools {
		if !live[u] {
			delete(ps.pools, u)
		}
	}
}

// closeAll closes every connection; no new one opens.
func (ps *dotPools) closeAll() {
	ps.mu.Lock()
	ps.closed = true
	pools := make([]*dotPool, 0, len(ps.pools))
	for _, pl := range ps.pools {
		pools = append(pools, pl)
	}
	ps.mu.Unlock()
	var cs []*dotConn
	for _, pl := range pools { // pl.mu after ps.mu, never within it (pick takes them the other way)
		pl.mu.Lock()
		cs = append(cs, pl.conns...)
		pl.mu.Unlock()
	}
	for _, c := range cs {
		c.close(errClosed)
	}
}

// take reserves a connection of the node's bound; false when it is reached.
func (ps *dotPools) take(max int) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed || ps.conns >= max {
		return false
	}
	ps.conns++
	return true
}

// open is how many connections are open or opening.
func (ps *dotPools) open() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.conns
}

func (ps *dotPools) release() {
	ps.mu.Lock()
	ps.conns--
	ps.mu.Unlock()
}

// dotPool is the connections to one upstream.
type dotPool struct {
	r   *Resolver
	ps  *dotPools
	up  plane.DNSUpstream
	tls *tls.Config

	mu    sync.Mutex
	conns []*dotConn
	// fails counts the connections in a row that could not be made; none is tried before
	// retryAt.
	fails   int
	retryAt time.Time
}

// pick returns the connection to carry a query: the least busy one, or a new one when that
// one is busy (tlsPipeline) and another may be opened; nil when there is none to use.
func (pl *dotPool) pick() *dotConn {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var best *dotConn
	load := 0
	for _, c := range pl.conns {
		if n := c.load(); best == nil || n < load {
			best, load = c, n
		}
	}
	if best != nil && (load < tlsPipeline || len(pl.conns) >= tlsConnsPerUpstream) {
		return best
	}
	if time.Now().Before(pl.retryAt) || !pl.ps.take(pl.r.cfg.MaxTLSConns) {
		return best // in backoff, or the node's bound reached: the busy one, if any
	}
	c := &dotConn{pool: pl, pending: map[uint16]*pending{}, out: make(chan []byte, tlsQueue), done: make(chan struct{}), used: time.Now()}
	pl.conns = append(pl.conns, c)
	pl.r.wg.Add(1)
	go c.run()
	return c
}

// dialed notes whether a connection could be made: failures back off.
func (pl *dotPool) dialed(err error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err == nil {
		pl.fails, pl.retryAt = 0, time.Time{}
		return
	}
	pl.fails++
	wait := min(tlsMinBackoff<<min(pl.fails-1, 10), tlsMaxBackoff)
	wait = wait/2 + rand.N(wait/2+1)
	pl.retryAt = time.Now().Add(wait)
	pl.r.log.Warn("dns: cannot reach a DNS-over-TLS upstream; its queries go to the next upstream meanwhile", "upstream", pl.up, "retry_in", wait.Round(time.Millisecond), "err", err)
}

// remove takes c, closed, out of the pool.
func (pl *dotPool) remove(c *dotConn) {
	pl.mu.Lock()
	pl.conns = slices.DeleteFunc(pl.conns, func(o *dotConn) bool { return o == c })
	pl.mu.Unlock()
	pl.ps.release()
}

var (
	errClosed = errors.New("the resolver closed")
	errIdle   = errors.New("idle")
)

// dotConn is one TLS connection to an upstream. Its writer goroutine (run) makes the
// connection, writes the queries queued on out and closes it when idle; its reader reads
// the answers.
type dotConn struct {
	pool *dotPool
	out  chan []byte   // framed queries for the writer
	done chan struct{} // closed by close

	mu      sync.Mutex
	pending map[uint16]*pending // nil once closed
	conn    net.Conn            // once made
	up      bool                // the handshake completed
	used    time.Time           // when it last sent or received
}

// load is how many queries c carries; more than any limit once it is closed.
func (c *dotConn) load() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		return tlsMaxPending
	}
	return len(c.pending)
}

// send queues p on c; false when c cannot take it (closed, full), and p is not on c.
func (c *dotConn) send(p *pending) bool {
	r := c.pool.r
	out := p.q.Copy()
	c.mu.Lock()
	if c.pending == nil || len(c.pending) >= tlsMaxPending {
		c.mu.Unlock()
		return false
	}
	id := randomID()
	for c.pending[id] != nil {
		id = randomID()
	}
	c.pending[id] = p
	c.used = time.Now()
	p.timer = time.AfterFunc(r.cfg.Timeout, func() {
		if c.forget(id, p) {
			r.tryNext(p)
		}
	})
	c.mu.Unlock()
	out.Id = id
	b, err := out.Pack()
	if err == nil && len(b) > 0xffff {
		err = errors.New("query too long")
	}
	if err != nil {
		if c.forget(id, p) {
			p.timer.Stop()
			return false
		}
		return true // its timer took it
	}
	frame := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(frame, uint16(len(b)))
	copy(frame[2:], b)
	select {
	case c.out <- frame:
		return true
	default: // the writer is behind by tlsQueue
		if c.forget(id, p) {
			p.timer.Stop()
			return false
		}
		return true // already answered or moved on
	}
}

// forget takes p (sent as id) off c; false when it was no longer there.
func (c *dotConn) forget(id uint16, p *pending) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil || c.pending[id] != p {
		return false
	}
	delete(c.pending, id)
	return true
}

// run makes the connection, starts its reader, and writes the queued queries until the
// connection breaks, idles for Config.TLSIdle or the resolver closes.
func (c *dotConn) run() {
	r := c.pool.r
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.ctx, tlsDialTimeout)
	d := tls.Dialer{Config: c.pool.tls}
	conn, err := d.DialContext(ctx, "tcp", c.pool.up.Addr.String())
	cancel()
	if r.ctx.Err() != nil {
		err = errClosed
	}
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		if !errors.Is(err, errClosed) {
			c.pool.dialed(err)
		}
		c.close(err)
		return
	}
	c.pool.dialed(nil)
	c.mu.Lock()
	if c.pending == nil { // closed meanwhile
		c.mu.Unlock()
		conn.Close()
		return
	}
	c.conn, c.up, c.used = conn, true, time.Now()
	c.mu.Unlock()
	r.wg.Add(1)
	go c.read(conn)

	idle := r.cfg.TLSIdle
	tick := time.NewTimer(idle)
	defer tick.Stop()
	w := bufio.NewWriterSize(conn, 16<<10)
	for {
		select {
		case <-c.done:
			return
		case <-r.ctx.Done():
			c.close(errClosed)
			return
		case <-tick.C:
			if c.idleFor(idle) {
				c.close(errIdle)
				return
			}
			tick.Reset(idle)
			continue
		case f := <-c.out:
			w.Write(f)
		}
		// Whatever else is queued goes in the same write.
	more:
		for w.Buffered() < 16<<10-600 {
			select {
			case f := <-c.out:
				w.Write(f)
			default:
				break more
			}
		}
		conn.SetWriteDeadline(time.Now().Add(r.cfg.Timeout))
		if err := w.Flush(); err != nil {
			c.close(err)
			return
		}
	}
}

// idleFor reports whether c carried nothing for d; then it takes no more queries.
func (c *dotConn) idleFor(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) == 0 && time.Since(c.used) >= d
}

// read reads the answers on conn until it breaks.
func (c *dotConn) read(conn net.Conn) {
	r := c.pool.r
	defer r.wg.Done()
	br := bufio.NewReaderSize(conn, 16<<10)
	var hdr [2]byte
	buf := make([]byte, 0xffff)
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.close(err)
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(br, buf[:n]); err != nil {
			c.close(err)
			return
		}
		if n < 12 {
			continue
		}
		id := binary.BigEndian.Uint16(buf)
		c.mu.Lock()
		p := c.pending[id]
		if p == nil {
			c.mu.Unlock()
			continue // late: it timed out and went elsewhere
		}
		m := answerTo(p, buf[:n])
		if m == nil {
			c.mu.Unlock()
			continue
		}
		delete(c.pending, id)
		c.used = time.Now()
		c.mu.Unlock()
		p.timer.Stop()
		r.answer(p, m)
	}
}

// close closes c once, takes it out of its pool, and sends the queries it carried on: those
// of a connection that was up to the same upstream once more (a server may close an idle
// connection as a query leaves), the others to their next upstream.
func (c *dotConn) close(why error) {
	c.mu.Lock()
	ps := c.pending
	if ps == nil {
		c.mu.Unlock()
		return
	}
	c.pending = nil
	conn, up := c.conn, c.up
	close(c.done)
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	c.pool.remove(c)
	r := c.pool.r
	if up && len(ps) > 0 && !errors.Is(why, errClosed) {
		r.log.Debug("dns: a DNS-over-TLS connection broke with queries on it", "upstream", c.pool.up, "queries", len(ps), "err", why)
	}
	for _, p := range ps {
		// Ours now, even if its timer fired meanwhile: the timer finds it forgotten.
		p.timer.Stop()
		if up && !p.again && r.ctx.Err() == nil {
			p.again = true
			r.send(p, p.tries-1)
			continue
		}
		r.tryNext(p)
	}
}
