// Package clocktest is a settable clock for tests of the packages that take a clock: wall
// clocks (store.Options.Now, webui.ServerConfig.Now) read Now, monotonic ones
// (firewall.Config.Now) read Elapsed. It imports only the standard library, so any package's
// tests may use it; it sits under store, the lowest package that takes a clock.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a clock that moves only when told. It is safe for concurrent use.
type Clock struct {
	mu    sync.Mutex
	start time.Time
	now   time.Time
}

// New returns a Clock that reads t until moved.
func New(t time.Time) *Clock { return &Clock{start: t, now: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Elapsed is how far the clock has moved since New: a monotonic reading.
func (c *Clock) Elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now.Sub(c.start)
}

// Advance moves the clock d forward (backward for a negative d).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
