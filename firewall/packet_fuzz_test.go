package firewall

import (
	"testing"
)

// FuzzParsePacket: Parse never panics or reads out of bounds, fills what it claims, and the
// filter takes whatever it accepts.
func FuzzParsePacket(f *testing.F) {
	for _, p := range []pkt{aliceSyn, serverSyn, laptopDNS, laptopPing, pingReply6,
		{src: "192.0.2.254", dst: "100.64.0.3", proto: ipprotoICMP, icmpType: icmp4Unreachable, quote: laptopDNS.build()},
		{src: "2001:db8::fe", dst: "fd7a::3", proto: ipprotoICMPv6, icmpType: icmp6TooBig, quote: laptopPing6.build(), ext: []uint8{0, 60}},
		{src: "fd7a::1", dst: "fd7a::2", proto: ipprotoUDP, sport: 1, dport: 2, more: true, fragID: 3},
		{src: "1.1.1.1", dst: "2.2.2.2", proto: ipprotoTCP, fragOff: 3, payload: 8, ipOptions: 8},
	} {
		f.Add(p.build())
	}
	flt, _ := newTestFilter(f, Config{MaxFlows: 1024}, filterPolicy)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := p.Parse(b); err != nil {
			return
		}
		if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
			t.Fatalf("accepted packet with addresses %v %v", p.Src, p.Dst)
		}
		if p.Len > len(b) {
			t.Fatalf("Len %d > %d bytes", p.Len, len(b))
		}
		if p.HasQuoted && (!p.Quoted.Src.IsValid() || p.Quoted.Src.Is4() != p.Src.Is4()) {
			t.Fatalf("bad quote %+v", p.Quoted)
		}
		for _, dir := range []Direction{FromPeer, ToPeer} {
			v, r := flt.Check(1, &p, dir)
			if (v == Accept) != (r == ReasonNone) {
				t.Fatalf("Check = %s %s", v, r)
			}
		}
	})
}
