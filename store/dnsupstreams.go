package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// dnsUpstreamsVersion is the schema version that added tenants' DNS upstreams.
const dnsUpstreamsVersion = 15

// MaxDNSUpstreams is the most upstreams a tenant may set.
const MaxDNSUpstreams = 4

// Default ports of a tenant's upstreams.
const (
	DNSPort = 53  // plain DNS
	DoTPort = 853 // DNS over TLS (RFC 7858)
)

// DNSUpstream is a resolver a tenant's queries are forwarded to: plain DNS over UDP, or DNS
// over TLS (TLSName set) to the server at Addr whose certificate must name TLSName.
type DNSUpstream struct {
	Addr netip.AddrPort
	// TLSName is the server's name its certificate is verified against; "": plain DNS.
	TLSName string
}

// String is the upstream as ParseDNSUpstream reads it, with its port: "9.9.9.9:53",
// "tls://dns.quad9.net@9.9.9.9:853".
func (u DNSUpstream) String() string {
	if u.TLSName == "" {
		return u.Addr.String()
	}
	return "tls://" + u.TLSName + "@" + u.Addr.String()
}

// dnsUpstreamSyntax says how an upstream is written.
const dnsUpstreamSyntax = "give ADDR[:PORT] for plain DNS (port 53), e.g. 9.9.9.9 or [2620:fe::fe]:53, " +
	"or tls://NAME@ADDR[:PORT] for DNS over TLS (port 853), e.g. tls://dns.quad9.net@9.9.9.9"

// ParseDNSUpstream reads a tenant's upstream: ADDR[:PORT] for plain DNS (port 53 unless
// given; an IPv6 address with a port in brackets), or tls://NAME@ADDR[:PORT] for DNS over
// TLS (port 853 unless given), NAME being the server's name its certificate is checked
// against. The address is an IP address, never a name (the resolver would need a resolver to
// find it), and a public one (PublicAddr): a tenant's upstream must not make the PoPs reach
// their own networks. The error wraps ErrInvalid.
func ParseDNSUpstream(s string) (DNSUpstream, error) {
	bad := func(why string) (DNSUpstream, error) {
		return DNSUpstream{}, errorf(ErrInvalid, "DNS upstream %q: %s", truncate(s, 80), why)
	}
	if s == "" || len(s) > 300 || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return bad("empty, too long, or holds spaces or other than ASCII: " + dnsUpstreamSyntax)
	}
	var u DNSUpstream
	rest, port := s, uint16(DNSPort)
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		if !strings.EqualFold(scheme, "tls") {
			return bad("the scheme " + scheme + ":// is not one popgate speaks: " + dnsUpstreamSyntax)
		}
		name, addr, ok := strings.Cut(after, "@")
		if !ok {
			if _, err := netip.ParseAddr(strings.Trim(after, "[]")); err == nil {
				return bad("DNS over TLS needs the server's name to check its certificate against: tls://NAME@" + after + ", e.g. tls://dns.quad9.net@9.9.9.9")
			}
			return bad("DNS over TLS needs the server's address too (popgate does not look it up): tls://" + after + "@ADDR, e.g. tls://dns.quad9.net@9.9.9.9")
		}
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		if _, err := netip.ParseAddr(name); err == nil || validateDNSName(name) != nil || !strings.Contains(name, ".") {
			return bad("the TLS name " + strconv.Quote(truncate(name, 80)) + " is not a server's DNS name: give the name its certificate holds, e.g. dns.quad9.net")
		}
		u.TLSName, rest, port = name, addr, DoTPort
	}
	if ap, err := netip.ParseAddrPort(rest); err == nil {
		if ap.Port() == 0 {
			return bad("port 0: use a port from 1 to 65535")
		}
		u.Addr = ap
	} else if a, err := netip.ParseAddr(unbracket(rest)); err == nil {
		u.Addr = netip.AddrPortFrom(a, port)
	} else {
		host, portText := rest, ""
		if i := strings.LastIndexByte(rest, ':'); i >= 0 && (strings.HasPrefix(rest, "[") || strings.Count(rest, ":") == 1) {
			host, portText = unbracket(rest[:i]), rest[i+1:]
		}
		if _, err := netip.ParseAddr(host); err == nil && portText != "" {
			return bad("the port " + strconv.Quote(truncate(portText, 20)) + " is not a number from 1 to 65535")
		}
		return bad(strconv.Quote(truncate(host, 80)) + " is not an IP address (popgate does not look names up): " + dnsUpstreamSyntax)
	}
	if a := u.Addr.Addr(); a.Zone() != "" || a.Is4In6() {
		return bad("write the address plainly, without a zone or an IPv4-mapped IPv6 form")
	}
	if !PublicAddr(u.Addr.Addr()) {
		return bad(u.Addr.Addr().String() + " is not a public address: a tenant's upstream must be on the internet, " +
			"not on the PoPs' own networks (loopback, private, link-local, shared or overlay addresses); leave the tenant on the node's upstreams " +
			"('popgate dns upstream reset') to reach those")
	}
	return u, nil
}

// unbracket removes the brackets around an IPv6 address: "[::1]" is "::1".
func unbracket(s string) string {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}

// ParseDNSUpstreams reads a tenant's upstreams (ParseDNSUpstream), at most MaxDNSUpstreams,
// none twice. The error wraps ErrInvalid.
func ParseDNSUpstreams(ss []string) ([]DNSUpstream, error) {
	if len(ss) > MaxDNSUpstreams {
		return nil, errorf(ErrInvalid, "%d DNS upstreams: a tenant may have at most %d, tried in order", len(ss), MaxDNSUpstreams)
	}
	out := make([]DNSUpstream, 0, len(ss))
	for _, s := range ss {
		u, err := ParseDNSUpstream(s)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if o == u {
				return nil, errorf(ErrInvalid, "DNS upstream %s is given twice: give each once", u)
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// DNSTarget names a tenant's resolver settings in the audit log: "dns:acme".
func DNSTarget(tenant string) string { return "dns:" + tenant }

// SetDNSUpstreams makes ups (ParseDNSUpstreams) tenant's upstreams, in order; none returns
// the tenant to the node's. It returns the upstreams now in force. The error wraps
// ErrNotFound for an unknown tenant, ErrInvalid for a bad upstream.
func (s *Store) SetDNSUpstreams(ctx context.Context, tenant string, ups []string) ([]DNSUpstream, error) {
	parsed, err := ParseDNSUpstreams(ups)
	if err != nil {
		return nil, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		t, err := getTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		old, err := tenantDNSUpstreams(ctx, tx, t.ID)
		if err != nil {
			return err
		}
		if equalUpstreams(old, parsed) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM dns_upstreams WHERE tenant_id = ?", t.ID); err != nil {
			return fmt.Errorf("store: set the DNS upstreams of %s: %w", tenant, err)
		}
		names := make([]string, len(parsed))
		for i, u := range parsed {
			names[i] = u.String()
			if _, err := tx.ExecContext(ctx, "INSERT INTO dns_upstreams (tenant_id, position, upstream) VALUES (?, ?, ?)", t.ID, i+1, names[i]); err != nil {
				return fmt.Errorf("store: set the DNS upstreams of %s: %w", tenant, err)
			}
		}
		if len(parsed) == 0 {
			return s.logChange(ctx, tx, tenant, "dns.upstream.reset", DNSTarget(tenant), "the node's upstreams")
		}
		return s.logChange(ctx, tx, tenant, "dns.upstream.set", DNSTarget(tenant), strings.Join(names, " "))
	})
	if err != nil {
		return nil, err
	}
	return parsed, nil
}

func equalUpstreams(a, b []DNSUpstream) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// DNSUpstreams returns tenant's upstreams in order; none: the tenant uses the node's. The
// error wraps ErrNotFound for an unknown tenant.
func (s *Store) DNSUpstreams(ctx context.Context, tenant string) ([]DNSUpstream, error) {
	var out []DNSUpstream
	err := s.read(ctx, func(q querier) error {
		t, err := getTenant(ctx, q, tenant)
		if err != nil {
			return err
		}
		out, err = tenantDNSUpstreams(ctx, q, t.ID)
		return err
	})
	return out, err
}

func tenantDNSUpstreams(ctx context.Context, q querier, tenantID int64) ([]DNSUpstream, error) {
	all, err := queryDNSUpstreams(ctx, q, "WHERE tenant_id = ?", tenantID)
	return all[tenantID], err
}

// allDNSUpstreams returns the upstreams of every tenant that set some, by tenant ID.
func allDNSUpstreams(ctx context.Context, q querier) (map[int64][]DNSUpstream, error) {
	return queryDNSUpstreams(ctx, q, "")
}

// queryDNSUpstreams reads upstreams by tenant ID, each tenant's in order. One that no longer
// parses (a rule made stricter since it was written) is left out: its tenant falls back on
// its others, or on the node's.
func queryDNSUpstreams(ctx context.Context, q querier, where string, args ...any) (map[int64][]DNSUpstream, error) {
	rows, err := q.QueryContext(ctx, "SELECT tenant_id, upstream FROM dns_upstreams "+where+" ORDER BY tenant_id, position", args...)
	if err != nil {
		return nil, fmt.Errorf("store: read DNS upstreams: %w", err)
	}
	defer rows.Close()
	out := map[int64][]DNSUpstream{}
	for rows.Next() {
		var id int64
		var text string
		if err := rows.Scan(&id, &text); err != nil {
			return nil, fmt.Errorf("store: read DNS upstreams: %w", err)
		}
		if u, err := ParseDNSUpstream(text); err == nil {
			out[id] = append(out[id], u)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read DNS upstreams: %w", err)
	}
	return out, nil
}
