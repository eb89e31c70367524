package webui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// TestAPITenantTokenLearnsNothingOfOthers walks every change a token limited to tenant acme
// can make that could clash with another tenant's objects (a peer's key, names, site
// prefixes, a new key) and checks that no answer names tenant globex or its objects, while
// refusals within acme name acme's own peers.
func TestAPITenantTokenLearnsNothingOfOthers(t *testing.T) {
	e := newAuthEnv(t, nil)
	owner := e.addToken("ops", store.RoleOwner, "", time.Time{})
	for _, c := range []struct{ path, body string }{
		{"/api/v1/tenants", `{"name":"acme"}`},
		{"/api/v1/tenants", `{"name":"globex"}`},
		{"/api/v1/tenants/globex/peers", `{"name":"hank","groups":["eng"]}`},
		{"/api/v1/tenants/globex/peers", `{"name":"office-gw","site":"office","site_prefixes":["10.10.0.0/24"]}`},
		{"/api/v1/tenants/acme/peers", `{"name":"laptop"}`},
	} {
		if code, body := e.call(owner, "POST", c.path, c.body); code != http.StatusCreated {
			t.Fatalf("owner POST %s: %d %s", c.path, code, body)
		}
	}
	key := func(tenant, peer string) string {
		t.Helper()
		code, body := e.call(owner, "GET", "/api/v1/tenants/"+tenant+"/peers/"+peer, "")
		var p APIPeer
		if code != http.StatusOK || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("GET %s/%s: %d %s", tenant, peer, code, body)
		}
		return p.PublicKey
	}
	hankKey, laptopKey := key("globex", "hank"), key("acme", "laptop")

	// Exit nodes: x1, and p1, a PoP; globex routes through x1.
	for i, n := range []struct{ name, roles string }{{"x1", "exit"}, {"p1", "pop"}} {
		jt, secret, err := e.store.CreateJoinToken(e.t.Context(), store.NewJoinToken{Roles: n.roles, ExpiresAt: e.clock.Now().Add(time.Hour)})
		if err == nil {
			_, err = e.store.RedeemJoinToken(e.t.Context(), store.Redemption{TokenID: jt.ID, Secret: secret, Name: n.name, Pin: [32]byte{byte(i + 1)}})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if code, body := e.call(owner, "POST", "/api/v1/tenants/globex/routes", `{"prefix":"192.0.2.0/24","via":"exit:x1"}`); code != http.StatusCreated {
		t.Fatalf("globex's route via x1: %d %s", code, body)
	}

	acme := e.addToken("acme-ci", store.RoleTenantAdmin, "acme", time.Time{})
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		// The probe: a key of a globex peer.
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"probe","public_key":"` + hankKey + `"}`, 409,
			"public key " + hankKey + " is already in use: each device needs a key pair of its own"},
		// A key of acme's own peer: naming it tells acme nothing new.
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"probe","public_key":"` + laptopKey + `"}`, 409, `already used by peer \"laptop\" of tenant \"acme\"`},
		// Names and site prefixes are the tenant's own: globex's do not clash.
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"hank","groups":["eng"]}`, 201, `"name": "hank"`},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"office-gw","site":"office","site_prefixes":["10.10.0.0/24"]}`, 201, `"site": "office"`},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"lab-gw","site":"lab","site_prefixes":["10.10.0.128/25"]}`, 409, `overlaps 10.10.0.0/24 of site \"office\" (connector peer \"office-gw\") in tenant \"acme\"`},
		{"POST", "/api/v1/tenants/acme/peers/laptop/rename", `{"name":"office-gw"}`, 409, `peer \"office-gw\" already exists in tenant \"acme\"`},
		{"POST", "/api/v1/tenants/acme/peers/hank/rename", `{"name":"hank2"}`, 200, `"name": "hank2"`},
		// A new key: another tenant's is in use, unnamed; the own tenant's is named.
		{"POST", "/api/v1/tenants/acme/peers/laptop/rotate", `{"public_key":"` + hankKey + `"}`, 409,
			"public key " + hankKey + " is already in use"},
		{"POST", "/api/v1/tenants/acme/peers/hank2/rotate", `{"public_key":"` + laptopKey + `"}`, 409, `already used by peer \"laptop\" of tenant \"acme\"`},
		{"POST", "/api/v1/tenants/acme/peers/laptop/rotate", "", 200, "PrivateKey = "},
		// Routes and policy see only acme's sites and peers.
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"10.10.0.0/24","via":"site:office"}`, 201, "site:office"},
		{"PUT", "/api/v1/tenants/acme/policy", "default deny\nallow group:eng -> site:office tcp 22\n", 200, `"rules": 1`},
		// Exit nodes are the network's, not a tenant's: acme may route through x1 too, and
		// learns nothing of globex's route through it.
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"192.0.2.0/24","via":"exit:x9"}`, 404, `exit node \"x9\" not found`},
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"192.0.2.0/24","via":"exit:p1"}`, 400, `node \"p1\" is not an exit`},
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"192.0.2.0/24","via":"exit:x1"}`, 201, "exit:x1"},
		{"GET", "/api/v1/tenants/acme/routes", "", 200, `"exits": [`},
	} {
		code, body := e.call(acme, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s\nwant %d with %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
		if strings.Contains(body, "globex") {
			t.Errorf("%s %s %s: the answer to acme's token names tenant globex: %s", c.method, c.path, c.body, body)
		}
	}
	// globex is as it was: its names were reused in acme, not touched.
	if got := key("globex", "hank"); got != hankKey {
		t.Errorf("globex/hank's key changed")
	}
	e.wantAudit("token:acme-ci peer.rotate peer:acme/laptop")
}
