package plane

import (
	"crypto/sha256"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/popgate/popgate/store"
)

func TestTenantDNSBlocklists(t *testing.T) {
	ads := Digest(sha256.Sum256([]byte("ads.example.com\n")))
	d := testDesired()
	d.Tenants[0].DNS.Blocklists = []BlocklistRef{{Name: "ads", SHA256: ads, Names: 1}, {Name: "more", SHA256: ads, Names: 1}}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"blocklists":[{"name":"ads","sha256":"`+ads.String()+`","names":1}`) {
		t.Errorf("the JSON does not carry the list's hash in hex: %s", b)
	}
	if strings.Count(string(b), `"dns":{`) != 1 {
		t.Errorf("a tenant without DNS settings has a dns key: %s", b)
	}
	var back Desired
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, d) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", back.Tenants, d.Tenants)
	}
	if err := back.Validate(); err != nil {
		t.Errorf("valid blocklists: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"sha256":"abc"}`), &BlocklistRef{}); err == nil {
		t.Error("a short hash was accepted")
	}

	for _, tc := range []struct {
		name string
		refs []BlocklistRef
		want string
	}{
		{"bad name", []BlocklistRef{{Name: "Ads", SHA256: ads}}, `blocklist name "Ads" is invalid`},
		{"twice", []BlocklistRef{{Name: "ads", SHA256: ads}, {Name: "ads", SHA256: ads}}, `blocklist "ads" is there twice`},
		{"no hash", []BlocklistRef{{Name: "ads"}}, "no content hash"},
		{"too many names", []BlocklistRef{{Name: "ads", SHA256: ads, Names: store.MaxBlocklistNames + 1}}, "1000001 names"},
		{"too many lists", func() []BlocklistRef {
			var rs []BlocklistRef
			for i := range store.MaxBlocklists + 1 {
				rs = append(rs, BlocklistRef{Name: "l" + string(rune('a'+i)), SHA256: ads})
			}
			return rs
		}(), "9 blocklists, at most 8"},
		{"too many names together", []BlocklistRef{{Name: "a", SHA256: ads, Names: store.MaxBlocklistNames}, {Name: "b", SHA256: ads, Names: store.MaxBlocklistNames},
			{Name: "c", SHA256: ads, Names: 1}}, "hold 2000001 names"},
	} {
		d := testDesired()
		d.Tenants[1].DNS.Blocklists = tc.refs
		err := d.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
