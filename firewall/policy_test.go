package firewall

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseFormat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // Format(Parse(in))
	}{
		{"empty", "", "default deny\n"},
		{"only comments", "# nothing yet\n\n# really\n", "# nothing yet\n\n# really\ndefault deny\n"},
		{"default allow", "default allow\n", "default allow\n"},
		{"brief example", `# acme policy — first matching rule wins
default deny
allow group:eng -> 10.10.0.0/24, site:office tcp 80,443,8000-8100
allow group:eng -> group:servers icmp
deny  peer:laptop -> any udp 53
allow any -> 0.0.0.0/0, ::/0 any        # the internet
`, `# acme policy — first matching rule wins
default deny
allow group:eng -> 10.10.0.0/24, site:office tcp 80,443,8000-8100
allow group:eng -> group:servers icmp
deny  peer:laptop -> any udp 53
allow any -> 0.0.0.0/0, ::/0 any  # the internet
`},
		{"spacing", "  allow\tgroup:eng ,peer:a->10.0.0.0/8,fd00::/8   tcp 22 , 80-81\n",
			"default deny\nallow group:eng, peer:a -> 10.0.0.0/8, fd00::/8 tcp 22,80-81\n"},
		{"arrow glued", "deny peer:x-->peer:y\n", "default deny\ndeny  peer:x- -> peer:y any\n"},
		{"protocol left out", "allow any -> any\n", "default deny\nallow any -> any any\n"},
		{"bare addresses", "allow 10.1.2.3 -> fd00::1, 10.0.0.1/32 udp\n", "default deny\nallow 10.1.2.3 -> fd00::1, 10.0.0.1 udp\n"},
		{"default later", "allow any -> any tcp 443\n\n# fallback\ndefault allow # open\n",
			"# fallback\ndefault allow  # open\nallow any -> any tcp 443\n"},
		{"crlf and bom", "\uFEFFdefault allow\r\nallow any -> any\r\n", "default allow\nallow any -> any any\n"},
		{"blank lines collapse", "\n\n# head\n\n\n\ndefault deny\n\n\nallow any -> any\n\n# tail\n\n\n",
			"# head\n\ndefault deny\n\nallow any -> any any\n\n# tail\n"},
		{"comment spacing kept", "#x\n   #  y  \nallow any -> any #z\n", "default deny\n#x\n#  y\nallow any -> any any  #z\n"},
		{"site source", "allow site:office -> group:servers tcp 22\n", "default deny\nallow site:office -> group:servers tcp 22\n"},
		{"all ports", "allow any -> any tcp 0-65535\n", "default deny\nallow any -> any tcp 0-65535\n"},
		{"unicode space in a comment", "#\u0085\n", "#\u0085\ndefault deny\n"},
		{"blank last line", "default deny\n ", "default deny\n"},
		{"names", "allow peer:A.b_c-9 -> group:9\n", "default deny\nallow peer:A.b_c-9 -> group:9 any\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := Format(p)
			if got != tt.want {
				t.Errorf("Format(Parse(%q)) =\n%s\nwant\n%s", tt.in, got, tt.want)
			}
			// Formatting is stable and parses to the same policy.
			p2, err := Parse(got)
			if err != nil {
				t.Fatalf("Parse(Format): %v", err)
			}
			if again := Format(p2); again != got {
				t.Errorf("Format not stable:\n%s\nthen\n%s", got, again)
			}
			if !samePolicy(p, p2) {
				t.Errorf("Parse(Format(p)) = %+v, want %+v", p2, p)
			}
		})
	}
}

func TestParseModel(t *testing.T) {
	p, err := Parse("default allow\n# web\nallow group:eng, peer:x -> 10.10.0.0/24, site:office, any tcp 80,8000-8100 # c\n")
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{
		Default:     Allow,
		DefaultLine: 1,
		Rules: []Rule{{
			Line:   3,
			Action: Allow,
			Src:    []Endpoint{{Kind: EndpointGroup, Name: "eng"}, {Kind: EndpointPeer, Name: "x"}},
			Dst: []Endpoint{
				{Kind: EndpointPrefix, Prefix: netip.MustParsePrefix("10.10.0.0/24")},
				{Kind: EndpointSite, Name: "office"},
				{Kind: EndpointAny},
			},
			Proto:   ProtoTCP,
			Ports:   []PortRange{{80, 80}, {8000, 8100}},
			Doc:     []string{"# web"},
			Comment: "# c",
		}},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", p, want)
	}
}

func TestParseErrors(t *testing.T) {
	long := "allow any -> " + strings.Repeat("10.0.0.0/8, ", 400) + "any\n"
	tests := []struct {
		in   string
		want string
	}{
		{"alow any -> any", `line 1: unknown action "alow": a rule starts with allow or deny`},
		{"permit", `line 1: unknown action "permit": a rule starts with allow or deny, and the default is set with "default allow" or "default deny"`},
		{"-> any", `line 1: a rule starts with allow or deny, not "->"`},
		{"allow", `line 1: "allow" needs a source, "->" and a destination, e.g. "allow group:eng -> 10.0.0.0/8 tcp 443"`},
		{"allow group:eng", `line 1: missing "->" and a destination after the sources: write e.g. "allow group:eng -> 10.0.0.0/8"`},
		{"allow group:eng 10.0.0.0/8", `line 1: expected "->" after the sources, found "10.0.0.0/8": separate list items with "," and write "->" before the destinations`},
		{"allow -> any", `line 1: no source before "->": write any, group:NAME, peer:NAME, site:NAME or a CIDR such as 10.0.0.0/8`},
		{"allow any ->", `line 1: no destination after "->": write any, group:NAME, peer:NAME, site:NAME or a CIDR such as 10.0.0.0/8`},
		{"allow any -> any,", `line 1: the destination list ends with ",": remove the comma or add an item after it`},
		{"allow any, -> any", `line 1: the source list ends with ",": remove the comma or add an item after it`},
		{"allow , any -> any", `line 1: "," where a source goes: write any, group:NAME, peer:NAME, site:NAME or a CIDR such as 10.0.0.0/8`},
		{"allow any -> any -> any", `line 1: a second "->": a rule has one source list and one destination list`},
		{"allow any -> any tpc", `line 1: unknown protocol "tpc": use tcp, udp, icmp or any`},
		{"allow any -> any icmpv6", `line 1: unknown protocol "icmpv6": write icmp, which covers ICMPv4 and ICMPv6`},
		{"allow any -> any 443", `line 1: "443" where the protocol goes: ports follow a protocol, write "tcp 443" or "udp 443"`},
		{"allow any -> 10.0.0.0/8 10.1.0.0/16", `line 1: "10.1.0.0/16" after the destinations: separate list items with ","`},
		{"allow any -> any icmp 8", `line 1: icmp has no ports: remove "8", or use tcp or udp`},
		{"allow any -> any any 80", `line 1: any has no ports: remove "80", or use tcp or udp`},
		{"allow any -> any tcp 70000", `line 1: port 70000 is out of range: ports are 0-65535`},
		{"allow any -> any tcp 8100-8000", `line 1: port range 8100-8000 is reversed: write 8000-8100`},
		{"allow any -> any tcp http", `line 1: "http" is not a port or range: write e.g. 443 or 8000-8100`},
		{"allow any -> any tcp 80-", `line 1: "80-" is not a port or range: write e.g. 443 or 8000-8100`},
		{"allow any -> any tcp 80,", `line 1: the port list ends with ",": remove the comma or add a port after it`},
		{"allow any -> any tcp 80 443", `line 1: unexpected "443" after the ports: separate ports with "," and put comments after "#"`},
		{"allow eng -> any", `line 1: "eng" is not a source: write group:eng, peer:eng or site:eng to name one`},
		{"allow any -> servers", `line 1: "servers" is not a destination: write group:servers, peer:servers or site:servers to name one`},
		{"allow * -> any", `line 1: "*" is not a source: write any`},
		{"allow host:x -> any", `line 1: unknown kind "host:" in "host:x": use group:, peer: or site:`},
		{"allow group: -> any", `line 1: group name "" is invalid: it is empty; use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"allow group:-eng -> any", `line 1: group name "-eng" is invalid: it starts with '-'; use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"allow peer:a/b -> any", `line 1: peer name "a/b" is invalid: '/' at position 2 is not allowed; use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"allow site:" + strings.Repeat("s", 65) + " -> any", `line 1: site name "` + strings.Repeat("s", 65) + `" is invalid: it has 65 characters, at most 64 are allowed; use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"allow peer:café -> any", `line 1: peer name "café" is invalid: 'é' at position 4 is not allowed; use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"allow any -> 10.1.2.3/24", `line 1: 10.1.2.3/24 has bits set after the prefix length: write 10.1.2.0/24`},
		{"allow any -> 10.0.0.0/33", `line 1: "10.0.0.0/33" is not a valid CIDR (prefix length out of range): write e.g. 10.0.0.0/8 or fd00::/8`},
		{"allow any -> 10.0.0.256", `line 1: "10.0.0.256" is not a valid address (IPv4 field has value >255): write e.g. 10.1.2.3, fd00::1 or a CIDR`},
		{"allow any -> fe80::1%eth0", `line 1: "fe80::1%eth0" has a zone: write the address without %zone`},
		{"allow any -> ::ffff:10.0.0.0/104", `line 1: ::ffff:10.0.0.0/104 is an IPv4-mapped IPv6 prefix, which no packet carries: write 10.0.0.0/8`},
		{"default", `line 1: "default" needs an action: write "default allow" or "default deny"`},
		{"default permit", `line 1: "default" takes allow or deny, not "permit"`},
		{"default deny now", `line 1: unexpected "now" after "default deny": the statement is "default allow" or "default deny"`},
		{"default deny\n\ndefault allow", `line 3: a second "default" statement (the first is on line 1): keep one`},
		{"allow any -> any\x00", `line 1: control character U+0000 at column 17: remove it`},
		{"# ok\nallow any -> any # \xff", `line 2: invalid UTF-8 at column 20: save the file as UTF-8`},
		{long, `line 1: the line is 4816 bytes long, at most 4096 are allowed: split its lists over several rules`},
		{"allow any -> any tpc\ndeny any -> any tcp 99999\nallow any -> any",
			"line 1: unknown protocol \"tpc\": use tcp, udp, icmp or any\nline 2: port 99999 is out of range: ports are 0-65535"},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			p, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %s, want error", tt.in, Format(p))
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse(%q) error\n got %s\nwant %s", tt.in, got, tt.want)
			}
			var perr *PolicyError
			if !errors.As(err, &perr) {
				t.Errorf("error is %T, want *PolicyError", err)
			}
		})
	}
}

func TestParseManyProblems(t *testing.T) {
	in := strings.Repeat("allow any -> any tpc\n", 25)
	_, err := Parse(in)
	var perr *PolicyError
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v", err)
	}
	if len(perr.Problems) != maxProblems || perr.More != 5 {
		t.Errorf("got %d problems and %d more, want %d and 5", len(perr.Problems), perr.More, maxProblems)
	}
	if !strings.HasSuffix(err.Error(), "line 20: unknown protocol \"tpc\": use tcp, udp, icmp or any\n(and 5 more problems)") {
		t.Errorf("error ends %q", err.Error()[len(err.Error())-100:])
	}
}

func TestParseLimits(t *testing.T) {
	var b strings.Builder
	for range MaxRules {
		b.WriteString("allow any -> any\n")
	}
	if _, err := Parse(b.String()); err != nil {
		t.Fatalf("%d rules: %v", MaxRules, err)
	}
	b.WriteString("# one too many\ndeny any -> any\n")
	_, err := Parse(b.String())
	want := "line 100002: more than 100000 rules: use groups, CIDRs and port lists to say the same with fewer rules"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

// samePolicy compares policies but for line numbers.
func samePolicy(a, b *Policy) bool {
	strip := func(p *Policy) *Policy {
		c := *p
		c.DefaultLine = 0
		c.Rules = append([]Rule(nil), p.Rules...)
		for i := range c.Rules {
			c.Rules[i].Line = 0
		}
		if len(c.Rules) == 0 {
			c.Rules = nil
		}
		return &c
	}
	return reflect.DeepEqual(strip(a), strip(b))
}
