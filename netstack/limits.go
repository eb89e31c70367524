package netstack

import (
	"log/slog"
	"sync"
	"time"
)

// Fair shares of the exit. Every flow (a TCP flow terminated in gVisor, a UDP flow of the
// relay or the DNS service, an echo request waiting for its reply) is counted against its
// peer, its tenant and the node, and those that hold a host socket against the descriptor
// budget, so that one peer or tenant cannot take what the others need. A flow that never
// got a reply (a UDP flow before its first datagram back, a TCP flow still dialling, an echo
// request) is "unreplied"; when a new flow would exceed a bound, the oldest unreplied flow in
// reach is closed to make room, like Linux conntrack's early drop of unassured entries; only
// when there is none is the new flow refused. A flood thus recycles its own slots while the
// offender's established flows, and everyone else's, go on.

// Limit names a bound on the exit's flows: the one that refused or evicted a flow.
type Limit uint8

// Limits, in the order they are checked.
const (
	limitNone Limit = iota
	// LimitPeer: the peer's flows (Owner.MaxPeerFlows). Room is made from the peer's own
	// unreplied flows only.
	LimitPeer
	// LimitTenant: the tenant's flows (Owner.MaxTenantFlows). Room is made from the peer's own
	// unreplied flows, else the tenant's.
	LimitTenant
	// LimitFDs: host sockets (Config.FDBudget). Room is made from the peer's own unreplied
	// flows that hold a socket, else the node's.
	LimitFDs
	// LimitNode: the node's flows (Config.MaxFlows). Room is made like for LimitFDs, from any
	// kind of flow.
	LimitNode
	numLimits
)

var limitNames = [numLimits]string{
	limitNone:   "none",
	LimitPeer:   "flow_limit_peer",
	LimitTenant: "flow_limit_tenant",
	LimitFDs:    "fd_budget",
	LimitNode:   "flow_limit_node",
}

func (l Limit) String() string {
	if l < numLimits {
		return limitNames[l]
	}
	return "unknown"
}

// Owner says whose a client address is, and bounds the flows of that peer and its tenant.
// Peers and tenants are told apart by ID; the names are for the log.
type Owner struct {
	Peer, Tenant         int64
	PeerName, TenantName string
	// MaxPeerFlows and MaxTenantFlows bound the flows of the peer and of all the tenant's
	// peers together. 0: no bound.
	MaxPeerFlows, MaxTenantFlows int
}

// flowKind is what a counted flow is; TCP and UDP flows hold a host socket.
type flowKind uint8

const (
	kindTCP flowKind = iota
	kindUDP
	kindICMP
	numKinds
)

func (k flowKind) holdsFD() bool { return k != kindICMP }

// scope indexes the three lists an unreplied flow is on.
type scope uint8

const (
	scopePeer scope = iota
	scopeTenant
	scopeNode
	numScopes
)

const (
	// maxEvictions bounds the flows one admission closes (more than one only after a
	// limit was lowered below what is open).
	maxEvictions = 4
	// victimScan bounds the unreplied flows looked at for one that holds a socket.
	victimScan = 8
	// limitLogEvery is the least time between two log lines about one peer and limit.
	limitLogEvery = time.Minute
	// limitLogKeys bounds the log's memory of peers; older entries go first.
	limitLogKeys = 4096
)

// acctFlow is one counted flow. Its fields are guarded by acct.mu.
type acctFlow struct {
	peer   *peerAcct
	kind   flowKind
	target flowCloser // aborted when the flow is evicted
	listed bool       // unreplied: on the lists below, a candidate for eviction
	done   bool       // released: counted no more
	links  [numScopes]struct{ prev, next *acctFlow }
}

// acctList is a list of unreplied flows, oldest first, through one scope's links.
type acctList struct {
	head, tail *acctFlow
}

func (l *acctList) push(f *acctFlow, s scope) {
	f.links[s].prev, f.links[s].next = l.tail, nil
	if l.tail != nil {
		l.tail.links[s].next = f
	} else {
		l.head = f
	}
	l.tail = f
}

func (l *acctList) remove(f *acctFlow, s scope) {
	lk := &f.links[s]
	if lk.prev != nil {
		lk.prev.links[s].next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		lk.next.links[s].prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	lk.prev, lk.next = nil, nil
}

// oldest returns the oldest flow on the list, or with needFD the oldest of the first
// victimScan that holds a socket; nil when there is none.
func (l *acctList) oldest(s scope, needFD bool) *acctFlow {
	n := 0
	for f := l.head; f != nil && n < victimScan; f = f.links[s].next {
		if !needFD || f.kind.holdsFD() {
			return f
		}
		n++
	}
	return nil
}

// flowCounts counts open flows by kind.
type flowCounts [numKinds]int

func (c *flowCounts) total() int { return c[kindTCP] + c[kindUDP] + c[kindICMP] }

type peerAcct struct {
	id        int64
	tenant    *tenantAcct
	n         flowCounts
	unreplied acctList
}

type tenantAcct struct {
	n         flowCounts
	unreplied acctList
	refused   [numLimits]uint64 // new flows (their packets) refused, by limit
	evicted   [numLimits]uint64 // unreplied flows of the tenant closed to make room, by limit
}

type logKey struct {
	peer  int64
	limit Limit
}

// acct counts the exit's flows and enforces the limits. Its methods are safe for
// concurrent use; none calls out (abort, log handlers aside) while holding mu.
type acct struct {
	log      *slog.Logger
	now      func() int64 // monotonic nanoseconds
	maxFlows int
	fdBudget int

	mu        sync.Mutex // guards everything below and every acctFlow
	peers     map[int64]*peerAcct
	tenants   map[int64]*tenantAcct
	n         flowCounts
	fds       int
	unreplied acctList
	logged    map[logKey]int64 // when each peer and limit was last logged
}

func newAcct(maxFlows, fdBudget int, now func() int64, log *slog.Logger) *acct {
	return &acct{
		log: log, now: now, maxFlows: maxFlows, fdBudget: fdBudget,
		peers: map[int64]*peerAcct{}, tenants: map[int64]*tenantAcct{}, logged: map[logKey]int64{},
	}
}

// admit counts a new unreplied flow of kind for o, whose target is aborted should it be
// evicted. When that would exceed a limit it evicts unreplied flows to make room (see
// Limit); when it cannot, it refuses. It returns the flow, or nil and the limit that
// refused it, and appends the evicted flows to victims: the caller must abort them, holding
// no lock their abort takes.
func (a *acct) admit(o *Owner, kind flowKind, target flowCloser, victims []flowCloser) (*acctFlow, Limit, []flowCloser) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.peerLocked(o)
	for evicted := 0; ; evicted++ {
		lim := a.overLocked(p, o, kind)
		if lim == limitNone {
			break
		}
		a.noteLocked(o, p, lim)
		v := a.victimLocked(p, lim)
		if v == nil || evicted == maxEvictions {
			p.tenant.refused[lim]++
			a.forgetPeerLocked(p)
			return nil, lim, victims
		}
		v.peer.tenant.evicted[lim]++
		a.releaseLocked(v)
		victims = append(victims, v.target)
	}
	a.peers[o.Peer] = p // releasing p's last flow above forgot it
	f := &acctFlow{peer: p, kind: kind, target: target, listed: true}
	p.n[kind]++
	p.tenant.n[kind]++
	a.n[kind]++
	if kind.holdsFD() {
		a.fds++
	}
	p.unreplied.push(f, scopePeer)
	p.tenant.unreplied.push(f, scopeTenant)
	a.unreplied.push(f, scopeNode)
	return f, limitNone, victims
}

// peerLocked returns o's peer, creating it (and its tenant) on first use.
func (a *acct) peerLocked(o *Owner) *peerAcct {
	p := a.peers[o.Peer]
	if p == nil {
		t := a.tenants[o.Tenant]
		if t == nil {
			t = &tenantAcct{}
			a.tenants[o.Tenant] = t
		}
		p = &peerAcct{id: o.Peer, tenant: t}
		a.peers[o.Peer] = p
	}
	return p
}

// forgetPeerLocked drops p once it has no flows; tenants stay, for their counters.
func (a *acct) forgetPeerLocked(p *peerAcct) {
	if p.n.total() == 0 && a.peers[p.id] == p {
		delete(a.peers, p.id)
	}
}

// overLocked returns the first limit a new flow of kind for p would exceed.
func (a *acct) overLocked(p *peerAcct, o *Owner, kind flowKind) Limit {
	switch {
	case o.MaxPeerFlows > 0 && p.n.total() >= o.MaxPeerFlows:
		return LimitPeer
	case o.MaxTenantFlows > 0 && p.tenant.n.total() >= o.MaxTenantFlows:
		return LimitTenant
	case kind.holdsFD() && a.fds >= a.fdBudget:
		return LimitFDs
	case a.n.total() >= a.maxFlows:
		return LimitNode
	}
	return limitNone
}

// victimLocked picks the unreplied flow to evict for a new flow of p over lim, or nil.
func (a *acct) victimLocked(p *peerAcct, lim Limit) *acctFlow {
	needFD := lim == LimitFDs
	if v := p.unreplied.oldest(scopePeer, needFD); v != nil {
		return v
	}
	switch lim {
	case LimitTenant:
		return p.tenant.unreplied.oldest(scopeTenant, false)
	case LimitFDs, LimitNode:
		return a.unreplied.oldest(scopeNode, needFD)
	}
	return nil
}

// assure marks f replied: it is never evicted. False when f was evicted (or released)
// already: the caller's flow is being aborted.
func (a *acct) assure(f *acctFlow) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f.done {
		return false
	}
	a.unlistLocked(f)
	return true
}

// release stops counting f. Idempotent.
func (a *acct) release(f *acctFlow) {
	a.mu.Lock()
	a.releaseLocked(f)
	a.mu.Unlock()
}

func (a *acct) releaseLocked(f *acctFlow) {
	if f.done {
		return
	}
	f.done = true
	a.unlistLocked(f)
	p := f.peer
	p.n[f.kind]--
	p.tenant.n[f.kind]--
	a.n[f.kind]--
	if f.kind.holdsFD() {
		a.fds--
	}
	a.forgetPeerLocked(p)
}

func (a *acct) unlistLocked(f *acctFlow) {
	if !f.listed {
		return
	}
	f.listed = false
	f.peer.unreplied.remove(f, scopePeer)
	f.peer.tenant.unreplied.remove(f, scopeTenant)
	a.unreplied.remove(f, scopeNode)
}

// noteLocked logs that p reached lim, at most once per limitLogEvery for a peer and limit.
func (a *acct) noteLocked(o *Owner, p *peerAcct, lim Limit) {
	now := a.now()
	k := logKey{o.Peer, lim}
	if last, ok := a.logged[k]; ok && now-last < int64(limitLogEvery) {
		return
	}
	if len(a.logged) >= limitLogKeys {
		for k, at := range a.logged {
			if now-at >= int64(limitLogEvery) {
				delete(a.logged, k)
			}
		}
		if len(a.logged) >= limitLogKeys {
			return // thousands of peers at their limits within a minute: they are counted
		}
	}
	a.logged[k] = now
	var max int
	switch lim {
	case LimitPeer:
		max = o.MaxPeerFlows
	case LimitTenant:
		max = o.MaxTenantFlows
	case LimitFDs:
		max = a.fdBudget
	case LimitNode:
		max = a.maxFlows
	}
	t := p.tenant
	a.log.Warn("exit flow limit reached: new flows close the oldest flows that never got a reply, or are refused when there is none (logged once a minute per peer and limit)",
		"tenant", o.TenantName, "peer", o.PeerName, "limit", lim.String(), "max", max,
		"peer_flows", p.n.total(), "tenant_flows", t.n.total(), "node_flows", a.n.total(), "host_sockets", a.fds,
		"tenant_evicted", t.evicted[lim], "tenant_refused", t.refused[lim])
}

// TenantFlows is one tenant's share of the exit.
type TenantFlows struct {
	// TCP, UDP and ICMP are the flows open now: TCP flows (dialling or relaying), UDP flows
	// (the relay's and the DNS service's), echo requests waiting for a reply.
	TCP, UDP, ICMP int
	// Refused counts packets that would have started a flow of the tenant's and were
	// dropped at a limit, by Limit name.
	Refused map[string]uint64
	// Evicted counts the tenant's flows that never got a reply and were closed to make room,
	// by the Limit name that needed the room.
	Evicted map[string]uint64
}

// tenantFlows returns the counters of every tenant that ever had a flow.
func (a *acct) tenantFlows() map[int64]TenantFlows {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[int64]TenantFlows, len(a.tenants))
	for id, t := range a.tenants {
		tf := TenantFlows{TCP: t.n[kindTCP], UDP: t.n[kindUDP], ICMP: t.n[kindICMP],
			Refused: map[string]uint64{}, Evicted: map[string]uint64{}}
		for l := limitNone + 1; l < numLimits; l++ {
			if t.refused[l] > 0 {
				tf.Refused[l.String()] = t.refused[l]
			}
			if t.evicted[l] > 0 {
				tf.Evicted[l.String()] = t.evicted[l]
			}
		}
		out[id] = tf
	}
	return out
}

// counts returns the node's open flows and the host sockets they hold.
func (a *acct) counts() (flows, fds int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n.total(), a.fds
}
