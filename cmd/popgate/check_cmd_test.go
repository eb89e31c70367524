package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/checks/checkstest"
	"github.com/popgate/popgate/webui"
)

// TestServeCheckCommands runs the check commands against a real serve whose node resolves
// through a DNS server of the test's: a DNS check added with the CLI runs on the appliance,
// and 'check show' says what it found; bad input is one line and a non-zero exit, with
// nothing stored.
func TestServeCheckCommands(t *testing.T) {
	dns := checkstest.StartDNS(t, map[string][]netip.Addr{"www.example.com": {netip.MustParseAddr("192.0.2.10")}}, checkstest.Options{})
	dir := t.TempDir()
	stop := startServe(t, dir, 11, "--dns-upstream", dns.Addr().String())
	defer stop()
	cli := serveCLI{t, dir}
	must, refused := cli.must, cli.refused

	must("tenant", "add", "acme")
	_, note := must("check", "add", "resolver", "--kind", "dns", "--target", "www.example.com", "--expect", "192.0.2.10", "--every", "10s")
	if !strings.Contains(note, "check resolver added: dns www.example.com every 10s, on controller") {
		t.Errorf("check add says %q", note)
	}
	must("check", "add", "site", "--tenant", "acme", "--kind", "http", "--target", "https://www.acme.example/", "--from", "node:controller")

	// The appliance runs it within seconds, and its controller reads the result.
	start := time.Now()
	var c webui.APICheck
	for {
		out, _ := must("check", "show", "resolver", "--json")
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatal(err)
		}
		if len(c.Latest) > 0 {
			break
		}
		if time.Since(start) > 40*time.Second {
			t.Fatalf("no result after 40 s: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the first result of a new check was shown %s after it was added", time.Since(start).Round(100*time.Millisecond))
	if l := c.Latest[0]; l.Node != "controller" || l.OK < 1 || l.Failed != 0 || l.Detail != "192.0.2.10 via "+dns.Addr().String() || l.LatencyMicros <= 0 {
		t.Errorf("the latest minute: %+v", l)
	}
	show, _ := must("check", "show", "resolver")
	for _, want := range []string{"resolver (the operator's)", "dns www.example.com, expecting 192.0.2.10, every 10s", "runs on\tcontroller (from all)",
		"24 h 100.00% (", "controller", "192.0.2.10 via "} {
		if !strings.Contains(strings.ReplaceAll(show, "  ", "\t"), want) && !strings.Contains(show, want) {
			t.Errorf("check show lacks %q:\n%s", want, show)
		}
	}
	list, _ := must("check", "list")
	for _, want := range []string{"region:local", "resolver", "100.00%", "site", "acme"} {
		if !strings.Contains(list, want) {
			t.Errorf("check list lacks %q:\n%s", want, list)
		}
	}
	if acme, _ := must("check", "list", "--tenant", "acme"); strings.Contains(acme, "resolver") || !strings.Contains(acme, "site") {
		t.Errorf("check list --tenant acme:\n%s", acme)
	}
	if show, _ := must("check", "show", "--tenant", "acme", "site"); !strings.Contains(show, "site (tenant acme's)") {
		t.Errorf("check show --tenant acme site:\n%s", show)
	}

	// Bad input.
	refused(exitUsage, "missing --kind or --target", "check", "add", "x", "--kind", "dns")
	refused(exitUsage, `check kind "ping" is unknown`, "check", "add", "x", "--kind", "ping", "--target", "a.example")
	refused(exitUsage, `--every "5s"`, "check", "add", "x", "--kind", "dns", "--target", "a.example", "--every", "5s")
	refused(exitUsage, `check name "X" is invalid`, "check", "add", "X", "--kind", "dns", "--target", "a.example")
	refused(exitUsage, "from term", "check", "add", "x", "--kind", "dns", "--target", "a.example", "--from", "pop:p1")
	refused(exitUsage, "not a public address", "check", "add", "x", "--tenant", "acme", "--kind", "http", "--target", "http://127.0.0.1:8080/")
	refused(exitRuntime, "there is no node p9", "check", "add", "x", "--kind", "dns", "--target", "a.example", "--from", "node:p9")
	refused(exitRuntime, "exists already", "check", "add", "resolver", "--kind", "dns", "--target", "a.example")
	refused(exitRuntime, `tenant "nope" not found`, "check", "add", "x", "--tenant", "nope", "--kind", "dns", "--target", "a.example")
	refused(exitRuntime, "goes when the region is removed", "check", "remove", "region:local")
	refused(exitRuntime, "not found", "check", "show", "nope")

	_, note = must("check", "remove", "resolver")
	if !strings.Contains(note, "check resolver removed") {
		t.Errorf("check remove says %q", note)
	}
	if list, _ := must("check", "list"); strings.Contains(list, "resolver") {
		t.Errorf("a removed check is still listed:\n%s", list)
	}
	must("check", "remove", "--tenant", "acme", "site")
	if help, _ := must("check", "--help"); !strings.Contains(help, "add") || !strings.Contains(help, "region:NAME") {
		t.Errorf("check --help:\n%s", help)
	}
}
