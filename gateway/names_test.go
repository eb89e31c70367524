package gateway

import (
	"strings"
	"testing"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// TestPolicyNamesFollowStore: policies name peers, groups and sites by the names the store
// gives them. The firewall, which may not import store, writes the store's peer-name rule
// again in its parser (nameRule, MaxNameLen); this test holds the two to one rule: the
// parser accepts exactly the names the store accepts.
func TestPolicyNamesFollowStore(t *testing.T) {
	names := []string{
		"a", "Z", "0", "laptop", "Alice.Laptop", "eng_team-2", "a.b_c-d", "9lives",
		strings.Repeat("a", firewall.MaxNameLen), strings.Repeat("a", firewall.MaxNameLen+1),
		".hidden", "_x", "-x", "a:b", "a/b", "a+b", "a=b", "a@b", "a*b", "a\\b", "a'b", `a"b`,
		"é", "aé", "a\x00b", "a\x7fb", "a\xffb",
	}
	kinds := []struct {
		prefix   string
		validate func(string) error
	}{
		{"peer:", store.ValidatePeerName},
		{"group:", store.ValidateGroupName},
		{"site:", store.ValidateSiteName},
	}
	for _, k := range kinds {
		for _, name := range names {
			stored := k.validate(name) == nil
			_, err := firewall.Parse("default deny\nallow " + k.prefix + name + " -> any\n")
			if parsed := err == nil; parsed != stored {
				t.Errorf("%s%q: the store accepts it: %v, a policy may name it: %v (%v)", k.prefix, name, stored, parsed, err)
			}
		}
	}
}
