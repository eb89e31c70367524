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
