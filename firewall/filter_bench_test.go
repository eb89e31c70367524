package firewall

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// benchTenant is a tenant of 1,000 peers in 50 groups with 10 sites, and a policy of n rules
// mixing groups, peers, sites and CIDRs. Its last rule allows p0 (in g0) to 10.200.0.0/16
// tcp 443; nothing before it does, so a flow p0 → 10.200.0.1:443 is decided by the last
// rule and one to port 444 by the default: both are the worst case of a linear scan.
func benchTenant(tb testing.TB, n int) (*View, *Policy) {
	r := rand.New(rand.NewPCG(7, uint64(n)))
	v := &View{}
	for i := range 1000 {
		v.Peers = append(v.Peers, ViewPeer{
			Name:   fmt.Sprintf("p%d", i),
			Addrs:  []netip.Addr{netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), netip.AddrFrom16([16]byte{0xfd, 0x7a, 14: byte(i >> 8), 15: byte(i)})},
			Groups: []string{fmt.Sprintf("g%d", i%50), fmt.Sprintf("g%d", (i/50)%50)},
		})
	}
	for i := range 10 {
		v.Sites = append(v.Sites, ViewSite{Name: fmt.Sprintf("s%d", i), Prefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16)}})
	}
	var b strings.Builder
	b.WriteString("default deny\n")
	for i := range n - 1 {
		action := "allow"
		if r.IntN(5) == 0 {
			action = "deny"
		}
		var src string
		switch r.IntN(10) {
		case 0:
			src = "any"
		case 1, 2, 3:
			src = fmt.Sprintf("peer:p%d", 1+r.IntN(999))
		default:
			src = fmt.Sprintf("group:g%d", 1+r.IntN(49))
		}
		var dst string
		switch r.IntN(4) {
		case 0:
			dst = fmt.Sprintf("site:s%d", r.IntN(10))
		case 1:
			dst = fmt.Sprintf("group:g%d", r.IntN(50))
		default:
			dst = fmt.Sprintf("10.%d.%d.0/24", 100+r.IntN(100), r.IntN(256))
		}
		fmt.Fprintf(&b, "%s %s -> %s tcp %d,%d\n", action, src, dst, 1+r.IntN(1024), 8000+i%1000)
	}
	b.WriteString("allow group:g0 -> 10.200.0.0/16 tcp 443\n")
	p, err := Parse(b.String())
	if err != nil {
		tb.Fatal(err)
	}
	return v, p
}

var benchSizes = []int{10, 1000, 10000}

func BenchmarkFilter(b *testing.B) {
	for _, n := range benchSizes {
		v, pol := benchTenant(b, n)
		rs, err := Compile(pol, v)
		if err != nil {
			b.Fatal(err)
		}
		newFilter := func() *Filter {
			f, err := New(Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			f.SetRuleSet(1, rs)
			return f
		}
		if act, i := rs.Match(Flow{Src: netip.MustParseAddr("100.64.0.0"), Dst: netip.MustParseAddr("10.200.0.1"), Proto: ipprotoTCP, DstPort: 443}); act != Allow || i != n-1 {
			b.Fatalf("bench flow decided by rule %d", i)
		}
		syn := pkt{src: "100.64.0.0", dst: "10.200.0.1", proto: ipprotoTCP, sport: 1, dport: 443, flags: TCPSyn}
		b.Run(fmt.Sprintf("rules=%d/new-flow-allowed", n), func(b *testing.B) {
			f := newFilter()
			raw := syn.build()
			var p Packet
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				// A new source port each time: every packet is a new flow to decide and track.
				raw[20], raw[21] = byte(i>>8), byte(i)
				if i&0xffff == 0xffff {
					b.StopTimer()
					f.Flush(1)
					b.StartTimer()
				}
				_ = p.Parse(raw)
				if v, r := f.Check(1, &p, FromPeer); v != Accept {
					b.Fatal(r)
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/new-flow-denied", n), func(b *testing.B) {
			f := newFilter()
			d := syn
			d.dport = 444
			raw := d.build()
			var p Packet
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Parse(raw)
				if v, _ := f.Check(1, &p, FromPeer); v != Drop {
					b.Fatal("accepted")
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/established", n), func(b *testing.B) {
			f := newFilter()
			var p Packet
			_ = p.Parse(syn.build())
			f.Check(1, &p, FromPeer)
			ack := syn
			ack.flags = TCPAck
			ack.payload = 1300
			raw := ack.build()
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				_ = p.Parse(raw)
				if v, r := f.Check(1, &p, FromPeer); v != Accept {
					b.Fatal(r)
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/established-batch", n), func(b *testing.B) {
			// As the packet path runs it: one clock read per batch of 128 packets.
			f := newFilter()
			var p Packet
			_ = p.Parse(syn.build())
			f.Check(1, &p, FromPeer)
			ack := syn
			ack.flags = TCPAck
			ack.payload = 1300
			raw := ack.build()
			b.ReportAllocs()
			now := f.Now()
			for i := 0; b.Loop(); i++ {
				if i%128 == 0 {
					now = f.Now()
				}
				_ = p.Parse(raw)
				if v, r := f.CheckAt(1, nil, &p, FromPeer, now); v != Accept {
					b.Fatal(r)
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/established-parallel", n), func(b *testing.B) {
			f := newFilter()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				// Each goroutine its own flow.
				var p Packet
				s := syn
				s.sport = uint16(rand.IntN(60000) + 1)
				_ = p.Parse(s.build())
				f.Check(1, &p, FromPeer)
				s.flags = TCPAck
				raw := s.build()
				for pb.Next() {
					_ = p.Parse(raw)
					f.Check(1, &p, FromPeer)
				}
			})
		})
	}
}

// BenchmarkMatch is rule evaluation alone: the indexed matcher against a linear scan.
func BenchmarkMatch(b *testing.B) {
	for _, n := range benchSizes {
		v, pol := benchTenant(b, n)
		rs, err := Compile(pol, v)
		if err != nil {
			b.Fatal(err)
		}
		flow := Flow{Src: netip.MustParseAddr("100.64.0.0"), Dst: netip.MustParseAddr("10.200.0.1"), Proto: ipprotoTCP, DstPort: 443}
		b.Run(fmt.Sprintf("rules=%d/indexed", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rs.Match(flow)
			}
		})
		b.Run(fmt.Sprintf("rules=%d/linear-reference", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				refMatch(pol, v, flow)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	v, pol := benchTenant(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(pol, v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePacket(b *testing.B) {
	raw := pkt{src: "fd7a::1", dst: "2001:db8::1", proto: ipprotoTCP, sport: 1, dport: 443, flags: TCPAck, payload: 1300}.build()
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Parse(raw)
	}
}
