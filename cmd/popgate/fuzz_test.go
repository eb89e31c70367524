package main

import (
	"strings"
	"testing"
)

// FuzzDecodeConfigFile: the config loader never panics, and every error is one line that
// names the file, whatever the file holds.
func FuzzDecodeConfigFile(f *testing.F) {
	for _, seed := range []string{
		fullFile,
		"",
		"listen_port = 70000\n",
		"listen_prot = 1\n",
		"listen_port = \n",
		"listen_port = \"x\"\nmtu = 1e3\n",
		"dns_upstream = [1, 2]\n",
		"dns_upstream = [\"9.9.9.9\", \"::1\", \"[::1]:53\"]\n",
		"[web]\naddr = \"x\"\n",
		"data_dir.x = 1\n",
		"mtu = 99999999999999999999\n",
		"\"region\" = '''\nfra'''\n",
		"region = \"fra\"\nregion = \"iad\"\n",
		"[[listen_port]]\n",
		"log_level = 2026-03-14T15:09:26Z\n",
		"\xff\xfe = 1",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := defaultServeSettings()
		_, err := decodeConfigFile("fuzz.toml", data, &s)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "config fuzz.toml: ") || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("bad error message %q", msg)
			}
			return
		}
		// What the file set must survive validation without a panic too.
		a := &app{hostname: func() (string, error) { return "h", nil }}
		a.buildServeConfig(s, nil)
	})
}

// FuzzPolicyProblems: whatever the server says about a policy, each of its non-blank lines
// becomes one line on stderr that starts with the file name.
func FuzzPolicyProblems(f *testing.F) {
	for _, seed := range []string{
		"line 3: unknown protocol \"tpc\": use tcp, udp, icmp or any\nline 7: 10.1.2.3/24 has bits set",
		"the policy is 40000000 bytes\n(and 3 more problems)",
		"line : x\nline 0x1: y\r\n\n\nline 12:",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		ta := newTestApp(t, nil)
		ta.printPolicyProblems("p.txt", msg)
		want := 0
		for line := range strings.Lines(msg) {
			if strings.TrimSpace(strings.TrimRight(line, "\r\n")) != "" {
				want++
			}
		}
		out := ta.stderr.String()
		if got := strings.Count(out, "\n"); got != want || want > 0 && !strings.HasSuffix(out, "\n") {
			t.Fatalf("%d lines for %d problems:\n%s", got, want, out)
		}
		for line := range strings.Lines(out) {
			if !strings.HasPrefix(line, "p.txt:") {
				t.Fatalf("line %q does not start with the file name", line)
			}
		}
	})
}
