package resolver

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DNS over TCP (RFC 7766): what clients fall back to when an answer over UDP came back
// truncated, and what some stub resolvers use throughout.
const (
	// tcpIdle closes a connection without a query for this long (RFC 7766 asks for
	// seconds, not minutes, on a busy server).
	tcpIdle = 10 * time.Second
	// tcpInFlight bounds the queries of one connection waiting for their answers; the
	// connection is not read further until one is answered.
	tcpInFlight = 32
)

// ServeTCP answers the DNS queries on c, one TCP connection from client address src, a
// peer (or a site's host) of tenant, exactly as Query answers them over UDP but whole: each
// message with its two-byte length, several in flight, the answers in the order they come.
// It returns when the client closes its side, after tcpIdle without a query, on a read or
// write error, or when the resolver closes, once the queries it took are answered (or the
// resolver closed). The caller closes c.
func (r *Resolver) ServeTCP(tenant int64, src netip.Addr, c net.Conn) {
	var (
		wmu    sync.Mutex
		wg     sync.WaitGroup
		slots  = make(chan struct{}, tcpInFlight)
		broken bool
	)
	write := func(b []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		if broken {
			return
		}
		out := make([]byte, 2+len(b))
		binary.BigEndian.PutUint16(out, uint16(len(b)))
		copy(out[2:], b)
		c.SetWriteDeadline(time.Now().Add(tcpIdle))
		if _, err := c.Write(out); err != nil {
			broken = true
		}
	}
	br := bufio.NewReaderSize(c, 4096)
	var hdr [2]byte
read:
	for r.ctx.Err() == nil {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			break
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(br, msg); err != nil {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-r.ctx.Done():
			break read
		}
		wg.Add(1)
		var once sync.Once
		release := func() { once.Do(func() { <-slots; wg.Done() }) }
		answered := func(b []byte) {
			write(b)
			release()
		}
		deferred := false
		b := r.query(tenant, src, msg, func() func([]byte) { deferred = true; return answered }, true)
		switch {
		case b != nil:
			answered(b)
		case !deferred:
			release() // dropped: over the rate, or not DNS
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-r.ctx.Done(): // queries in flight get no answer
	}
}
