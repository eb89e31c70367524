package firewall

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxFlows is the default bound on tracked flows.
const DefaultMaxFlows = 262_144

// Config configures a Filter. The zero Config is valid.
type Config struct {
	// MaxFlows bounds the flows tracked over all tenants; a new flow beyond it is dropped
	// (ReasonConntrackFull). Default 262,144 (about 50 MiB when full).
	MaxFlows int
	// MaxFlowsPerTenant bounds the flows of one tenant, so that one tenant's flood cannot take
	// the whole table. Default: MaxFlows (no separate bound).
	MaxFlowsPerTenant int
	// Timeouts of tracked flows by state; zero fields take Linux conntrack's defaults.
	Timeouts Timeouts
	// Now returns monotonic time since any fixed origin. Default: the process's monotonic
	// clock. Tests set a fake.
	Now func() time.Duration
}

// Validate reports the first invalid field, saying how to fix it.
func (c *Config) Validate() error {
	if c.MaxFlows < 0 {
		return fmt.Errorf("firewall: MaxFlows is %d: use a positive number, or 0 for the default %d", c.MaxFlows, DefaultMaxFlows)
	}
	if c.MaxFlowsPerTenant < 0 {
		return fmt.Errorf("firewall: MaxFlowsPerTenant is %d: use a positive number, or 0 for MaxFlows", c.MaxFlowsPerTenant)
	}
	return nil
}

// Filter is the stateful firewall of every tenant on a node: each tenant's current RuleSet
// plus one bounded connection tracking table. Check is safe for concurrent use and does not
// allocate for packets of tracked flows. The Filter starts no goroutines: its owner calls
// Sweep every few seconds.
type Filter struct {
	log      *slog.Logger
	now      func() time.Duration
	timeouts Timeouts
	maxFlows int64
	maxPer   int64
	seed     uint64

	mu      sync.Mutex                        // serialises tenant changes
	tenants atomic.Pointer[map[int64]*tenant] // copied on change, read without locks

	flows        atomic.Int64  // tracked flows over all tenants
	refused      atomic.Uint64 // new flows refused for a full table, since New
	refusedSwept uint64        // refused as of the last Sweep; guarded by sweepMu
	sweepMu      sync.Mutex
	noTenant     atomic.Uint64 // packets of tenants without a rule set

	shards [numShards]ctShard
}

// tenant is a Filter's state for one tenant.
type tenant struct {
	id      int64
	f       *Filter
	rules   atomic.Pointer[tenantRules]
	flows   atomic.Int64
	removed atomic.Bool
	drops   [2][numReasons]atomic.Uint64 // by Direction, Reason
}

// tenantRules is a tenant's rule set and its generation: flows allowed under an older
// generation are checked again on their next packet.
type tenantRules struct {
	rs  *RuleSet
	gen uint32
}

func (t *tenant) release() {
	t.flows.Add(-1)
	t.f.flows.Add(-1)
}

// New returns a Filter without tenants: every packet is dropped (ReasonNoPolicy) until
// SetRuleSet installs its tenant's rule set.
func New(cfg Config, log *slog.Logger) (*Filter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxFlowsPerTenant == 0 || cfg.MaxFlowsPerTenant > cfg.MaxFlows {
		cfg.MaxFlowsPerTenant = cfg.MaxFlows
	}
	cfg.Timeouts.setDefaults()
	if cfg.Now == nil {
		epoch := time.Now()
		cfg.Now = func() time.Duration { return time.Since(epoch) }
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:]) // never fails (crypto/rand panics instead)
	f := &Filter{
		log:      log,
		now:      cfg.Now,
		timeouts: cfg.Timeouts,
		maxFlows: int64(cfg.MaxFlows),
		maxPer:   int64(cfg.MaxFlowsPerTenant),
		seed:     binary.LittleEndian.Uint64(seed[:]),
	}
	empty := map[int64]*tenant{}
	f.tenants.Store(&empty)
	for i := range f.shards {
		f.shards[i].flows = make(map[flowKey]*entry)
	}
	return f, nil
}

// SetRuleSet makes rs the rule set of the tenant from the next packet on. Tracked flows of the
// tenant are checked against rs on their next packet and cut if rs no longer allows them;
// the others go on. A nil rs removes the tenant: its packets are dropped (ReasonNoPolicy) and
// the next Sweep forgets its flows. rs must not be shared between tenants (its hit counters
// would mix).
func (f *Filter) SetRuleSet(tenantID int64, rs *RuleSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.tenants.Load()
	t := old[tenantID]
	if rs == nil {
		if t == nil {
			return
		}
		t.removed.Store(true)
		next := make(map[int64]*tenant, len(old))
		for id, x := range old {
			if id != tenantID {
				next[id] = x
			}
		}
		f.tenants.Store(&next)
		return
	}
	if t == nil {
		t = &tenant{id: tenantID, f: f}
		next := make(map[int64]*tenant, len(old)+1)
		for id, x := range old {
			next[id] = x
		}
		next[tenantID] = t
		t.rules.Store(&tenantRules{rs: rs, gen: 1})
		f.tenants.Store(&next)
		return
	}
	t.rules.Store(&tenantRules{rs: rs, gen: t.rules.Load().gen + 1})
}

// RuleSet returns the tenant's current rule set, or nil.
func (f *Filter) RuleSet(tenantID int64) *RuleSet {
	if t := (*f.tenants.Load())[tenantID]; t != nil {
		return t.rules.Load().rs
	}
	return nil
}

// Check decides one packet of a tenant: pkt was filled by Packet.Parse and dir says whether a
// peer sent it or it is arriving for a peer. Rules are matched on the packet's addresses
// and ports, so a flow gets the same verdict whichever side it is checked from; dir is
// recorded for counters.
//
// A packet of a tracked flow passes (replies included) unless the tenant's rule set changed
// since the flow was allowed and the new one denies it; an ICMP error passes when it quotes
// a packet of a tracked flow and is addressed to that packet's sender; a later fragment
// passes when the first fragment of its packet passed. Any other packet starts a new flow:
// the first matching rule decides and an allowed flow is tracked, unless the table is full.
// TCP flows start with a SYN, or mid-stream with an ACK (so flows survive a restart of the
// node, like Linux with nf_conntrack_tcp_loose); ICMP echo requests start ICMP flows; other
// ICMP messages are decided by the rules each time and not tracked.
//
// Every Drop is counted by tenant, direction and reason, and every new-flow decision by
// rule.
func (f *Filter) Check(tenantID int64, pkt *Packet, dir Direction) (Verdict, Reason) {
	return f.CheckAt(tenantID, pkt, dir, f.now())
}

// Now reads the Filter's clock (Config.Now), for CheckAt.
func (f *Filter) Now() time.Duration { return f.now() }

// CheckAt is Check at time now, a reading of Now: the packet path reads the clock once per
// batch of packets instead of once per packet (a clock read costs about as much as a
// tracked flow's lookup). now must not be older than a reading taken before the previous
// Sweep.
func (f *Filter) CheckAt(tenantID int64, pkt *Packet, dir Direction, now time.Duration) (Verdict, Reason) {
	t := (*f.tenants.Load())[tenantID]
	if t == nil {
		f.noTenant.Add(1)
		return Drop, ReasonNoPolicy
	}
	return f.check(t, pkt, dir, int64(now))
}

func (f *Filter) check(t *tenant, pkt *Packet, dir Direction, now int64) (Verdict, Reason) {
	tr := t.rules.Load()
	var r Reason
	switch {
	case pkt.Frag == LaterFragment:
		r = f.checkFragment(t, tr, pkt, now)
	case (pkt.Proto == ipprotoICMP || pkt.Proto == ipprotoICMPv6) && isICMPError(pkt.Proto, pkt.ICMPType):
		r = f.checkRelated(t, tr, pkt, now)
	default:
		r = f.checkFlow(t, tr, pkt, now)
		if r == ReasonNone && pkt.Frag == FirstFragment {
			f.rememberFragment(t, tr, pkt, now)
		}
	}
	if r != ReasonNone {
		t.drops[dir&1][r].Add(1)
		return Drop, r
	}
	return Accept, ReasonNone
}

// denyReason is the drop reason for a deny decided by rule i (-1: the default).
func denyReason(i int) Reason {
	if i < 0 {
		return ReasonDefaultDeny
	}
	return ReasonPolicyDeny
}

func (f *Filter) shard(h uint64) *ctShard { return &f.shards[h%numShards] }

// lookupLocked returns the live entry for k in s, dropping it if it expired or belongs to a
// removed tenant, and re-checking it against tr when it was allowed under an older rule set.
// A flow the new rules deny is removed and its deny reason returned.
func (f *Filter) lookupLocked(s *ctShard, k *flowKey, t *tenant, tr *tenantRules, now int64) (*entry, Reason) {
	e := s.flows[*k]
	if e == nil {
		return nil, ReasonNone
	}
	if e.expires <= now || e.tenant != t {
		s.removeLocked(e)
		return nil, ReasonNone
	}
	if e.gen != tr.gen {
		fl := e.origFlow()
		act, i := tr.rs.decide(&fl)
		if act != Allow {
			s.removeLocked(e)
			return nil, denyReason(i)
		}
		e.gen = tr.gen
	}
	return e, ReasonNone
}

func (f *Filter) checkFlow(t *tenant, tr *tenantRules, pkt *Packet, now int64) Reason {
	var sport, dport uint16
	switch pkt.Proto {
	case ipprotoTCP:
		if !tcpValidFlags(pkt.TCPFlags) {
			return ReasonInvalid
		}
		sport, dport = pkt.SrcPort, pkt.DstPort
	case ipprotoUDP:
		sport, dport = pkt.SrcPort, pkt.DstPort
	case ipprotoICMP, ipprotoICMPv6:
		if !isEcho(pkt.Proto, pkt.ICMPType) {
			return f.checkStateless(tr, pkt)
		}
		sport, dport = pkt.ICMPID, pkt.ICMPID
	}
	var k flowKey
	aToB := k.setFlow(t.id, pkt.Proto, pkt.Src, pkt.Dst, sport, dport)
	s := f.shard(k.hash(f.seed))

	s.mu.Lock()
	e, r := f.lookupLocked(s, &k, t, tr, now)
	if r != ReasonNone {
		s.mu.Unlock()
		return r
	}
	if e != nil {
		switch e.updateLocked(pkt, aToB == e.origAtoB, now, &f.timeouts) {
		case updOK:
			s.mu.Unlock()
			return ReasonNone
		case updInvalid:
			s.mu.Unlock()
			return ReasonInvalid
		}
		s.removeLocked(e) // updRestart: a new connection on the same ports
	}
	s.mu.Unlock()

	// A new flow: only some packets may start one.
	var state uint8
	switch pkt.Proto {
	case ipprotoTCP:
		switch pkt.TCPFlags & (TCPSyn | TCPAck | TCPRst | TCPFin) {
		case TCPSyn:
			state = ctSynSent
		case TCPAck:
			state = ctEstablished
		default:
			return ReasonInvalid
		}
	case ipprotoICMP, ipprotoICMPv6:
		if !isEchoRequest(pkt.Proto, pkt.ICMPType) {
			return ReasonInvalid
		}
	}
	fl := Flow{Src: pkt.Src, Dst: pkt.Dst, Proto: pkt.Proto}
	if pkt.Proto == ipprotoTCP || pkt.Proto == ipprotoUDP {
		fl.DstPort = pkt.DstPort
	}
	if act, i := tr.rs.decide(&fl); act != Allow {
		return denyReason(i)
	}
	if !f.reserve(t) {
		return ReasonConntrackFull
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if old, r := f.lookupLocked(s, &k, t, tr, now); r == ReasonNone && old != nil {
		// Another packet of the flow got here first.
		t.release()
		old.updateLocked(pkt, aToB == old.origAtoB, now, &f.timeouts)
		return ReasonNone
	}
	e = s.allocLocked()
	*e = entry{key: k, tenant: t, gen: tr.gen, origAtoB: aToB, state: state}
	e.updateLocked(pkt, true, now, &f.timeouts)
	s.flows[k] = e
	return ReasonNone
}

// checkStateless decides an ICMP message that is neither echo nor error by the rules alone.
func (f *Filter) checkStateless(tr *tenantRules, pkt *Packet) Reason {
	fl := Flow{Src: pkt.Src, Dst: pkt.Dst, Proto: pkt.Proto}
	if act, i := tr.rs.decide(&fl); act != Allow {
		return denyReason(i)
	}
	return ReasonNone
}

// checkRelated passes an ICMP error that quotes a packet of a tracked flow and goes back to
// the sender of that packet.
func (f *Filter) checkRelated(t *tenant, tr *tenantRules, pkt *Packet, now int64) Reason {
	q := &pkt.Quoted
	if !pkt.HasQuoted || q.Src != pkt.Dst {
		return ReasonUnrelatedICMP
	}
	var sport, dport uint16
	switch q.Proto {
	case ipprotoTCP, ipprotoUDP, ipprotoICMP, ipprotoICMPv6:
		sport, dport = q.SrcPort, q.DstPort
	}
	k, _ := makeFlowKey(t.id, q.Proto, q.Src, q.Dst, sport, dport)
	s := f.shard(k.hash(f.seed))
	s.mu.Lock()
	e, r := f.lookupLocked(s, &k, t, tr, now)
	s.mu.Unlock()
	switch {
	case r != ReasonNone:
		return r
	case e == nil:
		return ReasonUnrelatedICMP
	}
	return ReasonNone
}

func (f *Filter) rememberFragment(t *tenant, tr *tenantRules, pkt *Packet, now int64) {
	k := makeFragKey(t.id, pkt)
	h := k.hash(f.seed)
	s := f.shard(h)
	s.mu.Lock()
	s.frags[(h/numShards)%fragsPerShard] = fragSlot{key: k, expires: now + int64(f.timeouts.Fragment), gen: tr.gen}
	s.mu.Unlock()
}

func (f *Filter) checkFragment(t *tenant, tr *tenantRules, pkt *Packet, now int64) Reason {
	k := makeFragKey(t.id, pkt)
	h := k.hash(f.seed)
	s := f.shard(h)
	s.mu.Lock()
	slot := &s.frags[(h/numShards)%fragsPerShard]
	ok := slot.key == k && slot.expires > now && slot.gen == tr.gen
	s.mu.Unlock()
	if !ok {
		return ReasonFragment
	}
	return ReasonNone
}

// reserve counts a new flow against the bounds, or reports false when there is no room.
func (f *Filter) reserve(t *tenant) bool {
	if f.flows.Add(1) > f.maxFlows {
		f.flows.Add(-1)
		f.refused.Add(1)
		return false
	}
	if t.flows.Add(1) > f.maxPer {
		t.flows.Add(-1)
		f.flows.Add(-1)
		f.refused.Add(1)
		return false
	}
	return true
}

// Sweep forgets expired flows and the flows of removed tenants, and returns how many it
// forgot. Call it every few seconds (expired flows found by Check are forgotten then too,
// but only a sweep frees the room of flows nobody sends on). It holds one shard's lock at a
// time.
func (f *Filter) Sweep() int {
	f.sweepMu.Lock()
	defer f.sweepMu.Unlock()
	now := int64(f.now())
	n := 0
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		for _, e := range s.flows {
			if e.expires <= now || e.tenant.removed.Load() {
				s.removeLocked(e)
				n++
			}
		}
		s.mu.Unlock()
	}
	if refused := f.refused.Load(); refused != f.refusedSwept {
		f.log.Warn("flow table full: new flows were dropped",
			"refused", refused-f.refusedSwept, "max_flows", f.maxFlows, "max_flows_per_tenant", f.maxPer)
		f.refusedSwept = refused
	}
	return n
}

// Flush forgets every tracked flow of the tenant: their next packets are decided as new flows.
func (f *Filter) Flush(tenantID int64) {
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		for _, e := range s.flows {
			if e.tenant.id == tenantID {
				s.removeLocked(e)
			}
		}
		s.mu.Unlock()
	}
}

// Stats are the Filter's counters.
type Stats struct {
	Flows    int64  `json:"flows"`     // tracked now
	MaxFlows int64  `json:"max_flows"` // the bound
	Refused  uint64 `json:"refused"`   // new flows dropped for a full table, since New
	// NoTenant counts packets of tenants that have no rule set.
	NoTenant uint64 `json:"no_tenant"`
}

// Stats returns the Filter's counters.
func (f *Filter) Stats() Stats {
	return Stats{Flows: f.flows.Load(), MaxFlows: f.maxFlows, Refused: f.refused.Load(), NoTenant: f.noTenant.Load()}
}

// TenantStats are one tenant's counters.
type TenantStats struct {
	Flows int64 `json:"flows"`
	// Generation counts the rule sets installed (1 for the first).
	Generation uint32 `json:"generation"`
	// Drops counts dropped packets by direction ("from_peer", "to_peer") and reason.
	Drops map[string]map[string]uint64 `json:"drops"`
	// Rules are the current rule set's hit counters (see RuleSet.Stats).
	Rules []RuleStat `json:"rules"`
}

// TenantStats returns the tenant's counters; false when it has no rule set.
func (f *Filter) TenantStats(tenantID int64) (TenantStats, bool) {
	t := (*f.tenants.Load())[tenantID]
	if t == nil {
		return TenantStats{}, false
	}
	tr := t.rules.Load()
	st := TenantStats{
		Flows:      t.flows.Load(),
		Generation: tr.gen,
		Drops:      make(map[string]map[string]uint64, 2),
		Rules:      tr.rs.Stats(),
	}
	for d := FromPeer; d <= ToPeer; d++ {
		m := make(map[string]uint64, numReasons-1)
		for r := ReasonNone + 1; r < numReasons; r++ {
			m[r.String()] = t.drops[d][r].Load()
		}
		st.Drops[d.String()] = m
	}
	return st, true
}
