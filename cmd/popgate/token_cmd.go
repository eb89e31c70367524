package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

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
