package webui

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/store"
)

// TestUIRotatePeerKey replaces a peer's key from its page: a new config for a key the server
// generates, the user's new public key for a key the user brought; refusals come back as the
// page with the error at the field, and each rotation is audited.
func TestUIRotatePeerKey(t *testing.T) {
	h := newUIHarness(t)
	ctx := setup()
	userKey := must(store.GeneratePrivateKey())
	if _, _, err := h.ctrl.AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "phone", PublicKey: userKey.PublicKey().String()}); err != nil {
		t.Fatal(err)
	}
	before, _ := h.ctrl.Peer(ctx, "acme", "laptop")
	// The pages offer it: a plain button for a server key, a key field for a user's key.
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/laptop", nil, http.StatusOK, `action="/tenants/acme/peers/laptop/rotate"`, "Replace key")
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/phone", nil, http.StatusOK, `action="/tenants/acme/peers/phone/rotate"`, `name="public_key"`)
	body := h.check(acmeViewer, "GET", "/tenants/acme/peers/laptop", nil, http.StatusOK)
	if strings.Contains(body, "/rotate") {
		t.Error("a viewer is offered to replace the key")
	}

	w := h.do(acmeAdmin, "POST", "/tenants/acme/peers/laptop/rotate", form())
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/tenants/acme/peers/laptop/config?ok=peer-rotated" {
		t.Fatalf("rotate: %d %q\n%s", w.Code, w.Header().Get("Location"), excerpt(w.Body.String()))
	}
	after, _ := h.ctrl.Peer(ctx, "acme", "laptop")
	if after.PublicKey == before.PublicKey || !after.HasPrivateKey || !slices.Equal(after.Groups, before.Groups) {
		t.Errorf("after rotation %+v, before %+v", after.Peer, before.Peer)
	}
	conf, _ := h.ctrl.PeerConfig(ctx, "acme", "laptop", "")
	newPriv, _, _ := strings.Cut(strings.Split(conf, "PrivateKey = ")[1], "\n")
	h.check(acmeAdmin, "GET", "/tenants/acme/peers/laptop/config?ok=peer-rotated", nil, http.StatusOK,
		"the old key stopped working", strings.ReplaceAll(newPriv, "+", "&#43;")) // as html/template writes it

	// A user's key: the new public key is required, and must be new and well-formed.
	other, _ := h.ctrl.Peer(ctx, "bravo", "phone")
	for _, c := range []struct {
		key  string
		want []string
	}{
		{"", []string{"give the new public key", `aria-invalid="true"`}},
		{"not-a-key", []string{"is not a WireGuard key", `value="not-a-key"`}},
		{userKey.PublicKey().String(), []string{"is the current key"}},
		// Another tenant's key: in use, without naming it.
		{other.PublicKey.String(), []string{"is already in use"}},
	} {
		body := h.check(acmeAdmin, "POST", "/tenants/acme/peers/phone/rotate", form("public_key", c.key), http.StatusUnprocessableEntity, c.want...)
		if strings.Contains(body, "bravo") {
			t.Errorf("refusal for key %q names tenant bravo", c.key)
		}
		// The other forms still show the peer as it is.
		if !strings.Contains(body, `id="name" name="name" value="phone"`) {
			t.Errorf("refusal for key %q: the rename form lost the peer's name", c.key)
		}
	}
	newKey := must(store.GeneratePrivateKey()).PublicKey()
	if w := h.do(acmeAdmin, "POST", "/tenants/acme/peers/phone/rotate", form("public_key", " "+newKey.String()+"\n")); w.Code != http.StatusSeeOther {
		t.Fatalf("rotate a user's key: %d\n%s", w.Code, excerpt(w.Body.String()))
	}
	if p, _ := h.ctrl.Peer(ctx, "acme", "phone"); p.PublicKey != newKey || p.HasPrivateKey {
		t.Errorf("after rotation to the user's new key: %+v", p.Peer)
	}
	// Another tenant's admin may not, and a viewer neither.
	h.check(bravoAdmin, "POST", "/tenants/acme/peers/laptop/rotate", form(), http.StatusNotFound)
	h.check(acmeViewer, "POST", "/tenants/acme/peers/laptop/rotate", form(), http.StatusForbidden)

	want := []string{"peer.rotate peer:acme/laptop acme", "peer.config.show peer:acme/laptop acme", "peer.rotate peer:acme/phone acme"}
	if got := h.audit.actions(); !slices.Equal(got, want) {
		t.Errorf("audit: %q, want %q", got, want)
	}
}

// TestUIPolicyWarnings: a policy naming groups and peers the tenant does not have is saved,
// and the editor says what matches nothing yet, until it exists.
func TestUIPolicyWarnings(t *testing.T) {
	h := newUIHarness(t)
	ctx := context.Background()
	text := "default deny\nallow group:nosuch -> peer:ghost tcp 22\nallow group:eng -> any\n"
	w := h.do(acmeAdmin, "POST", "/tenants/acme/policy", form("policy", text))
	if w.Code != http.StatusSeeOther {
		t.Fatalf("saving a policy with unknown names: %d\n%s", w.Code, excerpt(w.Body.String()))
	}
	if got, _, _ := h.ctrl.Policy(ctx, "acme"); got != text {
		t.Errorf("stored policy %q", got)
	}
	body := h.check(acmeAdmin, "GET", w.Header().Get("Location"), nil, http.StatusOK,
		"Policy saved and applied.", "names 2 things this tenant does not have",
		`<span class="line-no">line 2</span> no peer of this tenant is in group &#34;nosuch&#34;`,
		`the tenant has no peer &#34;ghost&#34;`)
	if strings.Contains(body, "The policy was not saved") {
		t.Error("the editor says the policy was not saved")
	}
	// Once a peer joins the group and a peer named ghost exists, there is nothing to warn about.
	if _, err := h.ctrl.SetPeerGroups(ctx, "acme", "laptop", []string{"eng", "nosuch"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.ctrl.AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "ghost"}); err != nil {
		t.Fatal(err)
	}
	body = h.check(acmeAdmin, "GET", "/tenants/acme/policy", nil, http.StatusOK)
	if strings.Contains(body, "does not have") {
		t.Errorf("warnings after the names exist:\n%s", excerpt(body))
	}
}
