package firewall

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/store/clocktest"
)

// newFilterClock returns a settable clock for Config.Now (its Elapsed), an hour in: nothing
// may assume the filter's clock starts at zero.
func newFilterClock() *clocktest.Clock {
	c := clocktest.New(time.Time{})
	c.Advance(time.Hour)
	return c
}

const filterPolicy = `default deny
allow group:eng -> any
allow any -> 10.0.0.0/8 udp 53
allow site:office -> peer:web tcp 22
allow peer:laptop -> any icmp
`

func newTestFilter(t testing.TB, cfg Config, policy string) (*Filter, *clocktest.Clock) {
	t.Helper()
	clock := newFilterClock()
	cfg.Now = clock.Elapsed
	f, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.SetRuleSet(1, mustCompile(t, policy, testView()))
	return f, clock
}

type step struct {
	name   string
	p      pkt
	dir    Direction
	want   Verdict
	reason Reason
}

func runSteps(t *testing.T, f *Filter, tenant int64, steps []step) {
	t.Helper()
	for _, s := range steps {
		var p Packet
		if err := p.Parse(s.p.build()); err != nil {
			t.Fatalf("%s: Parse: %v", s.name, err)
		}
		v, r := f.Check(tenant, &p, s.dir)
		if v != s.want || r != s.reason {
			t.Errorf("%s: Check = %s %s, want %s %s", s.name, v, r, s.want, s.reason)
		}
	}
}

// Packets of the flows below. alice is in eng; laptop is not.
var (
	aliceSyn    = pkt{src: "100.64.0.1", dst: "10.9.9.9", proto: ipprotoTCP, sport: 40000, dport: 443, flags: TCPSyn}
	serverSyn   = pkt{src: "10.9.9.9", dst: "100.64.0.1", proto: ipprotoTCP, sport: 443, dport: 40000, flags: TCPSyn | TCPAck}
	aliceAck    = pkt{src: "100.64.0.1", dst: "10.9.9.9", proto: ipprotoTCP, sport: 40000, dport: 443, flags: TCPAck}
	serverAck   = pkt{src: "10.9.9.9", dst: "100.64.0.1", proto: ipprotoTCP, sport: 443, dport: 40000, flags: TCPAck}
	aliceFin    = pkt{src: "100.64.0.1", dst: "10.9.9.9", proto: ipprotoTCP, sport: 40000, dport: 443, flags: TCPFin | TCPAck}
	serverFin   = pkt{src: "10.9.9.9", dst: "100.64.0.1", proto: ipprotoTCP, sport: 443, dport: 40000, flags: TCPFin | TCPAck}
	serverRst   = pkt{src: "10.9.9.9", dst: "100.64.0.1", proto: ipprotoTCP, sport: 443, dport: 40000, flags: TCPRst}
	laptopDNS   = pkt{src: "100.64.0.3", dst: "10.0.0.53", proto: ipprotoUDP, sport: 5000, dport: 53}
	dnsReply    = pkt{src: "10.0.0.53", dst: "100.64.0.3", proto: ipprotoUDP, sport: 53, dport: 5000}
	laptopPing  = pkt{src: "100.64.0.3", dst: "1.1.1.1", proto: ipprotoICMP, icmpType: icmp4Echo, id: 7}
	pingReply   = pkt{src: "1.1.1.1", dst: "100.64.0.3", proto: ipprotoICMP, icmpType: icmp4EchoReply, id: 7}
	laptopPing6 = pkt{src: "fd7a::3", dst: "2001:db8::1", proto: ipprotoICMPv6, icmpType: icmp6Echo, id: 8}
	pingReply6  = pkt{src: "2001:db8::1", dst: "fd7a::3", proto: ipprotoICMPv6, icmpType: icmp6EchoReply, id: 8}
)

func TestFilterStateful(t *testing.T) {
	f, _ := newTestFilter(t, Config{}, filterPolicy)
	runSteps(t, f, 1, []step{
		{"unsolicited SYN-ACK", serverSyn, ToPeer, Drop, ReasonInvalid},
		{"unsolicited SYN to alice", pkt{src: "10.9.9.9", dst: "100.64.0.1", proto: ipprotoTCP, sport: 443, dport: 40000, flags: TCPSyn}, ToPeer, Drop, ReasonDefaultDeny},
		{"alice SYN", aliceSyn, FromPeer, Accept, ReasonNone},
		{"server SYN-ACK", serverSyn, ToPeer, Accept, ReasonNone},
		{"alice ACK", aliceAck, FromPeer, Accept, ReasonNone},
		{"server data", serverAck, ToPeer, Accept, ReasonNone},
		{"SYN+FIN is never valid", pkt{src: "100.64.0.1", dst: "10.9.9.9", proto: ipprotoTCP, sport: 40000, dport: 443, flags: TCPSyn | TCPFin}, FromPeer, Drop, ReasonInvalid},
		{"null flags are never valid", pkt{src: "100.64.0.1", dst: "10.9.9.9", proto: ipprotoTCP, sport: 40000, dport: 443}, FromPeer, Drop, ReasonInvalid},
		{"mid-stream to a peer that may not reach the server", pkt{src: "10.9.9.9", dst: "100.64.0.3", proto: ipprotoTCP, sport: 443, dport: 40001, flags: TCPAck}, ToPeer, Drop, ReasonDefaultDeny},
		{"alice FIN", aliceFin, FromPeer, Accept, ReasonNone},
		{"server FIN", serverFin, ToPeer, Accept, ReasonNone},
		{"last ACK", aliceAck, FromPeer, Accept, ReasonNone},
		{"laptop to the internet", pkt{src: "100.64.0.3", dst: "1.1.1.1", proto: ipprotoTCP, sport: 1, dport: 80, flags: TCPSyn}, FromPeer, Drop, ReasonDefaultDeny},
		{"laptop DNS", laptopDNS, FromPeer, Accept, ReasonNone},
		{"DNS reply", dnsReply, ToPeer, Accept, ReasonNone},
		{"DNS to another port of laptop", pkt{src: "10.0.0.53", dst: "100.64.0.3", proto: ipprotoUDP, sport: 53, dport: 5001}, ToPeer, Drop, ReasonDefaultDeny},
		{"echo reply nobody asked for", pingReply, ToPeer, Drop, ReasonInvalid},
		{"laptop ping", laptopPing, FromPeer, Accept, ReasonNone},
		{"ping reply", pingReply, ToPeer, Accept, ReasonNone},
		{"reply with another id", pkt{src: "1.1.1.1", dst: "100.64.0.3", proto: ipprotoICMP, icmpType: icmp4EchoReply, id: 8}, ToPeer, Drop, ReasonInvalid},
		{"laptop ping6", laptopPing6, FromPeer, Accept, ReasonNone},
		{"ping6 reply", pingReply6, ToPeer, Accept, ReasonNone},
		{"site to web ssh", pkt{src: "10.10.1.1", dst: "100.64.0.10", proto: ipprotoTCP, sport: 5555, dport: 22, flags: TCPSyn}, ToPeer, Accept, ReasonNone},
		{"web answers", pkt{src: "100.64.0.10", dst: "10.10.1.1", proto: ipprotoTCP, sport: 22, dport: 5555, flags: TCPSyn | TCPAck}, FromPeer, Accept, ReasonNone},
		{"web to the site on its own", pkt{src: "100.64.0.10", dst: "10.10.1.1", proto: ipprotoTCP, sport: 22, dport: 5556, flags: TCPSyn}, FromPeer, Drop, ReasonDefaultDeny},
		{"GRE from alice", pkt{src: "100.64.0.1", dst: "192.0.2.1", proto: 47, payload: 4}, FromPeer, Accept, ReasonNone},
		{"GRE back", pkt{src: "192.0.2.1", dst: "100.64.0.1", proto: 47, payload: 4}, ToPeer, Accept, ReasonNone},
		{"router advertisement-like ICMP from laptop", pkt{src: "100.64.0.3", dst: "1.1.1.1", proto: ipprotoICMP, icmpType: 13}, FromPeer, Accept, ReasonNone},
		{"timestamp back is decided by the rules", pkt{src: "1.1.1.1", dst: "100.64.0.3", proto: ipprotoICMP, icmpType: 14}, ToPeer, Drop, ReasonDefaultDeny},
	})
	if _, ok := f.TenantStats(2); ok {
		t.Error("stats of a tenant without rules")
	}
	st, _ := f.TenantStats(1)
	if st.Drops["to_peer"]["default_deny"] != 4 || st.Drops["from_peer"]["invalid"] != 2 || st.Drops["to_peer"]["invalid"] != 3 {
		t.Errorf("drops = %v", st.Drops)
	}
	if st.Flows != 6 {
		t.Errorf("flows = %d, want 6", st.Flows)
	}
	// Hits of "allow group:eng -> any": the TCP and GRE flows.
	if st.Rules[0].Hits != 2 {
		t.Errorf("rule hits = %+v", st.Rules)
	}
}

// A TCP flow picked up mid-stream starts with the packet of either end: the server's data
// reaches a client that moved here from another node, when the client may reach the server.
// The flow is tracked the way the rules allow it, which a policy change re-checks.
func TestFilterMidStreamEitherEnd(t *testing.T) {
	f, _ := newTestFilter(t, Config{}, filterPolicy)
	runSteps(t, f, 1, []step{
		{"server data first", serverAck, ToPeer, Accept, ReasonNone},
		{"alice's ACK", aliceAck, FromPeer, Accept, ReasonNone},
		{"more server data", serverAck, ToPeer, Accept, ReasonNone},
		{"the server to laptop, who may not reach it", pkt{src: "10.9.9.9", dst: "100.64.0.3", proto: ipprotoTCP, sport: 443, dport: 40000, flags: TCPAck}, ToPeer, Drop, ReasonDefaultDeny},
		{"a site's ACK from port 22 to web, whom the site may reach on 22 but not the other way", pkt{src: "10.10.1.1", dst: "100.64.0.10", proto: ipprotoTCP, sport: 22, dport: 5555, flags: TCPAck}, ToPeer, Drop, ReasonDefaultDeny},
		{"web's ACK to the site's port 22 mid-stream: the site opened it", pkt{src: "100.64.0.10", dst: "10.10.1.1", proto: ipprotoTCP, sport: 22, dport: 5556, flags: TCPAck}, FromPeer, Accept, ReasonNone},
	})
	st, _ := f.TenantStats(1)
	if st.Flows != 2 {
		t.Errorf("flows = %d, want 2", st.Flows)
	}
	// One hit per decision: eng's rule for alice's flow, the site's for web's, the default
	// for the two refused.
	if h := st.Rules; h[0].Hits != 1 || h[2].Hits != 1 || h[len(h)-1].Hits != 2 {
		t.Errorf("rule hits = %+v", h)
	}
	// Under a policy that no longer lets alice reach the server (but would let the server
	// open a connection to alice's port), the flow picked up from the server's side is cut:
	// it is re-checked as alice's.
	f.SetRuleSet(1, mustCompile(t, "default deny\nallow 10.0.0.0/8 -> any tcp 40000\n", testView()))
	runSteps(t, f, 1, []step{{"server data after the change", serverAck, ToPeer, Drop, ReasonDefaultDeny}})
}

func TestFilterNoPolicy(t *testing.T) {
	f, _ := newTestFilter(t, Config{}, filterPolicy)
	runSteps(t, f, 2, []step{{"other tenant", aliceSyn, FromPeer, Drop, ReasonNoPolicy}})
	runSteps(t, f, 1, []step{{"alice SYN", aliceSyn, FromPeer, Accept, ReasonNone}})
	f.SetRuleSet(1, nil)
	runSteps(t, f, 1, []step{{"removed tenant", serverSyn, ToPeer, Drop, ReasonNoPolicy}})
	if f.RuleSet(1) != nil {
		t.Error("rule set of a removed tenant")
	}
	if n := f.Sweep(); n != 1 {
		t.Errorf("Sweep removed %d flows of the removed tenant, want 1", n)
	}
	if st := f.Stats(); st.NoTenant != 2 || st.Flows != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// Tenants never share flows: the same addresses and ports in another tenant are another flow.
func TestFilterTenantIsolation(t *testing.T) {
	f, _ := newTestFilter(t, Config{}, filterPolicy)
	f.SetRuleSet(2, mustCompile(t, "default deny\n", testView()))
	runSteps(t, f, 1, []step{{"tenant 1 SYN", aliceSyn, FromPeer, Accept, ReasonNone}})
	runSteps(t, f, 2, []step{
		{"tenant 2 reply", serverSyn, ToPeer, Drop, ReasonInvalid},
		{"tenant 2 SYN", aliceSyn, FromPeer, Drop, ReasonDefaultDeny},
	})
	runSteps(t, f, 1, []step{{"tenant 1 reply", serverSyn, ToPeer, Accept, ReasonNone}})
}

// expiry returns how long the flow of p lives from now, or -1 when it is not tracked.
func expiry(f *Filter, tenant int64, p pkt) time.Duration {
	var pk Packet
	if err := pk.Parse(p.build()); err != nil {
		panic(err)
	}
	sport, dport := pk.SrcPort, pk.DstPort
	if pk.Proto == ipprotoICMP || pk.Proto == ipprotoICMPv6 {
		sport, dport = pk.ICMPID, pk.ICMPID
	}
	k, _ := makeFlowKey(tenant, pk.Proto, pk.Src, pk.Dst, sport, dport)
	s := f.shard(k.hash(f.seed))
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.flows[k]
	if e == nil {
		return -1
	}
	return time.Duration(e.expires) - f.now()
}

func TestConntrackTimeouts(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		name  string
		steps []step
		ttl   time.Duration
	}{
		{"tcp syn sent", []step{{"syn", aliceSyn, FromPeer, Accept, 0}}, 120 * time.Second},
		{"tcp syn received", []step{{"syn", aliceSyn, FromPeer, Accept, 0}, {"syn-ack", serverSyn, ToPeer, Accept, 0}}, 60 * time.Second},
		{"tcp established", []step{{"syn", aliceSyn, FromPeer, Accept, 0}, {"syn-ack", serverSyn, ToPeer, Accept, 0}, {"ack", aliceAck, FromPeer, Accept, 0}}, 5 * day},
		{"tcp picked up mid-stream", []step{{"ack", aliceAck, FromPeer, Accept, 0}}, 5 * day},
		{"tcp fin wait", []step{{"ack", aliceAck, FromPeer, Accept, 0}, {"fin", aliceFin, FromPeer, Accept, 0}}, 120 * time.Second},
		{"tcp time wait", []step{{"ack", aliceAck, FromPeer, Accept, 0}, {"fin", serverFin, ToPeer, Accept, 0}, {"fin", aliceFin, FromPeer, Accept, 0}, {"ack", aliceAck, FromPeer, Accept, 0}}, 120 * time.Second},
		{"tcp close", []step{{"ack", aliceAck, FromPeer, Accept, 0}, {"rst", serverRst, ToPeer, Accept, 0}}, 10 * time.Second},
		{"udp unreplied", []step{{"query", laptopDNS, FromPeer, Accept, 0}, {"again", laptopDNS, FromPeer, Accept, 0}}, 30 * time.Second},
		{"udp replied", []step{{"query", laptopDNS, FromPeer, Accept, 0}, {"reply", dnsReply, ToPeer, Accept, 0}}, 120 * time.Second},
		{"icmp echo", []step{{"ping", laptopPing, FromPeer, Accept, 0}, {"pong", pingReply, ToPeer, Accept, 0}}, 30 * time.Second},
		{"other protocol", []step{{"gre", pkt{src: "100.64.0.1", dst: "192.0.2.1", proto: 47}, FromPeer, Accept, 0}}, 600 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, clock := newTestFilter(t, Config{}, filterPolicy)
			runSteps(t, f, 1, tt.steps)
			p := tt.steps[0].p
			if got := expiry(f, 1, p); got != tt.ttl {
				t.Fatalf("flow expires in %v, want %v", got, tt.ttl)
			}
			clock.Advance(tt.ttl - time.Second)
			if n := f.Sweep(); n != 0 {
				t.Fatalf("Sweep before expiry removed %d", n)
			}
			clock.Advance(time.Second)
			if n := f.Sweep(); n != 1 {
				t.Fatalf("Sweep at expiry removed %d, want 1", n)
			}
			if got := expiry(f, 1, p); got != -1 {
				t.Errorf("flow still tracked")
			}
		})
	}
}

// An expired flow is forgotten by the next packet even without a sweep: a reply then has no
// flow.
func TestConntrackExpiryOnLookup(t *testing.T) {
	f, clock := newTestFilter(t, Config{}, filterPolicy)
	runSteps(t, f, 1, []step{{"query", laptopDNS, FromPeer, Accept, 0}})
	clock.Advance(29 * time.Second)
	runSteps(t, f, 1, []step{{"reply in time", dnsReply, ToPeer, Accept, 0}})
	clock.Advance(119 * time.Second)
	runSteps(t, f, 1, []step{{"reply in time", dnsReply, ToPeer, Accept, 0}})
	clock.Advance(120 * time.Second)
	runSteps(t, f, 1, []step{{"reply too late", dnsReply, ToPeer, Drop, ReasonDefaultDeny}})
	if st := f.Stats(); st.Flows != 0 {
		t.Errorf("flows = %d", st.Flows)
	}
}

// A SYN on the ports of a closed connection starts a new one.
func TestConntrackTCPReuse(t *testing.T) {
	f, _ := newTestFilter(t, Config{}, filterPolicy)
	runSteps(t, f, 1, []step{
		{"ack", aliceAck, FromPeer, Accept, 0},
		{"rst", serverRst, ToPeer, Accept, 0},
		{"new syn", aliceSyn, FromPeer, Accept, 0},
	})
	if got := expiry(f, 1, aliceSyn); got != 120*time.Second {
		t.Errorf("reopened flow expires in %v, want the SYN_SENT 120s", got)
	}
	if st := f.Stats(); st.Flows != 1 {
		t.Errorf("flows = %d", st.Flows)
	}
}

func TestConntrackBound(t *testing.T) {
	f, clock := newTestFilter(t, Config{MaxFlows: 4, MaxFlowsPerTenant: 3}, filterPolicy)
	f.SetRuleSet(2, mustCompile(t, filterPolicy, testView()))
	udp := func(sport uint16) pkt {
		p := laptopDNS
		p.sport = sport
		return p
	}
	runSteps(t, f, 1, []step{
		{"1", udp(1), FromPeer, Accept, 0},
		{"2", udp(2), FromPeer, Accept, 0},
		{"3", udp(3), FromPeer, Accept, 0},
		{"tenant share full", udp(4), FromPeer, Drop, ReasonTenantLimit},
		{"tracked flows go on", udp(1), FromPeer, Accept, 0},
		{"and their replies", dnsReply, ToPeer, Drop, ReasonDefaultDeny}, // port 5000 is not tracked
	})
	runSteps(t, f, 2, []step{
		{"tenant 2 gets the last place", udp(1), FromPeer, Accept, 0},
		{"table full", udp(2), FromPeer, Drop, ReasonConntrackFull},
	})
	if st := f.Stats(); st.Flows != 4 || st.Refused != 1 {
		t.Errorf("stats = %+v", st)
	}
	clock.Advance(31 * time.Second)
	if n := f.Sweep(); n != 4 {
		t.Errorf("Sweep removed %d, want 4", n)
	}
	runSteps(t, f, 1, []step{{"room again", udp(4), FromPeer, Accept, 0}})
}

func TestRelatedICMP(t *testing.T) {
	f, _ := newTestFilter(t, Config{}, filterPolicy)
	// laptop's DNS query, as quoted by routers.
	query := laptopDNS.build()
	unreachable := pkt{src: "192.0.2.254", dst: "100.64.0.3", proto: ipprotoICMP, icmpType: icmp4Unreachable, icmpCode: 3, quote: query}
	tooBig6 := pkt{src: "2001:db8::fe", dst: "fd7a::3", proto: ipprotoICMPv6, icmpType: icmp6TooBig, quote: laptopPing6.build()}
	runSteps(t, f, 1, []step{
		{"unreachable before the flow", unreachable, ToPeer, Drop, ReasonUnrelatedICMP},
		{"query", laptopDNS, FromPeer, Accept, 0},
		{"unreachable for the query", unreachable, ToPeer, Accept, 0},
		{"time exceeded for the query", pkt{src: "192.0.2.254", dst: "100.64.0.3", proto: ipprotoICMP, icmpType: icmp4TimeExceed, quote: query}, ToPeer, Accept, 0},
		{"error sent to someone else", pkt{src: "192.0.2.254", dst: "100.64.0.1", proto: ipprotoICMP, icmpType: icmp4Unreachable, quote: query}, ToPeer, Drop, ReasonUnrelatedICMP},
		{"error quoting the reply, from the peer", pkt{src: "100.64.0.3", dst: "10.0.0.53", proto: ipprotoICMP, icmpType: icmp4Unreachable, icmpCode: 3, quote: dnsReply.build()}, FromPeer, Accept, 0},
		{"error quoting another flow", pkt{src: "192.0.2.254", dst: "100.64.0.3", proto: ipprotoICMP, icmpType: icmp4Unreachable, quote: udpQuote()}, ToPeer, Drop, ReasonUnrelatedICMP},
		{"error with a short quote", pkt{src: "192.0.2.254", dst: "100.64.0.3", proto: ipprotoICMP, icmpType: icmp4Unreachable, quote: query[:20]}, ToPeer, Drop, ReasonUnrelatedICMP},
		{"ping6", laptopPing6, FromPeer, Accept, 0},
		{"too big for the ping6", tooBig6, ToPeer, Accept, 0},
	})
}

func udpQuote() []byte {
	p := laptopDNS
	p.sport = 9999
	return p.build()
}

// A new rule set cuts the tracked flows it denies on their next packet and keeps the others.
func TestPolicySwap(t *testing.T) {
	f, _ := newTestFilter(t, Config{}, filterPolicy)
	runSteps(t, f, 1, []step{
		{"alice syn", aliceSyn, FromPeer, Accept, 0},
		{"server syn-ack", serverSyn, ToPeer, Accept, 0},
		{"laptop dns", laptopDNS, FromPeer, Accept, 0},
		{"laptop ping", laptopPing, FromPeer, Accept, 0},
	})
	// The new policy still allows DNS, and alice only to 10.9.0.0/16 on port 80.
	f.SetRuleSet(1, mustCompile(t, "default deny\nallow group:eng -> 10.9.0.0/16 tcp 80\nallow any -> 10.0.0.0/8 udp 53\n", testView()))
	runSteps(t, f, 1, []step{
		{"dns reply survives", dnsReply, ToPeer, Accept, 0},
		{"alice's 443 is cut, from the server's side too", serverAck, ToPeer, Drop, ReasonDefaultDeny},
		{"and stays cut", aliceAck, FromPeer, Drop, ReasonDefaultDeny},
		{"ping reply is cut", pingReply, ToPeer, Drop, ReasonDefaultDeny},
	})
	if st, _ := f.TenantStats(1); st.Flows != 1 || st.Generation != 2 || st.Rules[1].Hits != 1 {
		t.Errorf("stats = %+v", st)
	}
	// A deny rule ahead of the allow cuts with policy_deny.
	f.SetRuleSet(1, mustCompile(t, "deny peer:laptop -> any udp\nallow any -> any\n", testView()))
	runSteps(t, f, 1, []step{{"dns cut by a deny rule", laptopDNS, FromPeer, Drop, ReasonPolicyDeny}})
}

func TestFragments(t *testing.T) {
	f, clock := newTestFilter(t, Config{}, filterPolicy)
	first := laptopDNS
	first.more, first.fragID, first.payload = true, 4242, 64
	later := pkt{src: first.src, dst: first.dst, proto: ipprotoUDP, fragOff: 9, fragID: 4242, payload: 100}
	other := later
	other.fragID = 4243
	denied := pkt{src: "100.64.0.3", dst: "1.1.1.1", proto: ipprotoUDP, sport: 1, dport: 53, more: true, fragID: 5, payload: 64}
	deniedLater := pkt{src: "100.64.0.3", dst: "1.1.1.1", proto: ipprotoUDP, fragOff: 9, fragID: 5, payload: 100}
	runSteps(t, f, 1, []step{
		{"later before first", later, FromPeer, Drop, ReasonFragment},
		{"first", first, FromPeer, Accept, 0},
		{"later", later, FromPeer, Accept, 0},
		{"later again", later, FromPeer, Accept, 0},
		{"another packet's fragment", other, FromPeer, Drop, ReasonFragment},
		{"denied first", denied, FromPeer, Drop, ReasonDefaultDeny},
		{"its later fragment", deniedLater, FromPeer, Drop, ReasonFragment},
	})
	clock.Advance(61 * time.Second)
	runSteps(t, f, 1, []step{{"later after the timeout", later, FromPeer, Drop, ReasonFragment}})
	// IPv6 fragments, and a policy change in between.
	first6 := pkt{src: "fd7a::3", dst: "fd7a::1", proto: ipprotoICMPv6, icmpType: icmp6Echo, id: 1, more: true, fragID: 77, payload: 64}
	later6 := pkt{src: "fd7a::3", dst: "fd7a::1", proto: ipprotoICMPv6, fragOff: 9, fragID: 77, payload: 64}
	runSteps(t, f, 1, []step{
		{"first6", first6, FromPeer, Accept, 0},
		{"later6", later6, FromPeer, Accept, 0},
	})
	f.SetRuleSet(1, mustCompile(t, filterPolicy, testView()))
	runSteps(t, f, 1, []step{{"later6 after a policy change", later6, FromPeer, Drop, ReasonFragment}})
}

// Packets of tracked flows must not allocate: the packet path runs this for every packet.
func TestCheckAllocs(t *testing.T) {
	f, _ := newTestFilter(t, Config{}, filterPolicy)
	runSteps(t, f, 1, []step{
		{"syn", aliceSyn, FromPeer, Accept, 0},
		{"syn-ack", serverSyn, ToPeer, Accept, 0},
		{"dns", laptopDNS, FromPeer, Accept, 0},
	})
	for _, tc := range []struct {
		name string
		p    pkt
		dir  Direction
	}{{"tcp ack", aliceAck, FromPeer}, {"tcp reply", serverAck, ToPeer}, {"udp reply", dnsReply, ToPeer}} {
		var p Packet
		b := tc.p.build()
		if n := testing.AllocsPerRun(1000, func() {
			if err := p.Parse(b); err != nil {
				t.Fatal(err)
			}
			if v, r := f.Check(1, &p, tc.dir); v != Accept {
				t.Fatalf("%s: %s %s", tc.name, v, r)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per packet", tc.name, n)
		}
	}
	// Deciding a denied flow does not allocate either (its matcher scratch is pooled).
	if raceEnabled {
		return
	}
	var p Packet
	b := pkt{src: "100.64.0.3", dst: "1.1.1.1", proto: ipprotoTCP, sport: 1, dport: 80, flags: TCPSyn}.build()
	if n := testing.AllocsPerRun(1000, func() {
		_ = p.Parse(b)
		f.Check(1, &p, FromPeer)
	}); n != 0 {
		t.Errorf("denied new flow: %v allocations per packet", n)
	}
}

// Many goroutines check, swap rule sets and sweep at once (run with -race).
func TestFilterConcurrent(t *testing.T) {
	f, clock := newTestFilter(t, Config{MaxFlows: 500}, filterPolicy)
	rs := []*RuleSet{mustCompile(t, filterPolicy, testView()), mustCompile(t, "allow any -> any udp\n", testView())}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p Packet
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				q := laptopDNS
				q.sport = uint16(i % 1000)
				if i%2 == 1 {
					q = dnsReply
					q.dport = uint16(i % 1000)
				}
				if err := p.Parse(q.build()); err != nil {
					panic(err)
				}
				f.Check(int64(1+g%2), &p, FromPeer)
			}
		}()
	}
	for i := range 200 {
		f.SetRuleSet(int64(1+i%2), rs[i%2])
		clock.Advance(time.Second)
		f.Sweep()
		if i%50 == 0 {
			f.Flush(1)
			_, _ = f.TenantStats(1)
		}
	}
	close(stop)
	wg.Wait()
	if st := f.Stats(); st.Flows < 0 || st.Flows > 500 {
		t.Errorf("flows = %d", st.Flows)
	}
	var n int64
	for i := range f.shards {
		n += int64(len(f.shards[i].flows))
	}
	if st := f.Stats(); n != st.Flows {
		t.Errorf("%d entries in the table, %d counted", n, st.Flows)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxFlows: -1}, "firewall: MaxFlows is -1: use a positive number, or 0 for the default 262144"},
		{Config{MaxFlowsPerTenant: -1}, "firewall: MaxFlowsPerTenant is -1: use a positive number, or 0 for MaxFlows"},
		{Config{MaxFlowsPerPeer: -1}, "firewall: MaxFlowsPerPeer is -1: use a positive number, or 0 for MaxFlowsPerTenant"},
	} {
		if _, err := New(tt.cfg, nil); err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %s", tt.cfg, err, tt.want)
		}
	}
	f, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.MaxFlows != DefaultMaxFlows {
		t.Errorf("MaxFlows = %d", st.MaxFlows)
	}
}

func TestStrings(t *testing.T) {
	var got []string
	for v := Drop; v <= Accept+1; v++ {
		got = append(got, v.String())
	}
	for r := ReasonNone; r <= numReasons; r++ {
		got = append(got, r.String())
	}
	got = append(got, FromPeer.String(), ToPeer.String(), Direction(2).String(), Allow.String(), Deny.String(), Proto(9).String())
	want := "drop accept verdict(2) none policy_deny default_deny no_policy conntrack_full invalid unrelated_icmp fragment conntrack_limit_peer conntrack_limit_tenant reason(10) from_peer to_peer direction(2) allow deny proto(9)"
	if s := fmt.Sprint(got); s != "["+want+"]" {
		t.Errorf("got %s\nwant [%s]", s, want)
	}
}
