package firewall

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// testView is a small tenant: four peers, two sites.
func testView() *View {
	return &View{
		Peers: []ViewPeer{
			{Name: "alice", Addrs: addrs("100.64.0.1", "fd7a::1"), Groups: []string{"eng"}},
			{Name: "bob", Addrs: addrs("100.64.0.2", "fd7a::2"), Groups: []string{"eng", "ops"}},
			{Name: "laptop", Addrs: addrs("100.64.0.3", "fd7a::3"), Groups: []string{"sales"}},
			{Name: "web", Addrs: addrs("100.64.0.10", "fd7a::10"), Groups: []string{"servers"}},
		},
		Sites: []ViewSite{
			{Name: "office", Prefixes: prefixes("10.10.0.0/16", "fd10::/48")},
			{Name: "dc", Prefixes: prefixes("10.20.0.0/16", "10.21.0.0/24")},
		},
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func mustCompile(t testing.TB, text string, v *View) *RuleSet {
	t.Helper()
	p, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	rs, err := Compile(p, v)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return rs
}

const testPolicy = `default deny
allow group:eng -> 10.10.0.0/24, site:dc tcp 80,443,8000-8100
allow group:eng -> group:servers icmp
deny  peer:laptop -> any udp 53
allow any -> 0.0.0.0/0, ::/0 udp 53
allow site:office -> group:servers tcp 22
deny  peer:bob -> peer:web tcp
allow group:ops, group:eng -> peer:web tcp 1-1024
allow 0.0.0.0/0 -> peer:web tcp 443
allow any -> fd10::/48 any
`

func TestMatch(t *testing.T) {
	rs := mustCompile(t, testPolicy, testView())
	tests := []struct {
		src, dst string
		proto    uint8
		port     uint16
		want     Action
		rule     int // index, -1 for the default
	}{
		{"100.64.0.1", "10.10.0.5", ipprotoTCP, 443, Allow, 0},
		{"100.64.0.1", "10.10.0.5", ipprotoTCP, 8050, Allow, 0},
		{"100.64.0.1", "10.10.0.5", ipprotoTCP, 8101, Deny, -1},
		{"100.64.0.1", "10.10.1.5", ipprotoTCP, 443, Deny, -1}, // in the site, not in the /24
		{"100.64.0.2", "10.21.0.9", ipprotoTCP, 80, Allow, 0},  // site:dc's second prefix
		{"100.64.0.2", "10.21.1.9", ipprotoTCP, 80, Deny, -1},
		{"100.64.0.1", "10.10.0.5", ipprotoUDP, 443, Deny, -1},
		{"100.64.0.3", "10.10.0.5", ipprotoTCP, 443, Deny, -1}, // laptop is not in eng
		{"100.64.0.1", "100.64.0.10", ipprotoICMP, 0, Allow, 1},
		{"fd7a::1", "fd7a::10", ipprotoICMPv6, 0, Allow, 1},
		{"fd7a::1", "fd7a::3", ipprotoICMPv6, 0, Deny, -1},
		{"100.64.0.3", "8.8.8.8", ipprotoUDP, 53, Deny, 2},
		{"fd7a::3", "2001:4860::8888", ipprotoUDP, 53, Deny, 2},
		{"100.64.0.1", "8.8.8.8", ipprotoUDP, 53, Allow, 3},
		{"2001:db8::1", "fd7a::10", ipprotoUDP, 53, Deny, -1}, // any source is peers only
		{"10.10.3.4", "100.64.0.10", ipprotoTCP, 22, Allow, 4},
		{"fd10::7", "fd7a::10", ipprotoTCP, 22, Allow, 4},
		{"10.10.3.4", "100.64.0.1", ipprotoTCP, 22, Deny, -1},
		{"10.20.3.4", "100.64.0.10", ipprotoTCP, 22, Deny, -1},
		{"100.64.0.2", "100.64.0.10", ipprotoTCP, 80, Deny, 5},
		{"100.64.0.2", "100.64.0.10", ipprotoUDP, 80, Deny, -1},
		{"100.64.0.1", "100.64.0.10", ipprotoTCP, 80, Allow, 6},
		{"100.64.0.1", "100.64.0.10", ipprotoTCP, 2000, Deny, -1},
		{"100.64.0.1", "100.64.0.10", ipprotoTCP, 443, Allow, 6},
		{"100.64.0.3", "100.64.0.10", ipprotoTCP, 443, Allow, 7},
		{"198.51.100.7", "100.64.0.10", ipprotoTCP, 443, Allow, 7},
		{"2001:db8::7", "fd7a::10", ipprotoTCP, 443, Deny, -1}, // 0.0.0.0/0 is IPv4 only
		{"fd7a::3", "fd10::1:2", 47, 0, Allow, 8},
		{"fd7a::3", "fd10::1:2", ipprotoUDP, 9, Allow, 8},
		{"fd7a::99", "fd10::1:2", ipprotoUDP, 9, Deny, -1}, // not a peer
	}
	for _, tt := range tests {
		f := Flow{Src: netip.MustParseAddr(tt.src), Dst: netip.MustParseAddr(tt.dst), Proto: tt.proto, DstPort: tt.port}
		act, rule := rs.Match(f)
		if act != tt.want || rule != tt.rule {
			t.Errorf("Match(%s -> %s proto %d port %d) = %s rule %d, want %s rule %d", tt.src, tt.dst, tt.proto, tt.port, act, rule, tt.want, tt.rule)
		}
	}
}

func TestMatchDefaultAllow(t *testing.T) {
	rs := mustCompile(t, "default allow\ndeny any -> 10.0.0.0/8 tcp 22\n", testView())
	for _, tt := range []struct {
		src, dst string
		port     uint16
		want     Action
	}{
		{"100.64.0.1", "10.1.1.1", 22, Deny},
		{"100.64.0.1", "10.1.1.1", 23, Allow},
		{"192.0.2.1", "10.1.1.1", 22, Allow}, // "any" sources are peers
	} {
		act, _ := rs.Match(Flow{Src: netip.MustParseAddr(tt.src), Dst: netip.MustParseAddr(tt.dst), Proto: ipprotoTCP, DstPort: tt.port})
		if act != tt.want {
			t.Errorf("%s -> %s:%d = %s, want %s", tt.src, tt.dst, tt.port, act, tt.want)
		}
	}
	empty := mustCompile(t, "", testView())
	if act, i := empty.Match(Flow{Src: netip.MustParseAddr("100.64.0.1"), Dst: netip.MustParseAddr("1.1.1.1")}); act != Deny || i != -1 {
		t.Errorf("empty policy: %s %d", act, i)
	}
}

func TestCompileUnresolved(t *testing.T) {
	p, err := Parse(`default deny
allow group:eng -> group:servers tcp 22
allow group:interns -> site:lab, peer:web
deny  peer:mallory -> any
`)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compile(p, testView())
	want := `line 3: no peer of this tenant is in group "interns": add one to it (popgate peer add --group interns ...) or remove the reference
line 3: the tenant has no site "lab": create it (a site connector peer with its LAN prefixes) or remove the reference
line 4: the tenant has no peer "mallory": add it (popgate peer add) or remove the reference`
	if err == nil || err.Error() != want {
		t.Fatalf("Compile error\n got %v\nwant %s", err, want)
	}
	if !errors.Is(err, ErrUnresolved) {
		t.Errorf("error is not ErrUnresolved")
	}
	if rs == nil {
		t.Fatal("no RuleSet with unresolved references")
	}
	// The rest of the policy works; unknown names match nothing.
	if act, i := rs.Match(Flow{Src: netip.MustParseAddr("100.64.0.1"), Dst: netip.MustParseAddr("100.64.0.10"), Proto: ipprotoTCP, DstPort: 22}); act != Allow || i != 0 {
		t.Errorf("known rule: %s %d", act, i)
	}
	if act, i := rs.Match(Flow{Src: netip.MustParseAddr("100.64.0.3"), Dst: netip.MustParseAddr("100.64.0.10"), Proto: ipprotoUDP}); act != Deny || i != -1 {
		t.Errorf("rule with unknown group: %s %d", act, i)
	}
}

func TestCompileBadView(t *testing.T) {
	p, _ := Parse("allow any -> any\n")
	v := testView()
	v.Peers = append(v.Peers, ViewPeer{Name: "alice"}, ViewPeer{Name: "eve", Addrs: addrs("100.64.0.1")})
	v.Sites = append(v.Sites, ViewSite{Name: "dc"})
	rs, err := Compile(p, v)
	want := `the tenant has two peers named "alice"
peers "alice" and "eve" both have the address 100.64.0.1
the tenant has two sites named "dc"`
	if rs != nil || err == nil || err.Error() != want {
		t.Fatalf("Compile = %v, %v; want error\n%s", rs, err, want)
	}
	if errors.Is(err, ErrUnresolved) {
		t.Error("a bad view is not ErrUnresolved")
	}
}

func TestRuleStats(t *testing.T) {
	rs := mustCompile(t, "# x\nallow group:eng -> any tcp 22\ndefault deny\n", testView())
	f := Flow{Src: netip.MustParseAddr("100.64.0.1"), Dst: netip.MustParseAddr("10.0.0.1"), Proto: ipprotoTCP, DstPort: 22}
	rs.decide(&f)
	rs.decide(&f)
	f.DstPort = 23
	rs.decide(&f)
	got := rs.Stats()
	want := []RuleStat{{Line: 2, Rule: "allow group:eng -> any tcp 22", Hits: 2}, {Line: 3, Rule: "default deny", Hits: 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

// TestCarryHits: a rule set compiled again from the same rules (another view: a peer more)
// goes on counting; a rule that changed, and every rule below it, starts at zero and says
// since when; the default carries on only when nothing changed.
func TestCarryHits(t *testing.T) {
	const text = "allow group:eng -> any tcp 22\nallow any -> any udp 53\ndefault deny\n"
	hit := func(rs *RuleSet, src string, port uint16, n int) {
		f := Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("10.0.0.1"), Proto: ipprotoTCP, DstPort: port}
		if port == 53 {
			f.Proto = ipprotoUDP
		}
		for range n {
			rs.decide(&f)
		}
	}
	hits := func(rs *RuleSet) (out []uint64) {
		for _, s := range rs.Stats() {
			out = append(out, s.Hits)
		}
		return out
	}
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	first := mustCompile(t, text, testView())
	first.CarryHits(nil, t0)
	hit(first, "100.64.0.1", 22, 3) // rule 0
	hit(first, "100.64.0.3", 53, 2) // rule 1
	hit(first, "100.64.0.3", 22, 1) // default
	for _, s := range first.Stats() {
		if !s.Since.Equal(t0) {
			t.Errorf("first rule set: %+v, want since %v", s, t0)
		}
	}

	// A peer more in the view, the same text: every counter goes on, shared with the old
	// rule set (hits landing there while the new one is installed still count).
	v := testView()
	v.Peers = append(v.Peers, ViewPeer{Name: "carol", Addrs: addrs("100.64.0.20", "fd7a::20"), Groups: []string{"eng"}})
	second := mustCompile(t, text, v)
	second.CarryHits(first, t0.Add(time.Hour))
	hit(first, "100.64.0.1", 22, 1)
	hit(second, "100.64.0.20", 22, 1)
	if got := hits(second); !slices.Equal(got, []uint64{5, 2, 1}) {
		t.Errorf("hits after an unchanged re-apply = %v, want [5 2 1]", got)
	}
	for _, s := range second.Stats() {
		if !s.Since.Equal(t0) {
			t.Errorf("unchanged rule %+v: since should stay %v", s, t0)
		}
	}

	// Rule 1 changed: it and the default start now; rule 0 carries on.
	t2 := t0.Add(2 * time.Hour)
	third := mustCompile(t, "allow group:eng -> any tcp 22\nallow any -> any udp 5353\ndefault deny\n", v)
	third.CarryHits(second, t2)
	st := third.Stats()
	if st[0].Hits != 5 || !st[0].Since.Equal(t0) || st[1].Hits != 0 || !st[1].Since.Equal(t2) || st[2].Hits != 0 || !st[2].Since.Equal(t2) {
		t.Errorf("after a changed rule: %+v", st)
	}

	// A rule inserted at the top changes what every rule below it decides.
	fourth := mustCompile(t, "deny any -> any tcp 23\nallow group:eng -> any tcp 22\nallow any -> any udp 5353\ndefault deny\n", v)
	fourth.CarryHits(third, t2.Add(time.Hour))
	for _, s := range fourth.Stats() {
		if s.Hits != 0 || !s.Since.Equal(t2.Add(time.Hour)) {
			t.Errorf("after a rule inserted above: %+v", s)
		}
	}
}

// A peer in many groups gets its lists merged; matching must not change.
func TestMatchManyGroups(t *testing.T) {
	v := &View{Peers: []ViewPeer{{Name: "p", Addrs: addrs("100.64.0.1")}}}
	var b strings.Builder
	for i := range 40 {
		g := "g" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		v.Peers[0].Groups = append(v.Peers[0].Groups, g)
		b.WriteString("allow group:" + g + " -> 10.0.0.0/8 tcp " + itoa(1000+i) + "\n")
	}
	rs := mustCompile(t, b.String(), v)
	for i := range 40 {
		act, r := rs.Match(Flow{Src: netip.MustParseAddr("100.64.0.1"), Dst: netip.MustParseAddr("10.1.1.1"), Proto: ipprotoTCP, DstPort: uint16(1000 + i)})
		if act != Allow || r != i {
			t.Errorf("port %d: %s %d", 1000+i, act, r)
		}
	}
}

func itoa(i int) string { return PortRange{uint16(i), uint16(i)}.String() }

func TestPortBlocks(t *testing.T) {
	for _, tt := range []struct{ lo, hi uint16 }{{0, 65535}, {0, 0}, {65535, 65535}, {1, 1024}, {8000, 8100}, {1, 65535}, {0, 65534}, {3, 4}} {
		var covered [65536]bool
		n := 0
		portBlocks(tt.lo, tt.hi, func(start uint16, bits int) {
			n++
			size := 1 << (16 - bits)
			if int(start)%size != 0 {
				t.Errorf("%d-%d: block %d/%d not aligned", tt.lo, tt.hi, start, bits)
			}
			for p := int(start); p < int(start)+size; p++ {
				if covered[p] {
					t.Errorf("%d-%d: port %d twice", tt.lo, tt.hi, p)
				}
				covered[p] = true
			}
		})
		for p := range covered {
			if covered[p] != (p >= int(tt.lo) && p <= int(tt.hi)) {
				t.Fatalf("%d-%d: port %d covered=%v", tt.lo, tt.hi, p, covered[p])
			}
		}
		if n > 32 {
			t.Errorf("%d-%d: %d blocks", tt.lo, tt.hi, n)
		}
	}
}
