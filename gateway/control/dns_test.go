package control

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// TestControllerDNSUpstreams: a tenant's upstreams reach the nodes in its Desired, and only
// its own; reset takes them away again.
func TestControllerDNSUpstreams(t *testing.T) {
	ctx := context.Background()
	c, dp := newTestController(t)
	for _, tenant := range []string{"acme", "bravo"} {
		if _, err := c.AddTenant(ctx, tenant); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SetDNSUpstreams(ctx, "acme", []string{"tls://dns.quad9.net@9.9.9.9", "149.112.112.112"}); err != nil {
		t.Fatal(err)
	}
	upstreams := func(tenant string) string {
		d := dp.Desired()
		if d == nil {
			return "no desired state"
		}
		for _, tn := range d.Tenants {
			if tn.Name == tenant {
				return fmt.Sprint(tn.DNS.Upstreams)
			}
		}
		return "no tenant " + tenant
	}
	waitDesired := func(tenant, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for upstreams(tenant) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s's upstreams in the desired state: %s, want %s", tenant, upstreams(tenant), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	want := fmt.Sprint([]plane.DNSUpstream{{Addr: netip.MustParseAddrPort("9.9.9.9:853"), TLSName: "dns.quad9.net"}, {Addr: netip.MustParseAddrPort("149.112.112.112:53")}})
	waitDesired("acme", want)
	if got := upstreams("bravo"); got != "[]" {
		t.Errorf("bravo's upstreams: %s, want none", got)
	}
	if _, err := c.SetDNSUpstreams(ctx, "acme", []string{"192.168.1.1"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a private upstream: %v", err)
	}
	if _, err := c.SetDNSUpstreams(ctx, "acme", nil); err != nil {
		t.Fatal(err)
	}
	waitDesired("acme", "[]")
}
