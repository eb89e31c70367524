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
