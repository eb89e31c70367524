package webui

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestUIBadInput sends every form bad values: each answer is the form again with the error
// next to the field (aria-invalid, field-error) and nothing is stored.
func TestUIBadInput(t *testing.T) {
	h := newUIHarness(t)
	ctx := context.Background()
	long := strings.Repeat("x", 200)
	policyBefore, _, _ := h.ctrl.Policy(ctx, "acme")
	// A list uploaded before (not audited: the test's setup), and a source that is gone.
	if _, err := h.ctrl.UploadBlocklist(setup(), "acme", "mine", strings.NewReader("one.example\n"), true); err != nil {
		t.Fatal(err)
	}
	gone := startListServer(t, "")
	gone.set("", http.StatusNotFound)
	for _, c := range []struct {
		path string
		form []string
		want []string
	}{
		// Tenants.
		{"/tenants", []string{"name", long}, []string{"at most 32 are allowed", `aria-invalid="true"`, `aria-describedby="tenant-name-error"`}},
		{"/tenants", []string{"name", "Ac me"}, []string{"is not allowed"}},
		{"/tenants", []string{"name", ""}, []string{"field-error"}},
		{"/tenants", []string{"name", "acme"}, []string{"already exists"}},
		// Peers.
		{"/peers", []string{"tenant", "acme", "name", long}, []string{"at most 64 are allowed", `value="` + long + `"`}},
		{"/peers", []string{"tenant", "acme", "name", "bad name"}, []string{"is not allowed"}},
		{"/peers", []string{"tenant", "acme", "name", "laptop"}, []string{"already exists"}},
		{"/peers", []string{"tenant", "", "name", "ok"}, []string{"Choose the tenant"}},
		{"/peers", []string{"tenant", "acme", "name", "ok", "public_key", "not-a-key"}, []string{"is not a WireGuard key", `value="not-a-key"`}},
		{"/peers", []string{"tenant", "acme", "name", "ok", "public_key", strings.Repeat("A", 43) + "="}, []string{"not usable by WireGuard"}},
		{"/peers", []string{"tenant", "acme", "name", "ok", "groups", "eng, b@d"}, []string{"group name", "b@d"}},
		{"/peers", []string{"tenant", "acme", "name", "ok", "groups", strings.Repeat("g ", 40)}, []string{"at most 32 are allowed"}},
		{"/peers", []string{"tenant", "acme", "name", "ok", "site", "lab", "site_prefixes", "banana"}, []string{"is not a CIDR prefix"}},
		{"/peers", []string{"tenant", "acme", "name", "ok", "site", "lab", "site_prefixes", "10.20.0.1/24"}, []string{"has host bits set: write 10.20.0.0/24"}},
		{"/peers", []string{"tenant", "acme", "name", "ok", "site", "lab"}, []string{"Give the site&#39;s LAN prefixes"}},
		{"/peers", []string{"tenant", "acme", "name", "ok", "site_prefixes", "10.20.0.0/24"}, []string{"Name the site"}},
		{"/peers", []string{"tenant", "acme", "name", "ok", "site", "lab", "site_prefixes", "100.64.0.0/16"}, []string{"overlaps the overlay network"}},
		// Peer changes.
		{"/tenants/acme/peers/laptop/groups", []string{"groups", "ok, not ok!"}, []string{"group name"}},
		{"/tenants/acme/peers/laptop/site", []string{"site", "lab", "site_prefixes", "10.0.0.0/33"}, []string{"is not a CIDR prefix"}},
		{"/tenants/acme/peers/laptop/rename", []string{"name", long}, []string{"at most 64 are allowed"}},
		{"/tenants/acme/peers/laptop/rename", []string{"name", "-x"}, []string{"starting with a letter or digit"}},
		{"/tenants/acme/peers/laptop/expiry", []string{"expires", "tomorrow"}, []string{"as a date"}},
		{"/tenants/acme/peers/laptop/expiry", []string{"expires", "2001-01-01"}, []string{"That day is over"}},
		// Routes.
		{"/tenants/acme/routes", []string{"prefix", "banana", "via", "internet"}, []string{"is not a CIDR prefix", `value="banana"`}},
		{"/tenants/acme/routes", []string{"prefix", "10.1.2.3/16", "via", "internet"}, []string{"write 10.1.0.0/16"}},
		{"/tenants/acme/routes", []string{"prefix", "10.1.0.0/16", "via", "site:nowhere"}, []string{"site &#34;nowhere&#34; not found"}},
		{"/tenants/acme/routes", []string{"prefix", "10.1.0.0/16", "via", "moon"}, []string{"route via"}},
		{"/tenants/acme/routes", []string{"prefix", "100.64.1.0/24", "via", "internet"}, []string{"inside the overlay network"}},
		{"/tenants/acme/routes", []string{"prefix", "0.0.0.0/0", "via", "internet"}, []string{"already has a route"}},
		{"/tenants/acme/routes/remove", []string{"prefix", "10.9.9.0/24"}, []string{"has no route"}},
		// Policy: every problem with its line; nothing saved.
		{"/tenants/acme/policy", []string{"policy", "default deny\nallow group:eng -> any tpc\nallow any => any\n"},
			[]string{"The policy was not saved", `<span class="line-no">line 2</span>`, "unknown protocol", `<pre class="source">allow group:eng -&gt; any tpc</pre>`, "line 3"}},
		{"/tenants/acme/policy", []string{"policy", "default deny\r\nallow group:nobody -> any tpc\r\n"}, []string{"line 2", "unknown protocol"}},
		{"/tenants/acme/policy", []string{"policy", "  \n"}, []string{"The policy is empty"}},
		// DNS.
		{"/tenants/acme/dns/domain", []string{"domain", "not a domain"}, []string{"field-error", `value="not a domain"`, `aria-describedby="dns-domain-error"`}},
		{"/tenants/acme/dns/domain", []string{"domain", "bravo.internal"}, []string{"another tenant"}},
		{"/tenants/acme/dns/zones", []string{"zone", "lab..example", "servers", "10.10.0.53"}, []string{"empty or too long label", `value="lab..example"`}},
		{"/tenants/acme/dns/zones", []string{"zone", "lab.example", "servers", "dns.lab.example"}, []string{"give an IP address", `value="dns.lab.example"`}},
		{"/tenants/acme/dns/zones", []string{"zone", "lab.example", "servers", ""}, []string{"at least one DNS server"}},
		{"/tenants/acme/dns/zones", []string{"zone", "lab.example", "servers", "10.9.0.53"}, []string{"10.9.0.53 is routed via internet"}},
		{"/tenants/acme/dns/zones/remove", []string{"zone", "lab.example"}, []string{"has no DNS zone lab.example"}},
		{"/tenants/acme/dns/upstreams", []string{"upstreams", "10.0.0.53"}, []string{"10.0.0.53 is not a public address", `value="10.0.0.53"`,
			`aria-invalid="true" aria-describedby="dns-upstreams-error"`, `id="dns-upstreams-error"`}},
		{"/tenants/acme/dns/upstreams", []string{"upstreams", "dns.google"}, []string{"is not an IP address"}},
		{"/tenants/acme/dns/upstreams", []string{"upstreams", "tls://9.9.9.9"}, []string{"needs the server&#39;s name"}},
		{"/tenants/acme/dns/upstreams", []string{"upstreams", "1.1.1.1, 1.0.0.1, 8.8.8.8, 8.8.4.4, 9.9.9.9"}, []string{"at most 4", `value="1.1.1.1, 1.0.0.1, 8.8.8.8, 8.8.4.4, 9.9.9.9"`}},
		{"/tenants/acme/dns/upstreams", []string{"upstreams", " "}, []string{"Give 1 to 4 upstreams"}},
		{"/tenants/acme/dns/log/enable", []string{"keep", "30m"}, []string{"&#34;30m&#34; is not a time the log may keep entries", `value="30m"`,
			`aria-invalid="true" aria-describedby="dns-log-keep-error"`, `id="dns-log-keep-error"`}},
		{"/tenants/acme/dns/log/enable", []string{"keep", "8d"}, []string{"give 1h to 7d"}},
		{"/tenants/acme/dns/log/enable", []string{"keep", "soon"}, []string{"&#34;soon&#34; is not a time"}},
		{"/tenants/acme/dns/blocklists", []string{"name", "Bad Name", "url", "https://example.com/hosts.txt"}, []string{"Blocklist name &#34;Bad Name&#34; is invalid",
			`value="Bad Name"`, `aria-invalid="true" aria-describedby="dns-blocklist-name-error"`, `id="dns-blocklist-name-error"`}},
		{"/tenants/acme/dns/blocklists", []string{"name", "ads", "url", "ftp://example.com/hosts"}, []string{"is not an http or https URL", `value="ftp://example.com/hosts"`,
			`aria-invalid="true" aria-describedby="dns-blocklist-url-error"`, `id="dns-blocklist-url-error"`}},
		{"/tenants/acme/dns/blocklists", []string{"name", "ads", "url", " "}, []string{"Give the list&#39;s http or https URL"}},
		{"/tenants/acme/dns/blocklists", []string{"name", "ads", "url", "https://example.com/hosts.txt", "every", "30m"}, []string{"&#34;30m&#34; is not how often a list may be fetched",
			`value="30m"`, `aria-invalid="true" aria-describedby="dns-blocklist-every-error"`}},
		{"/tenants/acme/dns/blocklists", []string{"name", "ads", "url", "https://example.com/hosts.txt", "every", "8d"}, []string{"give 1h to 7d"}},
		{"/tenants/acme/dns/blocklists", []string{"name", "mine", "url", gone.URL + "/list"}, []string{"exists already"}},
		{"/tenants/acme/dns/blocklists", []string{"name", "ads", "url", gone.URL + "/list"}, []string{"answered 404 Not Found", "nothing was added",
			`aria-describedby="dns-blocklist-url-error"`, `value="` + gone.URL + `/list"`}},
		{"/tenants/acme/dns/blocklists/refresh", []string{"name", "mine"}, []string{"was uploaded from a file"}},
		{"/tenants/acme/dns/blocklists/refresh", []string{"name", "nope"}, []string{"Blocklist &#34;nope&#34; of tenant &#34;acme&#34; not found"}},
		{"/tenants/acme/dns/blocklists/remove", []string{"name", "nope"}, []string{"not found"}},
		// Deleting.
		{"/tenants/acme/delete", []string{"confirm", "acm"}, []string{"Type the tenant&#39;s name"}},
		{"/tenants/acme/delete", []string{"confirm", "acme"}, []string{"still has 1 peer"}},
	} {
		body := h.check(owner, "POST", c.path, form(c.form...), http.StatusUnprocessableEntity, c.want...)
		if !strings.Contains(body, "field-error") && !strings.Contains(body, "flash err") {
			t.Errorf("POST %s %q: no inline error", c.path, c.form)
		}
	}

	// Nothing was stored.
	ts, _ := h.ctrl.ListTenants(ctx)
	if len(ts) != 2 {
		t.Errorf("tenants after refused forms: %v", ts)
	}
	ps, _ := h.ctrl.ListPeers(ctx, "acme")
	if len(ps) != 1 || ps[0].Name != "laptop" || !slices.Equal(ps[0].Groups, []string{"eng"}) || ps[0].Site != "" || !ps[0].ExpiresAt.IsZero() {
		t.Errorf("acme's peers after refused forms: %+v", ps)
	}
	rs, _ := h.ctrl.Routes(ctx, "acme")
	if len(rs) != 2 {
		t.Errorf("routes after refused forms: %+v", rs)
	}
	if p, _, _ := h.ctrl.Policy(ctx, "acme"); p != policyBefore {
		t.Errorf("policy changed by refused forms: %q", p)
	}
	if ups, _ := h.ctrl.DNSUpstreams(ctx, "acme"); len(ups) != 0 {
		t.Errorf("upstreams after refused forms: %v", ups)
	}
	if set, _ := h.ctrl.DNSLogSettings(ctx, "acme"); set.Enabled {
		t.Errorf("the query log is on after refused forms: %+v", set)
	}
	// A tenant admin's list may not come from a private address (an owner's may).
	local := startListServer(t, "ads.example.com\n")
	h.check(acmeAdmin, "POST", "/tenants/acme/dns/blocklists", form("name", "ads", "url", local.URL+"/list"), http.StatusUnprocessableEntity,
		"not a public address", `aria-describedby="dns-blocklist-url-error"`)
	if bs, _ := h.ctrl.Blocklists(ctx, "acme"); len(bs) != 1 || bs[0].Name != "mine" {
		t.Errorf("blocklists after refused forms: %+v", bs)
	}
	if a := h.audit.actions(); len(a) != 0 {
		t.Errorf("refused forms were audited: %q", a)
	}
	// A form bigger than allowed is refused whole.
	h.check(owner, "POST", "/tenants", form("name", strings.Repeat("x", maxForm)), http.StatusRequestEntityTooLarge)
}

// TestUIChanges makes each change through its form and checks the result, the redirect
// and the audit entry.
func TestUIChanges(t *testing.T) {
	h := newUIHarness(t)
	ctx := context.Background()
	location := func(w interface{ Header() http.Header }) string { return w.Header().Get("Location") }
	post := func(path string, kv ...string) string {
		t.Helper()
		w := h.do(acmeAdmin, "POST", path, form(kv...))
		if w.Code != http.StatusSeeOther {
			t.Fatalf("POST %s %q: %d\n%s", path, kv, w.Code, excerpt(w.Body.String()))
		}
		return location(w)
	}
	peer := func(name string) store.Peer {
		t.Helper()
		p, err := h.ctrl.Peer(ctx, "acme", name)
		if err != nil {
			t.Fatal(err)
		}
		return p.Peer
	}

	// Owners create tenants; their page is the tenant's peers.
	w := h.do(owner, "POST", "/tenants", form("name", " charlie "))
	if w.Code != http.StatusSeeOther || location(w) != "/peers?tenant=charlie&ok=tenant-created" {
		t.Errorf("create tenant: %d %q", w.Code, location(w))
	}
	h.check(owner, "GET", location(w), nil, http.StatusOK, "Tenant created.", "<h1>charlie</h1>", "No peers yet.")

	// A peer with the server's keys, groups and a site.
	if got := post("/peers", "tenant", "acme", "name", "gw", "groups", "net, routers", "site", "office", "site_prefixes", "10.10.0.0/24\r\n10.10.1.0/24"); got != "/tenants/acme/peers/gw/config?ok=peer-created" {
		t.Errorf("create peer redirects to %q", got)
	}
	gw := peer("gw")
	if !gw.HasPrivateKey || !slices.Equal(gw.Groups, []string{"net", "routers"}) || gw.Site != "office" || len(gw.SitePrefixes) != 2 {
		t.Errorf("created peer: %+v", gw)
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/gw/config?ok=peer-created", nil, http.StatusOK, "Peer created.", "PrivateKey = ")
	// A peer from the user's public key: its config has the placeholder.
	pub := must(store.GeneratePrivateKey()).PublicKey()
	post("/peers", "tenant", "acme", "name", "phone.alice", "public_key", " "+pub.String()+"\n")
	if p := peer("phone.alice"); p.HasPrivateKey || p.PublicKey != pub {
		t.Errorf("peer from a public key: %+v", p)
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/phone.alice/config", nil, http.StatusOK, "&lt;your private key&gt;", "created from its user's public key")

	// Groups, site, enable and disable.
	post("/tenants/acme/peers/laptop/groups", "groups", "eng ops,eng")
	if g := peer("laptop").Groups; !slices.Equal(g, []string{"eng", "ops"}) {
		t.Errorf("groups: %v", g)
	}
	post("/tenants/acme/peers/laptop/groups", "groups", "")
	if g := peer("laptop").Groups; len(g) != 0 {
		t.Errorf("groups cleared: %v", g)
	}
	post("/tenants/acme/peers/laptop/site", "site", "home", "site_prefixes", "192.168.1.0/24")
	if p := peer("laptop"); p.Site != "home" {
		t.Errorf("site: %+v", p)
	}
	post("/tenants/acme/peers/laptop/site", "site", "", "site_prefixes", "")
	if p := peer("laptop"); p.Site != "" {
		t.Errorf("site cleared: %+v", p)
	}
	if got := post("/tenants/acme/peers/laptop/disable"); got != "/tenants/acme/peers/laptop?ok=peer-disabled" || peer("laptop").Enabled {
		t.Errorf("disable: %q", got)
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/laptop?ok=peer-disabled", nil, http.StatusOK, "Peer disabled", `action="/tenants/acme/peers/laptop/enable"`)
	post("/tenants/acme/peers/laptop/enable")
	if !peer("laptop").Enabled {
		t.Error("enable did not")
	}
	// Flash messages come only from the fixed set.
	body := h.check(acmeAdmin, "GET", "/tenants/acme/peers/laptop?ok=<b>pwned</b>", nil, http.StatusOK)
	if strings.Contains(body, "pwned") {
		t.Error("a link put words into the page")
	}

	// Expiry: the end of the given day, UTC; "never" clears it.
	day := time.Now().AddDate(0, 1, 0).UTC().Format(time.DateOnly)
	post("/tenants/acme/peers/laptop/expiry", "expires", day)
	want, _ := time.Parse(time.DateOnly, day)
	if got := peer("laptop").ExpiresAt; !got.Equal(want.Add(24 * time.Hour)) {
		t.Errorf("expiry %v, want the end of %s", got, day)
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/laptop", nil, http.StatusOK, `value="`+day+`"`, "Never expire")
	post("/tenants/acme/peers/laptop/expiry", "expires", day, "never", "1")
	if got := peer("laptop").ExpiresAt; !got.IsZero() {
		t.Errorf("expiry after never: %v", got)
	}

	// Rename; a peer the policy names is refused with the reason.
	if got := post("/tenants/acme/peers/laptop/rename", "name", "laptop-2"); got != "/tenants/acme/peers/laptop-2?ok=peer-renamed" {
		t.Errorf("rename redirects to %q", got)
	}
	peer("laptop-2")
	post("/tenants/acme/policy", "policy", "default deny\nallow peer:laptop-2 -> any\n")
	h.check(acmeAdmin, "POST", "/tenants/acme/peers/laptop-2/rename", form("name", "laptop-3"), http.StatusUnprocessableEntity, "named in the policy")
	pol, isDefault, _ := h.ctrl.Policy(ctx, "acme")
	if isDefault || !strings.Contains(pol, "peer:laptop-2") {
		t.Errorf("policy after save: %q", pol)
	}

	// Routes via the site; the site's peer cannot go while they use it.
	post("/tenants/acme/routes", "prefix", " 10.10.0.0/23 ", "via", "site:office")
	h.check(acmeAdmin, "GET", "/tenants/acme/routes", nil, http.StatusOK, "10.10.0.0/23", `<option value="site:office"`)
	h.check(acmeAdmin, "POST", "/tenants/acme/peers/gw/delete", form(), http.StatusUnprocessableEntity, "uses site")
	// A split zone answered by DNS servers in the site, and away again.
	if got := post("/tenants/acme/dns/zones", "zone", " Lab.Example. ", "servers", "10.10.0.53, 10.10.1.53:5353"); got != "/tenants/acme/dns?ok=dns-zone-added" {
		t.Errorf("add zone redirects to %q", got)
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/dns?ok=dns-zone-added", nil, http.StatusOK, "Zone added", "lab.example", "10.10.0.53:53, 10.10.1.53:5353")
	post("/tenants/acme/dns/zones/remove", "zone", "lab.example")
	if zs, _ := h.ctrl.DNSZones(ctx, "acme"); len(zs) != 0 {
		t.Errorf("zones after the removal: %+v", zs)
	}
	// The tenant's own upstreams, and back to the node's.
	if got := post("/tenants/acme/dns/upstreams", "upstreams", " tls://dns.quad9.net@9.9.9.9,149.112.112.112 "); got != "/tenants/acme/dns?ok=dns-upstreams-set" {
		t.Errorf("set upstreams redirects to %q", got)
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/dns?ok=dns-upstreams-set", nil, http.StatusOK, "Upstreams saved", "tls://dns.quad9.net@9.9.9.9:853", "149.112.112.112:53")
	if ups, _ := h.ctrl.DNSUpstreams(ctx, "acme"); len(ups) != 2 || ups[0].TLSName != "dns.quad9.net" {
		t.Errorf("upstreams after the form: %v", ups)
	}
	if got := post("/tenants/acme/dns/upstreams/reset"); got != "/tenants/acme/dns?ok=dns-upstreams-reset" {
		t.Errorf("reset upstreams redirects to %q", got)
	}
	if ups, _ := h.ctrl.DNSUpstreams(ctx, "acme"); len(ups) != 0 {
		t.Errorf("upstreams after the reset: %v", ups)
	}
	// The query log: on for two days, then a week, then off.
	if got := post("/tenants/acme/dns/log/enable", "keep", " 48h "); got != "/tenants/acme/dns?ok=dns-log-enabled" {
		t.Errorf("enable the log redirects to %q", got)
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/dns?ok=dns-log-enabled", nil, http.StatusOK, "Query log on", "entries are kept 2d", "No queries logged yet")
	post("/tenants/acme/dns/log/enable", "keep", "7d")
	if set, _ := h.ctrl.DNSLogSettings(ctx, "acme"); !set.Enabled || set.Keep != 7*24*time.Hour {
		t.Errorf("the log after keep 7d: %+v", set)
	}
	if got := post("/tenants/acme/dns/log/disable"); got != "/tenants/acme/dns?ok=dns-log-disabled" {
		t.Errorf("disable the log redirects to %q", got)
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/dns?ok=dns-log-disabled", nil, http.StatusOK, "Query log off", `<span class="badge off">Off</span>`)
	// A blocklist from a URL: an owner adds it on loopback; the tenant's admin fetches it
	// again when it changed, sees a failed fetch (the list keeps its names), and removes it.
	ls := startListServer(t, "0.0.0.0 ads.example.com tracker.example.net\n127.0.0.1 localhost\n")
	w = h.do(owner, "POST", "/tenants/acme/dns/blocklists", form("name", " ads ", "url", " "+ls.URL+"/list ", "every", " 12h "))
	if w.Code != http.StatusSeeOther || location(w) != "/tenants/acme/dns?ok=blocklist-added" {
		t.Errorf("add a blocklist: %d %q\n%s", w.Code, location(w), excerpt(w.Body.String()))
	}
	h.check(acmeAdmin, "GET", "/tenants/acme/dns?ok=blocklist-added", nil, http.StatusOK, "Blocklist added", ls.URL+"/list", "fetched every 12h", `<span class="badge ok">OK</span>`)
	if bs, _ := h.ctrl.Blocklists(ctx, "acme"); len(bs) != 1 || bs[0].Names != 2 || bs[0].Skipped != 1 || bs[0].Every != 12*time.Hour {
		t.Errorf("blocklists after the form: %+v", bs)
	}
	ls.set("ads.example.com\nmore.example.org\nthird.example\n", http.StatusOK)
	if got := post("/tenants/acme/dns/blocklists/refresh", "name", "ads"); got != "/tenants/acme/dns?ok=blocklist-fetched" {
		t.Errorf("refresh a blocklist redirects to %q", got)
	}
	if bs, _ := h.ctrl.Blocklists(ctx, "acme"); len(bs) != 1 || bs[0].Names != 3 {
		t.Errorf("blocklists after the refresh: %+v", bs)
	}
	ls.set("", http.StatusInternalServerError)
	h.check(acmeAdmin, "POST", "/tenants/acme/dns/blocklists/refresh", form("name", "ads"), http.StatusBadGateway,
		"Blocklist ads: fetching the blocklist failed", "answered 500 Internal Server Error", "it keeps its last content", `<span class="badge bad">Failed</span>`)
	if bs, _ := h.ctrl.Blocklists(ctx, "acme"); len(bs) != 1 || bs[0].Names != 3 || bs[0].Error == "" {
		t.Errorf("blocklists after a failed refresh: %+v", bs)
	}
	if got := post("/tenants/acme/dns/blocklists/remove", "name", "ads"); got != "/tenants/acme/dns?ok=blocklist-removed" {
		t.Errorf("remove a blocklist redirects to %q", got)
	}
	if bs, _ := h.ctrl.Blocklists(ctx, "acme"); len(bs) != 0 {
		t.Errorf("blocklists after the removal: %+v", bs)
	}
	post("/tenants/acme/routes/remove", "prefix", "10.10.0.0/23")
	if got := post("/tenants/acme/peers/gw/delete"); got != "/peers?tenant=acme&ok=peer-deleted" {
		t.Errorf("delete redirects to %q", got)
	}
	if _, err := h.ctrl.Peer(ctx, "acme", "gw"); err == nil {
		t.Error("gw still exists")
	}

	// Split tunnel.
	post("/tenants/acme/split-tunnel", "split_tunnel", "on")
	if ts, _ := h.ctrl.ListTenants(ctx); !ts[0].SplitTunnel {
		t.Error("split tunnel is not on")
	}
	// The DNS domain of the peers' names, and back to the default.
	post("/tenants/acme/dns/domain", "domain", " Corp.Example.COM ")
	h.check(acmeAdmin, "GET", "/tenants/acme/dns", nil, http.StatusOK, "corp.example.com", `value="corp.example.com"`)
	post("/tenants/acme/dns/domain", "domain", "")
	h.check(acmeAdmin, "GET", "/tenants/acme/dns", nil, http.StatusOK, "acme.internal</strong> (the default)")
	// Owners delete empty tenants after typing the name.
	w = h.do(owner, "POST", "/tenants/charlie/delete", form("confirm", "charlie"))
	if w.Code != http.StatusSeeOther || location(w) != "/tenants?ok=tenant-deleted" {
		t.Errorf("delete tenant: %d %q", w.Code, location(w))
	}

	wantAudit := []string{
		"tenant.add tenant:charlie charlie",
		"peer.add peer:acme/gw acme",
		"peer.config.show peer:acme/gw acme",
		"peer.add peer:acme/phone.alice acme",
		"peer.config.show peer:acme/phone.alice acme",
		"peer.update peer:acme/laptop acme",
		"peer.update peer:acme/laptop acme",
		"peer.update peer:acme/laptop acme",
		"peer.update peer:acme/laptop acme",
		"peer.disable peer:acme/laptop acme",
		"peer.enable peer:acme/laptop acme",
		"peer.expiry peer:acme/laptop acme",
		"peer.expiry peer:acme/laptop acme",
		"peer.rename peer:acme/laptop acme",
		"policy.set policy:acme acme",
		"route.add route:acme/10.10.0.0/23 acme",
		"dns.zone.add dnszone:acme/lab.example acme",
		"dns.zone.remove dnszone:acme/lab.example acme",
		"dns.upstream.set dns:acme acme",
		"dns.upstream.reset dns:acme acme",
		"dns.log.enable dnslog:acme acme",
		"dns.log.enable dnslog:acme acme",
		"dns.log.disable dnslog:acme acme",
		"dns.blocklist.add blocklist:acme/ads acme",
		"dns.blocklist.refresh blocklist:acme/ads acme",
		"dns.blocklist.remove blocklist:acme/ads acme",
		"route.remove route:acme/10.10.0.0/23 acme",
		"peer.remove peer:acme/gw acme",
		"tenant.update tenant:acme acme",
		"tenant.update tenant:acme acme",
		"tenant.update tenant:acme acme",
		"tenant.remove tenant:charlie charlie",
	}
	if got := h.audit.actions(); !slices.Equal(got, wantAudit) {
		t.Errorf("audit log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantAudit, "\n"))
	}
	// The audit page shows them from the store; a tenant admin sees only its tenant's.
	h.check(owner, "GET", "/audit", nil, http.StatusOK, "tenant.remove", "charlie", "peer.rename", "renamed to laptop-2")
	body = h.check(acmeAdmin, "GET", "/audit", nil, http.StatusOK, "peer.rename")
	if strings.Contains(body, "charlie") {
		t.Error("acme's admin sees charlie's audit entries")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
