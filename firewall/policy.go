package firewall

import (
	"net/netip"
	"strconv"
	"strings"
)

// Limits of a policy. Parse refuses input beyond them with a message naming the limit. The
// size of a policy file is bounded by its callers: store.MaxPolicySize, the one limit.
const (
	// MaxRules is the most rules one tenant's policy may hold.
	MaxRules = 100_000
	// MaxLineLen is the longest line, in bytes, of a policy file.
	MaxLineLen = 4096
	// MaxListItems is the most items in one source, destination or port list.
	MaxListItems = 256
	// MaxNameLen is the longest group, peer or site name.
	MaxNameLen = 64
)

// Action is what a rule or the default does with a new flow. The zero value is Deny.
type Action uint8

const (
	Deny Action = iota
	Allow
)

func (a Action) String() string {
	switch a {
	case Deny:
		return "deny"
	case Allow:
		return "allow"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Proto is the protocol a rule matches. ProtoICMP covers ICMPv4 and ICMPv6; ProtoAny also
// matches every other IP protocol (GRE, ESP, ...).
type Proto uint8

const (
	ProtoAny Proto = iota
	ProtoTCP
	ProtoUDP
	ProtoICMP
)

func (p Proto) String() string {
	switch p {
	case ProtoAny:
		return "any"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// hasPorts reports whether rules of this protocol may list ports.
func (p Proto) hasPorts() bool { return p == ProtoTCP || p == ProtoUDP }

// EndpointKind says what an Endpoint names.
type EndpointKind uint8

const (
	// EndpointAny is "any": as a source every peer of the tenant, as a destination every address.
	EndpointAny EndpointKind = iota
	// EndpointGroup is "group:NAME": the overlay addresses of the peers in the group.
	EndpointGroup
	// EndpointPeer is "peer:NAME": the overlay addresses of one peer.
	EndpointPeer
	// EndpointSite is "site:NAME": the LAN prefixes of a site.
	EndpointSite
	// EndpointPrefix is a CIDR such as 10.0.0.0/8 or 2001:db8::/32 (a bare address is a /32 or /128).
	EndpointPrefix
)

// Endpoint is one item of a rule's source or destination list.
type Endpoint struct {
	Kind   EndpointKind
	Name   string       // for EndpointGroup, EndpointPeer and EndpointSite
	Prefix netip.Prefix // for EndpointPrefix; masked (no host bits)
}

// String returns the endpoint as the policy file writes it.
func (e Endpoint) String() string {
	switch e.Kind {
	case EndpointAny:
		return "any"
	case EndpointGroup:
		return "group:" + e.Name
	case EndpointPeer:
		return "peer:" + e.Name
	case EndpointSite:
		return "site:" + e.Name
	case EndpointPrefix:
		if e.Prefix.IsSingleIP() {
			return e.Prefix.Addr().String()
		}
		return e.Prefix.String()
	}
	return "endpoint(" + strconv.Itoa(int(e.Kind)) + ")"
}

// PortRange is an inclusive range of TCP or UDP destination ports; Lo == Hi for one port.
type PortRange struct {
	Lo, Hi uint16
}

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// Rule is one line of a policy: Action for new flows from a source in Src to a destination in
// Dst with protocol Proto and, for TCP and UDP, a destination port in Ports (empty: every port).
type Rule struct {
	// Line is the rule's 1-based line in the parsed file; 0 for rules built in code.
	Line   int
	Action Action
	Src    []Endpoint
	Dst    []Endpoint
	Proto  Proto
	Ports  []PortRange
	// Doc holds the lines directly above the rule that are comments ("# ...") or blank (""),
	// so that Format gives them back. Comment is the rule's own trailing comment ("# ...").
	Doc     []string
	Comment string
}

// Policy is one tenant's firewall policy: Rules in order, the first that matches a new flow
// decides it, and Default decides flows no rule matches. The zero Policy denies everything.
type Policy struct {
	Default Action
	// DefaultLine is the line of the "default" statement; 0 when the file has none (Default is
	// then Deny) or the policy was built in code.
	DefaultLine int
	// DefaultDoc and DefaultComment are the comments around the "default" statement.
	DefaultDoc     []string
	DefaultComment string
	Rules          []Rule
	// Trailer holds the comment lines after the last statement.
	Trailer []string
}

// String returns the rule as one policy file line, without comments.
func (r *Rule) String() string {
	var b strings.Builder
	r.appendTo(&b)
	return b.String()
}

func (r *Rule) appendTo(b *strings.Builder) {
	b.WriteString(r.Action.String())
	if r.Action == Deny {
		b.WriteByte(' ') // align sources under "allow"
	}
	b.WriteByte(' ')
	writeEndpoints(b, r.Src)
	b.WriteString(" -> ")
	writeEndpoints(b, r.Dst)
	b.WriteByte(' ')
	b.WriteString(r.Proto.String())
	for i, pr := range r.Ports {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(pr.String())
	}
}

func writeEndpoints(b *strings.Builder, eps []Endpoint) {
	for i, e := range eps {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.String())
	}
}

// Format returns the policy as a policy file: the "default" statement first, then the rules
// in order, each with the comments Parse kept. Parse(Format(p)) gives p back (but for Line
// numbers) when p came from Parse or satisfies the same rules.
func Format(p *Policy) string {
	var b strings.Builder
	writeDoc(&b, p.DefaultDoc)
	b.WriteString("default ")
	b.WriteString(p.Default.String())
	writeComment(&b, p.DefaultComment)
	b.WriteByte('\n')
	for i := range p.Rules {
		r := &p.Rules[i]
		writeDoc(&b, r.Doc)
		r.appendTo(&b)
		writeComment(&b, r.Comment)
		b.WriteByte('\n')
	}
	writeDoc(&b, p.Trailer)
	return b.String()
}

func writeDoc(b *strings.Builder, doc []string) {
	for _, line := range doc {
		if line != "" {
			line = commentText(line)
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
}

func writeComment(b *strings.Builder, c string) {
	if c != "" {
		b.WriteString("  ")
		b.WriteString(commentText(c))
	}
}

// commentText makes c a comment that fits on one line: it starts with '#' and holds no line
// breaks, whatever code put into a Policy.
func commentText(c string) string {
	c = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r < ' ' && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, c)
	c = strings.TrimFunc(c, isSpace) // as Parse trims: spaces and tabs only
	if !strings.HasPrefix(c, "#") {
		c = "# " + c
	}
	return c
}
