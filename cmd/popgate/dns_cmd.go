package main

import (
	"context"
	"slices"
)

const dnsAbout = "Every PoP answers DNS at its overlay addresses (the DNS line of client configs): a tenant's " +
	"peers by name (laptop.acme.internal), the reverse of overlay addresses, and every other name forwarded to " +
	"upstream resolvers through a cache. These commands set what a tenant has of its own: its upstreams, plain " +
	"or DNS over TLS, in place of the node's, and a query log, off unless the tenant turns it on."

func (a *app) cmdDNS(ctx context.Context, args []string) error {
	return a.group(ctx, "dns", dnsAbout, slices.Concat(dnsUpstreamCommands, dnsLogCommands), args)
}
