package gateway

import (
	"os"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// outQueueLen bounds the packets waiting to be encrypted towards peers, per tenant device.
// Producers block when it is full: back-pressure into gVisor and the kernel beats dropping and
// retransmitting. It is also the queue every packet of a tenant's download waits in, so its
// depth is latency under load: by arithmetic, 1,024 packets of 1,420 B drain in ≈ 6 ms at
// 2 Gbit/s (4,096 would take ≈ 23 ms), and still hold 8 of wireguard-go's 128-packet batches.
const outQueueLen = 1024

// outBatchMax is the most packets a producer copies before taking the lock: one wireguard-go
// batch.
const outBatchMax = conn.IdealBatchSize

// outFreeMax bounds the buffers of packets already read that a queue keeps for the next
// push: as many as can be in use at once (a full ring, a batch at the reader, one at a
// producer), so that a busy queue never drops a buffer to allocate another. While the queue
// stays idle the free list halves every outFreeDecay, down to outFreeIdle (≈ 190 KiB at the
// default MTU): a tenant's burst does not keep its ≈ 1.6 MiB.
const (
	outFreeMax   = outQueueLen + 2*outBatchMax
	outFreeIdle  = outBatchMax
	outFreeDecay = time.Second
)

// outQueue holds the packets waiting for wireguard-go to read and encrypt them: many
// producers (the exits' output, hairpinning Writes), one consumer (the device's
// RoutineReadFromTUN, through tunDevice.Read). A producer takes buffers for a whole batch
// from the free list and copies into them outside the lock, then moves them in under one lock
// and wakes the reader at most once; the reader takes everything that fits its buffers in
// one go and gives the buffers back to the free list. Against a channel of single packets
// this saves a channel operation, and often a goroutine wake-up, per packet. The free list is
// the queue's own, not a sync.Pool: producers (the exit's relay goroutines) and the reader run
// on different Ps, so a pool's per-P caches always missed on one side and its shared chains
// took 10 % of serve's CPU in a TCP download.
type outQueue struct {
	mtu int
	// onReady, when set, is called (without the lock) after a push made the queue non-empty:
	// a reader blocked somewhere else than on ready needs a nudge (see tunDevice.readKernel).
	onReady func()

	// ready holds a token when packets may be waiting (sent when n goes from 0 to more; a
	// token may be stale); done is closed by close. The reader selects on them, beside the
	// kernel exit's read turn (see tunDevice.Read).
	ready chan struct{}
	done  chan struct{}

	mu      sync.Mutex // guards the fields below
	notFull sync.Cond  // broadcast when the reader frees room while producers wait, and on close
	ring    [outQueueLen]*outPacket
	head, n int
	waiting int          // producers blocked on notFull
	closed  bool         // no packet enters after close; Read returns os.ErrClosed
	free    []*outPacket // buffers to reuse, at most outFreeMax
	trimmed time.Time    // when the free list last halved
	scratch []*outPacket // the reader's; guarded by being the only reader
}

type outPacket struct {
	b []byte
}

func newOutQueue(mtu int) *outQueue {
	q := &outQueue{mtu: mtu, ready: make(chan struct{}, 1), done: make(chan struct{})}
	q.notFull.L = &q.mu
	return q
}

// take fills ps with buffers: from the free list, new ones when it runs out.
func (q *outQueue) take(ps []*outPacket) {
	q.mu.Lock()
	k := min(len(ps), len(q.free))
	copy(ps, q.free[len(q.free)-k:])
	clear(q.free[len(q.free)-k:])
	q.free = q.free[:len(q.free)-k]
	q.mu.Unlock()
	for i := k; i < len(ps); i++ {
		ps[i] = &outPacket{b: make([]byte, 0, q.mtu+80)}
	}
}

// recycle puts buffers back on the free list, as many as it holds. The caller holds mu.
func (q *outQueue) recycle(ps []*outPacket) {
	k := min(len(ps), outFreeMax-len(q.free))
	q.free = append(q.free, ps[:k]...)
}

// push copies pkts onto the queue in order, blocking while it is full. It returns how many
// were dropped because the queue closed.
func (q *outQueue) push(pkts [][]byte) int {
	var ps [outBatchMax]*outPacket
	for len(pkts) > 0 {
		k := min(len(pkts), outBatchMax)
		q.take(ps[:k])
		for i, pkt := range pkts[:k] {
			ps[i].b = append(ps[i].b[:0], pkt...)
		}
		pkts = pkts[k:]
		i, nudge := 0, false
		q.mu.Lock()
		for i < k {
			for q.n == len(q.ring) && !q.closed {
				q.waiting++
				q.notFull.Wait()
				q.waiting--
			}
			if q.closed {
				q.mu.Unlock()
				return k - i + len(pkts)
			}
			wasEmpty := q.n == 0
			for ; i < k && q.n < len(q.ring); i++ {
				q.ring[(q.head+q.n)%len(q.ring)] = ps[i]
				q.n++
			}
			if wasEmpty {
				nudge = true
				select {
				case q.ready <- struct{}{}:
				default:
				}
			}
		}
		q.mu.Unlock()
		if nudge && q.onReady != nil {
			q.onReady()
		}
		clear(ps[:k])
	}
	return 0
}

// read waits for at least one packet and copies as many as fit bufs into bufs[i][offset:],
// their lengths into sizes. After close it returns os.ErrClosed.
func (q *outQueue) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		if n, err := q.tryRead(bufs, sizes, offset); n > 0 || err != nil {
			return n, err
		}
		q.trim()
		select {
		case <-q.ready:
		case <-q.done:
			return 0, os.ErrClosed
		}
	}
}

// tryRead is read without the wait: it returns 0, nil when the queue is empty.
func (q *outQueue) tryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0, os.ErrClosed
	}
	k := min(q.n, len(bufs))
	q.scratch = q.scratch[:0]
	for range k {
		q.scratch = append(q.scratch, q.ring[q.head])
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
		q.n--
	}
	if k > 0 && q.waiting > 0 {
		q.notFull.Broadcast()
	}
	q.mu.Unlock()
	if k == 0 {
		return 0, nil
	}
	for i, p := range q.scratch {
		sizes[i] = copy(bufs[i][offset:], p.b)
	}
	q.mu.Lock()
	q.recycle(q.scratch)
	q.mu.Unlock()
	clear(q.scratch)
	return k, nil
}

// trim halves the free list, down to outFreeIdle, when it last did outFreeDecay ago or more.
// The reader calls it before it waits on an empty queue.
func (q *outQueue) trim() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.free) <= outFreeIdle {
		return
	}
	now := time.Now()
	if now.Sub(q.trimmed) < outFreeDecay {
		return
	}
	q.trimmed = now
	k := max(len(q.free)/2, outFreeIdle)
	clear(q.free[k:])
	q.free = q.free[:k]
}

// empty reports whether nothing is queued.
func (q *outQueue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n == 0
}

// len returns the number of packets queued.
func (q *outQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// close wakes the reader and every producer; packets still queued are dropped. Idempotent.
func (q *outQueue) close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	close(q.done)
	for ; q.n > 0; q.n-- {
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
	}
	q.free = nil
	q.notFull.Broadcast()
	q.mu.Unlock()
}
