package backbone

import (
	"fmt"
	"testing"
	"time"
)

const (
	tEvery   = 300 * time.Millisecond
	tTimeout = 500 * time.Millisecond
	tRTT     = 20 * time.Millisecond
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// transition is a change of state at a time since t0.
type transition struct {
	at    time.Duration
	state State
}

func (tr transition) String() string { return fmt.Sprintf("%v@%v", tr.state, tr.at) }

// simulate drives a health as the Device does: every tEvery it judges the link and sends a
// probe; a probe k for which answered(k) holds is answered tRTT later, and the link is
// judged again then (the nudge). It returns the changes of state.
func simulate(h *health, ticks int, answered func(k int) bool) []transition {
	var out []transition
	judge := func(at time.Time) {
		if h.evaluate(at) {
			out = append(out, transition{at.Sub(t0), h.state})
		}
	}
	for k := range ticks {
		now := t0.Add(time.Duration(k) * tEvery)
		judge(now)
		seq := h.sent(now)
		if answered(k) {
			at := now.Add(tRTT)
			if !h.reply(seq, now, at) {
				panic("reply refused")
			}
			judge(at)
		}
	}
	return out
}

func TestHealth(t *testing.T) {
	for _, c := range []struct {
		name     string
		ticks    int
		answered func(k int) bool
		want     string
	}{
		{"up at the first answer", 5, func(int) bool { return true }, "[up@20ms]"},
		{"never answered: down after 3 misses", 10, func(int) bool { return false },
			// Probes at 0, 300, 600 ms; the third is judged missed at the tick after 1.1 s.
			"[down@1.2s]"},
		{"two misses in a row are not down", 20, func(k int) bool { return k%3 != 1 && k%3 != 2 }, "[up@20ms]"},
		{"dies at probe 10", 20, func(k int) bool { return k < 10 },
			// Probes 10, 11, 12 at 3.0, 3.3, 3.6 s; 12 judged missed at 4.2 s.
			"[up@20ms down@4.2s]"},
		{"comes back after the hysteresis", 40, func(k int) bool { return k < 10 || k >= 20 },
			// Answers again from probe 20 (6.02 s): Up after 3 s of answers, at 9.02 s (probe
			// 19's miss, judged at 6.3 s, came before).
			"[up@20ms down@4.2s up@9.02s]"},
		{"a miss during recovery restarts the hysteresis", 50, func(k int) bool { return k < 10 || (k >= 20 && k != 25) },
			// Probe 25 (7.5 s) missed, judged at 8.1 s; the first answer after it is probe
			// 26's at 7.82 s: Up at 10.82 s, not at 9.02 s.
			"[up@20ms down@4.2s up@10.82s]"},
		{"flapping every other probe stays down", 60, func(k int) bool { return k < 10 || (k >= 20 && k%4 != 0) },
			"[up@20ms down@4.2s]"},
	} {
		h := newHealth(tTimeout, 3, 3*time.Second, t0)
		trs := simulate(h, c.ticks, c.answered)
		if got := fmt.Sprint(trs); got != c.want {
			t.Errorf("%s: transitions %s, want %s", c.name, got, c.want)
		}
		var ups, downs uint64
		for _, tr := range trs {
			if tr.state == StateUp {
				ups++
			} else {
				downs++
			}
		}
		if h.ups != ups || h.downs != downs {
			t.Errorf("%s: counted %d ups and %d downs, want %d and %d", c.name, h.ups, h.downs, ups, downs)
		}
	}
}

func TestHealthLossAndRTT(t *testing.T) {
	h := newHealth(tTimeout, 3, 3*time.Second, t0)
	simulate(h, 250, func(k int) bool { return k%10 != 0 })
	h.evaluate(t0.Add(251 * tEvery))
	lost, judged := h.loss()
	if lost != 10 || judged != lossWindow {
		t.Errorf("loss %d of %d, want 10 of %d (one in ten, over the window)", lost, judged, lossWindow)
	}
	if h.rtt != tRTT || h.srtt != tRTT {
		t.Errorf("rtt %v, smoothed %v, want %v", h.rtt, h.srtt, tRTT)
	}
	if h.state != StateUp {
		t.Errorf("state %v, want up (never 3 misses in a row)", h.state)
	}
}

func TestHealthRefusesReplies(t *testing.T) {
	h := newHealth(tTimeout, 3, 3*time.Second, t0)
	seq := h.sent(t0)
	for _, c := range []struct {
		name string
		seq  uint32
		sent time.Time
		at   time.Time
	}{
		{"unknown sequence", seq + 1, t0, t0.Add(tRTT)},
		{"wrong send time", seq, t0.Add(time.Nanosecond), t0.Add(tRTT)},
	} {
		if h.reply(c.seq, c.sent, c.at) {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if !h.reply(seq, t0, t0.Add(tRTT)) {
		t.Fatal("the right reply was refused")
	}
	if h.reply(seq, t0, t0.Add(2*tRTT)) {
		t.Error("a repeated reply was accepted")
	}
	// The smoothed RTT moves by an eighth of the difference.
	seq = h.sent(t0.Add(tEvery))
	h.reply(seq, t0.Add(tEvery), t0.Add(tEvery+tRTT+80*time.Millisecond))
	if want := tRTT + 10*time.Millisecond; h.srtt != want || h.rtt != 100*time.Millisecond {
		t.Errorf("rtt %v smoothed %v, want 100ms and %v", h.rtt, h.srtt, want)
	}
	// An answer after the wait is refused and the probe counts as missed; its round trip
	// is learnt all the same (the link is slow, not dead), once.
	sent := t0.Add(2 * tEvery)
	seq = h.sent(sent)
	if h.reply(seq, sent, sent.Add(tTimeout)) {
		t.Error("a late reply was accepted")
	}
	if lost, _ := h.loss(); lost != 1 || h.rtt != tTimeout {
		t.Errorf("after a late reply: %d lost, rtt %v; want 1 and %v", lost, h.rtt, tTimeout)
	}
	if h.reply(seq, sent, sent.Add(tTimeout+time.Millisecond)); h.rtt != tTimeout {
		t.Error("a repeated late reply was learnt again")
	}
}

// TestInitiateHold: on a new link the lower node ID probes at once; the higher waits for the
// other's probes, or initiateHold.
func TestInitiateHold(t *testing.T) {
	queued := func(d *Device) int {
		d.tun.mu.Lock()
		defer d.tun.mu.Unlock()
		n := d.tun.un
		for ; d.tun.un > 0; d.tun.un-- {
			d.tun.urgent[d.tun.uhead] = nil
			d.tun.uhead = (d.tun.uhead + 1) % len(d.tun.urgent)
		}
		return n
	}
	var changed []LinkState
	low := bareDevice(t, 1, nil, Peer{Node: 2})
	now := time.Now()
	low.evaluateAll(now, true, &changed)
	if n := queued(low); n != 1 {
		t.Errorf("the lower node queued %d probes, want 1", n)
	}

	high := bareDevice(t, 2, nil, Peer{Node: 1})
	now = time.Now()
	high.evaluateAll(now, true, &changed)
	if n := queued(high); n != 0 {
		t.Errorf("the higher node queued %d probes before hearing from the lower, want 0", n)
	}
	high.evaluateAll(now.Add(initiateHold), true, &changed)
	if n := queued(high); n != 1 {
		t.Errorf("the higher node queued %d probes after initiateHold, want 1", n)
	}

	high = bareDevice(t, 2, nil, Peer{Node: 1})
	var echo [probeLen]byte
	probeMsg{kind: probeEcho, seq: 1}.put(echo[:])
	high.receive([][]byte{encode(1, 2, ProbeTenant, echo[:])}, 0)
	if n := queued(high); n != 1 {
		t.Errorf("the higher node queued %d replies to an echo, want 1", n)
	}
	high.evaluateAll(now, true, &changed)
	if n := queued(high); n != 1 {
		t.Errorf("the higher node queued %d probes after the lower's echo, want 1", n)
	}
}

// TestHealthSlowLink: a link whose round trip grows from 20 ms to 700 ms (more than the
// 500 ms timeout: a queue on a congested link, a route change to a far path) goes Down
// while the late answers teach the round trip, and comes back Up for good once the wait has
// grown to twice it; a link that then dies is still judged Down within maxWaitFactor × the
// timeout of its last answer.
func TestHealthSlowLink(t *testing.T) {
	h := newHealth(tTimeout, 3, 3*time.Second, t0)
	rtt := func(k int) time.Duration {
		if k < 10 {
			return tRTT
		}
		return 700 * time.Millisecond
	}
	const dies = 150 // probes from here on get no answer
	type event struct {
		at    time.Time
		seq   uint32 // 0: a tick
		sent  time.Time
		probe int
	}
	var events []event
	for k := range 200 {
		events = append(events, event{at: t0.Add(time.Duration(k) * tEvery), probe: k})
	}
	var got []transition
	judge := func(at time.Time) {
		if h.evaluate(at) {
			got = append(got, transition{at.Sub(t0), h.state})
		}
	}
	for len(events) > 0 {
		i := 0
		for j, e := range events {
			if e.at.Before(events[i].at) {
				i = j
			}
		}
		e := events[i]
		events = append(events[:i], events[i+1:]...)
		if e.seq == 0 {
			judge(e.at)
			seq := h.sent(e.at)
			if e.probe < dies {
				events = append(events, event{at: e.at.Add(rtt(e.probe)), seq: seq, sent: e.at})
			}
			continue
		}
		h.reply(e.seq, e.sent, e.at)
		judge(e.at)
	}
	if len(got) < 3 || got[0].state != StateUp || got[1].state != StateDown || got[2].state != StateUp {
		t.Fatalf("transitions %v: want up, down (the round trip jumped), up (the wait followed it), …", got)
	}
	if h.srtt < 600*time.Millisecond || h.wait() < 1200*time.Millisecond {
		t.Errorf("smoothed rtt %v, wait %v: want near 700 ms and twice it", h.srtt, h.wait())
	}
	last := got[len(got)-1]
	if len(got) != 4 || last.state != StateDown {
		t.Fatalf("transitions %v: want up, down, up, then down once the link died (no flapping on a slow link)", got)
	}
	deadAt := time.Duration(dies) * tEvery
	t.Logf("transitions %v; the link died at %v and was judged down %v later (wait %v)", got, deadAt, last.at-deadAt, h.wait())
	if bound := time.Duration(3)*tEvery + maxWaitFactor*tTimeout + tEvery; last.at-deadAt > bound {
		t.Errorf("a dead slow link was judged down %v after it died, more than %v", last.at-deadAt, bound)
	}
}
