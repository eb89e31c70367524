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
	// the whole table; SetLimits overrides it for a tenant. Default: MaxFlows (no separate
	// bound).
	MaxFlowsPerTenant int
	// MaxFlowsPerPeer bounds the flows one Peer opens; SetLimits overrides it for a tenant's
	// peers. Default: MaxFlowsPerTenant.
	MaxFlowsPerPeer int
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
	if c.MaxFlowsPerPeer < 0 {
		return fmt.Errorf("firewall: MaxFlowsPerPeer is %d: use a positive number, or 0 for MaxFlowsPerTenant", c.MaxFlowsPerPeer)
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
	maxPer   int64 // a tenant's bound, unless SetLimits set one
	maxPeer  int64 // a peer's bound, unless SetLimits set one
	seed     uint64

	mu      sync.Mutex                        // serialises tenant changes
	tenants atomic.Pointer[map[int64]*tenant] // copied on change, read without locks

	flows        atomic.Int64  // tracked flows over all tenants
	refused      atomic.Uint64 // new flows refused for a full table, since New
	refusedSwept uint64        // refused as of the last Sweep; guarded by sweepMu
	loggedFull   time.Duration // when Sweep last logged a full table; guarded by sweepMu
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
	max     atomic.Int64 // bound on flows
	maxPeer atomic.Int64 // bound on one Peer's flows
	evicted atomic.Uint64
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
	if cfg.MaxFlowsPerPeer == 0 || cfg.MaxFlowsPerPeer > cfg.MaxFlowsPerTenant {
		cfg.MaxFlowsPerPeer = cfg.MaxFlowsPerTenant
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
		maxPeer:  int64(cfg.MaxFlowsPerPeer),
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
		t.max.Store(f.maxPer)
		t.maxPeer.Store(f.maxPeer)
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

// SetLimits bounds the tracked flows of a tenant that has a rule set (SetRuleSet): maxFlows
// for all of them, maxPerPeer for those of one Peer; 0 takes the Config's bound. Flows
// above a lowered bound stay until they end; new ones wait for room.
func (f *Filter) SetLimits(tenantID int64, maxFlows, maxPerPeer int) {
	t := (*f.tenants.Load())[tenantID]
	if t == nil {
		return
	}
	if maxFlows <= 0 {
		maxFlows = int(f.maxPer)
	}
	if maxPerPeer <= 0 {
		maxPerPeer = int(f.maxPeer)
	}
	t.max.Store(int64(maxFlows))
	t.maxPeer.Store(int64(maxPerPeer))
}

// RuleSet returns the tenant's current rule set, or nil.
func (f *Filter) RuleSet(tenantID int64) *RuleSet {
	if t := (*f.tenants.Load())[tenantID]; t != nil {
		return t.rules.Load().rs
	}
	return nil
}

// Check is CheckAt with no Peer (the per-peer bound does not apply) at the current time.
func (f *Filter) Check(tenantID int64, pkt *Packet, dir Direction) (Verdict, Reason) {
	return f.CheckAt(tenantID, nil, pkt, dir, f.now())
}

// Now reads the Filter's clock (Config.Now), for CheckAt.
func (f *Filter) Now() time.Duration { return f.now() }

// CheckAt decides one packet of a tenant at time now: pkt was filled by Packet.Parse and dir
// says whether a peer sent it or it is arriving for a peer; peer is that peer's share of the
// table, which a new flow counts against (nil: none).
//
// The packet path reads the clock once per batch of packets instead of once per packet (a
// clock read costs about as much as a tracked flow's lookup): now is a reading of Now, and
// must not be older than a reading taken before the previous Sweep.
//
// Rules are matched on the packet's addresses and ports, so a flow gets the same verdict
// whichever side it is checked from; dir is recorded for counters.
//
// A packet of a tracked flow passes (replies included) unless the tenant's rule set changed
// since the flow was allowed and the new one denies it; an ICMP error passes when it quotes
// a packet of a tracked flow and is addressed to that packet's sender; a later fragment
// passes when the first fragment of its packet passed. Any other packet starts a new flow:
// the first matching rule decides and an allowed flow is tracked, unless a bound (the
// peer's, the tenant's, the table's) leaves no room even after evicting one of the peer's
// flows without a reply (see Peer).
// TCP flows start with a SYN, or mid-stream with an ACK (so flows survive a restart of the
// node, or a client moving to another node, like Linux with nf_conntrack_tcp_loose), from
// either end: an ACK starts a flow when the rules allow it either way round, so the server's
// side of a connection the client may open picks it up too; ICMP echo requests start ICMP flows; other
// ICMP messages are decided by the rules each time and not tracked.
//
// Every Drop is counted by tenant, direction and reason, and every new-flow decision by
// rule; a new flow refused at a bound is counted as a drop of its reason, and each bound a
// peer reaches is logged at most once a minute.
func (f *Filter) CheckAt(tenantID int64, peer *Peer, pkt *Packet, dir Direction, now time.Duration) (Verdict, Reason) {
	t := (*f.tenants.Load())[tenantID]
	if t == nil {
		f.noTenant.Add(1)
		return Drop, ReasonNoPolicy
	}
	return f.check(t, peer, pkt, dir, int64(now))
}

func (f *Filter) check(t *tenant, peer *Peer, pkt *Packet, dir Direction, now int64) (Verdict, Reason) {
	tr := t.rules.Load()
	var r Reason
	switch {
	case pkt.Frag == LaterFragment:
		r = f.checkFragment(t, tr, pkt, now)
	case (pkt.Proto == ipprotoICMP || pkt.Proto == ipprotoICMPv6) && isICMPError(pkt.Proto, pkt.ICMPType):
		r = f.checkRelated(t, tr, pkt, now)
	default:
		r = f.checkFlow(t, peer, tr, pkt, now)
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

func (f *Filter) checkFlow(t *tenant, peer *Peer, tr *tenantRules, pkt *Packet, now int64) Reason {
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
	origAtoB := aToB
	if state == ctEstablished {
		// Picked up mid-stream: the packet may be the server's, e.g. a download whose client
		// moved here from another node. The flow is allowed if it is either way round; it
		// is then tracked as allowed, so a policy change re-checks it that way.
		rev := Flow{Src: pkt.Dst, Dst: pkt.Src, Proto: pkt.Proto, DstPort: pkt.SrcPort}
		act, i, reversed := tr.rs.decideEither(&fl, &rev)
		if act != Allow {
			return denyReason(i)
		}
		if reversed {
			origAtoB = !aToB
		}
	} else if act, i := tr.rs.decide(&fl); act != Allow {
		return denyReason(i)
	}
	if r := f.reserve(t, peer, now); r != ReasonNone {
		return r
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if old, r := f.lookupLocked(s, &k, t, tr, now); r == ReasonNone && old != nil {
		// Another packet of the flow got here first.
		t.release()
		if peer != nil {
			peer.mu.Lock()
			peer.flows--
			peer.mu.Unlock()
		}
		old.updateLocked(pkt, aToB == old.origAtoB, now, &f.timeouts)
		return ReasonNone
	}
	e = s.allocLocked()
	*e = entry{key: k, tenant: t, gen: tr.gen, origAtoB: origAtoB, state: state}
	e.advanceLocked(pkt, true, now, &f.timeouts)
	if peer != nil {
		e.peer = peer
		peer.mu.Lock()
		peer.pushLocked(e) // a new flow has no reply yet
		peer.mu.Unlock()
	}
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

// maxEvictions bounds the entries one new flow evicts (more than one only after a bound
// was lowered below what is tracked).
const maxEvictions = 4

// limitLogEvery is the least time between two log lines about one peer and bound, or about
// a full table.
const limitLogEvery = time.Minute

// reserve counts a new flow of the tenant (and of peer, unless nil) against the bounds. At
// the peer's, the tenant's or the table's bound it first evicts the peer's oldest evictable
// flow (see Peer); when the peer has none it returns the reason the flow is refused.
func (f *Filter) reserve(t *tenant, peer *Peer, now int64) Reason {
	if peer != nil {
		if r := f.reservePeer(t, peer, now); r != ReasonNone {
			return r
		}
	}
	for i := 0; t.flows.Add(1) > t.max.Load(); i++ {
		t.flows.Add(-1)
		if i == 0 {
			f.note(t, peer, ReasonTenantLimit, now)
		}
		if peer == nil || i == maxEvictions || !f.evictOne(t, peer) {
			unreservePeer(peer)
			return ReasonTenantLimit
		}
	}
	for i := 0; f.flows.Add(1) > f.maxFlows; i++ {
		f.flows.Add(-1)
		if peer == nil || i == maxEvictions || !f.evictOne(t, peer) {
			t.flows.Add(-1)
			unreservePeer(peer)
			f.refused.Add(1)
			return ReasonConntrackFull
		}
	}
	return ReasonNone
}

// reservePeer counts a new flow against peer's bound, evicting its oldest evictable flow
// when it is at the bound.
func (f *Filter) reservePeer(t *tenant, peer *Peer, now int64) Reason {
	max := int(t.maxPeer.Load())
	for i := 0; ; i++ {
		peer.mu.Lock()
		if peer.flows < max {
			peer.flows++
			peer.mu.Unlock()
			return ReasonNone
		}
		peer.mu.Unlock()
		if i == 0 {
			f.note(t, peer, ReasonPeerLimit, now)
		}
		if i == maxEvictions || !f.evictOne(t, peer) {
			return ReasonPeerLimit
		}
	}
}

func unreservePeer(peer *Peer) {
	if peer != nil {
		peer.mu.Lock()
		peer.flows--
		peer.mu.Unlock()
	}
}

// evictOne forgets peer's oldest evictable flow; false when it has none. The caller holds
// no shard lock.
func (f *Filter) evictOne(t *tenant, peer *Peer) bool {
	for range maxEvictions {
		peer.mu.Lock()
		v := peer.head
		if v == nil {
			peer.mu.Unlock()
			return false
		}
		k := v.key // stable while v is listed: removeLocked unlists before it clears
		peer.mu.Unlock()

		s := f.shard(k.hash(f.seed))
		s.mu.Lock()
		ok := false
		if e := s.flows[k]; e == v && e.peer == peer {
			peer.mu.Lock()
			ok = e.listed
			peer.mu.Unlock()
			if ok {
				s.removeLocked(e)
			}
		}
		s.mu.Unlock()
		if ok {
			t.evicted.Add(1)
			return true
		}
		// v changed under us (answered, removed, reused): look again.
	}
	return false
}

// note logs that peer reached bound r (ReasonPeerLimit, ReasonTenantLimit), at most once per
// limitLogEvery for a peer and bound.
func (f *Filter) note(t *tenant, peer *Peer, r Reason, now int64) {
	if peer == nil {
		return
	}
	i := 0
	if r == ReasonTenantLimit {
		i = 1
	}
	peer.mu.Lock()
	if peer.logged[i] && now-peer.lastLog[i] < int64(limitLogEvery) {
		peer.mu.Unlock()
		return
	}
	peer.logged[i], peer.lastLog[i] = true, now
	flows := peer.flows
	peer.mu.Unlock()
	max := t.maxPeer.Load()
	if r == ReasonTenantLimit {
		max = t.max.Load()
	}
	tenantName, peerName := peer.names()
	f.log.Warn("connection tracking limit reached: new flows replace the oldest flows without a reply, or are dropped when there is none (logged once a minute per peer and limit)",
		"tenant", tenantName, "peer", peerName, "limit", r.String(), "max", max,
		"peer_flows", flows, "tenant_flows", t.flows.Load(), "tenant_evicted", t.evicted.Load(),
		"tenant_refused", t.drops[FromPeer][r].Load()+t.drops[ToPeer][r].Load())
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
	if refused := f.refused.Load(); refused != f.refusedSwept && (f.loggedFull == 0 || time.Duration(now)-f.loggedFull >= limitLogEvery) {
		f.log.Warn("flow table full: new flows were dropped (logged at most once a minute)",
			"refused", refused-f.refusedSwept, "max_flows", f.maxFlows)
		f.refusedSwept = refused
		f.loggedFull = max(time.Duration(now), 1)
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
	Refused  uint64 `json:"refused"`   // new flows dropped for a full table (ReasonConntrackFull), since New
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
	// MaxFlows and MaxFlowsPerPeer are the tenant's bounds (see SetLimits).
	MaxFlows        int64 `json:"max_flows"`
	MaxFlowsPerPeer int64 `json:"max_flows_per_peer"`
	// Evicted counts the tenant's flows forgotten early to make room for a new flow of
	// their peer (see Peer).
	Evicted uint64 `json:"evicted"`
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
		Flows:           t.flows.Load(),
		MaxFlows:        t.max.Load(),
		MaxFlowsPerPeer: t.maxPeer.Load(),
		Evicted:         t.evicted.Load(),
		Generation:      tr.gen,
		Drops:           make(map[string]map[string]uint64, 2),
		Rules:           tr.rs.Stats(),
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
