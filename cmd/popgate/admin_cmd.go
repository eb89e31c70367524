package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

// firstAdminName is the owner announceFirstAdmin creates.
const firstAdminName = "admin"

// firstAdmin is what announceFirstAdmin needs: create the first owner when there is no admin.
type firstAdmin interface {
	// EnsureFirstAdmin creates the owner firstAdminName with a generated password when
	// there is no admin at all, and returns the password and whether it created the admin.
	EnsureFirstAdmin(ctx context.Context) (password string, created bool, err error)
	// EnsureFirstAdminHash does the same with a preset password hash.
	EnsureFirstAdminHash(ctx context.Context, hash string) (created bool, err error)
}

// firstAdminStore creates the first admin in the store.
type firstAdminStore struct{ st *store.Store }

var _ firstAdmin = firstAdminStore{}

func (f firstAdminStore) EnsureFirstAdmin(ctx context.Context) (string, bool, error) {
	password, err := store.GeneratePassword()
	if err != nil {
		return "", false, err
	}
	created, err := f.st.AddFirstAdmin(ctx, firstAdminName, password)
	if err != nil || !created {
		return "", false, err
	}
	return password, true, nil
}

func (f firstAdminStore) EnsureFirstAdminHash(ctx context.Context, hash string) (bool, error) {
	return f.st.AddFirstAdminHash(ctx, firstAdminName, hash)
}

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
			firstAdminName, webURL)
		return err
	}
	password, created, err := c.EnsureFirstAdmin(ctx)
	if err != nil || !created {
		return err
	}
	_, err = fmt.Fprintf(w, "popgate: first admin %q created with password %s — sign in at %s and change it (popgate admin passwd %s)\n",
		firstAdminName, password, webURL, firstAdminName)
	return err
}

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
	pw, err := a.readPassword("admin hash-password", firstAdminName)
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
