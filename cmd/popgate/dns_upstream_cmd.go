package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const dnsUpstreamAbout = "A tenant's upstreams are the resolvers every PoP forwards the tenant's queries to (those " +
	"its own names, the overlay's reverse, its split zones and the cache do not answer) in place of the node's own (serve's " +
	"--dns-upstream): 1 to 4, tried in order, the next when one does not answer within 2 s. Write each as " +
	"ADDR[:PORT] for plain DNS over UDP (port 53; an IPv6 address with a port in brackets: [2620:fe::fe]:53) or " +
	"tls://NAME@ADDR[:PORT] for DNS over TLS (port 853), NAME being the name the server's certificate must hold " +
	"(checked against the system's roots). ADDR is an IP address, never a name, and a public one: a tenant's " +
	"upstream must not make the PoPs reach their own networks. Their answers are cached for the tenant alone."

var dnsUpstreamCommands = []subcommand{
	{cmdSpec{name: "dns upstream", about: dnsUpstreamAbout}, nil},
	{cmdSpec{
		name:    "dns upstream set",
		summary: "Set a tenant's own upstream resolvers, plain DNS or DNS over TLS, in place of the node's",
		usage:   "dns upstream set --tenant TENANT [--data-dir DIR] UPSTREAM...",
		about: "Make the UPSTREAMs, in order, the tenant's upstreams, replacing those it had (or the node's); every " +
			"PoP uses them within seconds. " + dnsUpstreamSyntaxHelp,
		example: "popgate dns upstream set --tenant acme 9.9.9.9 149.112.112.112\n" +
			"popgate dns upstream set --tenant acme tls://dns.quad9.net@9.9.9.9 tls://dns.quad9.net@[2620:fe::fe]:853",
		args: []string{"UPSTREAM"},
		more: true,
	}, (*app).dnsUpstreamSet},
	{cmdSpec{
		name:    "dns upstream list",
		summary: "List a tenant's upstreams in the order they are tried",
		usage:   "dns upstream list --tenant TENANT [--json] [--data-dir DIR]",
		about:   "List the tenant's upstreams in the order they are tried, or say that it uses the node's.",
		example: "popgate dns upstream list --tenant acme",
	}, (*app).dnsUpstreamList},
	{cmdSpec{
		name:    "dns upstream reset",
		summary: "Send a tenant's queries to the node's upstreams again",
		usage:   "dns upstream reset --tenant TENANT [--data-dir DIR]",
		about:   "Forget the tenant's upstreams: every PoP forwards its queries to the node's own again, within seconds.",
		example: "popgate dns upstream reset --tenant acme",
	}, (*app).dnsUpstreamReset},
}

const dnsUpstreamSyntaxHelp = "An UPSTREAM is ADDR[:PORT] for plain DNS (port 53) or tls://NAME@ADDR[:PORT] for " +
	"DNS over TLS (port 853, NAME checked against the server's certificate); ADDR is a public IP address. At most 4."

// dnsPath is the API path of the tenant's resolver setting what ("upstreams", "log").
func dnsPath(tenant, what string) string { return tenantPath(tenant) + "/dns/" + what }

func (a *app) dnsUpstreamSet(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant("`TENANT` whose upstreams they are (required)")
	ups, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	if _, err := store.ParseDNSUpstreams(ups); err != nil {
		return usagef("dns upstream set: %s", err)
	}
	var out webui.APIDNSUpstreams
	if _, err := a.client(f).callJSON(ctx, http.MethodPut, dnsPath(f.tenant, "upstreams"), webui.APIDNSUpstreamsSet{Upstreams: ups}, &out); err != nil {
		return err
	}
	a.note("tenant %s's DNS queries go to %s (in that order) at every PoP within seconds", f.tenant, strings.Join(out.Upstreams, ", "))
	return nil
}

func (a *app) dnsUpstreamList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant("`TENANT` whose upstreams to list (required)").withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	var out webui.APIDNSUpstreams
	if printed, err := a.getOrPrintJSON(ctx, f, dnsPath(f.tenant, "upstreams"), &out); printed || err != nil {
		return err
	}
	if out.NodeDefault {
		a.note("tenant %s uses the node's upstreams (serve's --dns-upstream); set its own with 'popgate dns upstream set --tenant %s UPSTREAM...'", f.tenant, f.tenant)
		return nil
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "ORDER\tUPSTREAM\tPROTOCOL")
	for i, u := range out.Upstreams {
		proto := "DNS over UDP"
		if strings.HasPrefix(u, "tls://") {
			proto = "DNS over TLS"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strconv.Itoa(i+1), u, proto)
	}
	return tw.Flush()
}

func (a *app) dnsUpstreamReset(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant("`TENANT` whose upstreams to forget (required)")
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, dnsPath(f.tenant, "upstreams"), nil); err != nil {
		return err
	}
	a.note("tenant %s's DNS queries go to the node's upstreams again at every PoP within seconds", f.tenant)
	return nil
}
