package gateway

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"
	"time"
)

func numbered(i int) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(i))
	return b
}

func readerBufs(n int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 16+64)
	}
	return bufs, make([]int, n)
}

// TestOutQueueOrderAndBackpressure: many producers push batches larger than the queue
// holds; every packet arrives exactly once, each producer's packets in order, and producers
// blocked on a full queue resume as the reader drains it.
func TestOutQueueOrderAndBackpressure(t *testing.T) {
	q := newOutQueue(1420)
	const producers, perProducer = 4, 3 * outQueueLen
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			batch := make([][]byte, 0, 300)
			for i := range perProducer {
				batch = append(batch, numbered(p<<32|i))
				if len(batch) == cap(batch) || i == perProducer-1 {
					if d := q.push(batch); d != 0 {
						t.Errorf("producer %d: %d dropped before close", p, d)
					}
					batch = batch[:0]
				}
			}
		})
	}
	next := make([]int, producers)
	bufs, sizes := readerBufs(outBatchMax)
	for got := 0; got < producers*perProducer; {
		n, err := q.read(bufs, sizes, 16)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if sizes[i] != 8 {
				t.Fatalf("size %d, want 8", sizes[i])
			}
			v := binary.BigEndian.Uint64(bufs[i][16:])
			p, seq := int(v>>32), int(v&0xffffffff)
			if seq != next[p] {
				t.Fatalf("producer %d: got packet %d, want %d", p, seq, next[p])
			}
			next[p]++
		}
		got += n
	}
	wg.Wait()
	if q.len() != 0 {
		t.Fatalf("%d packets left", q.len())
	}
}

// TestOutQueueClose: close wakes a waiting reader and a producer blocked on a full queue;
// nothing enters after close.
func TestOutQueueClose(t *testing.T) {
	q := newOutQueue(1420)
	readErr := make(chan error, 1)
	go func() {
		bufs, sizes := readerBufs(1)
		// Drain what is there, then block on the empty queue until close.
		for {
			if _, err := q.read(bufs, sizes, 16); err != nil {
				readErr <- err
				return
			}
		}
	}()
	full := make([][]byte, outQueueLen)
	for i := range full {
		full[i] = numbered(i)
	}
	// Fill it twice over from one producer: it blocks until the reader drains or close.
	pushed := make(chan int, 1)
	go func() { pushed <- q.push(append(full, full...)) }()
	time.Sleep(20 * time.Millisecond)
	q.close()
	if err := <-readErr; !errors.Is(err, os.ErrClosed) {
		t.Fatalf("read after close: %v, want os.ErrClosed", err)
	}
	select {
	case <-pushed:
	case <-time.After(10 * time.Second):
		t.Fatal("producer still blocked after close")
	}
	if d := q.push([][]byte{numbered(1)}); d != 1 {
		t.Fatalf("push after close dropped %d, want 1", d)
	}
	if q.len() != 0 {
		t.Fatalf("%d packets queued after close", q.len())
	}
}

func TestOutQueueAllocs(t *testing.T) {
	q := newOutQueue(1420)
	batch := make([][]byte, outBatchMax)
	for i := range batch {
		batch[i] = make([]byte, 1420)
	}
	bufs, sizes := readerBufs(outBatchMax)
	for i := range bufs {
		bufs[i] = make([]byte, 16+1420)
	}
	q.push(batch)
	q.read(bufs, sizes, 16)
	if a := testing.AllocsPerRun(100, func() {
		q.push(batch)
		q.read(bufs, sizes, 16)
	}); a != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", a)
	}
}

// BenchmarkOutQueue: one producer and the reader on their own goroutines, 1,420-byte packets
// in batches of 128.
func BenchmarkOutQueue(b *testing.B) {
	q := newOutQueue(1420)
	batch := make([][]byte, outBatchMax)
	for i := range batch {
		batch[i] = make([]byte, 1420)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes := readerBufs(outBatchMax)
		for i := range bufs {
			bufs[i] = make([]byte, 16+1420)
		}
		for {
			if _, err := q.read(bufs, sizes, 16); err != nil {
				return
			}
		}
	}()
	b.SetBytes(1420)
	b.ResetTimer()
	for i := 0; i < b.N; i += outBatchMax {
		q.push(batch[:min(outBatchMax, b.N-i)])
	}
	b.StopTimer()
	q.close()
	<-done
}

// TestOutQueueFreeList: the buffers of a burst are kept for the next while the queue is busy,
// and given up, half at a time down to outFreeIdle, while it is idle.
func TestOutQueueFreeList(t *testing.T) {
	q := newOutQueue(1420)
	burst := make([][]byte, outQueueLen)
	for i := range burst {
		burst[i] = make([]byte, 1420)
	}
	bufs, sizes := readerBufs(outBatchMax)
	for i := range bufs {
		bufs[i] = make([]byte, 16+1420)
	}
	q.push(burst)
	for got := 0; got < outQueueLen; {
		n, err := q.tryRead(bufs, sizes, 16)
		if err != nil || n == 0 {
			t.Fatalf("read after %d of %d: %d, %v", got, outQueueLen, n, err)
		}
		got += n
	}
	if len(q.free) != outQueueLen {
		t.Fatalf("%d buffers kept after a burst of %d, want all", len(q.free), outQueueLen)
	}
	// The next burst reuses them all.
	if a := testing.AllocsPerRun(1, func() {
		q.push(burst[:outBatchMax])
		q.tryRead(bufs, sizes, 16)
	}); a != 0 {
		t.Fatalf("%.0f allocations for a batch with %d buffers free", a, len(q.free))
	}
	q.trim()
	if len(q.free) != outQueueLen/2 {
		t.Fatalf("idle once: %d buffers kept, want %d", len(q.free), outQueueLen/2)
	}
	q.trim()
	if len(q.free) != outQueueLen/2 {
		t.Fatalf("idle again within %v: %d buffers kept, want still %d", outFreeDecay, len(q.free), outQueueLen/2)
	}
	for range 10 {
		q.trimmed = q.trimmed.Add(-outFreeDecay)
		q.trim()
	}
	if len(q.free) != outFreeIdle {
		t.Fatalf("idle for long: %d buffers kept, want %d", len(q.free), outFreeIdle)
	}
}
