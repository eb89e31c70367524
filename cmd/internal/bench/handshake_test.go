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
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/hsflood"
	"github.com/popgate/popgate/cmd/internal/testbed"
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
	sources []netip.Addr // of sockets, in order
	listen  func(network, addr string) (net.PacketConn, error)
	next    atomic.Uint64 // next key index
	sender  atomic.Uint32 // sender indexes of initiations
}

// newHSGen opens one UDP socket per source address; listen creates a socket in the client's
// namespace.
func newHSGen(keys *hsKeys, server netip.AddrPort, sources []netip.Addr, listen func(network, addr string) (net.PacketConn, error)) (*hsGen, error) {
	g := &hsGen{keys: keys, server: server, sources: sources, listen: listen}
	for _, a := range sources {
		s, err := g.newSocket(a)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.sockets = append(g.sockets, s)
	}
	return g, nil
}

// newSocket opens a socket on a, at a port of the kernel's choice; the caller closes it
// unless it is one of g.sockets.
func (g *hsGen) newSocket(a netip.Addr) (*hsSocket, error) {
	c, err := g.listen("udp4", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		return nil, fmt.Errorf("handshake generator: socket on %s: %w", a, err)
	}
	return &hsSocket{conn: c.(*net.UDPConn)}, nil
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

// --- the handshake flood (issue 15) ---

// floodManySources are the 100 source addresses of the flood from many sources, in Cli;
// floodOneSource the address of the flood from one source that answers cookie replies.
func floodManySources() []netip.Addr {
	var a []netip.Addr
	for i := range 100 {
		a = append(a, netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}))
	}
	return a
}

var floodOneSource = netip.AddrFrom4([4]byte{192, 0, 2, 200})

// addFloodSources puts the flood's source addresses on g's client link (idempotent).
func (g *gw) addFloodSources(t testing.TB) {
	t.Helper()
	var b strings.Builder
	for _, a := range append(floodManySources(), floodOneSource) {
		fmt.Fprintf(&b, "address replace %s/32 dev %s\n", a, g.topo.CliLink)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := g.topo.Cli.Command(ctx, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: add the flood's addresses: %v: %s", g.kind, err, out)
	}
}

// floodKind is one kind of flood.
type floodKind struct {
	name    string
	sources []netip.Addr
	answer  bool // the source answers cookie replies: its initiations carry a valid mac2
}

var floodKinds = []floodKind{
	{"100 sources, valid mac1", floodManySources(), false},
	{"1 source answering cookies, valid mac2", []netip.Addr{floodOneSource}, true},
}

// Timing of a flood run.
const (
	floodLead  = 3 * time.Second  // the flood runs this long before the client starts
	floodLimit = 40 * time.Second // the longest the run waits for the client's first ping
)

// floodRun is what one run measured.
type floodRun struct {
	firstPing   time.Duration // client start → its first ping through the tunnel; 0: none within floodLimit
	initiations int           // the client's initiations up to its first handshake response; 0: none
	rate        float64       // initiations a second the generator sent
	kernelDrops uint64        // datagrams Pop's kernel dropped for want of socket buffer
	echoSent    int64         // the established client's echoes during the run
	echoLost    int64
}

// phaseFlood floods the baseline and popgate (userspace exit: the kernel exit shares the same
// socket code) with handshake initiations and starts a new stock client 3 s in: how long until
// its first ping, on which of its initiations it got in, and whether the established client
// lost echoes meanwhile. BENCH_FLOOD_RATE caps the generator (0: as fast as it goes).
func (e *env) phaseFlood(t *testing.T) {
	type target struct {
		g      *gw
		late   *testbed.Netns
		echo   *testbed.UDPEchoServer
		client int
	}
	var targets []*target
	for _, kind := range []string{kindBaseline, kindUserspace} {
		g := e.gw(kind)
		if g == nil {
			continue
		}
		g.addFloodSources(t)
		targets = append(targets, &target{g: g, late: g.topo.NewClient(t), echo: testbed.StartUDPEcho(t, g.topo.Net)})
	}
	group := fmt.Sprintf("Handshake flood (Go generator in Cli: initiations with a valid mac1, junk inside, %s; a new stock client starts %v into the flood)", floodRateText(e.cfg.floodRate), floodLead)
	for r := range e.cfg.reps {
		for _, fk := range floodKinds {
			for i := range targets {
				tg := targets[(i+r)%len(targets)]
				tg.client++
				run, err := e.floodOnce(t, tg.g, tg.late, tg.echo, fk, tg.client)
				rows := []*row{
					e.res.def(group, fk.name+": the new client's first ping after", "s", 1, -1, 1.0),
					e.res.def(group, fk.name+": the new client's initiations up to its handshake", "", 0, -1, 0),
					e.res.def(group, fk.name+": the established client's echoes lost", "%", 1, 0, 0),
					e.res.def(group, fk.name+": datagrams the kernel dropped (socket buffer full)", "per run", 0, 0, 0),
					e.res.def(group, fk.name+": generator rate", "1/s", 0, 0, 0),
				}
				if err != nil {
					t.Errorf("%s: %s: %v", tg.g.kind, fk.name, err)
					for _, rw := range rows {
						e.res.fail(rw, tg.g.kind, err)
					}
					continue
				}
				first := run.firstPing.Seconds()
				if run.firstPing == 0 {
					first = math.NaN()
					e.res.fail(rows[0], tg.g.kind, fmt.Errorf("no ping within %v", floodLimit))
				} else {
					e.res.add(rows[0], tg.g.kind, first)
				}
				if run.initiations > 0 {
					e.res.add(rows[1], tg.g.kind, float64(run.initiations))
				}
				lost := 0.0
				if run.echoSent > 0 {
					lost = 100 * float64(run.echoLost) / float64(run.echoSent)
				}
				e.res.add(rows[2], tg.g.kind, lost)
				e.res.add(rows[3], tg.g.kind, float64(run.kernelDrops))
				e.res.add(rows[4], tg.g.kind, run.rate)
				t.Logf("%-9s %s: first ping after %.1f s, initiation %d, established client lost %d of %d echoes, kernel dropped %d, generator %.0f/s",
					tg.g.kind, fk.name, first, run.initiations, run.echoLost, run.echoSent, run.kernelDrops, run.rate)
			}
		}
	}
}

func floodRateText(rate int) string {
	if rate == 0 {
		return "as fast as the generator goes"
	}
	return fmt.Sprintf("%d a second", rate)
}

// floodOnce runs one flood of kind fk against g and starts client number n in late.
func (e *env) floodOnce(t *testing.T, g *gw, late *testbed.Netns, echo *testbed.UDPEchoServer, fk floodKind, n int) (floodRun, error) {
	var run floodRun
	var conf string
	if g.stock != nil {
		conf = g.stock.AddPeer(t)
	} else {
		conf = g.node.mustCLI(t, 30*time.Second, "peer", "add", "--tenant", "bench", fmt.Sprintf("late%d", n))
	}
	drops0, err := g.topo.Pop.UDPRcvbufErrors()
	if err != nil {
		return run, err
	}
	f, err := hsflood.Start(hsflood.Config{
		Server: g.endpoint, ServerKey: g.serverPub, Sources: fk.sources,
		Listen: g.topo.Cli.ListenPacket, AnswerCookies: fk.answer, Rate: e.cfg.floodRate,
	})
	if err != nil {
		return run, err
	}
	defer f.Stop()
	flow := testbed.StartEchoFlow(t, g.topo.Cli, echo.Addr(g.topo.NetAddr4), 50*time.Millisecond)
	defer flow.Stop()
	time.Sleep(floodLead)

	name := g.topo.Name(fmt.Sprintf("f%d", n))
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, name+".sock")) })
	began := time.Now()
	c := testbed.StartClientWith(t, late, name, conf, testbed.ClientOptions{WireGuardGo: g.wgGo})
	defer c.Stop()
	err = testbed.PollErr(context.Background(), floodLimit, func(ctx context.Context) error {
		return testbed.PingN(ctx, late, g.topo.NetAddr4, 1, 300*time.Millisecond)
	})
	if err == nil {
		run.firstPing = time.Since(began)
	}
	st := f.Stop()
	run.rate = st.PerSecond()
	flow.Stop()
	run.echoSent, run.echoLost = flow.Sent(), max(flow.Sent()-flow.Replies(), 0)
	drops, err := g.topo.Pop.UDPRcvbufErrors()
	if err != nil {
		return run, err
	}
	run.kernelDrops = drops - drops0
	run.initiations = clientInitiations(c.Proc.Log())
	return run, nil
}

// clientInitiations counts the initiations a wireguard-go client (verbose log) sent up to its
// first handshake response; 0 when no response came.
func clientInitiations(log string) int {
	n := 0
	for line := range strings.SplitSeq(log, "\n") {
		switch {
		case strings.Contains(line, "Sending handshake initiation"):
			n++
		case strings.Contains(line, "Received handshake response"):
			return n
		}
	}
	return 0
}
