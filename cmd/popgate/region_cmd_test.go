package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/popgate/popgate/webui"
)

// TestServeRegionCommands runs the region commands, and the region flags of peer and tenant,
// against a real serve: a config for fra carries fra's endpoint and key and differs from the
// home region's in nothing else; the home region's is what peer add printed; bad input is one
// line and a non-zero exit, with nothing stored.
func TestServeRegionCommands(t *testing.T) {
	dir := t.TempDir()
	stop := startServe(t, dir, 7)
	defer stop()
	cli := serveCLI{t, dir}
	must, refused := cli.must, cli.refused

	must("tenant", "add", "acme")
	home, _ := must("peer", "add", "--tenant", "acme", "laptop")
	_, note := must("region", "add", "fra", "--endpoint", "vpn-fra.example.com:51820")
	if !strings.Contains(note, "region fra added with endpoint vpn-fra.example.com:51820 and public key ") {
		t.Errorf("region add says %q", note)
	}
	out, _ := must("region", "list", "--json")
	var rs webui.APIRegions
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs.Regions) != 2 {
		t.Fatalf("region list --json: %v\n%s", err, out)
	}
	fra, local := rs.Regions[0], rs.Regions[1]
	if fra.Name != "fra" || fra.Home || local.Name != "local" || !local.Home || local.Endpoint != "127.0.0.1:51820" {
		t.Fatalf("regions %+v", rs.Regions)
	}
	table, _ := must("region", "list")
	if !strings.Contains(table, "fra ") || !strings.Contains(table, fra.PublicKey) || !strings.Contains(table, "node (this controller's region)") {
		t.Errorf("region list:\n%s", table)
	}

	// The home region's config is what peer add printed; fra's differs in the region,
	// the server key and the endpoint only.
	if again, _ := must("peer", "config", "--tenant", "acme", "laptop"); again != home {
		t.Errorf("peer config without --region:\n%s\npeer add printed:\n%s", again, home)
	}
	if again, _ := must("peer", "config", "--tenant", "acme", "--region", "local", "laptop"); again != home {
		t.Errorf("peer config --region local:\n%s", again)
	}
	fraConf, _ := must("peer", "config", "--tenant", "acme", "--region", "fra", "laptop")
	want := strings.Replace(home, "region local\n", "region fra\n", 1)
	want = strings.Replace(want, "PublicKey = "+local.PublicKey+"\n", "PublicKey = "+fra.PublicKey+"\n", 1)
	want = strings.Replace(want, "Endpoint = 127.0.0.1:51820\n", "Endpoint = vpn-fra.example.com:51820\n", 1)
	if fraConf != want || want == home {
		t.Errorf("peer config --region fra:\n%s\nwant:\n%s", fraConf, want)
	}

	// Bad input.
	refused(exitUsage, `region name "Fra" is invalid`, "region", "add", "Fra", "--endpoint", "a.example:1")
	refused(exitUsage, "region add: missing --endpoint HOST:PORT", "region", "add", "ams")
	refused(exitUsage, `region add: --endpoint: endpoint "ams.example" is not host:port`, "region", "add", "ams", "--endpoint", "ams.example")
	refused(exitUsage, "bad port", "region", "add", "ams", "--endpoint", "ams.example:70000")
	refused(exitRuntime, `region "fra" already exists`, "region", "add", "fra", "--endpoint", "a.example:1")
	refused(exitRuntime, `region "nope" not found`, "peer", "config", "--tenant", "acme", "--region", "nope", "laptop")
	refused(exitRuntime, `region "nope" not found`, "peer", "add", "--tenant", "acme", "--region", "nope", "phone")
	refused(exitRuntime, `region "nope" not found`, "tenant", "set", "--tenant", "acme", "--regions", "fra,nope")
	refused(exitRuntime, "controller's own", "region", "remove", "local")
	refused(exitRuntime, "--public-endpoint", "region", "set", "local", "--endpoint", "a.example:1")
	refused(exitUsage, "--regions: region name", "tenant", "set", "acme", "--regions", "fra,,ams")
	refused(exitUsage, "acme and --tenant globex name different things", "tenant", "set", "acme", "--tenant", "globex", "--regions", "all")
	if out, _ := must("peer", "list", "--tenant", "acme"); strings.Contains(out, "phone") {
		t.Error("a refused peer add stored the peer")
	}

	// A tenant limited to fra: the home region's config is refused, naming the fix.
	_, note = must("tenant", "set", "--tenant", "acme", "--regions", "fra")
	if !strings.Contains(note, "tenant acme may use regions fra only") {
		t.Errorf("tenant set --regions says %q", note)
	}
	if out, _ := must("tenant", "list"); !strings.Contains(out, "REGIONS") || !strings.Contains(out, " fra ") {
		t.Errorf("tenant list:\n%s", out)
	}
	refused(exitRuntime, "tenant acme is not allowed in region local (only in fra): pick one of those with --region, or allow it with 'popgate tenant set --tenant acme --regions fra,local'",
		"peer", "config", "--tenant", "acme", "laptop")
	refused(exitRuntime, "is the only region of tenant acme", "region", "remove", "fra")
	if table, _ := must("region", "list"); !strings.Contains(table, "acme") {
		t.Errorf("region list does not show acme limited to fra:\n%s", table)
	}
	phone, _ := must("peer", "add", "--tenant", "acme", "--region", "fra", "phone")
	if !strings.Contains(phone, "Endpoint = vpn-fra.example.com:51820\n") {
		t.Errorf("peer add --region fra:\n%s", phone)
	}

	must("region", "set", "fra", "--endpoint", "fra.example.com:443")
	if c, _ := must("peer", "config", "--tenant", "acme", "--region", "fra", "laptop"); !strings.Contains(c, "Endpoint = fra.example.com:443\n") {
		t.Errorf("after region set:\n%s", c)
	}
	must("tenant", "set", "acme", "--regions", "all")
	if again, _ := must("peer", "config", "--tenant", "acme", "laptop"); again != home {
		t.Errorf("the home config after --regions all:\n%s", again)
	}
	must("region", "remove", "fra")
	refused(exitRuntime, `region "fra" not found`, "region", "remove", "fra")
	out, _ = must("audit", "--action", "region")
	for _, a := range []string{"region.add", "region.update", "region.remove"} {
		if !strings.Contains(out, a) {
			t.Errorf("the audit log lacks %s:\n%s", a, out)
		}
	}
}
