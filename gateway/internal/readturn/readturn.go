// Package readturn lets the devices that share one source of packets read it themselves, one
// goroutine at a time.
//
// popgate has two such sources: the UDP socket the Mux shares (gateway/wgmux), which the
// tenants' wireguard-go devices read through their binds, and the kernel exit's TUN
// (gateway/kernelexit.go), which they read through their tun.Devices. The goroutine that reads
// keeps its own device's packets in the buffers it read them into (no copy, no hand-off to
// another goroutine) and queues the other devices' packets to them. Two rules make that safe:
//
//   - One reader at a time: a goroutine reads the source only while it holds the Turn, which
//     it takes by receiving from Wait and gives back with Release. (The Mux may instead keep
//     it for the device that got most of the last read, a reservation of its own; see wgmux.)
//   - No lost wake-up: a reader that may block in the source marks its device with Enter, then
//     looks at its device's state once more (closed? something queued for it?), and only then
//     reads; Leave after. Whoever changes that state (closes the device, queues for it) does
//     so first, and then wakes the source's read if Reading says the device is in it. Both
//     sides use sequentially consistent atomics, so at least one of them sees the other.
//
// How a read is woken is the source's own: the Mux sends its socket a datagram from itself
// over loopback, the kernel exit sets the TUN file's read deadline. Both last until the read
// consumes them, so a wake-up that comes before the read starts still ends it.
package readturn

import "sync/atomic"

// Turn is the right to read one shared source, and the mark of the device whose goroutine
// reads it. D is the device's type. Create it with New.
type Turn[D any] struct {
	free    chan struct{} // holds the turn while no goroutine does
	reading atomic.Pointer[D]
}

// New returns a Turn that is free.
func New[D any]() *Turn[D] {
	t := &Turn[D]{free: make(chan struct{}, 1)}
	t.free <- struct{}{}
	return t
}

// Wait returns the channel to take the turn from: the goroutine that receives from it holds
// the turn until it calls Release.
func (t *Turn[D]) Wait() <-chan struct{} { return t.free }

// Release gives the turn back; only its holder may. Release of a free turn panics: two
// goroutines would read at once.
func (t *Turn[D]) Release() {
	select {
	case t.free <- struct{}{}:
	default:
		panic("readturn: Release of a turn nobody held")
	}
}

// Enter marks d as reading the source; its goroutine must hold the turn, and calls it before
// it looks at d's state a last time and reads.
func (t *Turn[D]) Enter(d *D) { t.reading.Store(d) }

// Leave clears the mark after the read.
func (t *Turn[D]) Leave() { t.reading.Store(nil) }

// Reading reports whether d is marked as reading: after a change of d's state, its read must
// then be woken to see it.
func (t *Turn[D]) Reading(d *D) bool { return d != nil && t.reading.Load() == d }

// Reader returns the device marked as reading, nil if none.
func (t *Turn[D]) Reader() *D { return t.reading.Load() }

// Free reports whether nobody holds the turn (a snapshot: for tests and diagnostics).
func (t *Turn[D]) Free() bool { return len(t.free) == 1 }
