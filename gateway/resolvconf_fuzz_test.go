package gateway

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popgate/popgate/netstack"
)

// FuzzResolvConfNameservers: whatever /etc/resolv.conf holds, the nameservers read from it
// are resolvers the userspace exit takes (a node would fail to start otherwise), on port 53,
// one per nameserver line at most, and written back as nameserver lines they read the same.
func FuzzResolvConfNameservers(f *testing.F) {
	for _, s := range []string{
		"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
		"# comment\nnameserver 9.9.9.9\nnameserver 2620:fe::fe\nnameserver fe80::1%eth0\n",
		"nameserver 0.0.0.0\n", "nameserver ::\n", "nameserver ::ffff:0.0.0.0\n", "nameserver ::ffff:1.2.3.4\n",
		"nameserver\t1.1.1.1 # cloudflare\r\n", "nameserver 1.1.1.1:53\n", "nameservers 1.1.1.1\n", "nameserver",
		"  nameserver 8.8.8.8", ";nameserver 8.8.4.4\n",
	} {
		f.Add(s)
	}
	path := filepath.Join(f.TempDir(), "resolv.conf")
	f.Fuzz(func(t *testing.T, data string) {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		got := resolvConfNameservers(path)
		if len(got) > strings.Count(data, "nameserver") {
			t.Fatalf("%q: %d nameservers", data, len(got))
		}
		cfg := netstack.Config{DNSUpstreams: slices.Clone(got), Output: func([][]byte) {}}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%q gave %v, which the exit refuses: %v", data, got, err)
		}
		var b strings.Builder
		for _, ap := range got {
			if ap.Port() != 53 || ap.Addr().Zone() != "" {
				t.Fatalf("%q gave %v", data, ap)
			}
			b.WriteString("nameserver " + ap.Addr().String() + "\n")
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if again := resolvConfNameservers(path); !slices.Equal(again, got) {
			t.Fatalf("%q gave %v, which written back reads as %v", data, got, again)
		}
	})
}
