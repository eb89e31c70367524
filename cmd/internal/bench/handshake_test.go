//go:build bench

package bench

// The handshake load generator: many distinct client keys initiate against one WireGuard
// server over UDP, a fixed number of initiations in flight (closed loop), from many source
// addresses so that one address's rate limit (20/s under load in wireguard-go) does not
// decide the result. It counts completed handshakes: responses whose mac1 is right for the
// client key (every 16th one is checked all the way through the Noise key schedule).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popgate/popgate/store"
)

// hsKeys is a set of client keys for one server.
type hsKeys struct {
	resp *responder
	ini  []*initiator
	// last holds the timestamp (unix ns) of each key's last initiation: TAI64N timestamps
	// must grow per key, and a server ignores a key's initiations less than 20 ms apart.
	last []atomic.Int64
	eph  []*ephemeral
}

// newHSKeys prepares initiations from privs to the server with public key server: the
// static-static DH of every key and a pool of ephemerals.
func newHSKeys(server store.Key, privs []store.Key) (*hsKeys, error) {
	k := &hsKeys{resp: newResponder(server), last: make([]atomic.Int64, len(privs))}
	for _, p := range privs {
		in, err := k.resp.newInitiator(p)
		if err != nil {
			return nil, err
		}
		k.ini = append(k.ini, in)
	}
	for range 512 {
		e, err := k.resp.newEphemeral()
		if err != nil {
			return nil, err
		}
		k.eph = append(k.eph, e)
	}
	return k, nil
}

// minKeyGap keeps a key's initiations apart by more than wireguard-go's flood limit
// (HandshakeInitationRate, 20 ms).
const minKeyGap = 25 * time.Millisecond

// stamp returns a fresh timestamp for key i, waiting first when the key was used less than
// minKeyGap ago.
func (k *hsKeys) stamp(ctx context.Context, i int) int64 {
	for {
		last := k.last[i].Load()
		now := time.Now().UnixNano()
		if wait := time.Duration(last + int64(minKeyGap) - now); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			now = time.Now().UnixNano()
		}
		if now <= last {
			now = last + 1
		}
		if k.last[i].CompareAndSwap(last, now) {
			return now
		}
	}
}

// hsResult is one run of the generator.
type hsResult struct {
	Completed int           // handshakes completed inside the measured window
	Window    time.Duration // the measured window
	Sent      int           // initiations sent (all of the run)
	Cookies   int           // cookie replies (the server was under load and wanted mac2)
	Timeouts  int           // initiations that got no answer in time
	Latency   []time.Duration
	Verified  int // responses checked through the whole key schedule
}

// PerSecond is completed handshakes per second of the measured window.
func (r hsResult) PerSecond() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Completed) / r.Window.Seconds()
}

// hsSocket is one source address of the generator and the cookie the server gave it.
type hsSocket struct {
	conn   *net.UDPConn
	cookie []byte
}

// hsGen sends initiations to one server from a set of sockets.
type hsGen struct {
	keys    *hsKeys
	server  netip.AddrPort
	sockets []*hsSocket
	next    atomic.Uint64 // next key index
	sender  atomic.Uint32 // sender indexes of initiations
}

// newHSGen opens one UDP socket per source address; listen creates a socket in the client's
// namespace.
func newHSGen(keys *hsKeys, server netip.AddrPort, sources []netip.Addr, listen func(network, addr string) (net.PacketConn, error)) (*hsGen, error) {
	g := &hsGen{keys: keys, server: server}
	for _, a := range sources {
		c, err := listen("udp4", netip.AddrPortFrom(a, 0).String())
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("handshake generator: socket on %s: %w", a, err)
		}
		g.sockets = append(g.sockets, &hsSocket{conn: c.(*net.UDPConn)})
	}
	return g, nil
}

func (g *hsGen) Close() {
	for _, s := range g.sockets {
		s.conn.Close()
	}
}

// once runs one handshake with key i from socket s and returns how long the server took to
// answer. A cookie reply is answered once with mac2, as a client would.
func (g *hsGen) once(ctx context.Context, s *hsSocket, i int, full bool, timeout time.Duration, res *hsResult) (time.Duration, error) {
	in := g.keys.ini[i]
	msg := make([]byte, initiationSize)
	buf := make([]byte, 256)
	dst := net.UDPAddrFromAddrPort(g.server)
	for attempt := 0; attempt < 2; attempt++ {
		ts := g.keys.stamp(ctx, i)
		e := g.keys.eph[int(g.sender.Load())%len(g.keys.eph)]
		p := g.keys.resp.initiation(msg, in, e, g.sender.Add(1), ts, s.cookie)
		start := time.Now()
		if _, err := s.conn.WriteToUDP(msg, dst); err != nil {
			return 0, fmt.Errorf("send initiation: %w", err)
		}
		res.Sent++
		deadline := start.Add(timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = s.conn.SetReadDeadline(deadline)
		for {
			n, _, err := s.conn.ReadFromUDP(buf)
			took := time.Since(start)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					if d, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(d) {
						return 0, errEnded // the run is over, not the server late
					}
					res.Timeouts++
					return 0, errTimeout
				}
				return 0, err
			}
			switch err := checkResponse(buf[:n], in, &p, full); {
			case err == nil:
				if full {
					res.Verified++
				}
				return took, nil
			case !errors.Is(err, errNotOurs):
				return 0, err
			}
			if cookie, err := g.keys.resp.openCookieReply(buf[:n], &p); err == nil {
				s.cookie = cookie
				res.Cookies++
				break // send again with mac2
			} else if !errors.Is(err, errNotOurs) {
				return 0, err
			}
			// A late answer to an earlier initiation of this socket: keep reading.
		}
	}
	res.Timeouts++
	return 0, errTimeout
}

var (
	errTimeout = errors.New("no answer")
	errEnded   = errors.New("the run ended while waiting for an answer")
)

// add counts r into t; Window is left alone.
func (t *hsResult) add(r hsResult) {
	t.Completed += r.Completed
	t.Sent += r.Sent
	t.Cookies += r.Cookies
	t.Timeouts += r.Timeouts
	t.Verified += r.Verified
	t.Latency = append(t.Latency, r.Latency...)
}

// eachSocket runs f on every socket at once, each with a result of its own, and returns their
// sum and the first error.
func (g *hsGen) eachSocket(f func(w int, s *hsSocket, r *hsResult) error) (hsResult, error) {
	var (
		mu    sync.Mutex
		total hsResult
		first error
		wg    sync.WaitGroup
	)
	for w, s := range g.sockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r hsResult
			err := f(w, s, &r)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			total.add(r)
		}()
	}
	wg.Wait()
	return total, first
}

// run drives handshakes from every socket at once (one in flight per socket) for warmup +
// measure and counts those completed during measure. A wrong answer fails the run.
func (g *hsGen) run(ctx context.Context, warmup, measure time.Duration) (hsResult, error) {
	ctx, cancel := context.WithTimeout(ctx, warmup+measure)
	defer cancel()
	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+measure)
	total, err := g.eachSocket(func(w int, s *hsSocket, r *hsResult) error {
		for n := 0; ctx.Err() == nil; n++ {
			i := int(g.next.Add(1) % uint64(len(g.keys.ini)))
			lat, err := g.once(ctx, s, i, (n+w)%16 == 0, time.Second, r)
			if errors.Is(err, errTimeout) {
				continue
			}
			if errors.Is(err, errEnded) {
				return nil
			}
			if err != nil {
				return err
			}
			if now := time.Now(); now.After(from) && now.Before(to) {
				r.Completed++
				r.Latency = append(r.Latency, lat)
			}
		}
		return nil
	})
	total.Window = measure
	slices.Sort(total.Latency)
	if err != nil {
		return total, err
	}
	if total.Completed > 0 && total.Verified == 0 {
		return total, errors.New("no response was checked through the whole handshake")
	}
	return total, nil
}

// sweep runs one handshake with each key in [from, to), spread over every socket, and returns
// the results and how long it took. Keys that got no answer are tried once more.
func (g *hsGen) sweep(ctx context.Context, from, to int) (hsResult, time.Duration, error) {
	var next atomic.Int64
	next.Store(int64(from))
	began := time.Now()
	total, first := g.eachSocket(func(_ int, s *hsSocket, r *hsResult) error {
		for ctx.Err() == nil {
			i := int(next.Add(1) - 1)
			if i >= to {
				break
			}
			var err error
			for try := 0; try < 2; try++ {
				var lat time.Duration
				lat, err = g.once(ctx, s, i, i%16 == 0, 2*time.Second, r)
				if err == nil {
					r.Completed++
					r.Latency = append(r.Latency, lat)
					break
				}
				if err != errTimeout {
					break
				}
			}
			if err == errTimeout || err == errEnded {
				err = nil // counted in Timeouts, or the context ended (reported below)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	took := time.Since(began)
	total.Window = took
	slices.Sort(total.Latency)
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return total, took, first
}
