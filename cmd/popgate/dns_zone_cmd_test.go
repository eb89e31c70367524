package main

import (
	"strings"
	"testing"
)

// TestDNSZoneCommands: the dns zone commands send what the API takes and print what it
// answers, the server's refusals as one line.
func TestDNSZoneCommands(t *testing.T) {
	const zonesJSON = `{"zones":[{"zone":".","servers":["[fd00:10::53]:53"]},{"zone":"corp.example.com","servers":["10.10.0.53:53","10.10.0.54:5353"]}]}`
	for _, tc := range []daemonCase{
		{
			name:    "add",
			args:    []string{"dns", "zone", "add", "--tenant", "acme", "--server", "10.10.0.53", "--server", "10.10.0.54:5353", "Corp.Example.com."},
			answers: map[string]answer{"POST /api/v1/tenants/acme/dns/zones": {201, `{"zone":"corp.example.com","servers":["10.10.0.53:53","10.10.0.54:5353"]}`, nil}},
			want:    []request{{"POST", "/api/v1/tenants/acme/dns/zones", "", appJSON, `{"zone":"corp.example.com","servers":["10.10.0.53","10.10.0.54:5353"]}`}},
			stderr:  "zone corp.example.com of tenant acme added: its names go to 10.10.0.53:53, then 10.10.0.54:5353; every PoP asks within seconds\n",
		},
		{
			name: "add refused",
			args: []string{"dns", "zone", "add", "--tenant", "acme", "--server", "10.9.0.53", "corp.example.com"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/dns/zones": {400,
				`{"error":"10.9.0.53 is in none of acme's routes: add a route for it first ('popgate route add --tenant acme --via site:NAME PREFIX')"}`, nil}},
			want:   []request{{"POST", "/api/v1/tenants/acme/dns/zones", "", appJSON, `{"zone":"corp.example.com","servers":["10.9.0.53"]}`}},
			code:   exitRuntime,
			stderr: "popgate: 10.9.0.53 is in none of acme's routes: add a route for it first ('popgate route add --tenant acme --via site:NAME PREFIX')\n",
		},
		{
			name:    "list",
			args:    []string{"dns", "zone", "list", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/dns/zones": {200, zonesJSON, nil}},
			want:    []request{{"GET", "/api/v1/tenants/acme/dns/zones", "", "", ""}},
			stdout: "ZONE              SERVERS\n" +
				".                 [fd00:10::53]:53\n" +
				"corp.example.com  10.10.0.53:53, 10.10.0.54:5353\n",
		},
		{
			name:    "list --json",
			args:    []string{"dns", "zone", "list", "--tenant", "acme", "--json"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/dns/zones": {200, zonesJSON, nil}},
			want:    []request{{"GET", "/api/v1/tenants/acme/dns/zones", "", "", ""}},
			stdout:  indentJSON(t, zonesJSON),
		},
		{
			name:    "list empty",
			args:    []string{"dns", "zone", "list", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/dns/zones": {200, `{"zones":[]}`, nil}},
			want:    []request{{"GET", "/api/v1/tenants/acme/dns/zones", "", "", ""}},
			stderr:  "tenant acme has no split zones: its names not its own go to the node's upstream resolvers; add one with 'popgate dns zone add --tenant acme --server ADDR ZONE'\n",
		},
		{
			name:    "remove the root zone",
			args:    []string{"dns", "zone", "remove", "--tenant", "acme", "."},
			answers: map[string]answer{"DELETE /api/v1/tenants/acme/dns/zones": {204, "", nil}},
			want:    []request{{"DELETE", "/api/v1/tenants/acme/dns/zones", "zone=.", "", ""}},
			stderr:  "zone . removed from tenant acme\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t) })
	}
}

func TestDNSZoneUsageErrors(t *testing.T) {
	dir := t.TempDir() // no daemon: none of these may get as far as the socket
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dns", "zone", "add", "--tenant", "acme", "corp.example.com"}, "dns zone add: 0 servers: give 1 to 4 with --server, e.g. --server 10.10.0.53"},
		{[]string{"dns", "zone", "add", "--tenant", "acme", "--server", "a,b,c,d,e", "corp.example.com"}, "dns zone add: 5 servers: give 1 to 4"},
		{[]string{"dns", "zone", "add", "--tenant", "acme", "--server", "dns.corp.example", "corp.example.com"}, `--server: DNS server "dns.corp.example": give an IP address with an optional port`},
		{[]string{"dns", "zone", "add", "--server", "10.10.0.53", "corp.example.com"}, "dns zone add: missing --tenant"},
		{[]string{"dns", "zone", "add", "--tenant", "acme", "--server", "10.10.0.53", "corp example"}, `DNS zone "corp example" has " " in label`},
		{[]string{"dns", "zone", "add", "--tenant", "acme", "--server", "10.10.0.53"}, "dns zone add: missing ZONE"},
		{[]string{"dns", "zone", "remove", "--tenant", "Acme", "corp.example.com"}, `tenant name "Acme" is invalid`},
		{[]string{"dns", "zone"}, "dns zone: missing subcommand: use add, list or remove"},
		{[]string{"dns", "zone", "drop"}, `dns zone: unknown subcommand "drop": use add, list or remove`},
		{[]string{"dns", "zonk"}, `dns: unknown subcommand "zonk": use zone, upstream, blocklist or log (see 'popgate dns --help')`},
		{[]string{"dns"}, `dns: missing subcommand: use zone, upstream, blocklist or log (see 'popgate dns --help')`},
		{[]string{"dns", "upstream"}, `dns upstream: missing subcommand: use set, list or reset (see 'popgate dns upstream --help')`},
		{[]string{"dns", "log", "purge"}, `dns log: unknown subcommand "purge": use show, enable or disable`},
		{[]string{"help", "dns", "zone", "add", "now"}, "help: too many arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ta := newTestApp(t, map[string]string{envDataDir: dir})
			if code := ta.runArgs(tc.args...); code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			checkOneErrorLine(t, ta.stderr.String(), tc.want)
			if ta.stdout.Len() != 0 {
				t.Errorf("stdout is not empty: %q", ta.stdout)
			}
		})
	}
}
