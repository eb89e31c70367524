package readturn

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// device is the state a reader looks at before it reads: closed, or something queued.
type device struct {
	closed atomic.Bool
	queued atomic.Int32
}

// source is a fake shared source whose read blocks until it is woken; a wake-up lasts until a
// read consumes it, like the Mux's loopback datagram and the TUN's read deadline.
type source struct {
	woken  chan struct{}
	inside atomic.Int32 // goroutines in read
}

func newSource() *source { return &source{woken: make(chan struct{}, 1)} }

func (s *source) wake() {
	select {
	case s.woken <- struct{}{}:
	default:
	}
}

func (s *source) read(t *testing.T) {
	if s.inside.Add(1) != 1 {
		t.Error("two goroutines read the source at once")
	}
	<-s.woken
	s.inside.Add(-1)
}

// serve is a device's reader: it reads the source until its device is closed, returning what
// was queued for it on the way.
func serve(t *testing.T, turn *Turn[device], src *source, d *device) (got int32) {
	for {
		closed := d.closed.Load() // before the queue: the test queues before it closes
		if n := d.queued.Swap(0); n > 0 {
			got += n
			continue
		}
		if closed {
			return got
		}
		<-turn.Wait()
		turn.Enter(d)
		if d.closed.Load() || d.queued.Load() > 0 { // the last look, after Enter
			turn.Leave()
			turn.Release()
			continue
		}
		src.read(t)
		turn.Leave()
		turn.Release()
	}
}

// TestNoLostWakeUp: devices close and have work queued for them while their goroutines take
// turns in a source that only a wake-up ends; each change is followed by a wake-up only when
// Reading says the device is in the read. No reader stays blocked, none misses work, and no
// two read at once.
func TestNoLostWakeUp(t *testing.T) {
	const devices, rounds = 4, 2000
	turn, src := New[device](), newSource()
	for round := range rounds {
		ds := make([]*device, devices)
		got := make([]int32, devices)
		var wg sync.WaitGroup
		for i := range ds {
			ds[i] = &device{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i] = serve(t, turn, src, ds[i])
			}()
		}
		for _, d := range ds {
			d.queued.Add(1)
			if turn.Reading(d) {
				src.wake()
			}
		}
		for _, d := range ds {
			d.closed.Store(true)
			if turn.Reading(d) {
				src.wake()
			}
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: a reader is still blocked in the source (reading %p, free %v)", round, turn.Reader(), turn.Free())
		}
		for i, n := range got {
			if n != 1 {
				t.Fatalf("round %d: device %d got %d of the 1 item queued for it", round, i, n)
			}
		}
		if !turn.Free() || turn.Reader() != nil {
			t.Fatalf("round %d: after every reader returned the turn is free %v, reading %p", round, turn.Free(), turn.Reader())
		}
		select { // a wake-up nobody consumed would end the next round's first read early
		case <-src.woken:
		default:
		}
	}
}

func TestReleaseOfAFreeTurnPanics(t *testing.T) {
	turn := New[device]()
	defer func() {
		if recover() == nil {
			t.Fatal("Release of a free turn did not panic")
		}
	}()
	turn.Release()
}

func TestReading(t *testing.T) {
	turn := New[device]()
	a, b := &device{}, &device{}
	if turn.Reading(a) || turn.Reading(nil) || turn.Reader() != nil {
		t.Fatal("a new turn has a reader")
	}
	<-turn.Wait()
	if turn.Free() {
		t.Fatal("free while held")
	}
	turn.Enter(a)
	if !turn.Reading(a) || turn.Reading(b) || turn.Reader() != a {
		t.Fatal("Enter(a) does not mark a, and only a")
	}
	turn.Leave()
	if turn.Reading(a) {
		t.Fatal("still reading after Leave")
	}
	turn.Release()
	if !turn.Free() {
		t.Fatal("not free after Release")
	}
}
