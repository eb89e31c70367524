package firewall

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzValidInterfaceName: a name ValidInterfaceName accepts is one Linux takes for a network
// interface (dev_valid_name: 1-15 bytes, not "." or "..", no '/', ':' or white space), needs
// no quoting in iptables rules or ip(8), and keeps the UAPI socket in its directory.
func FuzzValidInterfaceName(f *testing.F) {
	for _, s := range []string{"popgate0", "wg-acme.1", "a", "123456789012345", "1234567890123456", "", ".", "..", "...",
		"-j", "eth0:1", "a/b", "a b", "é", "pg\x00", "..\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !ValidInterfaceName(name) {
			return
		}
		if len(name) < 1 || len(name) > 15 || name == "." || name == ".." {
			t.Fatalf("accepted %q, which Linux refuses", name)
		}
		if strings.IndexFunc(name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
		}) >= 0 {
			t.Fatalf("accepted %q, which needs quoting", name)
		}
		const dir = "/var/run/wireguard"
		if sock := filepath.Join(dir, name+".sock"); filepath.Dir(sock) != dir {
			t.Fatalf("accepted %q: its socket %s is not in %s", name, sock, dir)
		}
	})
}
