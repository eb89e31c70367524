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

const regionAbout = "Regions are the places clients connect to: each has a public endpoint (host:port) and a " +
	"WireGuard key of its own, served by the PoPs of the region. A peer's key and addresses are the " +
	"same in every region; its config for a region ('peer config --region') carries the region's " +
	"endpoint and server key. The controller's own region (serve's --region, default local) uses the " +
	"node key and --public-endpoint, so the configs of an existing installation stay valid."

var regionCommands = []subcommand{
	{cmdSpec{
		name:  "region add",
		usage: "region add --endpoint HOST:PORT [--data-dir DIR] NAME",
		about: "Add a region with a new WireGuard key (generated and kept sealed by the controller; " +
			"only the region's PoPs receive it) and the endpoint its clients connect to: a DNS name or " +
			"address in front of the region's PoPs.",
		example: "popgate region add fra --endpoint vpn-fra.example.com:51820",
		args:    []string{"NAME"},
	}, (*app).regionAdd},
	{cmdSpec{
		name:    "region list",
		usage:   "region list [--json] [--data-dir DIR]",
		about:   "List the regions with their endpoints, public keys and the tenants limited to them (tenants allowed in every region are not listed).",
		example: "popgate region list\npopgate region list --json | jq -r '.regions[].name'",
	}, (*app).regionList},
	{cmdSpec{
		name:  "region set",
		usage: "region set --endpoint HOST:PORT [--data-dir DIR] NAME",
		about: "Change the endpoint of a region. Configs already imported keep the old one until they are " +
			"imported again. The controller's own region takes its endpoint from serve's --public-endpoint.",
		example: "popgate region set fra --endpoint fra.vpn.example.com:443",
		args:    []string{"NAME"},
	}, (*app).regionSet},
	{cmdSpec{
		name:  "region remove",
		usage: "region remove [--data-dir DIR] NAME",
		about: "Remove a region and its key: its clients can no longer connect there. The controller's own " +
			"region cannot be removed, nor the only region a tenant is limited to (give the tenant " +
			"another region first with 'popgate tenant set --regions').",
		example: "popgate region remove ams",
		args:    []string{"NAME"},
	}, (*app).regionRemove},
}

func (a *app) cmdRegion(ctx context.Context, args []string) error {
	return a.group(ctx, "region", regionAbout, regionCommands, args)
}

// checkRegion rejects a region name the server would refuse, before asking it.
func checkRegion(name string) error {
	if err := store.ValidateRegionName(name); err != nil {
		return &usageError{msg: err.Error()}
	}
	return nil
}

// endpointFlag reads --endpoint, required, and checks it as the server would.
func endpointFlag(f *adminFlags, endpoint string) error {
	if !f.isSet("endpoint") {
		return usagef("%s: missing --endpoint HOST:PORT: usage: popgate %s", f.spec.name, f.spec.usage)
	}
	if err := store.ValidateEndpoint(endpoint); err != nil {
		return usagef("%s: --endpoint: %s", f.spec.name, err)
	}
	return nil
}

// regionEndpointArgs parses the arguments of region add and set: a region name and a required
// --endpoint (usage says what it is), both checked before the control socket is asked.
func (a *app) regionEndpointArgs(spec cmdSpec, args []string, usage string) (f *adminFlags, name, endpoint string, err error) {
	f = newAdminFlags(spec)
	f.String(&endpoint, "endpoint", "", usage)
	pos, err := f.parse(a, args)
	if err != nil {
		return nil, "", "", err
	}
	if err := checkRegion(pos[0]); err != nil {
		return nil, "", "", err
	}
	if err := endpointFlag(f, endpoint); err != nil {
		return nil, "", "", err
	}
	return f, pos[0], endpoint, nil
}

func regionPath(name string) string { return "/api/v1/regions/" + url.PathEscape(name) }

func (a *app) regionAdd(ctx context.Context, spec cmdSpec, args []string) error {
	f, name, endpoint, err := a.regionEndpointArgs(spec, args, "`HOST:PORT` the region's clients connect to (required)")
	if err != nil {
		return err
	}
	var r webui.APIRegion
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, "/api/v1/regions", webui.APINewRegion{Name: name, Endpoint: endpoint}, &r); err != nil {
		return err
	}
	a.note("region %s added with endpoint %s and public key %s: print a peer's config for it with 'popgate peer config --tenant TENANT --region %s NAME'",
		r.Name, r.Endpoint, r.PublicKey, r.Name)
	return nil
}

func (a *app) regionList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	var rs webui.APIRegions
	if printed, err := a.getOrPrintJSON(ctx, f, "/api/v1/regions", &rs); printed || err != nil {
		return err
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "NAME\tENDPOINT\tPUBLIC-KEY\tKEY\tLIMITED-TENANTS")
	for _, r := range rs.Regions {
		key, tenants := "own", "-"
		if r.Home {
			key = "node (this controller's region)"
		}
		if len(r.Tenants) > 0 {
			tenants = strings.Join(r.Tenants, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Endpoint, r.PublicKey, key, tenants)
	}
	return tw.Flush()
}

func (a *app) regionSet(ctx context.Context, spec cmdSpec, args []string) error {
	f, name, endpoint, err := a.regionEndpointArgs(spec, args, "the new `HOST:PORT` the region's clients connect to (required)")
	if err != nil {
		return err
	}
	var r webui.APIRegion
	if _, err := a.client(f).callJSON(ctx, http.MethodPatch, regionPath(name), webui.APIRegionUpdate{Endpoint: &endpoint}, &r); err != nil {
		return err
	}
	a.note("region %s: endpoint %s; configs already imported keep the old one until they are imported again", r.Name, r.Endpoint)
	return nil
}

func (a *app) regionRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := checkRegion(pos[0]); err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, regionPath(pos[0]), nil); err != nil {
		return err
	}
	a.note("region %s removed with its key", pos[0])
	return nil
}
