package firewall

// The matcher finds the first rule that matches a flow without scanning the rules. Each of
// three dimensions — source address, destination address, protocol and destination port —
// maps the flow's value to a few sorted lists of rule indexes: the rules that match on that
// dimension are exactly the union of those lists. The first matching rule is then the
// smallest index present in all three unions, found by a leapfrog join: each union seeks to
// the smallest index at or above a candidate, and the candidate rises until all three agree.
// Its cost grows with the lengths of the lists it skips through (logarithmically, with
// galloping search), not with the number of rules.
//
// Addresses and ports are looked up in path-compressed binary tries keyed by prefix; a
// node's list holds the rules that name exactly that prefix, so a lookup collects one list
// per matching prefix length. Peers, groups and "any" (as a source) are not expanded into
// addresses: a flow's address is first mapped to its peer, and the peer carries the lists of
// the groups it belongs to, so a group of 1,000 peers named by 1,000 rules costs 1,000 list
// entries, not a million.

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"slices"
)

// noRule is the answer of a seek that ran past the end of every list.
const noRule = math.MaxInt32

// ukey is a prefix key of up to 128 bits, most significant bit first.
type ukey struct{ hi, lo uint64 }

func addrKey(a netip.Addr) ukey {
	if a.Is4() {
		b := a.As4()
		return ukey{hi: uint64(binary.BigEndian.Uint32(b[:])) << 32}
	}
	b := a.As16()
	return ukey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func portKey(p uint16) ukey { return ukey{hi: uint64(p) << 48} }

func (k ukey) bit(i int) int {
	if i < 64 {
		return int(k.hi>>(63-i)) & 1
	}
	return int(k.lo>>(127-i)) & 1
}

// masked keeps the first n bits of k.
func (k ukey) masked(n int) ukey {
	switch {
	case n <= 0:
		return ukey{}
	case n < 64:
		return ukey{hi: k.hi &^ (math.MaxUint64 >> n)}
	case n < 128:
		return ukey{hi: k.hi, lo: k.lo &^ (math.MaxUint64 >> (n - 64))}
	}
	return k
}

// commonBits returns how many leading bits a and b share.
func commonBits(a, b ukey) int {
	if x := a.hi ^ b.hi; x != 0 {
		return bits.LeadingZeros64(x)
	}
	return 64 + bits.LeadingZeros64(a.lo^b.lo)
}

// tnode is a node of a path-compressed binary trie: it stands for the prefix key/bits and
// holds the rules naming exactly that prefix, in ascending order.
type tnode struct {
	key   ukey
	bits  int
	rules []int32
	child [2]*tnode
}

// ptrie maps prefixes to rule lists. It is built once and then only read.
type ptrie struct {
	root *tnode
}

// insert adds rule to the list of prefix key/n. Rules must be inserted in ascending order.
func (t *ptrie) insert(key ukey, n int, rule int32) {
	key = key.masked(n)
	link := &t.root
	for {
		nd := *link
		if nd == nil {
			*link = &tnode{key: key, bits: n, rules: []int32{rule}}
			return
		}
		c := min(commonBits(nd.key, key), nd.bits, n)
		switch {
		case c == nd.bits && c == n:
			if l := len(nd.rules); l == 0 || nd.rules[l-1] != rule {
				nd.rules = append(nd.rules, rule)
			}
			return
		case c == nd.bits:
			link = &nd.child[key.bit(nd.bits)]
		case c == n:
			nn := &tnode{key: key, bits: n, rules: []int32{rule}}
			nn.child[nd.key.bit(n)] = nd
			*link = nn
			return
		default:
			g := &tnode{key: key.masked(c), bits: c}
			g.child[nd.key.bit(c)] = nd
			g.child[key.bit(c)] = &tnode{key: key, bits: n, rules: []int32{rule}}
			*link = g
			return
		}
	}
}

// collect adds to u the list of every prefix in t that contains key.
func (t *ptrie) collect(key ukey, u *union) {
	for nd := t.root; nd != nil; {
		if commonBits(nd.key, key) < nd.bits {
			return
		}
		u.add(nd.rules)
		if nd.bits >= 128 {
			return
		}
		nd = nd.child[key.bit(nd.bits)]
	}
}

// compact copies every list into one backing array so that lookups touch less memory.
func (t *ptrie) compact(arena *[]int32) {
	var walk func(nd *tnode)
	walk = func(nd *tnode) {
		if nd == nil {
			return
		}
		nd.rules = arenaCopy(arena, nd.rules)
		walk(nd.child[0])
		walk(nd.child[1])
	}
	walk(t.root)
}

func arenaCopy(arena *[]int32, l []int32) []int32 {
	if len(l) == 0 {
		return nil
	}
	start := len(*arena)
	*arena = append(*arena, l...)
	return (*arena)[start:len(*arena):len(*arena)]
}

// maxUnionLists bounds the lists one dimension collects: at most maxPeerLists from the peer
// and one per prefix length (129 for IPv6) from the trie.
const maxUnionLists = maxPeerLists + 129

// union is the set of rules matching on one dimension: the union of sorted lists, each
// advanced past the rules already ruled out.
type union struct {
	lists [][]int32 // capacity maxUnionLists
	total int
}

func (u *union) reset() {
	clear(u.lists)
	u.lists = u.lists[:0]
	u.total = 0
}

func (u *union) add(l []int32) {
	if len(l) > 0 {
		u.lists = append(u.lists, l)
		u.total += len(l)
	}
}

// seek returns the smallest rule >= x in the union, or noRule.
func (u *union) seek(x int32) int32 {
	best := int32(noRule)
	for i := 0; i < len(u.lists); {
		l := u.lists[i]
		if l[0] < x {
			l = skipBelow(l, x)
			if len(l) == 0 {
				last := len(u.lists) - 1
				u.lists[i] = u.lists[last]
				u.lists[last] = nil
				u.lists = u.lists[:last]
				continue
			}
			u.lists[i] = l
		}
		best = min(best, l[0])
		i++
	}
	return best
}

// skipBelow drops the leading elements of the sorted list l that are below x, galloping so
// that a short skip costs little and a long one logarithmically.
func skipBelow(l []int32, x int32) []int32 {
	hi := 1
	for hi < len(l) && l[hi] < x {
		hi *= 2
	}
	lo := hi / 2
	hi = min(hi, len(l))
	// l[lo] < x (or lo == 0 and l[0] < x); find the first index in (lo, hi] with l[i] >= x.
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return l[lo:]
}

// firstCommon returns the smallest rule in all three unions, or noRule.
func firstCommon(a, b, c *union) int32 {
	// Seek the shortest union first: it proposes the fewest candidates.
	if b.total < a.total {
		a, b = b, a
	}
	if c.total < a.total {
		a, c = c, a
	}
	if c.total < b.total {
		b, c = c, b
	}
	x := int32(0)
	for {
		ra := a.seek(x)
		if ra == noRule {
			return noRule
		}
		rb := b.seek(ra)
		if rb == noRule {
			return noRule
		}
		rc := c.seek(rb)
		if rc == ra {
			return ra
		}
		if rc == noRule {
			return noRule
		}
		x = rc
	}
}

// portBlocks calls fn for each aligned block (a prefix of the 16-bit port space) that
// together cover exactly lo-hi.
func portBlocks(lo, hi uint16, fn func(start uint16, bits int)) {
	l, h := uint32(lo), uint32(hi)
	for l <= h {
		size := uint32(1) << 16
		if l != 0 {
			size = l & -l // largest block aligned at l
		}
		for l+size-1 > h {
			size >>= 1
		}
		fn(uint16(l), 16-bits.TrailingZeros32(size))
		l += size
	}
}

// mergePorts returns ranges sorted and merged; nil when they cover every port.
func mergePorts(ranges []PortRange) []PortRange {
	rs := slices.Clone(ranges)
	slices.SortFunc(rs, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.Lo) <= uint32(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	if len(out) == 1 && out[0] == (PortRange{0, 65535}) {
		return nil
	}
	return out
}
