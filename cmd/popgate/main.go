// Command popgate is the popgate gateway: `popgate serve` runs a node, the other subcommands
// administer a running node through its control socket.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// defaultConfigFile is read by serve when it exists and no --config is named.
const defaultConfigFile = "/etc/popgate/popgate.toml"

// requestTimeout bounds each request of an admin command to the control socket.
const requestTimeout = 10 * time.Second

func main() {
	a := &app{
		stdin:         os.Stdin,
		stdout:        os.Stdout,
		stderr:        os.Stderr,
		getenv:        os.Getenv,
		now:           time.Now,
		hostname:      os.Hostname,
		defaultConfig: defaultConfigFile,
		serve:         runServe,
		timeout:       requestTimeout,
	}
	os.Exit(a.run(context.Background(), os.Args[1:]))
}

// app is one invocation of the command line. Everything a command touches outside the
// process comes through it, so tests run commands without the real environment.
type app struct {
	stdin  io.Reader // read only when the user names "-" as a file
	stdout io.Writer // requested output only: tables, configs, JSON
	stderr io.Writer // errors, notes and the serve log
	getenv func(string) string
	now    func() time.Time
	// hostname is the default node name.
	hostname func() (string, error)
	// defaultConfig is the config file serve reads when it exists and none is named.
	defaultConfig string
	// serve runs the node (runServe outside tests).
	serve func(ctx context.Context, sc ServeConfig, log *slog.Logger) error
	// timeout bounds each control socket request.
	timeout time.Duration
}

// Exit statuses.
const (
	exitOK      = 0
	exitRuntime = 1 // the command was understood but failed
	exitUsage   = 2 // bad command line, environment or config file
)

// usageError is a mistake in the command line, environment or config file: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// errHelpOnStderr: the help was printed on stderr instead of a message, as for a bare
// `popgate`: exit status 2, nothing more to say.
var errHelpOnStderr = errors.New("help shown on stderr")

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// run runs the command line args (without the program name) and returns the exit status.
func (a *app) run(ctx context.Context, args []string) int {
	err := a.dispatch(ctx, args)
	switch {
	case err == nil || errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errHelpOnStderr):
		return exitUsage
	}
	fmt.Fprintf(a.stderr, "popgate: %s\n", oneLine(err.Error()))
	if _, ok := errors.AsType[*usageError](err); ok {
		return exitUsage
	}
	return exitRuntime
}

// oneLine folds a message onto one line: every error is one line on stderr.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)), " ")
}

func (a *app) dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		a.printMainHelp(a.stderr)
		return errHelpOnStderr
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help":
		a.printMainHelp(a.stdout)
		return nil
	case "-v", "-version", "--version":
		name = "version"
	case "help":
		return a.cmdHelp(ctx, rest)
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(a, ctx, rest)
		}
	}
	return usagef("unknown command %q: see 'popgate --help' for the commands", name)
}

// command is one top-level command.
type command struct {
	name    string
	summary string
	run     func(a *app, ctx context.Context, args []string) error
}

// commands lists the top-level commands in the order the help shows them.
var commands = []command{
	{"serve", "run the gateway: WireGuard device, web UI and control socket", (*app).cmdServe},
	{"tenant", "add, list, change and remove tenants", (*app).cmdTenant},
	{"peer", "add, list, show, change, enable, disable and remove peers; print their configs", (*app).cmdPeer},
	{"policy", "show and set the firewall policy of a tenant", (*app).cmdPolicy},
	{"route", "list, add and remove the routes of a tenant", (*app).cmdRoute},
	{"dns", "a tenant's DNS in the tunnel: split zones, own upstreams (plain or TLS), blocklists, query log", (*app).cmdDNS},
	{"region", "add, list, change and remove regions, each with its endpoint and key", (*app).cmdRegion},
	{"status", "show the running node, its device, its peers and its tenants at a glance", (*app).cmdStatus},
	{"admin", "add, list and remove the admins of the web UI; set their passwords", (*app).cmdAdmin},
	{"token", "add, list and remove API tokens", (*app).cmdToken},
	{"node", "make join tokens; list and remove the nodes that joined this controller", (*app).cmdNode},
	{"event", "show the events (links, failovers, nodes, peers expiring); set the webhook they go to", (*app).cmdEvent},
	{"check", "add, list, show and remove checks watched from the PoPs: DNS, HTTP, region endpoints", (*app).cmdCheck},
	{"audit", "show the audit log: who changed what, when, from where", (*app).cmdAudit},
	{"db", "check the database of a data dir, also while serve runs", (*app).cmdDB},
	{"backup", "write a consistent copy of the database to a file, also while serve runs", (*app).cmdBackup},
	{"version", "print the version", (*app).cmdVersion},
	{"help", "show the help of a command", nil},
}

func (a *app) printMainHelp(w io.Writer) {
	var b strings.Builder
	b.WriteString(`popgate is a WireGuard VPN gateway for many tenants.

Usage:
  popgate <command> [arguments]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Run 'popgate help <command>' or 'popgate <command> --help' for a command's flags and an example.
Start a gateway with 'popgate serve', then add a tenant and a peer:

  popgate tenant add acme
  popgate peer add --tenant acme laptop > laptop.conf

README.md walks through a first setup, the config file and every setting.
`)
	io.WriteString(w, b.String())
}

// cmdHelp answers `popgate help [command [subcommand]]` with the same text as --help.
func (a *app) cmdHelp(ctx context.Context, args []string) error {
	if len(args) == 0 {
		a.printMainHelp(a.stdout)
		return nil
	}
	if len(args) > 3 {
		return usagef("help: too many arguments: use 'popgate help <command> [<subcommand>]'")
	}
	if args[0] == "help" {
		a.printMainHelp(a.stdout)
		return nil
	}
	if len(args) == 3 {
		// Only the subcommands of a family have three words ("dns zone add", "event webhook
		// set"): the first two must name a group of their own, whose help says so.
		var probe strings.Builder
		b := *a
		b.stdout, b.stderr = &probe, io.Discard
		if err := b.dispatch(ctx, []string{args[0], args[1], "--help"}); err != nil ||
			!strings.HasPrefix(probe.String(), "Usage: popgate "+args[0]+" "+args[1]+" <subcommand>") {
			return usagef("help: too many arguments: use 'popgate help <command> [<subcommand>]'")
		}
	}
	return a.dispatch(ctx, append(args, "--help"))
}
