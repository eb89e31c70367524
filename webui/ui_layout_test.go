package webui

import (
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/popgate/popgate/firewall"
)

// TestUINavigationMarksTenants: a tenant's pages (its peers, policy and routes, the tabs)
// mark Tenants in the main navigation; the list of every peer marks Peers.
func TestUINavigationMarksTenants(t *testing.T) {
	h := newUIHarness(t)
	current := regexp.MustCompile(`<a href="([^"]*)" aria-current="page">([^<]*)</a>`)
	for _, c := range []struct {
		as   *Principal
		path string
		want string
	}{
		{owner, "/peers?tenant=acme", "Tenants"},
		{owner, "/tenants/acme/policy", "Tenants"},
		{owner, "/tenants/acme/routes", "Tenants"},
		{owner, "/tenants", "Tenants"},
		{owner, "/peers", "Peers"},
		{acmeAdmin, "/peers?tenant=acme", "Tenant"},
		{acmeAdmin, "/peers", "Peers"},
	} {
		body := h.check(c.as, "GET", c.path, nil, http.StatusOK)
		nav := body[strings.Index(body, `<nav class="mainnav"`):]
		nav = nav[:strings.Index(nav, "</nav>")]
		if m := current.FindStringSubmatch(nav); m == nil || m[2] != c.want {
			t.Errorf("%s as %s marks %q in the navigation, want %s", c.path, name(c.as), m, c.want)
		}
	}
}

func TestCrumbs(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want []crumb
	}{
		{[]string{"Tenants", "/tenants", "acme", "/peers?tenant=acme", "Policy", ""},
			[]crumb{{"Tenants", "/tenants"}, {"acme", "/peers?tenant=acme"}, {"Policy", ""}}},
		// The page itself never links, whatever it is given.
		{[]string{"Admins", "/admins", "olivia", "/admins/olivia"}, []crumb{{"Admins", "/admins"}, {"olivia", ""}}},
		// A step the principal does not get is left out; the page alone has none.
		{[]string{"", "/tenants", "acme", ""}, nil},
		{[]string{"", "/tenants", "acme", "/peers?tenant=acme", "Routes", ""}, []crumb{{"acme", "/peers?tenant=acme"}, {"Routes", ""}}},
		{nil, nil},
	} {
		if got := crumbs(c.in...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("crumbs(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestUIBreadcrumbs: breadcrumbs end with the page itself, marked as the current page, and
// never with a separator.
func TestUIBreadcrumbs(t *testing.T) {
	h := newUIHarness(t)
	re := regexp.MustCompile(`(?s)<nav class="crumbs" aria-label="Breadcrumbs"><ol>(.*?)</ol></nav>`)
	for _, c := range []struct {
		as    *Principal
		path  string
		steps string // the crumbs' text, " › " between
	}{
		{owner, "/peers?tenant=acme", "Tenants › acme"},
		{owner, "/tenants/acme/policy", "Tenants › acme › Policy"},
		{owner, "/tenants/acme/routes", "Tenants › acme › Routes"},
		{owner, "/tenants/acme/peers/laptop", "Tenants › acme › laptop"},
		{owner, "/tenants/acme/peers/laptop/config", "Tenants › acme › laptop › Config"},
		{owner, "/tenants/acme/peers/laptop/delete", "Tenants › acme › laptop › Delete"},
		{owner, "/tenants/acme/delete", "Tenants › acme › Delete"},
		{owner, "/peers/new?tenant=acme", "Peers › New peer"},
		{acmeAdmin, "/tenants/acme/policy", "acme › Policy"},
		{acmeAdmin, "/tenants/acme/peers/laptop", "acme › laptop"},
		{acmeAdmin, "/peers?tenant=acme", ""},
		{owner, "/peers", ""},
	} {
		body := h.check(c.as, "GET", c.path, nil, http.StatusOK)
		m := re.FindStringSubmatch(body)
		if c.steps == "" {
			if m != nil || strings.Contains(body, `class="crumbs"`) {
				t.Errorf("%s as %s has breadcrumbs, want none", c.path, name(c.as))
			}
			continue
		}
		if m == nil {
			t.Errorf("%s as %s has no breadcrumbs\n%s", c.path, name(c.as), excerpt(body))
			continue
		}
		items := regexp.MustCompile(`<li>(.*?)</li>`).FindAllStringSubmatch(m[1], -1)
		var steps []string
		for _, it := range items {
			steps = append(steps, regexp.MustCompile(`<[^>]*>`).ReplaceAllString(it[1], ""))
		}
		if got := strings.Join(steps, " › "); got != c.steps {
			t.Errorf("%s as %s: breadcrumbs %q, want %q", c.path, name(c.as), got, c.steps)
		}
		if last := items[len(items)-1][1]; !strings.HasPrefix(last, `<span aria-current="page">`) {
			t.Errorf("%s: the last breadcrumb %q is not marked as the current page", c.path, last)
		}
	}
}

func TestInEffect(t *testing.T) {
	stats := []firewall.RuleStat{{Line: 3, Rule: "allow a"}, {Line: 4, Rule: "deny b"}, {Line: 2, Rule: "default deny"}}
	got := inEffect(stats)
	if len(got.Rules) != 2 || got.Rules[0].Line != 3 || got.Rules[1].Line != 4 || got.Default == nil || got.Default.Rule != "default deny" {
		t.Errorf("inEffect = %+v", got)
	}
	if got := inEffect(stats[2:]); len(got.Rules) != 0 || got.Default == nil {
		t.Errorf("inEffect of the default alone = %+v", got)
	}
	if got := inEffect(nil); got.Rules != nil || got.Default != nil {
		t.Errorf("inEffect(nil) = %+v", got)
	}
}
