package gateway

import "time"

// arrivalCalls are the times after a peer placed elsewhere started a handshake here at which
// the node calls Config.PeerArrived: wireguard-go tells nobody when a handshake completes,
// so once when a nearby client's most likely has, and again for a distant or slow one.
var arrivalCalls = [...]time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second}

// peerArrived tells arrivalLoop that a peer placed elsewhere started a handshake here. It
// never blocks; arrivals before the loop takes one count once.
func (n *Node) peerArrived() {
	n.arrivals.Add(1)
	if n.arrived == nil {
		return
	}
	select {
	case n.arrived <- struct{}{}:
	default:
	}
}

// arrivalLoop calls Config.PeerArrived at each of after (ascending) following an arrival,
// until the node closes. Arrivals in the meantime postpone the later calls but not the
// first one due, so that a stream of arrivals is reported every after[0] or so.
func (n *Node) arrivalLoop(after []time.Duration) {
	defer n.wg.Done()
	due := make([]time.Time, len(after)) // zero: not due
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-n.closing:
			return
		case <-n.arrived:
			now := time.Now()
			for i, d := range after {
				if i > 0 || due[i].IsZero() {
					due[i] = now.Add(d)
				}
			}
		case now := <-timer.C:
			fire := false
			for i := range due {
				if !due[i].IsZero() && !due[i].After(now) {
					due[i], fire = time.Time{}, true
				}
			}
			if fire {
				n.cfg.PeerArrived()
			}
		}
		var next time.Time
		for _, d := range due {
			if !d.IsZero() && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}
