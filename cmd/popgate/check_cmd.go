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

const checkAbout = "Checks watch the network from the PoPs: a DNS name resolved through each node's upstream " +
	"resolvers (serve's --dns-upstream; the answer and its time), a URL fetched (the status and the time to " +
	"the first byte), and every region's public endpoint, asked for a real WireGuard handshake by the PoPs of " +
	"the other regions (nothing to configure: a region has its check, region:NAME, from the start). Each node " +
	"reports what it found a minute at a time; the controller keeps it for 7 days and 'check show' sums it " +
	"up as uptime and latency percentiles. The operator's checks (no --tenant) may reach any address; a " +
	"tenant's reach only public addresses and run only in the regions the tenant may use."

const checkTenantUsage = "`TENANT` whose check it is (default: the operator's)"

var checkCommands = []subcommand{
	{cmdSpec{
		name: "check add",
		usage: "check add --kind dns|http --target TARGET [--expect E] [--every 60s] [--from all|region:R|node:N] " +
			"[--tenant TENANT] [--data-dir DIR] NAME",
		about: "Add a check. A dns check resolves TARGET, a name, to its addresses (A and AAAA) through the node's " +
			"upstream resolvers, in order until one answers; it passes when there is an address (--expect: when " +
			"the answer holds that one). An http check fetches TARGET, an http or https URL, on a new connection " +
			"without following redirects; it passes when the status is --expect (default 200). It runs every " +
			"--every (10s to 1h) on the nodes --from names: all (every PoP, the default), region:NAME (the " +
			"region's PoPs), node:NAME (that node, whatever its roles), several with commas. The nodes start " +
			"within seconds.",
		example: "popgate check add resolver --kind dns --target www.example.com\n" +
			"popgate check add shop --kind http --target https://shop.example.com/health --expect 204 --every 30s --from region:fra\n" +
			"popgate check add site --tenant acme --kind http --target https://www.acme.example/",
		args: []string{"NAME"},
	}, (*app).checkAdd},
	{cmdSpec{
		name:  "check list",
		usage: "check list [--tenant TENANT] [--json] [--data-dir DIR]",
		about: "List the checks (every region's first, then the operator's, then each tenant's; with --tenant, " +
			"that tenant's): what they watch, from where, their uptime and median latency over the last 24 hours, " +
			"and the latest result.",
		example: "popgate check list\npopgate check list --json | jq -r '.checks[] | select(.day.uptime_percent < 99) | .name'",
	}, (*app).checkList},
	{cmdSpec{
		name:  "check show",
		usage: "check show [--tenant TENANT] [--json] [--data-dir DIR] NAME",
		about: "Show a check: where it runs, its uptime over the last 24 hours and 7 days, the 50th and 95th " +
			"percentiles of its latency (of each minute's median), and each node's latest minute with its answer " +
			"or failure. A region's handshake check is region:NAME.",
		example: "popgate check show resolver\npopgate check show region:fra",
		args:    []string{"NAME"},
	}, (*app).checkShow},
	{cmdSpec{
		name:  "check remove",
		usage: "check remove [--tenant TENANT] [--data-dir DIR] NAME",
		about: "Remove a check and its results; the nodes stop running it within seconds. A region's handshake " +
			"check goes only with its region.",
		example: "popgate check remove resolver",
		args:    []string{"NAME"},
	}, (*app).checkRemove},
}

func (a *app) cmdCheck(ctx context.Context, args []string) error {
	return a.group(ctx, "check", checkAbout, checkCommands, args)
}

// checkPath is the API path of tenant's check name ("" for the operator's).
func checkPath(tenant, name string) string {
	if tenant == "" {
		return "/api/v1/checks/" + url.PathEscape(name)
	}
	return tenantPath(tenant) + "/checks/" + url.PathEscape(name)
}

// checkArgs parses a check command's --tenant and NAME, checking both as the server would.
func checkArgs(a *app, f *adminFlags, args []string) (string, error) {
	pos, err := f.parse(a, args)
	if err != nil {
		return "", err
	}
	if f.tenant != "" {
		if err := checkName("tenant", f.tenant); err != nil {
			return "", err
		}
	}
	name := pos[0]
	if region, ok := strings.CutPrefix(name, "region:"); ok && f.tenant == "" {
		if err := store.ValidateRegionName(region); err != nil {
			return "", &usageError{msg: err.Error()}
		}
		return name, nil
	}
	if err := store.ValidateCheckName(name); err != nil {
		return "", &usageError{msg: err.Error()}
	}
	return name, nil
}

func (a *app) checkAdd(ctx context.Context, spec cmdSpec, args []string) error {
	var kind, target, expect, every, from string
	f := newAdminFlags(spec).withTenant(checkTenantUsage)
	f.String(&kind, "kind", "", "`KIND` of check: dns or http (required)")
	f.String(&target, "target", "", "`TARGET`: a DNS name (dns) or an http(s) URL (http) (required)")
	f.String(&expect, "expect", "", "`E`: an address the DNS answer must hold, or the HTTP status (default 200)")
	f.String(&every, "every", "60s", "run it every `DURATION`, 10s to 1h")
	f.String(&from, "from", "all", "`WHERE` it runs: all, region:NAME, node:NAME, several with commas")
	name, err := checkArgs(a, f, args)
	if err != nil {
		return err
	}
	if kind == "" || target == "" {
		return usagef("check add: missing --kind or --target: usage: popgate %s", spec.usage)
	}
	if err := store.ValidateCheck(kind, target, expect, f.tenant != ""); err != nil {
		return usagef("check add: %s", err)
	}
	d, err := time.ParseDuration(every)
	if err != nil || d < store.MinCheckEvery || d > store.MaxCheckEvery || d%time.Second != 0 {
		return usagef("check add: --every %q: give a duration from 10s to 1h in whole seconds, e.g. 30s or 5m", every)
	}
	if _, err := store.ParseCheckFrom(from); err != nil {
		return usagef("check add: --from: %s", err)
	}
	req := webui.APINewCheck{Name: name, Kind: kind, Target: target, Expect: expect, EverySeconds: int(d / time.Second), From: from}
	path := "/api/v1/checks"
	if f.tenant != "" {
		path = tenantPath(f.tenant) + "/checks"
	}
	var c webui.APICheck
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, path, req, &c); err != nil {
		return err
	}
	runners := "no node yet (none matches --from)"
	if len(c.Runners) > 0 {
		runners = strings.Join(c.Runners, ", ")
	}
	a.note("check %s added: %s %s every %s, on %s; see what it finds with 'popgate check show%s %s'",
		c.Name, c.Kind, c.Target, everyText(c.EverySeconds), runners, tenantFlag(f.tenant), c.Name)
	return nil
}

// tenantFlag is " --tenant T" for a tenant's command line, "" for the operator's.
func tenantFlag(tenant string) string {
	if tenant == "" {
		return ""
	}
	return " --tenant " + tenant
}

func (a *app) checkList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant("only the checks of `TENANT`").withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	path := "/api/v1/checks"
	if f.tenant != "" {
		if err := checkName("tenant", f.tenant); err != nil {
			return err
		}
		path += "?tenant=" + url.QueryEscape(f.tenant)
	}
	var cs webui.APIChecks
	if printed, err := a.getOrPrintJSON(ctx, f, path, &cs); printed || err != nil {
		return err
	}
	if len(cs.Checks) == 0 {
		a.note("no checks: add one with 'popgate check add NAME --kind dns --target www.example.com'")
		return nil
	}
	now := a.now()
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "NAME\tTENANT\tKIND\tTARGET\tEVERY\tFROM\tUPTIME-24H\tP50-24H\tLATEST")
	for _, c := range cs.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, orDash(c.Tenant), c.Kind, clipCell(c.Target, 48),
			everyText(c.EverySeconds), c.From, uptimeText(c.Day), micros(c.Day.P50Micros), latestText(now, c.Latest))
	}
	return tw.Flush()
}

func (a *app) checkShow(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(checkTenantUsage).withJSON()
	name, err := checkArgs(a, f, args)
	if err != nil {
		return err
	}
	var c webui.APICheck
	if printed, err := a.getOrPrintJSON(ctx, f, checkPath(f.tenant, name), &c); printed || err != nil {
		return err
	}
	now := a.now()
	tw := newTable(a.stdout)
	owner := "the operator"
	if c.Tenant != "" {
		owner = "tenant " + c.Tenant
	}
	fmt.Fprintf(tw, "check\t%s (%s's)\n", c.Name, owner)
	fmt.Fprintf(tw, "watches\t%s %s", c.Kind, c.Target)
	if c.Expect != "" {
		fmt.Fprintf(tw, ", expecting %s", c.Expect)
	}
	fmt.Fprintf(tw, ", every %s\n", everyText(c.EverySeconds))
	runners := "no node"
	if c.Kind == "handshake" {
		runners = "no node: no PoP of another region has a backbone key"
	}
	if len(c.Runners) > 0 {
		runners = strings.Join(c.Runners, ", ")
	}
	fmt.Fprintf(tw, "runs on\t%s (from %s)\n", runners, c.From)
	fmt.Fprintf(tw, "uptime\t24 h %s, 7 d %s\n", windowText(c.Day), windowText(*orEmptyWindow(c.Week)))
	fmt.Fprintf(tw, "latency\t24 h p50 %s, p95 %s; 7 d p50 %s, p95 %s\n", micros(c.Day.P50Micros), micros(c.Day.P95Micros),
		micros(orEmptyWindow(c.Week).P50Micros), micros(orEmptyWindow(c.Week).P95Micros))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.Latest) == 0 {
		fmt.Fprintln(a.stdout, "\nNo node has reported it yet.")
		return nil
	}
	fmt.Fprintln(a.stdout)
	tw = newTable(a.stdout)
	fmt.Fprintln(tw, "NODE\tMINUTE\tPASSED\tFAILED\tLATENCY\tANSWER")
	for _, l := range c.Latest {
		answer := l.Detail
		if l.Error != "" {
			answer = "failed: " + l.Error
			if l.Detail != "" {
				answer += " (" + l.Detail + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", l.Node, ago(now, l.Minute), l.OK, l.Failed, micros(l.LatencyMicros), orDash(answer))
	}
	return tw.Flush()
}

func (a *app) checkRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(checkTenantUsage)
	name, err := checkArgs(a, f, args)
	if err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, checkPath(f.tenant, name), nil); err != nil {
		return err
	}
	a.note("check %s removed with its results", name)
	return nil
}

// everyText words an interval in seconds: "10s", "1m", "1m30s", "1h".
func everyText(secs int) string {
	s := (time.Duration(secs) * time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func orEmptyWindow(w *webui.APICheckWindow) *webui.APICheckWindow {
	if w == nil {
		return &webui.APICheckWindow{}
	}
	return w
}

// uptimeText is a window's uptime, "99.93%", or "-" without a run.
func uptimeText(w webui.APICheckWindow) string {
	if w.UptimePercent == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", *w.UptimePercent)
}

// windowText is a window's uptime with its runs: "99.93% (1439 of 1440 runs)".
func windowText(w webui.APICheckWindow) string {
	if w.UptimePercent == nil {
		return "- (no run)"
	}
	return fmt.Sprintf("%s (%d of %d runs passed)", uptimeText(w), w.OK, w.OK+w.Failed)
}

// micros formats a latency in microseconds, "-" for none.
func micros(us int64) string {
	if us <= 0 {
		return "-"
	}
	d := time.Duration(us) * time.Microsecond
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}

// latestText sums up the newest of the nodes' latest minutes: "ok 1m ago" or "failed 1m ago:
// why".
func latestText(now time.Time, ls []webui.APICheckLatest) string {
	var newest *webui.APICheckLatest
	failing := 0
	for i := range ls {
		if newest == nil || ls[i].Minute.After(newest.Minute) {
			newest = &ls[i]
		}
		if ls[i].Failed > 0 && ls[i].OK == 0 {
			failing++
		}
	}
	if newest == nil {
		return "-"
	}
	if failing > 0 {
		return clipCell(fmt.Sprintf("failing at %d of %d nodes: %s", failing, len(ls), firstError(ls)), 60)
	}
	return "ok " + ago(now, newest.Minute)
}

func firstError(ls []webui.APICheckLatest) string {
	for _, l := range ls {
		if l.Error != "" {
			return l.Error
		}
	}
	return ""
}

// clipCell cuts s to n characters for a table cell.
func clipCell(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
