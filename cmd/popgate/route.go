package main

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const routeAbout = "A tenant's routes say where traffic that leaves its overlay goes: out through the " +
	"node's exit to the internet, or to one of the tenant's sites (the LAN behind a site connector, " +
	"see 'popgate peer add --help'). The longest matching prefix wins, and each tenant has routes of " +
	"its own: two tenants may route the same private prefix to different sites. A new tenant routes " +
	"0.0.0.0/0 and ::/0 via the internet. Changes take effect within a second."

const routeTenantUsage = "`TENANT` whose routes they are (required)"

var routeCommands = []subcommand{
	{cmdSpec{
		name:  "route list",
		usage: "route list --tenant TENANT [--json] [--data-dir DIR]",
		about: "List the routes of a tenant, longest prefix first: the order in which they are tried. " +
			"A route through exit nodes shows each exit's state as the nodes' probes see it (up, down, " +
			"partial: some nodes reach it; unknown: no node reported it yet) and the one in use.",
		example: "popgate route list --tenant acme\npopgate route list --tenant acme --json | jq -r '.routes[].prefix'",
	}, (*app).routeList},
	{cmdSpec{
		name:  "route add",
		usage: "route add --tenant TENANT [--via internet|site:NAME|exit:X1,exit:X2] [--data-dir DIR] PREFIX",
		about: "Add a route to a tenant. Traffic for PREFIX then goes via the node's internet exit (the " +
			"default), to the site NAME, or through exit nodes in order (1 to 8 nodes that joined with the " +
			"exit role): the first healthy one carries it, and the next takes over when it fails. A prefix " +
			"the tenant already routes must be removed first.",
		example: "popgate route add --tenant acme --via site:office 10.10.0.0/24\n" +
			"popgate route add --tenant acme --via exit:x1,exit:x2 0.0.0.0/0\n" +
			"popgate route add --tenant acme 192.0.2.0/24",
		args: []string{"PREFIX"},
	}, (*app).routeAdd},
	{cmdSpec{
		name:  "route remove",
		usage: "route remove --tenant TENANT [--data-dir DIR] PREFIX",
		about: "Remove the route for PREFIX from a tenant. The default routes 0.0.0.0/0 and ::/0 may be " +
			"removed too: the tenant then reaches only what its other routes name.",
		example: "popgate route remove --tenant acme 10.10.0.0/24",
		args:    []string{"PREFIX"},
	}, (*app).routeRemove},
}

func (a *app) cmdRoute(ctx context.Context, args []string) error {
	return a.group(ctx, "route", routeAbout, routeCommands, args)
}

func routesPath(tenant string) string {
	return tenantPath(tenant) + "/routes"
}

func (a *app) routeList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(routeTenantUsage).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	var rs webui.APIRoutes
	if printed, err := a.getOrPrintJSON(ctx, f, routesPath(f.tenant), &rs); printed || err != nil {
		return err
	}
	if len(rs.Routes) == 0 {
		a.note("tenant %s has no routes: its peers reach nothing outside the overlay; add one with 'popgate route add --tenant %s PREFIX'", f.tenant, f.tenant)
		return nil
	}
	// The server sends them longest first already; sorting again keeps the promise of the
	// help whatever it sends.
	slices.SortStableFunc(rs.Routes, func(x, y webui.APIRoute) int {
		return cmp.Compare(prefixBits(y.Prefix), prefixBits(x.Prefix))
	})
	tw := newTable(a.stdout)
	exits := slices.ContainsFunc(rs.Routes, func(r webui.APIRoute) bool { return len(r.Exits) > 0 })
	if !exits {
		fmt.Fprintln(tw, "PREFIX\tVIA")
	} else {
		fmt.Fprintln(tw, "PREFIX\tVIA\tEXITS")
	}
	for _, r := range rs.Routes {
		if !exits {
			fmt.Fprintf(tw, "%s\t%s\n", r.Prefix, r.Via)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Prefix, r.Via, orDash(exitsText(r.Exits)))
	}
	return tw.Flush()
}

// exitsText sums up a route's exits in order: "x1 down, x2 up (in use)".
func exitsText(es []webui.APIRouteExit) string {
	parts := make([]string, 0, len(es))
	for _, e := range es {
		p := e.Name + " " + e.State
		if e.InUse {
			p += " (in use)"
		}
		parts = append(parts, p)
	}
	if len(es) > 0 && !slices.ContainsFunc(es, func(e webui.APIRouteExit) bool { return e.InUse }) {
		parts = append(parts, "none up: the traffic goes through the least lossy exit that still answers, if any")
	}
	return strings.Join(parts, ", ")
}

// prefixBits is the length of prefix, -1 when it does not parse.
func prefixBits(prefix string) int {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return -1
	}
	return p.Bits()
}

func (a *app) routeAdd(ctx context.Context, spec cmdSpec, args []string) error {
	var via string
	f := newAdminFlags(spec).withTenant(routeTenantUsage)
	f.String(&via, "via", store.ViaInternet, "where the traffic goes: `internet` (the node's exit), site:NAME (one of the tenant's sites) or exit:X1,exit:X2 (exit nodes in order)")
	prefix, err := a.parseRouteArgs(f, args)
	if err != nil {
		return err
	}
	if err := checkVia(via); err != nil {
		return err
	}
	var r webui.APIRoute
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, routesPath(f.tenant), webui.APIRoute{Prefix: prefix, Via: via}, &r); err != nil {
		return err
	}
	a.note("route %s via %s added to tenant %s", r.Prefix, r.Via, f.tenant)
	return nil
}

func (a *app) routeRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(routeTenantUsage)
	prefix, err := a.parseRouteArgs(f, args)
	if err != nil {
		return err
	}
	path := routesPath(f.tenant) + "?" + url.Values{"prefix": {prefix}}.Encode()
	if _, err := a.client(f).call(ctx, http.MethodDelete, path, nil); err != nil {
		return err
	}
	a.note("route %s removed from tenant %s", prefix, f.tenant)
	return nil
}

// parseRouteArgs parses the arguments of a command on one route: --tenant and PREFIX.
func (a *app) parseRouteArgs(f *adminFlags, args []string) (string, error) {
	pos, err := f.parse(a, args)
	if err != nil {
		return "", err
	}
	if err := f.needTenant(); err != nil {
		return "", err
	}
	if err := checkPrefix("prefix", pos[0]); err != nil {
		return "", err
	}
	return pos[0], nil
}

// checkVia rejects a --via that is not internet, site:NAME or exit:x1,exit:x2 with valid
// names (store.ParseVia); whether the site or the exits exist is the server's to say.
func checkVia(via string) error {
	if _, err := store.ParseVia(via); err != nil {
		return usagef("--%s", strings.TrimPrefix(err.Error(), "route "))
	}
	return nil
}
