package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrUnresolved is wrapped by Compile's error when the only problems are references to groups,
// peers or sites that the tenant does not have.
var ErrUnresolved = errors.New("policy refers to groups, peers or sites that do not exist")

// maxProblems is how many problems a PolicyError lists; the rest are only counted.
const maxProblems = 20

// Problem is one thing wrong with a policy: its line (0 when it is about the whole file or
// the tenant) and a message that says what is wrong and how to fix it.
type Problem struct {
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line == 0 {
		return p.Msg
	}
	return "line " + strconv.Itoa(p.Line) + ": " + p.Msg
}

// PolicyError is the error of Parse and Compile: every problem found, in line order, at most
// 20 of them listed.
type PolicyError struct {
	Problems []Problem
	// More counts the problems found beyond those listed.
	More int
	// unresolved is set when every problem is an unknown group, peer or site.
	unresolved bool
}

// Error lists the problems one per line.
func (e *PolicyError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n(and %d more problems)", e.More)
	}
	return b.String()
}

// Is reports whether the error is ErrUnresolved: every problem is an unknown reference.
func (e *PolicyError) Is(target error) bool {
	return target == ErrUnresolved && e.unresolved
}

func (e *PolicyError) add(line int, format string, args ...any) {
	if len(e.Problems) >= maxProblems {
		e.More++
		return
	}
	e.Problems = append(e.Problems, Problem{Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (e *PolicyError) orNil() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

// nameRule is the rule for group, peer and site names (the store's rule for peer names).
const nameRule = "use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit"

// Parse reads a policy file (the format is in the package documentation). The error, a
// *PolicyError, lists every problem with its line number, what is wrong and how to fix it.
// Parse checks the text only: whether named groups, peers and sites exist is Compile's
// business. Its work and memory grow with the text, whose size the caller bounds
// (store.MaxPolicySize).
func Parse(text string) (*Policy, error) {
	perr := &PolicyError{}
	text = strings.TrimPrefix(text, "\uFEFF")
	p := &Policy{}
	var doc []string
	statements := 0
	for lineNo := 1; text != ""; lineNo++ {
		line := text
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		line = strings.TrimSuffix(line, "\r")
		if len(line) > MaxLineLen {
			perr.add(lineNo, "the line is %d bytes long, at most %d are allowed: split its lists over several rules", len(line), MaxLineLen)
			continue
		}
		if msg := badText(line); msg != "" {
			perr.add(lineNo, "%s", msg)
			continue
		}
		code, comment := line, ""
		if i := strings.IndexByte(line, '#'); i >= 0 {
			code, comment = line[:i], strings.TrimRightFunc(line[i:], isSpace)
		}
		toks, tokErr := tokenize(code)
		if tokErr != "" {
			perr.add(lineNo, "%s", tokErr)
			continue
		}
		if len(toks) == 0 {
			switch {
			case comment != "":
				doc = append(doc, comment)
			case (statements > 0 || len(doc) > 0) && (len(doc) == 0 || doc[len(doc)-1] != ""):
				doc = append(doc, "")
			}
			continue
		}
		statements++
		if toks[0] == "default" {
			if p.DefaultLine != 0 {
				perr.add(lineNo, "a second \"default\" statement (the first is on line %d): keep one", p.DefaultLine)
				doc = nil
				continue
			}
			p.DefaultLine = lineNo
			if len(doc) > 0 && doc[0] == "" {
				doc = doc[1:] // Format writes "default" first
			}
			if len(doc) == 0 {
				doc = nil
			}
			p.DefaultDoc, p.DefaultComment, doc = doc, comment, nil
			if msg := parseDefault(toks, &p.Default); msg != "" {
				perr.add(lineNo, "%s", msg)
			}
			continue
		}
		if len(p.Rules) == MaxRules {
			perr.add(lineNo, "more than %d rules: use groups, CIDRs and port lists to say the same with fewer rules", MaxRules)
			return nil, perr
		}
		r := Rule{Line: lineNo, Doc: doc, Comment: comment}
		doc = nil
		if msg := parseRule(toks, &r); msg != "" {
			perr.add(lineNo, "%s", msg)
			continue
		}
		p.Rules = append(p.Rules, r)
	}
	for len(doc) > 0 && doc[len(doc)-1] == "" {
		doc = doc[:len(doc)-1]
	}
	if len(doc) == 0 {
		doc = nil
	}
	if statements == 0 {
		p.DefaultDoc = doc
	} else {
		p.Trailer = doc
	}
	if err := perr.orNil(); err != nil {
		return nil, err
	}
	return p, nil
}

// badText returns what makes line unusable as text, or "".
func badText(line string) string {
	for i := 0; i < len(line); {
		c := line[i]
		if c < utf8.RuneSelf {
			if c < ' ' && c != '\t' || c == 0x7f {
				return fmt.Sprintf("control character %U at column %d: remove it", rune(c), i+1)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(line[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Sprintf("invalid UTF-8 at column %d: save the file as UTF-8", i+1)
		}
		i += size
	}
	return ""
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' }

// tokenize splits a line's code into words, "," and "->". A "->" ends the word before it,
// so "peer:a->b" is three tokens (names cannot contain '>').
func tokenize(code string) ([]string, string) {
	var toks []string
	start := -1
	flush := func(end int) {
		if start >= 0 {
			toks = append(toks, code[start:end])
			start = -1
		}
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		switch {
		case c == ' ' || c == '\t':
			flush(i)
		case c == ',':
			flush(i)
			toks = append(toks, ",")
		case c == '-' && i+1 < len(code) && code[i+1] == '>':
			flush(i)
			toks = append(toks, "->")
			i++
		default:
			if start < 0 {
				start = i
			}
		}
	}
	flush(len(code))
	if len(toks) > 4*MaxListItems {
		return nil, fmt.Sprintf("the line has %d words, too many for one rule: split it", len(toks))
	}
	return toks, ""
}

func parseDefault(toks []string, a *Action) string {
	if len(toks) < 2 {
		return `"default" needs an action: write "default allow" or "default deny"`
	}
	switch toks[1] {
	case "allow":
		*a = Allow
	case "deny":
		*a = Deny
	default:
		return fmt.Sprintf(`"default" takes allow or deny, not %q`, toks[1])
	}
	if len(toks) > 2 {
		return fmt.Sprintf(`unexpected %q after "default %s": the statement is "default allow" or "default deny"`, toks[2], toks[1])
	}
	return ""
}

const endpointHelp = "write any, group:NAME, peer:NAME, site:NAME or a CIDR such as 10.0.0.0/8"

// parseRule reads "ACTION SRC[, SRC...] -> DST[, DST...] [PROTO [PORT[,PORT...]]]".
func parseRule(toks []string, r *Rule) string {
	switch toks[0] {
	case "allow":
		r.Action = Allow
	case "deny":
		r.Action = Deny
	case "->", ",":
		return fmt.Sprintf("a rule starts with allow or deny, not %q", toks[0])
	default:
		msg := fmt.Sprintf("unknown action %q: a rule starts with allow or deny", toks[0])
		if len(toks) == 1 {
			msg += `, and the default is set with "default allow" or "default deny"`
		}
		return msg
	}
	i := 1
	if i == len(toks) {
		return fmt.Sprintf(`%q needs a source, "->" and a destination, e.g. "%s group:eng -> 10.0.0.0/8 tcp 443"`, toks[0], toks[0])
	}
	var msg string
	if r.Src, i, msg = parseEndpoints(toks, i, "source"); msg != "" {
		return msg
	}
	if i == len(toks) {
		return fmt.Sprintf(`missing "->" and a destination after the sources: write e.g. "%s %s -> 10.0.0.0/8"`, toks[0], toks[1])
	}
	if toks[i] != "->" {
		return fmt.Sprintf(`expected "->" after the sources, found %q: separate list items with "," and write "->" before the destinations`, toks[i])
	}
	i++
	if r.Dst, i, msg = parseEndpoints(toks, i, "destination"); msg != "" {
		return msg
	}
	if i == len(toks) {
		r.Proto = ProtoAny
		return ""
	}
	switch t := toks[i]; t {
	case "any":
		r.Proto = ProtoAny
	case "tcp":
		r.Proto = ProtoTCP
	case "udp":
		r.Proto = ProtoUDP
	case "icmp":
		r.Proto = ProtoICMP
	case "->":
		return `a second "->": a rule has one source list and one destination list`
	default:
		switch {
		case strings.ContainsAny(t, ":/."):
			return fmt.Sprintf(`%q after the destinations: separate list items with ","`, t)
		case t[0] >= '0' && t[0] <= '9':
			return fmt.Sprintf(`%q where the protocol goes: ports follow a protocol, write "tcp %s" or "udp %s"`, t, t, t)
		case strings.EqualFold(t, "icmpv6") || strings.EqualFold(t, "ipv6-icmp") || strings.EqualFold(t, "icmp6"):
			return fmt.Sprintf("unknown protocol %q: write icmp, which covers ICMPv4 and ICMPv6", t)
		}
		return fmt.Sprintf("unknown protocol %q: use tcp, udp, icmp or any", t)
	}
	i++
	if i == len(toks) {
		return ""
	}
	if !r.Proto.hasPorts() {
		return fmt.Sprintf("%s has no ports: remove %q, or use tcp or udp", r.Proto, toks[i])
	}
	for {
		if len(r.Ports) == MaxListItems {
			return fmt.Sprintf("more than %d port items: use ranges such as 8000-8100 or split the rule", MaxListItems)
		}
		pr, msg := parsePorts(toks[i])
		if msg != "" {
			return msg
		}
		r.Ports = append(r.Ports, pr)
		i++
		if i == len(toks) {
			return ""
		}
		if toks[i] != "," {
			return fmt.Sprintf(`unexpected %q after the ports: separate ports with "," and put comments after "#"`, toks[i])
		}
		i++
		if i == len(toks) {
			return `the port list ends with ",": remove the comma or add a port after it`
		}
	}
}

// parseEndpoints reads a comma-separated list starting at toks[i].
func parseEndpoints(toks []string, i int, what string) ([]Endpoint, int, string) {
	var eps []Endpoint
	for {
		if i == len(toks) || toks[i] == "->" || toks[i] == "," {
			switch {
			case len(eps) > 0:
				return nil, i, fmt.Sprintf(`the %s list ends with ",": remove the comma or add an item after it`, what)
			case i < len(toks) && toks[i] == "->":
				return nil, i, fmt.Sprintf(`no source before "->": %s`, endpointHelp)
			case i < len(toks):
				return nil, i, fmt.Sprintf(`"," where a %s goes: %s`, what, endpointHelp)
			}
			return nil, i, fmt.Sprintf(`no destination after "->": %s`, endpointHelp)
		}
		if len(eps) == MaxListItems {
			return nil, i, fmt.Sprintf("more than %d %ss in one list: use groups or CIDRs, or split the rule", MaxListItems, what)
		}
		ep, msg := parseEndpoint(toks[i], what)
		if msg != "" {
			return nil, i, msg
		}
		eps = append(eps, ep)
		i++
		if i == len(toks) || toks[i] != "," {
			return eps, i, ""
		}
		i++
	}
}

func parseEndpoint(t, what string) (Endpoint, string) {
	if t == "any" {
		return Endpoint{Kind: EndpointAny}, ""
	}
	for _, k := range [...]struct {
		prefix string
		kind   EndpointKind
	}{{"group:", EndpointGroup}, {"peer:", EndpointPeer}, {"site:", EndpointSite}} {
		if name, ok := strings.CutPrefix(t, k.prefix); ok {
			if msg := nameProblem(name); msg != "" {
				return Endpoint{}, fmt.Sprintf("%s name %q is invalid: %s; %s", k.prefix[:len(k.prefix)-1], name, msg, nameRule)
			}
			return Endpoint{Kind: k.kind, Name: name}, ""
		}
	}
	if looksLikeAddress(t) {
		pfx, msg := parseCIDR(t)
		if msg != "" {
			return Endpoint{}, msg
		}
		return Endpoint{Kind: EndpointPrefix, Prefix: pfx}, ""
	}
	if kind, _, ok := strings.Cut(t, ":"); ok && kind != "" && isLetters(kind) {
		return Endpoint{}, fmt.Sprintf("unknown kind %q in %q: use group:, peer: or site:", kind+":", t)
	}
	if t == "*" || t == "all" || t == "any/0" {
		return Endpoint{}, fmt.Sprintf("%q is not a %s: write any", t, what)
	}
	if nameProblem(t) == "" {
		return Endpoint{}, fmt.Sprintf("%q is not a %s: write group:%s, peer:%s or site:%s to name one", t, what, t, t, t)
	}
	return Endpoint{}, fmt.Sprintf("%q is not a %s: %s", t, what, endpointHelp)
}

// looksLikeAddress reports whether t is meant as an IP address or CIDR: digits, dots, hex
// digits, colons and one '/', with a digit or a colon in it.
func looksLikeAddress(t string) bool {
	t, _, _ = strings.Cut(t, "%") // a zone may hold any letters
	digit := false
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c == '.' || c == '/':
		case c == ':':
			digit = true
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return digit
}

func parseCIDR(t string) (netip.Prefix, string) {
	if strings.Contains(t, "%") {
		return netip.Prefix{}, fmt.Sprintf("%q has a zone: write the address without %%zone", t)
	}
	var pfx netip.Prefix
	if strings.Contains(t, "/") {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			return netip.Prefix{}, fmt.Sprintf("%q is not a valid CIDR (%s): write e.g. 10.0.0.0/8 or fd00::/8", t, netipReason(err))
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(t)
		if err != nil {
			return netip.Prefix{}, fmt.Sprintf("%q is not a valid address (%s): write e.g. 10.1.2.3, fd00::1 or a CIDR", t, netipReason(err))
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Addr().Is4In6() {
		u := netip.PrefixFrom(pfx.Addr().Unmap(), max(pfx.Bits()-96, 0)).Masked()
		return netip.Prefix{}, fmt.Sprintf("%s is an IPv4-mapped IPv6 prefix, which no packet carries: write %s", t, u)
	}
	if m := pfx.Masked(); m != pfx {
		return netip.Prefix{}, fmt.Sprintf("%s has bits set after the prefix length: write %s", t, m)
	}
	return pfx, ""
}

// netipReason returns the part of a net/netip parse error after its quoted input.
func netipReason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "): "); i >= 0 {
		s = s[i+3:]
	}
	return s
}

func isLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// nameProblem returns what is wrong with a group, peer or site name, or "".
func nameProblem(name string) string {
	if name == "" {
		return "it is empty"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			if c >= utf8.RuneSelf {
				r, _ := utf8.DecodeRuneInString(name[i:])
				return fmt.Sprintf("%q at position %d is not allowed", r, i+1)
			}
			return fmt.Sprintf("%q at position %d is not allowed", c, i+1)
		}
	}
	if c := name[0]; c == '.' || c == '_' || c == '-' {
		return fmt.Sprintf("it starts with %q", c)
	}
	if len(name) > MaxNameLen {
		return fmt.Sprintf("it has %d characters, at most %d are allowed", len(name), MaxNameLen)
	}
	return ""
}

// parsePorts reads "80" or "8000-8100".
func parsePorts(t string) (PortRange, string) {
	lo, hi, isRange := strings.Cut(t, "-")
	l, msg := parsePort(lo, t)
	if msg != "" {
		return PortRange{}, msg
	}
	if !isRange {
		return PortRange{Lo: l, Hi: l}, ""
	}
	h, msg := parsePort(hi, t)
	if msg != "" {
		return PortRange{}, msg
	}
	if h < l {
		return PortRange{}, fmt.Sprintf("port range %s is reversed: write %d-%d", t, h, l)
	}
	return PortRange{Lo: l, Hi: h}, ""
}

func parsePort(s, tok string) (uint16, string) {
	if s == "" {
		return 0, fmt.Sprintf("%q is not a port or range: write e.g. 443 or 8000-8100", tok)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Sprintf("%q is not a port or range: write e.g. 443 or 8000-8100", tok)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Sprintf("port %s is out of range: ports are 0-65535", s)
	}
	return uint16(n), ""
}
