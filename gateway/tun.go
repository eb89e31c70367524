package gateway

import (
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/backbone"
	"github.com/popgate/popgate/gateway/resolver"
)

// dropReason says why the packet path dropped a packet (the firewall counts its own).
type dropReason uint8

const (
	dropMalformed      dropReason = iota // not a parseable IPv4/IPv6 packet
	dropUnknownSource                    // source address belongs to no enabled peer or site of the tenant
	dropCrossTenant                      // destination is a peer of another tenant
	dropNoRoute                          // no route, an unassigned overlay address, or a site whose connector is down
	dropClosed                           // the device was closing
	dropBackboneTenant                   // from the backbone with the label of a tenant this node does not serve
	dropTooBig                           // larger than the backbone carries (answered with ICMP when it came from a peer)
	numDropReasons
)

func (r dropReason) String() string {
	switch r {
	case dropMalformed:
		return "malformed"
	case dropUnknownSource:
		return "unknown_source"
	case dropCrossTenant:
		return "cross_tenant"
	case dropNoRoute:
		return "no_route"
	case dropClosed:
		return "closed"
	case dropBackboneTenant:
		return "backbone_tenant"
	case dropTooBig:
		return "too_big"
	}
	return "unknown"
}

// exitWriter takes packets that leave the overlay through this node: bufs[i][offset:] is one
// IP packet, and the offset bytes in front of it are headroom the writer may use. Write may
// modify bufs and the packets; it copies what it keeps after returning.
type exitWriter interface {
	Write(bufs [][]byte, offset int)
}

// tunDevice is the tun.Device wireguard-go reads from and writes to: the fast path. Packets
// written by wireguard-go (decrypted, from peers) are looked up in the current snapshot and
// either hairpinned to another peer of the same tenant or handed to the exit; packets produced by
// the exit or hairpinned are queued for Read, which wireguard-go encrypts and sends.
type tunDevice struct {
	name     string
	mtu      int
	tenantID int64 // the tenant whose device this is
	snap     *atomic.Pointer[snapshot]
	filter   *firewall.Filter
	// local takes traffic for the node's own overlay addresses (in-tunnel services); exit4 and
	// exit6 take the rest by address family. Set before the device is up, never changed after.
	local, exit4, exit6 exitWriter
	// bb is the node's backbone; noExit: internet traffic crosses it (the node has no exit
	// role). Set before the device is up.
	bb     *bbPath
	noExit bool
	// dns is the node's resolver; nil: DNS goes to the userspace stack (tests).
	dns *resolver.Resolver
	// tooBigNext paces the ICMP answers to packets too big for the backbone (filter time).
	tooBigNext atomic.Int64

	out *outQueue
	// flight bounds what wireguard-go holds of out's packets (the userspace exit's; nil with a
	// kernel exit, whose TUN queue bounds it as stock's does). Set before the device is up.
	flight *inFlight
	// kx, when set, is the kernel exit whose TUN Read also reads; kxDrops counts what it
	// reads that goes nowhere (the node's counters).
	kx        *kernelExit
	kxDrops   *[numDropReasons]atomic.Uint64
	events    chan tun.Event
	closeOnce sync.Once

	batches sync.Pool // *writeBatches, scratch for Write

	// drops count by reason; the tenant's, kept by the node across its devices.
	drops *[numDropReasons]atomic.Uint64
}

// writeBatches sorts one Write's packets by where they go. Hairpinned packets go to a peer
// or site of the same tenant: back into this device.
type writeBatches struct {
	local, exit4, exit6, hairpin [][]byte
	pkt                          firewall.Packet
	// bb are the batches towards other nodes over the backbone.
	bb []bbBatch
	// icmp holds an ICMP "too big" answer, dns a DNS answer, and one either on its way into
	// the queue.
	icmp [icmpv6MaxTotal]byte
	dns  [ipv6Header + 8 + resolver.MaxUDPSize]byte
	one  [1][]byte
}

var _ tun.Device = (*tunDevice)(nil)

func newTunDevice(name string, mtu int, tenantID int64, snap *atomic.Pointer[snapshot], filter *firewall.Filter) *tunDevice {
	t := &tunDevice{
		name:     name,
		mtu:      mtu,
		tenantID: tenantID,
		snap:     snap,
		filter:   filter,
		out:      newOutQueue(mtu),
		events:   make(chan tun.Event, 1),
		drops:    new([numDropReasons]atomic.Uint64),
		bb:       new(bbPath),
	}
	t.events <- tun.EventUp
	return t
}

// Write takes decrypted packets from wireguard-go: the fast path. It is called concurrently,
// once per peer receive routine; it never fails a batch for one bad packet. Per packet: parse
// once; source → peer (or site) of this tenant; route in the tenant's table; the tenant's
// stateful firewall; then hairpin towards a peer or site of the tenant, the node's own
// services, or the exit.
func (t *tunDevice) Write(bufs [][]byte, offset int) (int, error) {
	snap := t.snap.Load()
	ts := snap.tenants[t.tenantID]
	if ts == nil {
		t.drops[dropUnknownSource].Add(uint64(len(bufs)))
		return len(bufs), nil
	}
	wb := t.getBatches()
	pkt := &wb.pkt
	now := t.filter.Now()
	var view *bbView // the backbone's links, loaded at the first packet that needs them
	bbMTU := 0
	for _, b := range bufs {
		raw := b[offset:]
		if pkt.Parse(raw) != nil {
			t.drops[dropMalformed].Add(1)
			continue
		}
		src := snap.byAddr[pkt.Src]
		fromSite := false
		if src == nil || src.tenantID != t.tenantID {
			src, fromSite = ts.siteSource(pkt.Src), true
		}
		if src == nil {
			t.drops[dropUnknownSource].Add(1)
			continue
		}
		src.seenAt(snap.self)
		var to *[][]byte        // nil: hairpin towards a peer or site of the tenant
		var hairpin *peerEntry  // the peer or site connector a hairpinned packet goes to
		var via backbone.NodeID // another node the packet crosses the backbone to
		if dst := snap.byAddr[pkt.Dst]; dst != nil {
			if dst.tenantID != t.tenantID {
				t.drops[dropCrossTenant].Add(1)
				continue
			}
			hairpin, via = dst, dst.where(snap.self)
		} else if snap.isLocal(pkt.Dst) {
			src.ctr.rxPackets.Add(1)
			src.ctr.rxBytes.Add(uint64(len(raw)))
			// The node's own services (DNS) serve every peer; policy does not apply. DNS
			// over UDP is the resolver's, answered from here; the rest (DNS over TCP)
			// goes to the userspace stack.
			if pkt.Proto == protoUDP && pkt.DstPort == 53 && pkt.Frag == firewall.NotFragment && t.dns != nil {
				if payload, ok := resolver.UDPPayload(raw); ok {
					t.queryDNS(wb, raw, payload, pkt.Src)
					continue
				}
			}
			wb.local = append(wb.local, b)
			continue
		} else if snap.inOverlay(pkt.Dst) {
			// No peer's address: a node's own (nodeaddr.go), or nothing.
			taken, node := false, backbone.NodeID(0)
			if snap.isNodeAddr(pkt.Dst) {
				taken, node = toNodeAddr(snap, t.dns, t.tenantID, pkt.Dst, raw, pkt.Proto == protoUDP && pkt.Frag == firewall.NotFragment)
			}
			if !taken && node == 0 {
				t.drops[dropNoRoute].Add(1)
				continue
			}
			src.ctr.rxPackets.Add(1)
			src.ctr.rxBytes.Add(uint64(len(raw)))
			if node != 0 {
				wb.addBB(node, raw)
			}
			continue
		} else {
			r := ts.lookupRoute(pkt.Dst)
			switch {
			case r == nil, r.siteName != "" && r.site == nil, r.siteName == "" && fromSite:
				// No route; a site whose connector is disabled; a site's LAN using the exit
				// (replies could not find their way back).
				t.drops[dropNoRoute].Add(1)
				continue
			case r.exits != nil || r.siteName == "" && t.noExit:
				// Over the backbone: the first Up exit of the route's, or the one
				// "internet" means on a node without the exit role.
				if view == nil {
					view = t.bb.view.Load()
				}
				if view != nil {
					if r.exits != nil {
						via = view.firstUp(r.exits)
					} else {
						via = view.internet
					}
				}
				switch {
				case via != 0 && via == view.self && !t.noExit:
					// This node's own exit is the first Up one.
					via = 0
					to = &wb.exit4
					if pkt.Dst.Is6() {
						to = &wb.exit6
					}
				case via == 0, via == view.self:
					t.drops[dropNoRoute].Add(1)
					continue
				}
			case r.siteName == "" && pkt.Dst.Is4():
				to = &wb.exit4
			case r.siteName == "":
				to = &wb.exit6
			default:
				hairpin, via = r.site, r.site.where(snap.self)
			}
		}
		// The flows a peer opens count against its own bound; those of a site's LAN only
		// against the tenant's, since a connector serves a whole office.
		var owner *firewall.Peer
		if !fromSite {
			owner = &src.ctr.flows
		}
		if v, _ := t.filter.CheckAt(t.tenantID, owner, pkt, firewall.FromPeer, now); v != firewall.Accept {
			continue // counted by the firewall
		}
		if via != 0 {
			if bbMTU == 0 {
				bbMTU = backbone.DefaultMTU
				if d := t.bb.dev.Load(); d != nil {
					bbMTU = d.MTU()
				}
			}
			if len(raw) > bbMTU {
				t.drops[dropTooBig].Add(1)
				t.tooBig(wb, snap, raw, bbMTU, now)
				continue
			}
			clampMSS(raw, MSSFor(bbMTU, pkt.Dst.Is6()))
			src.ctr.rxPackets.Add(1)
			src.ctr.rxBytes.Add(uint64(len(raw)))
			wb.addBB(via, raw)
			continue
		}
		src.ctr.rxPackets.Add(1)
		src.ctr.rxBytes.Add(uint64(len(raw)))
		if to == nil {
			hairpin.ctr.txPackets.Add(1)
			hairpin.ctr.txBytes.Add(uint64(len(raw)))
			wb.hairpin = append(wb.hairpin, raw)
		} else {
			*to = append(*to, b)
		}
	}
	for _, x := range [...]struct {
		w     exitWriter
		batch *[][]byte
	}{{t.local, &wb.local}, {t.exit4, &wb.exit4}, {t.exit6, &wb.exit6}} {
		if len(*x.batch) > 0 {
			x.w.Write(*x.batch, offset)
			clear(*x.batch)
			*x.batch = (*x.batch)[:0]
		}
	}
	if len(wb.bb) > 0 {
		t.sendBB(wb)
	}
	if len(wb.hairpin) > 0 {
		t.enqueue(wb.hairpin)
		clear(wb.hairpin)
		wb.hairpin = wb.hairpin[:0]
	}
	t.batches.Put(wb)
	return len(bufs), nil
}

func (t *tunDevice) getBatches() *writeBatches {
	if wb, ok := t.batches.Get().(*writeBatches); ok {
		return wb
	}
	return &writeBatches{
		local:   make([][]byte, 0, conn.IdealBatchSize),
		exit4:   make([][]byte, 0, conn.IdealBatchSize),
		exit6:   make([][]byte, 0, conn.IdealBatchSize),
		hairpin: make([][]byte, 0, conn.IdealBatchSize),
	}
}

// setExits sets where traffic leaves: local for the node's own addresses, exit4/exit6 for the
// rest. Call before the device comes up.
func (t *tunDevice) setExits(local, exit4, exit6 exitWriter) {
	t.local, t.exit4, t.exit6 = local, exit4, exit6
}

// queryDNS hands one DNS query (payload, in the IP packet raw from src) to the resolver and
// sends its answer back to the client: at once, built in wb's scratch (the queue copies it),
// or when an upstream answers. Only a forwarded query keeps a copy of the query's headers
// (raw is wireguard-go's, reused after Write).
func (t *tunDevice) queryDNS(wb *writeBatches, raw, payload []byte, src netip.Addr) {
	hdr := raw[:len(raw)-len(payload)] // the query's IP and UDP headers: the answer's, turned round
	later := func() func([]byte) {
		kept := append([]byte(nil), hdr...)
		return func(answer []byte) {
			pkt := resolver.AppendReply(make([]byte, 0, len(kept)+len(answer)), kept, answer)
			t.enqueue([][]byte{pkt})
		}
	}
	if a := t.dns.Query(t.tenantID, src, payload, later); a != nil {
		wb.one[0] = resolver.AppendReply(wb.dns[:0], hdr, a)
		t.enqueue(wb.one[:])
		wb.one[0] = nil
	}
}

// enqueue copies pkts onto the queue towards peers, blocking while the queue is full.
func (t *tunDevice) enqueue(pkts [][]byte) {
	if n := t.out.push(pkts); n > 0 {
		t.drops[dropClosed].Add(uint64(n))
	}
}

func (t *tunDevice) File() *os.File           { return nil }
func (t *tunDevice) MTU() (int, error)        { return t.mtu, nil }
func (t *tunDevice) Name() (string, error)    { return t.name, nil }
func (t *tunDevice) Events() <-chan tun.Event { return t.events }
func (t *tunDevice) BatchSize() int           { return conn.IdealBatchSize }

// Close unblocks Read and every producer. Idempotent.
func (t *tunDevice) Close() error {
	t.closeOnce.Do(func() {
		t.out.close()
		if t.kx != nil {
			t.kx.wake() // if this device's Read is in the TUN, it returns
		}
		close(t.events)
	})
	return nil
}

// dropCounts returns the drop counters by reason name.
func (t *tunDevice) dropCounts() map[string]uint64 { return dropCounts(t.drops) }

func dropCounts(drops *[numDropReasons]atomic.Uint64) map[string]uint64 {
	m := make(map[string]uint64, numDropReasons)
	for r := dropReason(0); r < numDropReasons; r++ {
		m[r.String()] = drops[r].Load()
	}
	return m
}
