package firewall

import (
	"strings"
	"testing"
)

// FuzzParsePolicy: Parse never panics, and whatever it accepts formats to text that parses
// back to the same policy and formats the same again.
func FuzzParsePolicy(f *testing.F) {
	f.Add(testPolicy)
	f.Add(filterPolicy)
	f.Add("# head\n\ndefault allow # c\nallow peer:a->peer:b,fd00::/8 tcp 1-2,3\n\n# tail\n")
	f.Add("allow any -> 10.1.2.3/24\n")
	f.Add("\uFEFFdefault deny\r\n")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse(text)
		if err != nil {
			if p != nil {
				t.Fatal("policy and error")
			}
			if !strings.HasPrefix(err.Error(), "line ") && !strings.HasPrefix(err.Error(), "the policy is") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		out := Format(p)
		p2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Format(p)): %v\n%s", err, out)
		}
		if !samePolicy(p, p2) {
			t.Fatalf("round trip changed the policy:\n%+v\n%+v\n%s", p, p2, out)
		}
		if out2 := Format(p2); out2 != out {
			t.Fatalf("Format not stable:\n%s\nthen\n%s", out, out2)
		}
		if _, err := Compile(p, testView()); err != nil && len(p.Rules) > 0 {
			_ = err // unknown names are fine here; Compile must only not panic
		}
	})
}
