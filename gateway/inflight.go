package gateway

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// inFlightMax bounds the packets wireguard-go has read from a tenant device's queue but
// not yet sent, in its batches of conn.IdealBatchSize (128) packets per processor and at
// least two: a batch for one peer is encrypted by one worker, so as many batches as
// processors keep them all busy. wireguard-go's own queues hold up to 1,024 batches (131,072
// packets) and never push back, so without a bound a download from the userspace exit queued
// there, out of gVisor's sight: its TCP kept growing its window until the stock client's
// socket overflowed, and repaired those losses by timeout. With the bound the standing queue
// stays in outQueue, whose producers block (back-pressure into gVisor), and the client
// receives at the rate the device encrypts. `make bench` on 2 cores, download against stock,
// 1 / 4 streams: 0.88× / 0.80× without the bound, 0.96× / 0.91× with it (full runs, CPU per
// GB 1.29× / 1.41× → 1.14× / 1.11×); its tcp phase on a build with a newer gVisor, same TCP
// settings: 0.97× / 0.88× at 128 packets, 0.98× / 0.91× at 256, 0.92× / 0.93× at 512
// (docs/perf-tcp.md).
var inFlightMax = int64(conn.IdealBatchSize * max(2, runtime.GOMAXPROCS(0)))

// inFlightStale is how long a full window may see no send before its count is dropped:
// packets wireguard-go drops itself (for a peer without a session, beyond the 128 it stages;
// to an address no peer has) are never sent, and would otherwise hold the window shut
// (TestE2EOfflinePeerDoesNotStallItsTenant). A device loses at most this much reading time
// per inFlightMax such packets.
const inFlightStale = 2 * time.Millisecond

// inFlight counts the packets a device's Read handed wireguard-go less the data messages its
// bind sent, and makes Read wait while that reaches inFlightMax. Read is the only waiter
// (wireguard-go has one reader per device); sent is called from its per-peer senders.
type inFlight struct {
	n          atomic.Int64
	sentc      chan struct{} // a token when a send lowered n; may be stale
	timer      *time.Timer   // the reader's
	staleAfter time.Duration // inFlightStale; longer in tests
	// stale counts the windows dropped after staleAfter (read by tests).
	stale atomic.Uint64
}

func newInFlight(staleAfter time.Duration) *inFlight {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &inFlight{sentc: make(chan struct{}, 1), timer: t, staleAfter: staleAfter}
}

// read notes k packets handed to wireguard-go.
func (f *inFlight) read(k int) { f.n.Add(int64(k)) }

// sent notes k data messages sent. Keepalives are data messages wireguard-go makes itself, so
// the count can go below zero; it is clamped at zero.
func (f *inFlight) sent(k int) {
	v := f.n.Add(-int64(k))
	for v < 0 && !f.n.CompareAndSwap(v, 0) {
		v = f.n.Load() // a read landed in between
	}
	select {
	case f.sentc <- struct{}{}:
	default:
	}
}

// wait returns when fewer than inFlightMax packets are in flight, or done is closed.
func (f *inFlight) wait(done <-chan struct{}) {
	for f.n.Load() >= inFlightMax {
		f.timer.Reset(f.staleAfter)
		select {
		case <-f.sentc:
		case <-done:
			f.timer.Stop()
			return
		case <-f.timer.C:
			// Nothing sent for staleAfter with the window full: what is missing was
			// dropped inside wireguard-go.
			f.n.Store(0)
			f.stale.Add(1)
		}
		f.timer.Stop()
	}
}
