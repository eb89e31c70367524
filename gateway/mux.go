package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/store"
)

// Errors of the Mux's virtual binds, returned by Open.
var (
	// ErrMuxPortMismatch: a device asked for a listen port other than the one the shared socket
	// is bound to. All devices on one Mux listen on one port; configure the same listen_port
	// (or 0) on each.
	ErrMuxPortMismatch = errors.New("mux: the shared UDP socket listens on another port")
	// ErrMuxDeviceBusy: another virtual bind of the same device ID is open. Close the old device
	// before the new one opens its bind.
	ErrMuxDeviceBusy = errors.New("mux: a bind of this device ID is already open")
)

// Tuning of the Mux. Fields of Mux copy them so that tests can shrink them.
const (
	// muxIndexTTL: an index learned from a send is forgotten after this long without a
	// datagram addressed to it. A keypair lives at most RejectAfterTime (180 s) and a handshake
	// is retried for RekeyAttemptTime (90 s), so no live index is idle this long.
	muxIndexTTL = 5 * time.Minute
	// muxIndexSweepEvery: expired indices are swept at most this often, by the next send of a
	// handshake message (the only thing that adds indices).
	muxIndexSweepEvery = 30 * time.Second
	// muxMaxIndices bounds the index table. A device holds at most 65,536 peers with a few live
	// indices each (handshake, previous, current, next keypair); beyond the bound the least
	// recently used of a small sample is evicted.
	muxMaxIndices = 1 << 19
	// muxQueuePackets bounds the datagrams queued for one device (like wireguard-go's own
	// inbound queue). Each holds a MaxMessageSize buffer: 64 MiB for a device that stalls.
	muxQueuePackets = 1024
	// muxHandshakeQueue bounds the initiations waiting for the handshake worker.
	muxHandshakeQueue = 512
)

// Mux shares one UDP socket (an inner conn.Bind, normally conn.NewDefaultBind()) among several
// wireguard-go devices that all use the node's private key.
//
// Each device gets its own virtual conn.Bind from Bind(deviceID). Received datagrams go to the
// device that owns them: a handshake initiation to the device that route names for the
// initiator's static public key, which the Mux decrypts as the Noise IK responder does; a
// response, cookie reply or transport datagram to the device that allocated its receiver index,
// which the Mux learns from the sender index of the initiations and responses each device
// sends. A datagram that belongs to no open device is dropped and counted (see Stats).
//
// The inner bind opens with the first virtual Open and closes with the last virtual Close.
// While it is open the Mux runs one reader goroutine per inner ReceiveFunc and one handshake
// worker; each device has a bounded queue, and a full queue drops rather than stalls the reader
// that all devices share.
type Mux struct {
	inner      conn.Bind
	route      func(initiator store.Key) (deviceID int64, ok bool)
	log        *slog.Logger
	noise      *muxNoise
	batch      int // datagrams per inner read: inner.BatchSize(), at most conn.IdealBatchSize
	queueLimit int64

	// clock: now is read once per received batch; times in the index table are whole seconds
	// since epoch (monotonic when now is time.Now).
	now   func() time.Time
	epoch time.Time

	mu       sync.Mutex            // guards the fields below; held across inner Open and Close
	gen      *muxGen               // the open inner bind and its goroutines; nil while closed
	sessions map[int64]*muxSession // open virtual binds by device ID

	devices atomic.Pointer[map[int64]*muxSession] // copy of sessions for the packet path

	idxMu      sync.RWMutex // guards the fields below; readers hold it for a whole batch
	idx        map[uint32]*muxIndexEntry
	lastSweep  int64 // seconds since epoch
	ttl        int64 // seconds
	sweepEvery int64 // seconds
	maxIndices int

	bufs    sync.Pool // *muxBuf
	batches sync.Pool // *muxBatch

	counters   [muxNumCounters]atomic.Uint64
	goroutines atomic.Int32 // running readers and workers, for tests
}

// muxBuf holds one datagram, sized like wireguard-go's own buffers: the inner bind may split
// UDP GRO super-packets into them, and a datagram may be that large.
type muxBuf [device.MaxMessageSize]byte

// muxBatch carries datagrams of one device from a reader (or the handshake worker) to that
// device's ReceiveFuncs. The buffers move with it: a datagram is copied once, into the buffer
// wireguard-go passes to the ReceiveFunc.
type muxBatch struct {
	n     int
	bufs  [conn.IdealBatchSize]*muxBuf
	sizes [conn.IdealBatchSize]int
	eps   [conn.IdealBatchSize]conn.Endpoint
}

// muxIndexEntry says which device allocated a receiver index. dev changes only under
// Mux.idxMu held for writing; used (seconds since epoch) is refreshed by readers.
type muxIndexEntry struct {
	dev  int64
	used atomic.Int64
}

// muxGen is one opening of the inner bind: its receive functions and the goroutines that serve
// them. stop is closed first when the inner bind closes.
type muxGen struct {
	port       uint16
	fns        []conn.ReceiveFunc
	stop       chan struct{}
	readers    sync.WaitGroup
	hs         chan muxInitiation
	workerDone chan struct{}

	hsMu    sync.Mutex // guards the fields below
	stopped bool       // the worker must not call route again
	inRoute bool       // the worker is inside route
}

// muxInitiation is an initiation waiting for the handshake worker; its size is always
// muxInitiationSize.
type muxInitiation struct {
	buf *muxBuf
	ep  conn.Endpoint
}

// muxSession is one Open of a virtual bind. closed is closed by Close; queue is never closed
// (a reader may still hold the session), whatever is left in it is garbage collected.
type muxSession struct {
	id     int64
	queue  chan *muxBatch
	queued atomic.Int64 // datagrams in queue, bounded by Mux.queueLimit
	closed chan struct{}
}

// NewMux returns a Mux over inner for devices that all use nodePrivateKey.
//
// route is called for every handshake initiation whose mac1 is valid for the node's public key,
// with the initiator's static public key decrypted from it; it returns the device that owns that
// peer. It may add the peer to that device before returning (the lazy-peer hook): the initiation
// is delivered to the device after route returns. ok false drops the datagram and counts it as
// UnknownInitiator. route may be called concurrently and must be quick: initiations queue behind
// it. It must not open or close the Mux's binds, and must not wait for a device that may be
// inside its own Close (wireguard-go's Device.Close holds the IPC lock while it closes the
// bind): a Close that finds route running returns without waiting for it, and the worker exits
// when route returns.
func NewMux(inner conn.Bind, nodePrivateKey store.Key, route func(initiator store.Key) (deviceID int64, ok bool), log *slog.Logger) *Mux {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	noise, err := newMuxNoise(nodePrivateKey)
	if err != nil {
		// ecdh refuses only keys of the wrong length; a store.Key always has 32 bytes.
		panic(fmt.Sprintf("mux: node private key: %v", err))
	}
	m := &Mux{
		inner:      inner,
		route:      route,
		log:        log,
		noise:      noise,
		batch:      min(max(inner.BatchSize(), 1), conn.IdealBatchSize),
		queueLimit: muxQueuePackets,
		now:        time.Now,
		sessions:   map[int64]*muxSession{},
		idx:        map[uint32]*muxIndexEntry{},
		ttl:        int64(muxIndexTTL / time.Second),
		sweepEvery: int64(muxIndexSweepEvery / time.Second),
		maxIndices: muxMaxIndices,
	}
	m.epoch = m.now()
	m.bufs.New = func() any { return new(muxBuf) }
	m.batches.New = func() any { return new(muxBatch) }
	empty := map[int64]*muxSession{}
	m.devices.Store(&empty)
	return m
}

// Bind returns a new virtual bind for the device deviceID, to hand to device.NewDevice. At most
// one bind per device ID is open at a time. Open of the first virtual bind opens the inner bind;
// Close of the last closes it.
func (m *Mux) Bind(deviceID int64) conn.Bind {
	return &muxBind{m: m, id: deviceID}
}

// muxBind is the conn.Bind of one device.
type muxBind struct {
	m    *Mux
	id   int64
	sess atomic.Pointer[muxSession] // non-nil while open; written under m.mu
}

var _ conn.Bind = (*muxBind)(nil)

// Open joins the shared socket. The first Open of all binds opens the inner bind on port (0:
// any); later ones share it and return its port, and fail with ErrMuxPortMismatch when they ask
// for another non-zero port. It returns one ReceiveFunc, which reads this device's queue: the
// inner bind's several (IPv4, IPv6) are served by the Mux's readers, and wireguard-go holds a
// batch of 64 KiB buffers and a goroutine per ReceiveFunc of every device.
func (b *muxBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.sess.Load() != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if _, busy := m.sessions[b.id]; busy {
		return nil, 0, fmt.Errorf("%w: device %d", ErrMuxDeviceBusy, b.id)
	}
	if m.gen == nil {
		if err := m.openInnerLocked(port); err != nil {
			return nil, 0, err
		}
	} else if port != 0 && port != m.gen.port {
		return nil, 0, fmt.Errorf("%w: device %d asked for %d, the socket is on %d", ErrMuxPortMismatch, b.id, port, m.gen.port)
	}
	s := &muxSession{
		id:     b.id,
		queue:  make(chan *muxBatch, m.queueLimit),
		closed: make(chan struct{}),
	}
	m.sessions[b.id] = s
	m.publishDevicesLocked()
	b.sess.Store(s)
	return []conn.ReceiveFunc{m.receiveFunc(s)}, m.gen.port, nil
}

// Close leaves the shared socket: this device's ReceiveFuncs return net.ErrClosed and its
// Sends fail. The last Close closes the inner bind and waits for the Mux's goroutines, except
// a handshake worker inside route (see NewMux). Close of a closed bind does nothing.
func (b *muxBind) Close() error {
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
	if len(m.sessions) > 0 {
		return nil
	}
	return m.closeInnerLocked()
}

// SetMark sets the mark of the shared socket: the last device to set it wins.
func (b *muxBind) SetMark(mark uint32) error { return b.m.inner.SetMark(mark) }

// Send sends through the shared socket. It first learns the sender index of each initiation
// and response in bufs, so that replies addressed to it reach this device.
func (b *muxBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if b.sess.Load() == nil {
		return net.ErrClosed
	}
	for _, buf := range bufs {
		if i, ok := muxSentIndex(buf); ok {
			b.m.learn(b.id, i)
		}
	}
	return b.m.inner.Send(bufs, ep)
}

func (b *muxBind) ParseEndpoint(s string) (conn.Endpoint, error) { return b.m.inner.ParseEndpoint(s) }

func (b *muxBind) BatchSize() int { return b.m.inner.BatchSize() }

// publishDevicesLocked copies sessions for the packet path. Must hold m.mu.
func (m *Mux) publishDevicesLocked() {
	d := make(map[int64]*muxSession, len(m.sessions))
	for id, s := range m.sessions {
		d[id] = s
	}
	m.devices.Store(&d)
}

// openInnerLocked opens the inner bind and starts a reader per ReceiveFunc and the handshake
// worker. Must hold m.mu.
func (m *Mux) openInnerLocked(port uint16) error {
	fns, actual, err := m.inner.Open(port)
	if err != nil {
		return fmt.Errorf("mux: open UDP port %d: %w", port, err)
	}
	if len(fns) == 0 {
		m.inner.Close()
		return fmt.Errorf("mux: open UDP port %d: the bind returned no receive functions", port)
	}
	g := &muxGen{
		port:       actual,
		fns:        fns,
		stop:       make(chan struct{}),
		hs:         make(chan muxInitiation, muxHandshakeQueue),
		workerDone: make(chan struct{}),
	}
	m.gen = g
	for _, fn := range fns {
		g.readers.Add(1)
		m.goroutines.Add(1)
		go m.readLoop(g, fn)
	}
	m.goroutines.Add(1)
	go m.handshakeWorker(g)
	m.log.Info("mux: shared UDP socket open", "port", actual, "receivers", len(fns))
	return nil
}

// closeInnerLocked stops the readers, closes the inner bind and waits for the goroutines. Must
// hold m.mu.
func (m *Mux) closeInnerLocked() error {
	g := m.gen
	m.gen = nil
	close(g.stop)
	err := m.inner.Close()
	g.readers.Wait()
	g.hsMu.Lock()
	g.stopped = true
	busy := g.inRoute
	g.hsMu.Unlock()
	if !busy {
		<-g.workerDone
	}
	m.log.Info("mux: shared UDP socket closed", "port", g.port)
	if err != nil {
		return fmt.Errorf("mux: close UDP socket: %w", err)
	}
	return nil
}

// receiveFunc returns a ReceiveFunc of session s: it returns one queued batch per call (or the
// part of it that fits), copying each datagram into the caller's buffer, until s closes.
// Like every ReceiveFunc it must not be called concurrently with itself.
func (m *Mux) receiveFunc(s *muxSession) conn.ReceiveFunc {
	var cur *muxBatch // partly returned when the caller passes fewer buffers than the batch
	var pos int
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		if cur == nil {
			select {
			case <-s.closed:
				return 0, net.ErrClosed
			default:
			}
			select {
			case cur = <-s.queue:
				pos = 0
			case <-s.closed:
				return 0, net.ErrClosed
			}
		}
		n := 0
		for ; pos < cur.n && n < len(bufs); pos, n = pos+1, n+1 {
			sizes[n] = copy(bufs[n], cur.bufs[pos][:cur.sizes[pos]])
			eps[n] = cur.eps[pos]
			m.bufs.Put(cur.bufs[pos])
			cur.bufs[pos], cur.eps[pos] = nil, nil
		}
		if pos == cur.n {
			s.queued.Add(-int64(cur.n))
			cur.n = 0
			m.batches.Put(cur)
			cur = nil
		}
		return n, nil
	}
}

// enqueue hands batch b to session s, or drops it when s's queue is full; it never blocks.
func (m *Mux) enqueue(s *muxSession, b *muxBatch, c *muxCounts) {
	n := int64(b.n)
	if s.queued.Add(n) <= m.queueLimit {
		select {
		case s.queue <- b:
			c[muxDelivered] += uint64(n)
			return
		default: // unreachable: the channel holds queueLimit batches of at least one datagram
		}
	}
	s.queued.Add(-n)
	c[muxQueueDrops] += uint64(n)
	m.releaseBatch(b)
}

func (m *Mux) releaseBatch(b *muxBatch) {
	for i := range b.n {
		m.bufs.Put(b.bufs[i])
		b.bufs[i], b.eps[i] = nil, nil
	}
	b.n = 0
	m.batches.Put(b)
}

// nowSec is the time in whole seconds since the Mux was made.
func (m *Mux) nowSec() int64 { return int64(m.now().Sub(m.epoch) / time.Second) }

// --- receiving ---

// muxReader is the state of one reader goroutine: the buffers it reads into and the batches
// it is filling for devices.
type muxReader struct {
	slots   []*muxBuf
	bufs    [][]byte
	sizes   []int
	eps     []conn.Endpoint
	pending []muxPending
	mac1    *muxMAC1
	counts  muxCounts
}

type muxPending struct {
	s *muxSession
	b *muxBatch
}

func (m *Mux) newReader() *muxReader {
	r := &muxReader{
		slots:   make([]*muxBuf, m.batch),
		bufs:    make([][]byte, m.batch),
		sizes:   make([]int, m.batch),
		eps:     make([]conn.Endpoint, m.batch),
		pending: make([]muxPending, 0, m.batch),
		mac1:    newMuxMAC1(&m.noise.mac1Key),
	}
	for i := range r.slots {
		r.slots[i] = m.bufs.Get().(*muxBuf)
		r.bufs[i] = r.slots[i][:]
	}
	return r
}

// readLoop reads batches from one inner ReceiveFunc and distributes them until g stops.
func (m *Mux) readLoop(g *muxGen, fn conn.ReceiveFunc) {
	defer g.readers.Done()
	defer m.goroutines.Add(-1) // before Done: the Close waiting for Done checks the count
	r := m.newReader()
	defer func() {
		for _, b := range r.slots {
			m.bufs.Put(b)
		}
	}()
	name := fn.PrettyName()
	failures := 0
	for {
		n, err := fn(r.bufs, r.sizes, r.eps)
		if err != nil {
			select {
			case <-g.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				m.log.Error("mux: shared UDP socket closed under the devices", "receiver", name)
				return
			}
			m.counters[muxReceiveErrors].Add(1)
			if failures == 0 {
				m.log.Warn("mux: receive failed", "receiver", name, "err", err)
			}
			failures++
			// Back off on a persistent error, as wireguard-go does, but never give up: the
			// devices have no other way to receive.
			t := time.NewTimer(min(time.Duration(failures)*10*time.Millisecond, time.Second))
			select {
			case <-g.stop:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		failures = 0
		m.demux(g, r, n)
	}
}

// demux sorts the n datagrams in r into per-device batches and hands them over. A datagram
// that goes somewhere leaves its buffer behind; the reader takes a fresh one from the pool.
func (m *Mux) demux(g *muxGen, r *muxReader, n int) {
	now := m.nowSec()
	devs := *m.devices.Load()
	c := &r.counts
	var (
		lastIdx  uint32
		lastSess *muxSession // session of lastIdx in this batch; nil: not looked up
	)
	m.idxMu.RLock()
	for i := range n {
		size := r.sizes[i]
		if size <= 0 {
			continue
		}
		c[muxReceived]++
		p := r.slots[i][:size]
		if size < 4 {
			c[muxMalformed]++
			continue
		}
		var off int
		switch binary.LittleEndian.Uint32(p) {
		case muxTypeInitiation:
			if size != muxInitiationSize {
				c[muxMalformed]++
				continue
			}
			c[muxInitiations]++
			if !r.mac1.ok(p) {
				c[muxBadMAC1]++
				continue
			}
			select {
			case g.hs <- muxInitiation{buf: r.slots[i], ep: r.eps[i]}:
				m.refill(r, i)
			default:
				c[muxHandshakeDrops]++
			}
			continue
		case muxTypeResponse:
			if size != muxResponseSize {
				c[muxMalformed]++
				continue
			}
			c[muxResponses]++
			off = muxRespReceiverOff
		case muxTypeCookieReply:
			if size != muxCookieReplySize {
				c[muxMalformed]++
				continue
			}
			c[muxCookieReplies]++
			off = muxReceiverOff
		case muxTypeTransport:
			if size < muxTransportMin {
				c[muxMalformed]++
				continue
			}
			c[muxTransports]++
			off = muxReceiverOff
		default:
			c[muxMalformed]++
			continue
		}
		idx := binary.LittleEndian.Uint32(p[off:])
		s := lastSess
		if s == nil || idx != lastIdx {
			e := m.idx[idx]
			if e == nil || now-e.used.Load() > m.ttl {
				c[muxUnknownIndex]++
				continue
			}
			if e.used.Load() < now {
				e.used.Store(now)
			}
			if s = devs[e.dev]; s == nil {
				c[muxNoDevice]++
				continue
			}
			lastIdx, lastSess = idx, s
		}
		r.add(s, m, r.slots[i], size, r.eps[i])
		m.refill(r, i)
	}
	m.idxMu.RUnlock()
	for i := range r.pending {
		m.enqueue(r.pending[i].s, r.pending[i].b, c)
		r.pending[i] = muxPending{}
	}
	r.pending = r.pending[:0]
	for i := range n {
		r.eps[i] = nil
	}
	m.flush(c)
}

// refill gives slot i of r a fresh buffer after its datagram moved on.
func (m *Mux) refill(r *muxReader, i int) {
	r.slots[i] = m.bufs.Get().(*muxBuf)
	r.bufs[i] = r.slots[i][:]
	r.eps[i] = nil
}

// add appends a datagram to the batch r is filling for s.
func (r *muxReader) add(s *muxSession, m *Mux, buf *muxBuf, size int, ep conn.Endpoint) {
	var b *muxBatch
	for i := range r.pending { // a batch rarely spans more than a few devices
		if r.pending[i].s == s {
			b = r.pending[i].b
			break
		}
	}
	if b == nil {
		b = m.batches.Get().(*muxBatch)
		r.pending = append(r.pending, muxPending{s: s, b: b})
	}
	b.bufs[b.n], b.sizes[b.n], b.eps[b.n] = buf, size, ep
	b.n++
}

// handshakeWorker routes initiations until g stops.
//
// DoS: mac1 proves only that the sender knows the node's public key, which is in every client
// config, so anyone can make this worker run one X25519 (≈ 62 µs here, ≈ 16k/s on one core)
// and one route call per datagram. wireguard-go's defences (cookie replies with mac2 once 128
// handshakes queue up in a device, 20 initiations/s per source IP) act only after this, in the
// device route picked, so the worker is the first thing a flood of initiations exhausts. Its
// queue is bounded and drops (HandshakeDrops) instead of slowing the readers, so transport
// datagrams of every tenant keep flowing; but a flood does crowd out real initiations, across
// tenants. TODO(issue 5): an under-load mode here, before the X25519 (see admitInitiation).
func (m *Mux) handshakeWorker(g *muxGen) {
	defer close(g.workerDone)
	defer m.goroutines.Add(-1)
	var c muxCounts
	for {
		select {
		case <-g.stop:
			for { // return the buffers of what is left
				select {
				case it := <-g.hs:
					m.bufs.Put(it.buf)
				default:
					return
				}
			}
		case it := <-g.hs:
			ok := m.routeInitiation(g, it, &c)
			m.flush(&c)
			if !ok {
				return
			}
		}
	}
}

// routeInitiation decrypts the initiator's static key, asks route which device owns it and
// queues the initiation there. It returns false when g stopped while route ran.
func (m *Mux) routeInitiation(g *muxGen, it muxInitiation, c *muxCounts) bool {
	msg := it.buf[:muxInitiationSize]
	if !m.admitInitiation(it.ep) {
		m.bufs.Put(it.buf)
		return true
	}
	static, ok := m.noise.initiatorStatic(msg)
	if !ok {
		c[muxBadInitiation]++
		m.bufs.Put(it.buf)
		return true
	}
	g.hsMu.Lock()
	if g.stopped {
		g.hsMu.Unlock()
		m.bufs.Put(it.buf)
		return false
	}
	g.inRoute = true
	g.hsMu.Unlock()

	id, known := m.route(static)

	g.hsMu.Lock()
	g.inRoute = false
	stopped := g.stopped
	g.hsMu.Unlock()
	switch {
	case stopped:
		m.bufs.Put(it.buf)
		return false
	case !known:
		c[muxUnknownInitiator]++
		m.bufs.Put(it.buf)
		return true
	}
	s := (*m.devices.Load())[id]
	if s == nil {
		c[muxNoDevice]++
		m.bufs.Put(it.buf)
		return true
	}
	b := m.batches.Get().(*muxBatch)
	b.bufs[0], b.sizes[0], b.eps[0], b.n = it.buf, muxInitiationSize, it.ep, 1
	m.enqueue(s, b, c)
	return true
}

// admitInitiation is where under-load handling belongs (TODO issue 5): when initiations arrive
// faster than the worker decrypts them, answer those without a valid mac2 with a cookie reply
// (a cookie of the source address under a secret rotated every 2 minutes, as the whitepaper's
// section 5.4.7 describes) and rate-limit per source, before spending an X25519. Mind that
// many users behind one office NAT share a source address. What it refuses needs a counter of
// its own, so that every datagram still counts once. Today it admits everything.
func (m *Mux) admitInitiation(conn.Endpoint) bool { return true }

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
	m.counters[muxLearned].Add(1)
	if e := m.idx[i]; e != nil {
		if e.dev != dev {
			m.counters[muxIndexCollisions].Add(1)
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
	e := &muxIndexEntry{dev: dev}
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
	m.counters[muxIndexEvictions].Add(1)
}

// sweep forgets expired indices now rather than on the next handshake; for tests.
func (m *Mux) sweep() {
	now := m.nowSec()
	m.idxMu.Lock()
	m.sweepLocked(now)
	m.idxMu.Unlock()
}

// --- counters ---

type muxCounter int

const (
	muxReceived muxCounter = iota
	muxInitiations
	muxResponses
	muxCookieReplies
	muxTransports
	muxMalformed
	muxBadMAC1
	muxBadInitiation
	muxUnknownInitiator
	muxUnknownIndex
	muxNoDevice
	muxQueueDrops
	muxHandshakeDrops
	muxDelivered
	muxLearned
	muxIndexCollisions
	muxIndexEvictions
	muxReceiveErrors
	muxNumCounters
)

// muxCounts accumulates counters on one goroutine; flush adds them to the Mux's once per
// batch, so the packet path does not contend on shared cache lines.
type muxCounts [muxNumCounters]uint64

func (m *Mux) flush(c *muxCounts) {
	for i, v := range c {
		if v != 0 {
			m.counters[i].Add(v)
			c[i] = 0
		}
	}
}

// MuxStats are the Mux's counters since NewMux. Every received datagram counts once in
// Received and, once handled, exactly once in Delivered or one of the drop counters
// (Malformed, BadMAC1, BadInitiation, UnknownInitiator, UnknownIndex, NoDevice, QueueDrops,
// HandshakeDrops).
type MuxStats struct {
	Received uint64 // datagrams read from the shared socket

	// Well-formed datagrams by WireGuard message type (right size for the type).
	Initiations   uint64
	Responses     uint64
	CookieReplies uint64
	Transports    uint64

	Delivered        uint64 // queued for a device
	Malformed        uint64 // shorter than 4 bytes, an unknown type, or the wrong size for its type
	BadMAC1          uint64 // an initiation whose mac1 is not for the node's public key
	BadInitiation    uint64 // mac1 valid, but the static key does not decrypt
	UnknownInitiator uint64 // route does not know the initiator's static key
	UnknownIndex     uint64 // a receiver index no device sent (or unused for 5 minutes)
	NoDevice         uint64 // the owning device's bind is not open
	QueueDrops       uint64 // the owning device's queue was full
	HandshakeDrops   uint64 // the handshake worker's queue was full

	Learned         uint64 // sender indices seen in sent initiations and responses
	IndexCollisions uint64 // a sent index already belonged to another device (the newest wins)
	IndexEvictions  uint64 // indices forgotten early because the table was full
	Indices         int    // indices in the table now

	ReceiveErrors uint64 // errors from the inner bind's ReceiveFuncs other than closing
}

// Stats returns the counters. Datagrams still in a reader's hands are not counted yet.
func (m *Mux) Stats() MuxStats {
	c := func(i muxCounter) uint64 { return m.counters[i].Load() }
	m.idxMu.RLock()
	n := len(m.idx)
	m.idxMu.RUnlock()
	return MuxStats{
		Received:         c(muxReceived),
		Initiations:      c(muxInitiations),
		Responses:        c(muxResponses),
		CookieReplies:    c(muxCookieReplies),
		Transports:       c(muxTransports),
		Delivered:        c(muxDelivered),
		Malformed:        c(muxMalformed),
		BadMAC1:          c(muxBadMAC1),
		BadInitiation:    c(muxBadInitiation),
		UnknownInitiator: c(muxUnknownInitiator),
		UnknownIndex:     c(muxUnknownIndex),
		NoDevice:         c(muxNoDevice),
		QueueDrops:       c(muxQueueDrops),
		HandshakeDrops:   c(muxHandshakeDrops),
		Learned:          c(muxLearned),
		IndexCollisions:  c(muxIndexCollisions),
		IndexEvictions:   c(muxIndexEvictions),
		Indices:          n,
		ReceiveErrors:    c(muxReceiveErrors),
	}
}
