package plane

import (
	"fmt"
	"net/netip"

	"github.com/popgate/popgate/store"
)

// TenantDNS is what a tenant set of the in-tunnel resolver (gateway/resolver) beyond its
// domain (Tenant.Domain).
type TenantDNS struct {
	// Upstreams are the resolvers the tenant's queries are forwarded to, tried in order (the
	// next when one does not answer in time); none: the node's. At most
	// store.MaxDNSUpstreams, each on a public address.
	Upstreams []DNSUpstream `json:"upstreams,omitempty"`
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
