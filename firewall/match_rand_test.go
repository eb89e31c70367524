package firewall

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// refMatch is the naive reference: the first rule, in order, whose every part matches f,
// straight from the Policy and the View. Unknown names match nothing.
func refMatch(p *Policy, v *View, f Flow) (Action, int) {
	for i := range p.Rules {
		r := &p.Rules[i]
		if refEndpoints(r.Src, f.Src, v, true) && refEndpoints(r.Dst, f.Dst, v, false) && refProto(r, f) {
			return r.Action, i
		}
	}
	return p.Default, -1
}

func refEndpoints(eps []Endpoint, a netip.Addr, v *View, isSrc bool) bool {
	for _, ep := range eps {
		switch ep.Kind {
		case EndpointAny:
			if !isSrc {
				return true
			}
			for _, p := range v.Peers {
				if refHasAddr(p, a) {
					return true
				}
			}
		case EndpointGroup:
			for _, p := range v.Peers {
				for _, g := range p.Groups {
					if g == ep.Name && refHasAddr(p, a) {
						return true
					}
				}
			}
		case EndpointPeer:
			for _, p := range v.Peers {
				if p.Name == ep.Name && refHasAddr(p, a) {
					return true
				}
			}
		case EndpointSite:
			for _, s := range v.Sites {
				if s.Name != ep.Name {
					continue
				}
				for _, pfx := range s.Prefixes {
					if pfx.Contains(a) {
						return true
					}
				}
			}
		case EndpointPrefix:
			if ep.Prefix.Contains(a) {
				return true
			}
		}
	}
	return false
}

func refHasAddr(p ViewPeer, a netip.Addr) bool {
	for _, pa := range p.Addrs {
		if pa == a {
			return true
		}
	}
	return false
}

func refProto(r *Rule, f Flow) bool {
	switch r.Proto {
	case ProtoTCP:
		if f.Proto != ipprotoTCP {
			return false
		}
	case ProtoUDP:
		if f.Proto != ipprotoUDP {
			return false
		}
	case ProtoICMP:
		return f.Proto == ipprotoICMP || f.Proto == ipprotoICMPv6
	case ProtoAny:
		return true
	}
	if len(r.Ports) == 0 {
		return true
	}
	for _, pr := range r.Ports {
		if f.DstPort >= pr.Lo && f.DstPort <= pr.Hi {
			return true
		}
	}
	return false
}

// randGen makes random tenants, policies and flows that collide often: few groups, prefixes
// nested around the peers' and sites' addresses, ports near each other.
type randGen struct {
	r *rand.Rand
	v *View
}

var randGroups = []string{"eng", "ops", "sales", "servers", "ghost"} // "ghost" has no members

func newRandView(r *rand.Rand, peers int) *View {
	v := &View{}
	for i := range peers {
		p := ViewPeer{
			Name:  fmt.Sprintf("p%d", i),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), netip.AddrFrom16([16]byte{0xfd, 0x7a, 14: byte(i >> 8), 15: byte(i)})},
		}
		for _, g := range randGroups[:4] {
			if r.IntN(3) == 0 {
				p.Groups = append(p.Groups, g)
			}
		}
		v.Peers = append(v.Peers, p)
	}
	for i := range 3 {
		v.Sites = append(v.Sites, ViewSite{
			Name: fmt.Sprintf("s%d", i),
			Prefixes: []netip.Prefix{
				netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16+r.IntN(9)).Masked(),
				netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x10, 5: byte(i)}), 48+r.IntN(20)).Masked(),
			},
		})
	}
	return v
}

func (g *randGen) addr() netip.Addr {
	r := g.r
	switch r.IntN(6) {
	case 0, 1: // a peer's address
		p := g.v.Peers[r.IntN(len(g.v.Peers))]
		return p.Addrs[r.IntN(len(p.Addrs))]
	case 2: // in a site
		i := r.IntN(3)
		if r.IntN(2) == 0 {
			return netip.AddrFrom4([4]byte{10, byte(i), byte(r.IntN(4)), byte(r.IntN(256))})
		}
		return netip.AddrFrom16([16]byte{0xfd, 0x10, 5: byte(i), 7: byte(r.IntN(4)), 15: byte(r.IntN(256))})
	case 3: // near the peers but none of them
		if r.IntN(2) == 0 {
			return netip.AddrFrom4([4]byte{100, 64, 1, byte(r.IntN(256))})
		}
		return netip.AddrFrom16([16]byte{0xfd, 0x7a, 13: 1, 15: byte(r.IntN(256))})
	default: // anywhere
		if r.IntN(2) == 0 {
			var b [4]byte
			for i := range b {
				b[i] = byte(r.IntN(256))
			}
			return netip.AddrFrom4(b)
		}
		var b [16]byte
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return netip.AddrFrom16(b)
	}
}

func (g *randGen) endpoint() Endpoint {
	r := g.r
	switch r.IntN(10) {
	case 0:
		return Endpoint{Kind: EndpointAny}
	case 1, 2:
		return Endpoint{Kind: EndpointGroup, Name: randGroups[r.IntN(len(randGroups))]}
	case 3, 4:
		name := fmt.Sprintf("p%d", r.IntN(len(g.v.Peers)+1)) // sometimes unknown
		return Endpoint{Kind: EndpointPeer, Name: name}
	case 5:
		return Endpoint{Kind: EndpointSite, Name: fmt.Sprintf("s%d", r.IntN(4))} // s3 is unknown
	default:
		a := g.addr()
		return Endpoint{Kind: EndpointPrefix, Prefix: netip.PrefixFrom(a, r.IntN(a.BitLen()+1)).Masked()}
	}
}

func (g *randGen) port() uint16 {
	if g.r.IntN(4) == 0 {
		return uint16(g.r.IntN(65536))
	}
	return uint16(20 + g.r.IntN(40))
}

func (g *randGen) rule() Rule {
	r := g.r
	rule := Rule{Action: Action(r.IntN(2)), Proto: Proto(r.IntN(4))}
	for n := 1 + r.IntN(3); n > 0; n-- {
		rule.Src = append(rule.Src, g.endpoint())
	}
	for n := 1 + r.IntN(3); n > 0; n-- {
		rule.Dst = append(rule.Dst, g.endpoint())
	}
	if rule.Proto.hasPorts() && r.IntN(3) > 0 {
		for n := 1 + r.IntN(3); n > 0; n-- {
			a, b := g.port(), g.port()
			if r.IntN(2) == 0 {
				b = a
			}
			rule.Ports = append(rule.Ports, PortRange{min(a, b), max(a, b)})
		}
	}
	return rule
}

func (g *randGen) flow() Flow {
	src := g.addr()
	var dst netip.Addr
	for {
		dst = g.addr()
		if dst.Is4() == src.Is4() {
			break
		}
	}
	protos := []uint8{ipprotoTCP, ipprotoUDP, ipprotoICMP, ipprotoICMPv6, 47}
	f := Flow{Src: src, Dst: dst, Proto: protos[g.r.IntN(len(protos))]}
	if f.Proto == ipprotoTCP || f.Proto == ipprotoUDP {
		f.DstPort = g.port()
	}
	return f
}

// TestMatchRandom compares the indexed matcher with refMatch on random policies and flows.
func TestMatchRandom(t *testing.T) {
	seed := uint64(1)
	rounds, flows := 300, 400
	if testing.Short() {
		rounds = 50
	}
	byRule, byDefault := 0, 0
	for round := range rounds {
		r := rand.New(rand.NewPCG(seed, uint64(round)))
		g := &randGen{r: r}
		g.v = newRandView(r, 1+r.IntN(40))
		p := &Policy{Default: Action(r.IntN(2))}
		for n := r.IntN(200); n > 0; n-- {
			p.Rules = append(p.Rules, g.rule())
		}
		// The policy survives formatting.
		text := Format(p)
		p2, err := Parse(text)
		if err != nil {
			t.Fatalf("round %d: Parse(Format): %v\n%s", round, err, text)
		}
		rs, err := Compile(p2, g.v)
		if err != nil && !errors.Is(err, ErrUnresolved) {
			t.Fatalf("round %d: Compile: %v", round, err)
		}
		for range flows {
			f := g.flow()
			wantAct, wantRule := refMatch(p, g.v, f)
			gotAct, gotRule := rs.Match(f)
			if wantRule < 0 {
				byDefault++
			} else {
				byRule++
			}
			if gotAct != wantAct || gotRule != wantRule {
				t.Fatalf("round %d: flow %+v: got %s by rule %d, want %s by rule %d\npolicy:\n%s", round, f, gotAct, gotRule, wantAct, wantRule, text)
			}
		}
	}
	// The generator must exercise both outcomes, or the comparison proves little.
	t.Logf("%d flows decided by a rule, %d by the default", byRule, byDefault)
	if byRule < (byRule+byDefault)/4 || byDefault < (byRule+byDefault)/10 {
		t.Errorf("unbalanced: %d by a rule, %d by the default", byRule, byDefault)
	}
}
