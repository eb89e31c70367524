package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/popgate/popgate/webui"
)

// TestServeDNSUpstreamCommands runs the dns upstream commands against a real serve: set,
// list (table and JSON), reset; bad input is one line and a non-zero exit, with nothing
// changed.
func TestServeDNSUpstreamCommands(t *testing.T) {
	dir := t.TempDir()
	stop := startServe(t, dir, 12)
	defer stop()
	cli := serveCLI{t, dir}
	must, refused := cli.must, cli.refused

	must("tenant", "add", "acme")
	must("tenant", "add", "globex")
	if _, note := must("dns", "upstream", "list", "--tenant", "acme"); !strings.Contains(note, "tenant acme uses the node's upstreams") {
		t.Errorf("list of a tenant without upstreams says %q", note)
	}
	_, note := must("dns", "upstream", "set", "--tenant", "acme", "tls://dns.quad9.net@9.9.9.9", "[2620:fe::fe]:53", "149.112.112.112")
	if want := "tenant acme's DNS queries go to tls://dns.quad9.net@9.9.9.9:853, [2620:fe::fe]:53, 149.112.112.112:53 (in that order)"; !strings.Contains(note, want) {
		t.Errorf("set says %q, want %q", note, want)
	}
	list, _ := must("dns", "upstream", "list", "--tenant", "acme")
	for _, want := range []string{"1  ", "tls://dns.quad9.net@9.9.9.9:853", "DNS over TLS", "[2620:fe::fe]:53", "3  ", "149.112.112.112:53", "DNS over UDP"} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}
	out, _ := must("dns", "upstream", "list", "--tenant", "acme", "--json")
	var got webui.APIDNSUpstreams
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.NodeDefault || len(got.Upstreams) != 3 || got.Tenant != "acme" {
		t.Errorf("list --json: %+v, %v", got, err)
	}
	if _, note := must("dns", "upstream", "list", "--tenant", "globex"); !strings.Contains(note, "uses the node's upstreams") {
		t.Errorf("globex's list says %q: acme's upstreams are not its", note)
	}

	// Bad input: nothing changes.
	refused(exitUsage, "missing --tenant", "dns", "upstream", "set", "9.9.9.9")
	refused(exitUsage, "missing UPSTREAM", "dns", "upstream", "set", "--tenant", "acme")
	refused(exitUsage, "10.0.0.53 is not a public address", "dns", "upstream", "set", "--tenant", "acme", "10.0.0.53")
	refused(exitUsage, "127.0.0.1 is not a public address", "dns", "upstream", "set", "--tenant", "acme", "tls://dns.example.com@127.0.0.1")
	refused(exitUsage, `"dns.google" is not an IP address`, "dns", "upstream", "set", "--tenant", "acme", "dns.google")
	refused(exitUsage, "needs the server's address too", "dns", "upstream", "set", "--tenant", "acme", "tls://dns.quad9.net")
	refused(exitUsage, "needs the server's name", "dns", "upstream", "set", "--tenant", "acme", "tls://9.9.9.9")
	refused(exitUsage, "at most 4", "dns", "upstream", "set", "--tenant", "acme", "1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4", "9.9.9.9")
	refused(exitUsage, "given twice", "dns", "upstream", "set", "--tenant", "acme", "9.9.9.9", "9.9.9.9:53")
	refused(exitUsage, "unknown subcommand", "dns", "upstream", "add", "--tenant", "acme", "9.9.9.9")
	refused(exitRuntime, `tenant "initech" not found`, "dns", "upstream", "set", "--tenant", "initech", "9.9.9.9")
	if again, _ := must("dns", "upstream", "list", "--tenant", "acme"); again != list {
		t.Errorf("refused changes changed the list:\n%s\nwas\n%s", again, list)
	}

	if _, note := must("dns", "upstream", "reset", "--tenant", "acme"); !strings.Contains(note, "go to the node's upstreams again") {
		t.Errorf("reset says %q", note)
	}
	if _, note := must("dns", "upstream", "list", "--tenant", "acme"); !strings.Contains(note, "uses the node's upstreams") {
		t.Errorf("after reset, list says %q", note)
	}
}

// TestServeDNSLogCommands runs the dns log commands against a real serve: off at first; on
// with a keep time; off again; bad input is one line and a non-zero exit. (The queries
// themselves are cmd/popgate's e2e: TestE2EDNSQueryLog.)
func TestServeDNSLogCommands(t *testing.T) {
	dir := t.TempDir()
	stop := startServe(t, dir, 13)
	defer stop()
	cli := serveCLI{t, dir}
	must, refused := cli.must, cli.refused

	must("tenant", "add", "acme")
	if out, note := must("dns", "log", "show", "--tenant", "acme"); out != "" || !strings.Contains(note, "the DNS query log of tenant acme is off") {
		t.Errorf("show of a log that is off: %q, %q", out, note)
	}
	if _, note := must("dns", "log", "enable", "--tenant", "acme"); !strings.Contains(note, "is on, entries kept 1d") {
		t.Errorf("enable says %q", note)
	}
	if _, note := must("dns", "log", "enable", "--tenant", "acme", "--keep", "36h"); !strings.Contains(note, "entries kept 36h") {
		t.Errorf("enable --keep 36h says %q", note)
	}
	if _, note := must("dns", "log", "show", "--tenant", "acme", "--since", "1h", "--peer", "laptop"); !strings.Contains(note, "no such queries in the log of tenant acme") || !strings.Contains(note, "entries kept 36h") {
		t.Errorf("show of an empty log says %q", note)
	}
	out, _ := must("dns", "log", "show", "--tenant", "acme", "--json")
	var log webui.APIDNSLog
	if err := json.Unmarshal([]byte(out), &log); err != nil || !log.Enabled || log.KeepSeconds != 36*3600 || log.Entries == nil {
		t.Errorf("show --json: %+v, %v", log, err)
	}

	refused(exitUsage, "missing --tenant", "dns", "log", "enable")
	refused(exitUsage, `--keep "30m"`, "dns", "log", "enable", "--tenant", "acme", "--keep", "30m")
	refused(exitUsage, `--keep "8d"`, "dns", "log", "enable", "--tenant", "acme", "--keep", "8d")
	refused(exitUsage, `--since "soon"`, "dns", "log", "show", "--tenant", "acme", "--since", "soon")
	refused(exitUsage, "--limit", "dns", "log", "show", "--tenant", "acme", "--limit", "20000")
	refused(exitUsage, "peer name", "dns", "log", "show", "--tenant", "acme", "--peer", "no body")
	refused(exitUsage, "unknown subcommand", "dns", "log", "purge", "--tenant", "acme")
	refused(exitRuntime, `tenant "initech" not found`, "dns", "log", "enable", "--tenant", "initech")

	if _, note := must("dns", "log", "disable", "--tenant", "acme"); !strings.Contains(note, "is off; 0 entries deleted") {
		t.Errorf("disable says %q", note)
	}
	if _, note := must("dns", "log", "show", "--tenant", "acme"); !strings.Contains(note, "is off") {
		t.Errorf("show after disable says %q", note)
	}
}
