package control

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// TestControllerPeers checks the peer sequence against ListPeers, the slice it saves building.
func TestControllerPeers(t *testing.T) {
	ctx := context.Background()
	c, _ := newTestController(t)
	for _, tenant := range []string{"acme", "bravo", "empty"} {
		if _, err := c.AddTenant(ctx, tenant); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []AddPeerRequest{{Tenant: "bravo", Name: "carol"}, {Tenant: "acme", Name: "phone"}, {Tenant: "acme", Name: "laptop"}} {
		if _, _, err := c.AddPeer(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SetPeerEnabled(ctx, "acme", "phone", false); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"", "acme", "bravo", "empty"} {
		want, err := c.ListPeers(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := c.Peers(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // a sequence can be ranged over again
			if got := slices.Collect(seq); len(got) != len(want) || len(want) > 0 && !reflect.DeepEqual(got, want) {
				t.Errorf("Peers(%q) = %v, want %v", tenant, got, want)
			}
		}
	}
	// Stopping early: the sequence must not call yield again (range panics if it does).
	seq, _ := c.Peers(ctx, "")
	n := 0
	for range seq {
		if n++; n == 2 {
			break
		}
	}
	if _, err := c.Peers(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Peers of an unknown tenant: %v, want ErrNotFound", err)
	}
}

// TestControllerPolicyWarnings: names the tenant does not have (yet) are warnings, not
// mistakes: the policy is set and they match nothing until they exist.
func TestControllerPolicyWarnings(t *testing.T) {
	ctx := context.Background()
	c, _ := newTestController(t)
	for _, tenant := range []string{"acme", "globex"} {
		if _, err := c.AddTenant(ctx, tenant); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []AddPeerRequest{
		{Tenant: "acme", Name: "laptop", Groups: []string{"eng"}},
		// Another tenant's peer and group count for nothing in acme's policy.
		{Tenant: "globex", Name: "ghost", Groups: []string{"nosuch"}},
	} {
		if _, _, err := c.AddPeer(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	const text = "default deny\nallow group:nosuch -> peer:ghost tcp 22\nallow group:eng -> site:lab\nallow peer:laptop -> any\n"
	rs, warnings, err := c.SetPolicy(ctx, "acme", text)
	if err != nil {
		t.Fatalf("SetPolicy with unknown names: %v, want it set with warnings", err)
	}
	if rs.Len() != 3 {
		t.Errorf("rule set has %d rules, want 3", rs.Len())
	}
	lines := func(ws []firewall.Problem) string {
		var b strings.Builder
		for _, w := range ws {
			fmt.Fprintf(&b, "%s\n", w)
		}
		return b.String()
	}
	want := `line 2: no peer of this tenant is in group "nosuch": add one to it (popgate peer add --group nosuch ...) or remove the reference
line 2: the tenant has no peer "ghost": add it (popgate peer add) or remove the reference
line 3: the tenant has no site "lab": create it (a site connector peer with its LAN prefixes) or remove the reference
`
	if got := lines(warnings); got != want {
		t.Errorf("warnings:\n%swant\n%s", got, want)
	}
	if stored, _, err := c.Policy(ctx, "acme"); err != nil || stored != text {
		t.Errorf("stored policy %q, %v; want the new one", stored, err)
	}
	if got, err := c.PolicyWarnings(ctx, "acme"); err != nil || lines(got) != want {
		t.Errorf("PolicyWarnings = %q, %v", lines(got), err)
	}

	// A group that gets a peer later is no warning any more.
	if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "phone", Groups: []string{"nosuch"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.PolicyWarnings(ctx, "acme"); err != nil || len(got) != 2 || strings.Contains(lines(got), "nosuch") {
		t.Errorf("PolicyWarnings after a peer joined group nosuch = %q, %v", lines(got), err)
	}
	if got, err := c.PolicyWarnings(ctx, "globex"); err != nil || len(got) != 0 {
		t.Errorf("PolicyWarnings of a tenant without a policy = %q, %v", lines(got), err)
	}

	// Mistakes still refuse the policy, warnings or not, and nothing is stored.
	for _, bad := range []string{
		"default deny\nallow group:eng -> any tpc\n",
		"default deny\nallow group:nobody -> any\nallow any -> 10.0.0.1/8\n",
	} {
		_, _, err := c.SetPolicy(ctx, "acme", bad)
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SetPolicy(%q) = %v, want ErrInvalid", bad, err)
		}
		if stored, _, _ := c.Policy(ctx, "acme"); stored != text {
			t.Errorf("a refused policy was stored: %q", stored)
		}
	}
}

// TestControllerRotatePeerKey: a new key and config; the old key is out of the desired state
// the data plane has when RotatePeerKey returns.
func TestControllerRotatePeerKey(t *testing.T) {
	ctx := context.Background()
	c, dp := newTestController(t)
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	old, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "laptop", Groups: []string{"eng"}})
	if err != nil {
		t.Fatal(err)
	}
	userKey, _ := store.GeneratePrivateKey()
	if _, _, err := c.AddPeer(ctx, AddPeerRequest{Tenant: "acme", Name: "phone", PublicKey: userKey.PublicKey().String()}); err != nil {
		t.Fatal(err)
	}

	p, conf, err := c.RotatePeerKey(ctx, "acme", "laptop", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if p.PublicKey == old.PublicKey || !p.HasPrivateKey || p.IPv4 != old.IPv4 || !slices.Equal(p.Groups, old.Groups) {
		t.Errorf("after rotation: %+v, before %+v", p.Peer, old.Peer)
	}
	priv := configPrivateKey(t, conf)
	if priv.PublicKey() != p.PublicKey {
		t.Errorf("the new config's private key belongs to %s, the peer has %s", priv.PublicKey(), p.PublicKey)
	}
	if again, err := c.PeerConfig(ctx, "acme", "laptop", ""); err != nil || again != conf {
		t.Errorf("PeerConfig after rotation differs from the rotation's config (%v):\n%s\nvs\n%s", err, again, conf)
	}
	if old, new := desiredHasKey(dp, old.PublicKey), desiredHasKey(dp, p.PublicKey); old || !new {
		t.Errorf("desired state after rotation: old key present %v, new key present %v", old, new)
	}

	// A peer whose user brought the key needs the new public key.
	_, _, err = c.RotatePeerKey(ctx, "acme", "phone", "", "")
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "give the new public key") {
		t.Errorf("rotating a user-key peer without a key: %v", err)
	}
	newUser, _ := store.GeneratePrivateKey()
	p, conf, err = c.RotatePeerKey(ctx, "acme", "phone", newUser.PublicKey().String(), "")
	if err != nil || p.PublicKey != newUser.PublicKey() || p.HasPrivateKey {
		t.Fatalf("rotating a user-key peer to a new public key: %+v, %v", p, err)
	}
	if !strings.Contains(conf, "# PrivateKey = <your private key>") {
		t.Errorf("config of a user-key peer after rotation has no placeholder:\n%s", conf)
	}
	if _, _, err := c.RotatePeerKey(ctx, "acme", "phone", "not-a-key", ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a malformed key: %v, want ErrInvalid", err)
	}
	if _, _, err := c.RotatePeerKey(ctx, "acme", "tablet", "", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown peer: %v, want ErrNotFound", err)
	}
}

// configPrivateKey returns the PrivateKey of a wg-quick config.
func configPrivateKey(t *testing.T, conf string) store.Key {
	t.Helper()
	for line := range strings.Lines(conf) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PrivateKey = "); ok {
			k, err := store.ParseKey(v)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
	}
	t.Fatalf("config has no PrivateKey line:\n%s", conf)
	return store.Key{}
}
