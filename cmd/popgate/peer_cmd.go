package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

const peerAbout = "Peers are the client devices of a tenant: a WireGuard key with overlay addresses. " +
	"'peer add' prints the wg-quick config to import in the WireGuard app or wg-quick."

const (
	tenantUsage = "`TENANT` the peer belongs to (required)"
	qrUsage     = "print the config as a QR code for the WireGuard mobile app instead of as text"
	regionUsage = "`REGION` the config connects to (its endpoint and server key); default: the controller's own region"
)

// checkRegionFlag checks --region, when given, as the server would.
func checkRegionFlag(f *adminFlags, region string) error {
	if !f.isSet("region") {
		return nil
	}
	if err := store.ValidateRegionName(region); err != nil {
		return usagef("%s: --region: %s", f.spec.name, err)
	}
	return nil
}

var peerCommands = []subcommand{
	{cmdSpec{
		name: "peer add",
		usage: "peer add --tenant TENANT [--group GROUP,...]... [--site NAME --site-prefix PREFIX,...]... " +
			"[--public-key KEY] [--region REGION] [--qr] [--data-dir DIR] NAME",
		about: "Add a peer to a tenant and print its wg-quick config. Only the config goes to stdout. " +
			"By default the server generates the key pair and can print the config again with 'peer config'. " +
			"With --public-key you bring your own key (from `wg genkey | wg pubkey`): the server never sees " +
			"the private key and the config's PrivateKey line is left for you to fill in.\n\n" +
			"Groups name peers in the tenant's policy (group:NAME). With --site the peer is a site " +
			"connector: a machine running wg-quick in front of a LAN whose prefixes, given with " +
			"--site-prefix, the tenant's routes and policy can then name as site:NAME.\n\n" +
			"The config is for the controller's own region unless --region names another (see 'popgate " +
			"region list'); the peer is the same in every region and 'peer config --region' prints its " +
			"config for any region its tenant may use.",
		example: "popgate peer add --tenant acme laptop > laptop.conf\n" +
			"popgate peer add --tenant acme --region fra laptop > laptop-fra.conf\n" +
			"popgate peer add --tenant acme --group eng,ops --qr phone\n" +
			"popgate peer add --tenant acme --public-key \"$(wg pubkey < laptop.key)\" laptop\n" +
			"popgate peer add --tenant acme --site office --site-prefix 10.10.0.0/24,10.20.0.0/16 office-gw > office-gw.conf",
		args: []string{"NAME"},
	}, (*app).peerAdd},
	{cmdSpec{
		name:    "peer list",
		usage:   "peer list [--tenant TENANT] [--json] [--data-dir DIR]",
		about:   "List the peers, of all tenants or of one, with their addresses, groups, sites and live state.",
		example: "popgate peer list\npopgate peer list --tenant acme --json",
	}, (*app).peerList},
	{cmdSpec{
		name:    "peer config",
		usage:   "peer config --tenant TENANT [--region REGION] [--qr] [--data-dir DIR] NAME",
		about:   "Print the wg-quick config of a peer again, on stdout, for the controller's own region or the one --region names: the same key and addresses, the region's endpoint and server key. Only for peers whose key the server generated.",
		example: "popgate peer config --tenant acme laptop > laptop.conf\npopgate peer config --tenant acme --region ams laptop > laptop-ams.conf\npopgate peer config --tenant acme --qr phone",
		args:    []string{"NAME"},
	}, (*app).peerConfig},
	{cmdSpec{
		name:    "peer show",
		usage:   "peer show --tenant TENANT [--json] [--data-dir DIR] NAME",
		about:   "Show one peer: its key, addresses, groups, site, state, endpoint, last handshake and transfer.",
		example: "popgate peer show --tenant acme laptop",
		args:    []string{"NAME"},
	}, (*app).peerShow},
	{cmdSpec{
		name: "peer set",
		usage: "peer set --tenant TENANT [--group GROUP,... | --no-groups] [--site NAME --site-prefix PREFIX,... | --no-site] " +
			"[--expires WHEN | --no-expiry] [--json] [--data-dir DIR] NAME",
		about: "Change the groups of a peer, the site it connects or when it expires, and show the peer as 'peer show' does. " +
			"--group replaces all the peer's groups, --no-groups takes it out of every group. --site with " +
			"--site-prefix makes it the connector of a site (or changes the site's name or prefixes), " +
			"--no-site makes it an ordinary peer again. --expires sets when the peer stops being let in, as if " +
			"disabled: the last day it may connect (2027-03-31, UTC), a time (2027-03-31T18:00:00Z) or a duration " +
			"from now (90d, 12h, 1y); --no-expiry lets it connect for good. What is not given stays as it is. " +
			"Policy and routes follow within a second.",
		example: "popgate peer set --tenant acme --group eng,ops laptop\n" +
			"popgate peer set --tenant acme --site office --site-prefix 10.10.0.0/24 office-gw\n" +
			"popgate peer set --tenant acme --expires 2027-03-31 contractor-laptop\n" +
			"popgate peer set --tenant acme --no-groups --no-site --no-expiry laptop",
		args: []string{"NAME"},
	}, (*app).peerSet},
	{cmdSpec{
		name:  "peer rename",
		usage: "peer rename --tenant TENANT [--data-dir DIR] NAME NEW-NAME",
		about: "Rename a peer. Its key, addresses, groups and site stay, and configs already imported keep " +
			"working. A peer the tenant's policy names (peer:NAME) keeps its name until the policy no longer names it.",
		example: "popgate peer rename --tenant acme laptop alice-laptop",
		args:    []string{"NAME", "NEW-NAME"},
	}, (*app).peerRename},
	{cmdSpec{
		name:  "peer rotate",
		usage: "peer rotate --tenant TENANT [--public-key KEY] [--region REGION] [--qr] [--data-dir DIR] NAME",
		about: "Give a peer a new key and print its new wg-quick config, as 'peer add' does. The old key stops " +
			"working at once: the device is disconnected until the new config is imported on it. Addresses, " +
			"groups, site and expiry stay. By default the server generates the new key pair; a peer created " +
			"with --public-key needs the public key of a new key pair its user made, given with --public-key. " +
			"The config is for the controller's own region unless --region names another.",
		example: "popgate peer rotate --tenant acme laptop > laptop.conf\n" +
			"popgate peer rotate --tenant acme --public-key \"$(wg pubkey < new.key)\" phone",
		args: []string{"NAME"},
	}, (*app).peerRotate},
	{cmdSpec{
		name:    "peer disable",
		usage:   "peer disable --tenant TENANT [--data-dir DIR] NAME",
		about:   "Disable a peer. It cannot connect until enabled again; its addresses and config are kept.",
		example: "popgate peer disable --tenant acme laptop",
		args:    []string{"NAME"},
	}, peerAction("disable", "disabled")},
	{cmdSpec{
		name:    "peer enable",
		usage:   "peer enable --tenant TENANT [--data-dir DIR] NAME",
		about:   "Enable a disabled peer again.",
		example: "popgate peer enable --tenant acme laptop",
		args:    []string{"NAME"},
	}, peerAction("enable", "enabled")},
	{cmdSpec{
		name:    "peer remove",
		usage:   "peer remove --tenant TENANT [--data-dir DIR] NAME",
		about:   "Remove a peer. Its key stops working at once and its addresses are freed.",
		example: "popgate peer remove --tenant acme laptop",
		args:    []string{"NAME"},
	}, (*app).peerRemove},
}

func (a *app) cmdPeer(ctx context.Context, args []string) error {
	return a.group(ctx, "peer", peerAbout, peerCommands, args)
}

// parsePeerArgs parses the arguments of a command on one peer: --tenant and NAME.
func (a *app) parsePeerArgs(f *adminFlags, args []string) (string, error) {
	pos, err := f.parse(a, args)
	if err != nil {
		return "", err
	}
	if err := f.needTenant(); err != nil {
		return "", err
	}
	if err := checkName("peer", pos[0]); err != nil {
		return "", err
	}
	return pos[0], nil
}

// peerNetFlags are the flags that put a peer in groups and make it a site connector.
type peerNetFlags struct {
	groups   listFlag
	site     string
	prefixes listFlag
}

func (n *peerNetFlags) define(f *adminFlags) {
	f.Var(&n.groups, "group", "put the peer in group `GROUP`; a \",\"-separated list, and the flag may be repeated", "")
	f.String(&n.site, "site", "", "make the peer the connector of the site `NAME`, the LAN behind it (with --site-prefix)")
	f.Var(&n.prefixes, "site-prefix", "LAN `PREFIX` behind the site connector, e.g. 10.10.0.0/24; a \",\"-separated list, and the flag may be repeated", "")
}

// check rejects what the server would refuse for sure, before asking it: a site without
// prefixes or prefixes without a site, bad names, and prefixes that do not parse. Whether
// the prefixes are masked and overlap nothing is the server's to say.
func (n *peerNetFlags) check(f *adminFlags) error {
	site, prefixes := f.isSet("site"), f.isSet("site-prefix")
	switch {
	case site && !prefixes:
		return usagef("%s: --site needs --site-prefix: give the LAN prefixes behind the connector, e.g. --site-prefix 10.10.0.0/24", f.spec.name)
	case prefixes && !site:
		return usagef("%s: --site-prefix needs --site: name the site, e.g. --site office", f.spec.name)
	}
	for _, g := range n.groups {
		if err := store.ValidateGroupName(g); err != nil {
			return &usageError{msg: err.Error()}
		}
	}
	if site {
		if err := store.ValidateSiteName(n.site); err != nil {
			return &usageError{msg: err.Error()}
		}
	}
	for _, p := range n.prefixes {
		if err := checkPrefix("--site-prefix", p); err != nil {
			return err
		}
		if netip.MustParsePrefix(p).Bits() == 0 {
			return usagef("--site-prefix %s covers every address: give the LAN prefixes behind the connector, e.g. 10.10.0.0/24", p)
		}
	}
	return nil
}

func (a *app) peerAdd(ctx context.Context, spec cmdSpec, args []string) error {
	var pub, region string
	var qr bool
	var nf peerNetFlags
	f := newAdminFlags(spec).withTenant(tenantUsage)
	nf.define(f)
	f.String(&pub, "public-key", "", "your own WireGuard public `KEY` (base64, from wg pubkey); default: the server generates the key pair")
	f.Bool(&qr, "qr", qrUsage)
	f.String(&region, "region", "", regionUsage)
	name, err := a.parsePeerArgs(f, args)
	if err != nil {
		return err
	}
	if err := nf.check(f); err != nil {
		return err
	}
	if err := checkRegionFlag(f, region); err != nil {
		return err
	}
	if pub != "" {
		if _, err := store.ParseKey(pub); err != nil {
			return usagef("peer add: --public-key: %s", strings.TrimPrefix(err.Error(), store.ErrInvalid.Error()+": "))
		}
	}
	var created webui.APIPeerCreated
	body := webui.APINewPeer{Name: name, PublicKey: pub, Groups: nf.groups, Site: nf.site, SitePrefixes: nf.prefixes, Region: region}
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, tenantPath(f.tenant)+"/peers", body, &created); err != nil {
		return err
	}
	if err := a.printConfig(created.Config, qr); err != nil {
		return fmt.Errorf("peer %s was added to tenant %s, but printing its config failed: %w", name, f.tenant, err)
	}
	p := created.Peer
	a.note("peer %s added to tenant %s with addresses %s and %s%s", p.Name, p.Tenant, p.IPv4, p.IPv6, peerRole(p))
	if !p.ServerKey {
		a.note("the config has no private key: put the private key that belongs to %s into its PrivateKey line", p.PublicKey)
	}
	return nil
}

// peerRole says what groups and site make of a peer, for a note: "", "; in groups eng, ops",
// "; connector of site office (10.10.0.0/24)".
func peerRole(p webui.APIPeer) string {
	var b strings.Builder
	if len(p.Groups) > 0 {
		fmt.Fprintf(&b, "; in groups %s", strings.Join(p.Groups, ", "))
	}
	if p.Site != "" {
		fmt.Fprintf(&b, "; connector of site %s", siteText(p))
	}
	return b.String()
}

// siteText is "office (10.10.0.0/24, 10.20.0.0/16)" for a site connector, "-" for other peers.
func siteText(p webui.APIPeer) string {
	if p.Site == "" {
		return "-"
	}
	return p.Site + " (" + strings.Join(p.SitePrefixes, ", ") + ")"
}

func (a *app) peerSet(ctx context.Context, spec cmdSpec, args []string) error {
	var noGroups, noSite, noExpiry bool
	var expires string
	var nf peerNetFlags
	f := newAdminFlags(spec).withTenant(tenantUsage)
	nf.define(f)
	f.Bool(&noGroups, "no-groups", "take the peer out of every group")
	f.Bool(&noSite, "no-site", "make the peer an ordinary peer again instead of a site connector")
	f.String(&expires, "expires", "", "the peer stops being let in at `WHEN`: the last day it may connect (2027-03-31, UTC), a time (2027-03-31T18:00:00Z) or a duration from now (90d, 12h, 1y)")
	f.Bool(&noExpiry, "no-expiry", "the peer never expires")
	f.withJSON()
	name, err := a.parsePeerArgs(f, args)
	if err != nil {
		return err
	}
	netChange := noGroups || noSite || f.isSet("group") || f.isSet("site") || f.isSet("site-prefix")
	switch {
	case noGroups && f.isSet("group"):
		return usagef("peer set: --no-groups and --group contradict each other: give one of them")
	case noSite && f.isSet("site"):
		return usagef("peer set: --no-site and --site contradict each other: give one of them")
	case noSite && f.isSet("site-prefix"):
		return usagef("peer set: --no-site and --site-prefix contradict each other: give one of them")
	case noExpiry && f.isSet("expires"):
		return usagef("peer set: --no-expiry and --expires contradict each other: give one of them")
	case !netChange && !noExpiry && !f.isSet("expires"):
		return usagef("peer set: nothing to change: give --group, --no-groups, --site with --site-prefix, --no-site, --expires or --no-expiry")
	}
	if err := nf.check(f); err != nil {
		return err
	}
	var expiry *webui.APIPeerExpiry
	switch {
	case f.isSet("expires"):
		at, err := parseExpiry(a.now(), expires)
		if err != nil {
			return usagef("peer set: %v", err)
		}
		expiry = &webui.APIPeerExpiry{ExpiresAt: &at}
	case noExpiry:
		expiry = &webui.APIPeerExpiry{}
	}
	c := a.client(f)
	var p webui.APIPeer
	var raw []byte
	if netChange {
		if raw, err = setPeerNet(ctx, c, f, name, nf, noGroups, noSite, &p); err != nil {
			return err
		}
	}
	if expiry != nil {
		if raw, err = c.callJSON(ctx, http.MethodPut, peerPath(f.tenant, name)+"/expiry", expiry, &p); err != nil {
			if netChange {
				return fmt.Errorf("%w (the groups and site of peer %s were changed, its expiry was not)", err, name)
			}
			return err
		}
	}
	if f.json {
		return a.printJSON(raw)
	}
	return a.printPeer(p)
}

// setPeerNet changes the groups and site of peer name as the flags say and decodes the
// answer into p.
func setPeerNet(ctx context.Context, c *controlClient, f *adminFlags, name string, nf peerNetFlags, noGroups, noSite bool, p *webui.APIPeer) ([]byte, error) {
	var upd webui.APIPeerUpdate
	switch {
	case f.isSet("group"):
		groups := []string(nf.groups)
		upd.Groups = &groups
	case noGroups:
		upd.Groups = &[]string{}
	}
	switch {
	case f.isSet("site"):
		prefixes := []string(nf.prefixes)
		upd.Site, upd.SitePrefixes = &nf.site, &prefixes
	case noSite:
		none := ""
		upd.Site, upd.SitePrefixes = &none, &[]string{}
	}
	return c.callJSON(ctx, http.MethodPatch, peerPath(f.tenant, name), upd, p)
}

// parseExpiry parses peer set --expires at now: the last day the peer may connect
// ("2027-03-31", UTC; it stops at the end of that day, as in the web UI), a time (RFC 3339) or
// a duration from now (see parseLifetime). The result is in the future.
func parseExpiry(now time.Time, s string) (time.Time, error) {
	var at time.Time
	if day, err := time.Parse(time.DateOnly, s); err == nil {
		at = day.Add(24 * time.Hour)
	} else if t, err := time.Parse(time.RFC3339, s); err == nil {
		at = t
	} else if d, err := parseLifetime(s); err == nil {
		at = now.Add(d)
	} else if strings.Count(s, "-") >= 2 || strings.Contains(s, ":") {
		return time.Time{}, fmt.Errorf("--expires %q is neither a date such as 2027-03-31 nor a time such as 2027-03-31T18:00:00Z", s)
	} else {
		return time.Time{}, fmt.Errorf("--expires %v", err)
	}
	if !at.After(now) {
		return time.Time{}, fmt.Errorf("--expires %q is over already: give a later day, or disable the peer to stop it now", s)
	}
	if at = at.UTC().Truncate(time.Second); at.Year() > 9999 {
		// 9999-12-31 ends in the year 10000, which RFC 3339 (and so the API) cannot write.
		return time.Time{}, fmt.Errorf("--expires %q is after the year 9999: give an earlier day, or --no-expiry for a peer that never expires", s)
	}
	return at, nil
}

func (a *app) peerRename(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(tenantUsage)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := f.needTenant(); err != nil {
		return err
	}
	for _, n := range pos {
		if err := checkName("peer", n); err != nil {
			return err
		}
	}
	name, newName := pos[0], pos[1]
	var p webui.APIPeer
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, peerPath(f.tenant, name)+"/rename", webui.APIPeerRename{Name: newName}, &p); err != nil {
		return err
	}
	a.note("peer %s of tenant %s renamed to %s: its key, addresses and config stay", name, f.tenant, p.Name)
	return nil
}

func (a *app) peerRotate(ctx context.Context, spec cmdSpec, args []string) error {
	var pub, region string
	var qr bool
	f := newAdminFlags(spec).withTenant(tenantUsage)
	f.String(&pub, "public-key", "", "the public `KEY` of a new key pair the user made (base64, from wg pubkey); default: the server generates the key pair")
	f.Bool(&qr, "qr", qrUsage)
	f.String(&region, "region", "", regionUsage)
	name, err := a.parsePeerArgs(f, args)
	if err != nil {
		return err
	}
	if err := checkRegionFlag(f, region); err != nil {
		return err
	}
	var body any // none: the server generates the key pair
	if pub != "" {
		if _, err := store.ParseKey(pub); err != nil {
			return usagef("peer rotate: --public-key: %s", strings.TrimPrefix(err.Error(), store.ErrInvalid.Error()+": "))
		}
	}
	if pub != "" || region != "" {
		body = webui.APIPeerRotate{PublicKey: pub, Region: region}
	}
	var rotated webui.APIPeerCreated
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, peerPath(f.tenant, name)+"/rotate", body, &rotated); err != nil {
		return err
	}
	if err := a.printConfig(rotated.Config, qr); err != nil {
		return fmt.Errorf("peer %s of tenant %s has a new key, but printing its config failed (print it with 'popgate peer config'): %w", name, f.tenant, err)
	}
	p := rotated.Peer
	a.note("peer %s of tenant %s has a new key (public key %s): the old key stopped working; import this config on the device", p.Name, p.Tenant, p.PublicKey)
	if !p.ServerKey {
		a.note("the config has no private key: put the private key that belongs to %s into its PrivateKey line", p.PublicKey)
	}
	return nil
}

func (a *app) peerConfig(ctx context.Context, spec cmdSpec, args []string) error {
	var qr bool
	var region string
	f := newAdminFlags(spec).withTenant(tenantUsage)
	f.Bool(&qr, "qr", qrUsage)
	f.String(&region, "region", "", regionUsage)
	name, err := a.parsePeerArgs(f, args)
	if err != nil {
		return err
	}
	if err := checkRegionFlag(f, region); err != nil {
		return err
	}
	path := peerPath(f.tenant, name) + "/config"
	if region != "" {
		path += "?" + url.Values{"region": {region}}.Encode()
	}
	conf, err := a.client(f).call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return a.printConfig(string(conf), qr)
}

// printConfig prints a wg-quick config on stdout, as text or as a QR code.
func (a *app) printConfig(conf string, qr bool) error {
	if !qr {
		if !strings.HasSuffix(conf, "\n") {
			conf += "\n"
		}
		_, err := io.WriteString(a.stdout, conf)
		return err
	}
	code, err := qrcode.New(conf, qrcode.Low)
	if err != nil {
		return fmt.Errorf("config does not fit in a QR code: %w", err)
	}
	// Light modules are drawn, dark ones left as the (dark) terminal background.
	_, err = io.WriteString(a.stdout, code.ToSmallString(false))
	return err
}

func (a *app) peerList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant("show only the peers of `TENANT`").withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	path := "/api/v1/peers"
	if f.tenant != "" {
		if err := checkName("tenant", f.tenant); err != nil {
			return err
		}
		path += "?" + url.Values{"tenant": {f.tenant}}.Encode()
	}
	// The list is read and printed as it arrives (webui.APIPeers, one peer at a time): 100,000
	// peers are ≈ 42 MB of JSON.
	c := a.client(f)
	body, err := c.stream(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	stdout := &errWriter{w: a.stdout}
	out := bufio.NewWriterSize(stdout, 64<<10)
	var echo io.Writer
	if f.json {
		echo = out
	}
	now := a.now()
	table := newStreamTable(out, tableHold)
	table.Row("TENANT", "NAME", "IPV4", "IPV6", "GROUPS", "SITE", "STATE", "ONLINE", "LAST-HANDSHAKE", "RX", "TX")
	n := 0
	err = readJSONList(body, "peers", echo, func(raw json.RawMessage) error {
		n++
		if f.json {
			return nil
		}
		var p webui.APIPeer
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("%w: %v", errListFormat, err)
		}
		return table.Row(p.Tenant, p.Name, p.IPv4, p.IPv6, orDash(strings.Join(p.Groups, ",")), orDash(p.Site),
			peerState(now, p), yesNo(p.Online), handshake(now, p), humanBytes(p.RxBytes), humanBytes(p.TxBytes))
	})
	switch {
	case stdout.err != nil:
		err = stdout.err
	case errors.Is(err, errListFormat):
		err = fmt.Errorf("popgate serve answered GET %s with JSON this popgate does not understand (%v): are both the same version?", path, err)
	case errors.Is(err, errListCut):
		err = fmt.Errorf("popgate serve's answer to GET %s ended early: see its log", path)
	case err != nil:
		err = c.connError(err)
	}
	if err == nil && !f.json {
		if n == 0 {
			a.note("no peers yet: add one with 'popgate peer add --tenant TENANT NAME'")
		} else {
			err = table.Flush()
		}
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	return err
}

// tableHold is how many rows of a long table are read before its columns are sized and
// printing starts: a longer table's later rows with a wider cell are pushed right.
const tableHold = 10000

func (a *app) peerShow(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(tenantUsage).withJSON()
	name, err := a.parsePeerArgs(f, args)
	if err != nil {
		return err
	}
	var p webui.APIPeer
	if printed, err := a.getOrPrintJSON(ctx, f, peerPath(f.tenant, name), &p); printed || err != nil {
		return err
	}
	return a.printPeer(p)
}

// printPeer shows one peer on stdout, one "key: value" line per property.
func (a *app) printPeer(p webui.APIPeer) error {
	now := a.now()
	keyHeld := "server (print the config again with 'popgate peer config')"
	if !p.ServerKey {
		keyHeld = "the user (the server never saw the private key)"
	}
	endpoint := p.Endpoint
	if endpoint == "" {
		endpoint = "-"
	}
	var b strings.Builder
	for _, row := range [][2]string{
		{"tenant", p.Tenant},
		{"name", p.Name},
		{"public key", p.PublicKey},
		{"private key held by", keyHeld},
		{"ipv4", p.IPv4},
		{"ipv6", p.IPv6},
		{"groups", orDash(strings.Join(p.Groups, ", "))},
		{"site", siteText(p)},
		{"state", peerState(now, p)},
		{"expires", expiresText(now, p)},
		{"created", p.CreatedAt.Local().Format("2006-01-02 15:04:05 MST") + " (" + ago(now, p.CreatedAt) + ")"},
		{"online", yesNo(p.Online)},
		{"endpoint", endpoint},
		{"last handshake", handshake(now, p)},
		{"transfer", humanBytes(p.RxBytes) + " received, " + humanBytes(p.TxBytes) + " sent"},
	} {
		fmt.Fprintf(&b, "%-20s %s\n", row[0]+":", row[1])
	}
	_, err := io.WriteString(a.stdout, b.String())
	return err
}

// peerAction runs enable or disable.
func peerAction(verb, done string) func(a *app, ctx context.Context, spec cmdSpec, args []string) error {
	return func(a *app, ctx context.Context, spec cmdSpec, args []string) error {
		f := newAdminFlags(spec).withTenant(tenantUsage)
		name, err := a.parsePeerArgs(f, args)
		if err != nil {
			return err
		}
		var p webui.APIPeer
		if _, err := a.client(f).callJSON(ctx, http.MethodPost, peerPath(f.tenant, name)+"/"+verb, nil, &p); err != nil {
			return err
		}
		a.note("peer %s of tenant %s %s", name, f.tenant, done)
		return nil
	}
}

func (a *app) peerRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(tenantUsage)
	name, err := a.parsePeerArgs(f, args)
	if err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, peerPath(f.tenant, name), nil); err != nil {
		return err
	}
	a.note("peer %s removed from tenant %s", name, f.tenant)
	return nil
}
