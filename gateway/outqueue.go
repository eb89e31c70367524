package gateway

import (
	"os"
	"sync"

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

// outQueue holds the packets waiting for wireguard-go to read and encrypt them: many
// producers (the exits' output, hairpinning Writes), one consumer (the device's
// RoutineReadFromTUN, through tunDevice.Read). A producer copies a whole batch outside the
// lock, then moves it in under one lock and wakes the reader at most once; the reader takes
// everything that fits its buffers in one go. Against a channel of single packets this saves
// a channel operation, and often a goroutine wake-up, per packet.
type outQueue struct {
	bufs sync.Pool // *outPacket
	mtu  int
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

func (q *outQueue) get(size int) *outPacket {
	p, _ := q.bufs.Get().(*outPacket)
	if p == nil {
		p = &outPacket{b: make([]byte, 0, max(size, q.mtu+80))}
	}
	return p
}

// push copies pkts onto the queue in order, blocking while it is full. It returns how many
// were dropped because the queue closed.
func (q *outQueue) push(pkts [][]byte) int {
	var ps [outBatchMax]*outPacket
	for len(pkts) > 0 {
		k := min(len(pkts), outBatchMax)
		for i, pkt := range pkts[:k] {
			p := q.get(len(pkt))
			p.b = append(p.b[:0], pkt...)
			ps[i] = p
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
				for _, p := range ps[i:k] {
					q.bufs.Put(p)
				}
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
	for i, p := range q.scratch {
		sizes[i] = copy(bufs[i][offset:], p.b)
		q.bufs.Put(p)
		q.scratch[i] = nil
	}
	return k, nil
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
		q.bufs.Put(q.ring[q.head])
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
	}
	q.notFull.Broadcast()
	q.mu.Unlock()
}
