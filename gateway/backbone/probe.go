package backbone

import (
	"context"
	"time"
)

// initiateHold is how long the node with the higher ID of a new link waits for the other's
// probes before it sends its own. A wireguard-go peer has one handshake in progress: when
// both ends initiate at once, each answers the other's initiation and drops the response to
// its own, and neither retries for 5 s (REKEY_TIMEOUT). Probes start both ends sending at
// once, so the lower ID goes first; the other's probes follow when the session exists (the
// first echo arrives over it), or after initiateHold when the lower end does not probe (it
// does not have this node as its peer yet).
const initiateHold = 2 * time.Second

// probeLoop sends every peer a probe each ProbeEvery and judges the links, until ctx ends.
// It is the only one to change a link's state, so OnLinkChange hears of the changes in order.
func (d *Device) probeLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.ProbeEvery)
	defer t.Stop()
	var changed []LinkState
	d.probeAll(time.Now(), &changed)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.probeAll(time.Now(), &changed)
		case <-d.nudge:
			d.evaluateAll(time.Now(), false, &changed)
		}
	}
}

func (d *Device) probeAll(now time.Time, changed *[]LinkState) {
	d.evaluateAll(now, true, changed)
}

// evaluateAll judges each link at now, sends each a probe when send is set, and tells
// OnLinkChange of the links whose state changed.
func (d *Device) evaluateAll(now time.Time, send bool, changed *[]LinkState) {
	snap := d.snap.Load()
	*changed = (*changed)[:0]
	for _, e := range snap.peers {
		l := e.link
		l.mu.Lock()
		moved := l.h.evaluate(now)
		probe := send && (d.cfg.Node < e.Node || l.heard || now.Sub(l.added) >= initiateHold)
		var seq uint32
		if probe {
			seq = l.h.sent(now)
		}
		l.mu.Unlock()
		if moved {
			s := e.state()
			d.log.Info("backbone link", "node", uint32(e.Node), "name", e.Name, "state", s.State.String(),
				"rtt", s.SmoothedRTT, "lost", s.Lost, "probes", s.Probes)
			*changed = append(*changed, s)
		}
		if probe {
			d.sendProbe(e, probeMsg{kind: probeEcho, seq: seq, sent: int64(now.Sub(d.epoch))})
		}
	}
	if d.cfg.OnLinkChange != nil {
		for _, s := range *changed {
			d.cfg.OnLinkChange(s)
		}
	}
}

func (d *Device) sendProbe(e *peerEntry, m probeMsg) {
	p := d.tun.get()
	p.b = p.b[:Overhead+probeLen]
	e.hdr.put(p.b, ProbeTenant, probeLen)
	m.put(p.b[Overhead:])
	d.tun.pushUrgent(p)
}

// probeIn handles a probe from e, on the receive path: an echo is answered, a reply recorded.
func (d *Device) probeIn(e *peerEntry, payload []byte) {
	m, ok := decodeProbe(payload)
	if !ok {
		d.drops[DropBadProbe].Add(1)
		return
	}
	if m.kind == probeEcho {
		if l := e.link; d.cfg.Node > e.Node {
			l.mu.Lock()
			l.heard = true
			l.mu.Unlock()
		}
		m.kind = probeReply
		d.sendProbe(e, m)
		return
	}
	now := time.Now()
	l := e.link
	l.mu.Lock()
	ok = l.h.reply(m.seq, d.epoch.Add(time.Duration(m.sent)), now)
	wake := ok && l.h.state != StateUp
	l.mu.Unlock()
	if !ok {
		d.drops[DropBadProbe].Add(1)
	}
	if wake {
		select {
		case d.nudge <- struct{}{}:
		default:
		}
	}
}
