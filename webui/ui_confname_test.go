package webui

import (
	"crypto/sha256"
	"encoding/base32"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/popgate/popgate/store"
)

// wgQuickFileRE is wg-quick's own check of a config file's name (wireguard-tools,
// src/wg-quick/linux.bash, parse_options): the interface name it creates, then ".conf".
const wgQuickFileRE = `(^|/)([a-zA-Z0-9_=+.-]{1,15})\.conf$`

var wgQuickFile = regexp.MustCompile(wgQuickFileRE)

// checkWGQuickName fails t unless wg-quick takes name as it is, as an interface a userspace
// implementation can also be started with (no leading '-' or '.').
func checkWGQuickName(t *testing.T, tenant, peer, name string) {
	t.Helper()
	if !wgQuickFile.MatchString(name) || strings.Contains(name, "/") {
		t.Fatalf("configFileName(%q, %q) = %q: wg-quick refuses it (%s)", tenant, peer, name, wgQuickFileRE)
	}
	if !isAlnumByte(name[0]) {
		t.Fatalf("configFileName(%q, %q) = %q starts with %q", tenant, peer, name, name[0])
	}
}

func TestConfigFileName(t *testing.T) {
	for _, c := range []struct{ tenant, peer, want string }{
		{"acme", "laptop", "acme-laptop.conf"},
		{"acme", "phone.alice", "phone.alice.conf"}, // 16 with the tenant
		{"acme", "alice-phone", "alice-phone.conf"},
		{"acme", "alice-laptop", "alice-laptop.conf"},
		{"acme", "bob", "acme-bob.conf"},
		{"acme", "x", "acme-x.conf"},
		{"a", "abcdefghijklm", "a-abcdefghijklm.conf"}, // exactly 15
		{"ab", "abcdefghijklm", "abcdefghijklm.conf"},
		{"globex-industries", "hank", "hank.conf"},
		{"acme", "abcdefghijklmno", "abcdefghijklmno.conf"}, // the peer alone: exactly 15
		// Longer peer names keep 10 characters and a hash.
		{"acme", "alice-laptop-work", "alice-lapt+" + hash4("acme", "alice-laptop-work") + ".conf"},
		{"acme", "alice-laptop-home", "alice-lapt+" + hash4("acme", "alice-laptop-home") + ".conf"},
		{"acme", "Build_Server_0001", "Build_Serv+" + hash4("acme", "Build_Server_0001") + ".conf"},
		// No separator left dangling before the hash.
		{"acme", "very.long-.name.of.a.peer", "very.long+" + hash4("acme", "very.long-.name.of.a.peer") + ".conf"},
		// A peer named like another peer's tenant-prefixed file gets the hash.
		{"acme", "acme-longname01", "acme-longn+" + hash4("acme", "acme-longname01") + ".conf"},
		{"acme", "longname01", "acme-longname01.conf"},
		// Names that break the naming rules still give a name wg-quick takes.
		{"acme", "bad name/../x", "bad_name+" + hash4("acme", "bad name/../x") + ".conf"},
		{"acme", "", "wg+" + hash4("acme", "") + ".conf"},
		{"acme", "-dash", "wg-dash+" + hash4("acme", "-dash") + ".conf"},
		{"acme", "+++", "wg+" + hash4("acme", "+++") + ".conf"},
		{"", "laptop", "laptop.conf"},
		{".", "0", "0.conf"},
	} {
		got := configFileName(c.tenant, c.peer)
		if got != c.want {
			t.Errorf("configFileName(%q, %q) = %q, want %q", c.tenant, c.peer, got, c.want)
		}
		checkWGQuickName(t, c.tenant, c.peer, got)
	}
	// The names are stable: a peer's file keeps its name from one version to the next.
	if got := configFileName("acme", "alice-laptop-work"); got != "alice-lapt+jeyb.conf" {
		t.Errorf("configFileName(acme, alice-laptop-work) = %q, was alice-lapt+jeyb.conf", got)
	}
	// The hash tells apart peers whose shortened names would be the same.
	if a, b := configFileName("acme", "alice-laptop-work"), configFileName("acme", "alice-laptop-home"); a == b {
		t.Errorf("two peers share the file name %s", a)
	}
	// Tenants are told apart in shortened names too.
	if a, b := configFileName("acme", "alice-laptop-work"), configFileName("bravo", "alice-laptop-work"); a == b {
		t.Errorf("the peers of two tenants share the file name %s", a)
	}
}

// TestConfigFileNameIn: another region's config is named after the peer and the region, so
// that the files of two regions import side by side.
func TestConfigFileNameIn(t *testing.T) {
	for _, c := range []struct{ tenant, peer, region, want string }{
		{"acme", "laptop", "", "acme-laptop.conf"}, // the controller's own region: as before
		{"acme", "laptop", "fra", "acme-laptop-fra.conf"},
		{"acme", "alice-phone", "fra", "alice-phone-fra.conf"},
		{"acme", "bob", "ams1", "acme-bob-ams1.conf"},
		{"acme", "bob", "us-east1", "bob=us-east1.conf"},
		// Too long with the home name: the peer name shortened, '=' and the region.
		{"acme", "alice-laptop", "fra", "alice-lapto=fra.conf"},
		{"acme", "laptop", "us-east-1", "lapto=us-east-1.conf"},
		{"acme", "alice-laptop-work", "ams", "alice-lapto=ams.conf"},
		{"acme", "alice-laptop-work", "eu-west2", "alice=eu-west2.conf"},
		{"acme", "-dash", "fra", "wg-dash=fra.conf"},
		// A region too long to keep: the hash of tenant, peer and region.
		{"acme", "laptop", "europe-central-1", "laptop=" + hash4("acme", "laptop/europe-central-1") + ".conf"},
		{"acme", "alice-laptop", "bad region", "alice-lapt=" + hash4("acme", "alice-laptop/bad region") + ".conf"},
	} {
		got := configFileNameIn(c.tenant, c.peer, c.region)
		if got != c.want {
			t.Errorf("configFileNameIn(%q, %q, %q) = %q, want %q", c.tenant, c.peer, c.region, got, c.want)
		}
		checkWGQuickName(t, c.tenant, c.peer, got)
	}
}

// hash4 is the disambiguator of a shortened name, computed here on its own: the first 4
// letters of the lower-case base32 of SHA-256("tenant/peer").
func hash4(tenant, peer string) string {
	sum := sha256.Sum256([]byte(tenant + "/" + peer))
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:]))[:4]
}

// TestConfigFileNameMatchesWGQuick checks that the regular expression the tests hold names
// is still the one in the wg-quick installed here.
func TestConfigFileNameMatchesWGQuick(t *testing.T) {
	script, err := os.ReadFile("/usr/bin/wg-quick")
	if err != nil {
		t.Skipf("no wg-quick to compare with (%v): apt-get install wireguard-tools", err)
	}
	if !strings.Contains(string(script), `[[ $CONFIG_FILE =~ `+wgQuickFileRE+` ]]`) {
		t.Fatalf("/usr/bin/wg-quick no longer checks file names with %s: update wgQuickFileRE and configFileName", wgQuickFileRE)
	}
}

// FuzzConfigFileName: whatever the names, wg-quick takes the file name; the same names give
// the same file name; and two valid peer names of one tenant give different file names
// unless both are shortened and their hashes collide.
func FuzzConfigFileName(f *testing.F) {
	for _, s := range [][3]string{
		{"acme", "laptop", "alice-laptop-work"},
		{"acme", "acme-longname01", "longname01"},
		{"globex-industries", "hank", "hank.laptop"},
		{"a", "abcdefghijklm", "abcdefghijklmn"},
		{"", "", "\xff"},
		{"acme", "../../etc/passwd", "a b"},
		{".", "0", "-"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, tenant, p1, p2 string) {
		a, b := configFileName(tenant, p1), configFileName(tenant, p2)
		checkWGQuickName(t, tenant, p1, a)
		checkWGQuickName(t, tenant, p2, b)
		if again := configFileName(tenant, p1); again != a {
			t.Fatalf("configFileName(%q, %q) gave %q, then %q", tenant, p1, a, again)
		}
		valid := store.ValidateTenantName(tenant) == nil && store.ValidatePeerName(p1) == nil && store.ValidatePeerName(p2) == nil
		if valid && p1 != p2 && a == b && !strings.Contains(a, "+") {
			t.Fatalf("peers %q and %q of tenant %q share the file name %q", p1, p2, tenant, a)
		}
		// Another region's file (p2 taken as a region name): wg-quick takes it, and for a
		// valid region it is not the home file's name.
		ra := configFileNameIn(tenant, p1, p2)
		checkWGQuickName(t, tenant, p1, ra)
		if p2 != "" && store.ValidateRegionName(p2) == nil && store.ValidatePeerName(p1) == nil && ra == a {
			t.Fatalf("peer %q of tenant %q: region %q's file has the home name %q", p1, tenant, p2, a)
		}
		if again := configFileNameIn(tenant, p1, p2); again != ra {
			t.Fatalf("configFileNameIn(%q, %q, %q) gave %q, then %q", tenant, p1, p2, ra, again)
		}
	})
}
