package main

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popgate/popgate/netstack"
	"github.com/popgate/popgate/store"
	"github.com/popgate/popgate/webui"
)

// wantOneLine fails t unless msg is a message for the terminal: not empty and one line.
func wantOneLine(t *testing.T, what, msg string) {
	t.Helper()
	if strings.TrimSpace(msg) == "" || strings.ContainsAny(msg, "\r\n") {
		t.Fatalf("%s: error %q is not one line", what, msg)
	}
}

// FuzzParseLifetime: --expires DURATION gives more than nothing and at most ten years, whole
// days for "Nd" and 365-day years for "Ny"; the duration printed the Go way parses back to
// itself.
func FuzzParseLifetime(f *testing.F) {
	for _, s := range []string{"90d", "12h", "30m", "2y", "10y", "3650d", "3651d", "11y", "0d", "-1d", "+1d", "1.5d", "d", "y",
		"87600h", "87600h0m1s", "1ns", "-1h", "9223372036854775807d", "1h30m", "1e3d", " 5d", "٣d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseLifetime(s)
		if err != nil {
			wantOneLine(t, s, err.Error())
			return
		}
		if d <= 0 || d > maxLifetime {
			t.Fatalf("%q gave %v", s, d)
		}
		if strings.HasSuffix(s, "d") && d%(24*time.Hour) != 0 || strings.HasSuffix(s, "y") && d%(365*24*time.Hour) != 0 {
			t.Fatalf("%q gave %v, not whole days or years", s, d)
		}
		if again, err := parseLifetime(d.String()); err != nil || again != d {
			t.Fatalf("%q gave %v, which parses as %v, %v", s, d, again, err)
		}
	})
}

// FuzzParseExpiry: peer set --expires WHEN gives a time after now, in UTC and whole seconds,
// that the API can carry: its JSON decodes to the same instant. A day means the end of it.
func FuzzParseExpiry(f *testing.F) {
	for _, s := range []string{"2027-03-31", "2027-03-31T18:00:00Z", "2027-03-31T18:00:00.5+02:00", "90d", "1y", "12h",
		"9999-12-31", "9999-12-31T23:00:00-05:00", "9999-12-31T23:59:59Z", "2026-01-01", "1970-01-01", "0000-01-01",
		"2027-02-30", "2027-03-31T25:00:00Z", "yesterday", "2027-3-31", "--", "2027-03-31 18:00"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		at, err := parseExpiry(now, s)
		if err != nil {
			msg := err.Error()
			wantOneLine(t, s, msg)
			if !strings.HasPrefix(msg, "--expires ") {
				t.Fatalf("%q: error %q does not name the flag", s, msg)
			}
			return
		}
		if !at.After(now) || at.Location() != time.UTC || !at.Equal(at.Truncate(time.Second)) {
			t.Fatalf("%q gave %v", s, at)
		}
		if day, err := time.Parse(time.DateOnly, s); err == nil && !at.Equal(day.Add(24*time.Hour)) {
			t.Fatalf("%q gave %v, not the end of that day", s, at)
		}
		b, err := json.Marshal(webui.APIPeerExpiry{ExpiresAt: &at})
		if err != nil {
			t.Fatalf("%q gave %v, which the API cannot carry: %v", s, at, err)
		}
		var back webui.APIPeerExpiry
		if err := json.Unmarshal(b, &back); err != nil || back.ExpiresAt == nil || !back.ExpiresAt.Equal(at) {
			t.Fatalf("%q gave %v, sent as %s: %v", s, at, b, err)
		}
	})
}

// FuzzRouteArgs: a PREFIX argument that the CLI accepts is one the store accepts (masked,
// IPv4 not written as IPv6) and prints back to itself; --via is internet, site:NAME with a
// valid site name, or exit nodes in order (store.ParseVia), printing back as given. Refusals are one line naming where the value came from.
func FuzzRouteArgs(f *testing.F) {
	for _, s := range [][2]string{{"10.0.0.0/8", "internet"}, {"10.1.2.3/8", "site:office"}, {"::ffff:10.0.0.0/104", "site:"},
		{"fd00::/8", "Internet"}, {"0.0.0.0/0", "site:Office Net"}, {"10.0.0.0/33", "site:a:b"}, {"banana", "exit:x1"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, prefix, via string) {
		if err := checkPrefix("--site-prefix", prefix); err != nil {
			wantOneLine(t, prefix, err.Error())
			if !strings.Contains(err.Error(), "--site-prefix") {
				t.Fatalf("%q: error %q does not name the flag", prefix, err)
			}
		} else {
			p, err := netip.ParsePrefix(prefix)
			if err != nil || p != p.Masked() || store.ValidatePrefix("prefix", p) != nil || p.String() != prefix {
				t.Fatalf("accepted %q: %v, %v", prefix, p, err)
			}
		}
		if err := checkVia(via); err != nil {
			wantOneLine(t, via, err.Error())
			return
		}
		if v, err := store.ParseVia(via); err != nil || v.String() != via {
			t.Fatalf("accepted --via %q", via)
		}
	})
}

// FuzzParseUpstreams: --dns-upstream gives resolver addresses the userspace exit takes (a
// node would fail to start otherwise), IPv4 not written as IPv6, that print back to
// themselves.
func FuzzParseUpstreams(f *testing.F) {
	for _, s := range []string{"9.9.9.9", "[2620:fe::fe]:53", "::1", "[::1]", "1.1.1.1:5353", "1.1.1.1:0", "0.0.0.0", "[::]:53",
		"::ffff:1.2.3.4", "::ffff:0.0.0.0", "[fe80::1%eth0]:53", "dns.example", "1.1.1.1:99999", "[1.1.1.1]", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ups, err := parseUpstreams([]string{"9.9.9.9", s})
		if err != nil {
			wantOneLine(t, s, err.Error())
			return
		}
		cfg := netstack.Config{DNSUpstreams: slices.Clone(ups), Output: func([][]byte) {}}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%q gave %v, which the exit refuses: %v", s, ups, err)
		}
		printed := make([]string, len(ups))
		for i, u := range ups {
			if u.Addr().Is4In6() {
				t.Fatalf("%q gave %v, IPv4 written as IPv6", s, u)
			}
			printed[i] = u.String()
		}
		if again, err := parseUpstreams(printed); err != nil || !slices.Equal(again, ups) {
			t.Fatalf("%q gave %v, which prints as %q and parses as %v, %v", s, ups, printed, again, err)
		}
	})
}
