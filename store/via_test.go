package store

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseVia(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Via
		err  string
	}{
		{"internet", Via{Internet: true}, ""},
		{"site:office", Via{Site: "office"}, ""},
		{"exit:x1", Via{Exits: []string{"x1"}}, ""},
		{"exit:x2,exit:x1", Via{Exits: []string{"x2", "x1"}}, ""},
		{"exit:a,exit:b,exit:c,exit:d,exit:e,exit:f,exit:g,exit:h", Via{Exits: []string{"a", "b", "c", "d", "e", "f", "g", "h"}}, ""},
		{"exit:a,exit:b,exit:c,exit:d,exit:e,exit:f,exit:g,exit:h,exit:i", Via{}, "lists 9 exits: give at most 8"},
		{"exit:x1,exit:x1", Via{}, `names exit "x1" twice`},
		{"exit:x1,x2", Via{}, `"x2" is not exit:NAME`},
		{"exit:x1, exit:x2", Via{}, `" exit:x2" is not exit:NAME`},
		{"exit:x1,", Via{}, `"" is not exit:NAME`},
		{"exit:", Via{}, `exit node name "" is invalid`},
		{"exit:X1", Via{}, `exit node name "X1" is invalid`},
		{"Internet", Via{}, `use "internet"`},
		{"", Via{}, `use "internet"`},
		{"site:", Via{}, `site name "" is invalid`},
		{"exits:x1", Via{}, "exit nodes in order"},
		{"site:Branch-2.east_1", Via{Site: "Branch-2.east_1"}, ""},
		{"site:" + strings.Repeat("s", 64), Via{Site: strings.Repeat("s", 64)}, ""},
		{" internet", Via{}, `route via " internet" is invalid`},
		{"internet ", Via{}, `route via "internet " is invalid`},
		{"site", Via{}, `route via "site" is invalid`},
		{"Site:office", Via{}, `route via "Site:office" is invalid`},
		{"site: office", Via{}, `' ' at position 1 is not allowed`},
		{"site:office:2", Via{}, `':' at position 7 is not allowed`},
		{"site:-office", Via{}, `it starts with '-'`},
		{"site:" + strings.Repeat("s", 65), Via{}, `it has 65 characters, at most 64 are allowed`},
		{"site:caf\xc3\xa9", Via{}, `'é' at position 4 is not allowed`},
	} {
		got, err := ParseVia(tc.in)
		if tc.err != "" {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseVia(%q) = %v, want ErrInvalid with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseVia(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if s := got.String(); s != tc.in {
			t.Errorf("ParseVia(%q).String() = %q", tc.in, s)
		}
	}
}

// FuzzParseVia: whatever ParseVia accepts prints back as given and parses again the same,
// with 1 to MaxRouteExits distinct exits or a site or the internet.
func FuzzParseVia(f *testing.F) {
	for _, s := range []string{"internet", "site:office", "exit:x1,exit:x2", "exit:a,exit:a", "exit:,", "site:a,exit:b", "site:", "site:\xff", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVia(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseVia(%q): error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if v.String() != s {
			t.Fatalf("ParseVia(%q).String() = %q", s, v.String())
		}
		kinds := 0
		if v.Internet {
			kinds++
		}
		if v.Site != "" {
			kinds++
		}
		if len(v.Exits) > 0 {
			kinds++
			if len(v.Exits) > MaxRouteExits {
				t.Fatalf("ParseVia(%q): %d exits", s, len(v.Exits))
			}
			seen := map[string]bool{}
			for _, e := range v.Exits {
				if seen[e] || ValidateNodeName(e) != nil {
					t.Fatalf("ParseVia(%q): exit %q twice or invalid", s, e)
				}
				seen[e] = true
			}
		}
		if kinds != 1 {
			t.Fatalf("ParseVia(%q) = %+v: not exactly one kind", s, v)
		}
		again, err := ParseVia(v.String())
		if err != nil || !reflect.DeepEqual(again, v) {
			t.Fatalf("ParseVia(%q) again = %+v, %v", s, again, err)
		}
	})
}
