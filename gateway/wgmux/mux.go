// Package wgmux shares one UDP socket among the wireguard-go devices of a node: a conn.Bind
// per device, each datagram handed to the device that owns it, handshake initiations admitted
// under load before an X25519 is spent on them.
//
// The devices read the socket themselves, one at a time, with the read turn of
// gateway/internal/readturn, which the kernel exit's TUN uses too: the turn, the mark of the
// device in the read, and the order that loses no wake-up are one mechanism for both. What
// stays here is the socket's own: its wake-up (a datagram to itself over loopback, or a reader
// of the Mux's own without loopback) and the reservation of the next read for the device that
// got most of the last one (see reserveFor); the kernel exit gives its turn to whichever
// device waits.
package wgmux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/gateway/internal/readturn"
	"github.com/popgate/popgate/store"
)

// Errors of the Mux's virtual binds, returned by Open. Open after Mux.Close returns an error
// matching net.ErrClosed.
var (
	// ErrPortMismatch: a device asked for a listen port other than the one the shared socket
	// is bound to. All devices on one Mux listen on one port; configure the same listen_port
	// (or 0) on each.
	ErrPortMismatch = errors.New("wgmux: the shared UDP socket listens on another port")
	// ErrDeviceBusy: another virtual bind of the same device ID is open. Close the old device
	// before the new one opens its bind.
	ErrDeviceBusy = errors.New("wgmux: a bind of this device ID is already open")
)

// Tuning of the Mux. Fields of Mux copy them so that tests can shrink them.
const (
	// indexTTL: an index learned from a send is forgotten after this long without a
	// datagram addressed to it. A keypair lives at most RejectAfterTime (180 s) and a handshake
	// is retried for RekeyAttemptTime (90 s), so no live index is idle this long.
	indexTTL = 5 * time.Minute
	// indexSweepEvery: expired indices are swept at most this often, by the next send of a
	// handshake message (the only thing that adds indices).
	indexSweepEvery = 30 * time.Second
	// maxIndices bounds the index table. A device holds at most 65,536 peers with a few live
	// indices each (handshake, previous, current, next keypair); beyond the bound the least
	// recently used of a small sample is evicted.
	maxIndices = 1 << 19
	// queuePackets bounds the datagrams queued for one device (like wireguard-go's own
	// inbound queue). Each holds a MaxMessageSize buffer: 64 MiB for a device that stalls.
	queuePackets = 1024
	// minWorkers: the handshake workers are GOMAXPROCS, but at least this many, so that a
	// route call waiting for one tenant's device (a long IpcSet) does not stop the others'
	// handshakes.
	minWorkers = 2
	// reserveFor: the next read of the socket is kept for the device that got most of the
	// last batch, so that its own goroutine reads its traffic without a copy; a device that has
	// not come back for it after one to two times this long (its goroutine is stuck behind a
	// full queue in wireguard-go, or not scheduled) loses it to the other devices. It bounds
	// how long one device can hold up the others; a device that keeps up is back far sooner
	// (a whole round trip through a bind: BenchmarkReceiveLatency in BENCHMARKS.md).
	reserveFor = 2 * time.Millisecond
)

// Mux shares one UDP socket (an inner conn.Bind, normally conn.NewDefaultBind()) among several
// wireguard-go devices that all use the node's private key.
//
// Each device gets its own virtual conn.Bind from Bind(deviceID). Received datagrams go to the
// device that owns them: a handshake initiation to the device that Config.Route names for the
// initiator's static public key, which the Mux decrypts as the Noise IK responder does, or,
// from an address and port where a device answered a handshake lately, to that device
// undecrypted until it fails to answer (endpoints.go); a response, cookie reply or transport
// datagram to the device that allocated its receiver index, which the Mux learns from the sender index of the initiations and responses each device
// sends. A datagram that belongs to no open device is dropped and counted (see Stats).
// Initiations pass handshake admission first (handshake.go: cookies under load, a rate per
// source, a queue per source served in turn) on the receive path, before the handshake
// workers spend an X25519 on them.
//
// The devices' own receive goroutines read the socket: each inner ReceiveFunc (one per address
// family) has a read turn (a token, see readturn), and the device goroutine holding it reads
// straight into wireguard-go's buffers and keeps its own datagrams where they are. It copies the datagrams of
// other devices into pooled buffers and queues them there (bounded queues: a device that falls
// behind loses datagrams, it does not stall the others), and queues the initiations it admits
// for the handshake workers, goroutines of the Mux that route them to a device's queue. A
// device returns queued datagrams before it reads. After a read the token is kept, for at most
// reserveFor, for the device that got most of the batch, so that a busy device goes on
// reading its own traffic; otherwise it goes to whichever device is waiting.
//
// A device goroutine blocked in a read is woken, when its device closes or the handshake worker
// queues something for it, by a one-byte datagram the Mux sends from the shared socket to
// itself over loopback (not an empty one: StdNetBind's GRO path ends a read at an empty
// datagram and loses the one after it). One-byte datagrams from loopback addresses are
// ignored, as are empty ones. When loopback does not reach the socket (checked when it opens),
// that family's socket is read by a goroutine of the Mux instead, which queues every datagram
// (a hand-off and two copies each); this is logged once.
//
// The inner bind opens with the first virtual Open and closes with the last virtual Close (or
// Mux.Close).
type Mux struct {
	inner   conn.Bind
	route   Route
	holds   func(int64, store.Key) bool // nil: not known
	log     *slog.Logger
	noise   *noise
	cookies *cookieJar  // mac2 under load, and cookie replies
	hs      *handshakes // admission and the queue of initiations
	workers int         // handshake workers per opening of the inner bind
	// eps routes initiations by their source address without decrypting them (endpoints.go);
	// useEndpoints false turns it off (for tests and benchmarks).
	eps          *endpointCache
	useEndpoints bool

	batch      int // datagrams per read of the Mux's own readers: inner.BatchSize(), at most conn.IdealBatchSize
	queueLimit int64
	reserveFor time.Duration

	// clock: now is read once per received batch; times in the index table are whole seconds
	// since epoch (monotonic when now is time.Now).
	now   func() time.Time
	epoch time.Time

	mu       sync.Mutex         // guards the fields below; held across inner Open and Close
	gen      *gen               // the open inner bind and its goroutines; nil while closed
	sessions map[int64]*session // open virtual binds by device ID
	closed   bool               // Close was called: no bind opens again

	devices atomic.Pointer[map[int64]*session] // copy of sessions for the packet path

	idxMu      sync.RWMutex // guards the fields below; readers hold it for a whole batch
	idx        map[uint32]*indexEntry
	lastSweep  int64 // seconds since epoch
	ttl        int64 // seconds
	sweepEvery int64 // seconds
	maxIndices int

	bufs    sync.Pool // *datagram
	batches sync.Pool // *batch

	loopbackWarned atomic.Bool // the loopback problem has been logged

	// monitors are the keys whose initiations the Mux answers itself (monitor.go).
	monitors monitors

	counters   [numCounters]atomic.Uint64
	goroutines atomic.Int32 // running goroutines of the Mux (worker, readers of its own), for tests
}

// datagram holds one datagram on its way to another device (or read by a reader of the Mux's
// own), sized like wireguard-go's own buffers: a datagram may be that large.
type datagram [device.MaxMessageSize]byte

// batch carries datagrams of one device from another device's read (or the handshake
// worker) to that device's ReceiveFuncs, which copy them into wireguard-go's buffers.
type batch struct {
	n     int
	bufs  [conn.IdealBatchSize]*datagram
	sizes [conn.IdealBatchSize]int
	eps   [conn.IdealBatchSize]conn.Endpoint
}

// indexEntry says which device allocated a receiver index. dev changes only under
// Mux.idxMu held for writing; used (seconds since epoch) is refreshed by readers.
type indexEntry struct {
	dev  int64
	used atomic.Int64
}

// gen is one opening of the inner bind: its receive functions and the goroutines that serve
// them. stop is closed first when the inner bind closes.
type gen struct {
	port    uint16
	readers []*reader
	wakeMsg [][]byte // one datagram of wakeSize bytes
	stop    chan struct{}
	proxies sync.WaitGroup // readers of the Mux's own (see reader.proxied)

	hsMu    sync.Mutex // guards the fields below; hsCond signals their changes
	hsCond  *sync.Cond
	stopped bool // the workers must not call route again
	workers int  // handshake workers running
	inRoute int  // of those, inside route
}

// reader is one receive function of the inner bind and the turn (the token) that lets one
// goroutine at a time call it (see readturn).
//
// The token is in exactly one place: in turn (free), in reserved (kept for the goroutine of
// one session), or with the goroutine that took it from either. A reservation is taken out
// only with a CompareAndSwap of reserved to nil, by the session's goroutine claiming it, by
// Close of that session, or by the steal timer, so exactly one of them gets the token.
type reader struct {
	i       int // index in gen.readers and session.rd
	fn      conn.ReceiveFunc
	name    string
	wakeEps []conn.Endpoint // loopback addresses of this reader's socket
	proxied bool            // loopback does not reach the socket: a goroutine of the Mux reads fn, devices only their queues

	turn     *readturn.Turn[session] // the token while free, and the session whose goroutine is inside fn (or about to be)
	reserved atomic.Pointer[session] // the session the token is kept for

	// The steal timer runs while reservations are made and a goroutine of another session
	// waits for the token: at each tick, a reservation that was already there at the previous
	// tick (no reservation made since) is stolen. With nobody waiting a reservation keeps no
	// one from reading, and the timer stays off: a device alone on the socket (or the only
	// busy one) pays no tick after each burst.
	steal    *time.Timer
	reserves atomic.Uint64 // reservations made
	ticked   atomic.Uint64 // reserves at the previous tick
	armed    atomic.Bool   // the steal timer is running
	waiting  atomic.Int32  // goroutines blocked for the token (or a grant)

	failures     atomic.Int32 // consecutive errors of fn
	closedLogged atomic.Bool
}

// session is one Open of a virtual bind. closed is closed by Close; queue is never closed
// (another device's goroutine may still hold the session), whatever is left in it is garbage
// collected.
type session struct {
	id     int64
	bind   *Bind // whose sess it is while open
	gen    *gen
	queue  chan *batch
	queued atomic.Int64 // datagrams in queue, bounded by Mux.queueLimit
	closed chan struct{}
	rd     []sessionReader // by reader.i
	// answer is how long the device takes to answer a handshake initiation routed to it
	// (see endpointCache); guarded by Mux.eps.mu.
	answer answerTimer
}

// sessionReader is the state of the session's goroutine for one inner ReceiveFunc.
type sessionReader struct {
	grant  chan struct{} // capacity 1: the token was reserved for this goroutine (a hint; claim with CompareAndSwap)
	active atomic.Bool   // a goroutine calls this ReceiveFunc and has not been told it is closed
	stolen atomic.Bool   // its last reservation was stolen: reserve no more for it until it reads
	nudge  chan struct{} // capacity 1: Interrupt asks the goroutine waiting for the token to return
}

// Route names the device that owns a peer, given the static public key that a handshake
// initiation's mac1 and encryption prove was sent to the node's public key. It may add the
// peer to that device before returning (the lazy-peer hook): the initiation is delivered to the
// device after Route returns. ok false drops the initiation and counts it as UnknownInitiator.
//
// Route is not asked about an initiation the endpoint cache routes by its source address (a
// hit, see endpointCache), which goes to a device that answered there lately; it is asked
// when that device does not answer in time (it did not hold the peer, or is not its device).
//
// Route is called concurrently (by several handshake workers) and should be quick:
// initiations queue behind it. It must not open or close the Mux's binds, and must not wait
// for a device that may be inside its own Close (wireguard-go's Device.Close holds the IPC lock
// while it closes the bind): a Close that finds Route running returns without waiting for it,
// and the worker exits when Route returns.
type Route func(initiator store.Key) (deviceID int64, ok bool)

// Config is what a Mux needs.
type Config struct {
	// Socket is the UDP socket to share: conn.NewDefaultBind(), or a wgmuxtest.Socket in tests.
	// Required. The Mux opens it with the first device's bind and closes it with the last.
	Socket conn.Bind
	// PrivateKey is the node's private key, the one every device on the Mux uses. Required.
	PrivateKey store.Key
	// Route names the device of a handshake's initiator. Default (nil): no initiator is known,
	// and every initiation is dropped as UnknownInitiator.
	Route Route
	// Holds reports whether device deviceID holds the peer with public key peer now. The Mux
	// asks before Route when a device did not answer an initiation routed to it by its source
	// address in time and may be its device: a device that holds the peer got it, and is slow
	// or refused it for reasons of its own (a replay, its rate per peer), and the Mux does not
	// send it again, which would cost the device an X25519 to drop it. Called like Route, and
	// should be as quick. Default (nil): the initiation is sent again.
	Holds func(deviceID int64, peer store.Key) bool
}

// Validate reports what is missing from c.
func (c Config) Validate() error {
	if c.Socket == nil {
		return errors.New("wgmux: Config.Socket is nil: pass the UDP socket to share (conn.NewDefaultBind())")
	}
	if c.PrivateKey == (store.Key{}) {
		return errors.New("wgmux: Config.PrivateKey is all zero: pass the node's private key")
	}
	return nil
}

// New returns a Mux over cfg.Socket for devices that all use cfg.PrivateKey. log may be nil
// (no logging).
func New(cfg Config, log *slog.Logger) (*Mux, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	noise, err := newNoise(cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("wgmux: node private key: %w", err)
	}
	route := cfg.Route
	if route == nil {
		route = func(store.Key) (int64, bool) { return 0, false }
	}
	inner := cfg.Socket
	m := &Mux{
		inner:        inner,
		route:        route,
		holds:        cfg.Holds,
		log:          log,
		noise:        noise,
		hs:           newHandshakes(defaultHSLimits()),
		eps:          newEndpointCache(),
		useEndpoints: true,
		workers:      max(runtime.GOMAXPROCS(0), minWorkers),
		batch:        min(max(inner.BatchSize(), 1), conn.IdealBatchSize),
		queueLimit:   queuePackets,
		reserveFor:   reserveFor,
		now:          time.Now,
		sessions:     map[int64]*session{},
		idx:          map[uint32]*indexEntry{},
		ttl:          int64(indexTTL / time.Second),
		sweepEvery:   int64(indexSweepEvery / time.Second),
		maxIndices:   maxIndices,
	}
	m.epoch = m.now()
	m.cookies = newCookieJar(cfg.PrivateKey.PublicKey(), func() time.Time { return m.now() })
	m.bufs.New = func() any { return new(datagram) }
	m.batches.New = func() any { return new(batch) }
	empty := map[int64]*session{}
	m.devices.Store(&empty)
	return m, nil
}

// Bind returns a new virtual bind for the device deviceID, to hand to device.NewDevice. At most
// one bind per device ID is open at a time. Open of the first virtual bind opens the inner bind;
// Close of the last closes it.
func (m *Mux) Bind(deviceID int64) *Bind {
	return &Bind{m: m, id: deviceID}
}

// Close closes the binds still open, as their Close does, and with them the shared socket; it
// waits for the Mux's goroutines but a handshake worker inside Route. Later Opens fail with
// net.ErrClosed. Close the devices first: one whose bind it closes receives nothing more.
// Idempotent.
func (m *Mux) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.gen == nil {
		return nil
	}
	for _, s := range m.sessions {
		s.bind.sess.CompareAndSwap(s, nil)
		close(s.closed)
		for _, r := range s.gen.readers {
			if r.reserved.CompareAndSwap(s, nil) {
				r.turn.Release()
			}
		}
	}
	clear(m.sessions)
	m.publishDevicesLocked()
	return m.closeInnerLocked()
}

// Bind is the conn.Bind of one device.
type Bind struct {
	m    *Mux
	id   int64
	sess atomic.Pointer[session] // non-nil while open; written under m.mu
	// onSent, when set, is told how many data messages each Send passes on (see OnSent).
	onSent func(n int)
}

var _ conn.Bind = (*Bind)(nil)

// Open joins the shared socket. The first Open of all binds opens the inner bind on port (0:
// any); later ones share it and return its port, and fail with ErrPortMismatch when they ask
// for another non-zero port. It returns one ReceiveFunc per ReceiveFunc of the inner bind (one
// per address family), each to be called by one goroutine, as wireguard-go does: it returns
// this device's queued datagrams, or reads the inner one when it gets the token (see Mux).
// Callers must pass BatchSize() buffers, as the inner bind may need them all.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, 0, fmt.Errorf("wgmux: device %d: the shared socket is closed for good: %w", b.id, net.ErrClosed)
	}
	if b.sess.Load() != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if _, busy := m.sessions[b.id]; busy {
		return nil, 0, fmt.Errorf("%w: device %d", ErrDeviceBusy, b.id)
	}
	if m.gen == nil {
		if err := m.openInnerLocked(port); err != nil {
			return nil, 0, err
		}
	} else if port != 0 && port != m.gen.port {
		return nil, 0, fmt.Errorf("%w: device %d asked for %d, the socket is on %d", ErrPortMismatch, b.id, port, m.gen.port)
	}
	g := m.gen
	s := &session{
		id:     b.id,
		bind:   b,
		gen:    g,
		queue:  make(chan *batch, m.queueLimit),
		closed: make(chan struct{}),
		rd:     make([]sessionReader, len(g.readers)),
	}
	fns := make([]conn.ReceiveFunc, len(g.readers))
	for i, r := range g.readers {
		s.rd[i].grant = make(chan struct{}, 1)
		s.rd[i].nudge = make(chan struct{}, 1)
		fns[i] = m.newReceiver(g, r, s).receive
	}
	m.sessions[b.id] = s
	m.publishDevicesLocked()
	b.sess.Store(s)
	return fns, g.port, nil
}

// Close leaves the shared socket: this device's ReceiveFuncs return net.ErrClosed, also one
// blocked in a read of the inner bind (it is woken through loopback), and its Sends fail. The
// last Close closes the inner bind and waits for the Mux's goroutines, except a handshake
// worker inside Route (see Route). Close of a closed bind does nothing.
func (b *Bind) Close() error {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	s := b.sess.Swap(nil)
	if s == nil {
		return nil
	}
	delete(m.sessions, b.id)
	m.publishDevicesLocked()
	close(s.closed)
	last := len(m.sessions) == 0
	for _, r := range s.gen.readers {
		if r.reserved.CompareAndSwap(s, nil) {
			r.turn.Release()
		}
		// A goroutine about to read checks closed after it sets reading, so one of the two sees
		// the other. The last Close needs no wake-up: closing the inner bind ends every read.
		if !last && r.turn.Reading(s) {
			m.wake(s.gen, r, "a closing device")
		}
	}
	if !last {
		return nil
	}
	return m.closeInnerLocked()
}

// Interrupt makes this bind's ReceiveFuncs that wait for their turn to read the socket return
// no datagrams (a goroutine inside a read returns after it; one that calls later returns at
// once if it would wait). A goroutine that waits for its turn keeps the other devices' reads
// honest (see reserveFor): one that has nothing to read should not wait, and the node's
// holder, which reads only while no device does, is interrupted when a device appears.
func (b *Bind) Interrupt() {
	s := b.sess.Load()
	if s == nil {
		return
	}
	for i := range s.rd {
		select {
		case s.rd[i].nudge <- struct{}{}:
		default:
		}
	}
}

// SetMark sets the mark of the shared socket: the last device to set it wins.
func (b *Bind) SetMark(mark uint32) error { return b.m.inner.SetMark(mark) }

// Send sends through the shared socket. It first learns the sender index of each initiation
// and response in bufs, so that replies addressed to it reach this device, and that this
// device answers handshakes at ep (see endpointCache).
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	s := b.sess.Load()
	if s == nil {
		return net.ErrClosed
	}
	data := 0
	for _, buf := range bufs {
		if i, ok := sentIndex(buf); ok {
			b.m.learn(b.id, i)
			if len(buf) == responseSize {
				b.m.answered(s, buf, ep)
			}
		} else if len(buf) >= transportMin && binary.LittleEndian.Uint32(buf) == typeTransport {
			data++
		}
	}
	if b.onSent != nil && data > 0 {
		b.onSent(data)
	}
	return b.m.inner.Send(bufs, ep)
}

// OnSent makes Send tell f how many data messages (transport messages, keepalives included)
// each call passes on, so that a device can bound what wireguard-go holds between its
// reads from the device and the socket. Call before the device opens the bind.
func (b *Bind) OnSent(f func(n int)) { b.onSent = f }

// answered notes the handshake response resp that session s sends to ep.
func (m *Mux) answered(s *session, resp []byte, ep conn.Endpoint) {
	confirmed, late := m.eps.answered(m.now().UnixNano(), s, ep, binary.LittleEndian.Uint32(resp[respReceiverOff:]))
	switch {
	case confirmed:
		m.counters[endpointConfirmed].Add(1)
	case late:
		m.counters[endpointLate].Add(1)
	}
}

func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) { return b.m.inner.ParseEndpoint(s) }

func (b *Bind) BatchSize() int { return b.m.inner.BatchSize() }

// Receivers returns how many ReceiveFuncs the open bind handed out (one per address family of
// the socket; wireguard-go runs a goroutine with a batch of buffers for each), 0 when closed.
func (b *Bind) Receivers() int {
	if s := b.sess.Load(); s != nil {
		return len(s.rd)
	}
	return 0
}

// publishDevicesLocked copies sessions for the packet path. Must hold m.mu.
func (m *Mux) publishDevicesLocked() {
	d := make(map[int64]*session, len(m.sessions))
	for id, s := range m.sessions {
		d[id] = s
	}
	m.devices.Store(&d)
}

// openInnerLocked opens the inner bind, checks that loopback reaches it (starting a reader of
// the Mux's own where it does not) and starts the handshake worker. Must hold m.mu.
func (m *Mux) openInnerLocked(port uint16) error {
	fns, actual, err := m.inner.Open(port)
	if err != nil {
		return fmt.Errorf("wgmux: open UDP port %d: %w", port, err)
	}
	if len(fns) == 0 {
		m.inner.Close()
		return fmt.Errorf("wgmux: open UDP port %d: the bind returned no receive functions", port)
	}
	g := &gen{
		port:    actual,
		wakeMsg: [][]byte{make([]byte, wakeSize)},
		stop:    make(chan struct{}),
	}
	g.hsCond = sync.NewCond(&g.hsMu)
	m.gen = g
	g.readers = make([]*reader, len(fns))
	for i, fn := range fns {
		r := &reader{i: i, fn: fn, name: fn.PrettyName(), turn: readturn.New[session]()}
		r.steal = time.AfterFunc(time.Hour, func() { m.stealTick(g, r) })
		r.steal.Stop()
		g.readers[i] = r
	}
	m.setUpWakes(g)
	for _, r := range g.readers {
		if r.proxied {
			g.proxies.Add(1)
			m.goroutines.Add(1)
			go m.proxyLoop(g, r)
		}
	}
	g.workers = m.workers
	for range m.workers {
		m.goroutines.Add(1)
		go m.handshakeWorker(g)
	}
	m.log.Info("wgmux: shared UDP socket open", "port", actual, "receivers", len(fns), "handshake_workers", m.workers)
	return nil
}

// setUpWakes finds each reader's loopback address by the family in the name of its receive
// function (PrettyName is v4 or v6 for StdNetBind's; both addresses for others) and sends a
// wake-up datagram to each. A reader whose address cannot be sent to is proxied. Must hold
// m.mu.
func (m *Mux) setUpWakes(g *gen) {
	type family struct {
		addr string
		ep   conn.Endpoint
		err  error
	}
	fams := [2]family{{addr: "127.0.0.1"}, {addr: "::1"}}
	for i := range fams {
		f := &fams[i]
		if f.ep, f.err = m.inner.ParseEndpoint(netip.AddrPortFrom(netip.MustParseAddr(f.addr), g.port).String()); f.err == nil {
			f.err = m.inner.Send(g.wakeMsg, f.ep)
		}
	}
	for _, r := range g.readers {
		use := fams[:]
		switch r.name {
		case "v4":
			use = fams[:1]
		case "v6":
			use = fams[1:]
		}
		for _, f := range use {
			if f.err != nil {
				r.proxied = true
				m.warnLoopback("wgmux: loopback does not reach the shared UDP socket; a goroutine of the Mux reads it instead (a hand-off and two copies per datagram)",
					"port", g.port, "receiver", r.name, "to", f.addr, "err", f.err)
				break
			}
			r.wakeEps = append(r.wakeEps, f.ep)
		}
	}
}

// warnLoopback logs the first loopback problem of the Mux's life, with what to do about it.
func (m *Mux) warnLoopback(msg string, args ...any) {
	if m.loopbackWarned.CompareAndSwap(false, true) {
		m.log.Warn(msg, append(args, "fix", "bring the loopback interface up (ip link set lo up) and let UDP from 127.0.0.1 and ::1 to the listen port through the firewall")...)
	}
}

// wake ends the read a device goroutine is blocked in on r's socket with a datagram from the
// socket to itself. why is for the log.
func (m *Mux) wake(g *gen, r *reader, why string) {
	for _, ep := range r.wakeEps {
		err := m.inner.Send(g.wakeMsg, ep)
		if err == nil {
			m.counters[wakeups].Add(1)
			continue
		}
		select {
		case <-g.stop: // closed meanwhile, which ends the read anyway
			return
		default:
		}
		m.warnLoopback("wgmux: loopback does not reach the shared UDP socket; the read of "+why+" ends only with the next datagram that arrives",
			"receiver", r.name, "to", ep.DstToString(), "err", err)
	}
}

// closeInnerLocked closes the inner bind, which ends every read, and waits for the Mux's
// goroutines but the handshake workers inside route. Must hold m.mu.
func (m *Mux) closeInnerLocked() error {
	g := m.gen
	m.gen = nil
	close(g.stop)
	for _, r := range g.readers {
		r.steal.Stop()
	}
	err := m.inner.Close()
	g.proxies.Wait()
	g.hsMu.Lock()
	g.stopped = true
	for g.workers > g.inRoute {
		g.hsCond.Wait()
	}
	g.hsMu.Unlock()
	m.hs.reset() // what waits came to this socket
	m.eps.reset()
	m.log.Info("wgmux: shared UDP socket closed", "port", g.port)
	if err != nil {
		return fmt.Errorf("wgmux: close UDP socket: %w", err)
	}
	return nil
}

// --- receiving ---

// receiver is one ReceiveFunc of one session (or, with s nil, a reader of the Mux's own):
// the state of one goroutine.
type receiver struct {
	m  *Mux
	g  *gen
	r  *reader
	s  *session
	sr *sessionReader

	cur *batch // partly returned when the caller passes fewer buffers than the batch
	pos int

	pending []pending // batches being filled for other devices
	mac1    *mac1Checker
	counts  counts
}

type pending struct {
	s *session
	b *batch
}

func (m *Mux) newReceiver(g *gen, r *reader, s *session) *receiver {
	rc := &receiver{m: m, g: g, r: r, s: s, pending: make([]pending, 0, m.batch), mac1: newMAC1Checker(&m.noise.mac1Key)}
	if s != nil {
		rc.sr = &s.rd[r.i]
	}
	return rc
}

// receive is the ReceiveFunc: it returns queued datagrams if there are any; otherwise it waits
// for them, for the session to close, or for the token, and then reads the inner bind. It
// returns only with datagrams of its own or net.ErrClosed: errors of the inner bind are
// counted and retried, as the devices have no other way to receive. Like every ReceiveFunc it
// must not be called concurrently with itself.
func (rc *receiver) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	s, r, sr := rc.s, rc.r, rc.sr
	if !sr.active.Load() {
		sr.active.Store(true)
	}
	var ( // nil (never ready) when proxied
		token <-chan struct{}
		grant chan struct{}
	)
	if !r.proxied {
		token, grant = r.turn.Wait(), sr.grant
	}
	for {
		if rc.cur != nil {
			return rc.fromQueue(bufs, sizes, eps), nil
		}
		if isClosed(s) {
			return rc.closed()
		}
		select {
		case rc.cur = <-s.queue:
			rc.dequeued()
			return rc.fromQueue(bufs, sizes, eps), nil
		default:
		}
		if r.proxied || !r.reserved.CompareAndSwap(s, nil) {
			// Counted as waiting (a proxied reader's goroutine too: nothing is ever kept
			// for its reader, so the count arms nothing). After the count: a release that
			// keeps the token later sees it and arms the timer; one that kept it before is
			// seen here.
			r.waiting.Add(1)
			if r.reserved.Load() != nil {
				rc.m.armSteal(r)
			}
			var ok, nudged bool
			select {
			case rc.cur = <-s.queue:
			case <-s.closed:
			case <-token:
				ok = true
			case <-grant:
				ok = r.reserved.CompareAndSwap(s, nil) // else a stale hint, or stolen since
			case <-sr.nudge:
				nudged = true
			}
			r.waiting.Add(-1)
			switch {
			case rc.cur != nil:
				rc.dequeued()
				return rc.fromQueue(bufs, sizes, eps), nil
			case !ok && isClosed(s):
				return rc.closed()
			case nudged:
				return 0, nil
			case !ok:
				continue
			}
		}
		if n, err := rc.read(bufs, sizes, eps); n > 0 || err != nil {
			return n, err
		}
	}
}

// dequeued starts on the batch just taken from the queue. If more are queued the device is
// behind: a read kept for it is given to the others meanwhile.
func (rc *receiver) dequeued() {
	rc.pos = 0
	if len(rc.s.queue) > 0 && rc.r.reserved.CompareAndSwap(rc.s, nil) {
		rc.r.turn.Release()
	}
}

// read reads the inner bind into bufs and sorts what came; the caller holds the token, which
// read gives back. n is 0 when none of the datagrams are the session's.
func (rc *receiver) read(bufs [][]byte, sizes []int, eps []conn.Endpoint) (n int, err error) {
	s, r, sr := rc.s, rc.r, rc.sr
	r.turn.Enter(s)
	if isClosed(s) {
		r.turn.Leave()
		rc.release(nil)
		return rc.closed()
	}
	if len(s.queue) > 0 {
		// Queued since receive looked, by an enqueuer that did not see reading set (one that
		// did would wake the read): return that first, and keep the read for later.
		r.turn.Leave()
		rc.release(s)
		return 0, nil
	}
	if sr.stolen.Load() {
		sr.stolen.Store(false)
	}
	n, err = r.fn(bufs, sizes, eps)
	r.turn.Leave()
	if err != nil {
		rc.release(nil)
		return rc.failed(err)
	}
	if r.failures.Load() != 0 {
		r.failures.Store(0)
	}
	end, hot := rc.sort(bufs, sizes, eps, n)
	rc.release(hot)
	return end, nil
}

// failed handles an error of the inner ReceiveFunc: net.ErrClosed when the session closed (or
// the inner bind was closed under the Mux), else nothing after a back-off.
func (rc *receiver) failed(err error) (int, error) {
	if isClosed(rc.s) {
		return rc.closed()
	}
	wait, closed := rc.m.receiveFailed(rc.r, err)
	if closed {
		return rc.closed()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-rc.s.closed:
		return rc.closed()
	case rc.cur = <-rc.s.queue:
		rc.dequeued()
		return 0, nil // the caller's loop returns it
	case <-t.C:
	}
	return 0, nil
}

// closed tells the caller that the session is closed, which it is told once.
func (rc *receiver) closed() (int, error) {
	rc.sr.active.Store(false)
	if rc.r.reserved.CompareAndSwap(rc.s, nil) { // normally Close took it back already
		rc.r.turn.Release()
	}
	return 0, net.ErrClosed
}

// receiveFailed counts and logs an error of r's inner ReceiveFunc and returns how long to wait
// before the next read (backing off like wireguard-go, but never giving up: the devices have no
// other way to receive); closed: the inner bind was closed by someone other than the Mux.
func (m *Mux) receiveFailed(r *reader, err error) (wait time.Duration, closed bool) {
	if errors.Is(err, net.ErrClosed) {
		if r.closedLogged.CompareAndSwap(false, true) {
			m.log.Error("wgmux: shared UDP socket closed under the devices", "receiver", r.name)
		}
		return 0, true
	}
	m.counters[receiveErrors].Add(1)
	f := r.failures.Add(1)
	if f == 1 {
		m.log.Warn("wgmux: receive failed", "receiver", r.name, "err", err)
	}
	return min(time.Duration(f)*10*time.Millisecond, time.Second), false
}

// fromQueue returns datagrams of cur, one queued batch (or the part of it that fits), copying
// each into the caller's buffer.
func (rc *receiver) fromQueue(bufs [][]byte, sizes []int, eps []conn.Endpoint) int {
	m, cur := rc.m, rc.cur
	n := 0
	for ; rc.pos < cur.n && n < len(bufs); rc.pos, n = rc.pos+1, n+1 {
		sizes[n] = copy(bufs[n], cur.bufs[rc.pos][:cur.sizes[rc.pos]])
		eps[n] = cur.eps[rc.pos]
		m.bufs.Put(cur.bufs[rc.pos])
		cur.bufs[rc.pos], cur.eps[rc.pos] = nil, nil
	}
	if rc.pos == cur.n {
		rc.s.queued.Add(-int64(cur.n))
		cur.n = 0
		m.batches.Put(cur)
		rc.cur = nil
	}
	return n
}

// sort hands the n datagrams just read into bufs to their devices. The session's own stay
// where they are; every other slot gets size 0, which callers of a ReceiveFunc skip (see
// conn.ReceiveFunc), so wireguard-go gets its datagrams without a copy. Datagrams of other
// devices are copied into pooled buffers and queued; initiations are copied for the handshake
// worker. end is how many slots the caller should look at (0: none are its own); hot is the
// session that got most of the batch, nil if none did.
func (rc *receiver) sort(bufs [][]byte, sizes []int, eps []conn.Endpoint, n int) (end int, hot *session) {
	m, self, c := rc.m, rc.s, &rc.counts
	t := m.now()
	now, nowNano := int64(t.Sub(m.epoch)/time.Second), t.UnixNano()
	devs := *m.devices.Load()
	own := 0
	var (
		lastIdx  uint32
		lastSess *session // session of lastIdx in this batch; nil: not looked up
	)
	m.idxMu.RLock()
	for i := range n {
		size := sizes[i]
		if size <= 0 || (size == wakeSize && fromLoopback(eps[i])) { // empty, or a wake-up: not counted
			sizes[i] = 0
			continue
		}
		c[received]++
		sizes[i] = 0 // until it turns out to be ours
		p := bufs[i][:size]
		if size < 4 {
			c[malformed]++
			continue
		}
		var off int
		switch binary.LittleEndian.Uint32(p) {
		case typeInitiation:
			if size != initiationSize {
				c[malformed]++
				continue
			}
			c[initiations]++
			if s := rc.initiation(nowNano, p, eps[i], devs); s != nil { // a hit of the endpoint cache
				if s == self {
					sizes[i] = size
					own++
					end = i + 1
					continue
				}
				rc.add(s, p, eps[i])
			}
			eps[i] = nil
			continue
		case typeResponse:
			if size != responseSize {
				c[malformed]++
				continue
			}
			c[responses]++
			off = respReceiverOff
		case typeCookieReply:
			if size != cookieReplySize {
				c[malformed]++
				continue
			}
			c[cookieReplies]++
			off = receiverOff
		case typeTransport:
			if size < transportMin {
				c[malformed]++
				continue
			}
			c[transports]++
			off = receiverOff
		default:
			c[malformed]++
			continue
		}
		idx := binary.LittleEndian.Uint32(p[off:])
		s := lastSess
		if s == nil || idx != lastIdx {
			e := m.idx[idx]
			if e == nil || now-e.used.Load() > m.ttl {
				c[unknownIndex]++
				continue
			}
			if e.used.Load() < now {
				e.used.Store(now)
			}
			if s = devs[e.dev]; s == nil {
				c[noDevice]++
				continue
			}
			lastIdx, lastSess = idx, s
		}
		if s == self {
			sizes[i] = size
			own++
			end = i + 1
			continue
		}
		rc.add(s, p, eps[i])
		eps[i] = nil
	}
	m.idxMu.RUnlock()
	c[delivered] += uint64(own)
	most := own
	if own > 0 {
		hot = self
	}
	if len(rc.pending) == 0 {
		m.flush(c)
		return end, hot
	}
	// Counted before another device can see them: its answer to a hit must not be counted
	// (EndpointConfirmed) before the hit is.
	m.flush(c)
	for i := range rc.pending {
		p := &rc.pending[i]
		if p.b.n > most {
			hot, most = p.s, p.b.n
		}
		m.enqueue(p.s, p.b, c)
		*p = pending{}
	}
	rc.pending = rc.pending[:0]
	m.flush(c)
	return end, hot
}

// add copies a datagram into the batch rc is filling for s, unless s's queue is already full.
func (rc *receiver) add(s *session, p []byte, ep conn.Endpoint) {
	m := rc.m
	var b *batch
	for i := range rc.pending { // a batch rarely spans more than a few devices
		if rc.pending[i].s == s {
			b = rc.pending[i].b
			break
		}
	}
	if b == nil {
		if s.queued.Load() >= m.queueLimit { // spare the copy; enqueue counts exactly
			rc.counts[queueDrops]++
			return
		}
		b = m.batches.Get().(*batch)
		rc.pending = append(rc.pending, pending{s: s, b: b})
	}
	buf := m.bufs.Get().(*datagram)
	b.sizes[b.n] = copy(buf[:], p)
	b.bufs[b.n], b.eps[b.n] = buf, ep
	b.n++
}

// enqueue hands batch b to session s, or drops it when s's queue is full (false); it never
// blocks.
func (m *Mux) enqueue(s *session, b *batch, c *counts) bool {
	n := int64(b.n)
	if s.queued.Add(n) <= m.queueLimit {
		select {
		case s.queue <- b:
			c[delivered] += uint64(n)
			c[queued] += uint64(n)
			m.kick(s)
			return true
		default: // unreachable: the channel holds queueLimit batches of at least one datagram
		}
	}
	s.queued.Add(-n)
	c[queueDrops] += uint64(n)
	m.releaseBatch(b)
	return false
}

// kick makes sure that a goroutine of s sees what was just queued: one that is not reading
// will (it waits on the queue, or looks at it before it reads); if every goroutine of s is
// blocked in a read, one is woken.
func (m *Mux) kick(s *session) {
	var blocked *reader
	for _, r := range s.gen.readers {
		if !s.rd[r.i].active.Load() {
			continue
		}
		if !r.turn.Reading(s) {
			return
		}
		blocked = r
	}
	if blocked != nil {
		m.wake(s.gen, blocked, "a device with queued datagrams")
	}
}

func (m *Mux) releaseBatch(b *batch) {
	for i := range b.n {
		m.bufs.Put(b.bufs[i])
		b.bufs[i], b.eps[i] = nil, nil
	}
	b.n = 0
	m.batches.Put(b)
}

// release gives the token back after a read: reserved for hot if that is a session of this
// generation whose goroutine for this reader runs and did not lose its last reservation,
// else free.
func (rc *receiver) release(hot *session) {
	r := rc.r
	if hot != nil && hot.gen == rc.g {
		if sr := &hot.rd[r.i]; sr.active.Load() && !sr.stolen.Load() {
			r.reserved.Store(hot)
			r.reserves.Add(1)
			if hot != rc.s {
				select {
				case sr.grant <- struct{}{}:
				default:
				}
			}
			if r.waiting.Load() > 0 {
				rc.m.armSteal(r)
			}
			select {
			case <-hot.closed: // Close may have looked before the reservation was there
				if r.reserved.CompareAndSwap(hot, nil) {
					r.turn.Release()
				}
			default:
			}
			return
		}
	}
	r.turn.Release()
}

// armSteal starts r's steal timer unless it runs.
func (m *Mux) armSteal(r *reader) {
	if r.armed.CompareAndSwap(false, true) {
		r.steal.Reset(m.reserveFor)
	}
}

// isClosed reports whether s was closed.
func isClosed(s *session) bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// stealTick is the steal timer of r: it frees a reservation that nobody claimed since the
// previous tick, and stops ticking when there is none or nobody waits for the token.
func (m *Mux) stealTick(g *gen, r *reader) {
	select {
	case <-g.stop:
		return
	default:
	}
	made := r.reserves.Load()
	prev := r.ticked.Swap(made)
	if s := r.reserved.Load(); s != nil && r.waiting.Load() > 0 {
		if made == prev && r.reserved.CompareAndSwap(s, nil) {
			s.rd[r.i].stolen.Store(true)
			m.counters[reservationsStolen].Add(1)
			r.turn.Release()
		}
		r.steal.Reset(m.reserveFor)
		return
	}
	r.armed.Store(false)
	// A reservation made, or a wait begun, while armed was still true armed nothing: look
	// again.
	if r.reserved.Load() != nil && r.waiting.Load() > 0 {
		m.armSteal(r)
	}
}

// proxyLoop reads r's socket for the devices when loopback cannot wake a device's goroutine
// blocked in it (see setUpWakes); every datagram is copied and queued.
func (m *Mux) proxyLoop(g *gen, r *reader) {
	defer g.proxies.Done()
	defer m.goroutines.Add(-1) // before Done: the Close waiting for Done checks the count
	rc := m.newReceiver(g, r, nil)
	slots := make([]*datagram, m.batch)
	bufs := make([][]byte, m.batch)
	for i := range slots {
		slots[i] = m.bufs.Get().(*datagram)
		bufs[i] = slots[i][:]
	}
	defer func() {
		for _, b := range slots {
			m.bufs.Put(b)
		}
	}()
	sizes := make([]int, m.batch)
	eps := make([]conn.Endpoint, m.batch)
	for {
		n, err := r.fn(bufs, sizes, eps)
		if err != nil {
			select {
			case <-g.stop:
				return
			default:
			}
			wait, closed := m.receiveFailed(r, err)
			if closed {
				return
			}
			t := time.NewTimer(wait)
			select {
			case <-g.stop:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if r.failures.Load() != 0 {
			r.failures.Store(0)
		}
		rc.sort(bufs, sizes, eps, n)
		clear(eps[:n])
	}
}

// wakeSize is the size of the datagram that ends a read (see Mux): not a WireGuard message.
const wakeSize = 1

// fromLoopback reports whether ep, the source of a received datagram, is a loopback
// address: a one-byte datagram from there is a wake-up, from the Mux or another local process.
func fromLoopback(ep conn.Endpoint) bool { return ep != nil && ep.DstIP().IsLoopback() }

// nowSec is the time in whole seconds since the Mux was made.
func (m *Mux) nowSec() int64 { return int64(m.now().Sub(m.epoch) / time.Second) }

// --- handshake admission and the workers ---

// initiation handles the initiation p (the right size) from ep at now: shed before its MACs
// are checked, dropped for a bad mac1, routed at once by the endpoint cache (a hit: it returns
// the device, among devs, for the caller to deliver it to), or put through admission.
func (rc *receiver) initiation(now int64, p []byte, ep conn.Endpoint, devs map[int64]*session) *session {
	m, c := rc.m, &rc.counts
	if v, shed := m.hs.shed(now, ep, mac2IsZero(p)); shed {
		m.count(v, c)
		return nil
	}
	if !rc.mac1.ok(p) {
		c[badMAC1]++
		return nil
	}
	if s := m.hit(now, p, ep, devs, c); s != nil {
		return s
	}
	m.admit(now, p, ep, c)
	return nil
}

// hit routes the initiation p (mac1 valid) from ep at now by the endpoint cache when it can,
// not under load and when admission would take it: it returns the device (counted as
// admitted and routed) or nil. A hit needs no handshake worker: the reading goroutine hands
// it on with the rest of its batch, and keeps it when it is its own device's.
func (m *Mux) hit(now int64, p []byte, ep conn.Endpoint, devs map[int64]*session, c *counts) *session {
	if !m.useEndpoints || m.hs.underLoad(now) {
		return nil
	}
	s, i := m.eps.route(now, ep, (*[initiationSize]byte)(p), devs, true)
	if s == nil {
		return nil
	}
	if m.hs.pass(now, ep) != admit { // under load since: admission decides, with mac2
		m.eps.cancel(i)
		return nil
	}
	c[admitted]++
	c[routed]++
	c[endpointHits]++
	return s
}

// admit puts the initiation p (mac1 valid) from ep through handshake admission (see
// handshake.go) at now: queued for the workers, answered with a cookie reply, or dropped,
// and counted.
func (m *Mux) admit(now int64, p []byte, ep conn.Endpoint, c *counts) {
	mac2 := mac2Unchecked
	if m.hs.underLoad(now) {
		mac2 = m.checkMAC2(p, ep)
	}
	v, pushedOut := m.hs.offer(now, p, ep, mac2)
	if v == needMAC2 { // under load since the look above
		v, pushedOut = m.hs.offer(now, p, ep, m.checkMAC2(p, ep))
	}
	if pushedOut {
		c[handshakeDrops]++
	}
	if v == sendCookie {
		m.sendCookie(p, ep)
	}
	m.count(v, c)
}

// count counts the verdict v about one initiation.
func (m *Mux) count(v verdict, c *counts) {
	switch v {
	case admit:
		c[admitted]++
	case dropQueueFull:
		c[handshakeDrops]++
	case sendCookie:
		c[cookiesSent]++
	case dropCookieLimited:
		c[cookieLimited]++
	case dropRateLimited:
		c[rateLimited]++
	}
}

// mac2IsZero reports whether the initiation p carries no mac2: a client without a
// cookie sends zeros there.
func mac2IsZero(p []byte) bool {
	return [initiationSize - initMAC2Off]byte(p[initMAC2Off:]) == [initiationSize - initMAC2Off]byte{}
}

// checkMAC2 checks the mac2 of the initiation p for its source ep; zeros need no BLAKE2s.
func (m *Mux) checkMAC2(p []byte, ep conn.Endpoint) mac2Check {
	if mac2IsZero(p) {
		return mac2Invalid
	}
	if m.cookies.checkMAC2(p, ep.DstToBytes()) {
		return mac2Valid
	}
	return mac2Invalid
}

// sendCookie answers the initiation p from ep with a cookie reply: a MAC of the source address
// and port under a secret rotated every 2 minutes (whitepaper, section 5.4.7), which a stock
// client puts into the mac2 of its next initiation.
func (m *Mux) sendCookie(p []byte, ep conn.Endpoint) {
	b, err := m.cookies.reply(p, ep.DstToBytes())
	if err != nil {
		m.log.Warn("wgmux: create cookie reply", "err", err)
		return
	}
	if err := m.inner.Send([][]byte{b[:]}, ep); err != nil {
		m.log.Debug("wgmux: send cookie reply", "to", ep.DstToString(), "err", err)
	}
}

// handshakeWorker routes the initiations admission queued until g stops; the Mux runs
// m.workers of them. Each initiation costs it one X25519 (BenchmarkStatic) and a Route call;
// admission already decided that it is worth it. The devices keep wireguard-go's own defences
// (cookies of their own once 128 handshakes wait in one device, 20 initiations a second per
// source then), which admission keeps from mattering: a device gets only what the Mux admitted.
// Were one under load by itself, it would ask for a mac2 of its own cookie, which the Mux does
// not check (its cookie secret is another).
func (m *Mux) handshakeWorker(g *gen) {
	defer func() { // after the count: a Close that this lets return finds it done
		g.hsMu.Lock()
		g.workers--
		g.hsCond.Broadcast()
		g.hsMu.Unlock()
	}()
	defer m.goroutines.Add(-1)
	var (
		c   counts
		msg [initiationSize]byte
		h   hit
	)
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		if m.eps.expired(m.now().UnixNano(), &h) { // first: it has waited already
			ok := m.fallBack(g, &h, &c)
			h = hit{}
			m.flush(&c)
			if !ok {
				return
			}
			continue
		}
		ep, ok := m.hs.take(&msg)
		if !ok {
			select {
			case <-g.stop:
				return
			case <-m.hs.wake:
			case <-m.eps.wake:
			}
			continue
		}
		ok = m.routeInitiation(g, &msg, ep, &c)
		m.flush(&c)
		if !ok {
			return
		}
	}
}

// routeInitiation decrypts the initiator's static key of the initiation msg from ep, asks
// route which device owns it and queues it there. It returns false when g stopped while route
// ran.
func (m *Mux) routeInitiation(g *gen, msg *[initiationSize]byte, ep conn.Endpoint, c *counts) bool {
	// A hit waiting at ep with msg's sender index must not be confirmed by the answer to
	// this one.
	m.eps.route(m.now().UnixNano(), ep, msg, nil, false)
	static, ok := m.noise.initiatorStatic(msg[:])
	if !ok {
		c[badInitiation]++
		return true
	}
	if m.isMonitor(static) { // another node checking this one: answered here, no device
		c[m.answerMonitor(msg[:], static, func(b []byte) error { return m.inner.Send([][]byte{b}, ep) })]++
		return true
	}
	id, known, ok := m.callRoute(g, static)
	switch {
	case !ok:
		return false
	case !known:
		c[unknownInitiator]++
		return true
	}
	s := (*m.devices.Load())[id]
	if s == nil {
		c[noDevice]++
		c[routeNoDevice]++
		return true
	}
	if m.deliver(s, msg, ep, c) {
		c[routed]++
	} else {
		c[routeQueueDrops]++
	}
	return true
}

// callRoute asks route for the device of static, unless g stopped; ok is false when g
// stopped, before or while route ran.
func (m *Mux) callRoute(g *gen, static store.Key) (id int64, known, ok bool) {
	g.hsMu.Lock()
	if g.stopped {
		g.hsMu.Unlock()
		return 0, false, false
	}
	g.inRoute++
	g.hsMu.Unlock()

	id, known = m.route(static)

	g.hsMu.Lock()
	g.inRoute--
	stopped := g.stopped
	g.hsCond.Broadcast()
	g.hsMu.Unlock()
	return id, known, !stopped
}

// deliver queues a copy of the initiation msg from ep for s; false when s's queue is full
// (counted in c).
func (m *Mux) deliver(s *session, msg *[initiationSize]byte, ep conn.Endpoint, c *counts) bool {
	buf := m.bufs.Get().(*datagram)
	copy(buf[:], msg[:])
	b := m.batches.Get().(*batch)
	b.bufs[0], b.sizes[0], b.eps[0], b.n = buf, initiationSize, ep, 1
	return m.enqueue(s, b, c)
}

// fallBack routes the hit h, which its device did not answer in time, by the initiator's
// static key, as routeInitiation does without the cache, and delivers it again: to another
// device, or to the same one unless that held the peer already (then it is slow, or dropped
// the initiation for reasons of its own, which it would again; its route may have just added
// the peer otherwise). The initiation was counted when it was routed; only the endpoint
// counters count this. It returns false when g stopped while route ran.
func (m *Mux) fallBack(g *gen, h *hit, c *counts) bool {
	c[endpointFallbacks]++
	static, ok := m.noise.initiatorStatic(h.msg[:])
	if !ok {
		return true // junk from a spoofed source: the device dropped it too
	}
	if m.isMonitor(static) {
		if m.answerMonitor(h.msg[:], static, func(b []byte) error { return m.inner.Send([][]byte{b}, h.ep) }) == monitorsAnswered {
			c[endpointRerouted]++
		}
		return true
	}
	held := m.holds != nil && m.holds(h.s.id, static)
	id, known, ok := m.callRoute(g, static)
	if !ok {
		return false
	}
	s := (*m.devices.Load())[id]
	if !known || s == nil {
		return true
	}
	if s == h.s {
		if held {
			c[endpointHeld]++
			return true
		}
		m.eps.redelivered(m.now().UnixNano(), h.ep, h.sender, s.id)
	}
	// Another hit at the address with this sender index, made since, must not be
	// confirmed by the answer to this one.
	m.eps.route(m.now().UnixNano(), h.ep, &h.msg, nil, false)
	var scratch counts // delivered and queued were counted the first time
	if m.deliver(s, &h.msg, h.ep, &scratch) {
		c[endpointRerouted]++
	}
	return true
}

// --- the index table ---

// learn records that device dev allocated receiver index i; the newest sender of an index
// wins and a change of device counts as a collision.
func (m *Mux) learn(dev int64, i uint32) {
	now := m.nowSec()
	m.idxMu.Lock()
	defer m.idxMu.Unlock()
	if now-m.lastSweep >= m.sweepEvery {
		m.sweepLocked(now)
	}
	m.counters[learned].Add(1)
	if e := m.idx[i]; e != nil {
		if e.dev != dev {
			m.counters[indexCollisions].Add(1)
			e.dev = dev
		}
		e.used.Store(now)
		return
	}
	if len(m.idx) >= m.maxIndices {
		m.sweepLocked(now)
		for len(m.idx) >= m.maxIndices {
			m.evictLocked()
		}
	}
	e := &indexEntry{dev: dev}
	e.used.Store(now)
	m.idx[i] = e
}

// sweepLocked forgets indices unused for the TTL. Must hold m.idxMu for writing.
func (m *Mux) sweepLocked(now int64) {
	m.lastSweep = now
	for i, e := range m.idx {
		if now-e.used.Load() > m.ttl {
			delete(m.idx, i)
		}
	}
}

// evictLocked forgets the least recently used of a few entries (map iteration starts at a
// random place). Must hold m.idxMu for writing.
func (m *Mux) evictLocked() {
	const sample = 8
	var (
		victim uint32
		oldest int64
		seen   int
	)
	for i, e := range m.idx {
		if u := e.used.Load(); seen == 0 || u < oldest {
			victim, oldest = i, u
		}
		if seen++; seen == sample {
			break
		}
	}
	delete(m.idx, victim)
	m.counters[indexEvictions].Add(1)
}

// sweep forgets expired indices now rather than on the next handshake; for tests.
func (m *Mux) sweep() {
	now := m.nowSec()
	m.idxMu.Lock()
	m.sweepLocked(now)
	m.idxMu.Unlock()
}

// --- counters ---

type counter int

const (
	received counter = iota
	initiations
	responses
	cookieReplies
	transports
	malformed
	badMAC1
	badInitiation
	unknownInitiator
	unknownIndex
	noDevice
	queueDrops
	handshakeDrops
	cookiesSent
	cookieLimited
	rateLimited
	admitted
	routed
	routeQueueDrops
	routeNoDevice
	delivered
	queued
	learned
	indexCollisions
	indexEvictions
	receiveErrors
	wakeups
	reservationsStolen
	monitorsAnswered
	monitorReplays
	endpointHits
	endpointConfirmed
	endpointFallbacks
	endpointRerouted
	endpointHeld
	endpointLate
	numCounters
)

// counts accumulates counters on one goroutine; flush adds them to the Mux's once per
// batch, so the packet path does not contend on shared cache lines.
type counts [numCounters]uint64

func (m *Mux) flush(c *counts) {
	for i, v := range c {
		if v != 0 {
			m.counters[i].Add(v)
			c[i] = 0
		}
	}
}

// Stats are the Mux's counters since New. Every received datagram counts once in
// Received and, once handled, exactly once in Delivered, CookiesSent or one of the drop
// counters (Malformed, BadMAC1, BadInitiation, UnknownInitiator, UnknownIndex, NoDevice,
// QueueDrops, HandshakeDrops, CookieLimited, RateLimited). An initiation passes admission
// first (Admitted, or CookiesSent, CookieLimited, RateLimited, HandshakeDrops), and the
// handshake workers handle what was admitted (Routed, MonitorsAnswered, or BadInitiation,
// UnknownInitiator, MonitorReplays, NoDevice, QueueDrops; HandshakeDrops when another
// source's initiation pushed it out), except a hit of the endpoint cache, which is admitted
// and routed on the receive path (Routed and EndpointHits). A hit that falls back is
// delivered again at most once more, counted only in the Endpoint counters.
type Stats struct {
	Received uint64 // datagrams read from the shared socket

	// Well-formed datagrams by WireGuard message type (right size for the type).
	Initiations   uint64
	Responses     uint64
	CookieReplies uint64
	Transports    uint64

	Delivered        uint64 // returned to the device that read it, or queued for a device
	Queued           uint64 // of Delivered, queued: read by another device's goroutine, or an initiation
	Malformed        uint64 // shorter than 4 bytes, an unknown type, or the wrong size for its type
	BadMAC1          uint64 // an initiation whose mac1 is not for the node's public key
	BadInitiation    uint64 // mac1 valid, but the static key does not decrypt
	UnknownInitiator uint64 // Route does not know the initiator's static key
	UnknownIndex     uint64 // a receiver index no device sent (or unused for 5 minutes)
	NoDevice         uint64 // the owning device's bind is not open
	QueueDrops       uint64 // the owning device's queue was full
	HandshakeDrops   uint64 // the queue of initiations was full (this one, or one it pushed out of a longer source queue)
	CookiesSent      uint64 // under load, an initiation without a valid mac2: answered with a cookie reply
	CookieLimited    uint64 // as CookiesSent, but the cookie replies' rate (to its source, or to all) was spent: dropped
	RateLimited      uint64 // under load, an initiation with a mac2 from a source over its rate: dropped
	// Under load, an initiation from a known source that is dropped whatever its MACs are
	// counts in CookieLimited or RateLimited before they are checked (see handshakes.shed).

	Admitted         uint64 // initiations admission queued for the handshake workers
	Routed           uint64 // of those, delivered to the device Route named
	RouteQueueDrops  uint64 // of those, dropped because that device's queue was full (in QueueDrops too)
	RouteNoDevice    uint64 // of those, dropped because that device's bind was not open (in NoDevice too)
	MonitorsAnswered uint64 // of those, from another node checking this one (SetMonitors): answered by the Mux
	MonitorReplays   uint64 // of those, from a monitor but not newer than its last: dropped
	// Of Routed, routed by the endpoint cache: to the device that last answered a handshake
	// at the initiation's source address and port, without decrypting it (see
	// endpointCache).
	EndpointHits      uint64
	EndpointConfirmed uint64 // of the hits, answered by that device in time
	EndpointFallbacks uint64 // of the hits, not answered in time: decrypted then and routed by the key
	EndpointRerouted  uint64 // of the fallbacks, delivered again (to another device, or the same one)
	EndpointHeld      uint64 // of the fallbacks, not delivered again: the device held the peer (Config.Holds)
	EndpointLate      uint64 // of the fallbacks, answered by the hit's device after all
	Endpoints         int    // addresses in the endpoint cache now
	EndpointsWaiting  int    // hits waiting for their answer now

	UnderLoad        bool // initiations need a valid mac2 now
	HandshakeQueued  int  // initiations waiting for the handshake workers now
	HandshakeSources int  // sources in the admission table now (bounded by maxSources)

	Learned         uint64 // sender indices seen in sent initiations and responses
	IndexCollisions uint64 // a sent index already belonged to another device (the newest wins)
	IndexEvictions  uint64 // indices forgotten early because the table was full
	Indices         int    // indices in the table now

	ReceiveErrors uint64 // errors from the inner bind's ReceiveFuncs other than closing

	Wakeups            uint64 // datagrams sent through loopback to end a read (a device closed, or had something queued)
	ReservationsStolen uint64 // a device did not come back in time for the read kept for it (see reserveFor)
}

// Stats returns the counters, loaded one after another: not a snapshot (a counter loaded
// later may count what followed from datagrams an earlier one did not count yet). Datagrams
// of a read still being sorted are not counted yet.
func (m *Mux) Stats() Stats {
	c := func(i counter) uint64 { return m.counters[i].Load() }
	m.idxMu.RLock()
	n := len(m.idx)
	m.idxMu.RUnlock()
	hs := m.hs.state()
	addrs, waiting := m.eps.state()
	return Stats{
		Received:           c(received),
		Initiations:        c(initiations),
		Responses:          c(responses),
		CookieReplies:      c(cookieReplies),
		Transports:         c(transports),
		Delivered:          c(delivered),
		Queued:             c(queued),
		Malformed:          c(malformed),
		BadMAC1:            c(badMAC1),
		BadInitiation:      c(badInitiation),
		UnknownInitiator:   c(unknownInitiator),
		UnknownIndex:       c(unknownIndex),
		NoDevice:           c(noDevice),
		QueueDrops:         c(queueDrops),
		HandshakeDrops:     c(handshakeDrops),
		CookiesSent:        c(cookiesSent),
		CookieLimited:      c(cookieLimited),
		RateLimited:        c(rateLimited),
		Admitted:           c(admitted),
		Routed:             c(routed),
		RouteQueueDrops:    c(routeQueueDrops),
		RouteNoDevice:      c(routeNoDevice),
		MonitorsAnswered:   c(monitorsAnswered),
		MonitorReplays:     c(monitorReplays),
		EndpointHits:       c(endpointHits),
		EndpointConfirmed:  c(endpointConfirmed),
		EndpointFallbacks:  c(endpointFallbacks),
		EndpointRerouted:   c(endpointRerouted),
		EndpointHeld:       c(endpointHeld),
		EndpointLate:       c(endpointLate),
		Endpoints:          addrs,
		EndpointsWaiting:   waiting,
		UnderLoad:          m.hs.underLoad(m.now().UnixNano()),
		HandshakeQueued:    hs.queued,
		HandshakeSources:   hs.sources,
		Learned:            c(learned),
		IndexCollisions:    c(indexCollisions),
		IndexEvictions:     c(indexEvictions),
		Indices:            n,
		ReceiveErrors:      c(receiveErrors),
		Wakeups:            c(wakeups),
		ReservationsStolen: c(reservationsStolen),
	}
}
