package main

import (
	"context"
	"slices"
)

const dnsAbout = "Every PoP answers DNS inside the tunnel at the overlay's gateway addresses (the DNS line of " +
	"client configs): the tenant's peers by name (<peer>.<tenant>.internal, or the tenant's domain, see " +
	"'popgate tenant set --domain'), the reverse of overlay addresses, and everything else through the " +
	"node's upstream resolvers with a shared cache. A tenant may have more of its own: split zones, whose " +
	"names go to DNS servers in the tenant's own sites whichever PoP a client is at; its own upstreams, " +
	"plain or DNS over TLS, in place of the node's; blocklists, whose names (and their subdomains) are " +
	"NXDOMAIN to the tenant's peers; and a query log, off unless the tenant turns it on. " +
	"Each command takes --tenant; a tenant's admins manage their own tenant's."

// dnsTenantUsage is the --tenant of every dns command.
const dnsTenantUsage = "`TENANT` whose DNS it is (required)"

func (a *app) cmdDNS(ctx context.Context, args []string) error {
	return a.group(ctx, "dns", dnsAbout, slices.Concat(dnsZoneCommands, dnsUpstreamCommands, dnsBlockCommands, dnsLogCommands), args)
}
