package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/backbone"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// bbSink is a backbone node that records what it is sent.
type bbSink struct {
	mu   sync.Mutex
	got  []string // "tenant:packet length"
	pkts [][]byte
}

func (s *bbSink) deliver(from backbone.NodeID, tenant uint32, pkts [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pkts {
		s.got = append(s.got, fmt.Sprintf("%d:%d", tenant, len(p)))
		s.pkts = append(s.pkts, append([]byte(nil), p...))
	}
}

func (s *bbSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// startBackbonePair starts two backbone devices on loopback, node 2 (returned first) and
// node 3, whose Deliver is sink, and waits until 2's link to 3 is Up.
func startBackbonePair(t *testing.T, sink *bbSink, onLink func(backbone.LinkState)) (*backbone.Device, *backbone.Device) {
	t.Helper()
	k2, _ := store.GeneratePrivateKey()
	k3, _ := store.GeneratePrivateKey()
	mk := func(id backbone.NodeID, k store.Key, deliver func(backbone.NodeID, uint32, [][]byte), on func(backbone.LinkState)) *backbone.Device {
		d, err := backbone.New(backbone.Config{Node: id, PrivateKey: k, AnyPort: true, ProbeEvery: 50 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
			Deliver: deliver, OnLinkChange: on}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		if err := d.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d2 := mk(2, k2, nil, onLink)
	d3 := mk(3, k3, sink.deliver, nil)
	lo := netip.MustParseAddr("127.0.0.1")
	if err := d2.SetPeers([]backbone.Peer{{Node: 3, Name: "x3", PublicKey: k3.PublicKey(), Endpoint: netip.AddrPortFrom(lo, uint16(d3.Port()))}}); err != nil {
		t.Fatal(err)
	}
	if err := d3.SetPeers([]backbone.Peer{{Node: 2, Name: "pop", PublicKey: k2.PublicKey(), Endpoint: netip.AddrPortFrom(lo, uint16(d2.Port()))}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the link to node 3 up", 10*time.Second, func(context.Context) error {
		for _, l := range d2.Links() {
			if l.Node == 3 && l.State == backbone.StateUp {
				return nil
			}
		}
		return errors.New("not up")
	})
	return d2, d3
}

// withMSS adds an MSS option (mss) to an IPv4 TCP SYN built by tcpSYN.
func withMSS(b []byte, mss uint16) []byte {
	p := b[16:]
	out := make([]byte, 16+44)
	copy(out[16:], p[:40])
	q := out[16:]
	binary.BigEndian.PutUint16(q[2:], 44)
	q[32] = 6 << 4
	q[40], q[41] = tcpOptMSS, 4
	binary.BigEndian.PutUint16(q[42:], mss)
	return out
}

// bigUDP is an IPv4 UDP packet of n bytes with DF set, at offset 16.
func bigUDP(src, dst netip.Addr, n int) []byte {
	b := make([]byte, 16+n)
	copy(b, ipv4Packet(src, dst))
	p := b[16:]
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	p[6] = 0x40 // DF
	return b
}

// TestTunBackbone: the packet path of a PoP without the exit role sends what is routed to
// other nodes over the backbone, with the tenant's label: the internet (to the exit of its
// region), a route via exits (the first Up), a peer and a site at another node; it clamps
// the MSS of SYNs and answers packets too big for the backbone with ICMP.
func TestTunBackbone(t *testing.T) {
	sink := new(bbSink)
	var path bbPath
	d2, _ := startBackbonePair(t, sink, func(backbone.LinkState) { path.rebuild() })
	path.mu.Lock() // the link's changes rebuild the view meanwhile
	path.dev.Store(d2)
	path.self, path.noExit, path.region = 2, true, "local"
	path.nodes = []plane.Node{
		{ID: 3, Name: "x3", Roles: []string{plane.RoleExit}, Region: "local"},
		{ID: 4, Name: "x4", Roles: []string{plane.RoleExit}, Region: "local"}, // no link: never Up
	}
	path.rebuildLocked()
	path.mu.Unlock()

	alice := testPeer(1, "acme", "alice", 2, true)
	bob := testPeer(1, "acme", "bob", 3, true) // at node 3
	office := testPeer(1, "acme", "office-gw", 4, true)
	office.Site, office.SitePrefixes = "office", []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}
	filter, err := firewall.New(firewall.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	view := plane.PolicyView([]plane.Peer{alice, bob, office})
	rs, _ := compileView(allowAll, &view)
	filter.SetRuleSet(1, rs)
	snap := new(atomic.Pointer[snapshot])
	td := newTunDevice("pgbb1", 1420, 1, snap, filter)
	t.Cleanup(func() { td.Close() })
	ex := &testExits{}
	td.setExits(&ex.local, &ex.v4, &ex.v6)
	td.bb, td.noExit = &path, true
	snap.Store(newSnapshot(desired{
		tenants: []plane.Tenant{{ID: 1, Name: "acme"}},
		peers:   []plane.Peer{alice, bob, office},
		routes: []plane.Route{
			{Tenant: 1, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Via: plane.ViaInternet},
			{Tenant: 1, Prefix: netip.MustParsePrefix("203.0.113.0/24"), Via: "exit:x4,exit:x3"},
			{Tenant: 1, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Via: "exit:x4"},
			{Tenant: 1, Prefix: netip.MustParsePrefix("10.10.0.0/24"), Via: "site:office"},
		},
		tuns:      map[int64]*tunDevice{1: td},
		self:      2,
		nodes:     path.nodes,
		peerNodes: []plane.PeerNode{{Peer: alice.ID, Node: 2}, {Peer: bob.ID, Node: 3}, {Peer: office.ID, Node: 3}},
	}, testOverlay))

	for _, tc := range []struct {
		name string
		pkt  []byte
		sent bool
	}{
		{"internet: the region's exit", ipv4Packet(alice.IPv4, netip.MustParseAddr("198.51.100.2")), true},
		{"via exits: the first Up", ipv4Packet(alice.IPv4, netip.MustParseAddr("203.0.113.5")), true},
		{"via an exit that is down", ipv4Packet(alice.IPv4, netip.MustParseAddr("192.0.2.5")), false},
		{"a peer at node 3", ipv4Packet(alice.IPv4, bob.IPv4), true},
		{"a site at node 3", ipv4Packet(alice.IPv4, netip.MustParseAddr("10.10.0.9")), true},
		{"the node's own services stay here", ipv4Packet(alice.IPv4, testOverlay.Gateway4), false},
	} {
		before := sink.count()
		td.Write([][]byte{tc.pkt}, 16)
		want := before
		if tc.sent {
			want++
		}
		eventually(t, tc.name, 5*time.Second, func(context.Context) error {
			if n := sink.count(); n != want {
				return fmt.Errorf("node 3 got %d packets, want %d", n, want)
			}
			return nil
		})
		if tc.sent && sink.got[len(sink.got)-1] != fmt.Sprintf("1:%d", len(tc.pkt)-16) {
			t.Errorf("%s: node 3 got %s", tc.name, sink.got[len(sink.got)-1])
		}
	}
	if got := ex.got(); got != "local" {
		t.Errorf("the exits got %q, want only the local services' packet", got)
	}

	// A SYN's MSS is clamped to what the backbone carries.
	before := sink.count()
	td.Write([][]byte{withMSS(tcpSYN(alice.IPv4, netip.MustParseAddr("198.51.100.2"), 80), 1380)}, 16)
	eventually(t, "the SYN", 5*time.Second, func(context.Context) error {
		if sink.count() == before {
			return errors.New("not yet")
		}
		return nil
	})
	sink.mu.Lock()
	syn := sink.pkts[len(sink.pkts)-1]
	sink.mu.Unlock()
	if mss := binary.BigEndian.Uint16(syn[42:]); mss != MSSFor(d2.MTU(), false) {
		t.Errorf("the SYN's MSS is %d, want %d", mss, MSSFor(d2.MTU(), false))
	}

	// A packet too big for the backbone is answered with ICMP "fragmentation needed".
	before = sink.count()
	td.Write([][]byte{bigUDP(alice.IPv4, netip.MustParseAddr("198.51.100.2"), 1420)}, 16)
	bufs, sizes := [][]byte{make([]byte, 2000)}, []int{0}
	n, err := td.Read(bufs, sizes, 16)
	if err != nil || n != 1 {
		t.Fatalf("Read: %d, %v", n, err)
	}
	icmp := bufs[0][16 : 16+sizes[0]]
	if icmp[9] != protoICMP || icmp[20] != 3 || icmp[21] != 4 || int(binary.BigEndian.Uint16(icmp[26:])) != d2.MTU() ||
		netip.AddrFrom4([4]byte(icmp[16:20])) != alice.IPv4 {
		t.Errorf("the answer to a packet too big: % x", icmp[:28])
	}
	time.Sleep(50 * time.Millisecond)
	if sink.count() != before || td.drops[dropTooBig].Load() != 1 {
		t.Errorf("the packet too big crossed the backbone, or was not counted (%d)", td.drops[dropTooBig].Load())
	}
}

// TestTunBackboneAllocs: the packet path allocates nothing per batch on its way to the
// backbone (Send's own share is the backbone's test): the device has no peer, so Send
// refuses at once.
func TestTunBackboneAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	k, _ := store.GeneratePrivateKey()
	d, err := backbone.New(backbone.Config{Node: 2, PrivateKey: k, AnyPort: true}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var path bbPath
	path.dev.Store(d)
	path.view.Store(&bbView{up: map[backbone.NodeID]bool{2: true, 3: true}, self: 2, internet: 3})
	a1 := testPeer(1, "acme", "a1", 2, true)
	td, _ := newTestTun(t, []plane.Peer{a1}, "")
	td.bb, td.noExit = &path, true
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = ipv4Packet(a1.IPv4, netip.MustParseAddr("198.51.100.2"))
	}
	td.Write(bufs, 16) // warm the pool
	if allocs := testing.AllocsPerRun(100, func() { td.Write(bufs, 16) }); allocs != 0 {
		t.Errorf("Write over the backbone allocates %.1f times per batch, want 0", allocs)
	}
	if n := td.drops[dropNoRoute].Load(); n != 102*64 { // the warm-up, AllocsPerRun's own and 100
		t.Errorf("%d packets found no route, want all %d (the device has no peer)", n, 102*64)
	}
}

// TestDeliverBackbone: what arrives over the backbone goes to a peer here through the
// firewall, to the exit without a second policy check, and nowhere when its label is not a
// tenant of this node's, its destination another tenant's, or its source not the tenant's.
func TestDeliverBackbone(t *testing.T) {
	a1 := testPeer(1, "acme", "a1", 2, true)
	a2 := testPeer(1, "acme", "a2", 3, true) // at node 3
	b1 := testPeer(2, "bravo", "b1", 4, true)
	tp := newTestPath(t, []plane.Peer{a1, a2, b1}, "", 2, []int64{1, 2})
	d := desired{
		tenants:   []plane.Tenant{{ID: 1, Name: "acme"}, {ID: 2, Name: "bravo"}},
		peers:     []plane.Peer{a1, a2, b1},
		tuns:      tp.tuns,
		self:      2,
		peerNodes: []plane.PeerNode{{Peer: a2.ID, Node: 3}},
	}
	for _, id := range []int64{1, 2} {
		d.routes = append(d.routes, plane.Route{Tenant: id, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Via: plane.ViaInternet})
	}
	tp.snap.Store(newSnapshot(d, testOverlay))
	n := &Node{filter: tp.filter}
	n.snap.Store(tp.snap.Load())
	ex := &testExits{}
	n.exit4, n.exit6 = &ex.v4, &ex.v6
	web := netip.MustParseAddr("198.51.100.2")
	strip := func(b []byte) []byte { return b[16:] }
	for _, tc := range []struct {
		name   string
		tenant uint32
		pkt    []byte
		exit   string     // testExits.got after it
		queued int        // packets queued to tenant 1's device after it
		drop   dropReason // counted, when nothing went anywhere
		noExit bool       // the node has no exit role
	}{
		{name: "to the exit", tenant: 1, pkt: ipv4Packet(a2.IPv4, web), exit: "v4"},
		{name: "to a peer here", tenant: 1, pkt: ipv4Packet(web, a1.IPv4), exit: "v4", queued: 1},
		{name: "a tenant this node does not serve", tenant: 9, pkt: ipv4Packet(a2.IPv4, web), exit: "v4", queued: 1, drop: dropBackboneTenant},
		{name: "another tenant's peer", tenant: 2, pkt: ipv4Packet(web, a1.IPv4), exit: "v4", queued: 1, drop: dropCrossTenant},
		{name: "a source of another tenant", tenant: 2, pkt: ipv4Packet(a2.IPv4, web), exit: "v4", queued: 1, drop: dropNoRoute},
		{name: "a peer at another node: no second hop", tenant: 1, pkt: ipv4Packet(web, a2.IPv4), exit: "v4", queued: 1, drop: dropNoRoute},
		{name: "no exit role", tenant: 1, pkt: ipv4Packet(a1.IPv4, web), exit: "v4", queued: 1, drop: dropNoRoute, noExit: true},
	} {
		before := n.drops[tc.drop].Load()
		n.cfg.NoExit = tc.noExit
		n.deliverBackbone(3, tc.tenant, [][]byte{strip(tc.pkt)})
		if got := ex.got(); got != tc.exit {
			t.Errorf("%s: the exits got %q, want %q", tc.name, got, tc.exit)
		}
		if got := tp.tuns[1].out.len(); got != tc.queued {
			t.Errorf("%s: %d queued to the device, want %d", tc.name, got, tc.queued)
		}
		if tc.drop != 0 && n.drops[tc.drop].Load() != before+1 {
			t.Errorf("%s: not counted as %s", tc.name, tc.drop)
		}
	}
}

func TestExitMTU(t *testing.T) {
	k, _ := store.GeneratePrivateKey()
	for _, tc := range []struct {
		mtu  int
		bb   bool
		want int
	}{
		{1420, false, 1420},
		{1420, true, backbone.DefaultMTU},
		{1300, true, 1300},
	} {
		n := &Node{cfg: Config{MTU: tc.mtu}}
		if tc.bb {
			n.cfg.BackboneKey = k
		}
		if got := n.exitMTU(); got != tc.want {
			t.Errorf("MTU %d, backbone %v: the exits' MTU is %d, want %d", tc.mtu, tc.bb, got, tc.want)
		}
	}
}

// TestMakeView: where traffic that crosses the backbone goes as links change: the first Up
// exit of a route's, the region's Up exit for the internet (else the nearest Up one); with no
// candidate Up, the one whose link lost the fewest probes, never one that is dead.
func TestMakeView(t *testing.T) {
	nodes := []plane.Node{
		{ID: 3, Name: "x3", Roles: []string{plane.RoleExit}, Region: "fra"},
		{ID: 4, Name: "x4", Roles: []string{plane.RoleExit}, Region: "fra"},
		{ID: 5, Name: "x5", Roles: []string{plane.RoleExit}, Region: "ams"},
		{ID: 6, Name: "p6", Roles: []string{plane.RolePoP}, Region: "fra"},
	}
	up := func(id backbone.NodeID, rtt time.Duration) backbone.LinkState {
		return backbone.LinkState{Node: id, State: backbone.StateUp, SmoothedRTT: rtt, Probes: 100}
	}
	down := func(id backbone.NodeID, lost int) backbone.LinkState {
		return backbone.LinkState{Node: id, State: backbone.StateDown, Lost: lost, Probes: 100}
	}
	route := []backbone.NodeID{4, 3}
	for _, tc := range []struct {
		name            string
		links           []backbone.LinkState
		internet, route backbone.NodeID
	}{
		{"all up: the region's first exit; the route's first", []backbone.LinkState{up(3, 5e6), up(4, 5e6), up(5, 1e6)}, 3, 4},
		{"the region's first down", []backbone.LinkState{down(3, 10), up(4, 5e6), up(5, 1e6)}, 4, 4},
		{"the region's exits down: the nearest Up exit elsewhere", []backbone.LinkState{down(3, 10), down(4, 5), up(5, 1e6)}, 5, 4},
		{"none up: the least lossy (the region's, then the others)", []backbone.LinkState{down(3, 30), down(4, 20), down(5, 10)}, 5, 4},
		{"none up, equal loss: the first", []backbone.LinkState{down(3, 20), down(4, 20), down(5, 20)}, 3, 4},
		{"dead links carry nothing", []backbone.LinkState{down(3, 95), down(4, 100), {Node: 5, State: backbone.StateUnknown}}, 0, 0},
		{"no links at all", nil, 0, 0},
	} {
		v := makeView(2, nodes, true, "fra", tc.links)
		if v.internet != tc.internet {
			t.Errorf("%s: internet via %d, want %d", tc.name, v.internet, tc.internet)
		}
		if got := v.firstUp(route); got != tc.route {
			t.Errorf("%s: route via x4,x3 goes to %d, want %d", tc.name, got, tc.route)
		}
	}
	if v := makeView(2, nodes, false, "fra", []backbone.LinkState{up(3, 1)}); v.internet != 0 || !v.up[2] {
		t.Errorf("a node with the exit role uses its own exit for the internet: %+v", v)
	}
}

// TestBackbonePeerMoved: a node sends a peer's traffic where the peer's packets came from
// last: the node a client moved to, from its first packet on, before the controller places
// it there; this node, once its packets come through the node's own device. A site's
// connector is followed the same way, by its LAN's packets. A new placement in the desired
// state is newer than the packets before it.
func TestBackbonePeerMoved(t *testing.T) {
	a1 := testPeer(1, "acme", "a1", 2, true)
	office := testPeer(1, "acme", "office-gw", 3, true)
	lan := netip.MustParsePrefix("10.10.0.0/24")
	office.Site, office.SitePrefixes = "office", []netip.Prefix{lan}
	peers := []plane.Peer{a1, office}
	tp := newTestPath(t, peers, "", 1, []int64{1})
	td := tp.tuns[1]
	ex := &testExits{}
	td.setExits(&ex.local, &ex.v4, &ex.v6)
	n := &Node{filter: tp.filter}
	n.exit4, n.exit6 = &ex.v4, &ex.v6
	counters := map[int64]*peerCounters{}
	place := func(peerNodes ...plane.PeerNode) {
		snap := newSnapshot(desired{
			tenants: []plane.Tenant{{ID: 1, Name: "acme"}},
			peers:   peers,
			routes: []plane.Route{{Tenant: 1, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Via: plane.ViaInternet},
				{Tenant: 1, Prefix: lan, Via: "site:office"}},
			tuns: tp.tuns,
			self: 2,
			counters: func(p *plane.Peer) *peerCounters {
				if counters[p.ID] == nil {
					counters[p.ID] = &peerCounters{tenantID: p.Tenant}
				}
				return counters[p.ID]
			},
			peerNodes: peerNodes,
		}, testOverlay)
		tp.snap.Store(snap)
		n.snap.Store(snap)
	}
	web := netip.MustParseAddr("198.51.100.2")
	// where a1's replies from the exit go: 0 is this node's device.
	replies := func() backbone.NodeID {
		var pkt firewall.Packet
		var drops [numDropReasons]atomic.Uint64
		to, _, via := fromExit(tp.snap.Load(), tp.filter, &pkt, ipv4Packet(web, a1.IPv4)[16:], tp.filter.Now(), &drops)
		if via == 0 && to != td {
			t.Fatalf("a reply for a1 here went to %v, not its device", to)
		}
		return via
	}
	officeAt := func() backbone.NodeID { return tp.snap.Load().byAddr[office.IPv4].where(2) }

	place(plane.PeerNode{Peer: a1.ID, Node: 3}, plane.PeerNode{Peer: office.ID, Node: 3})
	for _, step := range []struct {
		name      string
		do        func()
		a1, place backbone.NodeID
	}{
		{"placed at node 3", func() {}, 3, 3},
		{"a1's packet from node 4", func() { n.deliverBackbone(4, 1, [][]byte{ipv4Packet(a1.IPv4, web)[16:]}) }, 4, 3},
		{"the office LAN's packet from node 5", func() { n.deliverBackbone(5, 1, [][]byte{ipv4Packet(netip.MustParseAddr("10.10.0.9"), web)[16:]}) }, 4, 5},
		{"a1's packet through this node's device", func() { td.Write([][]byte{ipv4Packet(a1.IPv4, web)}, 16) }, 0, 5},
		{"the same placement again", func() { place(plane.PeerNode{Peer: a1.ID, Node: 3}, plane.PeerNode{Peer: office.ID, Node: 3}) }, 0, 5},
		{"placed anew: a1 at node 6, the office here", func() { place(plane.PeerNode{Peer: a1.ID, Node: 6}, plane.PeerNode{Peer: office.ID, Node: 2}) }, 6, 0},
		{"another packet of a1's from node 4", func() { n.deliverBackbone(4, 1, [][]byte{ipv4Packet(a1.IPv4, web)[16:]}) }, 4, 0},
	} {
		step.do()
		if got := replies(); got != step.a1 {
			t.Errorf("%s: a1's replies go to node %d, want %d", step.name, got, step.a1)
		}
		if got := officeAt(); got != step.place {
			t.Errorf("%s: the office is at node %d, want %d", step.name, got, step.place)
		}
	}
}
