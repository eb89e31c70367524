package gateway

import (
	"testing"
	"time"
)

// never is a stale-window timeout no test reaches: a wait that returns did so for the reason
// the test gives it, not by the fallback.
const never = time.Hour

// TestInFlightBelowMaxDoesNotWait: with fewer than inFlightMax packets unsent, or after sends
// brought the count below it, Read's wait returns at once.
func TestInFlightBelowMaxDoesNotWait(t *testing.T) {
	f := newInFlight(never)
	done := make(chan struct{})
	f.read(int(inFlightMax) - 1)
	f.wait(done)
	f.read(1)
	f.sent(1)
	f.wait(done)
	if n := f.n.Load(); n != inFlightMax-1 {
		t.Errorf("in flight %d, want %d", n, inFlightMax-1)
	}
}

// TestInFlightWaitsForSends: a full window opens when wireguard-go's senders report sends,
// from other goroutines, while the reader waits.
func TestInFlightWaitsForSends(t *testing.T) {
	f := newInFlight(never)
	done := make(chan struct{})
	f.read(int(inFlightMax) + 10)
	go func() {
		for range 11 {
			f.sent(1)
		}
	}()
	f.wait(done)
	if n, s := f.n.Load(), f.stale.Load(); n != inFlightMax-1 || s != 0 {
		t.Fatalf("wait returned with %d in flight (want %d) after %d stale fallbacks (want 0)", n, inFlightMax-1, s)
	}
}

// TestInFlightForgetsWhatWasNeverSent: packets wireguard-go drops itself are never reported
// sent; a full window with no send drops its count rather than stop the device for good.
func TestInFlightForgetsWhatWasNeverSent(t *testing.T) {
	f := newInFlight(time.Millisecond)
	f.read(int(inFlightMax))
	f.wait(make(chan struct{}))
	if n, s := f.n.Load(), f.stale.Load(); n != 0 || s != 1 {
		t.Errorf("after a stale full window: %d in flight (want 0), %d fallbacks (want 1)", n, s)
	}
}

// TestInFlightCloseEndsWait: closing the device ends a wait on a full window.
func TestInFlightCloseEndsWait(t *testing.T) {
	f := newInFlight(never)
	f.read(int(inFlightMax))
	done := make(chan struct{})
	close(done)
	f.wait(done)
	if n, s := f.n.Load(), f.stale.Load(); n != inFlightMax || s != 0 {
		t.Errorf("after a wait ended by close: %d in flight (want %d, untouched), %d fallbacks (want 0)", n, inFlightMax, s)
	}
}

// TestInFlightKeepalivesDoNotGoNegative: sends wireguard-go makes on its own (keepalives)
// are clamped, so they do not widen the window beyond inFlightMax.
func TestInFlightKeepalivesDoNotGoNegative(t *testing.T) {
	f := newInFlight(never)
	f.sent(5)
	if n := f.n.Load(); n != 0 {
		t.Errorf("in flight %d after sends of nothing read, want 0", n)
	}
	f.read(3)
	if n := f.n.Load(); n != 3 {
		t.Errorf("in flight %d after 3 read, want 3", n)
	}
}
