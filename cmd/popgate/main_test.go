package main

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testNow is the clock of every test app.
var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// testApp is an app with captured output, the environment env, no default config file, the
// host name "testhost", and a serve that fails the test if called.
type testApp struct {
	*app
	stdout, stderr *bytes.Buffer
}

func newTestApp(t *testing.T, env map[string]string) *testApp {
	t.Helper()
	ta := &testApp{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer)}
	ta.app = &app{
		stdin:    strings.NewReader(""),
		stdout:   ta.stdout,
		stderr:   ta.stderr,
		getenv:   func(k string) string { return env[k] },
		now:      func() time.Time { return testNow },
		hostname: func() (string, error) { return "testhost", nil },
		serve: func(context.Context, ServeConfig, *slog.Logger) error {
			t.Error("runServe was called")
			return nil
		},
		timeout: 5 * time.Second,
	}
	return ta
}

// runArgs runs args and returns the exit status.
func (ta *testApp) runArgs(args ...string) int {
	return ta.run(context.Background(), args)
}

// checkOneErrorLine checks that stderr is exactly one line starting "popgate: " and that it
// contains each of wants.
func checkOneErrorLine(t *testing.T, stderr string, wants ...string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "popgate: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not one line starting \"popgate: \":\n%s", stderr)
	}
	for _, w := range wants {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not contain %q", stderr, w)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir() // no daemon: none of these may get as far as the socket
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`}},
		{[]string{"tenant"}, []string{"tenant: missing subcommand: use add, list, set or remove"}},
		{[]string{"peer", "frob"}, []string{`peer: unknown subcommand "frob"`, "add, list, config, show, set, rename, rotate, disable, enable or remove"}},
		{[]string{"tenant", "add"}, []string{"tenant add: missing NAME", "usage: popgate tenant add"}},
		{[]string{"tenant", "add", "a", "b"}, []string{`tenant add: unexpected argument "b"`}},
		{[]string{"tenant", "add", "Acme"}, []string{`tenant name "Acme" is invalid`}},
		{[]string{"peer", "add", "laptop"}, []string{"peer add: missing --tenant", "usage: popgate peer add --tenant TENANT"}},
		{[]string{"peer", "add", "--tenant", "acme"}, []string{"peer add: missing NAME"}},
		{[]string{"peer", "add", "laptop", "--tenant", "acme", "extra"}, []string{`peer add: unexpected argument "extra"`}},
		{[]string{"peer", "add", "--tenant", "acme", "--public-key", "xyz", "laptop"}, []string{`peer add: --public-key: "xyz" is not a WireGuard key`}},
		{[]string{"peer", "add", "--tenant", "acme", "lap top"}, []string{`peer name "lap top" is invalid`}},
		{[]string{"peer", "show", "--tenant"}, []string{"peer show: flag --tenant needs a value"}},
		{[]string{"peer", "list", "--frob"}, []string{"peer list: unknown flag --frob", "popgate peer list --help"}},
		{[]string{"peer", "remove", "laptop"}, []string{"peer remove: missing --tenant"}},
		{[]string{"status", "now"}, []string{`status: unexpected argument "now"`}},
		{[]string{"version", "--short"}, []string{"version: unknown flag --short"}},
		{[]string{"help", "peer", "add", "now"}, []string{"help: too many arguments"}},
		{[]string{"serve", "now"}, []string{`serve: unexpected argument "now"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ta := newTestApp(t, map[string]string{envDataDir: dir})
			if code := ta.runArgs(tc.args...); code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			checkOneErrorLine(t, ta.stderr.String(), tc.wants...)
			if ta.stdout.Len() != 0 {
				t.Errorf("stdout is not empty: %q", ta.stdout)
			}
		})
	}
}

func TestNoCommand(t *testing.T) {
	ta := newTestApp(t, nil)
	if code := ta.runArgs(); code != exitUsage {
		t.Errorf("exit status %d, want %d", code, exitUsage)
	}
	if !strings.Contains(ta.stderr.String(), "Usage:\n  popgate <command>") || ta.stdout.Len() != 0 {
		t.Errorf("stdout %q, stderr %q: want the help on stderr", ta.stdout, ta.stderr)
	}
}

func TestParseArgs(t *testing.T) {
	spec := cmdSpec{name: "peer add", usage: "peer add --tenant TENANT NAME", args: []string{"NAME"}}
	for _, tc := range []struct {
		args   []string
		tenant string
		qr     bool
		pos    string
	}{
		{[]string{"--tenant", "acme", "laptop"}, "acme", false, "laptop"},
		{[]string{"laptop", "--tenant", "acme"}, "acme", false, "laptop"},
		{[]string{"laptop", "--tenant=acme", "--qr"}, "acme", true, "laptop"},
		{[]string{"-qr", "laptop", "-tenant", "acme"}, "acme", true, "laptop"},
		{[]string{"--tenant", "acme", "--", "--qr"}, "acme", false, "--qr"},
		{[]string{"-", "--tenant", "acme"}, "acme", false, "-"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var tenant string
			var qr bool
			f := newCmdFlags(spec)
			f.String(&tenant, "tenant", "", "tenant")
			f.Bool(&qr, "qr", "qr")
			pos, err := f.parse(new(bytes.Buffer), tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if tenant != tc.tenant || qr != tc.qr || len(pos) != 1 || pos[0] != tc.pos {
				t.Errorf("got tenant %q, qr %v, args %q; want %q, %v, [%q]", tenant, qr, pos, tc.tenant, tc.qr, tc.pos)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"--help"}, []string{"Usage:\n  popgate <command>", "serve ", "tenant ", "peer ", "policy ", "route ", "status ", "version ", "README.md"}},
		{[]string{"-h"}, []string{"Usage:\n  popgate <command>"}},
		{[]string{"help"}, []string{"Usage:\n  popgate <command>"}},
		{[]string{"help", "peer"}, []string{"Usage: popgate peer <subcommand>", "  add ", "  config ", "  remove "}},
		{[]string{"peer", "--help"}, []string{"Usage: popgate peer <subcommand>"}},
		{[]string{"help", "peer", "add"}, []string{"Usage: popgate peer add --tenant TENANT", "--public-key KEY", "--qr", "env POPGATE_DATA_DIR", "Example:\n  popgate peer add"}},
		{[]string{"peer", "add", "laptop", "--help"}, []string{"Usage: popgate peer add"}},
		{[]string{"tenant", "list", "-h"}, []string{"Usage: popgate tenant list", "--json"}},
		{[]string{"help", "tenant", "set"}, []string{"Usage: popgate tenant set [--split-tunnel on|off] [--max-flows-per-peer N|default]", "--split-tunnel on|off ", "Example:\n  popgate tenant set --split-tunnel on acme"}},
		{[]string{"peer", "add", "--help"}, []string{"--group GROUP ", "--site NAME ", "--site-prefix PREFIX ", "--site-prefix 10.10.0.0/24,10.20.0.0/16 office-gw"}},
		{[]string{"help", "peer", "set"}, []string{"Usage: popgate peer set --tenant TENANT", "--no-groups ", "--no-site ", "Example:\n  popgate peer set --tenant acme --group eng,ops laptop"}},
		{[]string{"help", "policy"}, []string{"Usage: popgate policy <subcommand>", "  show ", "  set "}},
		{[]string{"policy", "show", "--help"}, []string{"Usage: popgate policy show --tenant TENANT", "Example:\n  popgate policy show --tenant acme"}},
		{[]string{"help", "policy", "set"}, []string{"Usage: popgate policy set --tenant TENANT", "FILE:LINE:", "Example:\n  popgate policy set --tenant acme acme.policy", "  default deny\n"}},
		{[]string{"route", "--help"}, []string{"Usage: popgate route <subcommand>", "  list ", "  add ", "  remove ", "longest matching prefix wins"}},
		{[]string{"help", "route", "add"}, []string{"Usage: popgate route add --tenant TENANT [--via internet|site:NAME|exit:X1,exit:X2]", "(default:\n                   internet)", "Example:\n  popgate route add --tenant acme --via site:office 10.10.0.0/24"}},
		{[]string{"route", "remove", "-h"}, []string{"Usage: popgate route remove --tenant TENANT", "Example:\n  popgate route remove"}},
		{[]string{"route", "list", "--help"}, []string{"Usage: popgate route list --tenant TENANT", "--json"}},
		{[]string{"dns", "--help"}, []string{"Usage: popgate dns <subcommand>", "  zone add ", "  zone list ", "  zone remove ",
			"  upstream set ", "  upstream list ", "  upstream reset ", "  blocklist add ", "  blocklist list ", "  blocklist refresh ",
			"  blocklist remove ", "  log show ", "  log enable ", "  log disable "}},
		{[]string{"dns", "upstream", "--help"}, []string{"Usage: popgate dns upstream <subcommand>", "tls://NAME@ADDR[:PORT]", "  set ", "  list ", "  reset "}},
		{[]string{"help", "dns", "log"}, []string{"Usage: popgate dns log <subcommand>", "off unless the tenant turns it on", "  show ", "  enable ", "  disable "}},
		{[]string{"help", "dns", "upstream", "set"}, []string{"Usage: popgate dns upstream set --tenant TENANT", "Example:\n  popgate dns upstream set --tenant acme 9.9.9.9"}},
		{[]string{"dns", "log", "show", "--help"}, []string{"Usage: popgate dns log show --tenant TENANT", "--since DURATION"}},
		{[]string{"help", "event", "webhook", "set"}, []string{"Usage: popgate event webhook set"}},
		{[]string{"help", "dns", "zone", "add"}, []string{"Usage: popgate dns zone add --tenant TENANT --server ADDR[:PORT]", "--server ADDR[:PORT] ",
			"Example:\n  popgate dns zone add --tenant acme --server 10.10.0.53 corp.example.com"}},
		{[]string{"dns", "zone", "list", "--help"}, []string{"Usage: popgate dns zone list --tenant TENANT", "--json"}},
		{[]string{"dns", "blocklist", "--help"}, []string{"Usage: popgate dns blocklist <subcommand>", "hosts file", "  add ", "  list ", "  refresh ", "  remove "}},
		{[]string{"dns", "blocklist", "add", "--help"}, []string{"Usage: popgate dns blocklist add --tenant TENANT (--url URL [--every 24h] | --file PATH)",
			"--every DURATION ", "subdomain", "Example:\n  popgate dns blocklist add --tenant acme --url https://example.com/hosts.txt ads"}},
		{[]string{"status", "--help"}, []string{"Usage: popgate status", "Example:"}},
		{[]string{"version", "--help"}, []string{"Usage: popgate version"}},
		{[]string{"help", "serve"}, []string{
			"Usage: popgate serve", "--config FILE", "env POPGATE_CONFIG", "(default: 51820)",
			"(default: 127.0.0.1:8080)", "Example:\n  popgate serve",
		}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ta := newTestApp(t, nil)
			if code := ta.runArgs(tc.args...); code != exitOK {
				t.Errorf("exit status %d, stderr %q", code, ta.stderr)
			}
			for _, w := range tc.wants {
				if !strings.Contains(ta.stdout.String(), w) {
					t.Errorf("help does not contain %q:\n%s", w, ta.stdout)
				}
			}
			if ta.stderr.Len() != 0 {
				t.Errorf("stderr: %q", ta.stderr)
			}
		})
	}
}

// TestServeHelpNamesEverySetting: each serve flag shows its env variable and config key.
func TestServeHelpNamesEverySetting(t *testing.T) {
	ta := newTestApp(t, nil)
	ta.runArgs("serve", "--help")
	help := strings.Join(strings.Fields(ta.stdout.String()), " ") // long lines wrap
	for _, st := range serveSettingsTable {
		want := "env " + st.env() + ", config file key " + st.key()
		if !strings.Contains(help, "--"+st.name+" ") || !strings.Contains(help, want) {
			t.Errorf("serve --help lacks --%s or %q", st.name, want)
		}
	}
}

func TestVersion(t *testing.T) {
	ta := newTestApp(t, nil)
	if code := ta.runArgs("version"); code != exitOK {
		t.Fatalf("exit status %d", code)
	}
	want := regexp.MustCompile(`^popgate dev\S* \(` + regexp.QuoteMeta(runtime.Version()+", "+runtime.GOOS+"/"+runtime.GOARCH) + `\)\n$`)
	if !want.MatchString(ta.stdout.String()) {
		t.Errorf("version printed %q", ta.stdout)
	}
}
