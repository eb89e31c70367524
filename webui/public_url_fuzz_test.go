package webui

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParsePublicURL: --public-url gives a canonical base (parsing it again gives it back)
// that is an http(s) URL with a host and nothing after the path, on which a download link
// stays: base + "/dl/TOKEN" has the base's scheme and host and the base's path before
// /dl/TOKEN. A refusal is one line that quotes the value.
func FuzzParsePublicURL(f *testing.F) {
	for _, s := range []string{
		"https://vpn.example.com", "https://vpn.example.com/", "http://192.0.2.1:8080/", "https://[2001:db8::1]:8443",
		"https://example.com/vpn/", "HTTPS://Vpn.Example.com", "https://user@vpn.example.com", "https://vpn.example.com/?",
		"https://vpn.example.com/#", "https://vpn.example.com:0", "https://[fe80::1%25eth0]:443", "https://example.com/a%2Fb/",
		"https://example.com//evil.example", "https://example.com/%2e%2e/", "https://%65xample.com", "https://ex\nample.com",
		"http://:80", "https://example.com:", "https:example.com", "https:///example.com",
	} {
		f.Add(s)
	}
	const token = "pgd_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	f.Fuzz(func(t *testing.T, s string) {
		base, err := ParsePublicURL(s)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "public URL ") || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("%q: error %q is not one line about the public URL", s, msg)
			}
			return
		}
		again, err := ParsePublicURL(base)
		if err != nil || again != base {
			t.Fatalf("%q gave %q, which gives %q, %v", s, base, again, err)
		}
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil ||
			u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" || strings.HasSuffix(base, "/") {
			t.Fatalf("%q gave %q: %+v, %v", s, base, u, err)
		}
		link, err := url.Parse(base + DownloadPathPrefix + token)
		if err != nil || link.Scheme != u.Scheme || link.Host != u.Host || link.User != nil ||
			link.Path != u.Path+DownloadPathPrefix+token || link.RawQuery != "" || link.Fragment != "" {
			t.Fatalf("%q: the link on %q parses as %+v, %v", s, base, link, err)
		}
	})
}
