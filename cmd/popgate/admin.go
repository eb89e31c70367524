package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/skip2/go-qrcode"

	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

// subcommand is one subcommand of a command group (tenant, peer).
type subcommand struct {
	spec cmdSpec
	run  func(a *app, ctx context.Context, spec cmdSpec, args []string) error
}

// group runs the subcommand of group named by args[0].
func (a *app) group(ctx context.Context, group, about string, subs []subcommand, args []string) error {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.spec.name[len(group)+1:]
	}
	if len(args) == 0 {
		return usagef("%s: missing subcommand: use %s (see 'popgate %s --help')", group, orList(names), group)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		var b strings.Builder
		fmt.Fprintf(&b, "Usage: popgate %s <subcommand> [flags] [arguments]\n\n%s\n\nSubcommands:\n", group, wrap(about, helpWidth))
		for _, s := range subs {
			fmt.Fprintf(&b, "  %-8s %s\n", s.spec.name[len(group)+1:], firstSentence(s.spec.about))
		}
		fmt.Fprintf(&b, "\nRun 'popgate %s <subcommand> --help' for its flags and an example.\n", group)
		io.WriteString(a.stdout, b.String())
		return nil
	}
	for _, s := range subs {
		if s.spec.name == group+" "+args[0] {
			return s.run(a, ctx, s.spec, args[1:])
		}
	}
	return usagef("%s: unknown subcommand %q: use %s (see 'popgate %s --help')", group, args[0], orList(names), group)
}

// firstSentence is the start of s up to its first full stop, for one-line summaries.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i]
	}
	return strings.TrimSuffix(s, ".")
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

// parse adds --data-dir, parses args and returns the positional arguments.
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

// ---- tenant ----

const tenantAbout = "Tenants are the customer organisations of the gateway. Each has its own peers, " +
	"addresses and policy, and never sees another tenant's traffic."

var tenantCommands = []subcommand{
	{cmdSpec{
		name:    "tenant add",
		usage:   "tenant add [--data-dir DIR] NAME",
		about:   "Add a tenant. Its name is used in the other commands and in the web UI.",
		example: "popgate tenant add acme",
		args:    []string{"NAME"},
	}, (*app).tenantAdd},
	{cmdSpec{
		name:    "tenant list",
		usage:   "tenant list [--json] [--data-dir DIR]",
		about:   "List the tenants with their number of peers.",
		example: "popgate tenant list\npopgate tenant list --json | jq -r '.tenants[].name'",
	}, (*app).tenantList},
	{cmdSpec{
		name:    "tenant remove",
		usage:   "tenant remove [--data-dir DIR] NAME",
		about:   "Remove a tenant. The server refuses while it still has peers: remove them first.",
		example: "popgate tenant remove acme",
		args:    []string{"NAME"},
	}, (*app).tenantRemove},
}

func (a *app) cmdTenant(ctx context.Context, args []string) error {
	return a.group(ctx, "tenant", tenantAbout, tenantCommands, args)
}

func (a *app) tenantAdd(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := checkName("tenant", pos[0]); err != nil {
		return err
	}
	var t webui.APITenant
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, "/api/v1/tenants", webui.APINewTenant{Name: pos[0]}, &t); err != nil {
		return err
	}
	a.note("tenant %s added: add a peer with 'popgate peer add --tenant %s NAME'", t.Name, t.Name)
	return nil
}

func (a *app) tenantList(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	var ts webui.APITenants
	raw, err := a.client(f).callJSON(ctx, http.MethodGet, "/api/v1/tenants", nil, &ts)
	if err != nil {
		return err
	}
	if f.json {
		return a.printJSON(raw)
	}
	if len(ts.Tenants) == 0 {
		a.note("no tenants yet: add one with 'popgate tenant add NAME'")
		return nil
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "NAME\tPEERS\tCREATED")
	for _, t := range ts.Tenants {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", t.Name, t.Peers, ago(a.now(), t.CreatedAt))
	}
	return tw.Flush()
}

func (a *app) tenantRemove(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec)
	pos, err := f.parse(a, args)
	if err != nil {
		return err
	}
	if err := checkName("tenant", pos[0]); err != nil {
		return err
	}
	if _, err := a.client(f).call(ctx, http.MethodDelete, tenantPath(pos[0]), nil); err != nil {
		return err
	}
	a.note("tenant %s removed", pos[0])
	return nil
}

// ---- peer ----

const peerAbout = "Peers are the client devices of a tenant: a WireGuard key with overlay addresses. " +
	"'peer add' prints the wg-quick config to import in the WireGuard app or wg-quick."

const (
	tenantUsage = "`TENANT` the peer belongs to (required)"
	qrUsage     = "print the config as a QR code for the WireGuard mobile app instead of as text"
)

var peerCommands = []subcommand{
	{cmdSpec{
		name:  "peer add",
		usage: "peer add --tenant TENANT [--public-key KEY] [--qr] [--data-dir DIR] NAME",
		about: "Add a peer to a tenant and print its wg-quick config. Only the config goes to stdout. " +
			"By default the server generates the key pair and can print the config again with 'peer config'. " +
			"With --public-key you bring your own key (from `wg genkey | wg pubkey`): the server never sees " +
			"the private key and the config's PrivateKey line is left for you to fill in.",
		example: "popgate peer add --tenant acme laptop > laptop.conf\n" +
			"popgate peer add --tenant acme --qr phone\n" +
			"popgate peer add --tenant acme --public-key \"$(wg pubkey < laptop.key)\" laptop",
		args: []string{"NAME"},
	}, (*app).peerAdd},
	{cmdSpec{
		name:    "peer list",
		usage:   "peer list [--tenant TENANT] [--json] [--data-dir DIR]",
		about:   "List the peers, of all tenants or of one, with their addresses and live state.",
		example: "popgate peer list\npopgate peer list --tenant acme --json",
	}, (*app).peerList},
	{cmdSpec{
		name:    "peer config",
		usage:   "peer config --tenant TENANT [--qr] [--data-dir DIR] NAME",
		about:   "Print the wg-quick config of a peer again, on stdout. Only for peers whose key the server generated.",
		example: "popgate peer config --tenant acme laptop > laptop.conf\npopgate peer config --tenant acme --qr phone",
		args:    []string{"NAME"},
	}, (*app).peerConfig},
	{cmdSpec{
		name:    "peer show",
		usage:   "peer show --tenant TENANT [--json] [--data-dir DIR] NAME",
		about:   "Show one peer: its key, addresses, state, endpoint, last handshake and transfer.",
		example: "popgate peer show --tenant acme laptop",
		args:    []string{"NAME"},
	}, (*app).peerShow},
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

func (a *app) peerAdd(ctx context.Context, spec cmdSpec, args []string) error {
	var pub string
	var qr bool
	f := newAdminFlags(spec).withTenant(tenantUsage)
	f.String(&pub, "public-key", "", "your own WireGuard public `KEY` (base64, from wg pubkey); default: the server generates the key pair")
	f.Bool(&qr, "qr", qrUsage)
	name, err := a.parsePeerArgs(f, args)
	if err != nil {
		return err
	}
	if pub != "" {
		if _, err := store.ParseKey(pub); err != nil {
			return usagef("peer add: --public-key: %s", strings.TrimPrefix(err.Error(), store.ErrInvalid.Error()+": "))
		}
	}
	var created webui.APIPeerCreated
	body := webui.APINewPeer{Name: name, PublicKey: pub}
	if _, err := a.client(f).callJSON(ctx, http.MethodPost, tenantPath(f.tenant)+"/peers", body, &created); err != nil {
		return err
	}
	if err := a.printConfig(created.Config, qr); err != nil {
		return fmt.Errorf("peer %s was added to tenant %s, but printing its config failed: %w", name, f.tenant, err)
	}
	p := created.Peer
	a.note("peer %s added to tenant %s with addresses %s and %s", p.Name, p.Tenant, p.IPv4, p.IPv6)
	if !p.ServerKey {
		a.note("the config has no private key: put the private key that belongs to %s into its PrivateKey line", p.PublicKey)
	}
	return nil
}

func (a *app) peerConfig(ctx context.Context, spec cmdSpec, args []string) error {
	var qr bool
	f := newAdminFlags(spec).withTenant(tenantUsage)
	f.Bool(&qr, "qr", qrUsage)
	name, err := a.parsePeerArgs(f, args)
	if err != nil {
		return err
	}
	conf, err := a.client(f).call(ctx, http.MethodGet, peerPath(f.tenant, name)+"/config", nil)
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
	var ps webui.APIPeers
	raw, err := a.client(f).callJSON(ctx, http.MethodGet, path, nil, &ps)
	if err != nil {
		return err
	}
	if f.json {
		return a.printJSON(raw)
	}
	if len(ps.Peers) == 0 {
		a.note("no peers yet: add one with 'popgate peer add --tenant TENANT NAME'")
		return nil
	}
	now := a.now()
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "TENANT\tNAME\tIPV4\tIPV6\tSTATE\tONLINE\tLAST-HANDSHAKE\tRX\tTX")
	for _, p := range ps.Peers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Tenant, p.Name, p.IPv4, p.IPv6,
			peerState(p), yesNo(p.Online), handshake(now, p), humanBytes(p.RxBytes), humanBytes(p.TxBytes))
	}
	return tw.Flush()
}

func (a *app) peerShow(ctx context.Context, spec cmdSpec, args []string) error {
	f := newAdminFlags(spec).withTenant(tenantUsage).withJSON()
	name, err := a.parsePeerArgs(f, args)
	if err != nil {
		return err
	}
	var p webui.APIPeer
	raw, err := a.client(f).callJSON(ctx, http.MethodGet, peerPath(f.tenant, name), nil, &p)
	if err != nil {
		return err
	}
	if f.json {
		return a.printJSON(raw)
	}
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
		{"state", peerState(p)},
		{"created", p.CreatedAt.Local().Format("2006-01-02 15:04:05 MST") + " (" + ago(now, p.CreatedAt) + ")"},
		{"online", yesNo(p.Online)},
		{"endpoint", endpoint},
		{"last handshake", handshake(now, p)},
		{"transfer", humanBytes(p.RxBytes) + " received, " + humanBytes(p.TxBytes) + " sent"},
	} {
		fmt.Fprintf(&b, "%-20s %s\n", row[0]+":", row[1])
	}
	_, err = io.WriteString(a.stdout, b.String())
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

// ---- status ----

var statusSpec = cmdSpec{
	name:    "status",
	usage:   "status [--json] [--data-dir DIR]",
	about:   "Show the running node (name, version, region, uptime), its WireGuard device and how many peers are enabled and online.",
	example: "popgate status\nPOPGATE_DATA_DIR=/var/lib/popgate popgate status --json",
}

func (a *app) cmdStatus(ctx context.Context, args []string) error {
	f := newAdminFlags(statusSpec).withJSON()
	if _, err := f.parse(a, args); err != nil {
		return err
	}
	var st webui.APIStatus
	raw, err := a.client(f).callJSON(ctx, http.MethodGet, "/api/v1/status", nil, &st)
	if err != nil {
		return err
	}
	if f.json {
		return a.printJSON(raw)
	}
	n, d, p := st.Node, st.Device, st.Peers
	var b strings.Builder
	kv := func(key, format string, args ...any) {
		v := fmt.Sprintf(format, args...)
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(&b, "  %-17s %s\n", key+":", v)
	}
	b.WriteString("node\n")
	kv("name", "%s", n.Name)
	kv("version", "%s", n.Version)
	kv("roles", "%s", strings.Join(n.Roles, ", "))
	kv("region", "%s", n.Region)
	kv("uptime", "%s (since %s)", humanDuration(n.UptimeSeconds), n.StartedAt.Local().Format("2006-01-02 15:04:05 MST"))
	b.WriteString("device\n")
	kv("interface", "%s", d.Interface)
	kv("public key", "%s", d.PublicKey)
	kv("listen port", "%d/udp", d.ListenPort)
	kv("public endpoint", "%s", d.PublicEndpoint)
	kv("mtu", "%d", d.MTU)
	kv("exit mode", "%s", d.ExitMode)
	kv("addresses", "%s", strings.Join(d.Addresses, ", "))
	kv("uapi socket", "%s", d.UAPISocket)
	kv("transfer", "%s received, %s sent", humanBytes(d.RxBytes), humanBytes(d.TxBytes))
	b.WriteString("peers\n")
	kv("total", "%d", p.Total)
	kv("enabled", "%d", p.Enabled)
	kv("online", "%d", p.Online)
	_, err = io.WriteString(a.stdout, b.String())
	return err
}
