package webui

import (
	"context"
	"html"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// newAdminsHarness is the pages harness with admins in the store: olivia (owner, the owner
// principal), carol (tenant admin of acme), vic (viewer of every tenant); and the API token
// ci (viewer).
func newAdminsHarness(t *testing.T) *uiHarness {
	t.Helper()
	h := newUIHarness(t)
	ctx := setup()
	for _, req := range []store.NewAdmin{
		{Name: "olivia", Role: store.RoleOwner},
		{Name: "carol", Role: store.RoleTenantAdmin, Tenant: "acme"},
		{Name: "vic", Role: store.RoleViewer},
	} {
		a, _, err := addAdmin(ctx, h.store, req)
		if err != nil {
			t.Fatal(err)
		}
		if a.Name == "olivia" && a.ID != owner.AdminID {
			t.Fatalf("olivia has id %d, the owner principal %d", a.ID, owner.AdminID)
		}
	}
	if _, _, err := h.store.AddAPIToken(ctx, store.NewAPIToken{Name: "ci", Role: store.RoleViewer}); err != nil {
		t.Fatal(err)
	}
	return h
}

// snapshot is what the admins pages may change: every admin and token as stored.
func (h *uiHarness) snapshot() string {
	h.t.Helper()
	ctx := context.Background()
	as, err := h.store.ListAdmins(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	ks, err := h.store.ListAPITokens(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var b strings.Builder
	for _, a := range as {
		b.WriteString(a.Name + " " + a.Role + " " + a.TenantName + " " + a.PasswordSetAt.String())
		if a.Disabled {
			b.WriteString(" disabled")
		}
		if a.TOTPEnabled {
			b.WriteString(" totp")
		}
		b.WriteString("\n")
	}
	for _, k := range ks {
		b.WriteString("token " + k.Name + " " + k.Role + " " + k.TenantName + " " + k.ExpiresAt.String() + "\n")
	}
	return b.String()
}

var secretRE = regexp.MustCompile(`id="secret" class="mono" value="([^"]+)"`)

// secretOf returns the password or token a page shows.
func secretOf(t *testing.T, body string) string {
	t.Helper()
	m := secretRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the page shows no secret:\n%s", excerpt(body))
	}
	return html.UnescapeString(m[1])
}

// wantActions fails unless the recorded audit actions but refusals are want, in order.
func (h *uiHarness) wantActions(want ...string) {
	h.t.Helper()
	var got []string
	for _, a := range h.audit.actions() {
		if !strings.HasPrefix(a, "denied ") {
			got = append(got, a)
		}
	}
	if !slices.Equal(got, want) {
		h.t.Errorf("audit actions:\n got %q\nwant %q", got, want)
	}
}

// TestAdminsAuthorization: every admins route works for owners and for nobody else, and the
// refusals change nothing.
func TestAdminsAuthorization(t *testing.T) {
	h := newAdminsHarness(t)
	routes := []struct {
		method, path string
		form         []string
		code         int // as owner
	}{
		{"GET", "/admins", nil, 200},
		{"POST", "/admins", []string{"name", "mallory", "role", "owner"}, 200},
		{"GET", "/admins/carol", nil, 200},
		{"POST", "/admins/carol/role", []string{"role", "viewer", "tenant", "bravo"}, 303},
		{"POST", "/admins/carol/password", nil, 200},
		{"POST", "/admins/carol/disable", nil, 303},
		{"POST", "/admins/carol/enable", nil, 303},
		{"POST", "/admins/carol/totp/disable", nil, 303},
		{"GET", "/admins/carol/delete", nil, 200},
		{"POST", "/admins/carol/delete", nil, 303},
		{"POST", "/tokens", []string{"name", "evil", "role", "owner"}, 200},
		{"GET", "/tokens/ci/delete", nil, 200},
		{"POST", "/tokens/ci/delete", nil, 303},
	}
	before := h.snapshot()
	for _, rt := range routes {
		var f map[string][]string
		if rt.method == "POST" {
			f = form(rt.form...)
		}
		for _, who := range []*Principal{acmeAdmin, bravoAdmin, viewer, acmeViewer} {
			h.check(who, rt.method, rt.path, f, http.StatusForbidden)
		}
		if w := h.do(nil, rt.method, rt.path, f); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/login?next=") {
			t.Errorf("%s %s as nobody: %d %q, want the sign-in page", rt.method, rt.path, w.Code, w.Header().Get("Location"))
		}
	}
	if after := h.snapshot(); after != before {
		t.Errorf("refused requests changed admins or tokens:\n%s\nwas\n%s", after, before)
	}
	h.wantActions()

	// The handlers refuse non-owners themselves too, should protect ever let one through, and
	// an owner limited to a tenant (which the store does not make) like them.
	scopedOwner := &Principal{AdminID: 9, Name: "odd", Role: RoleOwner, Tenant: "acme"}
	for _, who := range []*Principal{acmeAdmin, viewer, scopedOwner} {
		for _, hf := range []http.HandlerFunc{h.ui.adminsPage, h.ui.addAdmin, h.ui.adminEdit, h.ui.setAdminRole,
			h.ui.resetAdminPassword, h.ui.disableAdmin, h.ui.enableAdmin, h.ui.disableAdminTOTP,
			h.ui.confirmRemoveAdmin, h.ui.removeAdmin, h.ui.addToken, h.ui.confirmRemoveToken, h.ui.removeToken} {
			r := newRequest("POST", "/admins", who)
			r.Form = form("name", "mallory", "role", "owner")
			r.PostForm = r.Form
			r.SetPathValue("admin", "carol")
			r.SetPathValue("token", "ci")
			w := newRecorder()
			hf(w, r)
			if w.Code != http.StatusForbidden {
				t.Errorf("%s called directly as %s: %d, want 403", r.URL.Path, who.Name, w.Code)
			}
		}
	}
	if after := h.snapshot(); after != before {
		t.Errorf("refused handler calls changed admins or tokens:\n%s\nwas\n%s", after, before)
	}
	// Each refusal is in the audit log, under the principal's own tenant.
	denied := map[string]int{}
	for _, e := range h.audit.entries() {
		if e.Action == "denied" {
			denied[e.Actor+" "+e.Target+" "+e.Tenant]++
		}
	}
	if want := map[string]int{"alice admin:carol acme": 13, "victor admin:carol ": 13, "odd admin:carol acme": 13}; !maps.Equal(denied, want) {
		t.Errorf("denied entries %v, want %v", denied, want)
	}

	// As the owner, each route does its work.
	for _, rt := range routes {
		var f map[string][]string
		if rt.method == "POST" {
			f = form(rt.form...)
		}
		h.check(owner, rt.method, rt.path, f, rt.code)
	}
	h.wantActions("admin.add admin:mallory ", "admin.update admin:carol ", "admin.password admin:carol ",
		"admin.update admin:carol ", "admin.update admin:carol ", "admin.remove admin:carol ",
		"token.add token:evil ", "token.remove token:ci ")
}

// TestAdminsPage lists admins and tokens with the forms, and links each admin to its page.
func TestAdminsPage(t *testing.T) {
	h := newAdminsHarness(t)
	body := h.check(owner, "GET", "/admins", nil, http.StatusOK,
		"<h1>Admins</h1>", "<th>Role</th>", `action="/admins"`, `action="/tokens"`,
		`href="/admins/carol"`, `href="/admins/carol/delete"`, `href="/tokens/ci/delete"`,
		`<option value="acme">acme</option>`, "(you)", "API tokens", "<th>Last used</th>", "<th>Expires</th>")
	if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "onclick") {
		t.Errorf("the admins page has inline script or style")
	}
	h.check(owner, "GET", "/admins/carol", nil, http.StatusOK, "<h1>carol", `action="/admins/carol/role"`,
		`action="/admins/carol/password"`, `action="/admins/carol/disable"`, `<option value="tenant_admin" selected>`,
		`<option value="acme" selected>acme</option>`)
	h.check(owner, "GET", "/admins/nobody", nil, http.StatusNotFound)
	h.check(owner, "GET", "/admins/nobody/delete", nil, http.StatusNotFound)
	h.check(owner, "GET", "/tokens/nothing/delete", nil, http.StatusNotFound)
	for _, p := range []string{"password", "disable", "enable", "totp/disable", "delete", "role"} {
		h.check(owner, "POST", "/admins/nobody/"+p, form("role", "viewer"), http.StatusNotFound)
	}
	h.check(owner, "POST", "/tokens/nothing/delete", form(), http.StatusNotFound)
	h.wantActions()
}

// TestAdminAdd: a new admin's generated password is shown once, works, and is not on any page
// afterwards; adding it again is refused inline.
func TestAdminAdd(t *testing.T) {
	h := newAdminsHarness(t)
	ctx := context.Background()
	body := h.check(owner, "POST", "/admins", form("name", "dave", "role", "tenant_admin", "tenant", "bravo"), http.StatusOK,
		"Admin dave added", "shown only now", "Pass it on securely")
	password := secretOf(t, body)
	a, ok, err := h.store.CheckAdminPassword(ctx, "dave", password)
	if err != nil || !ok || a.Role != store.RoleTenantAdmin || a.TenantName != "bravo" {
		t.Fatalf("dave after adding: %+v, password works %v, %v", a, ok, err)
	}
	if got := h.do(owner, "POST", "/admins", nil).Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	for _, p := range []string{"/admins", "/admins/dave", "/admins/dave/delete"} {
		if b := h.check(owner, "GET", p, nil, http.StatusOK, "dave"); strings.Contains(b, password) {
			t.Errorf("GET %s shows dave's password again", p)
		}
	}
	// Sending the form again (a reload of the answer) adds nothing and shows no password.
	before := h.snapshot()
	body = h.check(owner, "POST", "/admins", form("name", "dave", "role", "tenant_admin", "tenant", "bravo"), http.StatusUnprocessableEntity,
		"already exists", `aria-invalid="true"`)
	if secretRE.MatchString(body) || strings.Contains(body, password) {
		t.Error("sending the form again shows a password")
	}
	if h.snapshot() != before {
		t.Error("sending the form again changed the admins")
	}
	// A viewer may have a tenant or not.
	h.check(owner, "POST", "/admins", form("name", "vera", "role", "viewer", "tenant", "acme"), http.StatusOK, "Admin vera added")
	h.check(owner, "POST", "/admins", form("name", "root2", "role", "owner"), http.StatusOK, "Admin root2 added")
	h.wantActions("admin.add admin:dave ", "admin.add admin:vera ", "admin.add admin:root2 ")
	for _, e := range h.audit.entries() {
		if strings.Contains(e.Detail, password) || strings.Contains(e.Target, password) {
			t.Errorf("the audit entry %+v holds the password", e)
		}
	}
	if e := h.audit.entries()[0]; e.Detail != "role tenant_admin, tenant bravo" || e.Actor != "olivia" {
		t.Errorf("audit entry of adding dave: %+v", e)
	}
}

// TestAdminsBadInput: every bad value is shown next to its field, with status 422, and nothing
// is stored or audited.
func TestAdminsBadInput(t *testing.T) {
	h := newAdminsHarness(t)
	long := strings.Repeat("a", 65)
	before := h.snapshot()
	for _, c := range []struct {
		path string
		form []string
		want []string
	}{
		// Adding admins.
		{"/admins", []string{"name", long, "role", "viewer"}, []string{"at most 64 are allowed", `aria-describedby="admin-name-error"`, `value="` + long + `"`}},
		{"/admins", []string{"name", "Eve", "role", "viewer"}, []string{"is not allowed", `aria-describedby="admin-name-error"`}},
		{"/admins", []string{"name", "", "role", "viewer"}, []string{"It is empty", "field-error"}},
		{"/admins", []string{"name", "-eve", "role", "viewer"}, []string{"starting with a letter or digit"}},
		{"/admins", []string{"name", "eve", "role", "god"}, []string{"Role “god” is unknown", `select id="admin-role" name="role" aria-invalid="true"`}},
		{"/admins", []string{"name", "eve", "role", ""}, []string{"Choose a role"}},
		{"/admins", []string{"name", "eve", "role", "tenant_admin"}, []string{"A tenant admin manages one tenant", `aria-describedby="admin-tenant-error"`}},
		{"/admins", []string{"name", "eve", "role", "viewer", "tenant", "nope"}, []string{"There is no tenant “nope”"}},
		{"/admins", []string{"name", "eve", "role", "tenant_admin", "tenant", long + long}, []string{"There is no tenant", "…"}},
		{"/admins", []string{"name", "eve", "role", "owner", "tenant", "acme"}, []string{"An owner manages every tenant"}},
		{"/admins", []string{"name", "carol", "role", "viewer"}, []string{"An admin with this name already exists"}},
		// Changing roles.
		{"/admins/carol/role", []string{"role", "god"}, []string{"Role “god” is unknown", `select id="role" name="role" aria-invalid="true"`}},
		{"/admins/carol/role", []string{"role", "tenant_admin", "tenant", ""}, []string{"A tenant admin manages one tenant", `aria-describedby="tenant-error"`}},
		{"/admins/carol/role", []string{"role", "tenant_admin", "tenant", "nope"}, []string{"There is no tenant “nope”"}},
		{"/admins/carol/role", []string{"role", "owner", "tenant", "acme"}, []string{"An owner manages every tenant"}},
		// The last enabled owner stays one: the controller's refusal, on the form.
		{"/admins/olivia/role", []string{"role", "viewer"}, []string{"last enabled owner", `class="flash err"`}},
		{"/admins/olivia/disable", nil, []string{"last enabled owner", `class="flash err"`}},
		{"/admins/olivia/delete", nil, []string{"last enabled owner", `class="flash err"`, "Remove admin olivia?"}},
		// Adding tokens.
		{"/tokens", []string{"name", long, "role", "viewer"}, []string{"at most 64 are allowed", `aria-describedby="token-name-error"`}},
		{"/tokens", []string{"name", "CI", "role", "viewer"}, []string{"is not allowed"}},
		{"/tokens", []string{"name", "deploy", "role", "root"}, []string{"Role “root” is unknown", `select id="token-role" name="role" aria-invalid="true"`}},
		{"/tokens", []string{"name", "deploy", "role", "tenant_admin"}, []string{"A tenant admin manages one tenant", `aria-describedby="token-tenant-error"`}},
		{"/tokens", []string{"name", "deploy", "role", "viewer", "tenant", "nope"}, []string{"There is no tenant “nope”"}},
		{"/tokens", []string{"name", "deploy", "role", "viewer", "days", "soon"}, []string{"whole number of days", `aria-describedby="token-days-error"`, `value="soon"`}},
		{"/tokens", []string{"name", "deploy", "role", "viewer", "days", "0"}, []string{"whole number of days"}},
		{"/tokens", []string{"name", "deploy", "role", "viewer", "days", "-3"}, []string{"whole number of days"}},
		{"/tokens", []string{"name", "deploy", "role", "viewer", "days", "99999"}, []string{"from 1 to 3650"}},
		{"/tokens", []string{"name", "ci", "role", "viewer"}, []string{"An API token with this name already exists"}},
	} {
		body := h.check(owner, "POST", c.path, form(c.form...), http.StatusUnprocessableEntity, c.want...)
		if !strings.Contains(body, "field-error") && !strings.Contains(body, `class="flash err"`) {
			t.Errorf("POST %s %q: no inline error", c.path, c.form)
		}
		if secretRE.MatchString(body) {
			t.Errorf("POST %s %q: the refusal shows a secret", c.path, c.form)
		}
	}
	if after := h.snapshot(); after != before {
		t.Errorf("bad input changed admins or tokens:\n%s\nwas\n%s", after, before)
	}
	h.wantActions()
	// Oversized forms are refused whole.
	h.check(owner, "POST", "/admins", form("name", strings.Repeat("x", maxForm)), http.StatusRequestEntityTooLarge)
	h.check(owner, "POST", "/tokens", form("name", strings.Repeat("x", maxForm)), http.StatusRequestEntityTooLarge)
}

// TestAdminPasswordReset: the new password is shown once, works, ends the admin's sessions,
// and the old one stops working.
func TestAdminPasswordReset(t *testing.T) {
	h := newAdminsHarness(t)
	ctx := setup()
	old, _, err := setAdminPassword(ctx, h.store, "carol", "carol's old long password")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.store.CreateSession(ctx, store.NewSession{AdminID: old.ID, Now: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	body := h.check(owner, "POST", "/admins/carol/password", form(), http.StatusOK, "New password for carol", "shown only now", "Pass it on securely")
	password := secretOf(t, body)
	if _, ok, err := h.store.CheckAdminPassword(ctx, "carol", password); err != nil || !ok {
		t.Errorf("the new password does not work: %v %v", ok, err)
	}
	if _, ok, _ := h.store.CheckAdminPassword(ctx, "carol", "carol's old long password"); ok {
		t.Error("the old password still works")
	}
	if n, err := h.store.CountAdminSessions(ctx, old.ID, time.Now(), time.Hour); err != nil || n != 0 {
		t.Errorf("carol has %d sessions after the reset (%v), want 0", n, err)
	}
	if b := h.check(owner, "GET", "/admins/carol", nil, http.StatusOK); strings.Contains(b, password) || secretRE.MatchString(b) {
		t.Error("carol's page shows the password again")
	}
	// A second reset is a new password.
	if again := secretOf(t, h.check(owner, "POST", "/admins/carol/password", form(), http.StatusOK)); again == password {
		t.Error("a second reset showed the same password")
	}
	// The owner's own: the page says the session ended.
	h.check(owner, "POST", "/admins/olivia/password", form(), http.StatusOK, "your sessions ended")
	h.wantActions("admin.password admin:carol ", "admin.password admin:carol ", "admin.password admin:olivia ")
	for _, e := range h.audit.entries() {
		if strings.Contains(e.Detail, password) {
			t.Errorf("the audit entry %+v holds the password", e)
		}
	}
}

// TestAdminChanges: role and tenant, disable and enable, one-time codes off, remove.
func TestAdminChanges(t *testing.T) {
	h := newAdminsHarness(t)
	ctx := setup()
	admin := func(name string) store.Admin {
		t.Helper()
		a, err := h.store.Admin(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	// Role and tenant.
	w := h.do(owner, "POST", "/admins/carol/role", form("role", "viewer", "tenant", "bravo"))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admins/carol?ok=admin-role" {
		t.Errorf("role change: %d %q", w.Code, w.Header().Get("Location"))
	}
	if a := admin("carol"); a.Role != store.RoleViewer || a.TenantName != "bravo" {
		t.Errorf("carol after the role change: %s of %q", a.Role, a.TenantName)
	}
	h.check(owner, "GET", "/admins/carol?ok=admin-role", nil, http.StatusOK, "Role saved", `<option value="bravo" selected>`)
	h.check(owner, "POST", "/admins/carol/role", form("role", "viewer"), http.StatusSeeOther) // every tenant now
	h.check(owner, "POST", "/admins/carol/role", form("role", "viewer"), http.StatusSeeOther) // unchanged: not audited
	h.check(owner, "POST", "/admins/vic/role", form("role", "owner"), http.StatusSeeOther)
	// Now that vic is an owner too, olivia may become a viewer.
	h.check(owner, "POST", "/admins/olivia/role", form("role", "viewer"), http.StatusSeeOther)
	h.check(owner, "POST", "/admins/olivia/role", form("role", "owner"), http.StatusSeeOther)

	// Disable and enable.
	h.check(owner, "POST", "/admins/carol/disable", form(), http.StatusSeeOther)
	if !admin("carol").Disabled {
		t.Error("carol is not disabled")
	}
	h.check(owner, "GET", "/admins/carol?ok=admin-disabled", nil, http.StatusOK, "Admin disabled", `action="/admins/carol/enable"`)
	h.check(owner, "POST", "/admins/carol/disable", form(), http.StatusSeeOther) // already: not audited
	h.check(owner, "POST", "/admins/carol/enable", form(), http.StatusSeeOther)
	if admin("carol").Disabled {
		t.Error("carol is still disabled")
	}

	// One-time codes.
	c := admin("carol")
	if err := h.store.SetAdminTOTPPending(ctx, c.ID, make([]byte, store.TOTPSecretLen)); err != nil {
		t.Fatal(err)
	}
	if err := h.store.EnableAdminTOTP(ctx, c.ID, 1); err != nil {
		t.Fatal(err)
	}
	h.check(owner, "GET", "/admins/carol", nil, http.StatusOK, `action="/admins/carol/totp/disable"`)
	h.check(owner, "POST", "/admins/carol/totp/disable", form(), http.StatusSeeOther)
	if admin("carol").TOTPEnabled {
		t.Error("carol still has one-time codes")
	}
	h.check(owner, "POST", "/admins/carol/totp/disable", form(), http.StatusSeeOther) // already off: not audited
	h.check(owner, "GET", "/admins/carol?ok=admin-totp-off", nil, http.StatusOK, "One-time codes turned off")

	// Remove, with its confirmation.
	h.check(owner, "GET", "/admins/carol/delete", nil, http.StatusOK, "Remove admin carol?", `action="/admins/carol/delete"`, "Cancel")
	h.check(owner, "GET", "/admins/olivia/delete", nil, http.StatusOK, "This is you")
	w = h.do(owner, "POST", "/admins/carol/delete", form())
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admins?ok=admin-removed" {
		t.Errorf("remove: %d %q", w.Code, w.Header().Get("Location"))
	}
	if _, err := h.store.Admin(ctx, "carol"); err == nil {
		t.Error("carol is still there")
	}
	if b := h.check(owner, "GET", "/admins?ok=admin-removed", nil, http.StatusOK, "Admin removed"); strings.Contains(b, "carol") {
		t.Error("the admins page still lists carol")
	}
	h.wantActions(
		"admin.update admin:carol ", "admin.update admin:carol ", "admin.update admin:vic ",
		"admin.update admin:olivia ", "admin.update admin:olivia ",
		"admin.update admin:carol ", "admin.update admin:carol ",
		"admin.totp.disable admin:carol ",
		"admin.remove admin:carol ")
	details := []string{}
	for _, e := range h.audit.entries() {
		details = append(details, e.Detail)
	}
	want := []string{"role viewer, tenant bravo", "role viewer", "role owner", "role viewer", "role owner",
		"disabled; its sessions ended", "enabled", "one-time codes turned off", "role viewer"}
	if !slices.Equal(details, want) {
		t.Errorf("audit details:\n got %q\nwant %q", details, want)
	}
	// The entries reached the audit log that the audit page reads.
	es, _, err := h.store.ListAudit(ctx, store.AuditQuery{Actor: "olivia"})
	if err != nil || len(es) != len(want) {
		t.Errorf("audit log has %d entries by olivia (%v), want %d", len(es), err, len(want))
	}
}

// TestUIAPITokens: a token is created with its secret shown once, listed without it, works for
// the API, and is removed after a confirmation.
func TestUIAPITokens(t *testing.T) {
	h := newAdminsHarness(t)
	ctx := context.Background()
	start := time.Now()
	body := h.check(owner, "POST", "/tokens", form("name", "deploy", "role", "tenant_admin", "tenant", "acme", "days", "30"), http.StatusOK,
		"API token deploy created", "shown only now", "secret store")
	secret := secretOf(t, body)
	if !strings.HasPrefix(secret, store.TokenPrefix) || len(secret) != store.TokenLen {
		t.Errorf("secret %q does not look like a token", secret)
	}
	k, err := h.store.APITokenBySecret(ctx, secret)
	if err != nil || k.Name != "deploy" || k.Role != store.RoleTenantAdmin || k.TenantName != "acme" {
		t.Fatalf("token of the secret: %+v, %v", k, err)
	}
	if d := k.ExpiresAt.Sub(start); d < 30*24*time.Hour-time.Minute || d > 30*24*time.Hour+time.Minute {
		t.Errorf("token expires in %s, want 30 days", d)
	}
	list := h.check(owner, "GET", "/admins", nil, http.StatusOK, "<strong>deploy</strong>", `href="/tokens/deploy/delete"`)
	if strings.Contains(list, secret) || secretRE.MatchString(list) {
		t.Error("the admins page shows the token again")
	}
	// Sending the form again makes no second token and shows no secret.
	before := h.snapshot()
	again := h.check(owner, "POST", "/tokens", form("name", "deploy", "role", "tenant_admin", "tenant", "acme", "days", "30"), http.StatusUnprocessableEntity, "already exists")
	if secretRE.MatchString(again) || h.snapshot() != before {
		t.Error("sending the form again made or showed a token")
	}
	// No days: never expires.
	body = h.check(owner, "POST", "/tokens", form("name", "forever", "role", "owner", "days", ""), http.StatusOK, "never expires")
	if k, err := h.store.APITokenBySecret(ctx, secretOf(t, body)); err != nil || !k.ExpiresAt.IsZero() {
		t.Errorf("forever: %+v, %v", k, err)
	}

	// Remove, with its confirmation.
	h.check(owner, "GET", "/tokens/deploy/delete", nil, http.StatusOK, "Remove API token deploy?", `action="/tokens/deploy/delete"`)
	w := h.do(owner, "POST", "/tokens/deploy/delete", form())
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/admins?ok=token-removed#tokens" {
		t.Errorf("remove: %d %q", w.Code, w.Header().Get("Location"))
	}
	if _, err := h.store.APITokenBySecret(ctx, secret); err == nil {
		t.Error("the removed token still works")
	}
	h.check(owner, "GET", "/admins?ok=token-removed", nil, http.StatusOK, "API token removed")
	h.check(owner, "POST", "/tokens/deploy/delete", form(), http.StatusNotFound)
	h.wantActions("token.add token:deploy ", "token.add token:forever ", "token.remove token:deploy ")
	for _, e := range h.audit.entries() {
		if strings.Contains(e.Detail, store.TokenPrefix) {
			t.Errorf("the audit entry %+v holds a token", e)
		}
	}
	if d := h.audit.entries()[0].Detail; !strings.HasPrefix(d, "role tenant_admin, tenant acme; expires ") {
		t.Errorf("audit detail of adding deploy: %q", d)
	}
}

// TestAdminAddDefaults submits the add-admin form as the page fills it, with only a name
// typed: the defaults must make an admin (they once chose a tenant admin without a tenant).
func TestAdminAddDefaults(t *testing.T) {
	h := newAdminsHarness(t)
	page := h.check(owner, "GET", "/admins", nil, http.StatusOK)
	f := form("name", "newbie")
	for _, field := range []string{"role", "tenant"} {
		sel := regexp.MustCompile(`(?s)<select id="admin-` + field + `" name="` + field + `".*?</select>`).FindString(page)
		m := regexp.MustCompile(`<option value="([^"]*)" selected>`).FindStringSubmatch(sel)
		if m == nil {
			t.Fatalf("the add-admin form's %s select has no selected option:\n%s", field, sel)
		}
		f.Set(field, html.UnescapeString(m[1]))
	}
	h.check(owner, "POST", "/admins", f, http.StatusOK, "Admin newbie added")
	a, err := h.store.Admin(context.Background(), "newbie")
	if err != nil || a.Role != store.RoleViewer || a.TenantName != "" {
		t.Errorf("the form's defaults made %+v, %v; want a viewer of every tenant", a, err)
	}
}
