package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const nodeAbout = "Nodes are PoPs and exits that joined this controller with a one-time token. The controller " +
	"accepts them on --controller-addr (serve); a node joins with 'popgate serve --join TOKEN' and keeps its identity " +
	"in its data dir afterwards."

var nodeCommands = []subcommand{
	{cmdSpec{
		name:  "node token",
		usage: "node token --roles pop|exit|pop,exit [--region REGION] [--name NAME] [--expires DURATION] [--data-dir DIR]",
		about: "Make a one-time join token and print it on stdout, one line. It carries the controller's node address, " +
			"its certificate pin and a secret that expires (--expires, default 1h, at most 7d). A PoP without --region " +
			"serves the controller's own region.",
		example: "popgate node token --roles pop --region fra\n" +
			"popgate serve --join \"$(cat token)\" --node-name p1   # on the node",
	}, (*app).nodeToken},
	{cmdSpec{
		name:    "node list",
		usage:   "node list [--json] [--data-dir DIR]",
		about:   "List the nodes: roles, region, version, backbone address, connected or last seen, and the desired-state generation applied against the current one.",
		example: "popgate node list",
	}, (*app).nodeList},
	{cmdSpec{
		name:    "node remove",
		usage:   "node remove [--data-dir DIR] NAME",
		about:   "Remove a node: its sync stream closes at once, it can no longer sync, and it drops its state and serves nothing.",
		example: "popgate node remove p1",
		args:    []string{"NAME"},
	}, (*app).nodeRemove},
}

func (a *app) cmdNode(ctx context.Context, args []string) error {
	return a.group(ctx, "node", nodeAbout, nodeCommands, args)
}

func (a *app) nodeToken(ctx context.Context, spec cmdSpec, args []string) error {
	var roles, region, name, expires string
	f := newAdminFlags(spec)
	f.String(&roles, "roles", "", "`ROLES` of the node: pop, exit or pop,exit (required)")
	f.String(&region, "region", "", "`REGION` the node serves (default: the controller's own, for a PoP)")
	f.String(&name, "name", "", "the only `NAME` the node may join with (default: the node's --node-name)")
	f.String(&expires, "expires", "1h", "the token expires after `DURATION`, e.g. 30m, 12h or 7d, at most 7d")
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if roles == "" {
		return usagef("node token: missing --roles: give pop, exit or pop,exit")
	}
	if _, err := store.ParseNodeRoles(roles); err != nil {
		return &usageError{msg: "node token: " + err.Error()}
	}
	if name != "" {
		if err := store.ValidateNodeName(name); err != nil {
			return &usageError{msg: "node token: " + err.Error()}
		}
	}
	life, err := parseLifetime(expires)
	if err != nil {
		return usagef("node token: --expires %v", err)
	}
	if life < time.Minute || life > 7*24*time.Hour {
		return usagef("node token: --expires %s: a join token lives from a minute to 7 days", expires)
	}
	req := webui.APINewNodeToken{Roles: roles, Region: region, Name: name, ExpiresIn: int64(life / time.Second)}
	var tok webui.APINodeToken
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, "/api/v1/nodes/tokens", req, &tok); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, tok.Token)
	where := ""
	if tok.Region != "" {
		where = " in region " + tok.Region
	}
	a.note("join token for a node with roles %s%s, valid until %s: run 'popgate serve --join TOKEN' on the node; it is shown this once and works once",
		tok.Roles, where, tok.ExpiresAt.Local().Format("2006-01-02 15:04 MST"))
	return nil
}

func (a *app) nodeList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	var ns webui.APIJoinedNodes
	if printed, err := a.getOrPrintJSON(ctx, f, "/api/v1/nodes", &ns); printed || err != nil {
		return err
	}
	if len(ns.Nodes) == 0 {
		a.note("no nodes: make a join token with 'popgate node token --roles pop' and run 'popgate serve --join TOKEN' on the node")
		return nil
	}
	now := a.now()
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "NAME\tROLES\tREGION\tVERSION\tBACKBONE\tSYNC\tGENERATION\tLINKS")
	for _, n := range ns.Nodes {
		sync := "never seen"
		switch {
		case n.Connected && n.ConnectedSince != nil:
			sync = "connected " + ago(now, *n.ConnectedSince)
		case n.LastSeen != nil:
			sync = "last seen " + ago(now, *n.LastSeen)
		}
		gen := fmt.Sprintf("%d/%d", n.AppliedGeneration, n.Current)
		if n.ApplyError != "" {
			gen += " (apply failed)"
		} else if n.AppliedGeneration < n.Current {
			gen += " (behind)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Roles, orDash(n.Region), orDash(n.Version), orDash(n.BackboneEndpoint), sync, gen, orDash(linksText(n.Links)))
	}
	return tw.Flush()
}

// linksText sums up a node's backbone links: "x1 up 1.2ms, x2 down 30% loss".
func linksText(ls []webui.APIBackboneLink) string {
	parts := make([]string, 0, len(ls))
	for _, l := range ls {
		name := l.Node
		if name == "" {
			name = fmt.Sprintf("#%d", l.NodeID)
		}
		p := name + " " + l.State
		if l.RTTMicros > 0 {
			p += " " + (time.Duration(l.RTTMicros) * time.Microsecond).Round(100*time.Microsecond).String()
		}
		if l.LossPercent > 0 {
			p += fmt.Sprintf(" %d%% loss", l.LossPercent)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func (a *app) nodeRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := store.ValidateNodeName(pos[0]); err != nil {
		return &usageError{msg: err.Error()}
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, "/api/v1/nodes/"+url.PathEscape(pos[0]), nil); err != nil {
		return err
	}
	a.note("node %s removed: it can no longer sync and serves nothing; routes that listed it as an exit lost it (a route whose last exit it was is gone: 'popgate audit --action route' lists them)", strings.TrimSpace(pos[0]))
	return nil
}
