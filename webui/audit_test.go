package webui

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/popgate/popgate/store"
)

// ctlCall sends a request to the control socket's handler.
func ctlCall(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, "http://popgate"+path, strings.NewReader(body))
	req.RemoteAddr = "@"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	data, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(data)
}

// TestControlAdminAPI drives the admin, token and audit routes the CLI uses, with bad input
// refused and nothing stored, and checks the audit log they leave.
func TestControlAdminAPI(t *testing.T) {
	e := newAuthEnv(t, nil)
	h := e.srv.ControlHandler()
	e.addTenant("acme")
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/api/v1/admins", `{"name":"root","role":"owner"}`, 201, `"password": "`},
		{"POST", "/api/v1/admins", `{"name":"alice","role":"tenant_admin","tenant":"acme","password":"alice's long password"}`, 201, `"tenant": "acme"`},
		{"POST", "/api/v1/admins", `{"name":"root","role":"owner"}`, 409, "already exists"},
		{"POST", "/api/v1/admins", `{"name":"` + strings.Repeat("a", 65) + `","role":"owner"}`, 400, "at most 64"},
		{"POST", "/api/v1/admins", `{"name":"Eve","role":"owner"}`, 400, "invalid"},
		{"POST", "/api/v1/admins", `{"name":"eve","role":"owner","password":"short"}`, 400, "too short"},
		{"POST", "/api/v1/admins", `{"name":"eve","role":"tenant_admin"}`, 400, "needs a tenant"},
		{"POST", "/api/v1/admins", `{"name":"eve","role":"viewer","tenant":"nope"}`, 404, "not found"},
		{"POST", "/api/v1/admins", `{"name":"eve","role":"god"}`, 400, "unknown"},
		{"GET", "/api/v1/admins", "", 200, `"name": "alice"`},
		{"PUT", "/api/v1/admins/alice/password", `{}`, 200, `"password": "`},
		{"PUT", "/api/v1/admins/alice/password", `{"password":"alice's new password"}`, 200, `"name": "alice"`},
		{"PUT", "/api/v1/admins/nobody/password", `{}`, 404, "not found"},
		{"PATCH", "/api/v1/admins/alice", `{"role":"viewer"}`, 200, `"tenant": "acme"`},
		{"PATCH", "/api/v1/admins/alice", `{"tenant":"acme"}`, 400, "only together with role"},
		{"PATCH", "/api/v1/admins/alice", `{"role":"viewer","tenant":""}`, 200, `"role": "viewer"`},
		{"PATCH", "/api/v1/admins/alice", `{}`, 400, "nothing to change"},
		{"PATCH", "/api/v1/admins/root", `{"disabled":true}`, 400, "last enabled owner"},
		{"DELETE", "/api/v1/admins/alice/totp", "", 200, `"totp": false`},
		{"DELETE", "/api/v1/admins/root", "", 400, "last enabled owner"},
		{"DELETE", "/api/v1/admins/alice", "", 204, ""},
		{"POST", "/api/v1/tokens", `{"name":"ci","role":"tenant_admin","tenant":"acme","expires_at":"2099-01-01T00:00:00Z"}`, 201, `"secret": "pgt_`},
		{"POST", "/api/v1/tokens", `{"name":"ci","role":"viewer"}`, 409, "already exists"},
		{"POST", "/api/v1/tokens", `{"name":"old","role":"viewer","expires_at":"2001-01-01T00:00:00Z"}`, 400, "not in the future"},
		{"GET", "/api/v1/tokens", "", 200, `"name": "ci"`},
		{"DELETE", "/api/v1/tokens/ci", "", 204, ""},
		{"DELETE", "/api/v1/tokens/ci", "", 404, "not found"},
		{"GET", "/api/v1/audit?limit=5000", "", 400, "too large"},
		{"GET", "/api/v1/audit?since=yesterday", "", 400, "RFC 3339"},
		{"GET", "/api/v1/audit?limit=x", "", 400, "whole number"},
	} {
		code, body := ctlCall(t, h, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s\nwant %d with %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
		if c.code >= 400 && strings.Contains(body, "$argon2id") {
			t.Errorf("an answer holds a password hash: %s", body)
		}
	}
	_, body := ctlCall(t, h, "GET", "/api/v1/admins", "")
	if strings.Contains(body, "argon2") || strings.Contains(body, "eve") {
		t.Errorf("admins: %s", body)
	}

	var log APIAuditLog
	_, body = ctlCall(t, h, "GET", "/api/v1/audit?limit=3", "")
	if err := json.Unmarshal([]byte(body), &log); err != nil {
		t.Fatal(err)
	}
	if len(log.Entries) != 3 || !log.More || log.Entries[0].Action != "token.remove" || log.Entries[0].Actor != "cli" || log.Entries[0].Remote != "control socket" {
		t.Errorf("audit page: %+v", log)
	}
	// Refused changes, and changes that change nothing (TOTP that was off), leave no entry;
	// secrets never reach it.
	wantEntries := []string{"cli admin.add admin:root", "cli admin.add admin:alice", "cli admin.password admin:alice",
		"cli admin.password admin:alice", "cli admin.update admin:alice", "cli admin.update admin:alice",
		"cli admin.remove admin:alice", "cli token.add token:ci", "cli token.remove token:ci"}
	if got := e.auditActions(); !slices.Equal(got, wantEntries) {
		t.Errorf("audit log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantEntries, "\n"))
	}
	all := strings.Join(e.auditActions(), "\n")
	for _, bad := range []string{"eve", "admin.remove admins/root", "pgt_", "long password"} {
		if strings.Contains(all, bad) {
			t.Errorf("audit log holds %q:\n%s", bad, all)
		}
	}
	es, _, _ := e.store.ListAudit(t.Context(), store.AuditQuery{Action: "token.add"})
	if len(es) != 1 || es[0].Tenant != "" || es[0].Detail != "role tenant_admin, tenant acme; expires 2099-01-01T00:00:00Z" {
		t.Errorf("token.add entry: %+v", es)
	}
}

// TestControlPeerRoutes: rename, expiry and download links through the control socket.
func TestControlPeerRoutes(t *testing.T) {
	e := newAuthEnv(t, nil)
	h := e.srv.ControlHandler()
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/api/v1/tenants", `{"name":"acme"}`, 201, ""},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"laptop"}`, 201, ""},
		{"POST", "/api/v1/tenants/acme/peers", `{"name":"phone"}`, 201, ""},
		{"POST", "/api/v1/tenants/acme/peers/laptop/rename", `{"name":"phone"}`, 409, "already exists"},
		{"POST", "/api/v1/tenants/acme/peers/laptop/rename", `{"name":"bad name"}`, 400, "invalid"},
		{"POST", "/api/v1/tenants/acme/peers/laptop/rename", `{"name":"notebook"}`, 200, `"name": "notebook"`},
		{"PUT", "/api/v1/tenants/acme/peers/notebook/expiry", `{"expires_at":"2001-01-01T00:00:00Z"}`, 400, "not in the future"},
		{"PUT", "/api/v1/tenants/acme/peers/notebook/expiry", `{"expires_at":"2099-01-01T00:00:00Z"}`, 200, `"expires_at": "2099-01-01T00:00:00Z"`},
		{"PUT", "/api/v1/tenants/acme/peers/notebook/expiry", `{"expires_at":null}`, 200, `"name": "notebook"`},
		{"POST", "/api/v1/tenants/acme/peers/notebook/links", `{"valid_seconds":10}`, 400, "out of range"},
		{"POST", "/api/v1/tenants/acme/peers/nope/links", ``, 404, "not found"},
		{"POST", "/api/v1/tenants/acme/peers/notebook/links", ``, 201, `"path": "/dl/pgd_`},
	} {
		code, body := ctlCall(t, h, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s\nwant %d with %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
	}
	wantEntries := []string{"cli tenant.add tenant:acme", "cli peer.add peer:acme/laptop", "cli peer.add peer:acme/phone",
		"cli peer.rename peer:acme/laptop", "cli peer.expiry peer:acme/notebook", "cli peer.expiry peer:acme/notebook",
		"cli link.create peer:acme/notebook"}
	if got := e.auditActions(); !slices.Equal(got, wantEntries) {
		t.Errorf("audit log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantEntries, "\n"))
	}
	es, _, _ := e.store.ListAudit(t.Context(), store.AuditQuery{Action: "peer.rename"})
	if len(es) != 1 || es[0].Tenant != "acme" {
		t.Errorf("rename entry: %+v", es)
	}
}
