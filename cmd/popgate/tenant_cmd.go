package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const tenantAbout = "Tenants are the customer organisations of the gateway. Each has its own peers, " +
	"addresses and policy, and never sees another tenant's traffic."

var tenantCommands = []subcommand{
	{cmdSpec{
		name:    "tenant add",
		usage:   "tenant add [--data-dir DIR] NAME",
		about:   "Add a tenant. Its name is used in the other commands and in the web UI.",
		example: "popgate tenant add acme",
		args:    []string{"NAME"},
	}, (*app).tenantAdd},
	{cmdSpec{
		name:    "tenant list",
		usage:   "tenant list [--json] [--data-dir DIR]",
		about:   "List the tenants with their number of peers, whether their configs split the tunnel, and their flow bounds (per peer and in all).",
		example: "popgate tenant list\npopgate tenant list --json | jq -r '.tenants[].name'",
	}, (*app).tenantList},
	{cmdSpec{
		name:  "tenant set",
		usage: "tenant set [--split-tunnel on|off] [--max-flows-per-peer N|default] [--max-flows N|default] [--regions REGION,...|all] [--data-dir DIR] NAME|--tenant NAME",
		about: "Change a tenant's settings. With split tunnel on, the configs of its peers send only the " +
			"overlay and the tenant's routes (see 'popgate route list'; all but 0.0.0.0/0 and ::/0) through " +
			"the tunnel, and the rest of their traffic takes the device's own way out; off (the default) " +
			"sends all traffic through the tunnel. Configs already imported keep what they had: a peer " +
			"picks the change up when it imports its config again. " +
			"The flow bounds say how many flows one peer of the tenant, and all of them together, may have " +
			"open at once, through the exit (TCP, UDP, pings waiting for a reply) and in the firewall's " +
			"connection tracking; defaults 4096 and 16384. At a bound a new flow replaces the peer's oldest " +
			"flow that never got a reply, or is dropped when there is none ('popgate status' counts both). " +
			"They apply to new flows at once. " +
			"--regions limits the tenant to some regions (see 'popgate region list'): its peers' configs are " +
			"given only for those, and other regions' PoPs stop serving its peers; --regions all (the " +
			"default) allows every region.",
		example: "popgate tenant set --split-tunnel on acme\npopgate tenant set --max-flows-per-peer 10000 --max-flows 50000 acme\n" +
			"popgate tenant set --max-flows-per-peer default acme\npopgate tenant set --tenant acme --regions fra,ams\npopgate tenant set --tenant acme --regions all",
		args:     []string{"NAME"},
		flagName: "tenant",
	}, (*app).tenantSet},
	{cmdSpec{
		name:    "tenant remove",
		usage:   "tenant remove [--data-dir DIR] NAME",
		about:   "Remove a tenant. The server refuses while it still has peers: remove them first.",
		example: "popgate tenant remove acme",
		args:    []string{"NAME"},
	}, (*app).tenantRemove},
}

func (a *app) cmdTenant(ctx context.Context, args []string) error {
	return a.group(ctx, "tenant", tenantAbout, tenantCommands, args)
}

func (a *app) tenantAdd(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := checkName("tenant", pos[0]); err != nil {
		return err
	}
	var t webui.APITenant
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, "/api/v1/tenants", webui.APINewTenant{Name: pos[0]}, &t); err != nil {
		return err
	}
	a.note("tenant %s added: add a peer with 'popgate peer add --tenant %s NAME'", t.Name, t.Name)
	return nil
}

func (a *app) tenantList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	var ts webui.APITenants
	if printed, err := a.getOrPrintJSON(ctx, f, "/api/v1/tenants", &ts); printed || err != nil {
		return err
	}
	if len(ts.Tenants) == 0 {
		a.note("no tenants yet: add one with 'popgate tenant add NAME'")
		return nil
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "NAME\tPEERS\tSPLIT-TUNNEL\tFLOWS/PEER\tFLOWS\tREGIONS\tCREATED")
	for _, t := range ts.Tenants {
		regions := "all"
		if len(t.Regions) > 0 {
			regions = strings.Join(t.Regions, ",")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\n", t.Name, t.Peers, onOff(t.SplitTunnel), t.MaxFlowsPerPeer, t.MaxFlows, regions, ago(a.now(), t.CreatedAt))
	}
	return tw.Flush()
}

func (a *app) tenantSet(ctx context.Context, spec cmdSpec, args []string) error {
	var split onOffFlag
	var perPeer, total flowBoundFlag
	var regions string
	f := newAdminFlags(spec).withTenant("the `TENANT` to change, instead of NAME")
	f.Var(&split, "split-tunnel", "`on|off`: on, client configs route only the tenant's routes and the overlay through the tunnel; off, all traffic", "")
	f.Var(&perPeer, "max-flows-per-peer", "`N|default`: the most flows one peer of the tenant may have open at once, 1-1048576; default: the node's, 4096", "")
	f.Var(&total, "max-flows", "`N|default`: the most flows the tenant's peers may have open at once in all, 1-1048576; default: the node's, 16384", "")
	f.String(&regions, "regions", "", "`REGION,...|all`: the regions the tenant may use; all: every region (the default)")
	var domain string
	f.String(&domain, "domain", "", "`DOMAIN|default`: the DNS domain of the tenant's peer names at the in-tunnel resolver, e.g. corp.example.com; default: <tenant>.internal")
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := checkName("tenant", pos[0]); err != nil {
		return err
	}
	setSplit, setPerPeer, setTotal, setRegions, setDomain := f.isSet("split-tunnel"), f.isSet("max-flows-per-peer"), f.isSet("max-flows"), f.isSet("regions"), f.isSet("domain")
	if !setSplit && !setPerPeer && !setTotal && !setRegions && !setDomain {
		return usagef("tenant set: nothing to change: give --split-tunnel on|off, --max-flows-per-peer N, --max-flows N, --regions REGION,...|all or --domain DOMAIN|default")
	}
	if setDomain {
		if domain == "default" {
			domain = ""
		} else if err := store.ValidateDomain(strings.TrimSuffix(strings.ToLower(domain), ".")); err != nil {
			return usagef("tenant set: --domain: %s; or give default for <tenant>.internal", err)
		}
	}
	var regionList []string
	if setRegions {
		if regionList, err = parseRegions(regions); err != nil {
			return err
		}
	}
	c := a.client(f)
	var t webui.APITenant
	if setRegions {
		if _, err := c.callJSON(ctx, http.MethodPatch, tenantPath(pos[0]), webui.APITenantUpdate{Regions: &regionList}, &t); err != nil {
			return err
		}
		if len(t.Regions) == 0 {
			a.note("tenant %s may use every region", t.Name)
		} else {
			a.note("tenant %s may use regions %s only: its peers' configs for other regions are refused, and other regions no longer serve its peers",
				t.Name, strings.Join(t.Regions, ", "))
		}
	}
	if setPerPeer || setTotal {
		var l webui.APITenantLimits
		if setPerPeer {
			l.MaxFlowsPerPeer = perPeer.value()
		}
		if setTotal {
			l.MaxFlows = total.value()
		}
		if _, err := c.callJSON(ctx, http.MethodPatch, tenantPath(pos[0])+"/limits", l, &t); err != nil {
			return err
		}
		a.note("tenant %s: at most %d flows per peer and %d in all, from now on (through the exit and in connection tracking)",
			t.Name, t.MaxFlowsPerPeer, t.MaxFlows)
	}
	if setDomain {
		if _, err := c.callJSON(ctx, http.MethodPatch, tenantPath(pos[0]), webui.APITenantUpdate{Domain: &domain}, &t); err != nil {
			return err
		}
		a.note("tenant %s: its peers are <peer>.%s at the in-tunnel resolver, at every PoP within seconds", t.Name, t.Domain)
	}
	if setSplit {
		on := split.on()
		if _, err := c.callJSON(ctx, http.MethodPatch, tenantPath(pos[0]), webui.APITenantUpdate{SplitTunnel: &on}, &t); err != nil {
			return err
		}
		how := "all traffic"
		if t.SplitTunnel {
			how = "only the tenant's routes and the overlay"
		}
		a.note("tenant %s: split tunnel %s: client configs send %s through the tunnel; peers pick this up when they import their config again",
			t.Name, onOff(t.SplitTunnel), how)
	}
	return nil
}

func (a *app) tenantRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := checkName("tenant", pos[0]); err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, tenantPath(pos[0]), nil); err != nil {
		return err
	}
	a.note("tenant %s removed", pos[0])
	return nil
}

// parseRegions reads --regions: region names separated by commas, or "all" (every region,
// sent as an empty list).
func parseRegions(v string) ([]string, error) {
	if strings.TrimSpace(v) == "all" {
		return []string{}, nil
	}
	var out []string
	for _, r := range strings.Split(v, ",") {
		r = strings.TrimSpace(r)
		if err := store.ValidateRegionName(r); err != nil {
			return nil, usagef("tenant set: --regions: %s; or give all for every region", err)
		}
		out = append(out, r)
	}
	return out, nil
}
