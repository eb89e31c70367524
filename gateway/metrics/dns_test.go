package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/popgate/popgate/gateway/plane"
)

// TestDNSQueries: the resolver's counters by result, blocked names and split zones among them.
func TestDNSQueries(t *testing.T) {
	r := fakeReport()
	r.Node.DNS = plane.DNSStats{Queries: 28, Local: 1, CacheHits: 2, Forwarded: 3, Blocked: 4, Split: 8, Failed: 5, RateLimited: 6, Malformed: 7}
	r.Node.DNS.Queries += 8
	c := newTestCollector(t, r, Facts{})
	want := `
# HELP popgate_dns_queries_total Queries to the in-tunnel resolver, by what became of them: local (a tenant's names, the overlay's reverse), cache, forwarded, blocked (NXDOMAIN: on one of the tenant's blocklists), split (to a tenant's split zone's server), failed (SERVFAIL), rate_limited, malformed.
# TYPE popgate_dns_queries_total counter
popgate_dns_queries_total{result="blocked"} 4
popgate_dns_queries_total{result="cache"} 2
popgate_dns_queries_total{result="failed"} 5
popgate_dns_queries_total{result="forwarded"} 3
popgate_dns_queries_total{result="local"} 1
popgate_dns_queries_total{result="malformed"} 7
popgate_dns_queries_total{result="rate_limited"} 6
popgate_dns_queries_total{result="split"} 8
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "popgate_dns_queries_total"); err != nil {
		t.Error(err)
	}
}
