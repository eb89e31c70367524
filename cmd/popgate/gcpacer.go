package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// gcPacer keeps GOGC's meaning for serve's heap despite the packet buffers of the tenants'
// wireguard-go devices (gateway.Node.DeviceBufferBytes: 24 MiB a device, mostly never
// written). The garbage collector counts those buffers as live heap, so with 100 tenants the
// default GOGC=100 lets 2.4 GiB of garbage pile up before a collection, and the runtime keeps
// the memory it frees for the next time: serve's RSS climbed past 1.7 GiB while 10,000 peers
// merely rekeyed. The pacer sets the GC percent so that garbage may grow by as much as the rest
// of the live heap, as GOGC=100 means, but by maxGarbage at most. It is not used when the
// environment sets GOGC.
type gcPacer struct {
	buffers  func() uint64 // the devices' buffers, counted in the live heap
	interval time.Duration // how often the live heap is looked at
	log      *slog.Logger

	// setPercent and liveHeap are the runtime's; fakes in tests.
	setPercent func(int) int
	liveHeap   func() uint64

	percent int // last set; 0: none yet
}

const (
	// defaultGCPercent is GOGC's default, which the pacer applies to the heap in use.
	defaultGCPercent = 100
	// minGCPercent bounds how often the GC runs when the buffers are nearly all of the heap.
	minGCPercent = 10
	// maxGarbage bounds the garbage let grow between collections. With 100 tenants and
	// 10,000 active peers the rest of the heap is ≈ 600 MiB, and as much garbage again took
	// serve's RSS to 940–1,084 MiB in make bench's scale case (issue 18: ≤ 1 GiB); a node
	// with one tenant (tens of MiB) is below it.
	maxGarbage = 256 << 20
)

func newGCPacer(buffers func() uint64, log *slog.Logger) *gcPacer {
	return &gcPacer{
		buffers:    buffers,
		interval:   10 * time.Second,
		log:        log,
		setPercent: debug.SetGCPercent,
		liveHeap:   liveHeapBytes,
	}
}

// gcPercent is the GC percent, of the whole live heap, that lets garbage grow by
// defaultGCPercent of the part of it that is not buffers, up to maxGarbage.
func gcPercent(live, buffers uint64) int {
	if live == 0 || buffers >= live {
		return minGCPercent
	}
	garbage := min((live-buffers)*defaultGCPercent/100, maxGarbage)
	return max(int(100*garbage/live), minGCPercent)
}

// tune sets the GC percent for the live heap of the last collection.
func (p *gcPacer) tune() {
	live := p.liveHeap()
	if live == 0 { // no collection yet
		return
	}
	buffers := p.buffers()
	pct := gcPercent(live, buffers)
	if pct == p.percent {
		return
	}
	p.setPercent(pct)
	p.percent = pct
	p.log.Debug("GC percent set", "percent", pct, "live_heap", live, "device_buffers", buffers)
}

// run tunes now and every interval until ctx is done, then puts GOGC's default back.
func (p *gcPacer) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.tune()
		select {
		case <-ctx.Done():
			if p.percent != 0 {
				p.setPercent(defaultGCPercent)
			}
			return
		case <-t.C:
		}
	}
}

// liveHeapBytes is the heap the last garbage collection found live; 0 before the first.
func liveHeapBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
