package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// The commands of tenant networks: groups and sites of peers, policy, routes, split tunnel
// and the per-tenant status.

const (
	textPlain = "text/plain; charset=utf-8"
	appJSON   = "application/json"

	acmePolicy = "# acme: first matching rule wins\n" +
		"default deny\n" +
		"allow group:eng -> 10.10.0.0/24, site:office tcp 80,443\n" +
		"allow any -> 0.0.0.0/0, ::/0   # the internet\n"
	// badPolicy has the three problems of policyProblems.
	badPolicy = "default deny\n" +
		"\n" +
		"allow group:eng -> 10.10.0.0/24 tpc 80\n" +
		"allow any -> 10.1.2.3/24\n" +
		"allow group:servers -> any icmp\n"
	policyProblems = `{"error":"line 3: unknown protocol \"tpc\": use tcp, udp, icmp or any\n` +
		`line 4: 10.1.2.3/24 has bits set after the prefix length: write 10.1.2.0/24\n` +
		`line 5: no peer of this tenant is in group \"servers\": add one to it (popgate peer add --group servers ...) or remove the reference"}`

	routesJSON = `{"routes":[{"prefix":"10.10.0.0/24","via":"site:office"},{"prefix":"0.0.0.0/0","via":"internet"},` +
		`{"prefix":"fd00:10::/64","via":"site:office"},{"prefix":"::/0","via":"internet"}]}`
)

// laptopShow is what peer show and peer set print for laptopJSON.
func laptopShow() string {
	return "tenant:              acme\n" +
		"name:                laptop\n" +
		"public key:          " + testPub + "\n" +
		"private key held by: server (print the config again with 'popgate peer config')\n" +
		"ipv4:                100.64.0.2\n" +
		"ipv6:                fd7a:115c:a1e0::2\n" +
		"groups:              eng, ops\n" +
		"site:                -\n" +
		"state:               enabled\n" +
		"expires:             never\n" +
		"created:             " + time.Date(2026, 3, 11, 15, 9, 26, 0, time.UTC).Local().Format("2006-01-02 15:04:05 MST") + " (3d ago)\n" +
		"online:              yes\n" +
		"endpoint:            198.51.100.4:40000\n" +
		"last handshake:      2m ago\n" +
		"transfer:            1.5 MiB received, 512 B sent\n"
}

func TestNetworkCommands(t *testing.T) {
	t.Chdir(t.TempDir()) // policy files by relative name, as people type them
	for name, text := range map[string]string{"acme.policy": acmePolicy, "bad.policy": badPolicy} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	officeCreated, _ := json.Marshal(map[string]any{"peer": json.RawMessage(officeJSON), "config": testConfig})
	bare := strings.Replace(laptopJSON, `"groups":["eng","ops"],`, "", 1)
	statusTenants := strings.TrimSuffix(statusJSON, "}") + `,"tenants":[` +
		`{"name":"acme","peers":2,"online":1,"rx_bytes":1572864,"tx_bytes":512,"flows":12,` +
		`"exit_flows":{"tcp":3,"udp":4096,"icmp":1},"max_flows_per_peer":4096,"max_flows":16384,` +
		`"drops":{"to_peer.default_deny":0,"from_peer.policy_deny":7,"cross_tenant":2,"flow_limit_peer":9},` +
		`"evicted":{"flow_limit_peer":20000,"conntrack":19000},` +
		`"rules":[{"line":3,"rule":"allow group:eng -> 10.10.0.0/24, site:office tcp 80,443","hits":120},` +
		`{"line":5,"rule":"deny  peer:laptop -> any udp 53","hits":0},{"line":2,"rule":"default deny","hits":4}]},` +
		`{"name":"globex","peers":0,"online":0,"rx_bytes":0,"tx_bytes":0,"flows":0,` +
		`"exit_flows":{"tcp":0,"udp":0,"icmp":0},"max_flows_per_peer":100,"max_flows":1000,"rules":[{"line":0,"rule":"default deny","hits":0}]}]}`

	for _, tc := range []daemonCase{
		{
			name: "peer add with groups and site",
			args: []string{"peer", "add", "--tenant", "acme", "--group", "eng", "--group", "ops, web",
				"--site", "office", "--site-prefix", "10.10.0.0/24,10.20.0.0/16", "office-gw"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers": {201, string(officeCreated), nil}},
			want: []request{{"POST", "/api/v1/tenants/acme/peers", "", appJSON,
				`{"name":"office-gw","groups":["eng","ops","web"],"site":"office","site_prefixes":["10.10.0.0/24","10.20.0.0/16"]}`}},
			stdout: testConfig,
			stderr: "peer office-gw added to tenant acme with addresses 100.64.0.4 and fd7a:115c:a1e0::4; connector of site office (10.10.0.0/24, 10.20.0.0/16)\n",
		},
		{
			name:    "peer set groups",
			args:    []string{"peer", "set", "laptop", "--tenant", "acme", "--group", "eng,ops"},
			answers: map[string]answer{"PATCH /api/v1/tenants/acme/peers/laptop": {200, laptopJSON, nil}},
			want:    []request{{"PATCH", "/api/v1/tenants/acme/peers/laptop", "", appJSON, `{"groups":["eng","ops"]}`}},
			stdout:  laptopShow(),
		},
		{
			name:    "peer set no groups no site",
			args:    []string{"peer", "set", "--tenant", "acme", "--no-groups", "--no-site", "laptop"},
			answers: map[string]answer{"PATCH /api/v1/tenants/acme/peers/laptop": {200, bare, nil}},
			want:    []request{{"PATCH", "/api/v1/tenants/acme/peers/laptop", "", appJSON, `{"groups":[],"site":"","site_prefixes":[]}`}},
			stdout:  strings.Replace(laptopShow(), "groups:              eng, ops\n", "groups:              -\n", 1),
		},
		{
			name:    "peer set site",
			args:    []string{"peer", "set", "--tenant", "acme", "--site", "office", "--site-prefix", "10.10.0.0/24", "--site-prefix", "10.20.0.0/16", "office-gw"},
			answers: map[string]answer{"PATCH /api/v1/tenants/acme/peers/office-gw": {200, officeJSON, nil}},
			want:    []request{{"PATCH", "/api/v1/tenants/acme/peers/office-gw", "", appJSON, `{"site":"office","site_prefixes":["10.10.0.0/24","10.20.0.0/16"]}`}},
			stdout: "tenant:              acme\n" +
				"name:                office-gw\n" +
				"public key:          " + testPub + "\n" +
				"private key held by: server (print the config again with 'popgate peer config')\n" +
				"ipv4:                100.64.0.4\n" +
				"ipv6:                fd7a:115c:a1e0::4\n" +
				"groups:              -\n" +
				"site:                office (10.10.0.0/24, 10.20.0.0/16)\n" +
				"state:               enabled\n" +
				"expires:             never\n" +
				"created:             " + time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC).Local().Format("2006-01-02 15:04:05 MST") + " (26s ago)\n" +
				"online:              no\n" +
				"endpoint:            -\n" +
				"last handshake:      never\n" +
				"transfer:            0 B received, 0 B sent\n",
		},
		{
			name:    "peer set --json",
			args:    []string{"peer", "set", "--tenant", "acme", "--group", "eng", "--json", "laptop"},
			answers: map[string]answer{"PATCH /api/v1/tenants/acme/peers/laptop": {200, `{"name":"laptop","groups":["eng"]}`, nil}},
			want:    []request{{"PATCH", "/api/v1/tenants/acme/peers/laptop", "", appJSON, `{"groups":["eng"]}`}},
			stdout:  "{\n  \"name\": \"laptop\",\n  \"groups\": [\n    \"eng\"\n  ]\n}\n",
		},
		{
			name:    "peer set refused",
			args:    []string{"peer", "set", "--tenant", "acme", "--site", "lab", "--site-prefix", "10.10.0.0/25", "lab-gw"},
			answers: map[string]answer{"PATCH /api/v1/tenants/acme/peers/lab-gw": {409, `{"error":"site prefix 10.10.0.0/25 of site \"lab\" overlaps 10.10.0.0/24 of site \"office\""}`, nil}},
			want:    []request{{"PATCH", "/api/v1/tenants/acme/peers/lab-gw", "", appJSON, `{"site":"lab","site_prefixes":["10.10.0.0/25"]}`}},
			code:    exitRuntime,
			stderr:  "popgate: site prefix 10.10.0.0/25 of site \"lab\" overlaps 10.10.0.0/24 of site \"office\"\n",
		},
		{
			name:    "policy show",
			args:    []string{"policy", "show", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/policy": {200, strings.TrimSuffix(acmePolicy, "\n"), nil}},
			want:    []request{{"GET", "/api/v1/tenants/acme/policy", "", "", ""}},
			stdout:  acmePolicy,
		},
		{
			name: "policy show default",
			args: []string{"policy", "show", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/policy": {200, "default deny\n",
				http.Header{"Popgate-Policy-Default": {"true"}}}},
			want:   []request{{"GET", "/api/v1/tenants/acme/policy", "", "", ""}},
			stdout: "default deny\n",
			stderr: "tenant acme never set a policy: this is the default one; set one with 'popgate policy set --tenant acme FILE'\n",
		},
		{
			name:    "policy set",
			args:    []string{"policy", "set", "acme.policy", "--tenant", "acme"},
			answers: map[string]answer{"PUT /api/v1/tenants/acme/policy": {200, `{"rules":2,"default":"deny"}`, nil}},
			want:    []request{{"PUT", "/api/v1/tenants/acme/policy", "", textPlain, acmePolicy}},
			stderr:  "policy of tenant acme set: 2 rules, default deny\n",
		},
		{
			name:    "policy set from stdin",
			args:    []string{"policy", "set", "--tenant", "acme", "-"},
			stdin:   "default allow\n",
			answers: map[string]answer{"PUT /api/v1/tenants/acme/policy": {200, `{"rules":0,"default":"allow"}`, nil}},
			want:    []request{{"PUT", "/api/v1/tenants/acme/policy", "", textPlain, "default allow\n"}},
			stderr:  "policy of tenant acme set: 0 rules, default allow\n",
		},
		{
			name:    "policy set with problems",
			args:    []string{"policy", "set", "--tenant", "acme", "bad.policy"},
			answers: map[string]answer{"PUT /api/v1/tenants/acme/policy": {400, policyProblems, nil}},
			want:    []request{{"PUT", "/api/v1/tenants/acme/policy", "", textPlain, badPolicy}},
			code:    exitRuntime,
			stderr: "bad.policy:3: unknown protocol \"tpc\": use tcp, udp, icmp or any\n" +
				"bad.policy:4: 10.1.2.3/24 has bits set after the prefix length: write 10.1.2.0/24\n" +
				"bad.policy:5: no peer of this tenant is in group \"servers\": add one to it (popgate peer add --group servers ...) or remove the reference\n" +
				"popgate: policy of tenant acme not set: fix the problems above in bad.policy and set it again\n",
		},
		{
			name:  "policy set from stdin with problems",
			args:  []string{"policy", "set", "--tenant", "acme", "-"},
			stdin: "allow any -> any tpc\n",
			answers: map[string]answer{"PUT /api/v1/tenants/acme/policy": {400,
				`{"error":"the policy has problems:\nline 1: unknown protocol \"tpc\": use tcp, udp, icmp or any\n(and 2 more problems)"}`, nil}},
			want: []request{{"PUT", "/api/v1/tenants/acme/policy", "", textPlain, "allow any -> any tpc\n"}},
			code: exitRuntime,
			stderr: "<stdin>: the policy has problems:\n" +
				"<stdin>:1: unknown protocol \"tpc\": use tcp, udp, icmp or any\n" +
				"<stdin>: (and 2 more problems)\n" +
				"popgate: policy of tenant acme not set: fix the problems above in <stdin> and set it again\n",
		},
		{
			name:    "policy set of an unknown tenant",
			args:    []string{"policy", "set", "--tenant", "nope", "acme.policy"},
			answers: map[string]answer{"PUT /api/v1/tenants/nope/policy": {404, `{"error":"tenant \"nope\" not found: list tenants with 'popgate tenant list'"}`, nil}},
			want:    []request{{"PUT", "/api/v1/tenants/nope/policy", "", textPlain, acmePolicy}},
			code:    exitRuntime,
			stderr:  "popgate: tenant \"nope\" not found: list tenants with 'popgate tenant list'\n",
		},
		{
			name:    "route list",
			args:    []string{"route", "list", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/routes": {200, routesJSON, nil}},
			want:    []request{{"GET", "/api/v1/tenants/acme/routes", "", "", ""}},
			stdout: "PREFIX        VIA\n" +
				"fd00:10::/64  site:office\n" +
				"10.10.0.0/24  site:office\n" +
				"0.0.0.0/0     internet\n" +
				"::/0          internet\n",
		},
		{
			name: "route list with exits",
			args: []string{"route", "list", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/routes": {200, `{"routes":[` +
				`{"prefix":"10.0.0.0/8","via":"exit:x1,exit:x2","exits":[{"name":"x1","state":"down"},{"name":"x2","state":"up","in_use":true}]},` +
				`{"prefix":"0.0.0.0/0","via":"exit:x3","exits":[{"name":"x3","state":"unknown"}]},{"prefix":"::/0","via":"internet"}]}`, nil}},
			want: []request{{"GET", "/api/v1/tenants/acme/routes", "", "", ""}},
			stdout: "PREFIX      VIA              EXITS\n" +
				"10.0.0.0/8  exit:x1,exit:x2  x1 down, x2 up (in use)\n" +
				"0.0.0.0/0   exit:x3          x3 unknown, none up: the traffic goes through the least lossy exit that still answers, if any\n" +
				"::/0        internet         -\n",
		},
		{
			name:    "route add via exits",
			args:    []string{"route", "add", "--tenant", "acme", "--via", "exit:x1,exit:x2", "0.0.0.0/0"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/routes": {201, `{"prefix":"0.0.0.0/0","via":"exit:x1,exit:x2"}`, nil}},
			want:    []request{{"POST", "/api/v1/tenants/acme/routes", "", appJSON, `{"prefix":"0.0.0.0/0","via":"exit:x1,exit:x2"}`}},
			stderr:  "route 0.0.0.0/0 via exit:x1,exit:x2 added to tenant acme\n",
		},
		{
			name: "route add via a node that is no exit",
			args: []string{"route", "add", "--tenant", "acme", "--via", "exit:p1", "0.0.0.0/0"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/routes": {400,
				`{"error":"node \"p1\" is not an exit (its roles: pop): route via a node that joined with the exit role"}`, nil}},
			want:   []request{{"POST", "/api/v1/tenants/acme/routes", "", appJSON, `{"prefix":"0.0.0.0/0","via":"exit:p1"}`}},
			code:   exitRuntime,
			stderr: "popgate: node \"p1\" is not an exit (its roles: pop): route via a node that joined with the exit role\n",
		},
		{
			name: "node list with backbone links",
			args: []string{"node", "list"},
			answers: map[string]answer{"GET /api/v1/nodes": {200, `{"nodes":[` +
				`{"name":"p1","roles":"pop","region":"fra","pin":"x","backbone_endpoint":"192.0.2.1:51821","version":"v1",` +
				`"joined_at":"2026-03-14T15:00:00Z","connected":false,"applied_generation":7,"current_generation":7,"backbone_id":2,` +
				`"links":[{"node":"controller","node_id":1,"state":"up","rtt_us":1234,"loss_percent":0},` +
				`{"node":"x1","node_id":3,"state":"down","loss_percent":30},{"node":"","node_id":9,"state":"unknown","loss_percent":0}]},` +
				`{"name":"x1","roles":"exit","pin":"y","joined_at":"2026-03-14T15:00:00Z","connected":false,"applied_generation":7,"current_generation":7,"backbone_id":3}]}`, nil}},
			want: []request{{"GET", "/api/v1/nodes", "", "", ""}},
			stdout: "NAME  ROLES  REGION  VERSION  BACKBONE         SYNC        GENERATION  LINKS\n" +
				"p1    pop    fra     v1       192.0.2.1:51821  never seen  7/7         controller up 1.2ms, x1 down 30% loss, #9 unknown\n" +
				"x1    exit   -       -        -                never seen  7/7         -\n",
		},
		{
			name:    "route list --json",
			args:    []string{"route", "list", "--json", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/routes": {200, `{"routes":[{"prefix":"0.0.0.0/0","via":"internet"}]}`, nil}},
			want:    []request{{"GET", "/api/v1/tenants/acme/routes", "", "", ""}},
			stdout:  "{\n  \"routes\": [\n    {\n      \"prefix\": \"0.0.0.0/0\",\n      \"via\": \"internet\"\n    }\n  ]\n}\n",
		},
		{
			name:    "route list empty",
			args:    []string{"route", "list", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/routes": {200, `{"routes":[]}`, nil}},
			want:    []request{{"GET", "/api/v1/tenants/acme/routes", "", "", ""}},
			stderr:  "tenant acme has no routes: its peers reach nothing outside the overlay; add one with 'popgate route add --tenant acme PREFIX'\n",
		},
		{
			name:    "route add",
			args:    []string{"route", "add", "--tenant", "acme", "192.0.2.0/24"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/routes": {201, `{"prefix":"192.0.2.0/24","via":"internet"}`, nil}},
			want:    []request{{"POST", "/api/v1/tenants/acme/routes", "", appJSON, `{"prefix":"192.0.2.0/24","via":"internet"}`}},
			stderr:  "route 192.0.2.0/24 via internet added to tenant acme\n",
		},
		{
			name:    "route add via site",
			args:    []string{"route", "add", "10.10.0.0/24", "--via", "site:office", "--tenant", "acme"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/routes": {201, `{"prefix":"10.10.0.0/24","via":"site:office"}`, nil}},
			want:    []request{{"POST", "/api/v1/tenants/acme/routes", "", appJSON, `{"prefix":"10.10.0.0/24","via":"site:office"}`}},
			stderr:  "route 10.10.0.0/24 via site:office added to tenant acme\n",
		},
		{
			name: "route add refused",
			args: []string{"route", "add", "--tenant", "acme", "100.64.1.0/24"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/routes": {400,
				`{"error":"route prefix 100.64.1.0/24 is inside the overlay network 100.64.0.0/10"}`, nil}},
			want:   []request{{"POST", "/api/v1/tenants/acme/routes", "", appJSON, `{"prefix":"100.64.1.0/24","via":"internet"}`}},
			code:   exitRuntime,
			stderr: "popgate: route prefix 100.64.1.0/24 is inside the overlay network 100.64.0.0/10\n",
		},
		{
			name:    "route remove",
			args:    []string{"route", "remove", "--tenant", "acme", "10.10.0.0/24"},
			answers: map[string]answer{"DELETE /api/v1/tenants/acme/routes": {204, "", nil}},
			want:    []request{{"DELETE", "/api/v1/tenants/acme/routes", "prefix=10.10.0.0%2F24", "", ""}},
			stderr:  "route 10.10.0.0/24 removed from tenant acme\n",
		},
		{
			name:    "route remove IPv6",
			args:    []string{"route", "remove", "fd00:10::/64", "--tenant", "acme"},
			answers: map[string]answer{"DELETE /api/v1/tenants/acme/routes": {204, "", nil}},
			want:    []request{{"DELETE", "/api/v1/tenants/acme/routes", "prefix=fd00%3A10%3A%3A%2F64", "", ""}},
			stderr:  "route fd00:10::/64 removed from tenant acme\n",
		},
		{
			name:    "tenant set split tunnel on",
			args:    []string{"tenant", "set", "--split-tunnel", "on", "acme"},
			answers: map[string]answer{"PATCH /api/v1/tenants/acme": {200, `{"name":"acme","created_at":"2026-03-14T13:09:26Z","peers":2,"split_tunnel":true}`, nil}},
			want:    []request{{"PATCH", "/api/v1/tenants/acme", "", appJSON, `{"split_tunnel":true}`}},
			stderr:  "tenant acme: split tunnel on: client configs send only the tenant's routes and the overlay through the tunnel; peers pick this up when they import their config again\n",
		},
		{
			name:    "tenant set split tunnel off",
			args:    []string{"tenant", "set", "acme", "--split-tunnel=off"},
			answers: map[string]answer{"PATCH /api/v1/tenants/acme": {200, `{"name":"acme","created_at":"2026-03-14T13:09:26Z","peers":2,"split_tunnel":false}`, nil}},
			want:    []request{{"PATCH", "/api/v1/tenants/acme", "", appJSON, `{"split_tunnel":false}`}},
			stderr:  "tenant acme: split tunnel off: client configs send all traffic through the tunnel; peers pick this up when they import their config again\n",
		},
		{
			name: "tenant set flow limits",
			args: []string{"tenant", "set", "--max-flows-per-peer", "10000", "--max-flows=default", "acme"},
			answers: map[string]answer{"PATCH /api/v1/tenants/acme/limits": {200,
				`{"name":"acme","created_at":"2026-03-14T13:09:26Z","peers":2,"split_tunnel":true,"max_flows_per_peer":10000,"max_flows":16384}`, nil}},
			want:   []request{{"PATCH", "/api/v1/tenants/acme/limits", "", appJSON, `{"max_flows_per_peer":10000,"max_flows":0}`}},
			stderr: "tenant acme: at most 10000 flows per peer and 16384 in all, from now on (through the exit and in connection tracking)\n",
		},
		{
			name: "tenant set flow limit and split tunnel",
			args: []string{"tenant", "set", "--max-flows", "50000", "--split-tunnel", "off", "acme"},
			answers: map[string]answer{
				"PATCH /api/v1/tenants/acme/limits": {200, `{"name":"acme","created_at":"2026-03-14T13:09:26Z","peers":2,"split_tunnel":true,"max_flows_per_peer":4096,"max_flows":50000}`, nil},
				"PATCH /api/v1/tenants/acme":        {200, `{"name":"acme","created_at":"2026-03-14T13:09:26Z","peers":2,"split_tunnel":false,"max_flows_per_peer":4096,"max_flows":50000}`, nil},
			},
			want: []request{
				{"PATCH", "/api/v1/tenants/acme/limits", "", appJSON, `{"max_flows":50000}`},
				{"PATCH", "/api/v1/tenants/acme", "", appJSON, `{"split_tunnel":false}`},
			},
			stderr: "tenant acme: at most 4096 flows per peer and 50000 in all, from now on (through the exit and in connection tracking)\n" +
				"tenant acme: split tunnel off: client configs send all traffic through the tunnel; peers pick this up when they import their config again\n",
		},
		{
			name: "tenant set flow limit refused",
			args: []string{"tenant", "set", "--max-flows", "5", "nope"},
			answers: map[string]answer{"PATCH /api/v1/tenants/nope/limits": {404,
				`{"error":"tenant \"nope\" not found: list tenants with 'popgate tenant list'"}`, nil}},
			want:   []request{{"PATCH", "/api/v1/tenants/nope/limits", "", appJSON, `{"max_flows":5}`}},
			code:   exitRuntime,
			stderr: "popgate: tenant \"nope\" not found: list tenants with 'popgate tenant list'\n",
		},
		{
			name:    "status with tenants",
			args:    []string{"status"},
			answers: map[string]answer{"GET /api/v1/status": {200, statusTenants, nil}},
			want:    []request{{"GET", "/api/v1/status", "", "", ""}},
			stdout: statusText() +
				"tenant acme\n" +
				"  peers:            2, 1 online\n" +
				"  transfer:         1.5 MiB received, 512 B sent\n" +
				"  tracked flows:    12\n" +
				"  exit flows:       tcp 3, udp 4096, icmp 1\n" +
				"  flow limits:      4096 per peer, 16384 in all\n" +
				"  drops:            cross_tenant 2, flow_limit_peer 9, from_peer.policy_deny 7\n" +
				"  evicted flows:    conntrack 19000, flow_limit_peer 20000\n" +
				"  policy rules:\n" +
				"    LINE  HITS  RULE\n" +
				"    3     120   allow group:eng -> 10.10.0.0/24, site:office tcp 80,443\n" +
				"    5     0     deny  peer:laptop -> any udp 53\n" +
				"    2     4     default deny\n" +
				"tenant globex\n" +
				"  peers:            0, 0 online\n" +
				"  transfer:         0 B received, 0 B sent\n" +
				"  tracked flows:    0\n" +
				"  exit flows:       tcp 0, udp 0, icmp 0\n" +
				"  flow limits:      100 per peer, 1000 in all\n" +
				"  drops:            none\n" +
				"  policy rules:\n" +
				"    LINE  HITS  RULE\n" +
				"    -     0     default deny\n",
		},
		{
			name:    "status --json",
			args:    []string{"status", "--json"},
			answers: map[string]answer{"GET /api/v1/status": {200, statusTenants, nil}},
			want:    []request{{"GET", "/api/v1/status", "", "", ""}},
			stdout:  indentJSON(t, statusTenants),
		},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t) })
	}
}

// indentJSON is s as printJSON prints it: the server's answer, indented, nothing lost.
func indentJSON(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(s), "", "  "); err != nil {
		t.Fatal(err)
	}
	return b.String() + "\n"
}

func TestNetworkUsageErrors(t *testing.T) {
	dir := t.TempDir() // no daemon: none of these may get as far as the socket
	empty := dir + "/empty.policy"
	if err := os.WriteFile(empty, []byte(" \n\t\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// 4.8 MB: over the store's limit of 4 MiB, checked before anything is sent.
	huge := dir + "/huge.policy"
	if err := os.WriteFile(huge, bytes.Repeat([]byte("allow any -> any tcp 443\n"), 4_800_000/25), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string // the whole of stderr when it starts with "popgate: ", else a part
	}{
		{args: []string{"peer", "add", "--tenant", "acme", "--site", "office", "gw"},
			want: "peer add: --site needs --site-prefix: give the LAN prefixes behind the connector, e.g. --site-prefix 10.10.0.0/24"},
		{args: []string{"peer", "add", "--tenant", "acme", "--site-prefix", "10.10.0.0/24", "gw"},
			want: "peer add: --site-prefix needs --site: name the site, e.g. --site office"},
		{args: []string{"peer", "add", "--tenant", "acme", "--site", "office", "--site-prefix", "10.10.0.1/33", "gw"},
			want: "popgate: --site-prefix \"10.10.0.1/33\" is not a CIDR prefix: use e.g. 10.10.0.0/24\n"},
		{args: []string{"peer", "add", "--tenant", "acme", "--site", "office", "--site-prefix", "10.10.0.0/24,10.20.0.0", "gw"},
			want: "popgate: --site-prefix \"10.20.0.0\" is not a CIDR prefix: use e.g. 10.10.0.0/24\n"},
		{args: []string{"peer", "add", "--tenant", "acme", "--site", "the office", "--site-prefix", "10.10.0.0/24", "gw"},
			want: `site name "the office" is invalid`},
		{args: []string{"peer", "add", "--tenant", "acme", "--group", "eng,", "laptop"},
			want: `peer add: invalid value "eng," for flag --group: empty item in the list`},
		{args: []string{"peer", "add", "--tenant", "acme", "--group", "-eng", "laptop"},
			want: `group name "-eng" is invalid`},
		{args: []string{"peer", "set", "--tenant", "acme", "laptop"},
			want: "popgate: peer set: nothing to change: give --group, --no-groups, --site with --site-prefix, --no-site, --expires or --no-expiry\n"},
		{args: []string{"peer", "set", "--tenant", "acme", "--no-groups", "--group", "eng", "laptop"},
			want: "popgate: peer set: --no-groups and --group contradict each other: give one of them\n"},
		{args: []string{"peer", "set", "--tenant", "acme", "--no-site", "--site", "office", "--site-prefix", "10.10.0.0/24", "gw"},
			want: "popgate: peer set: --no-site and --site contradict each other: give one of them\n"},
		{args: []string{"peer", "set", "--tenant", "acme", "--no-site", "--site-prefix", "10.10.0.0/24", "gw"},
			want: "popgate: peer set: --no-site and --site-prefix contradict each other: give one of them\n"},
		{args: []string{"peer", "set", "--tenant", "acme", "--site", "office", "gw"},
			want: "peer set: --site needs --site-prefix"},
		{args: []string{"peer", "set", "--tenant", "acme", "--site-prefix", "10.10.0.0/24", "gw"},
			want: "peer set: --site-prefix needs --site"},
		{args: []string{"peer", "set", "--tenant", "acme", "--site", "office", "--site-prefix", "office-lan", "gw"},
			want: "popgate: --site-prefix \"office-lan\" is not a CIDR prefix: use e.g. 10.10.0.0/24\n"},
		{args: []string{"peer", "set", "--group", "eng", "laptop"}, want: "peer set: missing --tenant"},
		{args: []string{"policy"}, want: "policy: missing subcommand: use show or set"},
		{args: []string{"policy", "get"}, want: `policy: unknown subcommand "get": use show or set`},
		{args: []string{"policy", "show"}, want: "policy show: missing --tenant: usage: popgate policy show --tenant TENANT"},
		{args: []string{"policy", "show", "--tenant", "acme", "extra"}, want: `policy show: unexpected argument "extra"`},
		{args: []string{"policy", "set", "--tenant", "acme"}, want: "policy set: missing FILE: usage: popgate policy set --tenant TENANT"},
		{args: []string{"policy", "set", "acme.policy"}, want: "policy set: missing --tenant"},
		{args: []string{"policy", "set", "--tenant", "acme", dir + "/absent.policy"},
			want: "popgate: cannot read policy file " + dir + "/absent.policy: no such file or directory\n"},
		{args: []string{"policy", "set", "--tenant", "acme", dir},
			want: "popgate: cannot read policy file " + dir + ": is a directory\n"},
		{args: []string{"policy", "set", "--tenant", "acme", empty},
			want: "popgate: policy file " + empty + " is empty: to deny every flow, write \"default deny\" in it\n"},
		{args: []string{"policy", "set", "--tenant", "acme", "-"}, stdin: "\n\n",
			want: "popgate: policy file <stdin> is empty: to deny every flow, write \"default deny\" in it\n"},
		{args: []string{"policy", "set", "--tenant", "acme", huge},
			want: "popgate: policy file " + huge + " is larger than 4 MiB (4194304 bytes), the most a policy may be: say the same with fewer rules, using groups and CIDRs\n"},
		{args: []string{"route"}, want: "route: missing subcommand: use list, add or remove"},
		{args: []string{"route", "list"}, want: "route list: missing --tenant"},
		{args: []string{"route", "add", "--tenant", "acme"}, want: "route add: missing PREFIX: usage: popgate route add --tenant TENANT"},
		{args: []string{"route", "add", "--tenant", "acme", "10.10.0.1"},
			want: "popgate: prefix \"10.10.0.1\" is not a CIDR prefix: use e.g. 10.10.0.0/24\n"},
		{args: []string{"route", "add", "--tenant", "acme", "--via", "office", "10.10.0.0/24"},
			want: `--via "office" is invalid: use "internet", "site:" followed by the name of one of the tenant's sites (e.g. "site:office"), or exit nodes in order (e.g. "exit:x1,exit:x2")`},
		{args: []string{"route", "add", "--tenant", "acme", "--via", "exit:x1,exit:x1", "0.0.0.0/0"},
			want: `--via "exit:x1,exit:x1" names exit "x1" twice: list each exit once, in the order to try them`},
		{args: []string{"route", "add", "--tenant", "acme", "--via", "exit:x1, exit:x2", "0.0.0.0/0"},
			want: `" exit:x2" is not exit:NAME`},
		{args: []string{"route", "add", "--tenant", "acme", "--via", "site:", "10.10.0.0/24"},
			want: `--via "site:" is invalid: site name "" is invalid: it is empty`},
		{args: []string{"route", "remove", "--tenant", "acme", "fd00::/129"},
			want: "popgate: prefix \"fd00::/129\" is not a CIDR prefix: use e.g. 10.10.0.0/24\n"},
		{args: []string{"route", "remove", "10.10.0.0/24"}, want: "route remove: missing --tenant"},
		{args: []string{"route", "remove", "--tenant", "Acme", "10.10.0.0/24"}, want: `tenant name "Acme" is invalid`},
		{args: []string{"tenant", "set", "acme"},
			want: "popgate: tenant set: nothing to change: give --split-tunnel on|off, --max-flows-per-peer N, --max-flows N, --regions REGION,...|all or --domain DOMAIN|default\n"},
		{args: []string{"tenant", "set", "--max-flows", "0", "acme"},
			want: `tenant set: invalid value "0" for flag --max-flows: use a number of flows from 1 to 1048576, or default`},
		{args: []string{"tenant", "set", "--max-flows-per-peer", "lots", "acme"},
			want: `tenant set: invalid value "lots" for flag --max-flows-per-peer: use a number of flows from 1 to 1048576, or default`},
		{args: []string{"tenant", "set", "--split-tunnel", "yes", "acme"},
			want: `tenant set: invalid value "yes" for flag --split-tunnel: use on or off`},
		{args: []string{"tenant", "set", "--split-tunnel", "on"}, want: "tenant set: missing NAME"},
		{args: []string{"tenant", "set", "--domain", "corp_example", "acme"},
			want: `tenant set: --domain: domain "corp_example" has one label`},
		{args: []string{"tenant", "set", "--domain", "a..example", "acme"},
			want: `tenant set: --domain: domain "a..example" has a bad label ""`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ta := newTestApp(t, map[string]string{envDataDir: dir})
			ta.stdin = strings.NewReader(tc.stdin)
			if code := ta.runArgs(tc.args...); code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			if strings.HasPrefix(tc.want, "popgate: ") {
				if ta.stderr.String() != tc.want {
					t.Errorf("stderr %q\nwant   %q", ta.stderr, tc.want)
				}
			} else {
				checkOneErrorLine(t, ta.stderr.String(), tc.want)
			}
			if ta.stdout.Len() != 0 {
				t.Errorf("stdout is not empty: %q", ta.stdout)
			}
		})
	}
}
