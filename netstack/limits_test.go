package netstack

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of the flow accounting (limits.go): limits, early drop of unreplied flows, the
// rate-limited log line, against literal tables and a naive reference.

// testFlow is a flow of the tests: the target an eviction aborts.
type testFlow struct {
	name    string
	aborted bool
}

func (f *testFlow) abort() { f.aborted = true }

// fakeClock is a settable monotonic clock in nanoseconds.
type fakeClock struct{ ns int64 }

func (c *fakeClock) now() int64 { return c.ns }

// recordLog keeps the records logged through it.
type recordLog struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *recordLog) WithGroup(string) slog.Handler      { return l }

// lines returns the records as "key=value ..." strings of the attributes named.
func (l *recordLog) lines(keys ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		var parts []string
		r.Attrs(func(a slog.Attr) bool {
			if slices.Contains(keys, a.Key) {
				parts = append(parts, a.Key+"="+a.Value.String())
			}
			return true
		})
		out = append(out, strings.Join(parts, " "))
	}
	return out
}

// Owners of the tests: peers 1 and 2 of tenant 10, peer 3 of tenant 20.
func testOwner(peer int64, maxPeer, maxTenant int) *Owner {
	t := int64(10)
	if peer == 3 {
		t = 20
	}
	return &Owner{Peer: peer, Tenant: t, PeerName: fmt.Sprintf("p%d", peer), TenantName: fmt.Sprintf("t%d", t),
		MaxPeerFlows: maxPeer, MaxTenantFlows: maxTenant}
}

// acctOp is one step of an accounting test.
type acctOp struct {
	op   string // admit, assure, release
	flow string
	peer int64
	kind flowKind
	// admit: the limit that refuses it (limitNone: admitted) and the flows it evicts.
	// assure: refused says assure reports false.
	refused Limit
	evicts  []string
}

func admitOp(flow string, peer int64, kind flowKind, refused Limit, evicts ...string) acctOp {
	return acctOp{op: "admit", flow: flow, peer: peer, kind: kind, refused: refused, evicts: evicts}
}

func TestAcctLimits(t *testing.T) {
	const none = limitNone
	for _, c := range []struct {
		name               string
		maxPeer, maxTenant int
		fdBudget, maxFlows int
		ops                []acctOp
		tcp, udp, icmp     map[int64]int // tenant → open flows at the end
		refused, evicted   map[int64]map[string]uint64
	}{
		{
			name: "peer limit evicts the peer's oldest unreplied flow", maxPeer: 2, fdBudget: 100, maxFlows: 100,
			ops: []acctOp{
				admitOp("a", 1, kindUDP, none), admitOp("b", 1, kindUDP, none),
				admitOp("c", 1, kindUDP, none, "a"),
				admitOp("d", 1, kindTCP, none, "b"),
			},
			udp: map[int64]int{10: 1}, tcp: map[int64]int{10: 1},
			evicted: map[int64]map[string]uint64{10: {"flow_limit_peer": 2}},
		},
		{
			name: "replied flows are never evicted: refused when none is left", maxPeer: 2, fdBudget: 100, maxFlows: 100,
			ops: []acctOp{
				admitOp("a", 1, kindUDP, none), admitOp("b", 1, kindTCP, none),
				{op: "assure", flow: "a"}, {op: "assure", flow: "b"},
				admitOp("c", 1, kindUDP, LimitPeer),
				admitOp("d", 1, kindICMP, LimitPeer),
			},
			udp: map[int64]int{10: 1}, tcp: map[int64]int{10: 1},
			refused: map[int64]map[string]uint64{10: {"flow_limit_peer": 2}},
		},
		{
			name: "the oldest unreplied, skipping replied ones", maxPeer: 3, fdBudget: 100, maxFlows: 100,
			ops: []acctOp{
				admitOp("a", 1, kindUDP, none), admitOp("b", 1, kindUDP, none), admitOp("c", 1, kindICMP, none),
				{op: "assure", flow: "a"},
				admitOp("d", 1, kindUDP, none, "b"),
				admitOp("e", 1, kindUDP, none, "c"),
				admitOp("f", 1, kindUDP, none, "d"),
			},
			udp:     map[int64]int{10: 3},
			evicted: map[int64]map[string]uint64{10: {"flow_limit_peer": 3}},
		},
		{
			name: "a peer's limit never takes another peer's flows", maxPeer: 1, fdBudget: 100, maxFlows: 100,
			ops: []acctOp{
				admitOp("a", 1, kindUDP, none), admitOp("b", 2, kindUDP, none),
				{op: "assure", flow: "a"},
				admitOp("c", 1, kindUDP, LimitPeer),
				admitOp("d", 2, kindUDP, none, "b"),
			},
			udp:     map[int64]int{10: 2},
			refused: map[int64]map[string]uint64{10: {"flow_limit_peer": 1}},
			evicted: map[int64]map[string]uint64{10: {"flow_limit_peer": 1}},
		},
		{
			name: "tenant limit: the peer's own flows first, then the tenant's", maxTenant: 2, fdBudget: 100, maxFlows: 100,
			ops: []acctOp{
				admitOp("a", 1, kindUDP, none), admitOp("b", 2, kindUDP, none),
				admitOp("c", 2, kindUDP, none, "b"),
				{op: "assure", flow: "c"},
				admitOp("d", 2, kindUDP, none, "a"),
				{op: "assure", flow: "d"},
				admitOp("e", 1, kindUDP, LimitTenant),
			},
			udp:     map[int64]int{10: 2},
			refused: map[int64]map[string]uint64{10: {"flow_limit_tenant": 1}},
			evicted: map[int64]map[string]uint64{10: {"flow_limit_tenant": 2}},
		},
		{
			name: "a tenant's limit never takes another tenant's flows", maxTenant: 1, fdBudget: 100, maxFlows: 100,
			ops: []acctOp{
				admitOp("a", 1, kindUDP, none), admitOp("b", 3, kindUDP, none),
				{op: "assure", flow: "b"},
				admitOp("c", 3, kindUDP, LimitTenant),
			},
			udp:     map[int64]int{10: 1, 20: 1},
			refused: map[int64]map[string]uint64{20: {"flow_limit_tenant": 1}},
		},
		{
			name: "fd budget: echo holds no socket, evictions take socket holders", fdBudget: 2, maxFlows: 100,
			ops: []acctOp{
				admitOp("a", 1, kindICMP, none), admitOp("b", 1, kindUDP, none), admitOp("c", 2, kindTCP, none),
				admitOp("d", 1, kindUDP, none, "b"),
				admitOp("e", 3, kindICMP, none),
			},
			udp: map[int64]int{10: 1}, tcp: map[int64]int{10: 1}, icmp: map[int64]int{10: 1, 20: 1},
			evicted: map[int64]map[string]uint64{10: {"fd_budget": 1}},
		},
		{
			name: "fd budget and node limit reach every tenant's unreplied flows", fdBudget: 2, maxFlows: 3,
			ops: []acctOp{
				admitOp("a", 3, kindUDP, none), admitOp("b", 3, kindUDP, none),
				{op: "assure", flow: "b"},
				admitOp("c", 1, kindUDP, none, "a"),
				{op: "assure", flow: "c"},
				admitOp("d", 1, kindUDP, LimitFDs),
				admitOp("e", 2, kindICMP, none),
				admitOp("f", 1, kindICMP, none, "e"),
				{op: "assure", flow: "f"},
				admitOp("g", 1, kindICMP, LimitNode),
			},
			udp: map[int64]int{10: 1, 20: 1}, icmp: map[int64]int{10: 1},
			refused: map[int64]map[string]uint64{10: {"fd_budget": 1, "flow_limit_node": 1}},
			evicted: map[int64]map[string]uint64{20: {"fd_budget": 1}, 10: {"flow_limit_node": 1}},
		},
		{
			name: "a released flow frees its slot; an evicted one is not assured", maxPeer: 1, fdBudget: 100, maxFlows: 100,
			ops: []acctOp{
				admitOp("a", 1, kindUDP, none),
				{op: "release", flow: "a"},
				{op: "release", flow: "a"}, // idempotent
				admitOp("b", 1, kindUDP, none),
				admitOp("c", 1, kindUDP, none, "b"),
				{op: "assure", flow: "b", refused: LimitPeer},
				{op: "release", flow: "b"}, // its own end, after the eviction: counted once
			},
			udp:     map[int64]int{10: 1},
			evicted: map[int64]map[string]uint64{10: {"flow_limit_peer": 1}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			var clk fakeClock
			a := newAcct(c.maxFlows, c.fdBudget, clk.now, slog.New(slog.DiscardHandler))
			flows := map[string]*acctFlow{}
			targets := map[string]*testFlow{}
			for i, op := range c.ops {
				switch op.op {
				case "admit":
					tf := &testFlow{name: op.flow}
					targets[op.flow] = tf
					f, lim, victims := a.admit(testOwner(op.peer, c.maxPeer, c.maxTenant), op.kind, tf, nil)
					var got []string
					for _, v := range victims {
						v.abort()
						got = append(got, v.(*testFlow).name)
					}
					if lim != op.refused || (f == nil) != (lim != limitNone) {
						t.Errorf("op %d: admit %s: limit %v (flow %v), want %v", i, op.flow, lim, f != nil, op.refused)
					}
					if !slices.Equal(got, op.evicts) {
						t.Errorf("op %d: admit %s evicted %v, want %v", i, op.flow, got, op.evicts)
					}
					if f != nil {
						flows[op.flow] = f
					}
				case "assure":
					if ok := a.assure(flows[op.flow]); ok != (op.refused == limitNone) {
						t.Errorf("op %d: assure %s = %v", i, op.flow, ok)
					}
				case "release":
					a.release(flows[op.flow])
				}
			}
			for name, tf := range targets {
				evicted := slices.ContainsFunc(c.ops, func(o acctOp) bool { return slices.Contains(o.evicts, name) })
				if tf.aborted != evicted {
					t.Errorf("flow %s: aborted %v, evicted %v", name, tf.aborted, evicted)
				}
			}
			got := a.tenantFlows()
			for _, tenant := range []int64{10, 20} {
				tf := got[tenant]
				if tf.TCP != c.tcp[tenant] || tf.UDP != c.udp[tenant] || tf.ICMP != c.icmp[tenant] {
					t.Errorf("tenant %d: open tcp %d udp %d icmp %d, want %d %d %d", tenant, tf.TCP, tf.UDP, tf.ICMP, c.tcp[tenant], c.udp[tenant], c.icmp[tenant])
				}
				if !mapsEqual(tf.Refused, c.refused[tenant]) || !mapsEqual(tf.Evicted, c.evicted[tenant]) {
					t.Errorf("tenant %d: refused %v evicted %v, want %v and %v", tenant, tf.Refused, tf.Evicted, c.refused[tenant], c.evicted[tenant])
				}
			}
			checkAcct(t, a)
		})
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkAcct checks the accounting's invariants: the counters are the sums of the flows on
// record, every list holds exactly the unreplied flows of its scope, linked both ways.
func checkAcct(t *testing.T, a *acct) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	var node flowCounts
	fds := 0
	tenants := map[*tenantAcct]flowCounts{}
	for id, p := range a.peers {
		if p.id != id {
			t.Errorf("peer %d filed under %d", p.id, id)
		}
		if p.n.total() == 0 {
			t.Errorf("peer %d without flows is kept", id)
		}
		tc := tenants[p.tenant]
		for k := range numKinds {
			if p.n[k] < 0 {
				t.Errorf("peer %d: %d flows of kind %d", id, p.n[k], k)
			}
			tc[k] += p.n[k]
			node[k] += p.n[k]
			if k.holdsFD() {
				fds += p.n[k]
			}
		}
		tenants[p.tenant] = tc
		checkList(t, &p.unreplied, scopePeer, func(f *acctFlow) bool { return f.peer == p })
	}
	for _, ta := range a.tenants {
		if tenants[ta] != ta.n {
			t.Errorf("tenant counts %v, its peers' %v", ta.n, tenants[ta])
		}
		checkList(t, &ta.unreplied, scopeTenant, func(f *acctFlow) bool { return f.peer.tenant == ta })
	}
	if node != a.n || fds != a.fds {
		t.Errorf("node counts %v (%d sockets), its peers' %v (%d)", a.n, a.fds, node, fds)
	}
	checkList(t, &a.unreplied, scopeNode, func(*acctFlow) bool { return true })
	if len(a.logged) > limitLogKeys {
		t.Errorf("the log remembers %d peers", len(a.logged))
	}
}

func checkList(t *testing.T, l *acctList, s scope, mine func(*acctFlow) bool) {
	t.Helper()
	var prev *acctFlow
	for f := l.head; f != nil; f = f.links[s].next {
		if f.links[s].prev != prev || !f.listed || f.done || !mine(f) {
			t.Fatalf("scope %d: list broken at %p (listed %v done %v)", s, f, f.listed, f.done)
		}
		prev = f
	}
	if l.tail != prev {
		t.Fatalf("scope %d: tail %p, last %p", s, l.tail, prev)
	}
}

// TestAcctLogOncePerMinute: a peer at its limit is logged once a minute per limit, with
// who and how many, however many flows it tries.
func TestAcctLogOncePerMinute(t *testing.T) {
	var clk fakeClock
	rec := &recordLog{}
	a := newAcct(10, 10, clk.now, slog.New(rec))
	o := testOwner(1, 2, 100)
	for range 1000 {
		f, _, _ := a.admit(o, kindUDP, &testFlow{}, nil)
		if f != nil {
			a.assure(f)
		}
	}
	clk.ns += int64(30 * time.Second)
	for range 1000 {
		a.admit(o, kindUDP, &testFlow{}, nil)
	}
	for range 3 { // another peer: logged on its own
		a.admit(testOwner(2, 2, 100), kindUDP, &testFlow{}, nil)
	}
	clk.ns += int64(31 * time.Second)
	a.admit(o, kindUDP, &testFlow{}, nil)
	for range 20 { // the node's limit, reached by another tenant: its own line
		if f, _, _ := a.admit(testOwner(3, 100, 100), kindUDP, &testFlow{}, nil); f != nil {
			a.assure(f)
		}
	}
	want := []string{
		"tenant=t10 peer=p1 limit=flow_limit_peer max=2 peer_flows=2 tenant_refused=0",
		"tenant=t10 peer=p2 limit=flow_limit_peer max=2 peer_flows=2 tenant_refused=1998",
		"tenant=t10 peer=p1 limit=flow_limit_peer max=2 peer_flows=2 tenant_refused=1998",
		"tenant=t20 peer=p3 limit=fd_budget max=10 peer_flows=6 tenant_refused=0",
	}
	got := rec.lines("tenant", "peer", "limit", "max", "peer_flows", "tenant_refused")
	if !slices.Equal(got, want) {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkAcct(t, a)
}

// TestAcctRandom runs random admissions, replies and releases against a naive model: a
// slice of flows scanned for each decision.
func TestAcctRandom(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			maxPeer, maxTenant := 1+r.IntN(6), 1+r.IntN(12)
			fdBudget, maxFlows := 1+r.IntN(15), 1+r.IntN(20)
			var clk fakeClock
			a := newAcct(maxFlows, fdBudget, clk.now, slog.New(slog.DiscardHandler))
			m := &acctModel{maxPeer: maxPeer, maxTenant: maxTenant, fdBudget: fdBudget, maxFlows: maxFlows}
			var live []*modelFlow
			for i := range 2000 {
				switch x := r.IntN(10); {
				case x < 6 || len(live) == 0:
					peer := int64(1 + r.IntN(3))
					kind := flowKind(r.IntN(int(numKinds)))
					o := testOwner(peer, maxPeer, maxTenant)
					tf := &testFlow{name: fmt.Sprint(i)}
					f, lim, victims := a.admit(o, kind, tf, nil)
					mf, mlim, mvictims := m.admit(o, kind, tf.name)
					var got []string
					for _, v := range victims {
						got = append(got, v.(*testFlow).name)
					}
					if lim != mlim || !slices.Equal(got, mvictims) {
						t.Fatalf("op %d: admit peer %d kind %d: limit %v evicts %v, model %v %v", i, peer, kind, lim, got, mlim, mvictims)
					}
					if f != nil {
						mf.real = f
						live = append(live, mf)
					}
				case x < 8:
					j := r.IntN(len(live))
					ok := a.assure(live[j].real)
					if ok != m.assure(live[j]) {
						t.Fatalf("op %d: assure %s = %v, model disagrees", i, live[j].name, ok)
					}
				default:
					j := r.IntN(len(live))
					a.release(live[j].real)
					m.release(live[j])
					live = slices.Delete(live, j, j+1)
				}
			}
			checkAcct(t, a)
		})
	}
}

// acctModel is the reference: the flows in admission order, scanned for every decision.
type acctModel struct {
	maxPeer, maxTenant, fdBudget, maxFlows int
	flows                                  []*modelFlow // open, oldest first
}

type modelFlow struct {
	name         string
	peer, tenant int64
	kind         flowKind
	replied      bool
	gone         bool
	real         *acctFlow
}

func (m *acctModel) count(match func(*modelFlow) bool) int {
	n := 0
	for _, f := range m.flows {
		if match(f) {
			n++
		}
	}
	return n
}

// oldest is the oldest unreplied flow that matches, among the first victimScan unreplied
// flows of the scope when needFD (like acctList.oldest).
func (m *acctModel) oldest(inScope func(*modelFlow) bool, needFD bool) *modelFlow {
	n := 0
	for _, f := range m.flows {
		if f.replied || !inScope(f) {
			continue
		}
		if n == victimScan {
			return nil
		}
		if !needFD || f.kind.holdsFD() {
			return f
		}
		n++
	}
	return nil
}

func (m *acctModel) admit(o *Owner, kind flowKind, name string) (*modelFlow, Limit, []string) {
	var victims []string
	for evicted := 0; ; evicted++ {
		peer := func(f *modelFlow) bool { return f.peer == o.Peer }
		tenant := func(f *modelFlow) bool { return f.tenant == o.Tenant }
		all := func(*modelFlow) bool { return true }
		fds := func(f *modelFlow) bool { return f.kind.holdsFD() }
		var lim Limit
		switch {
		case m.count(peer) >= o.MaxPeerFlows:
			lim = LimitPeer
		case m.count(tenant) >= o.MaxTenantFlows:
			lim = LimitTenant
		case kind.holdsFD() && m.count(fds) >= m.fdBudget:
			lim = LimitFDs
		case m.count(all) >= m.maxFlows:
			lim = LimitNode
		}
		if lim == limitNone {
			break
		}
		v := m.oldest(peer, lim == LimitFDs)
		if v == nil {
			switch lim {
			case LimitTenant:
				v = m.oldest(tenant, false)
			case LimitFDs, LimitNode:
				v = m.oldest(all, lim == LimitFDs)
			}
		}
		if v == nil || evicted == maxEvictions {
			return nil, lim, victims
		}
		m.release(v)
		victims = append(victims, v.name)
	}
	f := &modelFlow{name: name, peer: o.Peer, tenant: o.Tenant, kind: kind}
	m.flows = append(m.flows, f)
	return f, limitNone, victims
}

func (m *acctModel) assure(f *modelFlow) bool {
	if f.gone {
		return false
	}
	f.replied = true
	return true
}

func (m *acctModel) release(f *modelFlow) {
	if f.gone {
		return
	}
	f.gone = true
	m.flows = slices.DeleteFunc(m.flows, func(x *modelFlow) bool { return x == f })
}

// Owners of the exit tests: clientV4 is peer 1 of tenant 10, clientV6 peer 2 of tenant 20.
func harnessOwners(maxPeer int) func(netip.Addr) Owner {
	return func(a netip.Addr) Owner {
		if a == clientV6 {
			return Owner{Peer: 2, Tenant: 20, PeerName: "v6", TenantName: "t20", MaxPeerFlows: maxPeer, MaxTenantFlows: 100}
		}
		return Owner{Peer: 1, Tenant: 10, PeerName: "v4", TenantName: "t10", MaxPeerFlows: maxPeer, MaxTenantFlows: 100}
	}
}

// TestExitUDPFloodEvictsOwnUnreplied: a peer opening UDP flows to a sink that never
// answers stays at its limit by closing its own oldest unreplied flows; its flow that got
// replies, and the other tenant's peer, are untouched; the unreplied flows close after the
// short idle timeout, the replied one does not.
func TestExitUDPFloodEvictsOwnUnreplied(t *testing.T) {
	const maxPeer, flood = 8, 200
	h := newHarness(t, Config{Owner: harnessOwners(maxPeer), UDPIdleTimeout: time.Minute, UDPUnrepliedTimeout: 500 * time.Millisecond})
	echo := serveUDP(t, "udp4", 0, echoUDP)
	echo6 := serveUDP(t, "udp6", 0, echoUDP)
	sink := serveSeq(t, "udp4")
	h.dialer.set(ap(publicV4, 7), echo.addr)
	h.dialer.set(ap(publicV6, 7), echo6.addr)
	for p := range flood {
		h.dialer.set(ap(publicV4, uint16(1000+p)), sink.addr)
	}
	mine := h.dialUDP(ap(publicV4, 7))
	defer mine.Close()
	roundTrip(t, mine, "before the flood")

	for p := range flood {
		h.exit.Write([][]byte{udpPacket(ap(clientV4, 40000), ap(publicV4, uint16(1000+p)), []byte{0, 0, 0, byte(p)})})
	}
	tf := h.exit.TenantFlows()[10]
	if tf.UDP > maxPeer || tf.Evicted["flow_limit_peer"] < flood-maxPeer || len(tf.Refused) != 0 {
		t.Errorf("after the flood: %+v, want at most %d UDP flows, at least %d evicted, none refused", tf, maxPeer, flood-maxPeer)
	}
	roundTrip(t, mine, "after the flood") // replied: never evicted
	other := h.dialUDP(ap(publicV6, 7))
	defer other.Close()
	roundTrip(t, other, "the other tenant's peer")
	if tf := h.exit.TenantFlows()[20]; tf.UDP != 1 || len(tf.Evicted) != 0 || len(tf.Refused) != 0 {
		t.Errorf("the other tenant: %+v", tf)
	}
	within(t, 5*time.Second, "the unreplied flows to idle out", func() bool {
		return h.exit.TenantFlows()[10].UDP == 1 && relayed(h.exit) == 2
	})
	roundTrip(t, mine, "after the unreplied flows closed")
	checkAcct(t, h.exit.acct)
}

// TestExitLimitEvictsTCPDialAndPing: a TCP flow still dialling and an echo request waiting
// for its reply are unreplied flows too: the next flow of the peer at its limit evicts the
// oldest, and the client of the dial gets a RST. A peer with nothing to evict is refused.
func TestExitLimitEvictsTCPDialAndPing(t *testing.T) {
	h := newHarness(t, Config{Owner: harnessOwners(2), Pinger: &fakePinger{drop: true}})
	slow := ap(publicV4, 81)
	h.dialer.blockOn(slow)
	dialErr := make(chan error, 1)
	go func() {
		c, err := h.dialTCP(ctxTimeout(t, 10*time.Second), slow)
		if err == nil {
			c.Close()
		}
		dialErr <- err
	}()
	within(t, 5*time.Second, "the dial to be counted", func() bool { return h.exit.TenantFlows()[10].TCP == 1 })
	h.exit.Write([][]byte{echoRequest(clientV4, publicV4, 1, 1, nil)}) // never answered
	if tf := h.exit.TenantFlows()[10]; tf.TCP != 1 || tf.ICMP != 1 {
		t.Fatalf("before the limit: %+v", tf)
	}
	h.exit.Write([][]byte{echoRequest(clientV4, publicV4, 1, 2, nil)})
	select {
	case err := <-dialErr:
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("the evicted dial's client got %v, want connection refused", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the evicted dial's client got no RST")
	}
	tf := h.exit.TenantFlows()[10]
	if tf.TCP != 0 || tf.ICMP != 2 || tf.Evicted["flow_limit_peer"] != 1 {
		t.Errorf("after the eviction: %+v", tf)
	}
	checkAcct(t, h.exit.acct)
}

// TestExitFDBudget: flows holding host sockets stay within FDBudget; at the budget another
// tenant's new TCP flow takes the place of an unreplied flow of the flooding one.
func TestExitFDBudget(t *testing.T) {
	const budget = 4
	h := newHarness(t, Config{Owner: harnessOwners(100), FDBudget: budget})
	sink := serveSeq(t, "udp4")
	srv := serveTCP(t, "tcp6", holdOpen)
	h.dialer.set(ap(publicV6, 22), srv.addr)
	for p := range 10 {
		h.dialer.set(ap(publicV4, uint16(1000+p)), sink.addr)
		h.exit.Write([][]byte{udpPacket(ap(clientV4, 40000), ap(publicV4, uint16(1000+p)), []byte{0, 0, 0, byte(p)})})
	}
	if st := h.exit.Stats(); st.HostSockets != budget || st.FDBudget != budget {
		t.Errorf("after the flood: %d host sockets, budget %d; want %d", st.HostSockets, st.FDBudget, budget)
	}
	c, err := h.dialTCP(ctxTimeout(t, 5*time.Second), ap(publicV6, 22))
	if err != nil {
		t.Fatalf("the other tenant's TCP flow at the budget: %v", err)
	}
	defer c.Close()
	a, b := h.exit.TenantFlows()[10], h.exit.TenantFlows()[20]
	if a.UDP != budget-1 || a.Evicted["fd_budget"] != 10-budget+1 || b.TCP != 1 {
		t.Errorf("the flooding tenant %+v, the other %+v", a, b)
	}
	checkAcct(t, h.exit.acct)
}
