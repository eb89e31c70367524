package plane

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

func key(b byte) store.Key {
	var k store.Key
	for i := range k {
		k[i] = b
	}
	return k
}

// regionKey is the private key of region fra in testDesired.
var regionKey = key(7)

// testDesired is a valid Desired with a bit of everything: two tenants, a plain peer, a
// disabled one with groups and an expiry, a site connector, routes to the internet and a site.
func testDesired() *Desired {
	return &Desired{
		Format:     Format,
		Generation: 42,
		Overlay: Overlay{
			V4: netip.MustParsePrefix("100.64.0.0/10"), V6: netip.MustParsePrefix("fd12:3456:789a::/48"),
			Gateway4: netip.MustParseAddr("100.64.0.1"), Gateway6: netip.MustParseAddr("fd12:3456:789a::1"),
		},
		Tenants: []Tenant{
			{ID: 1, Name: "acme", Policy: "default deny\nallow group:eng -> site:office\n", MaxFlowsPerPeer: 16,
				DNS: TenantDNS{Zones: []DNSZone{{Name: "corp.example", Servers: []netip.AddrPort{netip.MustParseAddrPort("10.10.0.53:53")}},
					{Name: ".", Servers: []netip.AddrPort{netip.MustParseAddrPort("10.10.0.53:53"), netip.MustParseAddrPort("[fd00:10::53]:5353")}}},
					Upstreams: []DNSUpstream{{Addr: netip.MustParseAddrPort("9.9.9.9:853"), TLSName: "dns.quad9.net"},
						{Addr: netip.MustParseAddrPort("[2620:fe::fe]:53")}}}},
			{ID: 2, Name: "bravo", SplitTunnel: true, Regions: []string{"ams", "fra"}},
		},
		Regions: []Region{
			{Name: "ams", Endpoint: "vpn-ams.example.com:51820", PublicKey: key(8)},
			{Name: "fra", Endpoint: "[2001:db8::1]:51820", PublicKey: regionKey.PublicKey()},
			{Name: "local", Endpoint: "203.0.113.7:51820", PublicKey: key(9)},
		},
		Region:    "fra",
		RegionKey: &regionKey,
		Peers: []Peer{
			{ID: 10, Tenant: 1, Name: "laptop", PublicKey: key(1), Enabled: true,
				IPv4: netip.MustParseAddr("100.64.0.2"), IPv6: netip.MustParseAddr("fd12:3456:789a::6440:2")},
			{ID: 11, Tenant: 1, Name: "phone", PublicKey: key(2),
				IPv4: netip.MustParseAddr("100.64.0.3"), IPv6: netip.MustParseAddr("fd12:3456:789a::6440:3"),
				ExpiresAt: time.Date(2027, 3, 31, 0, 0, 0, 0, time.UTC), Groups: []string{"eng", "mobile"}},
			{ID: 12, Tenant: 1, Name: "router", PublicKey: key(3), Enabled: true,
				IPv4: netip.MustParseAddr("100.64.0.4"), IPv6: netip.MustParseAddr("fd12:3456:789a::6440:4"),
				Site: "office", SitePrefixes: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24"), netip.MustParsePrefix("fd00:10::/64")}},
			{ID: 20, Tenant: 2, Name: "laptop", PublicKey: key(4), Enabled: true,
				IPv4: netip.MustParseAddr("100.64.0.5"), IPv6: netip.MustParseAddr("fd12:3456:789a::6440:5")},
		},
		Routes: []Route{
			{Tenant: 1, Prefix: netip.MustParsePrefix("10.10.0.0/24"), Via: "site:office"},
			{Tenant: 1, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Via: ViaInternet},
			{Tenant: 2, Prefix: netip.MustParsePrefix("::/0"), Via: ViaInternet},
			{Tenant: 2, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Via: "exit:x1,exit:x2"},
		},
		Self: 3,
		Nodes: []Node{
			{ID: ControllerNode, Name: "ctl", Roles: []string{RolePoP, RoleExit}, Region: "local", BackboneEndpoint: "203.0.113.7:51821", BackboneKey: key(21)},
			{ID: 2, Name: "x1", Roles: []string{RoleExit}, BackboneEndpoint: "[2001:db8::2]:51821", BackboneKey: key(22)},
			{ID: 5, Name: "x2", Roles: []string{RoleExit}, BackboneEndpoint: "x2.example.com:51821", BackboneKey: key(23)},
		},
		PeerNodes:        []PeerNode{{Peer: 10, Node: 3}, {Peer: 20, Node: ControllerNode}},
		PeerNodesVersion: 7,
		Checks: []Check{
			{ID: 1, Kind: CheckHandshake, Target: "vpn-ams.example.com:51820", Every: 60, PublicKey: key(8)},
			{ID: 4, Kind: CheckDNS, Target: "www.example.com", Expect: "192.0.2.10", Every: 60},
			{ID: 5, Tenant: 2, Kind: CheckHTTP, Target: "https://www.example.com/health", Expect: "204", Every: 30},
		},
	}
}

// TestDesiredJSON: a Desired survives a JSON round trip unchanged, keys as wg(8) prints them.
func TestDesiredJSON(t *testing.T) {
	d := testDesired()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"region_key":"`+regionKey.String()+`"`) {
		t.Errorf("the JSON does not carry the region key in base64: %s", b)
	}
	d.RegionKey = nil
	if b, _ := json.Marshal(d); strings.Contains(string(b), "region_key") {
		t.Errorf("a Desired without a region key names one: %s", b)
	}
	d.RegionKey = &regionKey
	if !strings.Contains(string(b), `"public_key":"`+key(1).String()+`"`) {
		t.Errorf("the JSON does not carry keys in base64: %s", b)
	}
	var back Desired
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, d) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", back, *d)
	}
	if err := back.Validate(); err != nil {
		t.Errorf("the round-tripped state does not validate: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"peers":[{"public_key":"short"}]}`), &back); err == nil {
		t.Error("a malformed key was accepted")
	}
}

// TestReportJSON: a Report survives a JSON round trip unchanged.
func TestReportJSON(t *testing.T) {
	r := Report{
		Format: Format, Generation: 41, ApplyError: "tenant acme: configure device: EMFILE", Failed: 42,
		Node: NodeStatus{Name: "pop-1", Version: "1.0", Region: "fra", StartedAt: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC),
			Interface: "popgate0", ListenPort: 51820, MTU: 1420, ExitMode: "userspace", Drops: map[string]uint64{"no_peer": 3},
			ExitSockets: 2, ExitSocketBudget: 1000,
			Handshakes: HandshakeStatus{Initiations: 9, Routed: 7, CookieReplies: 1, UnderLoad: true, Queued: 1, Drops: map[string]uint64{"bad_mac1": 1}}},
		Peers: []PeerState{{PublicKey: key(1), Online: true, Endpoint: "192.0.2.1:4000",
			LastHandshake: time.Date(2026, 12, 1, 9, 0, 0, 5, time.UTC), RxBytes: 1, TxBytes: 2, RxPackets: 3, TxPackets: 4}},
		Tenants: []TenantState{{ID: 1, Flows: 5, ExitTCP: 1, ExitUDP: 2, ExitICMP: 3,
			Drops: map[string]uint64{"from_peer.policy": 1}, Evicted: map[string]uint64{"conntrack": 1},
			Rules: []RuleStat{{Line: 1, Rule: "default deny", Hits: 9}}}},
		Links: []LinkState{{Node: 1, Name: "x1", State: LinkUp, RTT: 1500 * time.Microsecond, Loss: 0.01, Since: time.Date(2026, 12, 1, 8, 0, 1, 0, time.UTC), Ups: 2, Downs: 1},
			{Node: 2, State: LinkUnknown}},
		Checks: []CheckResult{{Check: 4, Minute: time.Date(2026, 12, 1, 9, 1, 0, 0, time.UTC), OK: 3, Failed: 1,
			LatencyP50: 4 * time.Millisecond, LatencyMax: 9 * time.Millisecond, Error: "timeout", Detail: "192.0.2.10"}},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", back, r)
	}
}

func TestDesiredValidate(t *testing.T) {
	if err := testDesired().Validate(); err != nil {
		t.Fatalf("a valid state: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(d *Desired)
		want   string
	}{
		{"another format", func(d *Desired) { d.Format = 2 }, "format 2, this node reads format 1"},
		{"no overlay", func(d *Desired) { d.Overlay = Overlay{} }, "overlay IPv4 prefix invalid Prefix is not"},
		{"swapped overlay", func(d *Desired) { d.Overlay.V4, d.Overlay.V6 = d.Overlay.V6, d.Overlay.V4 }, "is not a masked IPv4 prefix"},
		{"gateway outside", func(d *Desired) { d.Overlay.Gateway4 = netip.MustParseAddr("10.0.0.1") }, "gateway address 10.0.0.1 is not a host of the overlay 100.64.0.0/10"},
		{"tenant id 0", func(d *Desired) { d.Tenants[1].ID = 0 }, `tenant "bravo": id 0 is not a unique positive number`},
		{"tenant id twice", func(d *Desired) { d.Tenants[1].ID = 1 }, `tenant "bravo": id 1 is not a unique`},
		{"tenant name twice", func(d *Desired) { d.Tenants[1].Name = "acme" }, `tenant "acme" is there twice`},
		{"tenant name", func(d *Desired) { d.Tenants[1].Name = "Bravo\n" }, `tenant 2: tenant name "Bravo\n" is invalid`},
		{"flow bound", func(d *Desired) { d.Tenants[0].MaxFlows = -1 }, `tenant "acme": flow bounds 16 per peer, -1 in all`},
		{"private DNS upstream", func(d *Desired) { d.Tenants[0].DNS.Upstreams[1].Addr = netip.MustParseAddrPort("10.0.0.53:53") },
			`tenant "acme": DNS upstream "10.0.0.53:53": 10.0.0.53 is not a public address`},
		{"DNS upstream twice", func(d *Desired) { d.Tenants[0].DNS.Upstreams[1] = d.Tenants[0].DNS.Upstreams[0] },
			`tenant "acme": DNS upstream tls://dns.quad9.net@9.9.9.9:853 is there twice`},
		{"DNS upstream's TLS name", func(d *Desired) { d.Tenants[0].DNS.Upstreams[0].TLSName = "DNS.quad9.net" },
			`tenant "acme": DNS upstream tls://DNS.quad9.net@9.9.9.9:853 is not written as the store writes it`},
		{"DNS upstream port 0", func(d *Desired) { d.Tenants[0].DNS.Upstreams[0].Addr = netip.MustParseAddrPort("9.9.9.9:0") },
			`tenant "acme": DNS upstream "tls://dns.quad9.net@9.9.9.9:0": port 0`},
		{"peer id twice", func(d *Desired) { d.Peers[1].ID = 10 }, `peer "phone" (id 10) of tenant 1: the id is not a unique`},
		{"peer of no tenant", func(d *Desired) { d.Peers[3].Tenant = 3 }, `peer "laptop" (id 20) of tenant 3: there is no such tenant`},
		{"peer name", func(d *Desired) { d.Peers[0].Name = "a\x00b" }, `peer name "a\x00b" is invalid`},
		{"zero key", func(d *Desired) { d.Peers[0].PublicKey = store.Key{} }, "public key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= is zero"},
		{"key twice", func(d *Desired) { d.Peers[3].PublicKey = key(1) }, "is zero or another peer's too"},
		{"address outside", func(d *Desired) { d.Peers[0].IPv4 = netip.MustParseAddr("10.0.0.2") }, "IPv4 address 10.0.0.2 is not a free address of the overlay 100.64.0.0/10"},
		{"gateway's address", func(d *Desired) { d.Peers[0].IPv4 = d.Overlay.Gateway4 }, "IPv4 address 100.64.0.1 is not a free"},
		{"address twice", func(d *Desired) { d.Peers[3].IPv6 = d.Peers[0].IPv6 }, "IPv6 address fd12:3456:789a::6440:2 is not a free"},
		{"IPv6 in the IPv4 field", func(d *Desired) { d.Peers[0].IPv4 = d.Peers[0].IPv6 }, "IPv4 address fd12:3456:789a::6440:2 is not"},
		{"group", func(d *Desired) { d.Peers[1].Groups = []string{"-x"} }, `group name "-x" is invalid`},
		{"site without prefixes", func(d *Desired) { d.Peers[2].SitePrefixes = nil }, `a site needs its prefixes and prefixes need a site (site "office", 0 prefixes)`},
		{"prefixes without site", func(d *Desired) { d.Peers[0].SitePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }, `(site "", 1 prefixes)`},
		{"site twice", func(d *Desired) { d.Peers[0].Site, d.Peers[0].SitePrefixes = "office", d.Peers[2].SitePrefixes }, `the tenant has two connectors of site "office"`},
		{"unmasked site prefix", func(d *Desired) { d.Peers[2].SitePrefixes[0] = netip.MustParsePrefix("10.10.0.1/24") }, "site prefix 10.10.0.1/24: has host bits set (10.10.0.0/24)"},
		{"DNS zone name", func(d *Desired) { d.Tenants[0].DNS.Zones[0].Name = "Corp.example" }, `tenant "acme": DNS zone "Corp.example" is not a unique lower-case zone`},
		{"DNS zone twice", func(d *Desired) { d.Tenants[0].DNS.Zones[1].Name = "corp.example" }, `DNS zone "corp.example" is not a unique`},
		{"DNS zone without servers", func(d *Desired) { d.Tenants[0].DNS.Zones[0].Servers = nil }, `DNS zone "corp.example" has 0 servers, not 1 to 4`},
		{"DNS zone server", func(d *Desired) { d.Tenants[0].DNS.Zones[0].Servers[0] = netip.AddrPort{} }, `DNS zone "corp.example": DNS server invalid AddrPort`},
		{"route of no tenant", func(d *Desired) { d.Routes[0].Tenant = 9 }, "route 10.10.0.0/24 of tenant 9: there is no such tenant"},
		{"route twice", func(d *Desired) { d.Routes[1].Prefix = d.Routes[0].Prefix }, "the tenant has two routes for the prefix"},
		{"route via", func(d *Desired) { d.Routes[1].Via = "exit:x1,exit:x1" }, `route 0.0.0.0/0 of tenant 1: route via "exit:x1,exit:x1" names exit "x1" twice`},
		{"route via nowhere", func(d *Desired) { d.Routes[1].Via = "" }, `route via "" is invalid`},
		{"self too high", func(d *Desired) { d.Self = MaxNodeID + 1 }, "self: node id 268435455 is above 268435454"},
		{"node id 0", func(d *Desired) { d.Nodes[1].ID = 0 }, `node "x1": id 0 is not between 1 and 268435454`},
		{"node id twice", func(d *Desired) { d.Nodes[1].ID = 1 }, `node "x1": id 1 is there twice`},
		{"node is self", func(d *Desired) { d.Nodes[1].ID = 3 }, `node "x1": id 3 is there twice (or is this node's own)`},
		{"node zero key", func(d *Desired) { d.Nodes[1].BackboneKey = store.Key{} }, `node "x1": backbone key`},
		{"node key twice", func(d *Desired) { d.Nodes[2].BackboneKey = key(22) }, "is zero or another node's too"},
		{"node name", func(d *Desired) { d.Nodes[1].Name = "X1" }, `node 2: node name "X1" is invalid`},
		{"node role", func(d *Desired) { d.Nodes[1].Roles = []string{"controller"} }, `node "x1": roles ["controller"] are not among`},
		{"node role twice", func(d *Desired) { d.Nodes[1].Roles = []string{"exit", "exit"} }, `without duplicates`},
		{"node endpoint", func(d *Desired) { d.Nodes[1].BackboneEndpoint = "x1" }, `node "x1": backbone endpoint "x1" is not host:port`},
		{"node region", func(d *Desired) { d.Nodes[1].Region = "FRA" }, `node "x1": region name "FRA" is invalid`},
		{"peer node of no peer", func(d *Desired) { d.PeerNodes[0].Peer = 99 }, "peer node: peer 99 is not a peer of the state"},
		{"peer at two nodes", func(d *Desired) { d.PeerNodes[1].Peer = 10 }, "peer node: peer 10 is at two nodes"},
		{"peer at no node", func(d *Desired) { d.PeerNodes[1].Node = 4 }, "peer 20 is at node 4, which is neither this node nor one of its nodes"},
		{"peer at self without a backbone", func(d *Desired) { d.Self = 0 }, "peer 10 is at node 3"},
		{"route to a bad site", func(d *Desired) { d.Routes[0].Via = "site:" }, `site name "" is invalid`},
		{"route prefix", func(d *Desired) { d.Routes[2].Prefix = netip.Prefix{} }, "not a valid prefix"},
		{"region name", func(d *Desired) { d.Regions[0].Name = "AMS" }, `region 0: region name "AMS" is invalid`},
		{"region twice", func(d *Desired) { d.Regions[0].Name = "fra" }, `region "fra" is there twice`},
		{"region endpoint", func(d *Desired) { d.Regions[0].Endpoint = "ams" }, `region "ams": endpoint "ams" is not host:port`},
		{"region key twice", func(d *Desired) { d.Regions[2].PublicKey = key(8) }, `region "local": public key`},
		{"region zero key", func(d *Desired) { d.Regions[0].PublicKey = store.Key{} }, `is zero or another region's too`},
		{"for an unknown region", func(d *Desired) { d.Region, d.RegionKey = "par", nil }, `region "par", which is not among its regions`},
		{"another region's key", func(d *Desired) { d.Region = "ams" }, `the region key does not belong to region "ams"`},
		{"a key without a region", func(d *Desired) { d.Region = "" }, `the region key does not belong to region ""`},
		{"tenant of an unknown region", func(d *Desired) { d.Tenants[1].Regions = []string{"fra", "par"} }, `tenant "bravo": its regions ["fra" "par"] are not`},
		{"tenant regions unsorted", func(d *Desired) { d.Tenants[1].Regions = []string{"fra", "ams"} }, `are not sorted`},
		{"tenant not allowed here", func(d *Desired) { d.Tenants[1].Regions = []string{"ams"} }, `tenant "bravo" is not allowed in region "fra"`},
		{"check id twice", func(d *Desired) { d.Checks[1].ID = 1 }, `check 1 (dns "www.example.com"): the id is not a unique`},
		{"check of no tenant", func(d *Desired) { d.Checks[2].Tenant = 9 }, `tenant 9 is not a tenant of the state`},
		{"check too often", func(d *Desired) { d.Checks[1].Every = 0 }, `every 0s is not between 1s and 1h0m0s`},
		{"check kind", func(d *Desired) { d.Checks[1].Kind = "ping" }, `check kind "ping" is unknown`},
		{"check target", func(d *Desired) { d.Checks[2].Target = "gopher://x/" }, `is not an http or https URL`},
		{"tenant check of a private address", func(d *Desired) { d.Checks[2].Target = "http://10.0.0.1/" }, `10.0.0.1 is not a public address`},
		{"handshake endpoint", func(d *Desired) { d.Checks[0].Target = "ams" }, `endpoint "ams" is not host:port`},
		{"handshake key", func(d *Desired) { d.Checks[0].PublicKey = store.Key{} }, `no public key`},
		{"too many checks", func(d *Desired) {
			d.Checks = make([]Check, MaxChecks+1)
		}, `1001 checks, at most 1000`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDesired()
			tc.change(d)
			err := d.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
	var nilDesired *Desired
	if err := nilDesired.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil: %v", err)
	}
}

func TestPeerServed(t *testing.T) {
	at := time.Date(2027, 3, 31, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		p    Peer
		now  time.Time
		want bool
	}{
		{Peer{Enabled: true}, at, true},
		{Peer{Enabled: false}, at, false},
		{Peer{Enabled: true, ExpiresAt: at}, at.Add(-time.Nanosecond), true},
		{Peer{Enabled: true, ExpiresAt: at}, at, false},
		{Peer{Enabled: false, ExpiresAt: at}, at.Add(-time.Hour), false},
	} {
		if got := tc.p.Served(tc.now); got != tc.want {
			t.Errorf("%+v at %v: Served = %v", tc.p, tc.now, got)
		}
	}
}

// TestParseVia: plane's ParseVia is the store's, which the data plane reads routes with.
func TestParseVia(t *testing.T) {
	v, err := ParseVia("exit:x1,exit:x2")
	if err != nil || !reflect.DeepEqual(v.Exits, []string{"x1", "x2"}) || v.Internet || v.Site != "" {
		t.Errorf("ParseVia = %+v, %v", v, err)
	}
	if _, err := ParseVia("exit:x1,exit:x2,exit:x3,exit:x4,exit:x5,exit:x6,exit:x7,exit:x8,exit:x9"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("nine exits: %v", err)
	}
}

// FuzzParseVia: an accepted via prints back as given, names one kind, and at most 8 distinct
// exits; a Desired whose route has it validates.
func FuzzParseVia(f *testing.F) {
	for _, s := range []string{"internet", "site:office", "exit:x1", "exit:x1,exit:x2", "exit:x1,,exit:x2", "exit:a,site:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVia(s)
		if err != nil {
			return
		}
		if v.String() != s {
			t.Fatalf("ParseVia(%q).String() = %q", s, v.String())
		}
		if len(v.Exits) > 8 || (v.Internet && (v.Site != "" || len(v.Exits) > 0)) || (v.Site != "" && len(v.Exits) > 0) {
			t.Fatalf("ParseVia(%q) = %+v", s, v)
		}
		d := testDesired()
		d.Routes[1].Via = s
		if err := d.Validate(); err != nil {
			t.Fatalf("a route via %q: %v", s, err)
		}
	})
}

// TestNodeAddrs: node n has 100.127.0.0 + n and the IPv6 address that goes with it, and
// the address says whose it is; IDs without an address have none.
func TestNodeAddrs(t *testing.T) {
	ov := testDesired().Overlay
	b4, b6 := ov.NodeBlocks()
	if b4.String() != "100.127.0.0/16" || b6.String() != "fd12:3456:789a::647f:0/112" {
		t.Errorf("blocks %s, %s", b4, b6)
	}
	for _, c := range []struct {
		id     uint32
		v4, v6 string
	}{
		{1, "100.127.0.1", "fd12:3456:789a::647f:1"},
		{258, "100.127.1.2", "fd12:3456:789a::647f:102"},
		{MaxNodeAddrID, "100.127.255.254", "fd12:3456:789a::647f:fffe"},
		{0, "invalid IP", "invalid IP"},
		{MaxNodeAddrID + 1, "invalid IP", "invalid IP"},
	} {
		v4, v6 := ov.NodeAddrs(c.id)
		if v4.String() != c.v4 || v6.String() != c.v6 {
			t.Errorf("NodeAddrs(%d) = %s, %s, want %s, %s", c.id, v4, v6, c.v4, c.v6)
		}
		if !v4.IsValid() {
			continue
		}
		for _, a := range []netip.Addr{v4, v6} {
			if id, ok := ov.NodeOf(a); !ok || id != c.id {
				t.Errorf("NodeOf(%s) = %d, %v, want %d", a, id, ok, c.id)
			}
		}
	}
	for _, a := range []string{"100.127.0.0", "100.127.255.255", "100.126.255.255", "100.64.0.1", "fd12:3456:789a::6440:2", "fd12:3456:789a::647f:0", "fd12:3456:789b::647f:1", "10.0.0.1"} {
		if id, ok := ov.NodeOf(netip.MustParseAddr(a)); ok {
			t.Errorf("NodeOf(%s) = %d, want none", a, id)
		}
	}
	if AddrID(0) != ControllerNode || AddrID(7) != 7 {
		t.Errorf("AddrID(0) = %d, AddrID(7) = %d", AddrID(0), AddrID(7))
	}
	// An overlay without the block (a test's small one) has no node addresses.
	small := Overlay{V4: netip.MustParsePrefix("100.64.0.0/24"), V6: ov.V6}
	if v4, _ := small.NodeAddrs(1); v4.IsValid() {
		t.Errorf("an overlay without the block gave node 1 %s", v4)
	}
}
