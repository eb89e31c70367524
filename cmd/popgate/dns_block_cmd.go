package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const dnsBlockAbout = "A tenant's blocklists make the names they hold, and every subdomain of them, NXDOMAIN " +
	"to the tenant's peers at every PoP (other tenants are not affected), before its split zones and upstreams " +
	"are asked. A list comes from a URL the controller fetches at an interval (1h to 168h) or from a file " +
	"uploaded with the CLI: a hosts file, names one a line, or adblock-style ||name^ rules. At most 8 lists " +
	"and 2,000,000 names a tenant."

var dnsBlockCommands = []subcommand{
	{cmdSpec{name: "dns blocklist", about: dnsBlockAbout}, nil},
	{cmdSpec{
		name:    "dns blocklist add",
		summary: "Add a blocklist to a tenant, from a URL the controller fetches or from a file",
		usage:   "dns blocklist add --tenant TENANT (--url URL [--every 24h] | --file PATH) [--data-dir DIR] NAME",
		about: "Add a blocklist to a tenant: the names it holds, and every subdomain of them, are answered " +
			"NXDOMAIN to the tenant's peers at every PoP, within seconds; other tenants are not affected. " +
			"With --url the controller fetches the list at once (nothing is added when that fails) and then " +
			"every --every (1h to 168h); when a later fetch fails the list keeps its last content, the " +
			"fetch is tried again within the hour, and 'dns blocklist list' shows why. With --file this " +
			"command reads the file and uploads it; upload it again with 'dns blocklist refresh --file'. " +
			"A list may be a hosts file (0.0.0.0 ads.example.com, several names a line, # comments), a " +
			"list of names one a line, or adblock-style ||name^ rules; localhost, addresses, single labels " +
			"and other adblock rules are skipped and counted. At most 64 MiB and 1,000,000 names a list, " +
			"8 lists and 2,000,000 names a tenant. A tenant admin's URL must lead to a public address; an " +
			"owner's may be private.",
		example: "popgate dns blocklist add --tenant acme --url https://example.com/hosts.txt ads\n" +
			"popgate dns blocklist add --tenant acme --url https://example.com/hosts.txt --every 12h ads\n" +
			"popgate dns blocklist add --tenant acme --file ./blocked.txt mine",
		args: []string{"NAME"},
	}, (*app).dnsBlockAdd},
	{cmdSpec{
		name:    "dns blocklist list",
		summary: "List a tenant's blocklists, what they block and how their last fetch went",
		usage:   "dns blocklist list --tenant TENANT [--json] [--data-dir DIR]",
		about: "List a tenant's blocklists: where each comes from, how many names it blocks and how many " +
			"entries of its source were skipped, when its content last changed, and how its last fetch went " +
			"(when that failed, why: the list keeps the content of its last good fetch).",
		example: "popgate dns blocklist list --tenant acme\n" +
			"popgate dns blocklist list --tenant acme --json | jq -r '.blocklists[] | select(.error) | .name'",
	}, (*app).dnsBlockList},
	{cmdSpec{
		name:    "dns blocklist refresh",
		summary: "Fetch a blocklist now, or upload a new content of one from a file",
		usage:   "dns blocklist refresh --tenant TENANT [--file PATH] [--data-dir DIR] NAME",
		about: "Fetch a blocklist's URL now rather than at its next interval, or (--file) upload a new " +
			"content of a list added from a file. New content is in force at every PoP within seconds. " +
			"When the fetch fails, the list keeps its content and the command says why.",
		example: "popgate dns blocklist refresh --tenant acme ads\n" +
			"popgate dns blocklist refresh --tenant acme --file ./blocked.txt mine",
		args: []string{"NAME"},
	}, (*app).dnsBlockRefresh},
	{cmdSpec{
		name:    "dns blocklist remove",
		summary: "Remove a tenant's blocklist",
		usage:   "dns blocklist remove --tenant TENANT [--data-dir DIR] NAME",
		about:   "Remove a tenant's blocklist: its names resolve again at every PoP within seconds (clients may keep a blocked answer for 60 s).",
		example: "popgate dns blocklist remove --tenant acme ads",
		args:    []string{"NAME"},
	}, (*app).dnsBlockRemove},
}

// blocklistTimeout bounds a command that makes the controller fetch a list or parse an
// upload: a fetch may take control.FetchTimeout.
const blocklistTimeout = control.FetchTimeout + 30*time.Second

func blocklistsPath(tenant string) string { return tenantPath(tenant) + "/dns/blocklists" }

func blocklistPath(tenant, name string) string {
	return blocklistsPath(tenant) + "/" + url.PathEscape(name)
}

// parseBlocklistArgs parses a blocklist command's --tenant and NAME, checking both as the
// server would.
func parseBlocklistArgs(a *app, f *adminFlags, args []string) (string, error) {
	pos, err := f.parse(a, args)
	if err != nil {
		return "", err
	}
	if err := f.needTenant(); err != nil {
		return "", err
	}
	if err := store.ValidateBlocklistName(pos[0]); err != nil {
		return "", &usageError{msg: err.Error()}
	}
	return pos[0], nil
}

func (a *app) dnsBlockAdd(ctx context.Context, spec cmdSpec, args []string) error {
	var src, file, every string
	f := newAdminFlags(spec).withTenant(dnsTenantUsage)
	f.String(&src, "url", "", "the list's http or https `URL`, which the controller fetches")
	f.String(&every, "every", "24h", "fetch the URL every `DURATION`, 1h to 168h")
	f.String(&file, "file", "", "`PATH` of a list file to upload instead of a URL")
	name, err := parseBlocklistArgs(a, f, args)
	if err != nil {
		return err
	}
	if (src == "") == (file == "") {
		return usagef("dns blocklist add: give --url or --file (one of them): usage: popgate %s", spec.usage)
	}
	if file != "" {
		if f.isSet("every") {
			return usagef("dns blocklist add: --every is for a list from a URL; a file's list changes when you upload it again ('popgate dns blocklist refresh --file')")
		}
		b, err := a.uploadBlocklist(ctx, f, name, file, true)
		if err != nil {
			return err
		}
		a.note("blocklist %s of tenant %s added from %s: %d names blocked (%d entries skipped); every PoP blocks them within seconds", b.Name, f.tenant, file, b.Names, b.Skipped)
		return nil
	}
	if err := store.ValidateBlocklistURL(src); err != nil {
		return usagef("dns blocklist add: --url: %s", err)
	}
	d, err := time.ParseDuration(every)
	if err == nil {
		err = store.ValidateBlocklistEvery(d)
	}
	if err != nil {
		return usagef("dns blocklist add: --every %q: give a duration from 1h to 168h in whole seconds, e.g. 12h or 24h", every)
	}
	var b webui.APIBlocklist
	req := webui.APINewBlocklist{Name: name, URL: src, EverySeconds: int(d / time.Second)}
	if _, err := newControlClient(f.dataDir, blocklistTimeout).callJSON(ctx, http.MethodPost, blocklistsPath(f.tenant), req, &b); err != nil {
		return err
	}
	a.note("blocklist %s of tenant %s added: %d names blocked (%d entries skipped), fetched again every %s; every PoP blocks them within seconds",
		b.Name, f.tenant, b.Names, b.Skipped, everyText(b.EverySeconds))
	return nil
}

// uploadBlocklist uploads the file at path as tenant's list name: a new list (create), or the
// new content of an uploaded one.
func (a *app) uploadBlocklist(ctx context.Context, f *adminFlags, name, path string, create bool) (webui.APIBlocklist, error) {
	fh, err := os.Open(path)
	if err != nil {
		return webui.APIBlocklist{}, fmt.Errorf("read the list: %w", err)
	}
	defer fh.Close()
	if fi, err := fh.Stat(); err == nil && fi.Size() > store.MaxBlocklistSize {
		return webui.APIBlocklist{}, usagef("%s is %d bytes, more than %d MiB, the most popgate takes in one list: use a smaller list, or split it into several", path, fi.Size(), store.MaxBlocklistSize>>20)
	}
	p := blocklistPath(f.tenant, name) + "/content"
	if create {
		p += "?create=true"
	}
	data, _, err := newControlClient(f.dataDir, blocklistTimeout).do(ctx, http.MethodPut, p, "text/plain; charset=utf-8", fh)
	if err != nil {
		return webui.APIBlocklist{}, err
	}
	var b webui.APIBlocklist
	return b, decodeAnswer(http.MethodPut, p, data, &b)
}

func (a *app) dnsBlockList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(dnsTenantUsage).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	var bs webui.APIBlocklists
	if printed, err := a.getOrPrintJSON(ctx, f, blocklistsPath(f.tenant), &bs); printed || err != nil {
		return err
	}
	if len(bs.Blocklists) == 0 {
		a.note("tenant %s has no blocklists: add one with 'popgate dns blocklist add --tenant %s --url URL NAME'", f.tenant, f.tenant)
		return nil
	}
	now := a.now()
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "NAME\tSOURCE\tEVERY\tNAMES\tSKIPPED\tCHANGED\tLAST-FETCH")
	for _, b := range bs.Blocklists {
		source, every, fetch := "file", "-", "uploaded "+ago(now, b.CheckedAt)
		if b.URL != "" {
			source, every, fetch = clipCell(b.URL, 48), everyText(b.EverySeconds), "ok "+ago(now, b.CheckedAt)
		}
		if b.Error != "" {
			at := b.CheckedAt
			if b.ErrorAt != nil {
				at = *b.ErrorAt
			}
			fetch = fmt.Sprintf("FAILED %s: %s", ago(now, at), clipCell(b.Error, 100))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", b.Name, source, every, b.Names, b.Skipped, ago(now, b.UpdatedAt), fetch)
	}
	return tw.Flush()
}

func (a *app) dnsBlockRefresh(ctx context.Context, spec cmdSpec, args []string) error {
	var file string
	f := newAdminFlags(spec).withTenant(dnsTenantUsage)
	f.String(&file, "file", "", "`PATH` of the new content of a list added from a file")
	name, err := parseBlocklistArgs(a, f, args)
	if err != nil {
		return err
	}
	var b webui.APIBlocklist
	if file != "" {
		if b, err = a.uploadBlocklist(ctx, f, name, file, false); err != nil {
			return err
		}
		a.note("blocklist %s of tenant %s uploaded from %s: %d names blocked (%d entries skipped); every PoP has it within seconds", b.Name, f.tenant, file, b.Names, b.Skipped)
		return nil
	}
	if _, err := newControlClient(f.dataDir, blocklistTimeout).callJSON(ctx, http.MethodPost, blocklistPath(f.tenant, name)+"/refresh", nil, &b); err != nil {
		if ae, ok := errors.AsType[*apiError](err); ok && ae.status == http.StatusBadGateway {
			return fmt.Errorf("%s; blocklist %s keeps its last content", strings.TrimSuffix(ae.msg, "."), name)
		}
		return err
	}
	a.note("blocklist %s of tenant %s fetched: %d names blocked (%d entries skipped); every PoP has it within seconds", b.Name, f.tenant, b.Names, b.Skipped)
	return nil
}

func (a *app) dnsBlockRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(dnsTenantUsage)
	name, err := parseBlocklistArgs(a, f, args)
	if err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, blocklistPath(f.tenant, name), nil); err != nil {
		return err
	}
	a.note("blocklist %s removed from tenant %s: its names resolve again within seconds", name, f.tenant)
	return nil
}
