package control

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/popgate/popgate/store"
)

func TestClientConfigRender(t *testing.T) {
	priv := store.Key{1, 2, 3}
	cc := clientConfig{
		Tenant: "acme", Peer: "laptop", Region: "local",
		PrivateKey:      &priv,
		Addresses:       []netip.Addr{netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("fd12:3456:789a::6440:2")},
		DNS:             []netip.Addr{netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("fd12:3456:789a::1")},
		MTU:             1420,
		ServerPublicKey: store.Key{9},
		Endpoint:        "[2001:db8::1]:51820",
		AllowedIPs:      []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	}
	want := `# popgate: peer laptop of tenant acme, region local
[Interface]
PrivateKey = AQIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
Address = 100.64.0.2/32, fd12:3456:789a::6440:2/128
DNS = 100.64.0.1, fd12:3456:789a::1
MTU = 1420

[Peer]
PublicKey = CQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
Endpoint = [2001:db8::1]:51820
AllowedIPs = 0.0.0.0/0, ::/0
PersistentKeepalive = 25
`
	if got := cc.render(); got != want {
		t.Errorf("render:\n%s\nwant:\n%s", got, want)
	}

	cc.PrivateKey = nil
	cc.DNS = nil
	got := cc.render()
	if strings.Contains(got, "\nPrivateKey") || !strings.Contains(got, "# PrivateKey = <your private key>") {
		t.Errorf("user-key config must carry a placeholder comment, not a key:\n%s", got)
	}
	if strings.Contains(got, "DNS") {
		t.Errorf("config without DNS service has a DNS line:\n%s", got)
	}
}
