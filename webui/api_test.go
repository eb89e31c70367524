package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/popgate/popgate/gateway"
	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/gatewaytest"
)

// newTestAPI runs a real node (userspace exit, loopback port, temporary data dir) behind the
// API.
func newTestAPI(t *testing.T) *httptest.Server {
	t.Helper()
	srv, _ := newTestAPINode(t)
	return srv
}

// newTestAPINode is newTestAPI that also returns the node's controller.
func newTestAPINode(t *testing.T) (*httptest.Server, *control.Controller) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Config{Interface: fmt.Sprintf("pga%d", os.Getpid()%100000)}, Log: log})
	srv := httptest.NewServer(NewAPI(n.Ctrl, n.Store, log))
	t.Cleanup(srv.Close)
	return srv, n.Ctrl
}

type apiCall struct {
	method, path, body string
	contentType        string
	wantCode           int
	wantBody           string // a substring of the answer
}

func (c apiCall) do(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != c.wantCode || !bytes.Contains(body, []byte(c.wantBody)) {
		t.Errorf("%s %s %s: %d %s\nwant %d with %q", c.method, c.path, c.body, resp.StatusCode, body, c.wantCode, c.wantBody)
	}
	return string(body)
}

// TestAPI walks the API like the CLI does, including every kind of bad input, and checks that
// refused calls change nothing.
func TestAPI(t *testing.T) {
	srv := newTestAPI(t)
	for _, c := range []apiCall{
		{"POST", "/api/v1/tenants", `{"name":"acme"}`, "", 201, `"name": "acme"`},
		{"POST", "/api/v1/tenants", `{"name":"acme"}`, "", 409, "already exists"},
		{"POST", "/api/v1/tenants", `{"name":"Ac me"}`, "", 400, "invalid"},
		{"POST", "/api/v1/tenants", `{"name":"bravo","extra":1}`, "", 400, "unknown field"},
		{"POST", "/api/v1/tenants", `not json`, "", 400, "not the expected JSON"},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"laptop","groups":["eng"]}`, "", 201, "PrivateKey = "},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"laptop"}`, "", 409, "already exists"},
		{"POST", "/api/v1/tenants/nope/peers", `{"name":"laptop"}`, "", 404, "not found"},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"phone","public_key":"not-a-key"}`, "", 400, "not a WireGuard key"},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"` + strings.Repeat("x", 200) + `"}`, "", 400, "invalid"},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"gw","site":"office","site_prefixes":["10.10.0.1/24"]}`, "", 400, "10.10.0.0/24"},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"gw","site":"office","site_prefixes":["10.10.0.0/24"]}`, "", 201, "AllowedIPs = 100.64.0.0/10"},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"gw2","site":"office","site_prefixes":["10.99.0.0/24"]}`, "", 409, "office"},
		{"GET", "/api/v1/tenants/acme/peers/laptop", "", "", 200, `"eng"`},
		{"PATCH", "/api/v1/tenants/acme/peers/laptop", `{"groups":["ops","eng"]}`, "", 200, `"ops"`},
		{"PATCH", "/api/v1/tenants/acme/peers/laptop", `{}`, "", 400, "nothing to change"},
		// A refused site change leaves the groups as they were (checked below: still ops, eng).
		{"PATCH", "/api/v1/tenants/acme/peers/laptop", `{"groups":["qa"],"site":"office","site_prefixes":["10.10.0.0/24"]}`, "", 409, "office"},
		{"PATCH", "/api/v1/tenants/acme/peers/laptop", `{"groups":["bad group"],"site":"lab","site_prefixes":["10.20.0.0/24"]}`, "", 400, "bad group"},
		{"GET", "/api/v1/tenants/acme/peers/laptop", "", "", 200, `"ops"`},
		{"GET", "/api/v1/tenants/acme/peers/laptop/config", "", "", 200, "[Peer]"},
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"10.10.0.0/24","via":"site:office"}`, "", 201, "site:office"},
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"10.10.0.0/24","via":"site:office"}`, "", 409, "already has a route"},
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"10.11.0.0/24","via":"site:nowhere"}`, "", 404, "nowhere"},
		{"POST", "/api/v1/tenants/acme/routes", `{"prefix":"banana","via":"internet"}`, "", 400, "not a CIDR prefix"},
		{"GET", "/api/v1/tenants/acme/routes", "", "", 200, `"prefix": "10.10.0.0/24"`},
		{"DELETE", "/api/v1/tenants/acme/peers/gw", "", "", 400, "route remove"},
		{"GET", "/api/v1/tenants/acme/policy", "", "", 200, "default deny"},
		{"PUT", "/api/v1/tenants/acme/policy", "default deny\nallow group:eng -> 198.51.100.0/24 tcp 80\nallow group:nobody -> any\nallow any -> any tpc\n", "text/plain", 400, "line 4: unknown protocol"},
		// A group nobody is in yet is a warning: the policy is set.
		{"PUT", "/api/v1/tenants/acme/policy", "default deny\nallow group:nobody -> any\n", "text/plain", 200, `"line": 2,
      "message": "no peer of this tenant is in group \"nobody\"`},
		{"PUT", "/api/v1/tenants/acme/policy", "default deny\nallow group:eng -> site:office tcp 80,443\n", "text/plain", 200, `"rules": 1`},
		{"GET", "/api/v1/tenants/acme/policy", "", "", 200, "site:office tcp 80,443"},
		{"DELETE", "/api/v1/tenants/acme/routes?prefix=10.10.0.0/24", "", "", 204, ""},
		{"DELETE", "/api/v1/tenants/acme/routes?prefix=10.10.0.0/24", "", "", 404, "has no route"},
		{"PATCH", "/api/v1/tenants/acme", `{"split_tunnel":true}`, "", 200, `"split_tunnel": true`},
		{"GET", "/api/v1/tenants", "", "", 200, `"max_flows_per_peer": 4096`},
		{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flows_per_peer":100}`, "", 200, `"max_flows_per_peer": 100`},
		{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flows":2000}`, "", 200, `"max_flows_per_peer": 100,
  "max_flows": 2000`},
		{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flows_per_peer":0}`, "", 200, `"max_flows_per_peer": 4096`},
		{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flows":-1}`, "", 400, "max flows -1 is out of range: use 1 to 1048576, or 0 for the node's default"},
		{"PATCH", "/api/v1/tenants/acme/limits", `{}`, "", 400, "nothing to change"},
		{"PATCH", "/api/v1/tenants/acme/limits", `{"max_flow":1}`, "", 400, "unknown field"},
		{"PATCH", "/api/v1/tenants/nope/limits", `{"max_flows":1}`, "", 404, "not found"},
		{"GET", "/api/v1/status", "", "", 200, `"exit_flows"`},
		{"DELETE", "/api/v1/tenants/acme", "", "", 400, "still has"},
		{"GET", "/api/v1/nope", "", "", 404, "no such API route"},
	} {
		c.do(t, srv)
	}
	if body := (apiCall{"GET", "/api/v1/tenants/acme/peers/laptop", "", "", 200, ""}).do(t, srv); strings.Contains(body, "lab") || strings.Contains(body, `"qa"`) {
		t.Errorf("refused PATCHes changed the peer: %s", body)
	}
	// The line-numbered answer lists every problem.
	body := apiCall{"PUT", "/api/v1/tenants/acme/policy", "allow any -> any tpc\nallow any => any\n", "text/plain", 400, "line 1"}.do(t, srv)
	if !strings.Contains(body, "line 2") {
		t.Errorf("policy errors do not list line 2: %s", body)
	}

	var peers APIPeers
	if err := json.Unmarshal([]byte(apiCall{"GET", "/api/v1/peers?tenant=acme", "", "", 200, ""}.do(t, srv)), &peers); err != nil {
		t.Fatal(err)
	}
	if len(peers.Peers) != 2 {
		t.Fatalf("peers after the refused calls: %+v, want laptop and gw", peers.Peers)
	}
	apiCall{"POST", "/api/v1/tenants", `{"name":"bravo"}`, "", 201, ""}.do(t, srv)
	apiCall{"POST", "/api/v1/tenants/bravo/peers", `{"name":"carol"}`, "", 201, ""}.do(t, srv)
	var st APIStatus
	if err := json.Unmarshal([]byte(apiCall{"GET", "/api/v1/status", "", "", 200, ""}.do(t, srv)), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Tenants) != 2 || st.Tenants[0].Name != "acme" || st.Tenants[0].Peers != 2 || len(st.Tenants[0].Rules) != 2 ||
		st.Tenants[1].Name != "bravo" || st.Tenants[1].Peers != 1 {
		t.Errorf("status tenants = %+v, want acme with 2 peers and 1 rule + default, bravo with 1 peer", st.Tenants)
	}
}

// TestAPIPeerList checks the peer list, which is written peer by peer, against the whole list
// from ListPeers encoded at once (the reference), for every tenant and for one.
func TestAPIPeerList(t *testing.T) {
	srv, ctrl := newTestAPINode(t)
	ctx := context.Background()
	for _, tenant := range []string{"acme", "bravo", "empty"} {
		if _, err := ctrl.AddTenant(ctx, tenant); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []control.AddPeerRequest{
		{Tenant: "acme", Name: "laptop", Groups: []string{"eng"}},
		{Tenant: "acme", Name: "gw", Site: "office", SitePrefixes: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}},
		{Tenant: "bravo", Name: "carol"},
		{Tenant: "acme", Name: "phone"},
	} {
		if _, _, err := ctrl.AddPeer(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ctrl.SetPeerEnabled(ctx, "acme", "phone", false); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"", "acme", "bravo", "empty"} {
		ps, err := ctrl.ListPeers(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		ref := APIPeers{Peers: make([]APIPeer, len(ps))}
		for i, p := range ps {
			ref.Peers[i] = apiPeer(p)
		}
		want := httptest.NewRecorder()
		writeJSON(want, http.StatusOK, ref)
		path := "/api/v1/peers"
		if tenant != "" {
			path += "?tenant=" + tenant
		}
		if got := (apiCall{"GET", path, "", "", 200, ""}).do(t, srv); got != want.Body.String() {
			t.Errorf("GET %s:\n%s\nwant (ListPeers encoded whole):\n%s", path, got, want.Body)
		}
	}
	apiCall{"GET", "/api/v1/peers?tenant=nope", "", "", 404, `"error": "tenant \"nope\" not found`}.do(t, srv)
}
