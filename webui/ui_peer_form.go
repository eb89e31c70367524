package webui

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/popgate/popgate/store"
)

// splitList splits a form field of names or prefixes separated by commas, spaces or lines.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == ';'
	})
}

// parseGroups reads a groups field; the string is the inline error, "" when they are fine.
func parseGroups(field string) ([]string, string) {
	groups := splitList(field)
	if len(groups) > store.MaxPeerGroups {
		return nil, fmt.Sprintf("%d groups given, at most %d are allowed: drop some, or merge groups that are used alike.", len(groups), store.MaxPeerGroups)
	}
	for _, g := range groups {
		if err := store.ValidateGroupName(g); err != nil {
			return nil, err.Error()
		}
	}
	return groups, ""
}

// parseSite reads the site connector fields site and site_prefixes. Both empty: not a site
// connector. Errors are keyed by field.
func parseSite(site, prefixes string) (string, []netip.Prefix, formErrors) {
	site = strings.TrimSpace(site)
	items := splitList(prefixes)
	errs := formErrors{}
	if site == "" && len(items) == 0 {
		return "", nil, nil
	}
	if site == "" {
		errs["site"] = "Name the site whose LAN these prefixes are, e.g. office; or clear the prefixes."
	} else if err := store.ValidateSiteName(site); err != nil {
		errs["site"] = err.Error()
	}
	if len(items) == 0 {
		errs["site_prefixes"] = "Give the site's LAN prefixes, e.g. 10.10.0.0/24, one per line."
	}
	if len(items) > store.MaxSitePrefixes {
		errs["site_prefixes"] = fmt.Sprintf("%d prefixes given, at most %d are allowed.", len(items), store.MaxSitePrefixes)
	}
	var out []netip.Prefix
	for _, it := range items {
		p, err := parsePrefix(it)
		if err != "" {
			errs["site_prefixes"] = err
			break
		}
		out = append(out, p)
	}
	if len(errs) > 0 {
		return site, nil, errs
	}
	return site, out, nil
}

// parsePrefix reads one CIDR prefix; the string is the inline error.
func parsePrefix(s string) (netip.Prefix, string) {
	s = strings.TrimSpace(s)
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if len(s) > 60 {
			s = s[:60] + "…"
		}
		return p, fmt.Sprintf("%q is not a CIDR prefix: write e.g. 10.10.0.0/24 or fd00:10::/64.", s)
	}
	if m := p.Masked(); m != p {
		return p, fmt.Sprintf("%s has host bits set: write %s.", p, m)
	}
	return p, ""
}

// nameError words a name validation error for the field it appears under: without the
// name, which the field shows, and as a sentence.
func nameError(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, " is invalid: "); ok {
		msg = after
	}
	return sentence(msg)
}

// sentence starts msg with a capital letter and ends it with a full stop.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	if c := msg[0]; 'a' <= c && c <= 'z' {
		msg = string(c-'a'+'A') + msg[1:]
	}
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}
