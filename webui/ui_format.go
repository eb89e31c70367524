package webui

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/store"
)

// templateFuncs are the functions the templates use. Times are shown in UTC, relative ones
// against u.now.
func (u *UI) templateFuncs() template.FuncMap {
	return template.FuncMap{
		"asset":      u.assetURL,
		"bytes":      humanBytes,
		"ago":        func(t time.Time) string { return ago(u.now(), t) },
		"until":      func(t time.Time) string { return until(u.now(), t) },
		"uptime":     func(t time.Time) string { return uptime(u.now().Sub(t)) },
		"when":       when,
		"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"num":        num,
		"join":       strings.Join,
		"tenantPath": tenantPath,
		"peerPath":   peerPath,
		"peersOf":    peersOf,
		"regionPath": regionPath,
		"nodePath":   nodePath,
		"shortKey":   shortKey,
		"add":        func(a, b int) int { return a + b },
		"roleLabel":  roleLabel,
		"now":        func() time.Time { return u.now() },
		"hasPrefix":  strings.HasPrefix,
		"hasSuffix":  strings.HasSuffix,
		"tabs":       func(tenant, active string) tenantTabs { return tenantTabs{tenant, active} },
		"crumbs":     crumbs,
		"tenantsCrumb": func(p *Principal) string {
			if p == nil || p.Tenant != "" {
				return "" // scoped to one tenant: no list of tenants above it
			}
			return "Tenants"
		},
		"inEffect": inEffect,
		"every":    everyText,
	}
}

// crumb is one step of a page's breadcrumbs: a page above it, or (Href "") the page itself.
type crumb struct{ Label, Href string }

// crumbs makes the breadcrumbs of a page from label, href pairs, the page itself last (its
// href is ignored). A pair with an empty label is a step the principal does not get (the
// tenants list of a tenant admin). Without a step above the page there are none.
func crumbs(pairs ...string) []crumb {
	var out []crumb
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] != "" {
			out = append(out, crumb{Label: pairs[i], Href: pairs[i+1]})
		}
	}
	if len(out) < 2 {
		return nil
	}
	out[len(out)-1].Href = ""
	return out
}

// rulesInEffect is a rule set's statistics as the policy page lists them: the rules in the
// order they are tried (which is line order), then the default apart.
type rulesInEffect struct {
	Rules   []firewall.RuleStat
	Default *firewall.RuleStat
}

// inEffect splits stats (firewall.RuleSet.Stats: the rules, then the default) for the page.
func inEffect(stats []firewall.RuleStat) rulesInEffect {
	if len(stats) == 0 {
		return rulesInEffect{}
	}
	n := len(stats) - 1
	return rulesInEffect{Rules: stats[:n], Default: &stats[n]}
}

// tenantTabs is the data of the tenant_tabs template.
type tenantTabs struct{ Tenant, Active string }

// roleLabel names p's role for people: "Owner", "Tenant admin · acme", "Viewer".
func roleLabel(p *Principal) string {
	var s string
	switch p.Role {
	case RoleOwner:
		s = "Owner"
	case RoleTenantAdmin:
		s = "Tenant admin"
	case RoleViewer:
		s = "Viewer"
	default:
		s = string(p.Role)
	}
	if p.Tenant != "" {
		s += " · " + p.Tenant
	}
	return s
}

// humanBytes writes n with binary units: "0 B", "512 B", "1.5 KiB", "23 MiB", "4.2 GiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	suffix := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}[i]
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 1, 64) + " " + suffix
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + suffix
}

// ago writes how long before now t was: "never", "just now", "42s ago", "2m ago", "3h ago",
// "5d ago", and the date beyond 60 days.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	case d < 60*24*time.Hour:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
	return t.UTC().Format("2006-01-02")
}

// until writes how long after now t is: "in 3h", "in 12d", "expired".
func until(now, t time.Time) string {
	d := t.Sub(now)
	switch {
	case d <= 0:
		return "expired"
	case d < time.Hour:
		return fmt.Sprintf("in %dm", int(d/time.Minute)+1)
	case d < 48*time.Hour:
		return fmt.Sprintf("in %dh", int(d/time.Hour))
	}
	return fmt.Sprintf("in %dd", int(d/(24*time.Hour)))
}

// uptime writes a duration as "3d 4h", "4h 12m", "12m", "40s".
func uptime(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd %dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// when writes an absolute time in UTC to the minute; "" for the zero time.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// num writes an integer with thousands separators: 10,000.
func num(v any) string {
	var s string
	switch n := v.(type) {
	case int:
		s = strconv.Itoa(n)
	case int64:
		s = strconv.FormatInt(n, 10)
	case uint64:
		s = strconv.FormatUint(n, 10)
	default:
		return fmt.Sprint(v)
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// shortKey is the start of a WireGuard key, enough to tell keys apart at a glance; pages
// that show it also give the whole key.
func shortKey(k store.Key) string { return k.String()[:8] + "…" }
