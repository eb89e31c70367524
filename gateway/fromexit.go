package gateway

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/backbone"
)

// fromExit decides where a packet from an exit goes: the device of the tenant whose peer (or
// site) it is addressed to, once that tenant's firewall accepted it; the peer's counters
// count it. A peer at another node gets it over the backbone (remote: the peer, at node
// via), without the firewall: the PoP the peer is at checks it. Both nil: dropped, and
// counted in drops or by the firewall. Replies from the node's own services skip the
// firewall, as their requests did. pkt is scratch.
func fromExit(snap *snapshot, filter *firewall.Filter, pkt *firewall.Packet, raw []byte, now time.Duration, drops *[numDropReasons]atomic.Uint64) (to *tunDevice, remote *peerEntry, via backbone.NodeID) {
	if pkt.Parse(raw) != nil {
		drops[dropMalformed].Add(1)
		return nil, nil, 0
	}
	dst := snap.byAddr[pkt.Dst]
	if dst != nil {
		if via := dst.where(snap.self); via != 0 {
			return nil, dst, via
		}
	}
	if dst == nil || dst.tenant.tun == nil {
		drops[dropNoRoute].Add(1)
		return nil, nil, 0
	}
	if !snap.isLocal(pkt.Src) {
		if v, _ := filter.CheckAt(dst.tenantID, &dst.ctr.flows, pkt, firewall.ToPeer, now); v != firewall.Accept {
			return nil, nil, 0
		}
	}
	dst.ctr.txPackets.Add(1)
	dst.ctr.txBytes.Add(uint64(len(raw)))
	return dst.tenant.tun, nil, 0
}

// deliverBatches holds *deliverBatch scratch for whoever routes packets from an exit.
var deliverBatches = sync.Pool{New: func() any { return new(deliverBatch) }}

// deliverBatch gathers runs of packets for one device, or for one node and tenant over the
// backbone (bb), to queue or send them together.
type deliverBatch struct {
	to     *tunDevice
	node   backbone.NodeID // with tenant, instead of to
	tenant int64
	pkts   [][]byte
	pkt    firewall.Packet // scratch for fromExit
	bb     *bbPath
	drops  *[numDropReasons]atomic.Uint64
}

func (db *deliverBatch) add(to *tunDevice, raw []byte) {
	if to != db.to || db.node != 0 {
		db.flush()
		db.to = to
	}
	db.pkts = append(db.pkts, raw)
}

// addRemote adds raw for peer e, at another node, via.
func (db *deliverBatch) addRemote(e *peerEntry, via backbone.NodeID, raw []byte) {
	if db.to != nil || db.node != via || db.tenant != e.tenantID {
		db.flush()
		db.node, db.tenant = via, e.tenantID
	}
	db.pkts = append(db.pkts, raw)
}

func (db *deliverBatch) flush() {
	if len(db.pkts) > 0 {
		if db.node != 0 {
			var dev *backbone.Device
			if db.bb != nil {
				dev = db.bb.dev.Load()
			}
			bbSend(dev, db.node, db.tenant, db.pkts, db.drops)
		} else {
			db.to.enqueue(db.pkts)
		}
		clear(db.pkts)
		db.pkts = db.pkts[:0]
	}
	db.to, db.node, db.tenant = nil, 0, 0
}

// setKernelExit makes Read also read the kernel exit's TUN (see kernelExit). drops counts what
// it reads that goes nowhere. Call before the device comes up.
func (t *tunDevice) setKernelExit(k *kernelExit, drops *[numDropReasons]atomic.Uint64) {
	t.kx, t.kxDrops = k, drops
	t.out.onReady = func() {
		if k.turn.Reading(t) {
			k.wake()
		}
	}
}

// Read hands wireguard-go the packets to encrypt towards peers: queued ones (from the
// userspace exit, hairpinned) first; else, with a kernel exit, whatever the kernel routes into
// its TUN, read straight into bufs when this device holds the TUN's read turn. It blocks
// until there is something, or the device closes (os.ErrClosed); without a kernel exit also
// while wireguard-go holds inFlightMax packets it has not sent.
func (t *tunDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.kx == nil {
		if t.flight == nil {
			return t.out.read(bufs, sizes, offset)
		}
		t.flight.wait(t.out.done)
		n, err := t.out.read(bufs, sizes, offset)
		t.flight.read(n)
		return n, err
	}
	for {
		if n, err := t.out.tryRead(bufs, sizes, offset); n > 0 || err != nil {
			return n, err
		}
		t.out.trim()
		select {
		case <-t.out.ready:
		case <-t.out.done:
			return 0, os.ErrClosed
		case <-t.kx.turn.Wait():
			n, err := t.readKernel(bufs, sizes, offset)
			if n > 0 || err != nil {
				return n, err
			}
		}
	}
}

// readKernel reads one batch from the kernel exit's TUN, holding its turn, and returns it.
// Packets for this device stay in bufs; packets for other tenants' devices are queued to them
// and, like dropped ones, get size 0, which wireguard-go skips.
func (t *tunDevice) readKernel(bufs [][]byte, sizes []int, offset int) (int, error) {
	k := t.kx
	select {
	case <-t.out.done: // closed while waiting: Close's wake may already have passed
		k.turn.Release()
		return 0, os.ErrClosed
	default:
	}
	// A packet queued for us while we sit in the TUN must wake us: either the producer sees
	// us reading and wakes the read, or we see its packet here (see readturn).
	k.turn.Enter(t)
	if !t.out.empty() {
		k.turn.Leave()
		k.turn.Release()
		return 0, nil
	}
	n, err := k.read(bufs, sizes, offset)
	k.turn.Leave()
	if err != nil {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Some device is closing (see Close), or a packet was queued for us: rearm before
			// looking at our own state, so a Close after this look still wakes us.
			k.rearm()
			k.turn.Release()
			select {
			case <-t.out.done:
				return 0, os.ErrClosed
			default:
				return 0, nil
			}
		case errors.Is(err, os.ErrClosed), errors.Is(err, net.ErrClosed):
			// The kernel exit stopped (the node is closing): keep the turn so nobody reads
			// the closed TUN again, and serve the queue only.
			return 0, nil
		case errors.Is(err, tun.ErrTooManySegments):
			// n packets are good; the rest of a GSO segment was dropped, as wireguard-go does.
		default:
			k.turn.Release()
			k.log.Debug("read from kernel TUN", "err", err)
			time.Sleep(10 * time.Millisecond) // no busy loop on a persistent error
			return 0, nil
		}
	}
	db := deliverBatches.Get().(*deliverBatch)
	db.bb, db.drops = t.bb, t.kxDrops
	snap := t.snap.Load()
	now := t.filter.Now()
	mine := 0
	for i := range n {
		raw := bufs[i][offset : offset+sizes[i]]
		to, remote, via := fromExit(snap, t.filter, &db.pkt, raw, now, t.kxDrops)
		switch {
		case remote != nil:
			db.addRemote(remote, via, raw)
		case to == t:
			mine++
			continue
		case to != nil:
			db.add(to, raw)
		}
		sizes[i] = 0
	}
	// Queue the others' before giving the turn back, so their order holds.
	db.flush()
	deliverBatches.Put(db)
	k.turn.Release()
	if mine == 0 {
		return 0, nil
	}
	return n, nil
}
