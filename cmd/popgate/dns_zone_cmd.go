package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const dnsZoneAbout = "A tenant's split zones send its peers' queries for the names in them to DNS servers in " +
	"the tenant's own sites (or at its peers) instead of the upstream resolvers, whichever PoP they are " +
	"connected to: each zone with 1 to 4 servers, asked in order; the longest zone that matches a name wins, " +
	"and the zone . takes every name not of the tenant's own domain. Answers are cached for the tenant alone."

var dnsZoneCommands = []subcommand{
	{cmdSpec{name: "dns zone", about: dnsZoneAbout}, nil},
	{cmdSpec{
		name:    "dns zone add",
		summary: "Add a split zone to a tenant: its names go to DNS servers in the tenant's sites",
		usage:   "dns zone add --tenant TENANT --server ADDR[:PORT] [--server ...] [--data-dir DIR] ZONE",
		about: "Add a split zone to a tenant: its peers' queries for ZONE and the names under it go to the " +
			"--server addresses (1 to 4, asked in order, the next after 2 s without an answer) instead of the " +
			"node's upstream resolvers, whichever PoP they are connected to. Every PoP asks from an overlay " +
			"address of its own, through the tenant's own routes: into the site a route names, at that PoP or " +
			"over the backbone at another. A server must therefore lie in one of the tenant's routes via a " +
			"site (route its prefix there first: 'popgate route add --tenant TENANT --via site:NAME PREFIX'), " +
			"or be one of its peers' overlay addresses; the site's DNS server must answer queries from the " +
			"overlay (100.64.0.0/10 and the installation's IPv6 /48). The longest zone that matches a name " +
			"wins, and the zone . sends every name not of the tenant's own domain. Answers are cached for the " +
			"tenant alone. Live at every PoP within seconds.",
		example: "popgate dns zone add --tenant acme --server 10.10.0.53 corp.example.com\n" +
			"popgate dns zone add --tenant acme --server 10.10.0.53 --server 10.20.0.53:5353 10.in-addr.arpa\n" +
			"popgate dns zone add --tenant acme --server 10.10.0.53 .",
		args: []string{"ZONE"},
	}, (*app).dnsZoneAdd},
	{cmdSpec{
		name:    "dns zone list",
		usage:   "dns zone list --tenant TENANT [--json] [--data-dir DIR]",
		about:   "List a tenant's split zones with their servers, in the order they are asked.",
		example: "popgate dns zone list --tenant acme\npopgate dns zone list --tenant acme --json | jq -r '.zones[].zone'",
	}, (*app).dnsZoneList},
	{cmdSpec{
		name:    "dns zone remove",
		usage:   "dns zone remove --tenant TENANT [--data-dir DIR] ZONE",
		about:   "Remove a tenant's split zone: its names resolve through the node's upstream resolvers again.",
		example: "popgate dns zone remove --tenant acme corp.example.com",
		args:    []string{"ZONE"},
	}, (*app).dnsZoneRemove},
}

func dnsZonesPath(tenant string) string { return tenantPath(tenant) + "/dns/zones" }

// parseZoneArgs parses a zone command's --tenant and ZONE, checking both as the server would.
func parseZoneArgs(a *app, f *adminFlags, args []string) (string, error) {
	pos, err := f.parse(a, args)
	if err != nil {
		return "", err
	}
	if err := f.needTenant(); err != nil {
		return "", err
	}
	zone, err := store.CanonicalDNSZone(pos[0])
	if err != nil {
		return "", &usageError{msg: err.Error()}
	}
	return zone, nil
}

func (a *app) dnsZoneAdd(ctx context.Context, spec cmdSpec, args []string) error {
	var servers listFlag
	f := newAdminFlags(spec).withTenant(dnsTenantUsage)
	f.Var(&servers, "server", "a DNS server of the zone, `ADDR[:PORT]`: an IP address with an optional port (53 when none); repeat the flag, or separate them with commas, for up to 4 asked in order", "")
	zone, err := parseZoneArgs(a, f, args)
	if err != nil {
		return err
	}
	if len(servers) == 0 || len(servers) > store.MaxDNSZoneServers {
		return usagef("dns zone add: %d servers: give 1 to %d with --server, e.g. --server 10.10.0.53", len(servers), store.MaxDNSZoneServers)
	}
	for _, s := range servers {
		if _, err := store.ParseDNSServer(s); err != nil {
			return usagef("dns zone add: --server: %s", err)
		}
	}
	var z webui.APIDNSZone
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, dnsZonesPath(f.tenant), webui.APIDNSZone{Zone: zone, Servers: servers}, &z); err != nil {
		return err
	}
	a.note("zone %s of tenant %s added: its names go to %s; every PoP asks within seconds", z.Zone, f.tenant, strings.Join(z.Servers, ", then "))
	return nil
}

func (a *app) dnsZoneList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(dnsTenantUsage).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	var zs webui.APIDNSZones
	if printed, err := a.getOrPrintJSON(ctx, f, dnsZonesPath(f.tenant), &zs); printed || err != nil {
		return err
	}
	if len(zs.Zones) == 0 {
		a.note("tenant %s has no split zones: its names not its own go to the node's upstream resolvers; add one with 'popgate dns zone add --tenant %s --server ADDR ZONE'", f.tenant, f.tenant)
		return nil
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "ZONE\tSERVERS")
	for _, z := range zs.Zones {
		fmt.Fprintf(tw, "%s\t%s\n", z.Zone, strings.Join(z.Servers, ", "))
	}
	return tw.Flush()
}

func (a *app) dnsZoneRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(dnsTenantUsage)
	zone, err := parseZoneArgs(a, f, args)
	if err != nil {
		return err
	}
	path := dnsZonesPath(f.tenant) + "?" + url.Values{"zone": {zone}}.Encode()
	if _, err := a.client(f).call(ctx, http.MethodDelete, path, nil); err != nil {
		return err
	}
	a.note("zone %s removed from tenant %s", zone, f.tenant)
	return nil
}
