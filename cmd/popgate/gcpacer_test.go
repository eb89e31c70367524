package main

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
)

func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, buffers uint64
		want          int
	}{
		{0, 0, minGCPercent},
		{100 * mib, 0, 100},                    // no devices: GOGC's default
		{116 * mib, 16 * mib, 86},              // one tenant
		{2200 * mib, 1600 * mib, 11},           // 100 tenants, 10,000 active peers: maxGarbage, not 600 MiB
		{1024 * mib, 0, 25},                    // a big heap without devices: maxGarbage too
		{1700 * mib, 1600 * mib, minGCPercent}, // 100 idle tenants: 5 % would collect too often
		{1600 * mib, 1600 * mib, minGCPercent}, // only buffers
		{1000 * mib, 1600 * mib, minGCPercent}, // more buffers than the last collection saw
	} {
		if got := gcPercent(tc.live, tc.buffers); got != tc.want {
			t.Errorf("gcPercent(%d MiB live, %d MiB buffers) = %d, want %d", tc.live/mib, tc.buffers/mib, got, tc.want)
		}
	}
}

func TestGCPacer(t *testing.T) {
	var live atomic.Uint64
	sets := make(chan int, 10)
	p := newGCPacer(func() uint64 { return 600 }, slog.New(slog.DiscardHandler))
	p.setPercent = func(pct int) int { sets <- pct; return 0 }
	p.liveHeap = live.Load

	p.tune() // before the first collection: nothing to go by
	live.Store(1000)
	p.tune()
	p.tune() // unchanged: not set again
	live.Store(2000)
	p.tune()
	close(sets)
	var got []int
	for pct := range sets {
		got = append(got, pct)
	}
	if want := []int{40, 70}; !slices.Equal(got, want) {
		t.Fatalf("set %v, want %v", got, want)
	}

	// run tunes at once and then every interval until cancelled, then puts the default back.
	sets = make(chan int, 10)
	live.Store(6000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run(ctx)
	}()
	if got := <-sets; got != 90 {
		t.Errorf("run set %d first, want 90", got)
	}
	cancel()
	<-done
	if got := <-sets; got != defaultGCPercent {
		t.Errorf("run set %d when stopped, want %d", got, defaultGCPercent)
	}
}
