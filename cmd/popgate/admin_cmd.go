package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/popgate/popgate/gateway"
	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

// firstAdmin is what announceFirstAdmin needs of the Controller.
type firstAdmin interface {
	EnsureFirstAdmin(ctx context.Context) (password string, created bool, err error)
	EnsureFirstAdminHash(ctx context.Context, hash string) (created bool, err error)
}

var _ firstAdmin = (*gateway.Controller)(nil)

// announceFirstAdmin creates the first owner when there is no admin and prints its password
// on w, once, in one line. The password is in no log and nowhere else: whoever runs serve
// the first time reads it here or sets a new one with 'popgate admin passwd'.
//
// With presetHash (--admin-password-hash) the first owner gets that password and nothing
// secret is printed. The audit log names "popgate serve" as who made it.
func announceFirstAdmin(ctx context.Context, c firstAdmin, w io.Writer, webURL, presetHash string) error {
	ctx = store.WithActor(ctx, store.Actor{Name: "popgate serve", Remote: "local"})
	if presetHash != "" {
		created, err := c.EnsureFirstAdminHash(ctx, presetHash)
		if err != nil || !created {
			return err
		}
		_, err = fmt.Fprintf(w, "popgate: first admin %q created from --admin-password-hash — sign in at %s\n",
			gateway.FirstAdminName, webURL)
		return err
	}
	password, created, err := c.EnsureFirstAdmin(ctx)
	if err != nil || !created {
		return err
	}
	_, err = fmt.Fprintf(w, "popgate: first admin %q created with password %s — sign in at %s and change it (popgate admin passwd %s)\n",
		gateway.FirstAdminName, password, webURL, gateway.FirstAdminName)
	return err
}

// ---- admin ----

const adminAbout = "Admins sign in to the web UI. An owner may do everything; a tenant admin everything " +
	"within one tenant; a viewer may only look, at every tenant or at one. Passwords are shown once, " +
	"when they are set."

const passwordStdinUsage = "read the password from the first line of stdin instead of generating one"

var adminCommands = []subcommand{
	{cmdSpec{
		name:  "admin add",
		usage: "admin add [--role owner|tenant_admin|viewer] [--tenant TENANT] [--password-stdin] [--data-dir DIR] NAME",
		about: "Add an admin of the web UI. The role defaults to owner, or to tenant_admin with --tenant. " +
			"A generated password is printed on stdout, this once; with --password-stdin the password is read " +
			"from stdin instead and nothing is printed. Names are 1-64 lower-case letters, digits, '.', '_', '@' and '-'.",
		example: "popgate admin add alice\n" +
			"popgate admin add --tenant acme bob\n" +
			"popgate admin add --role viewer --tenant acme carol\n" +
			"printf '%s\\n' \"$PASSWORD\" | popgate admin add --password-stdin dave",
		args: []string{"NAME"},
	}, (*app).adminAdd},
	{cmdSpec{
		name:  "admin passwd",
		usage: "admin passwd [--password-stdin] [--data-dir DIR] NAME",
		about: "Set a new password for an admin: generated and printed on stdout, or read from stdin with " +
			"--password-stdin. The admin's sessions end, and so do the waits of addresses that failed to sign in as it.",
		example: "popgate admin passwd admin\nprintf '%s\\n' \"$PASSWORD\" | popgate admin passwd --password-stdin alice",
		args:    []string{"NAME"},
	}, (*app).adminPasswd},
	{cmdSpec{
		name:    "admin list",
		usage:   "admin list [--json] [--data-dir DIR]",
		about:   "List the admins with their role, tenant, second factor, state and last sign-in.",
		example: "popgate admin list\npopgate admin list --json | jq -r '.admins[].name'",
	}, (*app).adminList},
	{cmdSpec{
		name:    "admin remove",
		usage:   "admin remove [--data-dir DIR] NAME",
		about:   "Remove an admin; its sessions end at once. The last owner cannot be removed.",
		example: "popgate admin remove alice",
		args:    []string{"NAME"},
	}, (*app).adminRemove},
	{cmdSpec{
		name:    "admin disable-totp",
		usage:   "admin disable-totp [--data-dir DIR] NAME",
		summary: "Turn off the one-time-code second factor of an admin who lost their authenticator app",
		about:   "Turn off the one-time-code second factor of an admin who lost their authenticator app; they can enrol again after signing in.",
		example: "popgate admin disable-totp alice",
		args:    []string{"NAME"},
	}, (*app).adminDisableTOTP},
	{cmdSpec{
		name:    "admin hash-password",
		usage:   "admin hash-password",
		summary: "Print the argon2id hash of a password read from stdin, for --admin-password-hash",
		about: "Read a password from the first line of stdin and print its argon2id hash, for " +
			"--admin-password-hash (admin_password_hash in the config file, e.g. in a VM image's cloud-init seed): " +
			"the first admin then gets this password and none is printed. Needs no running serve.",
		example: "printf '%s\\n' \"$PASSWORD\" | popgate admin hash-password",
	}, (*app).adminHashPassword},
}

func (a *app) adminHashPassword(_ context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	pw, err := a.readPassword("admin hash-password", gateway.FirstAdminName)
	if err != nil {
		return err
	}
	hash, err := store.HashPassword(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, hash)
	return nil
}

func (a *app) cmdAdmin(ctx context.Context, args []string) error {
	return a.group(ctx, "admin", adminAbout, adminCommands, args)
}

// checkAdminName rejects an admin name the server would refuse, before asking it.
func checkAdminName(name string) error {
	if err := store.ValidateAdminName(name); err != nil {
		return &usageError{msg: err.Error()}
	}
	return nil
}

func adminPath(name string) string { return "/api/v1/admins/" + url.PathEscape(name) }

// readPassword reads the password for admin name from the first line of stdin.
func (a *app) readPassword(cmd, name string) (string, error) {
	line, err := bufio.NewReaderSize(a.stdin, 1024).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("%s: reading the password from stdin: %w", cmd, err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usagef("%s: --password-stdin read no password: pipe it in, e.g. printf '%%s\\n' \"$PASSWORD\" | popgate %s --password-stdin %s", cmd, cmd, name)
	}
	if err := store.ValidatePassword(name, pw); err != nil {
		return "", &usageError{msg: cmd + ": " + err.Error()}
	}
	return pw, nil
}

func (a *app) adminAdd(ctx context.Context, spec cmdSpec, args []string) error {
	var role string
	var fromStdin bool
	f := newAdminFlags(spec).withTenant("limit the admin to `TENANT` (a tenant admin needs one, a viewer may have one)")
	f.String(&role, "role", "", "`ROLE`: owner, tenant_admin or viewer (default: owner, or tenant_admin with --tenant)")
	f.Bool(&fromStdin, "password-stdin", passwordStdinUsage)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	name := pos[0]
	if err := checkAdminName(name); err != nil {
		return err
	}
	if role == "" {
		role = store.RoleOwner
		if f.tenant != "" {
			role = store.RoleTenantAdmin
		}
	}
	if err := store.ValidateRole(role, f.tenant); err != nil {
		return &usageError{msg: "admin add: " + err.Error()}
	}
	req := webui.APINewAdmin{Name: name, Role: role, Tenant: f.tenant}
	if fromStdin {
		if req.Password, err = a.readPassword("admin add", name); err != nil {
			return err
		}
	}
	var created webui.APIAdminCreated
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, "/api/v1/admins", req, &created); err != nil {
		return err
	}
	if created.Password != "" {
		fmt.Fprintln(a.stdout, created.Password)
	}
	ad := created.Admin
	a.note("admin %s added (%s): it signs in to the web UI with %s", ad.Name, roleText(ad.Role, ad.Tenant), passwordWhere(created.Password))
	return nil
}

// passwordWhere says where the password is, for notes.
func passwordWhere(generated string) string {
	if generated != "" {
		return "the password printed above, shown this once"
	}
	return "the password from stdin"
}

// roleText is "owner", "tenant_admin of tenant acme", "viewer of every tenant".
func roleText(role, tenant string) string {
	switch {
	case tenant != "":
		return role + " of tenant " + tenant
	case role == store.RoleViewer:
		return "viewer of every tenant"
	}
	return role
}

func (a *app) adminPasswd(ctx context.Context, spec cmdSpec, args []string) error {
	var fromStdin bool
	f := newAdminFlags(spec)
	f.Bool(&fromStdin, "password-stdin", passwordStdinUsage)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	name := pos[0]
	if err := checkAdminName(name); err != nil {
		return err
	}
	var req webui.APIAdminPassword
	if fromStdin {
		if req.Password, err = a.readPassword("admin passwd", name); err != nil {
			return err
		}
	}
	var changed webui.APIAdminCreated
	if _, err := a.client(f).callJSON(ctx, http.MethodPut, adminPath(name)+"/password", req, &changed); err != nil {
		return err
	}
	if changed.Password != "" {
		fmt.Fprintln(a.stdout, changed.Password)
	}
	a.note("password of admin %s set: it signs in with %s; its sessions were signed out", name, passwordWhere(changed.Password))
	return nil
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

func (a *app) adminList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	var as webui.APIAdmins
	if printed, err := a.getOrPrintJSON(ctx, f, "/api/v1/admins", &as); printed || err != nil {
		return err
	}
	if len(as.Admins) == 0 {
		a.note("no admins: add one with 'popgate admin add NAME'")
		return nil
	}
	now := a.now()
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "NAME\tROLE\tTENANT\tTOTP\tSTATE\tLAST-SIGN-IN\tCREATED")
	for _, ad := range as.Admins {
		state := "enabled"
		switch {
		case ad.Disabled:
			state = "disabled"
		case ad.FailedSignIns > 0:
			state = fmt.Sprintf("enabled, %d failed sign-ins", ad.FailedSignIns)
		}
		last := "never"
		if ad.LastSignIn != nil {
			last = ago(now, *ad.LastSignIn)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ad.Name, ad.Role, orDash(ad.Tenant), onOff(ad.TOTP), state, last, ago(now, ad.CreatedAt))
	}
	return tw.Flush()
}

func (a *app) adminRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := checkAdminName(pos[0]); err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, adminPath(pos[0]), nil); err != nil {
		return err
	}
	a.note("admin %s removed; its sessions ended", pos[0])
	return nil
}

func (a *app) adminDisableTOTP(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := checkAdminName(pos[0]); err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, adminPath(pos[0])+"/totp", nil); err != nil {
		return err
	}
	a.note("two-factor sign-in of admin %s is off: it signs in with its password alone and can enrol an app again", pos[0])
	return nil
}

// ---- token ----

const tokenAbout = "API tokens let programs use the JSON API on the web address (/api/v1, header " +
	"\"Authorization: Bearer pgt_...\"). Each has a role like an admin's: owner, tenant_admin of one tenant, or " +
	"viewer. The token is shown once, when it is made."

var tokenCommands = []subcommand{
	{cmdSpec{
		name:  "token add",
		usage: "token add --role owner|tenant_admin|viewer [--tenant TENANT] [--expires DURATION] [--data-dir DIR] NAME",
		about: "Make an API token and print it on stdout, this once. --expires takes a duration such as 90d, 12h, 30m " +
			"or 2y, at most ten years (default: never).",
		example: "popgate token add --role tenant_admin --tenant acme --expires 90d acme-ci\n" +
			"curl -H \"Authorization: Bearer $TOKEN\" https://vpn.example.com:8443/api/v1/peers",
		args: []string{"NAME"},
	}, (*app).tokenAdd},
	{cmdSpec{
		name:    "token list",
		usage:   "token list [--json] [--data-dir DIR]",
		about:   "List the API tokens with their role, tenant, last use and expiry (never the tokens themselves).",
		example: "popgate token list",
	}, (*app).tokenList},
	{cmdSpec{
		name:    "token remove",
		usage:   "token remove [--data-dir DIR] NAME",
		about:   "Remove an API token; it stops working at once.",
		example: "popgate token remove acme-ci",
		args:    []string{"NAME"},
	}, (*app).tokenRemove},
}

func (a *app) cmdToken(ctx context.Context, args []string) error {
	return a.group(ctx, "token", tokenAbout, tokenCommands, args)
}

func (a *app) tokenAdd(ctx context.Context, spec cmdSpec, args []string) error {
	var role, expires string
	f := newAdminFlags(spec).withTenant("limit the token to `TENANT`")
	f.String(&role, "role", "", "`ROLE`: owner, tenant_admin or viewer (required)")
	f.String(&expires, "expires", "", "the token stops working after `DURATION`, e.g. 90d, 12h or 2y, at most 10y (default: never)")
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	name := pos[0]
	if err := store.ValidateTokenName(name); err != nil {
		return &usageError{msg: err.Error()}
	}
	if role == "" {
		return usagef("token add: missing --role: give owner, tenant_admin (with --tenant) or viewer")
	}
	if err := store.ValidateRole(role, f.tenant); err != nil {
		return &usageError{msg: "token add: " + err.Error()}
	}
	req := webui.APINewToken{Name: name, Role: role, Tenant: f.tenant}
	if expires != "" {
		d, err := parseLifetime(expires)
		if err != nil {
			return usagef("token add: --expires %v", err)
		}
		at := a.now().Add(d).UTC().Truncate(time.Second)
		req.ExpiresAt = &at
	}
	var created webui.APITokenCreated
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, "/api/v1/tokens", req, &created); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, created.Secret)
	until := "never expires"
	if created.Token.ExpiresAt != nil {
		until = "expires " + created.Token.ExpiresAt.Local().Format("2006-01-02 15:04 MST")
	}
	a.note("API token %s added (%s), %s: send it as 'Authorization: Bearer <token>'; it is shown this once",
		created.Token.Name, roleText(created.Token.Role, created.Token.Tenant), until)
	return nil
}

func (a *app) tokenList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	var ts webui.APITokens
	if printed, err := a.getOrPrintJSON(ctx, f, "/api/v1/tokens", &ts); printed || err != nil {
		return err
	}
	if len(ts.Tokens) == 0 {
		a.note("no API tokens: make one with 'popgate token add --role ROLE NAME'")
		return nil
	}
	now := a.now()
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "NAME\tROLE\tTENANT\tCREATED\tLAST-USED\tEXPIRES")
	for _, k := range ts.Tokens {
		used, exp := "never", "never"
		if k.LastUsed != nil {
			used = ago(now, *k.LastUsed)
		}
		if k.ExpiresAt != nil {
			exp = k.ExpiresAt.Local().Format("2006-01-02")
			if !now.Before(*k.ExpiresAt) {
				exp += " (expired)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.Role, orDash(k.Tenant), ago(now, k.CreatedAt), used, exp)
	}
	return tw.Flush()
}

func (a *app) tokenRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := store.ValidateTokenName(pos[0]); err != nil {
		return &usageError{msg: err.Error()}
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(pos[0]), nil); err != nil {
		return err
	}
	a.note("API token %s removed: it stopped working", pos[0])
	return nil
}

// ---- audit ----

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
	var limit, actor, action string
	f := newAdminFlags(auditSpec).withTenant("show only the entries of `TENANT`").withJSON()
	f.String(&limit, "limit", "50", "show at most `N` entries (1-1000)")
	f.String(&actor, "actor", "", "show only what `NAME` did")
	f.String(&action, "action", "", "show only `ACTION` and the actions below it (peer finds peer.add, peer.remove, …)")
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	n, err := strconv.Atoi(limit)
	if err != nil || n < 1 || n > store.MaxAuditPage {
		return usagef("audit: --limit %q: give a whole number from 1 to %d", limit, store.MaxAuditPage)
	}
	q := url.Values{"limit": {strconv.Itoa(n)}}
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
