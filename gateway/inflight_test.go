package gateway

import (
	"testing"
)

// TestInFlightBelowMaxDoesNotWait: with fewer than inFlightMax packets unsent, or after sends
// brought the count below it, Read's wait returns at once, without the stale fallback.
func TestInFlightBelowMaxDoesNotWait(t *testing.T) {
	f := newInFlight()
	done := make(chan struct{})
	f.read(int(inFlightMax) - 1)
	f.wait(done)
	f.read(1)
	f.sent(1)
	f.wait(done)
	if s := f.stale.Load(); s != 0 {
		t.Errorf("stale fallback taken %d times, want 0: the window was never full", s)
	}
	if n := f.n.Load(); n != inFlightMax-1 {
		t.Errorf("in flight %d, want %d", n, inFlightMax-1)
	}
}

// TestInFlightWaitsForSends: a full window opens when wireguard-go's senders report sends,
// from other goroutines, while the reader waits.
func TestInFlightWaitsForSends(t *testing.T) {
	f := newInFlight()
	done := make(chan struct{})
	f.read(int(inFlightMax) + 10)
	go func() {
		for range 11 {
			f.sent(1)
		}
	}()
	f.wait(done)
	if n := f.n.Load(); n >= inFlightMax {
		t.Fatalf("wait returned with %d in flight, want below %d", n, inFlightMax)
	}
}

// TestInFlightForgetsWhatWasNeverSent: packets wireguard-go drops itself are never reported
// sent; a full window with no send drops its count rather than stop the device for good.
func TestInFlightForgetsWhatWasNeverSent(t *testing.T) {
	f := newInFlight()
	f.read(int(inFlightMax))
	f.wait(make(chan struct{}))
	if n, s := f.n.Load(), f.stale.Load(); n != 0 || s != 1 {
		t.Errorf("after a stale full window: %d in flight (want 0), %d fallbacks (want 1)", n, s)
	}
}

// TestInFlightCloseEndsWait: closing the device ends a wait on a full window.
func TestInFlightCloseEndsWait(t *testing.T) {
	f := newInFlight()
	f.read(int(inFlightMax))
	done := make(chan struct{})
	close(done)
	f.wait(done) // returns: done, or the stale fallback if the goroutine was held up
}

// TestInFlightKeepalivesDoNotGoNegative: sends wireguard-go makes on its own (keepalives)
// are clamped, so they do not widen the window beyond inFlightMax.
func TestInFlightKeepalivesDoNotGoNegative(t *testing.T) {
	f := newInFlight()
	f.sent(5)
	if n := f.n.Load(); n != 0 {
		t.Errorf("in flight %d after sends of nothing read, want 0", n)
	}
}
