package webui

import (
	"net/url"
	"testing"

	"github.com/popgate/popgate/store"
)

// FuzzPeerQuery: any query string gives a query whose URL parses back to itself.
func FuzzPeerQuery(f *testing.F) {
	for _, s := range []string{"", "q=laptop&tenant=acme&sort=-rx&page=3", "page=-1&sort=%00", "q=%ff%fe&online=maybe", "group=a&group=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q := parsePeerQuery(v)
		if q.Page < 1 || len(q.Q) > 200 {
			t.Fatalf("%q: %+v", raw, q)
		}
		u, err := url.Parse(q.URL())
		if err != nil {
			t.Fatalf("%q: URL %q: %v", raw, q.URL(), err)
		}
		if q2 := parsePeerQuery(u.Query()); q2 != q {
			t.Fatalf("%q: %+v round-trips to %+v", raw, q, q2)
		}
	})
}

// FuzzPeerForm: the group and site fields give valid values or an error, never both.
func FuzzPeerForm(f *testing.F) {
	for _, s := range [][2]string{{"eng, ops", "10.0.0.0/8"}, {"b@d", "10.0.0.1/8"}, {"", "banana\n::/0"}, {"a b c", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, groups, prefixes string) {
		gs, msg := parseGroups(groups)
		if msg == "" {
			for _, g := range gs {
				if err := store.ValidateGroupName(g); err != nil {
					t.Fatalf("%q gave invalid group %q", groups, g)
				}
			}
		}
		site, ps, errs := parseSite(groups, prefixes)
		if errs == nil && site != "" {
			if err := store.ValidateSiteName(site); err != nil || len(ps) == 0 {
				t.Fatalf("(%q, %q) gave site %q %v", groups, prefixes, site, ps)
			}
			for _, p := range ps {
				if p != p.Masked() {
					t.Fatalf("(%q, %q) gave unmasked prefix %s", groups, prefixes, p)
				}
			}
		}
	})
}
