package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

const (
	adminJSON = `{"name":"alice","role":"tenant_admin","tenant":"acme","totp":true,"disabled":false,"created_at":"2026-03-14T13:09:26Z","last_sign_in":"2026-03-14T15:00:00Z"}`
	bobJSON   = `{"name":"bob","role":"viewer","totp":false,"disabled":true,"created_at":"2026-01-01T00:00:00Z"}`
)

func TestAdminTokenAuditCommands(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		stdin   string
		answers map[string]answer
		want    request
		stdout  string   // exact, when wantOut is nil
		wantOut []string // substrings of stdout
		stderr  string   // substring
	}{
		{
			name:    "admin add generates a password",
			args:    []string{"admin", "add", "--tenant", "acme", "alice"},
			answers: map[string]answer{"POST /api/v1/admins": {201, `{"admin":` + adminJSON + `,"password":"abcd-efgh-jkmn-pqrs-tuvw-xyz2"}`, nil}},
			want:    request{"POST", "/api/v1/admins", "", "application/json", `{"name":"alice","role":"tenant_admin","tenant":"acme"}`},
			stdout:  "abcd-efgh-jkmn-pqrs-tuvw-xyz2\n",
			stderr:  "admin alice added (tenant_admin of tenant acme): it signs in to the web UI with the password printed above, shown this once",
		},
		{
			name:    "admin add owner with the password from stdin",
			args:    []string{"admin", "add", "--password-stdin", "root"},
			stdin:   "my own long password\n",
			answers: map[string]answer{"POST /api/v1/admins": {201, `{"admin":{"name":"root","role":"owner","created_at":"2026-03-14T13:09:26Z"}}`, nil}},
			want:    request{"POST", "/api/v1/admins", "", "application/json", `{"name":"root","role":"owner","password":"my own long password"}`},
			stdout:  "",
			stderr:  "the password from stdin",
		},
		{
			name:    "admin passwd",
			args:    []string{"admin", "passwd", "admin"},
			answers: map[string]answer{"PUT /api/v1/admins/admin/password": {200, `{"admin":{"name":"admin","role":"owner","created_at":"2026-03-14T13:09:26Z"},"password":"new-pass-word"}`, nil}},
			want:    request{"PUT", "/api/v1/admins/admin/password", "", "application/json", `{}`},
			stdout:  "new-pass-word\n",
			stderr:  "its sessions were signed out",
		},
		{
			name:    "admin list",
			args:    []string{"admin", "list"},
			answers: map[string]answer{"GET /api/v1/admins": {200, `{"admins":[` + adminJSON + `,` + bobJSON + `]}`, nil}},
			want:    request{"GET", "/api/v1/admins", "", "", ""},
			stdout: "NAME   ROLE          TENANT  TOTP  STATE     LAST-SIGN-IN  CREATED\n" +
				"alice  tenant_admin  acme    on    enabled   9m ago        2h ago\n" +
				"bob    viewer        -       off   disabled  never         72d ago\n",
		},
		{
			name:    "admin list with failed sign-ins",
			args:    []string{"admin", "list"},
			answers: map[string]answer{"GET /api/v1/admins": {200, `{"admins":[` + strings.Replace(adminJSON, `"disabled":false`, `"disabled":false,"failed_sign_ins":37`, 1) + `]}`, nil}},
			want:    request{"GET", "/api/v1/admins", "", "", ""},
			stdout: "NAME   ROLE          TENANT  TOTP  STATE                        LAST-SIGN-IN  CREATED\n" +
				"alice  tenant_admin  acme    on    enabled, 37 failed sign-ins  9m ago        2h ago\n",
		},
		{
			name:    "admin remove",
			args:    []string{"admin", "remove", "bob"},
			answers: map[string]answer{"DELETE /api/v1/admins/bob": {204, "", nil}},
			want:    request{"DELETE", "/api/v1/admins/bob", "", "", ""},
			stderr:  "admin bob removed",
		},
		{
			name:    "admin disable-totp",
			args:    []string{"admin", "disable-totp", "alice"},
			answers: map[string]answer{"DELETE /api/v1/admins/alice/totp": {200, adminJSON, nil}},
			want:    request{"DELETE", "/api/v1/admins/alice/totp", "", "", ""},
			stderr:  "two-factor sign-in of admin alice is off",
		},
		{
			name: "token add",
			args: []string{"token", "add", "--role", "tenant_admin", "--tenant", "acme", "--expires", "90d", "acme-ci"},
			answers: map[string]answer{"POST /api/v1/tokens": {201, `{"token":{"name":"acme-ci","role":"tenant_admin","tenant":"acme","created_at":"2026-03-14T15:09:26Z",` +
				`"expires_at":"2026-06-12T15:09:26Z"},"secret":"pgt_SECRET"}`, nil}},
			want:   request{"POST", "/api/v1/tokens", "", "application/json", `{"name":"acme-ci","role":"tenant_admin","tenant":"acme","expires_at":"2026-06-12T15:09:26Z"}`},
			stdout: "pgt_SECRET\n",
			stderr: "API token acme-ci added (tenant_admin of tenant acme), expires 2026-06-12",
		},
		{
			name: "token list",
			args: []string{"token", "list"},
			answers: map[string]answer{"GET /api/v1/tokens": {200, `{"tokens":[{"name":"ci","role":"owner","created_at":"2026-03-14T13:09:26Z","last_used":"2026-03-14T15:09:00Z",` +
				`"expires_at":"2026-03-01T00:00:00Z"}]}`, nil}},
			want:    request{"GET", "/api/v1/tokens", "", "", ""},
			wantOut: []string{"NAME  ROLE   TENANT  CREATED  LAST-USED  EXPIRES", "ci    owner  -       2h ago   26s ago    2026-03-01 (expired)"},
		},
		{
			name:    "token remove",
			args:    []string{"token", "remove", "ci"},
			answers: map[string]answer{"DELETE /api/v1/tokens/ci": {204, "", nil}},
			want:    request{"DELETE", "/api/v1/tokens/ci", "", "", ""},
			stderr:  "API token ci removed",
		},
		{
			name: "audit",
			args: []string{"audit", "--limit", "2", "--tenant", "acme", "--action", "peer"},
			answers: map[string]answer{"GET /api/v1/audit": {200, `{"entries":[{"time":"2026-03-14T15:00:00Z","actor":"alice","remote":"192.0.2.7","tenant":"acme",` +
				`"action":"peer.add","target":"peer:acme/laptop"}],"more":true}`, nil}},
			want:    request{"GET", "/api/v1/audit", "action=peer&limit=2&tenant=acme", "", ""},
			wantOut: []string{"TIME", "ACTOR", "alice  192.0.2.7  acme    peer.add  peer:acme/laptop  -"},
			stderr:  "older entries follow",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startFakeDaemon(t, tc.answers)
			ta := newTestApp(t, nil)
			ta.stdin = strings.NewReader(tc.stdin)
			if code := ta.runArgs(append(tc.args, "--data-dir", d.dir)...); code != exitOK {
				t.Fatalf("exit status %d, stderr %q", code, ta.stderr)
			}
			if got := d.requests(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("requests %+v, want [%+v]", got, tc.want)
			}
			if tc.wantOut == nil && ta.stdout.String() != tc.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", ta.stdout, tc.stdout)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(ta.stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, ta.stdout)
				}
			}
			if !strings.Contains(ta.stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want %q", ta.stderr, tc.stderr)
			}
		})
	}
}

// TestAdminCommandsRefuseBadInput: mistakes are caught before the server is asked.
func TestAdminCommandsRefuseBadInput(t *testing.T) {
	d := startFakeDaemon(t, nil)
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"admin", "add", "Alice"}, "", `admin name "Alice" is invalid`},
		{[]string{"admin", "add", strings.Repeat("a", 65)}, "", "at most 64"},
		{[]string{"admin", "add", "--role", "god", "alice"}, "", `role "god" is unknown`},
		{[]string{"admin", "add", "--role", "tenant_admin", "alice"}, "", "needs a tenant"},
		{[]string{"admin", "add", "--role", "owner", "--tenant", "acme", "alice"}, "", "cannot be limited"},
		{[]string{"admin", "add", "--password-stdin", "alice"}, "", "read no password"},
		{[]string{"admin", "add", "--password-stdin", "alice"}, "short\n", "too short"},
		{[]string{"admin", "passwd", "--password-stdin", "alice"}, "alice\n", "too short"},
		{[]string{"admin", "remove"}, "", "missing NAME"},
		{[]string{"token", "add", "ci"}, "", "missing --role"},
		{[]string{"token", "add", "--role", "owner", "--expires", "soon", "ci"}, "", `--expires "soon" is not a duration`},
		{[]string{"token", "add", "--role", "owner", "--expires", "-5d", "ci"}, "", "not a duration"},
		{[]string{"token", "add", "--role", "viewer", "CI"}, "", "API token name"},
		{[]string{"audit", "--limit", "0"}, "", "--limit"},
		{[]string{"audit", "--limit", "5000"}, "", "1 to 1000"},
		{[]string{"admin", "frobnicate"}, "", `unknown subcommand "frobnicate"`},
	} {
		ta := newTestApp(t, nil)
		ta.stdin = strings.NewReader(tc.stdin)
		if code := ta.runArgs(append(tc.args, "--data-dir", d.dir)...); code != exitUsage {
			t.Errorf("%q: exit status %d, want %d", tc.args, code, exitUsage)
		}
		checkOneErrorLine(t, ta.stderr.String(), tc.want)
	}
	if got := d.requests(); len(got) != 0 {
		t.Errorf("the server was asked: %+v", got)
	}
}

type fakeFirstAdmin struct {
	created bool
	err     error
}

func (f fakeFirstAdmin) EnsureFirstAdmin(context.Context) (string, bool, error) {
	return "abcd-efgh-jkmn-pqrs-tuvw-xyz2", f.created, f.err
}

func (f fakeFirstAdmin) EnsureFirstAdminHash(context.Context, string) (bool, error) {
	return f.created, f.err
}

// TestFirstAdminStore: the first owner is made once, with a generated password that works.
func TestFirstAdminStore(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), databaseName)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := firstAdminStore{st}
	pw, created, err := f.EnsureFirstAdmin(ctx)
	if err != nil || !created || len(pw) < 20 {
		t.Fatalf("EnsureFirstAdmin = %q, %v, %v", pw, created, err)
	}
	if a, ok, err := st.CheckAdminPassword(ctx, firstAdminName, pw); !ok || err != nil || a.Role != store.RoleOwner {
		t.Errorf("first admin's password: %+v, %v, %v", a, ok, err)
	}
	if _, created, err := f.EnsureFirstAdmin(ctx); created || err != nil {
		t.Errorf("second EnsureFirstAdmin = %v, %v", created, err)
	}
	if created, err := f.EnsureFirstAdminHash(ctx, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"); created || err != nil {
		t.Errorf("EnsureFirstAdminHash with an admin there = %v, %v", created, err)
	}
}

func TestAnnounceFirstAdmin(t *testing.T) {
	var b bytes.Buffer
	if err := announceFirstAdmin(context.Background(), fakeFirstAdmin{created: true}, &b, "https://vpn.example.com:8443/", ""); err != nil {
		t.Fatal(err)
	}
	want := `popgate: first admin "admin" created with password abcd-efgh-jkmn-pqrs-tuvw-xyz2 — sign in at https://vpn.example.com:8443/ and change it (popgate admin passwd admin)` + "\n"
	if b.String() != want {
		t.Errorf("announced %q\nwant %q", b.String(), want)
	}
	b.Reset()
	if err := announceFirstAdmin(context.Background(), fakeFirstAdmin{}, &b, "x", ""); err != nil || b.Len() != 0 {
		t.Errorf("with admins: %q, %v", b.String(), err)
	}
	if err := announceFirstAdmin(context.Background(), fakeFirstAdmin{err: errors.New("disk full")}, &b, "x", ""); err == nil {
		t.Error("error lost")
	}
	// With a preset hash nothing secret is printed.
	b.Reset()
	if err := announceFirstAdmin(context.Background(), fakeFirstAdmin{created: true}, &b, "https://vpn.example.com:8443/", "$argon2id$..."); err != nil {
		t.Fatal(err)
	}
	if want := "popgate: first admin \"admin\" created from --admin-password-hash — sign in at https://vpn.example.com:8443/\n"; b.String() != want {
		t.Errorf("announced %q\nwant %q", b.String(), want)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger in another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// captureStderr points os.Stderr at a pipe until the returned stop, which returns what was
// written.
func captureStderr(t *testing.T) (lines *bufio.Reader, stop func() string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	br := bufio.NewReader(r)
	return br, func() string {
		os.Stderr = old
		w.Close()
		rest, _ := io.ReadAll(br)
		r.Close()
		return string(rest)
	}
}

// TestServeFirstAdmin runs serve in the process: the first start creates the first admin and
// prints its password once (never into the log), the password signs in on the web address,
// the admin commands work on the control socket, and a restart prints nothing.
func TestServeFirstAdmin(t *testing.T) {
	dir := t.TempDir()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	c.Close()
	ta := newTestApp(t, nil)
	sc, err := ta.loadServeConfig([]string{"--data-dir", dir, "--web-addr", "127.0.0.1:0", "--listen-port", port,
		"--public-endpoint", "127.0.0.1:" + port, "--exit-mode", "userspace", "--interface", fmt.Sprintf("pgf%d", os.Getpid()%100000)})
	if err != nil {
		t.Fatal(err)
	}
	start := func() (logs *syncBuffer, stop func()) {
		logs = new(syncBuffer)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runServe(ctx, sc, slog.New(slog.NewTextHandler(logs, nil))) }()
		return logs, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	cli := func(stdin string, args ...string) (string, string) {
		t.Helper()
		ta := newTestApp(t, nil)
		ta.stdin = strings.NewReader(stdin)
		if code := ta.runArgs(append(args, "--data-dir", dir)...); code != exitOK {
			t.Fatalf("popgate %q: exit %d: %s", args, code, ta.stderr)
		}
		return ta.stdout.String(), ta.stderr.String()
	}

	lines, stopCapture := captureStderr(t)
	logs, stop := start()
	lineCh := make(chan string, 1)
	go func() { l, _ := lines.ReadString('\n'); lineCh <- l }()
	var line string
	select {
	case line = <-lineCh:
	case <-time.After(30 * time.Second):
		stopCapture()
		stop()
		t.Fatalf("no first-admin line; log:\n%s", logs.String())
	}
	if rest := stopCapture(); rest != "" {
		t.Errorf("more on stderr: %q", rest)
	}
	m := regexp.MustCompile(`^popgate: first admin "admin" created with password (\S{20,}) — sign in at (http://127\.0\.0\.1:\d+/) and change it \(popgate admin passwd admin\)\n$`).FindStringSubmatch(line)
	if m == nil {
		stop()
		t.Fatalf("first-admin line %q", line)
	}
	password, base := m[1], m[2]

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(base+"login", url.Values{"name": {"admin"}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Errorf("sign-in with the printed password: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	out, _ := cli("", "admin", "list")
	if !strings.Contains(out, "admin  owner") {
		t.Errorf("admin list:\n%s", out)
	}
	cli("bob's long password\n", "admin", "add", "--role", "viewer", "--password-stdin", "bob")
	token, _ := cli("", "token", "add", "--role", "owner", "ops") // the test app's clock is in the past: no --expires
	req, _ := http.NewRequest(http.MethodGet, base+"api/v1/admins", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"bob"`) {
		t.Errorf("API with the new token: %d %s", resp.StatusCode, body)
	}
	out, _ = cli("", "audit")
	for _, w := range []string{`admin +127\.0\.0\.1 +- +signin +admin:admin`, `cli +control socket +- +admin\.add +admin:bob +role viewer`,
		`cli +control socket +- +token\.add +token:ops`, `popgate serve +local +- +admin\.add +admin:admin +role owner; the first admin`} {
		if !regexp.MustCompile(w).MatchString(out) {
			t.Errorf("audit lacks %s:\n%s", w, out)
		}
	}
	// A bare word finds its family; a refused attempt is recorded.
	if out, _ = cli("", "audit", "--action", "admin"); !strings.Contains(out, "admin.add") || strings.Contains(out, "token.add") || strings.Contains(out, "signin") {
		t.Errorf("audit --action admin:\n%s", out)
	}
	watch, _ := cli("", "token", "add", "--role", "viewer", "watch")
	req, _ = http.NewRequest(http.MethodPost, base+"api/v1/tenants", strings.NewReader(`{"name":"acme"}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(watch))
	if resp, err = client.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer adding a tenant: %d", resp.StatusCode)
	}
	if out, _ = cli("", "audit", "--action", "denied"); !regexp.MustCompile(`token:watch +127\.0\.0\.1 +- +denied`).MatchString(out) || !strings.Contains(out, "POST /api/v1/tenants: token:watch (role viewer) may not do this") {
		t.Errorf("audit --action denied:\n%s", out)
	}
	stop()
	if strings.Contains(logs.String(), password) {
		t.Error("the first admin's password is in the log")
	}

	// A restart finds the admin and prints nothing.
	_, stopCapture = captureStderr(t)
	logs, stop = start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ta := newTestApp(t, nil)
		if ta.runArgs("status", "--data-dir", dir) == exitOK {
			break
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("serve did not come back; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if rest := stopCapture(); rest != "" {
		t.Errorf("restart printed %q", rest)
	}
}

// TestServeTLSSettings: --tls-cert and --tls-key (env POPGATE_TLS_CERT, config key tls_cert)
// reach ServeConfig, and only together.
func TestServeTLSSettings(t *testing.T) {
	ta := newTestApp(t, nil)
	sc, err := ta.loadServeConfig([]string{"--tls-cert", "/etc/popgate/web.crt", "--tls-key", "/etc/popgate/web.key"})
	if err != nil || sc.TLSCertFile != "/etc/popgate/web.crt" || sc.TLSKeyFile != "/etc/popgate/web.key" {
		t.Errorf("flags: %+v, %v", sc, err)
	}
	file := writeFile(t, "popgate.toml", "tls_cert = \"/a.crt\"\ntls_key = \"/a.key\"\n")
	if sc, err := ta.loadServeConfig([]string{"--config", file}); err != nil || sc.TLSCertFile != "/a.crt" || sc.TLSKeyFile != "/a.key" {
		t.Errorf("config file: %+v, %v", sc, err)
	}
	ta = newTestApp(t, map[string]string{"POPGATE_TLS_KEY": "/b.key"})
	_, err = ta.loadServeConfig(nil)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert and --tls-key go together") || !strings.Contains(err.Error(), "POPGATE_TLS_KEY") {
		t.Errorf("key alone: %v", err)
	}
}
