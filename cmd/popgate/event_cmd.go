package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const eventAbout = "Events are state changes an operator wants to hear of: a backbone link down (link.down) and " +
	"back (link.up), the exit a route's traffic or a PoP's internet traffic leaves through changed (failover), " +
	"a node connected for the first time, offline (no report for 30 s) and back, a peer about to expire " +
	"(peer.expiring, a day before), a check failing throughout a minute at a node (check.down) and passing " +
	"again (check.back). The controller records its own and its nodes' (the newest 100,000 of 30 " +
	"days) and sends each to the webhook, when one is set: a JSON POST signed with its secret (README, " +
	"\"Events and webhook\"). Changes admins make are in the audit log ('popgate audit')."

const webhookAbout = "The webhook is one URL that every event is POSTed to, as JSON, in order, with header " +
	"X-Popgate-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the webhook's secret>. An answer other " +
	"than 2xx is retried after 1 s, doubling to 5 min, until the event is a day old; more than 1,000 waiting " +
	"drops the oldest."

var eventCommands = []subcommand{
	{cmdSpec{
		name:  "event list",
		usage: "event list [--since DURATION] [--kind KIND] [--tenant TENANT] [--node NODE] [--limit N] [--json] [--data-dir DIR]",
		about: "Show the events, newest first. --kind takes a kind and the kinds below it: node finds node.offline and " +
			"node.back, link finds link.down and link.up. Subjects read KIND:NAME: link:p1/x1 (p1's link to x1), " +
			"route:acme/10.0.0.0/8, internet:p1 (p1's internet traffic), node:p1, peer:acme/laptop.",
		example: "popgate event list --since 1h\npopgate event list --kind failover --json\npopgate event list --kind node --node p1",
	}, (*app).eventList},
	{cmdSpec{
		name:    "event webhook",
		usage:   "event webhook set|show|remove [flags]",
		about:   webhookAbout,
		summary: "set, show or remove the webhook events are sent to",
		example: "popgate event webhook set https://alerts.example.com/popgate\npopgate event webhook show",
	}, (*app).cmdWebhook},
}

var webhookCommands = []subcommand{
	{cmdSpec{
		name:  "event webhook set",
		usage: "event webhook set [--data-dir DIR] URL",
		about: "Send every event from now on to URL (http or https, without user name or password), signed with a new " +
			"secret, which is printed on stdout this once (the controller keeps it sealed). Setting it again replaces " +
			"the URL and the secret.",
		example: "popgate event webhook set https://alerts.example.com/popgate > webhook.secret",
		args:    []string{"URL"},
	}, (*app).webhookSet},
	{cmdSpec{
		name:    "event webhook show",
		usage:   "event webhook show [--json] [--data-dir DIR]",
		about:   "Show the webhook: its URL, the events delivered, the attempts failed, the events given up or dropped, those waiting, and the last attempt. Never the secret.",
		example: "popgate event webhook show",
	}, (*app).webhookShow},
	{cmdSpec{
		name:    "event webhook remove",
		usage:   "event webhook remove [--data-dir DIR]",
		about:   "Stop sending events; they stay in the event log.",
		example: "popgate event webhook remove",
	}, (*app).webhookRemove},
}

func (a *app) cmdEvent(ctx context.Context, args []string) error {
	return a.group(ctx, "event", eventAbout, eventCommands, args)
}

func (a *app) cmdWebhook(ctx context.Context, _ cmdSpec, args []string) error {
	return a.group(ctx, "event webhook", webhookAbout, webhookCommands, args)
}

func (a *app) eventList(ctx context.Context, spec cmdSpec, args []string) error {
	var kind, node string
	f := newAdminFlags(spec).withTenant("show only the events of `TENANT` (not the network's)").withJSON().withSince("events")
	f.String(&kind, "kind", "", "show only `KIND` and the kinds below it (node finds node.offline, node.back, …)")
	f.String(&node, "node", "", "show only the events of `NODE`")
	f.withLimit("events", store.MaxEventPage)
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	q, err := f.pageQuery(a.now())
	if err != nil {
		return err
	}
	if kind != "" {
		if err := store.ValidateEventKind(kind); err != nil {
			return &usageError{msg: "event list: --kind: " + err.Error()}
		}
		q.Set("kind", kind)
	}
	if f.tenant != "" {
		if err := checkName("tenant", f.tenant); err != nil {
			return err
		}
		q.Set("tenant", f.tenant)
	}
	if node != "" {
		q.Set("node", node)
	}
	var log webui.APIEvents
	if printed, err := a.getOrPrintJSON(ctx, f, "/api/v1/events?"+q.Encode(), &log); printed || err != nil {
		return err
	}
	if len(log.Events) == 0 {
		a.note("no such events")
		return nil
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "TIME\tKIND\tNODE\tTENANT\tSUBJECT\tMESSAGE")
	for _, e := range log.Events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Kind, orDash(e.Node),
			orDash(e.Tenant), orDash(e.Subject), orDash(e.Message))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if log.More {
		a.note("older events follow: raise --limit or narrow with --since, --kind, --tenant or --node")
	}
	return nil
}

func (a *app) webhookSet(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := store.ValidateWebhookURL(pos[0]); err != nil {
		return &usageError{msg: "event webhook set: " + err.Error()}
	}
	var created webui.APIWebhookCreated
	if _, err := a.client(f).callJSON(ctx, http.MethodPut, "/api/v1/events/webhook", webui.APIWebhookSet{URL: pos[0]}, &created); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, created.Secret)
	a.note("events now go to %s, each signed with the secret above (X-Popgate-Signature: sha256=<hex HMAC-SHA256 of the body>); it is shown this once: keep it where the receiver checks signatures", created.Webhook.URL)
	return nil
}

func (a *app) webhookShow(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	var w webui.APIWebhook
	if printed, err := a.getOrPrintJSON(ctx, f, "/api/v1/events/webhook", &w); printed || err != nil {
		return err
	}
	now := a.now()
	tw := newTable(a.stdout)
	fmt.Fprintf(tw, "URL\t%s\n", w.URL)
	fmt.Fprintf(tw, "SET\t%s\n", w.CreatedAt.Local().Format("2006-01-02 15:04:05"))
	last := "never"
	if w.LastOK != nil {
		last = "last " + ago(now, *w.LastOK)
	}
	fmt.Fprintf(tw, "DELIVERED\t%d (%s)\n", w.Delivered, last)
	queued := strconv.Itoa(w.Queued)
	if w.Queued > 1000 {
		queued = "more than 1000"
	}
	if w.Retrying != 0 && w.NextAttempt != nil {
		queued += fmt.Sprintf(", retrying event %d at %s", w.Retrying, w.NextAttempt.Local().Format("15:04:05"))
	}
	fmt.Fprintf(tw, "WAITING\t%s\n", queued)
	fmt.Fprintf(tw, "FAILURES\t%d attempts failed, %d events given up, %d dropped\n", w.Failed, w.GivenUp, w.Dropped)
	if w.LastAttempt != nil {
		outcome := "delivered"
		if w.LastError != "" {
			outcome = w.LastError
		}
		fmt.Fprintf(tw, "LAST ATTEMPT\t%s: %s\n", ago(now, *w.LastAttempt), outcome)
	}
	return tw.Flush()
}

func (a *app) webhookRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, "/api/v1/events/webhook", nil); err != nil {
		return err
	}
	a.note("webhook removed: no event is sent any more; they stay in the event log ('popgate event list')")
	return nil
}
