package main

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/popgate/popgate/gateway"
)

// fullFile sets every setting.
const fullFile = `# popgate config
data_dir = "/var/lib/popgate"
listen_port = 51000
public_endpoint = "vpn.example.com:51000"
web_addr = "0.0.0.0:8000"
metrics_addr = "[::1]:9586"
public_url = "https://vpn.example.com/"
interface = "wgfile"
mtu = 1400
exit_mode = "userspace"
region = "fra"
node_name = "fra-1"
dns_upstream = ["9.9.9.9", "[2620:fe::fe]:5353"]
log_level = "debug"
log_format = "json"
backbone_port = 51900
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServeConfigPrecedence(t *testing.T) {
	file := writeFile(t, "popgate.toml", fullFile)
	partial := writeFile(t, "partial.toml", "region = \"iad\"\nmtu = 1380\n")

	defaults := ServeConfig{
		DataDir: "popgate-data",
		Gateway: gateway.Config{
			Interface: "popgate0", ListenPort: 51820, MTU: 1420,
			ExitMode: "auto", Region: "local", NodeName: "testhost", Version: "dev", BackbonePort: 51821,
		},
		WebAddr: "127.0.0.1:8080", LogLevel: slog.LevelInfo, LogFormat: "text",
		Roles:       []string{"controller", "pop", "exit"},
		MetricsAddr: "127.0.0.1:9586",
	}
	fromFile := ServeConfig{
		Roles: []string{"controller", "pop", "exit"}, NodeNameSet: true,
		DataDir:        "/var/lib/popgate",
		PublicEndpoint: "vpn.example.com:51000",
		Gateway: gateway.Config{
			Interface: "wgfile", ListenPort: 51000,
			MTU: 1400, ExitMode: "userspace", Region: "fra",
			NodeName: "fra-1", Version: "dev", BackbonePort: 51900,
			DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("9.9.9.9:53"), netip.MustParseAddrPort("[2620:fe::fe]:5353")},
		},
		WebAddr: "0.0.0.0:8000", PublicURL: "https://vpn.example.com", LogLevel: slog.LevelDebug, LogFormat: "json", ConfigFile: file,
		MetricsAddr: "[::1]:9586",
	}
	// with applies changes to a copy of base.
	with := func(base ServeConfig, change func(*ServeConfig)) ServeConfig {
		base.Gateway.DNSUpstreams = append([]netip.AddrPort(nil), base.Gateway.DNSUpstreams...)
		change(&base)
		return base
	}
	env := map[string]string{
		"POPGATE_LISTEN_PORT":   "52000",
		"POPGATE_REGION":        "ams",
		"POPGATE_DNS_UPSTREAM":  "1.1.1.1, 1.0.0.1:5300",
		"POPGATE_LOG_LEVEL":     "WARN",
		"POPGATE_PUBLIC_URL":    "https://env.example.com:8443/vpn",
		"POPGATE_METRICS_ADDR":  "off", // an empty variable is no setting
		"POPGATE_BACKBONE_PORT": "51901",
	}
	fromFileAndEnv := with(fromFile, func(sc *ServeConfig) {
		sc.Gateway.ListenPort = 52000
		sc.Gateway.Region = "ams"
		sc.Gateway.DNSUpstreams = []netip.AddrPort{netip.MustParseAddrPort("1.1.1.1:53"), netip.MustParseAddrPort("1.0.0.1:5300")}
		sc.LogLevel = slog.LevelWarn
		sc.PublicURL = "https://env.example.com:8443/vpn"
		sc.MetricsAddr = ""
		sc.Gateway.BackbonePort = 51901
	})

	for _, tc := range []struct {
		name          string
		defaultConfig string // the file that is read when it exists and none is named
		env           map[string]string
		args          []string
		want          ServeConfig
	}{
		{"defaults", "", nil, nil, defaults},
		{"default file missing", filepath.Join(t.TempDir(), "absent.toml"), nil, nil, defaults},
		{"default file", file, nil, nil, fromFile},
		{"file named by POPGATE_CONFIG", "", map[string]string{"POPGATE_CONFIG": file}, nil, fromFile},
		{"file named by --config", "", nil, []string{"--config", file}, fromFile},
		{"--config over POPGATE_CONFIG", "", map[string]string{"POPGATE_CONFIG": "/nonexistent.toml"}, []string{"--config=" + file}, fromFile},
		{"--config empty skips the default file", file, nil, []string{"--config", ""}, defaults},
		{"partial file over defaults", partial, nil, nil, with(defaults, func(sc *ServeConfig) {
			sc.Gateway.Region, sc.Gateway.MTU, sc.ConfigFile = "iad", 1380, partial
		})},
		{"env over file", file, env, nil, fromFileAndEnv},
		{"env without file", "", map[string]string{"POPGATE_DATA_DIR": "/srv/pg", "POPGATE_EXIT_MODE": "kernel"}, nil,
			with(defaults, func(sc *ServeConfig) { sc.DataDir, sc.Gateway.ExitMode = "/srv/pg", "kernel" })},
		{"flags over env over file", file, env, []string{
			"--listen-port", "53000", "--dns-upstream=8.8.8.8", "--log-format", "text", "--node-name", "n1",
			"--data-dir", "./d", "--web-addr", "[::1]:0", "--interface", "pg1", "--mtu", "1300",
			"--exit-mode", "kernel", "--public-endpoint", "203.0.113.7:53000", "--public-url", "http://[::1]:8080",
			"--metrics-addr", "127.0.0.1:0", "--metrics-peers", "100",
			"--backbone-port", "51902",
		}, with(fromFileAndEnv, func(sc *ServeConfig) {
			sc.Gateway.BackbonePort = 51902
			sc.Gateway.ListenPort = 53000
			sc.Gateway.DNSUpstreams = []netip.AddrPort{netip.MustParseAddrPort("8.8.8.8:53")}
			sc.LogFormat = "text"
			sc.Gateway.NodeName = "n1"
			sc.NodeNameSet = true
			sc.DataDir = "./d"
			sc.WebAddr = "[::1]:0"
			sc.Gateway.Interface = "pg1"
			sc.Gateway.MTU = 1300
			sc.Gateway.ExitMode = "kernel"
			sc.PublicEndpoint = "203.0.113.7:53000"
			sc.PublicURL = "http://[::1]:8080"
			sc.MetricsAddr, sc.MetricsPeers = "127.0.0.1:0", 100
		})},
		{"--metrics-addr empty turns the metrics off", "", nil, []string{"--metrics-addr", ""},
			with(defaults, func(sc *ServeConfig) { sc.MetricsAddr = "" })},
		{"flag equal to the default still overrides", file, env, []string{"--region", "local", "--log-level", "info"},
			with(fromFileAndEnv, func(sc *ServeConfig) { sc.Gateway.Region, sc.LogLevel = "local", slog.LevelInfo })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta := newTestApp(t, tc.env)
			ta.defaultConfig = tc.defaultConfig
			got, err := ta.loadServeConfig(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			// The wants name the settings; Validate adds the defaults gateway.Config keeps to
			// itself, as loadServeConfig's does.
			want := tc.want
			if err := want.Gateway.Validate(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestServeConfigErrors(t *testing.T) {
	unknownKey := writeFile(t, "unknown.toml", "# popgate\ndata_dir = \"/x\"\nlisten_prot = 51820\n")
	table := writeFile(t, "table.toml", "region = \"fra\"\n\n[web]\naddr = \"x\"\n")
	corrupt := writeFile(t, "corrupt.toml", "data_dir = \"/x\"\nlisten_port = \n")
	duplicate := writeFile(t, "dup.toml", "mtu = 1400\nmtu = 1300\n")
	wrongType := writeFile(t, "type.toml", "\nlisten_port = \"51820\"\n")
	wrongList := writeFile(t, "list.toml", "dns_upstream = \"9.9.9.9\"\n")
	badEndpoint := writeFile(t, "endpoint.toml", "public_endpoint = \"vpn.example.com\"\n")
	badPublicURL := writeFile(t, "url.toml", "\npublic_url = \"https://vpn.example.com/?x=1\"\n")
	missing := filepath.Join(t.TempDir(), "missing.toml")

	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		wants []string
	}{
		{"unknown key", nil, []string{"--config", unknownKey},
			[]string{"popgate: config " + unknownKey + `: line 3: unknown key "listen_prot": see 'popgate serve --help' for the settings`}},
		{"unknown table", nil, []string{"--config", table}, []string{"config " + table + `: line 3: unknown key "web"`}},
		{"corrupt file", nil, []string{"--config", corrupt},
			[]string{"config " + corrupt + ": line 2, column 15: not valid TOML: expected value"}},
		{"duplicate key", nil, []string{"--config", duplicate}, []string{"config " + duplicate + ": line 2", "not valid TOML", "mtu"}},
		{"wrong type", nil, []string{"--config", wrongType},
			[]string{"config " + wrongType + ": line 2: listen_port must be a whole number, not a string"}},
		{"string for a list", nil, []string{"--config", wrongList}, []string{"line 1: dns_upstream must be an array of strings"}},
		{"missing --config file", nil, []string{"--config", missing}, []string{"config file " + missing + " (named by --config) does not exist"}},
		{"missing POPGATE_CONFIG file", map[string]string{"POPGATE_CONFIG": missing}, nil, []string{"named by POPGATE_CONFIG"}},
		{"port 70000", nil, []string{"--listen-port", "70000"}, []string{"listen port 70000 is out of range: use 1-65535 (set by --listen-port)"}},
		{"port 70000 in env", map[string]string{"POPGATE_LISTEN_PORT": "70000"}, nil, []string{"(set by POPGATE_LISTEN_PORT)"}},
		{"backbone port 0", nil, []string{"--backbone-port", "-1"}, []string{"backbone port -1 is out of range", "(set by --backbone-port)"}},
		{"port not a number in env", map[string]string{"POPGATE_LISTEN_PORT": "51820/udp"}, nil,
			[]string{`environment variable POPGATE_LISTEN_PORT="51820/udp": not a whole number`}},
		{"port not a number in flag", nil, []string{"--listen-port", "x"}, []string{`invalid value "x" for flag --listen-port: not a whole number`}},
		{"exit mode fast", map[string]string{"POPGATE_EXIT_MODE": "fast"}, nil,
			[]string{`exit mode "fast" is unknown: use auto, userspace or kernel (set by POPGATE_EXIT_MODE)`}},
		{"endpoint without port", nil, []string{"--public-endpoint", "vpn.example.com"},
			[]string{`public endpoint "vpn.example.com" is not host:port`, "(set by --public-endpoint)"}},
		{"endpoint without port in file", nil, []string{"--config", badEndpoint}, []string{"(set by public_endpoint in " + badEndpoint + ")"}},
		{"public URL without scheme", nil, []string{"--public-url", "vpn.example.com"},
			[]string{`public URL "vpn.example.com" does not start with http:// or https://: use the address people open popgate at, e.g. https://vpn.example.com (set by --public-url)`}},
		{"public URL with fragment in env", map[string]string{"POPGATE_PUBLIC_URL": "https://vpn.example.com/#dl"}, nil,
			[]string{`public URL "https://vpn.example.com/#dl" has a fragment`, "(set by POPGATE_PUBLIC_URL)"}},
		{"public URL with query in file", nil, []string{"--config", badPublicURL},
			[]string{`public URL "https://vpn.example.com/?x=1" has a query`, "(set by public_url in " + badPublicURL + ")"}},
		{"bad log level", nil, []string{"--log-level", "loud"}, []string{`log level "loud" is unknown: use debug, info, warn or error (set by --log-level)`}},
		{"bad log format", map[string]string{"POPGATE_LOG_FORMAT": "xml"}, nil, []string{`log format "xml" is unknown: use text or json (set by POPGATE_LOG_FORMAT)`}},
		{"web addr without port", nil, []string{"--web-addr", "localhost"}, []string{`web addr "localhost" has no port`}},
		{"web addr bad port", nil, []string{"--web-addr", "127.0.0.1:http"}, []string{`web addr "127.0.0.1:http" has port "http"`}},
		{"web addr port too big", nil, []string{"--web-addr", ":65536"}, []string{`web addr ":65536" has port "65536"`}},
		{"metrics addr without port", nil, []string{"--metrics-addr", "localhost"},
			[]string{`metrics addr "localhost" has no port: use host:port, e.g. 127.0.0.1:9586 (all interfaces: 0.0.0.0:9586), or "" to turn it off (set by --metrics-addr)`}},
		{"metrics peers past the limit", nil, []string{"--metrics-peers", "10001"},
			[]string{"metrics peers 10001 is out of range: use 0 (no per-peer series) to 10000 (set by --metrics-peers)"}},
		{"metrics addr bad port in env", map[string]string{"POPGATE_METRICS_ADDR": "127.0.0.1:prom"}, nil,
			[]string{`metrics addr "127.0.0.1:prom" has port "prom"`, "(set by POPGATE_METRICS_ADDR)"}},
		{"bad dns upstream", nil, []string{"--dns-upstream", "9.9.9.9,dns.example"}, []string{`dns upstream "dns.example" is not an IP address`}},
		{"mtu", nil, []string{"--mtu", "100"}, []string{"mtu 100 is out of range", "(set by --mtu)"}},
		{"empty data dir", nil, []string{"--data-dir", ""}, []string{"data dir is empty", "(set by --data-dir)"}},
		{"bad interface", nil, []string{"--interface", "a/b"}, []string{`interface "a/b" is not a valid interface name`}},
		{"region with a space", nil, []string{"--region", "Bad Region"},
			[]string{`region "Bad Region" is invalid: use 1-32 lower-case letters, digits and '-', starting with a letter or digit, e.g. fra or us-east-1 (set by --region)`}},
		{"region in capitals", map[string]string{"POPGATE_REGION": "FRA"}, nil, []string{`region "FRA" is invalid`, "(set by POPGATE_REGION)"}},
		{"region starting with '-'", nil, []string{"--region", "-fra"}, []string{`region "-fra" is invalid`}},
		{"region too long", nil, []string{"--region", strings.Repeat("a", 33)}, []string{"is invalid: use 1-32"}},
		{"region with a newline", nil, []string{"--region", "fra\nevil"}, []string{`region "fra\nevil" is invalid`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta := newTestApp(t, tc.env)
			if code := ta.runArgs(append([]string{"serve"}, tc.args...)...); code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			checkOneErrorLine(t, ta.stderr.String(), tc.wants...)
		})
	}
}

// TestServeRegionNames: names of the region form pass.
func TestServeRegionNames(t *testing.T) {
	for _, region := range []string{"local", "fra", "us-east-1", "seed-region", "1", strings.Repeat("a", 32)} {
		ta := newTestApp(t, nil)
		sc, err := ta.loadServeConfig([]string{"--region", region})
		if err != nil || sc.Gateway.Region != region {
			t.Errorf("--region %q: %v, %v", region, sc.Gateway.Region, err)
		}
	}
}

func TestServeRunsNode(t *testing.T) {
	ta := newTestApp(t, nil)
	var got ServeConfig
	ta.serve = func(ctx context.Context, sc ServeConfig, log *slog.Logger) error {
		if ctx.Err() != nil {
			t.Error("context already done")
		}
		log.Debug("hidden at level info")
		log.Info("node running")
		got = sc
		return nil
	}
	if code := ta.runArgs("serve", "--data-dir", t.TempDir(), "--log-format", "json"); code != exitOK {
		t.Fatalf("exit status %d: %s", code, ta.stderr)
	}
	if got.Gateway.NodeName != "testhost" || got.LogFormat != "json" {
		t.Errorf("runServe got %+v", got)
	}
	log := ta.stderr.String()
	if !strings.Contains(log, `"msg":"node running"`) || strings.Contains(log, "hidden") || !strings.Contains(log, `"msg":"starting popgate"`) {
		t.Errorf("log on stderr:\n%s", log)
	}
	if ta.stdout.Len() != 0 {
		t.Errorf("stdout: %q", ta.stdout)
	}
}

func TestServeFails(t *testing.T) {
	ta := newTestApp(t, nil)
	ta.serve = func(context.Context, ServeConfig, *slog.Logger) error {
		return errors.New("listen udp :51820: address already in use\n(second line)")
	}
	if code := ta.runArgs("serve", "--log-level", "error"); code != exitRuntime {
		t.Errorf("exit status %d, want %d", code, exitRuntime)
	}
	checkOneErrorLine(t, ta.stderr.String(), "popgate: listen udp :51820: address already in use (second line)")
}

func TestKeyLine(t *testing.T) {
	data := []byte("# listen_port\nlisten_portx = 1\n  \"listen_port\"=2\n[listen_port]\n")
	if got := keyLine(data, "listen_port"); got != 3 {
		t.Errorf("keyLine = %d, want 3", got)
	}
	if got := keyLine(data, "mtu"); got != 0 {
		t.Errorf("keyLine(mtu) = %d, want 0", got)
	}
}

// TestSettingsTable: every setting's field is distinct and its key maps back to it.
func TestSettingsTable(t *testing.T) {
	seen := map[any]string{}
	var s serveSettings
	for _, st := range serveSettingsTable {
		p := st.field(&s)
		if other, dup := seen[p]; dup {
			t.Errorf("settings %s and %s share a field", st.name, other)
		}
		seen[p] = st.name
		if lookupSetting(st.key()) == nil || !strings.HasPrefix(st.env(), "POPGATE_") {
			t.Errorf("setting %s: key %s, env %s", st.name, st.key(), st.env())
		}
	}
	if len(seen) != reflect.TypeFor[serveSettings]().NumField() {
		t.Errorf("%d settings for %d fields", len(seen), reflect.TypeFor[serveSettings]().NumField())
	}
}
