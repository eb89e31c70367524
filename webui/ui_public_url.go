package webui

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ParsePublicURL checks the address people reach the web UI at (serve's --public-url), from
// which one-time download links are built, and returns it without a trailing '/':
// "https://vpn.example.com" or, behind a proxy that serves popgate under a path,
// "https://example.com/vpn". It must be an absolute http or https URL with a host and no
// user, query or fragment.
func ParsePublicURL(s string) (string, error) {
	const fix = "use the address people open popgate at, e.g. https://vpn.example.com"
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("public URL %q is not a URL: %s", s, fix)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("public URL %q does not start with http:// or https://: %s", s, fix)
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("public URL %q has no host name: %s", s, fix)
	case u.User != nil:
		return "", fmt.Errorf("public URL %q holds a user name: leave it out (%s)", s, fix)
	case u.RawQuery != "" || u.ForceQuery:
		return "", fmt.Errorf("public URL %q has a query ('?…'): leave it out (%s)", s, fix)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "", fmt.Errorf("public URL %q has a fragment ('#…'): leave it out (%s)", s, fix)
	case u.Opaque != "":
		return "", fmt.Errorf("public URL %q is not a URL: %s", s, fix)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("public URL %q has port %q: use a port 1-65535, or none", s, p)
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// SetPublicURL makes one-time download links start with base (see ParsePublicURL) instead of
// the address the admin's browser used. Call it before Routes.
func (u *UI) SetPublicURL(base string) error {
	if base == "" {
		u.publicURL = ""
		return nil
	}
	clean, err := ParsePublicURL(base)
	if err != nil {
		return err
	}
	u.publicURL = clean
	return nil
}

// linkBase is where one-time links point: the public URL, else the address r came to.
func (u *UI) linkBase(r *http.Request) string {
	if u.publicURL != "" {
		return u.publicURL
	}
	return siteURL(r)
}
