package webui

import (
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// demoData fills the harness's node through the pages, as an owner would: tenants, peers
// with groups, a site with routes, a policy. The audit log fills with it.
func demoData(t *testing.T, h *uiHarness) {
	t.Helper()
	h.check(owner, "POST", "/tenants", form("name", "globex"), http.StatusSeeOther)
	h.check(owner, "POST", "/tenants", form("name", "initech"), http.StatusSeeOther)
	peers := []struct{ tenant, name, groups, site, prefixes string }{
		{"acme", "alice-laptop", "eng, laptops", "", ""},
		{"acme", "alice-phone", "eng", "", ""},
		{"acme", "bob-laptop", "eng, laptops", "", ""},
		{"acme", "carol-desktop", "sales", "", ""},
		{"acme", "dave-phone", "sales", "", ""},
		{"acme", "erin-laptop", "ops, laptops", "", ""},
		{"acme", "build-01", "servers", "", ""},
		{"acme", "build-02", "servers", "", ""},
		{"acme", "office-gw", "", "office", "10.10.0.0/24\n10.10.1.0/24"},
		{"acme", "frank-tablet", "sales", "", ""},
		{"acme", "grace-laptop", "eng", "", ""},
		{"bravo", "reception", "", "", ""},
		{"bravo", "ceo-phone", "exec", "", ""},
		{"bravo", "warehouse-gw", "", "warehouse", "192.168.50.0/24"},
		{"globex", "hank-laptop", "eng", "", ""},
		{"globex", "ivy-phone", "", "", ""},
	}
	for _, p := range peers {
		h.check(owner, "POST", "/peers", form("tenant", p.tenant, "name", p.name, "groups", p.groups, "site", p.site, "site_prefixes", p.prefixes), http.StatusSeeOther)
	}
	h.check(owner, "POST", "/tenants/acme/peers/frank-tablet/disable", form(), http.StatusSeeOther)
	h.check(owner, "POST", "/tenants/acme/peers/alice-laptop/expiry", form("expires", time.Now().AddDate(0, 2, 0).Format(time.DateOnly)), http.StatusSeeOther)
	ctx := context.Background()
	for _, a := range []store.NewAdmin{
		{Name: "olivia", Role: "owner"},
		{Name: "alice", Role: "tenant_admin", Tenant: "acme"},
		{Name: "bob", Role: "tenant_admin", Tenant: "bravo"},
		{Name: "victor", Role: "viewer"},
	} {
		if _, _, err := addAdmin(ctx, h.store, a); err != nil {
			t.Fatal(err)
		}
	}
	h.check(owner, "POST", "/tenants/acme/routes", form("prefix", "10.10.0.0/23", "via", "site:office"), http.StatusSeeOther)
	h.check(owner, "POST", "/tenants/acme/routes", form("prefix", "192.0.2.0/24", "via", "internet"), http.StatusSeeOther)
	h.check(owner, "POST", "/tenants/acme/split-tunnel", form("split_tunnel", "on"), http.StatusSeeOther)
	h.check(owner, "POST", "/tenants/acme/dns/zones", form("zone", "corp.acme.example", "servers", "10.10.0.53, 10.10.1.53"), http.StatusSeeOther)
	h.check(owner, "POST", "/tenants/acme/dns/zones", form("zone", "10.in-addr.arpa", "servers", "10.10.0.53"), http.StatusSeeOther)
	h.check(owner, "POST", "/tenants/acme/dns/upstreams", form("upstreams", "tls://dns.quad9.net@9.9.9.9, tls://dns.quad9.net@149.112.112.112"), http.StatusSeeOther)
	h.check(owner, "POST", "/tenants/acme/dns/log/enable", form("keep", "48h"), http.StatusSeeOther)
	lists := startListServer(t, "# ads and trackers\n0.0.0.0 ads.tracker-network.example\n0.0.0.0 pixel.tracker-network.example\n127.0.0.1 localhost\n")
	h.check(owner, "POST", "/tenants/acme/dns/blocklists", form("name", "ads", "url", lists.URL+"/list", "every", "12h"), http.StatusSeeOther)
	if _, err := h.ctrl.UploadBlocklist(context.Background(), "acme", "phishing", strings.NewReader("login-acme.example\nacme-payroll.example\n"), true); err != nil {
		t.Fatal(err)
	}
	acme, _ := h.store.Tenant(context.Background(), "acme")
	var logged []store.DNSLogEntry
	start := time.Now()
	for i, q := range []struct{ peer, client, name, typ, outcome, rcode string }{
		{"alice-laptop", "100.64.0.5", "www.example.com", "A", "forwarded", "NOERROR"},
		{"alice-laptop", "100.64.0.5", "www.example.com", "AAAA", "forwarded", "NOERROR"},
		{"bob-laptop", "100.64.0.7", "git.corp.acme.example", "A", "split", "NOERROR"},
		{"bob-laptop", "100.64.0.7", "build-01.acme.internal", "A", "local", "NOERROR"},
		{"", "10.10.0.20", "wiki.corp.acme.example", "A", "split", "NXDOMAIN"},
		{"carol-desktop", "100.64.0.8", "www.example.com", "A", "cache", "NOERROR"},
		{"carol-desktop", "100.64.0.8", "ads.tracker-network.example", "A", "blocked", "NXDOMAIN"},
	} {
		logged = append(logged, store.DNSLogEntry{TenantID: acme.ID, At: start.Add(time.Duration(i) * time.Millisecond), Node: "pop-test-1", Peer: q.peer,
			Client: netip.MustParseAddr(q.client), Name: q.name, Type: q.typ, Outcome: q.outcome, Rcode: q.rcode, Latency: time.Duration(300+i*4100) * time.Microsecond})
	}
	if _, err := h.store.AddDNSLog(context.Background(), logged); err != nil {
		t.Fatal(err)
	}
	h.check(owner, "POST", "/tenants/acme/policy", form("policy", `# acme: engineers reach the office and the build servers
default deny
allow group:eng -> site:office tcp 22,443
allow group:eng -> group:servers tcp 22,8080
allow group:sales -> site:office tcp 443
allow group:ops -> any
allow any -> 0.0.0.0/0, ::/0          # the internet
`), http.StatusSeeOther)
}

// demoChecks adds a region and checks with a day of results: a resolver that failed for a
// quarter of an hour, a tenant's site whose latency climbs, a check that has not run yet.
// They run from region fra, which has no PoP: the harness's node runs none (it would ask the
// host's resolvers), the results are made up.
func demoChecks(t *testing.T, h *uiHarness) {
	t.Helper()
	ctx := context.Background()
	if _, err := h.ctrl.AddRegion(ctx, "fra", "vpn-fra.example.com:51820"); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, req := range []control.AddCheckRequest{
		{Name: "resolver", Kind: store.CheckDNS, Target: "www.example.com", From: "region:fra"},
		{Tenant: "acme", Name: "intranet", Kind: store.CheckHTTP, Target: "https://intranet.acme.example/health", Expect: "204", Every: 30 * time.Second, From: "region:fra"},
		{Name: "status-page", Kind: store.CheckHTTP, Target: "https://status.example.com/", From: "region:fra"},
	} {
		c, err := h.ctrl.AddCheck(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	now := time.Now().Truncate(time.Minute)
	var rs []store.CheckResult
	for i := range 24 * 60 {
		at := now.Add(-time.Duration(i) * time.Minute)
		r := store.CheckResult{Check: ids[0], Node: 1, Minute: at, OK: 1, LatencyP50: time.Duration(8+(i*7)%5) * time.Millisecond,
			LatencyMax: 15 * time.Millisecond, Detail: "93.184.215.14, 2606:2800:21f:cb07:6820:80da:af6b:8b2c via 9.9.9.9:53"}
		if i > 300 && i < 316 {
			r.OK, r.Failed, r.LatencyP50, r.LatencyMax, r.Error, r.Detail = 0, 1, 0, 0, "9.9.9.9:53: no answer in time", ""
		}
		rs = append(rs, r)
		lat := time.Duration(40+i%13+(24*60-i)/20) * time.Millisecond
		rs = append(rs, store.CheckResult{Check: ids[1], Node: 1, Minute: at, OK: 2, LatencyP50: lat, LatencyMax: lat + 30*time.Millisecond, Detail: "204 No Content"})
	}
	if err := h.store.RecordCheckResults(ctx, rs); err != nil {
		t.Fatal(err)
	}
}

// TestScreenshots renders the main pages with headless Chromium, light and dark, desktop and
// phone, into $POPGATE_SCREENSHOTS (skipped when unset or without chromium). Look at them.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("POPGATE_SCREENSHOTS")
	if dir == "" {
		t.Skip("set POPGATE_SCREENSHOTS=<dir> to render screenshots")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium: apt-get install -y --no-install-recommends chromium")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := newUIHarness(t)
	demoData(t, h)
	demoChecks(t, h)
	live := &livePeers{uiBackend: h.ctrl, now: time.Now()}
	ui, err := newUI(live, h.store, h.audit, h.ui.log)
	if err != nil {
		t.Fatal(err)
	}
	ui.setSources(sources{Admins: h.store, AuditLog: h.store, Links: h.ctrl, Lifecycle: h.ctrl})
	h.use(ui)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		as := owner
		if r.URL.Query().Get("as") == "alice" {
			as = acmeAdmin
		}
		// The server's policy (server.go): the pages must work under it.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
		// The auth side's pages, rendered by ours.
		switch r.URL.Path {
		case "/login":
			ui.RenderLogin(w, r, http.StatusOK, LoginPage{Name: "olivia", Error: "Wrong name or password.", Next: "/peers"})
			return
		case "/account":
			ui.RenderAccount(w, r.WithContext(WithPrincipal(r.Context(), as)), http.StatusOK, AccountPage{Name: "olivia", Role: RoleOwner, Sessions: 2, Enrolling: true,
				TOTPSecret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", TOTPQRPath: "/tenants/acme/peers/alice-phone/config/qr.png?region=local"})
			return
		}
		h.mux.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), as)))
	}))
	defer srv.Close()

	// A one-time link for its landing page.
	body := h.check(owner, "POST", "/tenants/acme/peers/alice-phone/config/link", form("ttl", "24h"), http.StatusOK, "/dl/")
	link := regexp.MustCompile(`/dl/[A-Za-z0-9_-]+`).FindString(body)

	pages := []struct {
		name, path string
		height     int
	}{
		{"dashboard", "/", 1050},
		{"peers", "/peers", 1000},
		{"peers-tenant", "/peers?tenant=acme&sort=-rx", 900},
		{"peer", "/tenants/acme/peers/alice-laptop", 1350},
		{"peer-new", "/peers/new?tenant=acme", 1000},
		{"peer-new-errors", "", 1000},
		{"peer-config", "/tenants/acme/peers/alice-laptop/config?ok=peer-created", 1000},
		{"tenants", "/tenants", 800},
		{"policy", "/tenants/acme/policy", 1250},
		{"policy-errors", "", 1100},
		{"routes", "/tenants/acme/routes", 800},
		{"dns", "/tenants/acme/dns", 2600},
		{"audit", "/audit", 1000},
		{"admins", "/admins", 600},
		{"network", "/network", 1400},
		{"link", link, 600},
		{"error-404", "/tenants/nope/peers/x", 500},
		{"login", "/login", 600},
		{"account", "/account", 900},
	}
	// Pages that are the answer to a refused POST are saved as files and shown from there.
	refused := map[string]string{
		"peer-new-errors": h.check(owner, "POST", "/peers", form("tenant", "acme", "name", strings.Repeat("x", 70), "public_key", "not-a-key", "groups", "eng, bad group!", "site", "lab", "site_prefixes", "10.20.0.1/24"), http.StatusUnprocessableEntity),
		"policy-errors":   h.check(owner, "POST", "/tenants/acme/policy", form("policy", "default deny\nallow group:eng -> site:office tpc 22\nallow group:nobody -> any\nallow any => any\n"), http.StatusUnprocessableEntity),
	}
	tmp := t.TempDir()
	shoot := func(name, url string, width, height int, dark bool) {
		out := filepath.Join(dir, name+".png")
		args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--hide-scrollbars", "--user-data-dir=" + filepath.Join(tmp, name), "--enable-logging=stderr", "--v=0",
			fmt.Sprintf("--window-size=%d,%d", width, height), "--screenshot=" + out}
		if dark {
			args = append(args, "--force-dark-mode")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		b, err := exec.CommandContext(ctx, chromium, append(args, url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("chromium %s: %v\n%s", name, err, b)
		}
		for line := range strings.Lines(string(b)) {
			if strings.Contains(line, "Content Security Policy") || strings.Contains(line, "CONSOLE") {
				t.Errorf("%s: %s", name, line)
			}
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := png.Decode(f); err != nil {
			t.Errorf("%s: %v", out, err)
		}
	}
	for _, p := range pages {
		url := srv.URL + p.path
		if body, ok := refused[p.name]; ok {
			// Point the saved page's assets at the server.
			file := filepath.Join(tmp, p.name+".html")
			body = strings.ReplaceAll(body, `"/static/`, `"`+srv.URL+`/static/`)
			if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			url = "file://" + file
		}
		shoot(p.name, url, 1280, p.height, false)
		shoot(p.name+"-dark", url, 1280, p.height, true)
	}
	for _, p := range []string{"dashboard", "peers", "peer", "peer-config", "network"} {
		for _, pg := range pages {
			if pg.name == p {
				shoot(p+"-phone", srv.URL+pg.path, 390, 1100, false)
				shoot(p+"-phone-dark", srv.URL+pg.path, 390, 1100, true)
			}
		}
	}
	shoot("peers-alice", srv.URL+"/peers?as=alice", 1280, 900, false)
}
