package resolver

import (
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// cacheKey is what an answer depends on: who may see it, the question, and whether DNSSEC
// records were asked for.
type cacheKey struct {
	// scope is 0 for the answers of the node's upstreams, which every tenant shares, and a
	// tenant's ID for the answers of its split zones and of its own upstreams, which no other
	// tenant sees.
	scope         int64
	name          string // lower case
	qtype, qclass uint16
	do            bool
}

type cacheEntry struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// cache keeps the upstreams' answers for their TTL (negative ones for their SOA's minimum,
// RFC 2308), at most max entries. Shared by the tenants: what the node's upstreams say of
// public names is the same for everyone; what a tenant's split zones or its own upstreams say
// is kept under its scope (cacheKey), for it alone.
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[cacheKey]*cacheEntry
	swept   time.Time // the last scan for expired entries
}

// sweepEvery bounds how often a full cache scans for expired entries: a scan is as long as
// the cache, and between scans a full cache makes room by dropping entries at random.
const sweepEvery = 10 * time.Second

func newCache(max int) *cache { return &cache{max: max, entries: map[cacheKey]*cacheEntry{}} }

// get returns a copy of the answer for k with its TTLs counted down to now, or nil.
func (c *cache) get(k cacheKey, now time.Time) *dns.Msg {
	c.mu.Lock()
	e := c.entries[k]
	if e != nil && !now.Before(e.expires) {
		delete(c.entries, k)
		e = nil
	}
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m
}

// put keeps a copy of m for k from now, for as long as its records say.
func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl := cacheTTL(m)
	if ttl <= 0 {
		return
	}
	e := &cacheEntry{msg: m.Copy(), stored: now, expires: now.Add(ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[k] = e
}

// evict makes room: the expired entries (looked for at most every sweepEvery), and when
// that frees too little, about one in a hundred others (Go's map order is random enough for
// a cache this simple).
func (c *cache) evict(now time.Time) {
	if now.Sub(c.swept) >= sweepEvery || now.Before(c.swept) {
		c.swept = now
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) < c.max-c.max/100 {
			return
		}
	}
	want := max(c.max/100, 1)
	for k := range c.entries {
		delete(c.entries, k)
		if want--; want == 0 {
			return
		}
	}
}

// cacheTTL is how long m may be kept: the least TTL of its records; for an answer without
// any (NXDOMAIN, NODATA), its SOA's minimum or the SOA's own TTL, whichever is less, at
// most maxNegativeTTL; 0 when it must not be kept.
func cacheTTL(m *dns.Msg) time.Duration {
	if len(m.Answer) == 0 {
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				return min(time.Duration(min(soa.Minttl, soa.Hdr.Ttl))*time.Second, maxNegativeTTL)
			}
		}
		return 0
	}
	least := uint32(maxPositiveTTL / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			least = min(least, rr.Header().Ttl)
		}
	}
	return time.Duration(least) * time.Second
}

// limiter bounds the queries of each client address: a token bucket each, forgotten when
// full again (at most limiterMax addresses remembered; past that, new ones share one bucket).
type limiter struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[netip.Addr]*bucket
	overflow    bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

const limiterMax = 65536

func newLimiter(rate, burst float64) *limiter {
	return &limiter{rate: rate, burst: burst, buckets: map[netip.Addr]*bucket{}, overflow: bucket{tokens: burst}}
}

func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[a]
	if b == nil {
		if len(l.buckets) >= limiterMax {
			l.sweep(now)
		}
		if len(l.buckets) >= limiterMax {
			b = &l.overflow
		} else {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[a] = b
		}
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets the addresses whose bucket has filled up again: they have been quiet.
func (l *limiter) sweep(now time.Time) {
	for a, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, a)
		}
	}
}
