package resolver

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/plane"
)

// The query log: the queries of the tenants whose log is on (plane.TenantDNS.QueryLog), kept
// in a ring for the controller, which takes them with LogAfter (in the node's reports).
// Nothing is logged of the other tenants, nor of queries dropped over the rate or that do not
// parse.

// DefaultLogEntries is Config.LogEntries' default.
const DefaultLogEntries = 10000

// queryLog is the ring: at most max entries, numbered from 1; when full, the oldest goes,
// counted as dropped when the controller never had it.
type queryLog struct {
	mu   sync.Mutex
	max  int
	ring []plane.DNSQuery // in order from next once full (len == max)
	next int              // the oldest once full: where the next entry goes
	seq  uint64           // the last entry's number
	// had is the newest entry the controller has (the highest LogAfter was given).
	had     uint64
	dropped uint64
}

func (l *queryLog) add(e plane.DNSQuery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq = l.seq
	if len(l.ring) < l.max {
		l.ring = append(l.ring, e)
		return
	}
	if l.ring[l.next].Seq > l.had {
		l.dropped++
	}
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
}

// after returns the oldest entries numbered after seq, at most n, and notes that the
// controller has those up to seq.
func (l *queryLog) after(seq uint64, n int) []plane.DNSQuery {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.had = max(l.had, min(seq, l.seq))
	size := len(l.ring)
	if size == 0 {
		return nil
	}
	skip := 0
	if first := l.ring[l.next%size].Seq; seq >= first {
		skip = int(min(seq-first+1, uint64(size)))
	}
	out := make([]plane.DNSQuery, min(n, size-skip))
	for i := range out {
		out[i] = l.ring[(l.next+skip+i)%size]
	}
	return out
}

// LogAfter returns the logged queries numbered after seq, oldest first, at most n: those the
// controller may not have when it has those up to seq. An entry that came before the oldest
// kept is gone (LogDropped counts it).
func (r *Resolver) LogAfter(seq uint64, n int) []plane.DNSQuery { return r.qlog.after(seq, n) }

// LogDropped is how many logged queries went before the controller had them.
func (r *Resolver) LogDropped() uint64 {
	r.qlog.mu.Lock()
	defer r.qlog.mu.Unlock()
	return r.qlog.dropped
}

// logged is what a query of a tenant whose log is on carries until it is answered.
type logged struct {
	tenant int64
	peer   string
	src    netip.Addr
	start  time.Time
}

// newLogged starts the log entry of q (one question) from src when z's log is on; nil
// otherwise.
func (r *Resolver) newLogged(z *Zone, tenant int64, src netip.Addr) *logged {
	if z == nil || !z.log {
		return nil
	}
	return &logged{tenant: tenant, peer: z.who[src], src: src, start: r.cfg.Now()}
}

// logQuery logs q, answered with rcode, with what became of it.
func (r *Resolver) logQuery(l *logged, q *dns.Msg, outcome string, rcode int) {
	if l == nil || len(q.Question) != 1 {
		return
	}
	now := r.cfg.Now()
	name := strings.ToLower(q.Question[0].Name)
	if len(name) > 1 {
		name = strings.TrimSuffix(name, ".")
	}
	typ, ok := dns.TypeToString[q.Question[0].Qtype]
	if !ok {
		typ = "TYPE" + strconv.Itoa(int(q.Question[0].Qtype))
	}
	rc, ok := dns.RcodeToString[rcode]
	if !ok {
		rc = "RCODE" + strconv.Itoa(rcode)
	}
	r.qlog.add(plane.DNSQuery{At: l.start, Tenant: l.tenant, Peer: l.peer, Client: l.src, Name: name, Type: typ,
		Outcome: outcome, Rcode: rc, Latency: max(now.Sub(l.start), 0)})
}
