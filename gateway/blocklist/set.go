package blocklist

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrCorrupt is wrapped by Load's errors: the body is not the canonical list it is named for.
var ErrCorrupt = errors.New("blocklist content is corrupt")

// Set is one canonical list ready for lookups: the body as it came and where each name
// starts in it. It holds the body plus 4 bytes a name (a Go map of the same names holds
// about three times as much; see TestMemory), and a lookup is a binary search, without
// allocating. A Set never changes: it is safe for concurrent use.
type Set struct {
	body []byte
	// off[i] is where name i starts; it ends one byte before off[i+1] (its '\n'), the last
	// one before len(body).
	off []uint32
	// first[c] is the index of the first name starting with a byte >= c: names starting
	// with c are off[first[c]:first[c+1]].
	first [257]uint32
	sum   [32]byte
}

// Load makes a Set of body, a canonical list (List.Body) whose SHA-256 must be sum. It keeps
// body: the caller must not modify it afterwards. The error wraps ErrCorrupt when body is not
// that list, or not in the canonical form (names valid, sorted, each once).
func Load(body []byte, sum [32]byte) (*Set, error) {
	if got := sha256.Sum256(body); got != sum {
		return nil, fmt.Errorf("%w: its SHA-256 is %x, not %x", ErrCorrupt, got[:8], sum[:8])
	}
	if len(body) > math.MaxUint32 {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(body))
	}
	s := &Set{body: body, off: make([]uint32, 0, bytes.Count(body, []byte{'\n'})), sum: sum}
	var prev []byte
	for start := 0; start < len(body); {
		end := bytes.IndexByte(body[start:], '\n')
		if end < 0 {
			return nil, fmt.Errorf("%w: the last line does not end in a newline", ErrCorrupt)
		}
		name := body[start : start+end]
		if !validName(name) {
			return nil, fmt.Errorf("%w: line %d is not a valid name", ErrCorrupt, len(s.off)+1)
		}
		if prev != nil && bytes.Compare(prev, name) >= 0 {
			return nil, fmt.Errorf("%w: line %d is out of order or repeated", ErrCorrupt, len(s.off)+1)
		}
		s.off = append(s.off, uint32(start))
		prev, start = name, start+end+1
	}
	// first[c]: the names before index first[c] start with a byte < c.
	i := 0
	for c := range 257 {
		for i < len(s.off) && int(body[s.off[i]]) < c {
			i++
		}
		s.first[c] = uint32(i)
	}
	return s, nil
}

// Len is how many names s holds.
func (s *Set) Len() int { return len(s.off) }

// SHA256 is the hash of s's body.
func (s *Set) SHA256() [32]byte { return s.sum }

// Size is how many bytes s holds: its body and its index.
func (s *Set) Size() int { return len(s.body) + 4*len(s.off) + 4*len(s.first) }

// name is name i.
func (s *Set) name(i int) []byte {
	end := len(s.body)
	if i+1 < len(s.off) {
		end = int(s.off[i+1])
	}
	return s.body[s.off[i] : end-1]
}

// Has reports whether s lists exactly name (lower case, no final dot).
func (s *Set) Has(name string) bool {
	if name == "" {
		return false
	}
	lo, hi := int(s.first[name[0]]), int(s.first[int(name[0])+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := compare(s.name(m), name); {
		case c == 0:
			return true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false
}

// Match reports whether s lists name or a parent of it, and which: name is lower case, with
// or without the final dot; listed is the part of name that s lists, without the dot.
func (s *Set) Match(name string) (listed string, ok bool) {
	return Union{s}.Match(name)
}

// compare is bytes.Compare of a and b, without converting either.
func compare(a []byte, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// Union is several sets as one: a name is listed when any of them lists it.
type Union []*Set

// Match reports whether a set of u lists name or a parent of it, and which (as Set.Match).
func (u Union) Match(name string) (listed string, ok bool) {
	if len(u) == 0 {
		return "", false
	}
	name = strings.TrimSuffix(name, ".")
	for {
		for _, s := range u {
			if s.Has(name) {
				return name, true
			}
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return "", false
		}
		name = name[i+1:]
	}
}
