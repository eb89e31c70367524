package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// The commands that rename peers, set their expiry and give them a new key, and the
// policy warnings, against the fake daemon (requests and output) and a real serve (the
// server's answers, the audit log, no other tenant's names).

func TestPeerLifecycleCommands(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("later.policy", []byte("default deny\nallow group:later -> any\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(laptopJSON, `"name":"laptop"`, `"name":"notebook"`, 1)
	rotated, _ := json.Marshal(map[string]any{"peer": json.RawMessage(laptopJSON), "config": testConfig})
	rotatedOwnKey, _ := json.Marshal(map[string]any{"peer": json.RawMessage(phoneJSON), "config": testConfig})
	expiring := strings.Replace(laptopJSON, `"server_key":true`, `"server_key":true,"expires_at":"2027-04-01T00:00:00Z"`, 1)
	in90d := testNow.Add(90 * 24 * time.Hour).UTC().Format(time.RFC3339)
	in5y := testNow.Add(5 * 365 * 24 * time.Hour).UTC().Format(time.RFC3339)
	expiresShown := "expires:             " + time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC).Local().Format("2006-01-02 15:04:05 MST") + " (in 382d)\n"

	for _, tc := range []daemonCase{
		{
			name:    "peer rename",
			args:    []string{"peer", "rename", "--tenant", "acme", "laptop", "notebook"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers/laptop/rename": {200, renamed, nil}},
			want:    []request{{"POST", "/api/v1/tenants/acme/peers/laptop/rename", "", appJSON, `{"name":"notebook"}`}},
			stderr:  "peer laptop of tenant acme renamed to notebook: its key, addresses and config stay\n",
		},
		{
			name:    "peer rename refused",
			args:    []string{"peer", "rename", "laptop", "phone", "--tenant", "acme"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers/laptop/rename": {409, `{"error":"peer \"phone\" already exists in tenant \"acme\": choose another name"}`, nil}},
			want:    []request{{"POST", "/api/v1/tenants/acme/peers/laptop/rename", "", appJSON, `{"name":"phone"}`}},
			code:    exitRuntime,
			stderr:  "popgate: peer \"phone\" already exists in tenant \"acme\": choose another name\n",
		},
		{
			name:    "peer rotate",
			args:    []string{"peer", "rotate", "--tenant", "acme", "laptop"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers/laptop/rotate": {200, string(rotated), nil}},
			want:    []request{{"POST", "/api/v1/tenants/acme/peers/laptop/rotate", "", "", ""}},
			stdout:  testConfig,
			stderr:  "peer laptop of tenant acme has a new key (public key " + testPub + "): the old key stopped working; import this config on the device\n",
		},
		{
			name:    "peer rotate with the user's key",
			args:    []string{"peer", "rotate", "--tenant", "acme", "--public-key", testPub, "phone"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers/phone/rotate": {200, string(rotatedOwnKey), nil}},
			want:    []request{{"POST", "/api/v1/tenants/acme/peers/phone/rotate", "", appJSON, `{"public_key":"` + testPub + `"}`}},
			stdout:  testConfig,
			stderr: "peer phone of tenant acme has a new key (public key " + testPub + "): the old key stopped working; import this config on the device\n" +
				"the config has no private key: put the private key that belongs to " + testPub + " into its PrivateKey line\n",
		},
		{
			name: "peer rotate of a user's key without one",
			args: []string{"peer", "rotate", "--tenant", "acme", "phone"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers/phone/rotate": {400,
				`{"error":"peer \"phone\" of tenant \"acme\" was created from its user's public key and popgate holds no private key for it: give the new public key (popgate peer rotate --public-key KEY)"}`, nil}},
			want:   []request{{"POST", "/api/v1/tenants/acme/peers/phone/rotate", "", "", ""}},
			code:   exitRuntime,
			stderr: "popgate: peer \"phone\" of tenant \"acme\" was created from its user's public key and popgate holds no private key for it: give the new public key (popgate peer rotate --public-key KEY)\n",
		},
		{
			name:    "peer set --expires a day",
			args:    []string{"peer", "set", "--tenant", "acme", "--expires", "2027-03-31", "laptop"},
			answers: map[string]answer{"PUT /api/v1/tenants/acme/peers/laptop/expiry": {200, expiring, nil}},
			want:    []request{{"PUT", "/api/v1/tenants/acme/peers/laptop/expiry", "", appJSON, `{"expires_at":"2027-04-01T00:00:00Z"}`}},
			stdout:  strings.Replace(laptopShow(), "expires:             never\n", expiresShown, 1),
		},
		{
			name:    "peer set --expires a duration",
			args:    []string{"peer", "set", "--tenant", "acme", "--expires", "90d", "laptop"},
			answers: map[string]answer{"PUT /api/v1/tenants/acme/peers/laptop/expiry": {200, laptopJSON, nil}},
			want:    []request{{"PUT", "/api/v1/tenants/acme/peers/laptop/expiry", "", appJSON, `{"expires_at":"` + in90d + `"}`}},
			stdout:  laptopShow(),
		},
		{
			name: "peer set groups and --no-expiry",
			args: []string{"peer", "set", "--tenant", "acme", "--group", "eng", "--no-expiry", "laptop"},
			answers: map[string]answer{
				"PATCH /api/v1/tenants/acme/peers/laptop":      {200, laptopJSON, nil},
				"PUT /api/v1/tenants/acme/peers/laptop/expiry": {200, laptopJSON, nil},
			},
			want: []request{
				{"PATCH", "/api/v1/tenants/acme/peers/laptop", "", appJSON, `{"groups":["eng"]}`},
				{"PUT", "/api/v1/tenants/acme/peers/laptop/expiry", "", appJSON, `{"expires_at":null}`},
			},
			stdout: laptopShow(),
		},
		{
			name: "peer list with an expired peer",
			args: []string{"peer", "list", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/peers": {200, `{"peers":[` +
				strings.Replace(laptopJSON, `"server_key":true`, `"server_key":true,"expires_at":"2026-03-01T00:00:00Z"`, 1) + `]}`, nil}},
			want: []request{{"GET", "/api/v1/peers", "tenant=acme", "", ""}},
			stdout: "TENANT  NAME    IPV4        IPV6               GROUPS   SITE  STATE    ONLINE  LAST-HANDSHAKE  RX       TX\n" +
				"acme    laptop  100.64.0.2  fd7a:115c:a1e0::2  eng,ops  -     expired  yes     2m ago          1.5 MiB  512 B\n",
		},
		{
			name: "policy set with warnings",
			args: []string{"policy", "set", "--tenant", "acme", "later.policy"},
			answers: map[string]answer{"PUT /api/v1/tenants/acme/policy": {200, `{"rules":1,"default":"deny","warnings":[` +
				`{"line":2,"message":"no peer of this tenant is in group \"later\": add one to it (popgate peer add --group later ...) or remove the reference"}]}`, nil}},
			want: []request{{"PUT", "/api/v1/tenants/acme/policy", "", textPlain, "default deny\nallow group:later -> any\n"}},
			stderr: "later.policy:2: warning: no peer of this tenant is in group \"later\": add one to it (popgate peer add --group later ...) or remove the reference\n" +
				"policy of tenant acme set: 1 rules, default deny; the names warned about above match nothing until they exist\n",
		},
		{
			name: "token add --expires in years",
			args: []string{"token", "add", "--role", "viewer", "--expires", "5y", "monitor"},
			answers: map[string]answer{"POST /api/v1/tokens": {201, `{"token":{"name":"monitor","role":"viewer","created_at":"2026-03-14T15:09:26Z",` +
				`"expires_at":"` + in5y + `"},"secret":"pgt_SECRET"}`, nil}},
			want:   []request{{"POST", "/api/v1/tokens", "", appJSON, `{"name":"monitor","role":"viewer","expires_at":"` + in5y + `"}`}},
			stdout: "pgt_SECRET\n",
			stderr: "API token monitor added (viewer of every tenant), expires " + testNow.Add(5*365*24*time.Hour).Local().Format("2006-01-02 15:04 MST") +
				": send it as 'Authorization: Bearer <token>'; it is shown this once\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t) })
	}
}

// TestUsageErrorsExit2: every mistake on the command line exits 2 before asking the server,
// the same mistake the same way wherever it is made (a route's prefix, a site's prefix).
func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir() // no daemon: none of these may get as far as the socket
	for _, tc := range []struct {
		args []string
		want string // the whole of stderr
	}{
		// A prefix with host bits set, in a route and in a site.
		{[]string{"route", "add", "--tenant", "acme", "10.10.0.1/24"}, "prefix 10.10.0.1/24 has host bits set: use 10.10.0.0/24"},
		{[]string{"route", "remove", "--tenant", "acme", "fd00::1/64"}, "prefix fd00::1/64 has host bits set: use fd00::/64"},
		{[]string{"peer", "add", "--tenant", "acme", "--site", "office", "--site-prefix", "10.10.0.1/24", "gw"}, "--site-prefix 10.10.0.1/24 has host bits set: use 10.10.0.0/24"},
		{[]string{"peer", "set", "--tenant", "acme", "--site", "office", "--site-prefix", "10.10.0.0/24,10.20.0.1/16", "gw"}, "--site-prefix 10.20.0.1/16 has host bits set: use 10.20.0.0/16"},
		// A prefix that is none, in both.
		{[]string{"route", "add", "--tenant", "acme", "10.10.0.0/33"}, `prefix "10.10.0.0/33" is not a CIDR prefix: use e.g. 10.10.0.0/24`},
		{[]string{"peer", "add", "--tenant", "acme", "--site", "office", "--site-prefix", "10.10.0.0/33", "gw"}, `--site-prefix "10.10.0.0/33" is not a CIDR prefix: use e.g. 10.10.0.0/24`},
		{[]string{"route", "add", "--tenant", "acme", "::ffff:10.0.0.0/104"}, "prefix ::ffff:10.0.0.0/104 is an IPv4-mapped IPv6 prefix: use 10.0.0.0/8"},
		{[]string{"peer", "add", "--tenant", "acme", "--site", "office", "--site-prefix", "0.0.0.0/0", "gw"},
			"--site-prefix 0.0.0.0/0 covers every address: give the LAN prefixes behind the connector, e.g. 10.10.0.0/24"},
		// peer rename.
		{[]string{"peer", "rename", "--tenant", "acme", "laptop"}, "peer rename: missing NEW-NAME: usage: popgate peer rename --tenant TENANT [--data-dir DIR] NAME NEW-NAME"},
		{[]string{"peer", "rename", "laptop", "notebook"}, "peer rename: missing --tenant: usage: popgate peer rename --tenant TENANT [--data-dir DIR] NAME NEW-NAME"},
		{[]string{"peer", "rename", "--tenant", "acme", "laptop", "note book"}, `peer name "note book" is invalid: ' ' at position 5 is not allowed; use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		// peer rotate.
		{[]string{"peer", "rotate", "--tenant", "acme", "--public-key", "xyz", "phone"}, `peer rotate: --public-key: "xyz" is not a WireGuard key: it has 3 characters, a key has 44 characters of base64 as printed by 'wg genkey' or 'wg pubkey'`},
		{[]string{"peer", "rotate", "laptop"}, "peer rotate: missing --tenant: usage: popgate peer rotate --tenant TENANT [--public-key KEY] [--region REGION] [--qr] [--data-dir DIR] NAME"},
		// peer set --expires.
		{[]string{"peer", "set", "--tenant", "acme", "--expires", "tomorrow", "laptop"}, `peer set: --expires "tomorrow" is not a duration: use e.g. 90d, 12h, 30m or 2y`},
		{[]string{"peer", "set", "--tenant", "acme", "--expires", "2026-13-01", "laptop"}, `peer set: --expires "2026-13-01" is neither a date such as 2027-03-31 nor a time such as 2027-03-31T18:00:00Z`},
		{[]string{"peer", "set", "--tenant", "acme", "--expires", "2026-03-13", "laptop"}, `peer set: --expires "2026-03-13" is over already: give a later day, or disable the peer to stop it now`},
		{[]string{"peer", "set", "--tenant", "acme", "--expires", "11y", "laptop"}, `peer set: --expires "11y" is more than ten years: give at most 10y (3650d)`},
		{[]string{"peer", "set", "--tenant", "acme", "--expires", "90d", "--no-expiry", "laptop"}, "peer set: --no-expiry and --expires contradict each other: give one of them"},
		// token add --expires: the message's ten years is what the parser allows.
		{[]string{"token", "add", "--role", "owner", "--expires", "3651d", "ci"}, `token add: --expires "3651d" is more than ten years: give at most 10y (3650d)`},
		{[]string{"token", "add", "--role", "owner", "--expires", "87601h", "ci"}, `token add: --expires "87601h" is more than ten years: give at most 10y (3650d)`},
		{[]string{"token", "add", "--role", "owner", "--expires", "0d", "ci"}, `token add: --expires "0d" is not a time to come: give a duration of a minute or more, e.g. 90d`},
		{[]string{"token", "add", "--role", "owner", "--expires", "-1d", "ci"}, `token add: --expires "-1d" is not a duration: use e.g. 90d, 12h, 30m or 2y`},
		{[]string{"token", "add", "--role", "owner", "--expires", "1.5y", "ci"}, `token add: --expires "1.5y" is not a duration: use e.g. 90d, 12h, 30m or 2y`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ta := newTestApp(t, map[string]string{envDataDir: dir})
			if code := ta.runArgs(tc.args...); code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			if want := "popgate: " + tc.want + "\n"; ta.stderr.String() != want {
				t.Errorf("stderr %q\nwant   %q", ta.stderr, want)
			}
			if ta.stdout.Len() != 0 {
				t.Errorf("stdout is not empty: %q", ta.stdout)
			}
		})
	}
}

// TestParseLifetime: the boundary of --expires is ten years of 365 days, in every unit.
func TestParseLifetime(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration // 0: refused
	}{
		{"90d", 90 * day}, {"12h", 12 * time.Hour}, {"30m", 30 * time.Minute}, {"1y", 365 * day},
		{"5y", 5 * 365 * day}, {"10y", 3650 * day}, {"3650d", 3650 * day}, {"87600h", 3650 * day},
		{"11y", 0}, {"3651d", 0}, {"87600h1s", 0}, {"0d", 0}, {"0y", 0}, {"0", 0}, {"-5m", 0},
		{"-1d", 0}, {"+1d", 0}, {"d", 0}, {"y", 0}, {"1w", 0}, {"", 0}, {"9999999999999999999y", 0},
	} {
		got, err := parseLifetime(tc.in)
		if got != tc.want || (err == nil) != (tc.want != 0) {
			t.Errorf("parseLifetime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseExpiry(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time // zero: refused
	}{
		{"2027-03-31", time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC)},  // the end of that day
		{"2026-03-14", time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)}, // today still counts
		{"2026-03-13", time.Time{}},
		{"2027-03-31T18:00:00+02:00", time.Date(2027, 3, 31, 16, 0, 0, 0, time.UTC)},
		{"2026-03-14T15:00:00Z", time.Time{}},
		{"90d", testNow.Add(90 * 24 * time.Hour)},
		{"10y", testNow.Add(3650 * 24 * time.Hour)},
		{"11y", time.Time{}},
		{"31.03.2027", time.Time{}},
	} {
		got, err := parseExpiry(testNow, tc.in)
		if !got.Equal(tc.want) || (err == nil) == tc.want.IsZero() {
			t.Errorf("parseExpiry(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestGroupHelp: a group's help lists each subcommand with a whole sentence (none cut at an
// abbreviation's full stop), the summaries in one column, long ones wrapped into it.
func TestGroupHelp(t *testing.T) {
	ta := newTestApp(t, nil)
	if code := ta.runArgs("help", "admin"); code != exitOK {
		t.Fatalf("exit status %d: %s", code, ta.stderr)
	}
	want := `Subcommands:
  add            Add an admin of the web UI
  passwd         Set a new password for an admin: generated and printed on stdout, or read
                 from stdin with --password-stdin
  list           List the admins with their role, tenant, second factor, state and last
                 sign-in
  remove         Remove an admin; its sessions end at once
  disable-totp   Turn off the one-time-code second factor of an admin who lost their
                 authenticator app
  hash-password  Print the argon2id hash of a password read from stdin, for
                 --admin-password-hash

`
	if !strings.Contains(ta.stdout.String(), want) {
		t.Errorf("help admin:\n%s\nwant the subcommands as\n%s", ta.stdout, want)
	}

	groups := map[string][]subcommand{"tenant": tenantCommands, "peer": peerCommands, "policy": policyCommands,
		"route": routeCommands, "admin": adminCommands, "token": tokenCommands}
	abbrev := regexp.MustCompile(`\b(e\.g|i\.e|etc|vs)$`)
	for group, subs := range groups {
		ta := newTestApp(t, nil)
		ta.runArgs("help", group)
		_, section, _ := strings.Cut(ta.stdout.String(), "Subcommands:\n")
		section, _, _ = strings.Cut(section, "\n\n")
		var summaries []string
		column := -1
		for line := range strings.Lines(section) {
			line = strings.TrimSuffix(line, "\n")
			if len(line) > helpWidth {
				t.Errorf("help %s: line longer than %d: %q", group, helpWidth, line)
			}
			text := strings.TrimLeft(line, " ")
			at := len(line) - len(text)
			if at == 2 { // "  name  summary"
				name, rest, _ := strings.Cut(text, " ")
				summary := strings.TrimLeft(rest, " ")
				at = len(line) - len(summary)
				if !slices.ContainsFunc(subs, func(s subcommand) bool { return s.spec.name == group+" "+name }) {
					t.Errorf("help %s: line %q names no subcommand", group, line)
				}
				summaries = append(summaries, summary)
			} else if len(summaries) > 0 {
				summaries[len(summaries)-1] += " " + text
			}
			if column < 0 {
				column = at
			}
			if at != column {
				t.Errorf("help %s: %q starts at column %d, the others at %d", group, line, at, column)
			}
		}
		if len(summaries) != len(subs) {
			t.Fatalf("help %s lists %d subcommands, want %d:\n%s", group, len(summaries), len(subs), section)
		}
		for i, s := range subs {
			if summaries[i] != s.spec.summaryText() {
				t.Errorf("help %s: summary %q, want %q", group, summaries[i], s.spec.summaryText())
			}
			if abbrev.MatchString(summaries[i]) || strings.HasSuffix(summaries[i], ",") || strings.HasSuffix(summaries[i], "(") {
				t.Errorf("help %s: summary %q is cut mid-sentence", group, summaries[i])
			}
		}
	}
}

func TestFirstSentence(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Add a tenant. Its name is used.", "Add a tenant"},
		{"Remove an admin; its sessions end at once. The last owner stays.", "Remove an admin; its sessions end at once"},
		{"Read it, for --x (in the file, e.g. in a seed): done. More.", "Read it, for --x (in the file, e.g. in a seed): done"},
		{"Use a name, i.e. a label. Then go.", "Use a name, i.e. a label"},
		{"Enable a disabled peer again.", "Enable a disabled peer again"},
		{"No full stop", "No full stop"},
		{"Version 1.2 is out. Next.", "Version 1.2 is out"},
		{"First paragraph\n\nSecond.", "First paragraph"},
	} {
		if got := firstSentence(tc.in); got != tc.want {
			t.Errorf("firstSentence(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestServePeerCommands runs serve in the process: peer rename, peer set --expires, peer
// rotate and policy warnings against the real server, each change in the audit log, and no
// answer naming another tenant's peer.
func TestServePeerCommands(t *testing.T) {
	dir := t.TempDir()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	c.Close()
	sc, err := newTestApp(t, nil).loadServeConfig([]string{"--data-dir", dir, "--web-addr", "127.0.0.1:0", "--listen-port", port,
		"--public-endpoint", "127.0.0.1:" + port, "--exit-mode", "userspace", "--interface", fmt.Sprintf("pgp%d", os.Getpid()%100000)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := new(syncBuffer)
	go func() { done <- runServe(ctx, sc, slog.New(slog.NewTextHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	cli := serveCLI{t, dir}
	run, must := cli.run, cli.must
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _, _ := run("status"); code == exitOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer; log:\n%s", logs.String())
		}
	}
	showKey := func(tenant, peer string) string {
		t.Helper()
		out, _ := must("peer", "show", "--json", "--tenant", tenant, peer)
		var p struct {
			PublicKey string `json:"public_key"`
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatal(err)
		}
		return p.PublicKey
	}

	must("tenant", "add", "acme")
	must("tenant", "add", "globex")
	must("peer", "add", "--tenant", "globex", "hank")
	hankKey := showKey("globex", "hank")
	conf, _ := must("peer", "add", "--tenant", "acme", "laptop")

	// Another tenant's key: in use, and nothing more.
	code, _, stderr := run("peer", "add", "--tenant", "acme", "--public-key", hankKey, "probe")
	if code != exitRuntime || stderr != "popgate: public key "+hankKey+" is already in use: each device needs a key pair of its own; make one with 'wg genkey | tee private.key | wg pubkey'\n" {
		t.Errorf("peer add with globex's key: exit %d, %q", code, stderr)
	}

	must("peer", "rename", "--tenant", "acme", "laptop", "notebook")
	out, _ := must("peer", "set", "--tenant", "acme", "--expires", "30d", "notebook")
	if !strings.Contains(out, "name:                notebook\n") || !strings.Contains(out, "(in 29d)") || !strings.Contains(out, "state:               enabled\n") {
		t.Errorf("peer set --expires 30d shows:\n%s", out)
	}
	oldKey := showKey("acme", "notebook")
	newConf, note := must("peer", "rotate", "--tenant", "acme", "notebook")
	newKey := showKey("acme", "notebook")
	if newKey == oldKey || newConf == conf || !strings.Contains(note, "public key "+newKey) {
		t.Errorf("peer rotate: key %s → %s; note %q", oldKey, newKey, note)
	}
	if again, _ := must("peer", "config", "--tenant", "acme", "notebook"); again != newConf {
		t.Errorf("peer config after rotate:\n%s\nthe rotation printed:\n%s", again, newConf)
	}
	out, _ = must("peer", "show", "--tenant", "acme", "notebook")
	if !strings.Contains(out, "(in 29d)") {
		t.Errorf("the rotation lost the expiry:\n%s", out)
	}
	// The rotation takes another tenant's key no more than peer add does.
	if code, _, stderr := run("peer", "rotate", "--tenant", "acme", "--public-key", hankKey, "notebook"); code != exitRuntime || strings.Contains(stderr, "globex") || strings.Contains(stderr, "hank") {
		t.Errorf("peer rotate with globex's key: exit %d, %q", code, stderr)
	}
	// A peer whose user brought the key needs the new one.
	userKey := mustKeyPair(t)
	must("peer", "add", "--tenant", "acme", "--public-key", userKey, "phone")
	if code, _, stderr := run("peer", "rotate", "--tenant", "acme", "phone"); code != exitRuntime || !strings.Contains(stderr, "give the new public key (popgate peer rotate --public-key KEY)") {
		t.Errorf("peer rotate of a user's key without one: exit %d, %q", code, stderr)
	}
	newUserKey := mustKeyPair(t)
	phoneConf, _ := must("peer", "rotate", "--tenant", "acme", "--public-key", newUserKey, "phone")
	if showKey("acme", "phone") != newUserKey || !strings.Contains(phoneConf, "# PrivateKey = <your private key>") {
		t.Errorf("peer rotate with the user's new key printed:\n%s", phoneConf)
	}
	out, _ = must("peer", "set", "--tenant", "acme", "--no-expiry", "notebook")
	if !strings.Contains(out, "expires:             never\n") {
		t.Errorf("peer set --no-expiry shows:\n%s", out)
	}

	// A policy naming what acme does not have yet is set, with warnings.
	policy := writeFile(t, "acme.policy", "default deny\nallow group:later -> peer:hank tcp 22\nallow peer:notebook -> any\n")
	_, stderr = must("policy", "set", "--tenant", "acme", policy)
	for _, w := range []string{policy + ":2: warning: no peer of this tenant is in group \"later\"", policy + ":2: warning: the tenant has no peer \"hank\"",
		"policy of tenant acme set: 2 rules, default deny; the names warned about above"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("policy set: stderr lacks %q:\n%s", w, stderr)
		}
	}

	out, _ = must("audit", "--tenant", "acme", "--action", "peer.")
	for _, action := range []string{"peer.rename", "peer.expiry", "peer.rotate"} {
		if !regexp.MustCompile(`(?m)^\S+ \S+\s+cli\s.*\s` + regexp.QuoteMeta(action) + `\s`).MatchString(out) {
			t.Errorf("audit has no %s by cli:\n%s", action, out)
		}
	}
}

// mustKeyPair returns the public key of a new key pair.
func mustKeyPair(t *testing.T) string {
	t.Helper()
	k, err := store.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().String()
}
