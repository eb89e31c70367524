package main

import (
	"context"
	"fmt"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

var auditSpec = cmdSpec{
	name:  "audit",
	usage: "audit [--limit N] [--tenant TENANT] [--actor NAME] [--action ACTION] [--json] [--data-dir DIR]",
	about: "Show the audit log, newest first: who (an admin, token:NAME, or cli for these commands) did what, " +
		"when, from where. Every change is in it, written together with the change; refused attempts are " +
		"recorded as action denied (at most one entry a minute per admin and operation, with a count of the others). " +
		"--action takes an action and the actions below it: route finds route.add and route.remove, peer.add " +
		"finds peer.add. Targets read KIND:NAME: tenant:acme, peer:acme/laptop, route:acme/10.0.0.0/8, policy:acme, " +
		"admin:alice, token:ci.",
	example: "popgate audit\npopgate audit --action route\npopgate audit --tenant acme --action peer --limit 200\npopgate audit --action denied",
}

func (a *app) cmdAudit(ctx context.Context, args []string) error {
	var actor, action string
	f := newAdminFlags(auditSpec).withTenant("show only the entries of `TENANT`").withJSON().withLimit("entries", store.MaxAuditPage)
	f.String(&actor, "actor", "", "show only what `NAME` did")
	f.String(&action, "action", "", "show only `ACTION` and the actions below it (peer finds peer.add, peer.remove, …)")
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	q, err := f.pageQuery(a.now())
	if err != nil {
		return err
	}
	for k, v := range map[string]string{"tenant": f.tenant, "actor": actor, "action": action} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var log webui.APIAuditLog
	if printed, err := a.getOrPrintJSON(ctx, f, "/api/v1/audit?"+q.Encode(), &log); printed || err != nil {
		return err
	}
	if len(log.Entries) == 0 {
		a.note("the audit log has no such entries")
		return nil
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "TIME\tACTOR\tREMOTE\tTENANT\tACTION\tTARGET\tDETAIL")
	for _, e := range log.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Actor, orDash(e.Remote),
			orDash(e.Tenant), e.Action, orDash(e.Target), orDash(e.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if log.More {
		a.note("older entries follow: raise --limit or narrow with --tenant, --actor or --action")
	}
	return nil
}
