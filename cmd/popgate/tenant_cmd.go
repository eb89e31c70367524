package main

import (
	"context"
	"fmt"
	"net/http"

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
		usage: "tenant set [--split-tunnel on|off] [--max-flows-per-peer N|default] [--max-flows N|default] [--data-dir DIR] NAME",
		about: "Change a tenant's settings. With split tunnel on, the configs of its peers send only the " +
			"overlay and the tenant's routes (see 'popgate route list'; all but 0.0.0.0/0 and ::/0) through " +
			"the tunnel, and the rest of their traffic takes the device's own way out; off (the default) " +
			"sends all traffic through the tunnel. Configs already imported keep what they had: a peer " +
			"picks the change up when it imports its config again. " +
			"The flow bounds say how many flows one peer of the tenant, and all of them together, may have " +
			"open at once, through the exit (TCP, UDP, pings waiting for a reply) and in the firewall's " +
			"connection tracking; defaults 4096 and 16384. At a bound a new flow replaces the peer's oldest " +
			"flow that never got a reply, or is dropped when there is none ('popgate status' counts both). " +
			"They apply to new flows at once.",
		example: "popgate tenant set --split-tunnel on acme\npopgate tenant set --max-flows-per-peer 10000 --max-flows 50000 acme\npopgate tenant set --max-flows-per-peer default acme",
		args:    []string{"NAME"},
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
	fmt.Fprintln(tw, "NAME\tPEERS\tSPLIT-TUNNEL\tFLOWS/PEER\tFLOWS\tCREATED")
	for _, t := range ts.Tenants {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\n", t.Name, t.Peers, onOff(t.SplitTunnel), t.MaxFlowsPerPeer, t.MaxFlows, ago(a.now(), t.CreatedAt))
	}
	return tw.Flush()
}

func (a *app) tenantSet(ctx context.Context, spec cmdSpec, args []string) error {
	var split onOffFlag
	var perPeer, total flowBoundFlag
	f := newAdminFlags(spec)
	f.Var(&split, "split-tunnel", "`on|off`: on, client configs route only the tenant's routes and the overlay through the tunnel; off, all traffic", "")
	f.Var(&perPeer, "max-flows-per-peer", "`N|default`: the most flows one peer of the tenant may have open at once, 1-1048576; default: the node's, 4096", "")
	f.Var(&total, "max-flows", "`N|default`: the most flows the tenant's peers may have open at once in all, 1-1048576; default: the node's, 16384", "")
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := checkName("tenant", pos[0]); err != nil {
		return err
	}
	setSplit, setPerPeer, setTotal := f.isSet("split-tunnel"), f.isSet("max-flows-per-peer"), f.isSet("max-flows")
	if !setSplit && !setPerPeer && !setTotal {
		return usagef("tenant set: nothing to change: give --split-tunnel on|off, --max-flows-per-peer N or --max-flows N")
	}
	c := a.client(f)
	var t webui.APITenant
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
