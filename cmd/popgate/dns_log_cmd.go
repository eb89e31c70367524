package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const dnsLogAbout = "A tenant's DNS query log records each query of its peers that the PoPs answer: when, which " +
	"peer (and address), the name and type, what the resolver did (local, cache, forwarded, blocked, split, failed, " +
	"refused), the answer's rcode and the time it took. It holds personal data, so it is off unless the tenant turns it on; it " +
	"keeps entries for 24 hours unless told (1 hour to 7 days) and at most 1,000,000 of them (the oldest go), and " +
	"turning it off deletes them. Every node sends what it logged with its reports, every 5 s."

var dnsLogCommands = []subcommand{
	{cmdSpec{name: "dns log", about: dnsLogAbout}, nil},
	{cmdSpec{
		name:    "dns log show",
		summary: "Show a tenant's logged DNS queries, newest first",
		usage:   "dns log show --tenant TENANT [--since DURATION] [--peer NAME] [--limit N] [--json] [--data-dir DIR]",
		about: "Show the tenant's logged queries, newest first, and whether its log is on. What a node logged shows " +
			"within seconds of the query.",
		example: "popgate dns log show --tenant acme --since 1h\n" +
			"popgate dns log show --tenant acme --peer laptop --limit 1000 --json | jq -r '.entries[] | select(.rcode == \"NXDOMAIN\") | .name'",
	}, (*app).dnsLogShow},
	{cmdSpec{
		name:    "dns log enable",
		summary: "Turn a tenant's query log on (off by default), keeping entries 1h to 7d",
		usage:   "dns log enable --tenant TENANT [--keep DURATION] [--data-dir DIR]",
		about: "Turn the tenant's query log on, or change how long it keeps entries: every PoP logs the tenant's " +
			"queries within seconds. Tell the tenant's users: the log records which names they look up.",
		example: "popgate dns log enable --tenant acme\npopgate dns log enable --tenant acme --keep 7d",
	}, (*app).dnsLogEnable},
	{cmdSpec{
		name:    "dns log disable",
		summary: "Turn a tenant's query log off and delete its entries",
		usage:   "dns log disable --tenant TENANT [--data-dir DIR]",
		about:   "Turn the tenant's query log off and delete its entries; the PoPs stop logging within seconds.",
		example: "popgate dns log disable --tenant acme",
	}, (*app).dnsLogDisable},
}

func (a *app) dnsLogShow(ctx context.Context, spec cmdSpec, args []string) error {
	var peer string
	f := newAdminFlags(spec).withTenant("`TENANT` whose log to show (required)").withJSON().withSince("queries")
	f.String(&peer, "peer", "", "show only the queries of peer `NAME`")
	f.withLimit("queries", store.MaxDNSLogPage)
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	q, err := f.pageQuery(a.now())
	if err != nil {
		return err
	}
	if peer != "" {
		if err := checkName("peer", peer); err != nil {
			return err
		}
		q.Set("peer", peer)
	}
	var log webui.APIDNSLog
	if printed, err := a.getOrPrintJSON(ctx, f, dnsPath(f.tenant, "log")+"?"+q.Encode(), &log); printed || err != nil {
		return err
	}
	if !log.Enabled {
		a.note("the DNS query log of tenant %s is off; turn it on with 'popgate dns log enable --tenant %s'", f.tenant, f.tenant)
	} else if len(log.Entries) == 0 {
		a.note("no such queries in the log of tenant %s (on since %s, entries kept %s)", f.tenant,
			log.EnabledAt.Local().Format(time.DateTime), store.DurationText(time.Duration(log.KeepSeconds)*time.Second))
	}
	if len(log.Entries) == 0 {
		return nil
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "TIME\tPEER\tNAME\tTYPE\tOUTCOME\tRCODE\tLATENCY\tNODE")
	for _, e := range log.Entries {
		who := e.Peer
		if who == "" {
			who = e.Client
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), who, clipCell(e.Name, 64), e.Type,
			e.Outcome, e.Rcode, micros(e.LatencyMicros), e.Node)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if log.More {
		a.note("older queries match too: narrow --since, or raise --limit (at most %d)", store.MaxDNSLogPage)
	}
	return nil
}

func (a *app) dnsLogEnable(ctx context.Context, spec cmdSpec, args []string) error {
	var keep string
	f := newAdminFlags(spec).withTenant("`TENANT` whose log to turn on (required)")
	f.String(&keep, "keep", "24h", "keep entries for `DURATION`: 1h to 7d")
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	d, err := parseLifetime(keep)
	if err == nil {
		err = store.ValidateDNSLogKeep(d)
	}
	if err != nil {
		return usagef("dns log enable: --keep %q: give a duration from 1h to 7d, e.g. 24h, 36h or 7d", keep)
	}
	var set webui.APIDNSLogSettings
	req := webui.APIDNSLogEnable{KeepSeconds: int64(d / time.Second)}
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, dnsPath(f.tenant, "log/enable"), req, &set); err != nil {
		return err
	}
	a.note("the DNS query log of tenant %s is on, entries kept %s: see it with 'popgate dns log show --tenant %s'",
		f.tenant, store.DurationText(time.Duration(set.KeepSeconds)*time.Second), f.tenant)
	return nil
}

func (a *app) dnsLogDisable(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant("`TENANT` whose log to turn off (required)")
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	var set webui.APIDNSLogSettings
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, dnsPath(f.tenant, "log/disable"), nil, &set); err != nil {
		return err
	}
	entries := "entries"
	if set.Deleted == 1 {
		entries = "entry"
	}
	a.note("the DNS query log of tenant %s is off; %d %s deleted", f.tenant, set.Deleted, entries)
	return nil
}
