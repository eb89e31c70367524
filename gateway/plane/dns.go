package plane

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/popgate/popgate/store"
)

// TenantDNS is what a tenant set of the in-tunnel resolver (gateway/resolver) beyond its
// domain (Tenant.Domain).
type TenantDNS struct {
	// Upstreams are the resolvers the tenant's queries are forwarded to, tried in order (the
	// next when one does not answer in time); none: the node's. At most
	// store.MaxDNSUpstreams, each on a public address.
	Upstreams []DNSUpstream `json:"upstreams,omitempty"`
	// QueryLog: the node logs the tenant's queries (DNSQuery) and reports them
	// (Report.DNSLog); off unless the tenant turned it on.
	QueryLog bool `json:"query_log,omitempty"`
}

// DNSUpstream is one of a tenant's upstreams (store.DNSUpstream): plain DNS over UDP, or DNS
// over TLS when TLSName is set.
type DNSUpstream struct {
	Addr netip.AddrPort `json:"addr"`
	// TLSName is the name the server's certificate must hold; "": plain DNS.
	TLSName string `json:"tls_name,omitempty"`
}

// DNSUpstreamOf is the plane's form of store upstream u.
func DNSUpstreamOf(u store.DNSUpstream) DNSUpstream {
	return DNSUpstream{Addr: u.Addr, TLSName: u.TLSName}
}

// String is the upstream as the store writes it: "9.9.9.9:53", "tls://dns.quad9.net@9.9.9.9:853".
func (u DNSUpstream) String() string {
	return store.DNSUpstream{Addr: u.Addr, TLSName: u.TLSName}.String()
}

// validate checks what the store checks: every upstream reads back as itself
// (store.ParseDNSUpstream: the form, a public address), none twice, not too many.
func (t *TenantDNS) validate() error {
	if len(t.Upstreams) > store.MaxDNSUpstreams {
		return fmt.Errorf("%d DNS upstreams, at most %d", len(t.Upstreams), store.MaxDNSUpstreams)
	}
	for i, u := range t.Upstreams {
		p, err := store.ParseDNSUpstream(u.String())
		if err != nil {
			return err
		}
		if DNSUpstreamOf(p) != u {
			return fmt.Errorf("DNS upstream %s is not written as the store writes it (%s)", u, p)
		}
		for _, o := range t.Upstreams[:i] {
			if o == u {
				return fmt.Errorf("DNS upstream %s is there twice", u)
			}
		}
	}
	return nil
}

// DNSQuery is one query of a tenant's that the in-tunnel resolver answered, as its query log
// (TenantDNS.QueryLog) keeps it.
type DNSQuery struct {
	// Seq numbers the node's logged queries from 1 at the start of its process, so that the
	// controller keeps each once however often it is sent (as Event.Seq).
	Seq uint64 `json:"seq"`
	// At is when it came, by the node's clock.
	At     time.Time `json:"at"`
	Tenant int64     `json:"tenant"` // Tenant.ID
	// Peer is the name of the peer that asked; "" for a host behind a site's connector.
	Peer string `json:"peer,omitempty"`
	// Client is the address that asked.
	Client netip.Addr `json:"client"`
	// Name is the name asked for, lower case, without the final dot ("." for the root).
	Name string `json:"name"`
	// Type is the question's type: "A", "AAAA", "TYPE65534".
	Type string `json:"type"`
	// Outcome is what the resolver did (a DNSOutcome…; a newer node may say others).
	Outcome string `json:"outcome"`
	// Rcode is the answer's: "NOERROR", "NXDOMAIN", "SERVFAIL", …
	Rcode string `json:"rcode"`
	// Latency is from the query to the answer.
	Latency time.Duration `json:"latency_ns"`
}

// What the resolver did with a query, as DNSQuery.Outcome.
const (
	DNSOutcomeLocal     = "local"     // a name of the tenant's, the overlay's reverse, or under the private TLD
	DNSOutcomeCache     = "cache"     // from the cache
	DNSOutcomeForwarded = "forwarded" // an upstream answered
	DNSOutcomeFailed    = "failed"    // SERVFAIL: no upstream answered in time, or none to ask
	DNSOutcomeRefused   = "refused"   // not a query the resolver takes (an opcode, a class, several questions)
)

// MaxReportDNSLog is the most logged queries one report carries: the node sends the others in
// the reports that follow.
const MaxReportDNSLog = 1000
