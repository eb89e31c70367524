package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/cmd/internal/testbed"
	"github.com/popgate/popgate/webui"
)

// TestE2EDNSQueryLog: a tenant turns its DNS query log on; a stock client resolves names
// through the tunnel with dig, at the node's overlay address (its config's DNS line); the
// queries show in 'popgate dns log show' with the peer's name, what the resolver did and the
// answer's rcode, a name on the tenant's blocklist as blocked. Turned off, the log is empty.
func TestE2EDNSQueryLog(t *testing.T) {
	bin := e2eRequireBinary(t)
	testbed.RequireRoot(t)
	testbed.RequireTools(t, "ip", "wg", "wg-quick", "wireguard-go", "dig")
	topo := testbed.NewTopology(t)
	n := &e2eNode{t: t, bin: bin, topo: topo, dataDir: t.TempDir(), ifname: topo.Name("du"), port: 47201, mode: "userspace"}
	t.Cleanup(func() { _ = os.Remove(filepath.Join(testbed.UAPIDir, n.ifname+".sock")) })
	upstream := testbed.StartDNS(t, topo.Net)
	n.dns = upstream.Addr(topo.NetAddr4).String()
	if err := n.start(); err != nil {
		t.Fatalf("e2e: popgate serve did not start: %v", err)
	}
	n.mustCLI(t, "tenant", "add", "acme")
	conf := n.mustCLI(t, "peer", "add", "--tenant", "acme", "laptop")
	cfg := e2eCheckConfig(t, conf, n.endpoint())
	testbed.StartClient(t, topo.Cli, topo.Name("duc"), conf)
	var laptop4 string
	for _, a := range cfg.Interface.Addresses {
		if a.Addr().Is4() {
			laptop4 = a.Addr().String()
		}
	}
	server := cfg.Interface.DNS[0]

	n.mustCLI(t, "dns", "log", "enable", "--tenant", "acme")
	dig := func(ctx context.Context, name, qtype string) (string, error) {
		out, err := topo.Cli.Run(ctx, "dig", "+time=2", "+tries=1", "+noall", "+comments", "+answer", "@"+server, name, qtype)
		return out, err
	}
	logged := func(ctx context.Context) (webui.APIDNSLog, error) {
		var log webui.APIDNSLog
		out, stderr, err := n.cli(ctx, "dns", "log", "show", "--tenant", "acme", "--json", "--limit", "100")
		if err != nil {
			return log, fmt.Errorf("%v: %s", err, stderr)
		}
		return log, json.Unmarshal([]byte(out), &log)
	}
	find := func(log webui.APIDNSLog, name, qtype string) *webui.APIDNSLogEntry {
		for i, e := range log.Entries {
			if e.Name == name && e.Type == qtype {
				return &log.Entries[i]
			}
		}
		return nil
	}
	start := time.Now()
	testbed.Poll(t, 60*time.Second, "dig's query of www.example.com in the query log", func(ctx context.Context) error {
		out, err := dig(ctx, "www.example.com", "A")
		if err != nil || !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, testbed.DNSAnswer.String()) {
			return fmt.Errorf("dig: %v: %s", err, out)
		}
		log, err := logged(ctx)
		if err != nil {
			return err
		}
		if find(log, "www.example.com", "A") == nil {
			return fmt.Errorf("not in the log yet: %+v", log.Entries)
		}
		return nil
	})
	t.Logf("a query showed in the log %s after the log was turned on", time.Since(start).Round(100*time.Millisecond))

	// A name of the tenant's own that does not exist: answered by the node, NXDOMAIN.
	if out, err := dig(context.Background(), "nobody.acme.internal", "AAAA"); err != nil || !strings.Contains(out, "status: NXDOMAIN") {
		t.Fatalf("dig nobody.acme.internal: %v: %s", err, out)
	}
	var log webui.APIDNSLog
	testbed.Poll(t, 30*time.Second, "nobody.acme.internal in the query log", func(ctx context.Context) error {
		var err error
		if log, err = logged(ctx); err != nil {
			return err
		}
		if find(log, "nobody.acme.internal", "AAAA") == nil {
			return fmt.Errorf("not in the log yet: %+v", log.Entries)
		}
		return nil
	})
	first := find(log, "www.example.com", "A")
	for _, e := range log.Entries {
		if e.Name == "www.example.com" && e.Outcome == "forwarded" {
			first = &e
		}
	}
	if e := first; e.Peer != "laptop" || e.Client != laptop4 || e.Outcome != "forwarded" || e.Rcode != "NOERROR" || e.Node == "" {
		t.Errorf("www.example.com's first query in the log: %+v; want peer laptop at %s, forwarded, NOERROR", *e, laptop4)
	}
	if e := find(log, "nobody.acme.internal", "AAAA"); e.Peer != "laptop" || e.Outcome != "local" || e.Rcode != "NXDOMAIN" {
		t.Errorf("nobody.acme.internal in the log: %+v; want local, NXDOMAIN", *e)
	}
	table := n.mustCLI(t, "dns", "log", "show", "--tenant", "acme", "--since", "1h", "--peer", "laptop")
	for _, want := range []string{"TIME", "laptop", "www.example.com", "forwarded", "NOERROR", "nobody.acme.internal", "local", "NXDOMAIN"} {
		if !strings.Contains(table, want) {
			t.Errorf("dns log show lacks %q:\n%s", want, table)
		}
	}

	// A blocklist uploaded from a file: its names are NXDOMAIN, logged as blocked, and never
	// asked of the upstream.
	listFile := filepath.Join(t.TempDir(), "blocked.txt")
	if err := os.WriteFile(listFile, []byte("# ours\nads.example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.mustCLI(t, "dns", "blocklist", "add", "--tenant", "acme", "--file", listFile, "mine")
	testbed.Poll(t, 30*time.Second, "www.ads.example.com to be NXDOMAIN", func(ctx context.Context) error {
		if out, err := dig(ctx, "www.ads.example.com", "A"); err != nil || !strings.Contains(out, "status: NXDOMAIN") {
			return fmt.Errorf("dig: %v: %s", err, out)
		}
		return nil
	})
	asked := upstream.Queries()
	if out, err := dig(context.Background(), "cdn.ads.example.com", "AAAA"); err != nil || !strings.Contains(out, "status: NXDOMAIN") {
		t.Fatalf("dig cdn.ads.example.com: %v: %s", err, out)
	}
	if q := upstream.Queries(); q != asked {
		t.Errorf("the upstream was asked %d more times for a blocked name", q-asked)
	}
	testbed.Poll(t, 30*time.Second, "cdn.ads.example.com in the query log", func(ctx context.Context) error {
		var err error
		if log, err = logged(ctx); err != nil {
			return err
		}
		if find(log, "cdn.ads.example.com", "AAAA") == nil {
			return fmt.Errorf("not in the log yet: %+v", log.Entries)
		}
		return nil
	})
	if e := find(log, "cdn.ads.example.com", "AAAA"); e.Peer != "laptop" || e.Outcome != "blocked" || e.Rcode != "NXDOMAIN" {
		t.Errorf("cdn.ads.example.com in the log: %+v; want blocked, NXDOMAIN", *e)
	}
	if table := n.mustCLI(t, "dns", "log", "show", "--tenant", "acme", "--since", "1h"); !strings.Contains(table, "cdn.ads.example.com") || !strings.Contains(table, "blocked") {
		t.Errorf("dns log show lacks the blocked query:\n%s", table)
	}

	// Off: the entries go, and the next queries are not logged.
	n.mustCLI(t, "dns", "log", "disable", "--tenant", "acme")
	if out, err := dig(context.Background(), "after.example.com", "A"); err != nil || !strings.Contains(out, "status: NOERROR") {
		t.Fatalf("dig after.example.com: %v: %s", err, out)
	}
	time.Sleep(3 * time.Second) // longer than the controller takes to read its node's log
	if log, err := logged(context.Background()); err != nil || log.Enabled || len(log.Entries) != 0 {
		t.Errorf("the log after it was turned off: %+v, %v; want off and empty", log, err)
	}
}
