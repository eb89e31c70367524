package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// View is what Compile needs to know of one tenant: its peers and its sites. It is read
// during Compile only; the RuleSet keeps no reference to it.
type View struct {
	Peers []ViewPeer
	Sites []ViewSite
}

// ViewPeer is one peer of the tenant. Addrs are its overlay addresses (IPv4 as 4-byte
// addresses); Groups names the groups it belongs to.
type ViewPeer struct {
	Name   string
	Addrs  []netip.Addr
	Groups []string
}

// ViewSite is one site of the tenant: a network behind a site connector.
type ViewSite struct {
	Name     string
	Prefixes []netip.Prefix
}

// Flow is what rules match on: the addresses of a flow's first packet, its IP protocol
// number and its destination port (0 for protocols without ports).
type Flow struct {
	Src, Dst netip.Addr
	Proto    uint8
	DstPort  uint16
}

// Protocol classes: the port tries are kept per class.
const (
	classTCP = iota
	classUDP
	classICMP
	classOther
	numClasses
)

func protoClass(proto uint8) int {
	switch proto {
	case ipprotoTCP:
		return classTCP
	case ipprotoUDP:
		return classUDP
	case ipprotoICMP, ipprotoICMPv6:
		return classICMP
	}
	return classOther
}

// maxPeerLists bounds the lists a peer contributes to a lookup; a peer in more groups has
// its lists merged at compile time.
const maxPeerLists = 8

// addrDim indexes one address dimension (source or destination) of the rules.
type addrDim struct {
	perPeer [][][]int32 // by peer index: the lists of the rules naming the peer, its groups or (as a source) any peer
	v4, v6  ptrie       // rules naming prefixes and sites (and, as a destination, any)
}

func (d *addrDim) collect(rs *RuleSet, a netip.Addr, u *union) {
	if p, ok := rs.peerOf[a]; ok {
		for _, l := range d.perPeer[p] {
			u.add(l)
		}
	}
	if a.Is4() {
		d.v4.collect(addrKey(a), u)
	} else {
		d.v6.collect(addrKey(a), u)
	}
}

// RuleSet is a tenant's compiled policy: immutable once Compile returns it, safe for
// concurrent use, and swapped whole (Filter.SetRuleSet) rather than edited. Only its hit
// counters change.
type RuleSet struct {
	def     Action
	defLine int
	rules   []compiledRule
	// hits[i] counts rule i's decisions and defHits the default's. They are pointers so
	// that a rule set compiled from the same rules carries them on (CarryHits).
	hits    []*ruleHits
	defHits *ruleHits

	peerOf   map[netip.Addr]int32 // overlay address → peer index
	src, dst addrDim
	ports    [numClasses]ptrie
	arena    []int32 // backing store of every rule list

	scratch sync.Pool // *matchScratch
}

type compiledRule struct {
	action Action
	line   int
	text   string
}

type matchScratch struct {
	dims [3]union
}

// Compile builds the RuleSet of policy p for the tenant described by v. It reports every
// reference to a group, peer or site that v lacks, with its line. When those are the only
// problems, Compile returns a usable RuleSet in which the unknown references match nothing,
// together with a *PolicyError that wraps ErrUnresolved: setting a policy should refuse it,
// while recompiling after a peer, group or site disappeared should use it (an empty group
// holds nobody). Other problems (an inconsistent view) return a nil RuleSet.
func Compile(p *Policy, v *View) (*RuleSet, error) {
	perr := &PolicyError{}
	if len(p.Rules) > MaxRules {
		perr.add(0, "the policy has %d rules, at most %d are allowed", len(p.Rules), MaxRules)
		return nil, perr
	}
	rs := &RuleSet{
		def:     p.Default,
		defLine: p.DefaultLine,
		rules:   make([]compiledRule, len(p.Rules)),
		hits:    make([]*ruleHits, len(p.Rules)),
		defHits: new(ruleHits),
		peerOf:  make(map[netip.Addr]int32),
	}
	rs.scratch.New = func() any {
		s := &matchScratch{}
		for i := range s.dims {
			s.dims[i].lists = make([][]int32, 0, maxUnionLists)
		}
		return s
	}

	// The tenant's names.
	peerIdx := make(map[string]int32, len(v.Peers))
	groups := make(map[string][]int32) // group → member peers
	for i, vp := range v.Peers {
		if _, dup := peerIdx[vp.Name]; dup {
			perr.add(0, "the tenant has two peers named %q", vp.Name)
			continue
		}
		peerIdx[vp.Name] = int32(i)
		for _, a := range vp.Addrs {
			a = a.Unmap()
			if !a.IsValid() {
				continue
			}
			if other, dup := rs.peerOf[a]; dup && other != int32(i) {
				perr.add(0, "peers %q and %q both have the address %s", v.Peers[other].Name, vp.Name, a)
				continue
			}
			rs.peerOf[a] = int32(i)
		}
		for _, g := range vp.Groups {
			if m := groups[g]; len(m) == 0 || m[len(m)-1] != int32(i) {
				groups[g] = append(m, int32(i))
			}
		}
	}
	sites := make(map[string][]netip.Prefix, len(v.Sites))
	for _, s := range v.Sites {
		if _, dup := sites[s.Name]; dup {
			perr.add(0, "the tenant has two sites named %q", s.Name)
			continue
		}
		sites[s.Name] = s.Prefixes
	}
	if len(perr.Problems) > 0 {
		return nil, perr
	}

	// Index the rules, each under every value it names, in rule order so that lists stay
	// sorted.
	type atomLists struct {
		anyPeer []int32
		group   map[string][]int32
		peer    map[int32][]int32
	}
	srcAtoms := atomLists{group: map[string][]int32{}, peer: map[int32][]int32{}}
	dstAtoms := atomLists{group: map[string][]int32{}, peer: map[int32][]int32{}}
	appendRule := func(l []int32, r int32) []int32 {
		if len(l) > 0 && l[len(l)-1] == r {
			return l
		}
		return append(l, r)
	}
	insertPrefix := func(d *addrDim, pfx netip.Prefix, r int32) {
		pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-unmapBits(pfx.Addr()))
		if !pfx.IsValid() {
			return
		}
		if pfx.Addr().Is4() {
			d.v4.insert(addrKey(pfx.Addr()), pfx.Bits(), r)
		} else {
			d.v6.insert(addrKey(pfx.Addr()), pfx.Bits(), r)
		}
	}
	unresolved := func(line int, ep Endpoint) {
		switch ep.Kind {
		case EndpointGroup:
			perr.add(line, "no peer of this tenant is in group %q: add one to it (popgate peer add --group %s ...) or remove the reference", ep.Name, ep.Name)
		case EndpointPeer:
			perr.add(line, "the tenant has no peer %q: add it (popgate peer add) or remove the reference", ep.Name)
		case EndpointSite:
			perr.add(line, "the tenant has no site %q: create it (a site connector peer with its LAN prefixes) or remove the reference", ep.Name)
		}
	}
	index := func(d *addrDim, atoms *atomLists, eps []Endpoint, r int32, line int, isSrc bool) {
		for _, ep := range eps {
			switch ep.Kind {
			case EndpointAny:
				if isSrc {
					atoms.anyPeer = appendRule(atoms.anyPeer, r)
				} else {
					d.v4.insert(ukey{}, 0, r)
					d.v6.insert(ukey{}, 0, r)
				}
			case EndpointGroup:
				if _, ok := groups[ep.Name]; !ok {
					unresolved(line, ep)
					continue
				}
				atoms.group[ep.Name] = appendRule(atoms.group[ep.Name], r)
			case EndpointPeer:
				pi, ok := peerIdx[ep.Name]
				if !ok {
					unresolved(line, ep)
					continue
				}
				atoms.peer[pi] = appendRule(atoms.peer[pi], r)
			case EndpointSite:
				pfxs, ok := sites[ep.Name]
				if !ok {
					unresolved(line, ep)
					continue
				}
				for _, pfx := range pfxs {
					insertPrefix(d, pfx.Masked(), r)
				}
			case EndpointPrefix:
				insertPrefix(d, ep.Prefix.Masked(), r)
			}
		}
	}
	for i := range p.Rules {
		rule := &p.Rules[i]
		r := int32(i)
		rs.hits[i] = new(ruleHits)
		rs.rules[i] = compiledRule{action: rule.Action, line: rule.Line, text: rule.String()}
		index(&rs.src, &srcAtoms, rule.Src, r, rule.Line, true)
		index(&rs.dst, &dstAtoms, rule.Dst, r, rule.Line, false)
		var classes []int
		switch rule.Proto {
		case ProtoTCP:
			classes = []int{classTCP}
		case ProtoUDP:
			classes = []int{classUDP}
		case ProtoICMP:
			classes = []int{classICMP}
		default:
			classes = []int{classTCP, classUDP, classICMP, classOther}
		}
		var ports []PortRange
		if rule.Proto.hasPorts() && len(rule.Ports) > 0 {
			ports = mergePorts(rule.Ports)
		}
		for _, c := range classes {
			if ports == nil {
				rs.ports[c].insert(ukey{}, 0, r)
				continue
			}
			for _, pr := range ports {
				portBlocks(pr.Lo, pr.Hi, func(start uint16, bits int) {
					rs.ports[c].insert(portKey(start), bits, r)
				})
			}
		}
	}

	// Give each peer the lists that name it, merging them when there are many.
	peerLists := func(atoms *atomLists, pi int32, vp *ViewPeer, withAny bool) [][]int32 {
		var ls [][]int32
		if withAny && len(atoms.anyPeer) > 0 {
			ls = append(ls, atoms.anyPeer)
		}
		seen := map[string]bool{}
		for _, g := range vp.Groups {
			if l := atoms.group[g]; len(l) > 0 && !seen[g] {
				seen[g] = true
				ls = append(ls, l)
			}
		}
		if l := atoms.peer[pi]; len(l) > 0 {
			ls = append(ls, l)
		}
		if len(ls) > maxPeerLists {
			var merged []int32
			for _, l := range ls {
				merged = append(merged, l...)
			}
			slices.Sort(merged)
			ls = [][]int32{slices.Compact(merged)}
		}
		return ls
	}
	rs.src.perPeer = make([][][]int32, len(v.Peers))
	rs.dst.perPeer = make([][][]int32, len(v.Peers))
	for i := range v.Peers {
		rs.src.perPeer[i] = peerLists(&srcAtoms, int32(i), &v.Peers[i], true)
		rs.dst.perPeer[i] = peerLists(&dstAtoms, int32(i), &v.Peers[i], false)
	}
	rs.compact()

	if len(perr.Problems) > 0 {
		perr.unresolved = true
		return rs, perr
	}
	return rs, nil
}

// unmapBits is how many prefix bits an IPv4-mapped IPv6 address loses when unmapped.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// compact moves every rule list into one array. Lists shared between peers stay shared.
func (rs *RuleSet) compact() {
	total := 0
	var count func(nd *tnode)
	count = func(nd *tnode) {
		if nd != nil {
			total += len(nd.rules)
			count(nd.child[0])
			count(nd.child[1])
		}
	}
	for _, d := range []*addrDim{&rs.src, &rs.dst} {
		count(d.v4.root)
		count(d.v6.root)
	}
	for c := range rs.ports {
		count(rs.ports[c].root)
	}
	rs.arena = make([]int32, 0, total)
	for _, d := range []*addrDim{&rs.src, &rs.dst} {
		d.v4.compact(&rs.arena)
		d.v6.compact(&rs.arena)
	}
	for c := range rs.ports {
		rs.ports[c].compact(&rs.arena)
	}
}

// match returns the index of the first rule matching f, or -1 when none does.
func (rs *RuleSet) match(f *Flow) int {
	if len(rs.rules) == 0 || !f.Src.IsValid() || !f.Dst.IsValid() {
		return -1
	}
	s := rs.scratch.Get().(*matchScratch)
	src, dst, prt := &s.dims[0], &s.dims[1], &s.dims[2]
	src.reset()
	dst.reset()
	prt.reset()
	r := int32(noRule)
	rs.src.collect(rs, f.Src, src)
	if src.total > 0 {
		rs.dst.collect(rs, f.Dst, dst)
		if dst.total > 0 {
			rs.ports[protoClass(f.Proto)].collect(portKey(f.DstPort), prt)
			if prt.total > 0 {
				r = firstCommon(src, dst, prt)
			}
		}
	}
	rs.scratch.Put(s)
	if r == noRule {
		return -1
	}
	return int(r)
}

// Match returns the action the rule set takes on a new flow f and the index of the deciding
// rule in the policy's Rules, or -1 when the default decided. It counts no hits.
func (rs *RuleSet) Match(f Flow) (Action, int) {
	f.Src, f.Dst = f.Src.Unmap(), f.Dst.Unmap()
	i := rs.match(&f)
	if i < 0 {
		return rs.def, -1
	}
	return rs.rules[i].action, i
}

// decide is Match for the packet path: it counts the hit.
func (rs *RuleSet) decide(f *Flow) (Action, int) {
	return rs.count(rs.match(f))
}

// decideEither decides a flow whose first packet f may have come from either end (TCP
// picked up mid-stream): allowed when the rules allow f, or else rev, the same flow the
// other way round. It counts one hit, the allowing rule's (else f's), and says whether rev
// is the way the flow was allowed.
func (rs *RuleSet) decideEither(f, rev *Flow) (act Action, i int, reversed bool) {
	i = rs.match(f)
	if rs.action(i) != Allow {
		if j := rs.match(rev); rs.action(j) == Allow {
			i, reversed = j, true
		}
	}
	act, i = rs.count(i)
	return act, i, reversed
}

// action is the action of rule i, or the default's when i < 0.
func (rs *RuleSet) action(i int) Action {
	if i < 0 {
		return rs.def
	}
	return rs.rules[i].action
}

// count counts a decision by rule i (the default when i < 0) and returns its action and i.
func (rs *RuleSet) count(i int) (Action, int) {
	if i < 0 {
		rs.defHits.n.Add(1)
		return rs.def, -1
	}
	rs.hits[i].n.Add(1)
	return rs.rules[i].action, i
}

// Len returns the number of rules.
func (rs *RuleSet) Len() int { return len(rs.rules) }

// Default returns the action for flows no rule matches.
func (rs *RuleSet) Default() Action { return rs.def }

// ruleHits counts one rule's decisions since a time.
type ruleHits struct {
	n     atomic.Uint64
	since time.Time // zero until CarryHits
}

// RuleStat is one rule's hit counter: how many new flows (and tracked flows re-checked after
// a policy change) the rule decided since Since.
type RuleStat struct {
	Line int    `json:"line"`
	Rule string `json:"rule"`
	Hits uint64 `json:"hits"`
	// Since is when the counter started: when a rule set with this rule at this place
	// (the same text, and the same rules above it) was first installed (see CarryHits);
	// zero when the rule set's owner never said.
	Since time.Time `json:"since,omitzero"`
}

// Stats returns the hit counters of the rules in order, then that of the default (Rule
// "default allow" or "default deny", Line the default statement's or 0). Counters start at
// zero in every RuleSet unless CarryHits carried them on.
func (rs *RuleSet) Stats() []RuleStat {
	out := make([]RuleStat, 0, len(rs.rules)+1)
	for i := range rs.rules {
		out = append(out, RuleStat{Line: rs.rules[i].line, Rule: rs.rules[i].text, Hits: rs.hits[i].n.Load(), Since: rs.hits[i].since})
	}
	return append(out, RuleStat{Line: rs.defLine, Rule: rs.defText(), Hits: rs.defHits.n.Load(), Since: rs.defHits.since})
}

func (rs *RuleSet) defText() string { return "default " + rs.def.String() }

// CarryHits makes rs, which replaces prev, go on counting where prev's counters are for the
// rules whose meaning did not change: rule i when rules 0 to i have the same text in both
// (a rule decides only the flows the rules above it leave), the default when every rule and
// the default are the same. The other counters start at zero from now. A rule set compiled
// against other peers, groups or sites with the same text keeps every counter: a peer
// added or removed does not restart them. prev may be nil (every counter starts now). Call
// it before rs is installed (Filter.SetRuleSet): it must not count yet; prev may be
// counting, and its counters are then shared.
func (rs *RuleSet) CarryHits(prev *RuleSet, now time.Time) {
	same := prev != nil
	for i := range rs.rules {
		same = same && i < len(prev.rules) && prev.rules[i].text == rs.rules[i].text
		if same {
			rs.hits[i] = prev.hits[i]
		} else {
			rs.hits[i].since = now
		}
	}
	if same && len(prev.rules) == len(rs.rules) && prev.defText() == rs.defText() {
		rs.defHits = prev.defHits
	} else {
		rs.defHits.since = now
	}
}

// String describes the rule set for logs.
func (rs *RuleSet) String() string {
	return fmt.Sprintf("%d rules, default %s", len(rs.rules), rs.def)
}
