package gateway

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// fakeExit records what the fast path hands to the exit.
type fakeExit struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (f *fakeExit) Write(bufs [][]byte, offset int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bufs {
		f.pkts = append(f.pkts, append([]byte(nil), b[offset:]...))
	}
}

func (f *fakeExit) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pkts)
}

// testExits are a test device's three exits (setExits), each a fake of its own, so that a
// test can tell which one got a packet.
type testExits struct{ local, v4, v6 fakeExit }

// got names the exits that got packets and how many: "v4" for one packet to the IPv4 exit,
// "local v6×2" for one to the node's services and two to the IPv6 exit, "" for none.
func (e *testExits) got() string {
	var parts []string
	for _, x := range []struct {
		name string
		f    *fakeExit
	}{{"local", &e.local}, {"v4", &e.v4}, {"v6", &e.v6}} {
		switch n := x.f.len(); n {
		case 0:
		case 1:
			parts = append(parts, x.name)
		default:
			parts = append(parts, fmt.Sprintf("%s×%d", x.name, n))
		}
	}
	return strings.Join(parts, " ")
}

var testOverlay = plane.Overlay{
	V4:       netip.MustParsePrefix("100.64.0.0/10"),
	V6:       netip.MustParsePrefix("fd00:aaaa:bbbb::/48"),
	Gateway4: netip.MustParseAddr("100.64.0.1"),
	Gateway6: netip.MustParseAddr("fd00:aaaa:bbbb::1"),
}

// testPeer is peer number n of tenant tenantID (whose name, tenant, only helps the reader).
func testPeer(tenantID int64, tenant, name string, n byte, enabled bool) plane.Peer {
	return plane.Peer{
		ID: int64(n), Tenant: tenantID, Name: name, Enabled: enabled,
		PublicKey: store.Key{n},
		IPv4:      netip.AddrFrom4([4]byte{100, 64, 0, n}),
		IPv6:      netip.AddrFrom16([16]byte{0xfd, 0, 0xaa, 0xaa, 0xbb, 0xbb, 12: 100, 13: 64, 14: 0, 15: n}),
	}
}

// ipv4Packet builds a minimal IPv4/UDP packet at offset 16 of a buffer, as wireguard-go hands them.
func ipv4Packet(src, dst netip.Addr) []byte {
	b := make([]byte, 16+28)
	p := b[16:]
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], 28)
	p[8] = 64
	p[9] = protoUDP
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	return b
}

func ipv6Packet(src, dst netip.Addr) []byte {
	b := make([]byte, 16+48)
	p := b[16:]
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], 8)
	p[6] = protoUDP
	p[7] = 64
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	return b
}

// allowAll is a policy that lets every flow through, for tests of routing alone.
const allowAll = "default allow\n"

// newTestTun returns tenant 1's packet path over peers, with every tenant's policy set to
// policy (allowAll when empty) and the internet routes every tenant gets by default.
func newTestTun(t testing.TB, peers []plane.Peer, policy string, routes ...plane.Route) (*tunDevice, *testExits) {
	t.Helper()
	td := newTestPath(t, peers, policy, 2, []int64{1}, routes...).tuns[1]
	ex := &testExits{}
	td.setExits(&ex.local, &ex.v4, &ex.v6)
	return td, ex
}

// testPath is the packet path of a few tenants: one snapshot and one firewall, and the
// tenants' devices.
type testPath struct {
	snap   *atomic.Pointer[snapshot]
	filter *firewall.Filter
	tuns   map[int64]*tunDevice
}

// newTestPath builds the packet path of tenants 1 to tenants (named t1, t2, …) over peers,
// with every tenant's policy set to policy (allowAll when empty) and the internet routes every
// tenant gets by default, then routes. The tenants in devices get a device, closed when the
// test ends, whose exits are not set; the others have none.
func newTestPath(t testing.TB, peers []plane.Peer, policy string, tenants int, devices []int64, routes ...plane.Route) *testPath {
	t.Helper()
	if policy == "" {
		policy = allowAll
	}
	filter, err := firewall.New(firewall.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp := &testPath{snap: new(atomic.Pointer[snapshot]), filter: filter, tuns: map[int64]*tunDevice{}}
	d := desired{peers: peers, tuns: tp.tuns}
	byTenant := map[int64][]plane.Peer{}
	for _, p := range peers {
		byTenant[p.Tenant] = append(byTenant[p.Tenant], p)
	}
	for id := int64(1); id <= int64(tenants); id++ {
		d.tenants = append(d.tenants, plane.Tenant{ID: id, Name: fmt.Sprint("t", id)})
		d.routes = append(d.routes,
			plane.Route{Tenant: id, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Via: "internet"},
			plane.Route{Tenant: id, Prefix: netip.MustParsePrefix("::/0"), Via: "internet"})
		view := plane.PolicyView(byTenant[id])
		rs, err := compileView(policy, &view)
		if rs == nil {
			t.Fatal(err) // unresolved names (a group only one tenant has) are fine
		}
		filter.SetRuleSet(id, rs)
	}
	d.routes = append(d.routes, routes...)
	for _, id := range devices {
		td := newTunDevice(fmt.Sprint("pgtest", id), 1420, id, tp.snap, filter)
		tp.tuns[id] = td
		t.Cleanup(func() { td.Close() })
	}
	tp.snap.Store(newSnapshot(d, testOverlay))
	return tp
}

func TestTunRouting(t *testing.T) {
	a1 := testPeer(1, "acme", "a1", 2, true)
	a2 := testPeer(1, "acme", "a2", 3, true)
	aOff := testPeer(1, "acme", "off", 4, false)
	b1 := testPeer(2, "bravo", "b1", 5, true)
	internet4 := netip.MustParseAddr("198.51.100.2")
	internet6 := netip.MustParseAddr("2001:db8:1::2")
	tests := []struct {
		name    string
		pkt     []byte
		exit    string     // the exit handed the packet (testExits.got): local, v4 or v6
		hairpin bool       // queued back towards a peer
		drop    dropReason // when neither
	}{
		{"v4 to internet", ipv4Packet(a1.IPv4, internet4), "v4", false, 0},
		{"v6 to internet", ipv6Packet(a1.IPv6, internet6), "v6", false, 0},
		{"v4 to gateway", ipv4Packet(a1.IPv4, testOverlay.Gateway4), "local", false, 0},
		{"v6 to gateway", ipv6Packet(a1.IPv6, testOverlay.Gateway6), "local", false, 0},
		{"same tenant v4", ipv4Packet(a1.IPv4, a2.IPv4), "", true, 0},
		{"same tenant v6", ipv6Packet(a1.IPv6, a2.IPv6), "", true, 0},
		{"other tenant v4", ipv4Packet(a1.IPv4, b1.IPv4), "", false, dropCrossTenant},
		{"peer of another tenant as source", ipv6Packet(b1.IPv6, a2.IPv6), "", false, dropUnknownSource},
		{"disabled peer as destination", ipv4Packet(a1.IPv4, aOff.IPv4), "", false, dropNoRoute},
		{"unassigned overlay address", ipv4Packet(a1.IPv4, netip.MustParseAddr("100.64.9.9")), "", false, dropNoRoute},
		{"disabled peer as source", ipv4Packet(aOff.IPv4, internet4), "", false, dropUnknownSource},
		{"unknown source", ipv4Packet(netip.MustParseAddr("10.0.0.1"), internet4), "", false, dropUnknownSource},
		{"truncated", []byte{16: 0x45, 0, 0}, "", false, dropMalformed},
		{"empty", make([]byte, 16), "", false, dropMalformed},
		{"version 5", append(make([]byte, 16), 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), "", false, dropMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td, ex := newTestTun(t, []plane.Peer{a1, a2, aOff, b1}, "")
			n, err := td.Write([][]byte{tc.pkt}, 16)
			if n != 1 || err != nil {
				t.Fatalf("Write = %d, %v; want 1, nil", n, err)
			}
			if got := ex.got(); got != tc.exit {
				t.Errorf("exits that got it: %q, want %q", got, tc.exit)
			}
			if got := td.out.len() == 1; got != tc.hairpin {
				t.Errorf("hairpinned = %v, want %v", got, tc.hairpin)
			}
			if tc.exit == "" && !tc.hairpin && td.drops[tc.drop].Load() != 1 {
				t.Errorf("drops = %v, want one %v", td.dropCounts(), tc.drop)
			}
		})
	}
}

func TestTunReadBatches(t *testing.T) {
	td, _ := newTestTun(t, nil, "")
	for i := range 5 {
		td.enqueue([][]byte{{0x45, byte(i)}})
	}
	bufs := make([][]byte, 3)
	for i := range bufs {
		bufs[i] = make([]byte, 100)
	}
	sizes := make([]int, 3)
	n, err := td.Read(bufs, sizes, 16)
	if err != nil || n != 3 {
		t.Fatalf("Read = %d, %v; want 3, nil", n, err)
	}
	for i := range n {
		if sizes[i] != 2 || bufs[i][17] != byte(i) {
			t.Errorf("packet %d = %v (size %d)", i, bufs[i][16:18], sizes[i])
		}
	}
	n, _ = td.Read(bufs, sizes, 16)
	if n != 2 {
		t.Fatalf("second Read = %d, want 2", n)
	}
	td.Close()
	if _, err := td.Read(bufs, sizes, 16); err == nil {
		t.Fatal("Read after Close succeeded")
	}
	td.enqueue([][]byte{{0x45}}) // must not block after Close
}

func TestTunWriteAllocs(t *testing.T) {
	a1 := testPeer(1, "acme", "a1", 2, true)
	td, _ := newTestTun(t, []plane.Peer{a1}, "")
	td.setExits(discardExit{}, discardExit{}, discardExit{})
	bufs := make([][]byte, 64)
	for i := range bufs {
		if i%2 == 0 {
			bufs[i] = ipv4Packet(a1.IPv4, netip.MustParseAddr("198.51.100.2"))
		} else {
			bufs[i] = ipv6Packet(a1.IPv6, netip.MustParseAddr("2001:db8:1::2"))
		}
	}
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	td.Write(bufs, 16) // warm the pool
	if allocs := testing.AllocsPerRun(100, func() { td.Write(bufs, 16) }); allocs != 0 {
		t.Errorf("Write allocates %.1f times per batch, want 0", allocs)
	}
}

type discardExit struct{}

func (discardExit) Write([][]byte, int) {}

func BenchmarkTunWrite(b *testing.B) {
	peers := make([]plane.Peer, 250)
	for i := range peers {
		peers[i] = testPeer(1, "acme", fmt.Sprint("p", i), byte(i+2), true)
	}
	td, _ := newTestTun(b, peers, "")
	td.setExits(discardExit{}, discardExit{}, discardExit{})
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = ipv4Packet(peers[i%len(peers)].IPv4, netip.MustParseAddr("198.51.100.2"))
	}
	td.Write(bufs, 16) // the flows are tracked from here on
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		td.Write(bufs, 16)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bufs)), "ns/packet")
}

// tcpSYN builds an IPv4 TCP SYN at offset 16.
func tcpSYN(src, dst netip.Addr, dport uint16) []byte {
	b := make([]byte, 16+40)
	p := b[16:]
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], 40)
	p[8] = 64
	p[9] = 6
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], 40000)
	binary.BigEndian.PutUint16(p[22:], dport)
	p[32] = 5 << 4
	p[33] = 0x02 // SYN
	return b
}

func TestTunPolicyAndSites(t *testing.T) {
	alice := testPeer(1, "acme", "alice", 2, true)
	alice.Groups = []string{"eng"}
	bob := testPeer(1, "acme", "bob", 3, true)
	office := testPeer(1, "acme", "office-gw", 4, true)
	office.Site, office.SitePrefixes = "office", []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}
	lab := testPeer(1, "acme", "lab-gw", 6, false) // a disabled connector
	lab.Site, lab.SitePrefixes = "lab", []netip.Prefix{netip.MustParsePrefix("10.20.0.0/24")}
	carolSite := testPeer(2, "bravo", "bravo-gw", 5, true)
	carolSite.Site, carolSite.SitePrefixes = "office", []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}
	policy := `default deny
allow group:eng -> 198.51.100.2 tcp 80
allow any -> site:office tcp 80
`
	web := netip.MustParseAddr("198.51.100.2")
	lanHost := netip.MustParseAddr("10.10.0.2")
	tests := []struct {
		name    string
		pkt     []byte
		exit    string // the exit handed the packet (testExits.got)
		hairpin bool
	}{
		{"eng to web :80", tcpSYN(alice.IPv4, web, 80), "v4", false},
		{"eng to web :22", tcpSYN(alice.IPv4, web, 22), "", false},
		{"not eng to web :80", tcpSYN(bob.IPv4, web, 80), "", false},
		{"to own site :80", tcpSYN(bob.IPv4, lanHost, 80), "", true},
		{"to own site :22", tcpSYN(bob.IPv4, lanHost, 22), "", false},
		// No site route: it takes the default route to the internet, where no rule allows it.
		{"site without a route", tcpSYN(alice.IPv4, netip.MustParseAddr("10.30.0.1"), 80), "", false},
		{"site whose connector is disabled", tcpSYN(alice.IPv4, netip.MustParseAddr("10.20.0.9"), 80), "", false},
		{"site LAN to a peer, unsolicited", tcpSYN(lanHost, alice.IPv4, 80), "", false},
		{"site LAN to the internet", tcpSYN(lanHost, web, 80), "", false},
	}
	routes := []plane.Route{
		{Tenant: 1, Prefix: netip.MustParsePrefix("10.10.0.0/24"), Via: "site:office"},
		{Tenant: 1, Prefix: netip.MustParsePrefix("10.20.0.0/24"), Via: "site:lab"},
		{Tenant: 2, Prefix: netip.MustParsePrefix("10.10.0.0/24"), Via: "site:office"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td, ex := newTestTun(t, []plane.Peer{alice, bob, office, lab, carolSite}, policy, routes...)
			td.Write([][]byte{tc.pkt}, 16)
			if got := ex.got(); got != tc.exit {
				t.Errorf("exits that got it: %q, want %q", got, tc.exit)
			}
			if got := td.out.len() == 1; got != tc.hairpin {
				t.Errorf("hairpinned = %v, want %v", got, tc.hairpin)
			}
		})
	}
}
