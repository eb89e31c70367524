package resolver

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/plane"
)

// FuzzQuery: any datagram a client sends to the resolver is answered or dropped, never a
// panic, and an answer always parses.
func FuzzQuery(f *testing.F) {
	for _, name := range []string{"laptop.acme.internal.", "2.0.64.100.in-addr.arpa.", "example.com.", "internal."} {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		q.SetEdns0(4096, true)
		b, _ := q.Pack()
		f.Add(b)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	r, err := New(Config{PeerRate: 1e9, PeerBurst: 1e9, Overlay: testOverlay}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	r.SetZones(BuildZones(testDesired(), func(p *plane.Peer) bool { return p.Enabled }))
	f.Fuzz(func(t *testing.T, msg []byte) {
		a := r.Query(1, netip.MustParseAddr("100.64.0.2"), msg, func() func([]byte) { return func([]byte) {} })
		if a == nil {
			return
		}
		if len(a) > MaxUDPSize {
			t.Fatalf("an answer of %d bytes", len(a))
		}
		if len(a) > 12 {
			if err := new(dns.Msg).Unpack(a); err != nil {
				t.Fatalf("the answer does not parse: %v", err)
			}
		}
	})
}

// FuzzDeliver: any packet for the node's own address, from a site or another node, is
// taken as the answer of a query in flight or dropped, never a panic; one that matches
// reaches the client as a message that parses.
func FuzzDeliver(f *testing.F) {
	n4, _ := testOverlay.NodeAddrs(7)
	server := netip.MustParseAddrPort("10.10.0.53:53")
	q := new(dns.Msg)
	q.SetQuestion("db.corp.example.", dns.TypeA)
	m := new(dns.Msg)
	m.SetReply(q)
	b, _ := m.Pack()
	f.Add(appendUDP(nil, server, netip.AddrPortFrom(n4, 40000), b))
	f.Add(appendUDP(nil, server, netip.AddrPortFrom(n4, 40000), []byte{0, 0, 0x80}))
	f.Add([]byte{0x45, 0, 0, 20})
	var sent []byte
	d := testDesired()
	d.Tenants[0].DNS.Zones = []plane.DNSZone{{Name: "corp.example", Servers: []netip.AddrPort{server}}}
	r, err := New(Config{PeerRate: 1e9, PeerBurst: 1e9, Overlay: testOverlay, SendSplit: func(_ int64, pkt []byte) error {
		sent = pkt
		return nil
	}}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	r.SetZones(BuildZones(d, func(p *plane.Peer) bool { return p.Enabled }))
	r.SetNodeAddrs(n4, netip.Addr{})
	qb, _ := q.Pack()
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var got []byte
		if r.Query(1, netip.MustParseAddr("100.64.0.2"), qb, func() func([]byte) { return func(b []byte) { got = b } }) != nil {
			t.Fatal("answered at once")
		}
		// The fuzzed packet, then one in the query's place with the fuzzed payload.
		from, to, _, _ := parseUDP(sent)
		payload, _ := UDPPayload(pkt)
		for _, p := range [][]byte{pkt, appendUDP(nil, to, from, pkt), appendUDP(nil, to, from, payload)} {
			if r.Deliver(1, p) {
				if err := new(dns.Msg).Unpack(got); err != nil {
					t.Fatalf("taken, and the client's answer does not parse: %v", err)
				}
				return
			}
		}
		r.split.mu.Lock()
		for k, p := range r.split.pending { // clear the way for the next run
			p.timer.Stop()
			delete(r.split.pending, k)
		}
		clear(r.split.inFlight)
		r.split.mu.Unlock()
	})
}
