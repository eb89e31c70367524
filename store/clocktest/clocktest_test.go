package clocktest

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)
	c := New(t0)
	if !c.Now().Equal(t0) || c.Elapsed() != 0 {
		t.Fatalf("new clock: %v, elapsed %v", c.Now(), c.Elapsed())
	}
	c.Advance(90 * time.Second)
	c.Advance(-30 * time.Second)
	if !c.Now().Equal(t0.Add(time.Minute)) || c.Elapsed() != time.Minute {
		t.Errorf("after a minute: %v, elapsed %v", c.Now(), c.Elapsed())
	}
}
