package plane

import (
	"net/netip"

	"github.com/popgate/popgate/store"
)

// TenantDNS is what the in-tunnel resolver does for one tenant beyond its peers' names.
type TenantDNS struct {
	// Zones are the tenant's split zones: a query of its peers for a name in one of them
	// (the longest that matches) goes to the zone's servers, through the tenant's own
	// packet path (a site, or a peer), from the node's own overlay address (NodeAddrs).
	Zones []DNSZone `json:"zones,omitempty"`
}

// DNSZone is one split zone of a tenant.
type DNSZone struct {
	// Name is the zone, lower case without the final dot; "." is every name.
	Name string `json:"name"`
	// Servers are asked in order, the next when one does not answer in time: addresses in
	// one of the tenant's site routes, or its peers' overlay addresses.
	Servers []netip.AddrPort `json:"servers"`
}

// validateDNS checks a tenant's DNS settings: zone names valid and unique, 1 to
// store.MaxDNSZoneServers valid servers each, at most store.MaxDNSZones zones.
func (t *Tenant) validateDNS() error {
	if len(t.DNS.Zones) > store.MaxDNSZones {
		return invalid("tenant %q: %d DNS zones, at most %d", t.Name, len(t.DNS.Zones), store.MaxDNSZones)
	}
	seen := make(map[string]bool, len(t.DNS.Zones))
	for _, z := range t.DNS.Zones {
		name, err := store.CanonicalDNSZone(z.Name)
		if err != nil || name != z.Name || seen[name] {
			return invalid("tenant %q: DNS zone %q is not a unique lower-case zone name without the final dot", t.Name, z.Name)
		}
		seen[name] = true
		if n := len(z.Servers); n < 1 || n > store.MaxDNSZoneServers {
			return invalid("tenant %q: DNS zone %q has %d servers, not 1 to %d", t.Name, z.Name, n, store.MaxDNSZoneServers)
		}
		for _, s := range z.Servers {
			if err := store.ValidateDNSServer(s); err != nil {
				return invalid("tenant %q: DNS zone %q: %v", t.Name, z.Name, err)
			}
		}
	}
	return nil
}
