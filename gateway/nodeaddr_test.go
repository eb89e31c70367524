package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/resolver"
)

// udpPacket is an IP/UDP packet from from to to carrying payload, at offset 16 of its
// buffer as wireguard-go hands packets (checksums are not the packet path's concern).
func udpPacket(from, to netip.AddrPort, payload []byte) []byte {
	hl := 20
	if to.Addr().Is6() {
		hl = ipv6Header
	}
	b := make([]byte, 16+hl+8+len(payload))
	p := b[16:]
	if hl == 20 {
		p[0], p[8], p[9] = 0x45, 64, protoUDP
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		s, d := from.Addr().As4(), to.Addr().As4()
		copy(p[12:], s[:])
		copy(p[16:], d[:])
	} else {
		p[0], p[6], p[7] = 6<<4, protoUDP, 64
		binary.BigEndian.PutUint16(p[4:], uint16(8+len(payload)))
		s, d := from.Addr().As16(), to.Addr().As16()
		copy(p[8:], s[:])
		copy(p[24:], d[:])
	}
	u := p[hl:]
	binary.BigEndian.PutUint16(u, from.Port())
	binary.BigEndian.PutUint16(u[2:], to.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	return b
}

// splitUDP reads what udpPacket writes (without the offset): addresses, ports, payload.
func splitUDP(t *testing.T, p []byte) (from, to netip.AddrPort, payload []byte) {
	t.Helper()
	hl, src, dst := 20, netip.Addr{}, netip.Addr{}
	if p[0]>>4 == 6 {
		hl, src, dst = ipv6Header, netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
	} else {
		src, dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
	}
	u := p[hl:]
	return netip.AddrPortFrom(src, binary.BigEndian.Uint16(u)), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:])), u[8:]
}

func dnsQuery(t *testing.T, name string) ([]byte, uint16) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b, q.Id
}

// dnsAnswer answers query (a packed message) with addr.
func dnsAnswer(t *testing.T, query []byte, addr string) []byte {
	t.Helper()
	q := new(dns.Msg)
	if err := q.Unpack(query); err != nil {
		t.Fatalf("a query that does not parse: %v", err)
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
		A: net.ParseIP(addr)}}
	b, _ := m.Pack()
	return b
}

// TestNodeAddrRouting: the resolver's queries into a tenant's sites and peers leave from the
// node's own address through the tenant's packet path, here or over the backbone, whatever
// the tenant's policy (it denies everything here), and only towards the tenant's sites and
// peers; their answers, through this node's device or over the backbone, reach the
// resolver and the client gets them. A packet for another node's address from a site here
// crosses the backbone to that node; one that arrived over the backbone goes no further.
func TestNodeAddrRouting(t *testing.T) {
	sink := new(bbSink)
	d2, _ := startBackbonePair(t, sink, nil)
	alice := testPeer(1, "acme", "alice", 2, true)
	office := testPeer(1, "acme", "office-gw", 4, true) // here
	office.Site, office.SitePrefixes = "office", []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}
	branch := testPeer(1, "acme", "branch-gw", 5, true) // at node 3
	branch.Site, branch.SitePrefixes = "branch", []netip.Prefix{netip.MustParsePrefix("10.20.0.0/24")}
	dnsPeer := testPeer(1, "acme", "dns", 6, true) // at node 3
	gx := testPeer(2, "globex", "office-gw", 7, true)
	gx.Site, gx.SitePrefixes = "office", []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}
	peers := []plane.Peer{alice, office, branch, dnsPeer, gx}
	tp := newTestPath(t, peers, "default deny\n", 2, []int64{1, 2},
		plane.Route{Tenant: 1, Prefix: netip.MustParsePrefix("10.10.0.0/24"), Via: "site:office"},
		plane.Route{Tenant: 1, Prefix: netip.MustParsePrefix("10.20.0.0/24"), Via: "site:branch"},
		plane.Route{Tenant: 2, Prefix: netip.MustParsePrefix("10.10.0.0/24"), Via: "site:office"})
	td := tp.tuns[1]
	ex := &testExits{}
	td.setExits(&ex.local, &ex.v4, &ex.v6)

	n := &Node{filter: tp.filter, ov: testOverlay}
	n.bb.dev.Store(d2)
	td.bb = &n.bb
	old := tp.snap.Load()
	dd := &plane.Desired{Tenants: []plane.Tenant{{ID: 1, Name: "acme", DNS: plane.TenantDNS{Zones: []plane.DNSZone{
		{Name: "corp.example", Servers: []netip.AddrPort{netip.MustParseAddrPort("10.10.0.53:53")}},
		{Name: "branch.example", Servers: []netip.AddrPort{netip.MustParseAddrPort("10.20.0.53:53")}},
		{Name: "peer.example", Servers: []netip.AddrPort{netip.AddrPortFrom(dnsPeer.IPv6, 53)}},
		{Name: "web.example", Servers: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.53:53")}},
	}}}, {ID: 2, Name: "globex"}}, Peers: peers, Self: 2}
	var routes []plane.Route
	for _, ts := range old.tenants {
		for _, r := range ts.routes {
			via := plane.ViaInternet
			if r.siteName != "" {
				via = "site:" + r.siteName
			}
			routes = append(routes, plane.Route{Tenant: ts.id, Prefix: r.prefix, Via: via})
		}
	}
	snap := newSnapshot(desired{tenants: dd.Tenants, peers: peers, routes: routes, tuns: tp.tuns, self: 2, addrID: plane.AddrID(dd.Self),
		peerNodes: []plane.PeerNode{{Peer: branch.ID, Node: 3}, {Peer: dnsPeer.ID, Node: 3}}}, testOverlay)
	tp.snap.Store(snap)
	n.snap.Store(snap)
	r, err := resolver.New(resolver.Config{Overlay: testOverlay, SendSplit: n.sendSplit, Timeout: 5 * time.Second}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	r.SetZones(resolver.BuildZones(dd, func(p *plane.Peer) bool { return p.Enabled }))
	r.SetNodeAddrs(snap.nodeAddr[0], snap.nodeAddr[1])
	n.dns, td.dns = r, r
	node4, node6 := testOverlay.NodeAddrs(2)
	if snap.nodeAddr != [2]netip.Addr{node4, node6} || node4.String() != "100.127.0.2" {
		t.Fatalf("the node's addresses %v, want node 2's %s, %s", snap.nodeAddr, node4, node6)
	}

	read := func(what string) []byte {
		t.Helper()
		if td.out.len() == 0 {
			t.Fatalf("%s: nothing queued towards acme's peers", what)
		}
		bufs, sizes := [][]byte{make([]byte, 2000)}, []int{0}
		if k, err := td.Read(bufs, sizes, 16); err != nil || k != 1 {
			t.Fatalf("%s: Read %d, %v", what, k, err)
		}
		return bufs[0][16 : 16+sizes[0]]
	}
	lastSent := func(before int, what string) []byte {
		t.Helper()
		eventually(t, what, 5*time.Second, func(context.Context) error {
			if sink.count() != before+1 {
				return fmt.Errorf("node 3 got %d packets, want %d", sink.count(), before+1)
			}
			return nil
		})
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if got := sink.got[len(sink.got)-1]; !strings.HasPrefix(got, "1:") {
			t.Errorf("%s: sent with label %s, want acme's (1)", what, got)
		}
		return sink.pkts[len(sink.pkts)-1]
	}
	client := netip.AddrPortFrom(alice.IPv4, 40000)
	gw := netip.AddrPortFrom(testOverlay.Gateway4, 53)
	// ask sends alice's query for name and returns its ID.
	ask := func(name string) uint16 {
		q, id := dnsQuery(t, name)
		td.Write([][]byte{udpPacket(client, gw, q)}, 16)
		return id
	}
	// answered checks alice's answer: from the gateway, with her query's ID, and want.
	answered := func(what string, id uint16, want string) {
		t.Helper()
		from, to, payload := splitUDP(t, read(what+": the client's answer"))
		m := new(dns.Msg)
		if err := m.Unpack(payload); err != nil || from != gw || to != client || m.Id != id {
			t.Fatalf("%s: the client got %v → %v id %d (%v), want from %v to %v with id %d", what, from, to, m.Id, err, gw, client, id)
		}
		got := dns.RcodeToString[m.Rcode]
		for _, rr := range m.Answer {
			got += " " + rr.(*dns.A).A.String()
		}
		if got != want {
			t.Errorf("%s: the client got %q, want %q", what, got, want)
		}
	}

	// A site here: the query is queued towards its connector, the answer comes back
	// through this node's device.
	id := ask("db.corp.example.")
	from, to, q := splitUDP(t, read("the query to the office"))
	if from.Addr() != node4 || to != netip.MustParseAddrPort("10.10.0.53:53") || from.Port() == 40000 {
		t.Fatalf("the query to the office: %v → %v, want from %v", from, to, node4)
	}
	td.Write([][]byte{udpPacket(to, from, dnsAnswer(t, q, "10.10.0.99"))}, 16)
	answered("a site here", id, "NOERROR 10.10.0.99")

	// A site at node 3: the query crosses the backbone with acme's label, the answer comes
	// back over it.
	before := sink.count()
	id = ask("x.branch.example.")
	from, to, q = splitUDP(t, lastSent(before, "the query to the branch"))
	if from.Addr() != node4 || to != netip.MustParseAddrPort("10.20.0.53:53") {
		t.Fatalf("the query to the branch: %v → %v", from, to)
	}
	n.deliverBackbone(3, 1, [][]byte{udpPacket(to, from, dnsAnswer(t, q, "10.20.0.99"))[16:]})
	answered("a site at node 3", id, "NOERROR 10.20.0.99")

	// A peer at node 3, over IPv6.
	before = sink.count()
	id = ask("peer.example.")
	from, to, q = splitUDP(t, lastSent(before, "the query to the peer"))
	if from.Addr() != node6 || to.Addr() != dnsPeer.IPv6 {
		t.Fatalf("the query to the peer: %v → %v, want from %v", from, to, node6)
	}
	// The same answer under another tenant's label is no answer.
	ans := udpPacket(to, from, dnsAnswer(t, q, "10.30.0.99"))[16:]
	drops := n.drops[dropNoRoute].Load()
	n.deliverBackbone(3, 2, [][]byte{ans})
	if td.out.len() != 0 || n.drops[dropNoRoute].Load() != drops+1 {
		t.Fatalf("an answer under globex's label reached acme's client, or was not counted")
	}
	n.deliverBackbone(3, 1, [][]byte{ans})
	answered("a peer at node 3", id, "NOERROR 10.30.0.99")

	// A server the tenant routes to the internet is out of its packet path: SERVFAIL at once.
	before = sink.count()
	id = ask("web.example.")
	answered("a server routed to the internet", id, "SERVFAIL")
	if err := n.sendSplit(1, udpPacket(netip.AddrPortFrom(node4, 1), netip.MustParseAddrPort("198.51.100.53:53"), nil)[16:]); err == nil ||
		!strings.Contains(err.Error(), "198.51.100.53 is routed to the internet or exits by tenant acme's route 0.0.0.0/0, not to a site") {
		t.Errorf("sendSplit to a server routed to the internet: %v", err)
	}
	if err := n.sendSplit(1, udpPacket(netip.AddrPortFrom(node4, 1), netip.AddrPortFrom(gx.IPv4, 53), nil)[16:]); err == nil ||
		!strings.Contains(err.Error(), "is no peer of tenant acme") {
		t.Errorf("sendSplit to another tenant's peer: %v", err)
	}
	if sink.count() != before || td.out.len() != 0 || ex.got() != "" {
		t.Errorf("a query out of reach went somewhere: node 3 %d packets, %d queued, exits %q", sink.count()-before, td.out.len(), ex.got())
	}

	// From the office here to node 3's address: over the backbone to node 3.
	before = sink.count()
	node3, _ := testOverlay.NodeAddrs(3)
	td.Write([][]byte{udpPacket(netip.MustParseAddrPort("10.10.0.53:53"), netip.AddrPortFrom(node3, 41000), []byte("answer"))}, 16)
	lastSent(before, "a packet for node 3's address")
	// Over the backbone for node 4's address, or ours but no answer we wait for, or for
	// nobody's address: dropped and counted.
	node4addr, _ := testOverlay.NodeAddrs(4)
	for _, c := range []struct {
		what string
		do   func(pkt []byte)
		dst  netip.Addr
	}{
		{"over the backbone for node 4", func(p []byte) { n.deliverBackbone(3, 1, [][]byte{p[16:]}) }, node4addr},
		{"over the backbone, no answer of ours", func(p []byte) { n.deliverBackbone(3, 1, [][]byte{p[16:]}) }, node4},
		{"from the office, no answer of ours", func(p []byte) { td.Write([][]byte{p}, 16) }, node4},
		{"from the office, nobody's", func(p []byte) { td.Write([][]byte{p}, 16) }, netip.MustParseAddr("100.127.0.0")},
	} {
		before, drops := sink.count(), n.drops[dropNoRoute].Load()+td.drops[dropNoRoute].Load()
		c.do(udpPacket(netip.MustParseAddrPort("10.10.0.53:53"), netip.AddrPortFrom(c.dst, 41000), []byte("answer")))
		time.Sleep(20 * time.Millisecond)
		if sink.count() != before || td.out.len() != 0 || n.drops[dropNoRoute].Load()+td.drops[dropNoRoute].Load() != drops+1 {
			t.Errorf("%s: went somewhere, or was not counted", c.what)
		}
	}

	// Node 3's query into the office here passes the tenant's policy (deny all), which
	// holds for anybody else's packet.
	q3 := udpPacket(netip.AddrPortFrom(node3, 41000), netip.MustParseAddrPort("10.10.0.53:53"), []byte("query"))[16:]
	n.deliverBackbone(3, 1, [][]byte{q3})
	if got := tp.tuns[1].out.len(); got != 1 {
		t.Fatalf("node 3's query to the office: %d queued, want 1", got)
	}
	read("node 3's query")
	n.deliverBackbone(3, 1, [][]byte{udpPacket(netip.MustParseAddrPort("198.51.100.2:41000"), netip.MustParseAddrPort("10.10.0.53:53"), []byte("query"))[16:]})
	if got := tp.tuns[1].out.len(); got != 0 {
		t.Errorf("a packet from the internet to the office passed a deny-all policy")
	}
	if st := r.Stats(); st.Split != 4 || st.Failed != 1 {
		t.Errorf("resolver stats %+v, want 4 split and 1 failed", st)
	}
}

// TestNodeAddrAppliance: a node without a backbone (the appliance, Self 0) has node 1's
// address; another node's address is nowhere; a node without an address sends nothing.
func TestNodeAddrAppliance(t *testing.T) {
	a1 := testPeer(1, "acme", "a1", 2, true)
	tp := newTestPath(t, []plane.Peer{a1}, "", 1, []int64{1})
	n := &Node{}
	n.snap.Store(tp.snap.Load())
	pkt := udpPacket(netip.MustParseAddrPort("100.127.0.1:40000"), netip.MustParseAddrPort("10.10.0.53:53"), nil)[16:]
	if err := n.sendSplit(1, pkt); !errors.Is(err, errNodeAddr) {
		t.Errorf("a node without an address of its own: %v", err)
	}
	snap := newSnapshot(desired{tenants: []plane.Tenant{{ID: 1, Name: "acme"}}, peers: []plane.Peer{a1}, addrID: plane.AddrID(0)}, testOverlay)
	if snap.nodeAddr[0].String() != "100.127.0.1" || snap.self != 0 {
		t.Errorf("the appliance's address %v (backbone ID %d), want 100.127.0.1", snap.nodeAddr, snap.self)
	}
	node2, _ := testOverlay.NodeAddrs(2)
	if taken, via := toNodeAddr(snap, nil, 1, node2, nil, true); taken || via != 0 {
		t.Errorf("another node's address without a backbone: taken %v, via %d", taken, via)
	}
	if taken, via := toNodeAddr(snap, nil, 1, snap.nodeAddr[0], nil, true); taken || via != 0 {
		t.Errorf("its own address without a resolver: taken %v, via %d", taken, via)
	}
}
