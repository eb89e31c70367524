package webui

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestParsePublicURL(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"https://vpn.example.com", "https://vpn.example.com", ""},
		{"https://vpn.example.com/", "https://vpn.example.com", ""},
		{"http://192.0.2.1:8080/", "http://192.0.2.1:8080", ""},
		{"https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443", ""},
		{"https://example.com/vpn/", "https://example.com/vpn", ""},
		{"HTTPS://Vpn.Example.com", "https://Vpn.Example.com", ""},
		{"vpn.example.com", "", "does not start with http:// or https://"},
		{"ftp://vpn.example.com", "", "does not start with http:// or https://"},
		{"/dl", "", "does not start with http:// or https://"},
		{"https://", "", "has no host name"},
		{"https://:8443", "", "has no host name"},
		{"https://user:secret@vpn.example.com", "", "holds a user name"},
		{"https://vpn.example.com/?a=b", "", "has a query"},
		{"https://vpn.example.com/?", "", "has a query"},
		{"https://vpn.example.com/#top", "", "has a fragment"},
		{"https://vpn.example.com:0", "", "has port \"0\""},
		{"https://vpn.example.com:99999", "", "has port \"99999\""},
		{"https://vpn.example.com:x", "", "is not a URL"},
		{"https://vpn example.com", "", "is not a URL"},
		{"", "", "does not start with http:// or https://"},
	} {
		got, err := ParsePublicURL(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("ParsePublicURL(%q) = %q, %v; want %q", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParsePublicURL(%q) = %q, %v; want an error saying %q", c.in, got, err, c.err)
		case c.err != "" && !strings.Contains(err.Error(), "use "):
			t.Errorf("ParsePublicURL(%q): the error %q does not say what to write", c.in, err)
		}
	}
}

// TestUIOneTimeLinkPublicURL: without a public URL, links point at the address the admin
// browsed and the page says so and how to change it; with one, links start with it.
func TestUIOneTimeLinkPublicURL(t *testing.T) {
	h := newUIHarness(t)
	const config = "/tenants/acme/peers/laptop/config"
	linkRE := regexp.MustCompile(`value="([^"]*/dl/[A-Za-z0-9_-]+)"`)

	h.check(acmeAdmin, "GET", config, nil, http.StatusOK, `id="link-base-hint"`, "<code>http://example.com</code>", "--public-url")
	body := h.check(acmeAdmin, "POST", config+"/link", form("ttl", "1h"), http.StatusOK, `id="link-base-hint"`)
	if m := linkRE.FindStringSubmatch(body); m == nil || !strings.HasPrefix(m[1], "http://example.com/dl/pgd_") {
		t.Errorf("without a public URL the link is %q, want it on the browsed address http://example.com", m)
	}

	if err := h.ui.SetPublicURL("https://vpn.example.org/popgate/"); err != nil {
		t.Fatal(err)
	}
	body = h.check(acmeAdmin, "POST", config+"/link", form("ttl", "1h"), http.StatusOK)
	m := linkRE.FindStringSubmatch(body)
	if m == nil || !strings.HasPrefix(m[1], "https://vpn.example.org/popgate/dl/pgd_") {
		t.Fatalf("with public URL https://vpn.example.org/popgate/ the link is %q", m)
	}
	if strings.Contains(body, `id="link-base-hint"`) {
		t.Error("with a public URL set, the page still says links point at the browsed address")
	}
	// The link works at the node (a proxy strips the path prefix).
	h.check(anonymous, "GET", strings.TrimPrefix(m[1], "https://vpn.example.org/popgate"), nil, http.StatusOK, "Your VPN config")

	if err := h.ui.SetPublicURL("vpn.example.org"); err == nil {
		t.Error("SetPublicURL took a URL without a scheme")
	}
}
