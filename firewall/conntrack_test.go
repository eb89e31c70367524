package firewall

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of the per-peer and per-tenant bounds of the flow table and of the early drop of a
// peer's flows without a reply (Peer).

// peerStep is one packet of a peer (nil: none) and the verdict it must get.
type peerStep struct {
	name   string
	peer   *Peer
	p      pkt
	dir    Direction
	reason Reason // ReasonNone: accepted
}

func runPeerSteps(t *testing.T, f *Filter, tenant int64, steps []peerStep) {
	t.Helper()
	for _, s := range steps {
		var p Packet
		if err := p.Parse(s.p.build()); err != nil {
			t.Fatalf("%s: Parse: %v", s.name, err)
		}
		want := Accept
		if s.reason != ReasonNone {
			want = Drop
		}
		if v, r := f.CheckAt(tenant, s.peer, &p, s.dir, f.Now()); v != want || r != s.reason {
			t.Errorf("%s: CheckAt = %s %s, want %s %s", s.name, v, r, want, s.reason)
		}
	}
}

// alice's UDP flow from sport to 10.9.9.9:7, and its reply.
func aliceUDP(sport uint16) pkt {
	return pkt{src: "100.64.0.1", dst: "10.9.9.9", proto: ipprotoUDP, sport: sport, dport: 7}
}
func aliceUDPReply(sport uint16) pkt {
	return pkt{src: "10.9.9.9", dst: "100.64.0.1", proto: ipprotoUDP, sport: 7, dport: sport}
}

// bob's (also in eng) UDP flow from sport.
func bobUDP(sport uint16) pkt {
	return pkt{src: "100.64.0.2", dst: "10.9.9.9", proto: ipprotoUDP, sport: sport, dport: 7}
}

// aliceTCP is alice's TCP packet from sport with flags; aliceTCPBack the server's.
func aliceTCP(sport uint16, flags uint8) pkt {
	return pkt{src: "100.64.0.1", dst: "10.9.9.9", proto: ipprotoTCP, sport: sport, dport: 443, flags: flags}
}
func aliceTCPBack(sport uint16, flags uint8) pkt {
	return pkt{src: "10.9.9.9", dst: "100.64.0.1", proto: ipprotoTCP, sport: 443, dport: sport, flags: flags}
}

func TestConntrackPeerLimit(t *testing.T) {
	f, _ := newTestFilter(t, Config{MaxFlowsPerPeer: 2}, filterPolicy)
	alice, bob := new(Peer), new(Peer)
	runPeerSteps(t, f, 1, []peerStep{
		{"1", alice, aliceUDP(1), FromPeer, 0},
		{"2", alice, aliceUDP(2), FromPeer, 0},
		{"3 replaces 1, the oldest without a reply", alice, aliceUDP(3), FromPeer, 0},
		{"1's reply is no longer tracked", alice, aliceUDPReply(1), ToPeer, ReasonDefaultDeny},
		{"3 is answered", alice, aliceUDPReply(3), ToPeer, 0},
		{"4 replaces 2, not the answered 3", alice, aliceUDP(4), FromPeer, 0},
		{"2's reply is no longer tracked", alice, aliceUDPReply(2), ToPeer, ReasonDefaultDeny},
		{"3 goes on", alice, aliceUDP(3), FromPeer, 0},
		{"4 is answered", alice, aliceUDPReply(4), ToPeer, 0},
		{"nothing left to replace: 5 is dropped", alice, aliceUDP(5), FromPeer, ReasonPeerLimit},
		{"and so are its retries", alice, aliceUDP(5), FromPeer, ReasonPeerLimit},
		{"answered flows go on", alice, aliceUDP(4), FromPeer, 0},
		{"another peer of the tenant has its own share", bob, bobUDP(1), FromPeer, 0},
		{"as have packets of no peer", nil, bobUDP(2), FromPeer, 0},
	})
	if n := alice.Flows(); n != 2 {
		t.Errorf("alice counts %d flows, want 2", n)
	}
	st, _ := f.TenantStats(1)
	if st.Flows != 4 || st.Evicted != 2 || st.Drops["from_peer"]["conntrack_limit_peer"] != 2 || st.MaxFlowsPerPeer != 2 {
		t.Errorf("tenant stats: flows %d evicted %d drops %v max per peer %d", st.Flows, st.Evicted, st.Drops["from_peer"], st.MaxFlowsPerPeer)
	}
	checkPeers(t, f, alice, bob)
}

// Closed TCP connections (both FINs, or a RST) may be replaced like flows without a reply;
// established ones may not.
func TestConntrackPeerLimitTCP(t *testing.T) {
	f, _ := newTestFilter(t, Config{MaxFlowsPerPeer: 2}, filterPolicy)
	alice := new(Peer)
	runPeerSteps(t, f, 1, []peerStep{
		{"A syn", alice, aliceTCP(1, TCPSyn), FromPeer, 0},
		{"A syn-ack", alice, aliceTCPBack(1, TCPSyn|TCPAck), ToPeer, 0},
		{"A ack", alice, aliceTCP(1, TCPAck), FromPeer, 0},
		{"B syn", alice, aliceTCP(2, TCPSyn), FromPeer, 0},
		{"B syn-ack", alice, aliceTCPBack(2, TCPSyn|TCPAck), ToPeer, 0},
		{"C syn: both established", alice, aliceTCP(3, TCPSyn), FromPeer, ReasonPeerLimit},
		{"A fin", alice, aliceTCP(1, TCPFin|TCPAck), FromPeer, 0},
		{"A fin back: closed", alice, aliceTCPBack(1, TCPFin|TCPAck), ToPeer, 0},
		{"C syn replaces the closed A", alice, aliceTCP(3, TCPSyn), FromPeer, 0},
		{"B rst", alice, aliceTCPBack(2, TCPRst), ToPeer, 0},
		{"D syn replaces C, evictable before B was reset", alice, aliceTCP(4, TCPSyn), FromPeer, 0},
		{"C is gone", alice, aliceTCPBack(3, TCPSyn|TCPAck), ToPeer, ReasonInvalid},
		{"E syn replaces the reset B", alice, aliceTCP(5, TCPSyn), FromPeer, 0},
		{"B is gone", alice, aliceTCPBack(2, TCPSyn|TCPAck), ToPeer, ReasonInvalid},
	})
	checkPeers(t, f, alice)
}

// The tenant's bound: a peer at it replaces its own flows without a reply, never another
// peer's; with none it is dropped.
func TestConntrackTenantLimit(t *testing.T) {
	f, _ := newTestFilter(t, Config{}, filterPolicy)
	f.SetLimits(1, 3, 0)
	alice, bob := new(Peer), new(Peer)
	runPeerSteps(t, f, 1, []peerStep{
		{"alice 1", alice, aliceUDP(1), FromPeer, 0},
		{"alice 2", alice, aliceUDP(2), FromPeer, 0},
		{"bob 1", bob, bobUDP(1), FromPeer, 0},
		{"bob 2 replaces bob 1", bob, bobUDP(2), FromPeer, 0},
		{"alice 1 goes on", alice, aliceUDP(1), FromPeer, 0},
		{"alice 1 answered", alice, aliceUDPReply(1), ToPeer, 0},
		{"alice 2 answered", alice, aliceUDPReply(2), ToPeer, 0},
		{"alice 3: nothing of alice's to replace", alice, aliceUDP(3), FromPeer, ReasonTenantLimit},
	})
	if st, _ := f.TenantStats(1); st.Flows != 3 || st.Evicted != 1 || st.MaxFlows != 3 {
		t.Errorf("tenant stats: %+v", st)
	}
	f.SetLimits(1, 0, 0) // back to the Config's: the table's size
	runPeerSteps(t, f, 1, []peerStep{{"alice 3 after the bound is lifted", alice, aliceUDP(3), FromPeer, 0}})
	checkPeers(t, f, alice, bob)
}

// The table's bound: a peer at it replaces its own flows without a reply.
func TestConntrackTableFullEvictsOwn(t *testing.T) {
	f, _ := newTestFilter(t, Config{MaxFlows: 2}, filterPolicy)
	f.SetRuleSet(2, mustCompile(t, filterPolicy, testView()))
	alice, bob := new(Peer), new(Peer)
	runPeerSteps(t, f, 2, []peerStep{{"bob 1, another tenant's", bob, bobUDP(1), FromPeer, 0}})
	runPeerSteps(t, f, 1, []peerStep{
		{"alice 1", alice, aliceUDP(1), FromPeer, 0},
		{"alice 2 replaces alice 1", alice, aliceUDP(2), FromPeer, 0},
		{"alice 2 answered", alice, aliceUDPReply(2), ToPeer, 0},
		{"alice 3: bob's flow is not alice's to replace", alice, aliceUDP(3), FromPeer, ReasonConntrackFull},
	})
	checkPeers(t, f, alice, bob)
}

// checkPeers checks that each peer's count and list match the table.
func checkPeers(t *testing.T, f *Filter, peers ...*Peer) {
	t.Helper()
	count := map[*Peer]int{}
	listed := map[*entry]bool{}
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		for _, e := range s.flows {
			if e.peer == nil {
				continue
			}
			count[e.peer]++
			e.peer.mu.Lock()
			if e.listed != e.evictable() {
				t.Errorf("entry %+v: listed %v, evictable %v", e.key, e.listed, e.evictable())
			}
			listed[e] = e.listed
			e.peer.mu.Unlock()
		}
		s.mu.Unlock()
	}
	for i, p := range peers {
		p.mu.Lock()
		if p.flows != count[p] {
			t.Errorf("peer %d counts %d flows, the table holds %d", i, p.flows, count[p])
		}
		var prev *entry
		for e := p.head; e != nil; e = e.next {
			if e.prev != prev || !listed[e] {
				t.Errorf("peer %d: list broken at %+v", i, e.key)
			}
			delete(listed, e)
			prev = e
		}
		if p.tail != prev {
			t.Errorf("peer %d: tail is not the last entry", i)
		}
		p.mu.Unlock()
	}
	for e, l := range listed {
		if l {
			t.Errorf("entry %+v is listed but not on its peer's list", e.key)
		}
	}
}

// recordLog keeps the messages logged through it, with their attributes.
type recordLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message[:strings.IndexByte(r.Message, ':')])
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}
func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *recordLog) WithGroup(string) slog.Handler      { return l }

// A flood is logged once a minute per peer and bound, naming the peer, however many flows
// it opens; a full table once a minute by Sweep.
func TestConntrackLimitLog(t *testing.T) {
	clock := newFilterClock()
	rec := &recordLog{}
	f, err := New(Config{MaxFlows: 100, MaxFlowsPerPeer: 2, Now: clock.Elapsed}, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	f.SetRuleSet(1, mustCompile(t, filterPolicy, testView()))
	alice, bob := new(Peer), new(Peer)
	alice.SetName("acme", "alice")
	bob.SetName("acme", "bob")
	flood := func(peer *Peer, p func(uint16) pkt, n int) {
		for i := range n {
			var pk Packet
			pk.Parse(p(uint16(1000 + i)).build())
			f.CheckAt(1, peer, &pk, FromPeer, f.Now())
		}
	}
	flood(alice, aliceUDP, 1000)
	clock.Advance(30 * time.Second)
	flood(alice, aliceUDP, 1000)
	flood(bob, bobUDP, 10)
	clock.Advance(31 * time.Second)
	flood(alice, aliceUDP, 10)
	f.SetRuleSet(2, mustCompile(t, filterPolicy, testView()))
	for i := range 200 { // another tenant fills the table
		var pk Packet
		pk.Parse(aliceUDP(uint16(30000 + i)).build())
		f.Check(2, &pk, FromPeer)
		f.Sweep()
	}
	want := []string{
		"connection tracking limit reached tenant=acme peer=alice limit=conntrack_limit_peer max=2 peer_flows=2 tenant_flows=2 tenant_evicted=0 tenant_refused=0",
		"connection tracking limit reached tenant=acme peer=bob limit=conntrack_limit_peer max=2 peer_flows=2 tenant_flows=4 tenant_evicted=1998 tenant_refused=0",
		"connection tracking limit reached tenant=acme peer=alice limit=conntrack_limit_peer max=2 peer_flows=2 tenant_flows=4 tenant_evicted=2006 tenant_refused=0",
		"flow table full refused=1 max_flows=100",
	}
	rec.mu.Lock()
	got := slices.Clone(rec.lines)
	rec.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkPeers(t, f, alice, bob)
}

// Peers flood, answer, sweep and flush at once while the bounds evict (run with -race):
// every count matches the table afterwards.
func TestConntrackPeersConcurrent(t *testing.T) {
	f, clock := newTestFilter(t, Config{MaxFlows: 300, MaxFlowsPerPeer: 40}, filterPolicy)
	f.SetLimits(1, 100, 40)
	peers := []*Peer{new(Peer), new(Peer), new(Peer), new(Peer)}
	srcs := []string{"100.64.0.1", "100.64.0.2", "100.64.0.1", "100.64.0.2"}
	var wg sync.WaitGroup
	for g, peer := range peers {
		wg.Go(func() {
			var p Packet
			for i := range 5000 {
				sport := uint16(g*1000 + i%500)
				q, dir := pkt{src: srcs[g], dst: "10.9.9.9", proto: ipprotoUDP, sport: sport, dport: 7}, FromPeer
				switch i % 3 {
				case 1:
					q = pkt{src: "10.9.9.9", dst: srcs[g], proto: ipprotoUDP, sport: 7, dport: sport}
					dir = ToPeer
				case 2:
					q = pkt{src: srcs[g], dst: "10.9.9.9", proto: ipprotoTCP, sport: sport, dport: 443, flags: [...]uint8{TCPSyn, TCPRst}[i%2]}
				}
				if err := p.Parse(q.build()); err != nil {
					panic(err)
				}
				f.CheckAt(1, peer, &p, dir, f.Now())
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for i := 0; ; i++ {
		select {
		case <-done:
		default:
			clock.Advance(time.Second)
			f.Sweep()
			if i%50 == 0 {
				f.Flush(1)
				f.SetLimits(1, 50+i%200, 10+i%30)
			}
			time.Sleep(time.Millisecond)
			continue
		}
		break
	}
	checkPeers(t, f, peers...)
	if st, _ := f.TenantStats(1); st.Evicted == 0 {
		t.Errorf("no evictions: %+v", st)
	}
}
