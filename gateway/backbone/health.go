package backbone

import "time"

// State is a link's health as the probes see it.
type State uint8

const (
	// StateUnknown: no probe answered and too few missed to judge yet (a new link).
	StateUnknown State = iota
	// StateUp: probes are answered. A new link is Up at its first answer; a link that was
	// Down only after UpAfter of answers without a miss.
	StateUp
	// StateDown: DownAfter probes in a row went unanswered.
	StateDown
)

func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	}
	return "invalid"
}

// lossWindow is how many of the latest probes loss is reckoned over (and how many are kept).
const lossWindow = 100

type probeState uint8

const (
	probeNone probeState = iota // slot never used
	probePending
	probeAnswered
	probeMissed
)

type probeSlot struct {
	seq   uint32
	sent  time.Time
	got   time.Time // when the answer came
	state probeState
	// lateSeen: an answer came after the probe was judged missed (its round trip was
	// learnt once).
	lateSeen bool
}

// health follows one link from its probes: it is told of each probe sent and each reply
// with the time, and judges misses and the state in evaluate. It reads no clock, so tests
// drive it with made-up times. Not safe for concurrent use: the Device guards it.
type health struct {
	timeout   time.Duration
	downAfter int
	upAfter   time.Duration

	state State
	since time.Time // when state was entered
	// ups and downs count the times state became StateUp and StateDown.
	ups, downs uint64

	next   uint32 // sequence of the next probe; probe seqs start at 1
	oldest uint32 // oldest probe that may still be pending
	ring   [lossWindow]probeSlot

	// highest is the newest probe answered in time; misses counts the probes after it
	// that were missed (the misses in a row that matter now).
	highest uint32
	misses  int
	// healthySince is when the first probe after the latest missed one was answered (zero
	// when none was yet).
	healthySince time.Time

	rtt, srtt time.Duration // latest and smoothed (7/8 old + 1/8 new, as TCP's SRTT)
}

func newHealth(timeout time.Duration, downAfter int, upAfter time.Duration, now time.Time) *health {
	return &health{timeout: timeout, downAfter: downAfter, upAfter: upAfter, since: now, next: 1, oldest: 1}
}

// sent records a probe sent at now and returns its sequence number.
func (h *health) sent(now time.Time) uint32 {
	seq := h.next
	h.next++
	s := &h.ring[seq%lossWindow]
	if s.state == probePending { // older than the window and never judged: a miss
		h.miss(s.seq)
	}
	*s = probeSlot{seq: seq, sent: now, state: probePending}
	return seq
}

// maxWaitFactor bounds how far wait stretches the configured timeout on a slow link, so
// that a dead link is still judged Down within a few seconds.
const maxWaitFactor = 4

// wait is how long a probe may go unanswered before it counts as missed: the configured
// timeout, or twice the smoothed round trip on a slower link (a region far away, a queue on
// a congested one), at most maxWaitFactor times the timeout. A fixed timeout would hold a
// link whose round trip is above it Down for good, although it carries traffic.
func (h *health) wait() time.Duration {
	return min(max(h.timeout, 2*h.srtt), maxWaitFactor*h.timeout)
}

// reply records the answer to probe seq, whose echoed send time is sent, arriving at now.
// It returns false when the answer matches no pending probe (late, repeated or made up).
// A late answer to a probe already judged missed still teaches the round trip: the link is
// slow, not dead, and wait grows with it.
func (h *health) reply(seq uint32, sent time.Time, now time.Time) bool {
	s := &h.ring[seq%lossWindow]
	if s.seq != seq || !s.sent.Equal(sent) {
		return false
	}
	rtt := now.Sub(s.sent)
	if s.state == probePending && rtt >= h.wait() {
		h.miss(seq) // too late: judged now rather than at the next evaluate
	}
	if s.state == probeMissed && !s.lateSeen && rtt < maxWaitFactor*h.timeout {
		s.lateSeen = true
		h.learnRTT(rtt)
		return false
	}
	if s.state != probePending {
		return false
	}
	s.state = probeAnswered
	s.got = now
	h.learnRTT(rtt)
	if seq > h.highest {
		h.highest = seq
		h.misses = 0
	}
	if h.healthySince.IsZero() {
		h.healthySince = now
	}
	return true
}

// learnRTT takes in one round trip: the latest, and the smoothed one (7/8 old + 1/8 new, as
// TCP's SRTT).
func (h *health) learnRTT(rtt time.Duration) {
	h.rtt = rtt
	if h.srtt == 0 {
		h.srtt = rtt
	} else {
		h.srtt += (rtt - h.srtt) / 8
	}
}

// miss records probe seq as missed. Probes after it may have been answered already (a miss
// is judged only after the timeout): the link is healthy since the first of those answers.
func (h *health) miss(seq uint32) {
	h.ring[seq%lossWindow].state = probeMissed
	if seq > h.highest {
		h.misses++
	}
	h.healthySince = time.Time{}
	for q := seq + 1; q < h.next; q++ {
		s := &h.ring[q%lossWindow]
		if s.seq == q && s.state == probeAnswered && (h.healthySince.IsZero() || s.got.Before(h.healthySince)) {
			h.healthySince = s.got
		}
	}
}

// evaluate judges the probes unanswered for timeout as missed and moves the state; it
// returns whether the state changed.
func (h *health) evaluate(now time.Time) bool {
	for ; h.oldest < h.next; h.oldest++ {
		s := &h.ring[h.oldest%lossWindow]
		if s.seq != h.oldest || s.state != probePending {
			continue
		}
		if now.Sub(s.sent) < h.wait() {
			break
		}
		h.miss(s.seq)
	}
	was := h.state
	switch {
	case h.misses >= h.downAfter:
		h.state = StateDown
	case h.state == StateUnknown && !h.healthySince.IsZero():
		h.state = StateUp
	case h.state == StateDown && !h.healthySince.IsZero() && now.Sub(h.healthySince) >= h.upAfter:
		h.state = StateUp
	}
	if h.state != was {
		h.since = now
		switch h.state {
		case StateUp:
			h.ups++
		case StateDown:
			h.downs++
		}
		return true
	}
	return false
}

// loss returns how many of the judged probes in the window were missed, and how many were
// judged.
func (h *health) loss() (missed, judged int) {
	for _, s := range h.ring {
		switch s.state {
		case probeMissed:
			missed++
			judged++
		case probeAnswered:
			judged++
		}
	}
	return missed, judged
}
