package backbone

import (
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// queueLen bounds the tenant packets waiting for wireguard-go to encrypt them. Senders block
// while it is full (back-pressure, as the access devices' queues do): 1,024 packets of
// 1,420 B drain in ≈ 6 ms at 2 Gbit/s.
const queueLen = 1024

// urgentLen bounds the probes waiting. They have a queue of their own, read first, so that a
// link full of tenant traffic does not lose its probes and look dead.
const urgentLen = 256

// sendBatch is the most packets Send copies before taking the queue's lock.
const sendBatch = conn.IdealBatchSize

type packet struct{ b []byte }

// memTun is the backbone device's tun.Device, all in memory: Read hands wireguard-go the
// packets Send and the prober queued (outer header and label already in front), Write takes
// what wireguard-go decrypted and gives it to the Device's receive path.
type memTun struct {
	mtu  int // the outer packet's: tenant MTU + Overhead
	recv func(bufs [][]byte, offset int)

	bufs   sync.Pool // *packet with room for mtu bytes
	ready  chan struct{}
	done   chan struct{}
	events chan tun.Event

	mu      sync.Mutex // guards the fields below
	notFull sync.Cond  // broadcast when Read frees room while senders wait, and on close
	ring    [queueLen]*packet
	head, n int
	urgent  [urgentLen]*packet
	uhead   int
	un      int
	waiting int
	closed  bool
	scratch []*packet // Read's; there is one reader (RoutineReadFromTUN)
}

var _ tun.Device = (*memTun)(nil)

func newMemTun(mtu int, recv func(bufs [][]byte, offset int)) *memTun {
	t := &memTun{
		mtu:    mtu,
		recv:   recv,
		ready:  make(chan struct{}, 1),
		done:   make(chan struct{}),
		events: make(chan tun.Event),
	}
	t.notFull.L = &t.mu
	t.bufs.New = func() any { return &packet{b: make([]byte, 0, mtu)} }
	return t
}

func (t *memTun) get() *packet { return t.bufs.Get().(*packet) }

// push queues ps in order, blocking while the queue is full. It returns false, and recycles
// what it did not queue, when the tun closed.
func (t *memTun) push(ps []*packet) bool {
	i := 0
	t.mu.Lock()
	for i < len(ps) {
		for t.n == len(t.ring) && !t.closed {
			t.waiting++
			t.notFull.Wait()
			t.waiting--
		}
		if t.closed {
			t.mu.Unlock()
			for _, p := range ps[i:] {
				t.bufs.Put(p)
			}
			return false
		}
		wasEmpty := t.n == 0 && t.un == 0
		for ; i < len(ps) && t.n < len(t.ring); i++ {
			t.ring[(t.head+t.n)%len(t.ring)] = ps[i]
			t.n++
		}
		if wasEmpty {
			t.wakeLocked()
		}
	}
	t.mu.Unlock()
	return true
}

// pushUrgent queues a probe without waiting; it returns false when the probe queue is full
// or closed (the probe is then lost, and counted as such by its link).
func (t *memTun) pushUrgent(p *packet) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.un == len(t.urgent) {
		t.bufs.Put(p)
		return false
	}
	if t.n == 0 && t.un == 0 {
		t.wakeLocked()
	}
	t.urgent[(t.uhead+t.un)%len(t.urgent)] = p
	t.un++
	return true
}

func (t *memTun) wakeLocked() {
	select {
	case t.ready <- struct{}{}:
	default:
	}
}

// Read waits for packets and copies as many as fit bufs into bufs[i][offset:], probes first.
// After Close it returns os.ErrClosed.
func (t *memTun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return 0, os.ErrClosed
		}
		t.scratch = t.scratch[:0]
		for t.un > 0 && len(t.scratch) < len(bufs) {
			t.scratch = append(t.scratch, t.urgent[t.uhead])
			t.urgent[t.uhead] = nil
			t.uhead = (t.uhead + 1) % len(t.urgent)
			t.un--
		}
		for t.n > 0 && len(t.scratch) < len(bufs) {
			t.scratch = append(t.scratch, t.ring[t.head])
			t.ring[t.head] = nil
			t.head = (t.head + 1) % len(t.ring)
			t.n--
		}
		if len(t.scratch) > 0 && t.waiting > 0 {
			t.notFull.Broadcast()
		}
		t.mu.Unlock()
		if len(t.scratch) > 0 {
			for i, p := range t.scratch {
				sizes[i] = copy(bufs[i][offset:], p.b)
				t.bufs.Put(p)
			}
			n := len(t.scratch)
			clear(t.scratch)
			return n, nil
		}
		select {
		case <-t.ready:
		case <-t.done:
		}
	}
}

// Write takes the packets wireguard-go decrypted (their outer source checked against the
// sending peer's AllowedIPs) and hands them to the receive path.
func (t *memTun) Write(bufs [][]byte, offset int) (int, error) {
	t.recv(bufs, offset)
	return len(bufs), nil
}

// Close unblocks Read and every sender; queued packets are dropped. Idempotent.
func (t *memTun) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	for ; t.n > 0; t.n-- {
		t.ring[t.head] = nil
		t.head = (t.head + 1) % len(t.ring)
	}
	for ; t.un > 0; t.un-- {
		t.urgent[t.uhead] = nil
		t.uhead = (t.uhead + 1) % len(t.urgent)
	}
	t.notFull.Broadcast()
	close(t.done)
	close(t.events)
	return nil
}

func (t *memTun) File() *os.File           { return nil }
func (t *memTun) MTU() (int, error)        { return t.mtu, nil }
func (t *memTun) Name() (string, error)    { return "backbone", nil }
func (t *memTun) Events() <-chan tun.Event { return t.events }
func (t *memTun) BatchSize() int           { return conn.IdealBatchSize }
