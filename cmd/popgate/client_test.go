package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skip2/go-qrcode"
)

// request is what the fake control socket saw.
type request struct {
	Method, Path, Query, ContentType, Body string
}

// answer is a canned API answer, with extra header fields when header is not nil.
type answer struct {
	status int
	body   string
	header http.Header
}

// fakeDaemon serves canned answers on <dir>/popgate.sock, keyed by "METHOD /path", and
// records every request.
type fakeDaemon struct {
	dir     string
	mu      sync.Mutex
	answers map[string]answer
	got     []request
}

// daemonCase is one command run against a fake daemon: what it answers, the requests the
// command must make, its exit status, and its whole stdout and stderr.
type daemonCase struct {
	name    string
	args    []string
	stdin   string
	answers map[string]answer
	want    []request
	code    int
	stdout  string // exact
	stderr  string // exact
}

// run runs tc's command against a fake daemon answering tc.answers and checks what it did.
func (tc daemonCase) run(t *testing.T) {
	t.Helper()
	d := startFakeDaemon(t, tc.answers)
	ta := newTestApp(t, nil)
	ta.stdin = strings.NewReader(tc.stdin)
	if code := ta.runArgs(append(tc.args, "--data-dir", d.dir)...); code != tc.code {
		t.Errorf("exit status %d, want %d; stderr %q", code, tc.code, ta.stderr)
	}
	if got := d.requests(); !slices.Equal(got, tc.want) {
		t.Errorf("requests\n%+v\nwant\n%+v", got, tc.want)
	}
	if ta.stdout.String() != tc.stdout {
		t.Errorf("stdout:\n%s\nwant:\n%s", ta.stdout, tc.stdout)
	}
	if ta.stderr.String() != tc.stderr {
		t.Errorf("stderr:\n%s\nwant:\n%s", ta.stderr, tc.stderr)
	}
}

func startFakeDaemon(t *testing.T, answers map[string]answer) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{dir: t.TempDir(), answers: answers}
	l, err := net.Listen("unix", filepath.Join(d.dir, controlSocketName))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		d.got = append(d.got, request{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Content-Type"), string(body)})
		a, ok := d.answers[r.Method+" "+r.URL.EscapedPath()]
		d.mu.Unlock()
		if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
			t.Errorf("request over %s, want HTTP/1.1", r.Proto)
		}
		if !ok {
			a = answer{http.StatusNotFound, `{"error":"no such route in the fake"}`, nil}
		}
		if strings.HasPrefix(a.body, "{") {
			w.Header().Set("Content-Type", "application/json")
		}
		for k, vs := range a.header {
			w.Header()[k] = vs
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return d
}

func (d *fakeDaemon) requests() []request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]request(nil), d.got...)
}

const (
	testPub    = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	testConfig = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 100.64.0.2/32, fd7a:115c:a1e0::2/128\nDNS = 100.64.0.1\nMTU = 1420\n\n[Peer]\nPublicKey = HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\nAllowedIPs = 0.0.0.0/0, ::/0\nEndpoint = vpn.example.com:51820\nPersistentKeepalive = 25\n"
	laptopJSON = `{"tenant":"acme","name":"laptop","public_key":"` + testPub + `","ipv4":"100.64.0.2","ipv6":"fd7a:115c:a1e0::2","enabled":true,"created_at":"2026-03-11T15:09:26Z","server_key":true,"groups":["eng","ops"],"online":true,"endpoint":"198.51.100.4:40000","last_handshake":"2026-03-14T15:07:20Z","rx_bytes":1572864,"tx_bytes":512}`
	officeJSON = `{"tenant":"acme","name":"office-gw","public_key":"` + testPub + `","ipv4":"100.64.0.4","ipv6":"fd7a:115c:a1e0::4","enabled":true,"created_at":"2026-03-14T15:09:00Z","server_key":true,"site":"office","site_prefixes":["10.10.0.0/24","10.20.0.0/16"],"online":false,"rx_bytes":0,"tx_bytes":0}`
	phoneJSON  = `{"tenant":"acme","name":"phone","public_key":"` + testPub + `","ipv4":"100.64.0.3","ipv6":"fd7a:115c:a1e0::3","enabled":false,"created_at":"2026-03-14T15:09:00Z","server_key":false,"online":false,"rx_bytes":0,"tx_bytes":0}`
	statusJSON = `{"node":{"name":"fra-1","version":"1.2.0","roles":["controller","pop","exit"],"region":"fra","started_at":"2026-03-14T12:00:00Z","uptime_seconds":11366},` +
		`"device":{"interface":"popgate0","public_key":"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=","listen_port":51820,"public_endpoint":"vpn.example.com:51820","mtu":1420,"exit_mode":"userspace","addresses":["100.64.0.1/10","fd7a:115c:a1e0::1/48"],"uapi_socket":"/var/run/wireguard/popgate0.sock","rx_bytes":3221225472,"tx_bytes":10240,"exit_sockets":130,"exit_socket_budget":18976,` +
		`"handshakes":{"initiations":120500,"routed":3,"cookie_replies":9000,"under_load":true,"queued":2,"drops":{"rate_limited":111000,"bad_mac1":495}}},` +
		`"peers":{"total":2,"enabled":1,"online":1}}`
)

// statusText is what 'popgate status' prints for statusJSON.
func statusText() string {
	return "node\n" +
		"  name:             fra-1\n" +
		"  version:          1.2.0\n" +
		"  roles:            controller, pop, exit\n" +
		"  region:           fra\n" +
		"  uptime:           3h 9m (since " + time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC).Local().Format("2006-01-02 15:04:05 MST") + ")\n" +
		"device\n" +
		"  interface:        popgate0\n" +
		"  public key:       HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\n" +
		"  listen port:      51820/udp\n" +
		"  public endpoint:  vpn.example.com:51820\n" +
		"  mtu:              1420\n" +
		"  exit mode:        userspace\n" +
		"  addresses:        100.64.0.1/10, fd7a:115c:a1e0::1/48\n" +
		"  uapi socket:      /var/run/wireguard/popgate0.sock\n" +
		"  transfer:         3.0 GiB received, 10 KiB sent\n" +
		"  exit sockets:     130 of 18976\n" +
		"  handshakes:       120500 initiations, 3 routed, 9000 cookie replies, under load: yes, 2 queued\n" +
		"  handshake drops:  bad_mac1 495, rate_limited 111000\n" +
		"peers\n" +
		"  total:            2\n" +
		"  enabled:          1\n" +
		"  online:           1\n"
}

func TestAdminCommands(t *testing.T) {
	createdJSON, _ := json.Marshal(map[string]any{"peer": json.RawMessage(laptopJSON), "config": testConfig})
	createdOwnKey, _ := json.Marshal(map[string]any{"peer": json.RawMessage(phoneJSON), "config": testConfig})
	tenantsJSON := `{"tenants":[{"name":"acme","created_at":"2026-03-14T13:09:26Z","peers":2,"split_tunnel":true,"max_flows_per_peer":10000,"max_flows":50000},` +
		`{"name":"globex","created_at":"2026-01-01T00:00:00Z","peers":0,"max_flows_per_peer":4096,"max_flows":16384}]}`
	// The table columns and values, independent of the exact padding.
	for _, tc := range []struct {
		name    string
		args    []string
		answers map[string]answer
		want    request
		stdout  string // exact
		stderr  string // substring; "" expects none
	}{
		{
			name:    "tenant add",
			args:    []string{"tenant", "add", "acme"},
			answers: map[string]answer{"POST /api/v1/tenants": {201, `{"name":"acme","created_at":"2026-03-14T15:09:26Z","peers":0}`, nil}},
			want:    request{"POST", "/api/v1/tenants", "", "application/json", `{"name":"acme"}`},
			stderr:  "tenant acme added",
		},
		{
			name:    "tenant list",
			args:    []string{"tenant", "list"},
			answers: map[string]answer{"GET /api/v1/tenants": {200, tenantsJSON, nil}},
			want:    request{"GET", "/api/v1/tenants", "", "", ""},
			stdout: "NAME    PEERS  SPLIT-TUNNEL  FLOWS/PEER  FLOWS  REGIONS  CREATED\n" +
				"acme    2      on            10000       50000  all      2h ago\n" +
				"globex  0      off           4096        16384  all      72d ago\n",
		},
		{
			name:    "tenant list --json",
			args:    []string{"tenant", "list", "--json"},
			answers: map[string]answer{"GET /api/v1/tenants": {200, `{"tenants":[{"name":"acme","created_at":"2026-03-14T13:09:26Z","peers":2}]}`, nil}},
			want:    request{"GET", "/api/v1/tenants", "", "", ""},
			stdout:  "{\n  \"tenants\": [\n    {\n      \"name\": \"acme\",\n      \"created_at\": \"2026-03-14T13:09:26Z\",\n      \"peers\": 2\n    }\n  ]\n}\n",
		},
		{
			name:    "tenant remove",
			args:    []string{"tenant", "remove", "acme"},
			answers: map[string]answer{"DELETE /api/v1/tenants/acme": {204, "", nil}},
			want:    request{"DELETE", "/api/v1/tenants/acme", "", "", ""},
			stderr:  "tenant acme removed",
		},
		{
			name:    "peer add",
			args:    []string{"peer", "add", "laptop", "--tenant", "acme"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers": {201, string(createdJSON), nil}},
			want:    request{"POST", "/api/v1/tenants/acme/peers", "", "application/json", `{"name":"laptop"}`},
			stdout:  testConfig,
			stderr:  "peer laptop added to tenant acme with addresses 100.64.0.2 and fd7a:115c:a1e0::2; in groups eng, ops\n",
		},
		{
			name:    "peer add with own key",
			args:    []string{"peer", "add", "--tenant", "acme", "--public-key", testPub, "phone"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers": {201, string(createdOwnKey), nil}},
			want:    request{"POST", "/api/v1/tenants/acme/peers", "", "application/json", `{"name":"phone","public_key":"` + testPub + `"}`},
			stdout:  testConfig,
			stderr:  "the config has no private key",
		},
		{
			name:    "peer list",
			args:    []string{"peer", "list"},
			answers: map[string]answer{"GET /api/v1/peers": {200, `{"peers":[` + laptopJSON + `,` + phoneJSON + `,` + officeJSON + `]}`, nil}},
			want:    request{"GET", "/api/v1/peers", "", "", ""},
			stdout: "TENANT  NAME       IPV4        IPV6               GROUPS   SITE    STATE     ONLINE  LAST-HANDSHAKE  RX       TX\n" +
				"acme    laptop     100.64.0.2  fd7a:115c:a1e0::2  eng,ops  -       enabled   yes     2m ago          1.5 MiB  512 B\n" +
				"acme    phone      100.64.0.3  fd7a:115c:a1e0::3  -        -       disabled  no      never           0 B      0 B\n" +
				"acme    office-gw  100.64.0.4  fd7a:115c:a1e0::4  -        office  enabled   no      never           0 B      0 B\n",
		},
		{
			name:    "peer list of a tenant",
			args:    []string{"peer", "list", "--json", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/peers": {200, `{"peers":[]}`, nil}},
			want:    request{"GET", "/api/v1/peers", "tenant=acme", "", ""},
			stdout:  "{\n  \"peers\": []\n}\n",
		},
		{
			name:    "peer list empty",
			args:    []string{"peer", "list"},
			answers: map[string]answer{"GET /api/v1/peers": {200, `{"peers":[]}`, nil}},
			want:    request{"GET", "/api/v1/peers", "", "", ""},
			stderr:  "no peers yet",
		},
		{
			name:    "peer config",
			args:    []string{"peer", "config", "--tenant", "acme", "laptop"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/peers/laptop/config": {200, testConfig, nil}},
			want:    request{"GET", "/api/v1/tenants/acme/peers/laptop/config", "", "", ""},
			stdout:  testConfig,
		},
		{
			name:    "peer show",
			args:    []string{"peer", "show", "laptop", "--tenant", "acme"},
			answers: map[string]answer{"GET /api/v1/tenants/acme/peers/laptop": {200, laptopJSON, nil}},
			want:    request{"GET", "/api/v1/tenants/acme/peers/laptop", "", "", ""},
			stdout: "tenant:              acme\n" +
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
				"transfer:            1.5 MiB received, 512 B sent\n",
		},
		{
			name:    "peer disable",
			args:    []string{"peer", "disable", "--tenant", "acme", "laptop"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers/laptop/disable": {200, laptopJSON, nil}},
			want:    request{"POST", "/api/v1/tenants/acme/peers/laptop/disable", "", "", ""},
			stderr:  "peer laptop of tenant acme disabled",
		},
		{
			name:    "peer enable",
			args:    []string{"peer", "enable", "laptop", "--tenant=acme"},
			answers: map[string]answer{"POST /api/v1/tenants/acme/peers/laptop/enable": {200, laptopJSON, nil}},
			want:    request{"POST", "/api/v1/tenants/acme/peers/laptop/enable", "", "", ""},
			stderr:  "peer laptop of tenant acme enabled",
		},
		{
			name:    "peer remove",
			args:    []string{"peer", "remove", "--tenant", "acme", "laptop"},
			answers: map[string]answer{"DELETE /api/v1/tenants/acme/peers/laptop": {204, "", nil}},
			want:    request{"DELETE", "/api/v1/tenants/acme/peers/laptop", "", "", ""},
			stderr:  "peer laptop removed from tenant acme",
		},
		{
			name:    "status",
			args:    []string{"status"},
			answers: map[string]answer{"GET /api/v1/status": {200, statusJSON, nil}},
			want:    request{"GET", "/api/v1/status", "", "", ""},
			stdout:  statusText(),
		},
		{
			// A state the data plane did not apply is shown; one it applied is not.
			name: "status with a desired state not applied",
			args: []string{"status"},
			answers: map[string]answer{"GET /api/v1/status": {200, strings.TrimSuffix(statusJSON, "}") +
				`,"desired":{"generation":42,"applied":40,"error":"apply generation 42: tenant acme: too many open files"}}`, nil}},
			want: request{"GET", "/api/v1/status", "", "", ""},
			stdout: strings.Replace(statusText(), "peers\n", "desired state\n"+
				"  generation:       42 stored, 40 applied\n"+
				"  not applied:      apply generation 42: tenant acme: too many open files\n"+
				"peers\n", 1),
		},
		{
			name: "status with backbone links",
			args: []string{"status"},
			answers: map[string]answer{"GET /api/v1/status": {200, strings.TrimSuffix(statusJSON, "}") +
				`,"backbone":{"port":51821,"public_key":"bbkey","links":[{"node":"x1","node_id":3,"state":"up","rtt_us":1250,"loss_percent":2},{"node_id":4,"state":"unknown","loss_percent":0}]}}`, nil}},
			want: request{"GET", "/api/v1/status", "", "", ""},
			stdout: strings.Replace(statusText(), "device\n", "backbone\n"+
				"  port:             51821/udp\n"+
				"  public key:       bbkey\n"+
				"  link x1:          up, rtt 1.2 ms, loss 2%\n"+
				"  link node 4:      unknown, rtt 0.0 ms, loss 0%\n"+
				"device\n", 1),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startFakeDaemon(t, tc.answers)
			ta := newTestApp(t, nil)
			if code := ta.runArgs(append(tc.args, "--data-dir", d.dir)...); code != exitOK {
				t.Fatalf("exit status %d, stderr %q", code, ta.stderr)
			}
			got := d.requests()
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("requests %+v, want [%+v]", got, tc.want)
			}
			if ta.stdout.String() != tc.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", ta.stdout, tc.stdout)
			}
			if tc.stderr == "" && ta.stderr.Len() > 0 || !strings.Contains(ta.stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want %q", ta.stderr, tc.stderr)
			}
		})
	}
}

func TestDataDirFromEnv(t *testing.T) {
	d := startFakeDaemon(t, map[string]answer{"GET /api/v1/status": {200, statusJSON, nil}})
	ta := newTestApp(t, map[string]string{"POPGATE_DATA_DIR": d.dir})
	if code := ta.runArgs("status", "--json"); code != exitOK {
		t.Fatalf("exit status %d: %s", code, ta.stderr)
	}
	var st map[string]any
	if err := json.Unmarshal(ta.stdout.Bytes(), &st); err != nil || st["node"] == nil {
		t.Errorf("status --json printed %q (%v)", ta.stdout, err)
	}
	// --data-dir beats the environment.
	ta = newTestApp(t, map[string]string{"POPGATE_DATA_DIR": d.dir})
	other := t.TempDir()
	if code := ta.runArgs("status", "--data-dir", other); code != exitRuntime {
		t.Errorf("exit status %d", code)
	}
	checkOneErrorLine(t, ta.stderr.String(), "data dir "+other)
}

func TestAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer answer
		want   string
	}{
		{"conflict", answer{409, `{"error":"tenant \"acme\" already exists"}`, nil}, `popgate: tenant "acme" already exists` + "\n"},
		{"not JSON", answer{502, "<html>bad gateway</html>", nil}, `popgate: popgate serve answered POST /api/v1/tenants with 502 Bad Gateway: "<html>bad gateway</html>"` + "\n"},
		{"multi-line message", answer{400, `{"error":"bad name\nuse letters"}`, nil}, "popgate: bad name use letters\n"},
		{"disk full", answer{507, `{"error":"the disk holding the database is full: free space on /var/lib/popgate and retry; nothing was changed"}`, nil},
			"popgate: the disk holding the database is full: free space on /var/lib/popgate and retry; nothing was changed\n"},
		{"too large", answer{413, `{"error":"the request body is larger than 64 KiB (65536 bytes), the most this API takes: every JSON body of this API is small: check what is being sent"}`, nil},
			"popgate: the request body is larger than 64 KiB (65536 bytes), the most this API takes: every JSON body of this API is small: check what is being sent\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startFakeDaemon(t, map[string]answer{"POST /api/v1/tenants": tc.answer})
			ta := newTestApp(t, nil)
			if code := ta.runArgs("tenant", "add", "acme", "--data-dir", d.dir); code != exitRuntime {
				t.Errorf("exit status %d, want %d", code, exitRuntime)
			}
			if ta.stderr.String() != tc.want {
				t.Errorf("stderr %q, want %q", ta.stderr, tc.want)
			}
			if ta.stdout.Len() != 0 {
				t.Errorf("stdout %q", ta.stdout)
			}
		})
	}
}

func TestNoDaemon(t *testing.T) {
	stale := t.TempDir()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(stale, controlSocketName), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // leaves a socket file nobody listens on

	for name, dir := range map[string]string{
		"no socket":    t.TempDir(),
		"no data dir":  filepath.Join(t.TempDir(), "absent"),
		"stale socket": stale,
	} {
		t.Run(name, func(t *testing.T) {
			ta := newTestApp(t, nil)
			if code := ta.runArgs("peer", "list", "--data-dir", dir); code != exitRuntime {
				t.Errorf("exit status %d, want %d", code, exitRuntime)
			}
			want := "popgate: no popgate serve is running with data dir " + dir + " (nothing listens on " +
				filepath.Join(dir, "popgate.sock") + "): start it with 'popgate serve' (or 'make run')\n"
			if ta.stderr.String() != want {
				t.Errorf("stderr %q\nwant   %q", ta.stderr, want)
			}
		})
	}
}

func TestSocketPermission(t *testing.T) {
	c := newControlClient("/var/lib/popgate", time.Second)
	err := c.connError(&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)})
	want := "permission denied on /var/lib/popgate/popgate.sock: run this command as the user that runs 'popgate serve' (or as root)"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if os.Geteuid() == 0 {
		return // root passes the permission check; the fake error above covers the message
	}
	d := startFakeDaemon(t, nil)
	if err := os.Chmod(filepath.Join(d.dir, controlSocketName), 0); err != nil {
		t.Fatal(err)
	}
	ta := newTestApp(t, nil)
	if code := ta.runArgs("status", "--data-dir", d.dir); code != exitRuntime {
		t.Errorf("exit status %d", code)
	}
	checkOneErrorLine(t, ta.stderr.String(), "permission denied", "user that runs 'popgate serve'")
}

func TestTimeout(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, controlSocketName))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	defer close(release)

	ta := newTestApp(t, nil)
	ta.timeout = 50 * time.Millisecond
	if code := ta.runArgs("status", "--data-dir", dir); code != exitRuntime {
		t.Errorf("exit status %d", code)
	}
	checkOneErrorLine(t, ta.stderr.String(), "popgate serve did not answer on "+filepath.Join(dir, "popgate.sock")+" within 50ms")
}

// TestQR: --qr prints the config as a QR code and nothing else on stdout. The printed blocks
// are read back into modules and compared with the QR code of the config.
func TestQR(t *testing.T) {
	createdJSON, _ := json.Marshal(map[string]any{"peer": json.RawMessage(laptopJSON), "config": testConfig})
	d := startFakeDaemon(t, map[string]answer{
		"GET /api/v1/tenants/acme/peers/laptop/config": {200, testConfig, nil},
		"POST /api/v1/tenants/acme/peers":              {201, string(createdJSON), nil},
	})
	want, err := qrcode.New(testConfig, qrcode.Low)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"peer", "config", "--qr", "--tenant", "acme", "laptop"},
		{"peer", "add", "laptop", "--qr", "--tenant", "acme"},
	} {
		t.Run(args[1], func(t *testing.T) {
			ta := newTestApp(t, nil)
			if code := ta.runArgs(append(args, "--data-dir", d.dir)...); code != exitOK {
				t.Fatalf("exit status %d: %s", code, ta.stderr)
			}
			out := ta.stdout.String()
			if !strings.Contains(out, "█") || strings.Contains(out, "PrivateKey") {
				t.Fatalf("stdout is not a QR code:\n%s", out)
			}
			got := readSmallQR(t, out)
			if !equalBitmaps(got, want.Bitmap()) {
				t.Errorf("the printed QR code is not the code of the config:\n%s", out)
			}
		})
	}
}

// readSmallQR turns ToSmallString output (two module rows per text row, light modules
// drawn) back into modules, true for dark.
func readSmallQR(t *testing.T, s string) [][]bool {
	t.Helper()
	var rows [][]bool
	for line := range strings.Lines(s) {
		line = strings.TrimSuffix(line, "\n")
		top, bottom := []bool{}, []bool{}
		for _, r := range line {
			switch r {
			case ' ':
				top, bottom = append(top, true), append(bottom, true)
			case '█':
				top, bottom = append(top, false), append(bottom, false)
			case '▀':
				top, bottom = append(top, false), append(bottom, true)
			case '▄':
				top, bottom = append(top, true), append(bottom, false)
			default:
				t.Fatalf("unexpected %q in QR output", r)
			}
		}
		rows = append(rows, top, bottom)
	}
	return rows
}

// equalBitmaps compares a read-back code with the original; the last read row may be padding
// when the code has an odd number of rows.
func equalBitmaps(got, want [][]bool) bool {
	if len(got) != len(want) && len(got) != len(want)+1 {
		return false
	}
	for y := range want {
		if len(got[y]) != len(want[y]) {
			return false
		}
		for x := range want[y] {
			if got[y][x] != want[y][x] {
				return false
			}
		}
	}
	return true
}
