package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/popgate/popgate/store"
)

// The framework of popgate's subcommands: command groups and their help, the flags of the
// commands that ask a running popgate serve over its control socket, and the checks and
// output helpers they share. Each command has a file of its own: tenant_cmd.go, peer_cmd.go,
// status_cmd.go, admin_cmd.go, token_cmd.go, audit_cmd.go, db_cmd.go, route.go, policy.go.

// subcommand is one subcommand of a command group (tenant, peer). A subcommand's name may have
// two words ("dns zone add"): the first names a family of the group's subcommands, which
// dispatches like a group of its own ("popgate dns zone --help"). An entry without run is a
// family's header: its about is the family's help text, and it is no subcommand itself.
type subcommand struct {
	spec cmdSpec
	run  func(a *app, ctx context.Context, spec cmdSpec, args []string) error
}

// group runs the subcommand of group named by args (its first word, or its first two for a
// family's).
func (a *app) group(ctx context.Context, group, about string, subs []subcommand, args []string) error {
	var cmds []subcommand
	var names []string
	heads := map[string]string{} // family → its about
	for _, s := range subs {
		name := s.spec.name[len(group)+1:]
		if s.run == nil {
			heads[name] = s.spec.about
			continue
		}
		cmds, names = append(cmds, s), append(names, name)
	}
	// The first words, once each: the subcommands, or the families of those with two.
	var firsts []string
	for _, n := range names {
		if first, _, _ := strings.Cut(n, " "); !slices.Contains(firsts, first) {
			firsts = append(firsts, first)
		}
	}
	if len(args) == 0 {
		return usagef("%s: missing subcommand: use %s (see 'popgate %s --help')", group, orList(firsts), group)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		var b strings.Builder
		fmt.Fprintf(&b, "Usage: popgate %s <subcommand> [flags] [arguments]\n\n%s\n\nSubcommands:\n", group, wrap(about, helpWidth))
		width := 0
		for _, n := range names {
			width = max(width, len(n))
		}
		// A summary too long for its line goes on below, aligned with its start; a blank
		// line sets the families apart.
		pad := strings.Repeat(" ", 2+width+2)
		for i, s := range cmds {
			if i > 0 && len(firsts) < len(names) && strings.Fields(names[i])[0] != strings.Fields(names[i-1])[0] {
				b.WriteByte('\n')
			}
			summary := wrap(s.spec.summaryText(), max(40, helpWidth-len(pad)))
			fmt.Fprintf(&b, "  %-*s  %s\n", width, names[i], strings.ReplaceAll(summary, "\n", "\n"+pad))
		}
		fmt.Fprintf(&b, "\nRun 'popgate %s <subcommand> --help' for its flags and an example.\n", group)
		io.WriteString(a.stdout, b.String())
		return nil
	}
	for i, s := range cmds {
		if names[i] == args[0] {
			return s.run(a, ctx, s.spec, args[1:])
		}
	}
	var family []subcommand
	for i, s := range cmds {
		if first, _, ok := strings.Cut(names[i], " "); ok && first == args[0] {
			family = append(family, s)
		}
	}
	if len(family) > 0 {
		famAbout, ok := heads[args[0]]
		if !ok {
			famAbout = about
		}
		return a.group(ctx, group+" "+args[0], famAbout, family, args[1:])
	}
	return usagef("%s: unknown subcommand %q: use %s (see 'popgate %s --help')", group, args[0], orList(firsts), group)
}

// summaryText is the command's summary for its group's help: summary, or else the first
// sentence of about, without the full stop.
func (c cmdSpec) summaryText() string {
	if c.summary != "" {
		return c.summary
	}
	return firstSentence(c.about)
}

// abbreviations end in a full stop without ending a sentence.
var abbreviations = []string{"e.g.", "i.e.", "etc.", "vs."}

// firstSentence is the start of s up to the full stop that ends its first sentence (not one
// of an abbreviation such as "e.g."), without that full stop.
func firstSentence(s string) string {
	for from := 0; ; {
		i := strings.IndexAny(s[from:], ".\n")
		if i < 0 {
			return strings.TrimSpace(s)
		}
		end := from + i
		if s[end] == '\n' {
			return strings.TrimSpace(s[:end])
		}
		if end+1 == len(s) || s[end+1] == ' ' || s[end+1] == '\n' {
			if !slices.ContainsFunc(abbreviations, func(ab string) bool { return strings.HasSuffix(s[:end+1], " "+ab) || s[:end+1] == ab }) {
				return s[:end]
			}
		}
		from = end + 1
	}
}

func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// adminFlags are the flags every admin command has.
type adminFlags struct {
	*cmdFlags
	dataDir string
	json    bool
	tenant  string
	// limit is --limit of a list that pages (withLimit), at most limitMax.
	limit    string
	limitMax int
	// since is --since of a list that has it (withSince): a duration back from now.
	since string
}

func newAdminFlags(spec cmdSpec) *adminFlags {
	f := &adminFlags{cmdFlags: newCmdFlags(spec)}
	return f
}

func (f *adminFlags) withTenant(usage string) *adminFlags {
	f.String(&f.tenant, "tenant", "", usage)
	return f
}

func (f *adminFlags) withJSON() *adminFlags {
	f.Bool(&f.json, "json", "print the API's JSON answer instead of the table")
	return f
}

// withLimit adds --limit, how many of what (entries, events) a list shows at once: 50
// unless given, at most most; pageQuery checks it.
func (f *adminFlags) withLimit(what string, most int) *adminFlags {
	f.String(&f.limit, "limit", "50", fmt.Sprintf("show at most `N` %s (1-%d)", what, most))
	f.limitMax = most
	return f
}

// withSince adds --since: only the list's what of the last DURATION.
func (f *adminFlags) withSince(what string) *adminFlags {
	f.String(&f.since, "since", "", "show only the "+what+" of the last `DURATION`, e.g. 30m, 12h or 7d")
	return f
}

// pageQuery checks --limit and --since (counted back from now) and starts the list's API
// query with them.
func (f *adminFlags) pageQuery(now time.Time) (url.Values, error) {
	n, err := strconv.Atoi(f.limit)
	if err != nil || n < 1 || n > f.limitMax {
		return nil, usagef("%s: --limit %q: give a whole number from 1 to %d", f.spec.name, f.limit, f.limitMax)
	}
	q := url.Values{"limit": {strconv.Itoa(n)}}
	if f.since != "" {
		d, err := parseLifetime(f.since)
		if err != nil {
			return nil, usagef("%s: --since %v", f.spec.name, err)
		}
		q.Set("since", now.Add(-d).UTC().Format(time.RFC3339))
	}
	return q, nil
}

// packagedDataDir is the data dir of the service the .deb installs.
const packagedDataDir = "/var/lib/popgate"

// socketExists reports whether dir holds a control socket file.
func socketExists(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, controlSocketName))
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// parse adds --data-dir, parses args and returns the positional arguments. Without --data-dir
// and POPGATE_DATA_DIR it uses ./popgate-data, or the packaged service's /var/lib/popgate when
// only that one has a control socket.
func (f *adminFlags) parse(a *app, args []string) ([]string, error) {
	f.String(&f.dataDir, "data-dir", defaultDataDir, "`DIR` of the running 'popgate serve', holding its control socket "+controlSocketName)
	f.notes["data-dir"] = "env " + envDataDir
	pos, err := f.cmdFlags.parse(a.stdout, args)
	if err != nil {
		return nil, err
	}
	if !f.isSet("data-dir") {
		if v := a.getenv(envDataDir); v != "" {
			f.dataDir = v
		} else if !socketExists(f.dataDir) && socketExists(packagedDataDir) {
			// The packaged service's data dir, so that `sudo popgate status` just works.
			f.dataDir = packagedDataDir
		}
	}
	if f.dataDir == "" {
		return nil, usagef("%s: --data-dir is empty: name the data dir of 'popgate serve'", f.spec.name)
	}
	return pos, nil
}

// needTenant checks that --tenant was given.
func (f *adminFlags) needTenant() error {
	if f.tenant == "" {
		return usagef("%s: missing --tenant: usage: popgate %s", f.spec.name, f.spec.usage)
	}
	return checkName("tenant", f.tenant)
}

// checkName rejects a tenant or peer name the server would refuse, before asking it.
func checkName(what, name string) error {
	validate := store.ValidatePeerName
	if what == "tenant" {
		validate = store.ValidateTenantName
	}
	if err := validate(name); err != nil {
		return &usageError{msg: err.Error()}
	}
	return nil
}

func (a *app) client(f *adminFlags) *controlClient {
	return newControlClient(f.dataDir, a.timeout)
}

// printJSON writes an API answer indented on stdout.
func (a *app) printJSON(data []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		return fmt.Errorf("popgate serve answered with malformed JSON: %v", err)
	}
	b.WriteByte('\n')
	_, err := a.stdout.Write(b.Bytes())
	return err
}

// getOrPrintJSON GETs path from the serve of f and decodes the answer into out. With --json it
// prints the answer as it came instead and reports printed, leaving the caller nothing to do.
func (a *app) getOrPrintJSON(ctx context.Context, f *adminFlags, path string, out any) (printed bool, err error) {
	raw, err := a.client(f).callJSON(ctx, http.MethodGet, path, nil, out)
	if err != nil {
		return false, err
	}
	if f.json {
		return true, a.printJSON(raw)
	}
	return false, nil
}

// note writes a message that is not the requested output: stderr, so stdout stays scriptable.
func (a *app) note(format string, args ...any) {
	fmt.Fprintf(a.stderr, format+"\n", args...)
}

func tenantPath(tenant string) string {
	return "/api/v1/tenants/" + url.PathEscape(tenant)
}

func peerPath(tenant, peer string) string {
	return tenantPath(tenant) + "/peers/" + url.PathEscape(peer)
}

// checkPrefix rejects a prefix that does not parse or that the server refuses for its form
// (host bits set, IPv4 written as IPv6); what names it says where it came from. Whether it
// clashes with what the server holds (the overlay, other routes or sites) is the server's to
// say.
func checkPrefix(what, prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return usagef("%s %q is not a CIDR prefix: use e.g. 10.10.0.0/24", what, prefix)
	}
	if err := store.ValidatePrefix(what, p); err != nil {
		return &usageError{msg: err.Error()}
	}
	return nil
}

// maxLifetime is the longest --expires duration: ten years of 365 days.
const maxLifetime = 10 * 365 * 24 * time.Hour

// parseLifetime parses a duration such as --expires takes: a Go duration ("12h", "30m"), or
// whole days ("90d") or years of 365 days ("2y"), more than zero and at most ten years.
func parseLifetime(s string) (time.Duration, error) {
	unit := time.Duration(0)
	num, ok := strings.CutSuffix(s, "d")
	if ok {
		unit = 24 * time.Hour
	} else if num, ok = strings.CutSuffix(s, "y"); ok {
		unit = 365 * 24 * time.Hour
	}
	var d time.Duration
	if unit != 0 {
		n, err := strconv.Atoi(num)
		if err != nil || num == "" || num[0] == '+' || num[0] == '-' {
			return 0, fmt.Errorf("%q is not a duration: use e.g. 90d, 12h, 30m or 2y", s)
		}
		if n > int(maxLifetime/unit) {
			return 0, fmt.Errorf("%q is more than ten years: give at most 10y (3650d)", s)
		}
		d = time.Duration(n) * unit
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q is not a duration: use e.g. 90d, 12h, 30m or 2y", s)
		}
	}
	switch {
	case d <= 0:
		return 0, fmt.Errorf("%q is not a time to come: give a duration of a minute or more, e.g. 90d", s)
	case d > maxLifetime:
		return 0, fmt.Errorf("%q is more than ten years: give at most 10y (3650d)", s)
	}
	return d, nil
}
