package blocklist

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      string
		want    []string
		skipped int
	}{
		{"empty", "", nil, 0},
		{"comments and blanks", "# a hosts file\n\n   \n! adblock comment\n[Adblock Plus 2.0]\n", nil, 0},
		{"hosts", "0.0.0.0 ads.example.com\n127.0.0.1 tracker.example.net # a comment\n:: v6.example.org\n",
			[]string{"ads.example.com", "tracker.example.net", "v6.example.org"}, 0},
		{"several names a line", "0.0.0.0 a.example.com b.example.com\tc.example.com\n", []string{"a.example.com", "b.example.com", "c.example.com"}, 0},
		{"plain list", "ads.example.com\nTRACKER.Example.NET.\n", []string{"ads.example.com", "tracker.example.net"}, 0},
		{"adblock", "||ads.example.com^\n||Tracker.Example.net^\n", []string{"ads.example.com", "tracker.example.net"}, 0},
		{"adblock others skipped", "@@||good.example.com^\n||opt.example.com^$third-party\n/banner[0-9]+/\n|https://x.example.com/ad\nexample.com##.ad\nexample.org#@#.ad\n", nil, 6},
		{"localhost and kin", "127.0.0.1 localhost\n127.0.0.1 localhost.localdomain\n::1 ip6-localhost ip6-loopback\n255.255.255.255 broadcasthost\n0.0.0.0 x.localhost\n", nil, 6},
		{"addresses as names", "0.0.0.0 0.0.0.0\n192.0.2.1\n", nil, 2},
		{"address alone", "0.0.0.0\n", nil, 1},
		{"invalid names", "-\nexam ple.com\nbad!.example.com\na..b\nünï.example.com\ncom\n" + strings.Repeat("a", 64) + ".com\n", []string{"ple.com"}, 7},
		{"hash inside a field", "ads#x.example.com\n", nil, 1},
		{"duplicates once", "a.example.com\n0.0.0.0 a.example.com\n||A.example.com^\na.example.com.\n", []string{"a.example.com"}, 0},
		{"crlf", "0.0.0.0 a.example.com\r\nb.example.com\r\n", []string{"a.example.com", "b.example.com"}, 0},
		{"no final newline", "a.example.com", []string{"a.example.com"}, 0},
		{"underscore and punycode", "_dmarc.example.com\nxn--bcher-kva.example\n", []string{"_dmarc.example.com", "xn--bcher-kva.example"}, 0},
		{"overlong line", strings.Repeat("a", maxLine+10) + "\nok.example.com\n", []string{"ok.example.com"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := Parse(strings.NewReader(c.in), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(l.Body); !slices.Equal(got, c.want) {
				t.Errorf("names %q, want %q", got, c.want)
			}
			if l.Names != len(c.want) || l.Skipped != c.skipped {
				t.Errorf("Names %d, Skipped %d; want %d, %d", l.Names, l.Skipped, len(c.want), c.skipped)
			}
			if l.SHA256 != sha256.Sum256(l.Body) {
				t.Error("SHA256 is not the body's")
			}
			if _, err := Load(l.Body, l.SHA256); err != nil {
				t.Errorf("Load of the parsed list: %v", err)
			}
		})
	}
}

// TestParseSameContent: sources of different formats that list the same names have one
// canonical form, so the controller stores it once and the nodes hold it once.
func TestParseSameContent(t *testing.T) {
	a, _ := Parse(strings.NewReader("0.0.0.0 b.example.com a.example.com\n"), Limits{})
	b, _ := Parse(strings.NewReader("||a.example.com^\nB.EXAMPLE.COM.\n# other comment\n"), Limits{})
	if a.SHA256 != b.SHA256 || !bytes.Equal(a.Body, b.Body) {
		t.Errorf("%q and %q differ", a.Body, b.Body)
	}
}

func TestParseLimits(t *testing.T) {
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "n%d.example.com\n", i)
		}
		return b.String()
	}
	if l, err := Parse(strings.NewReader(many(10)), Limits{MaxNames: 10}); err != nil || l.Names != 10 {
		t.Errorf("10 names with a bound of 10: %d names, %v", l.Names, err)
	}
	_, err := Parse(strings.NewReader(many(11)), Limits{MaxNames: 10})
	if !errors.Is(err, ErrTooMany) || !strings.Contains(err.Error(), "more than 10 names") {
		t.Errorf("11 names with a bound of 10: %v, want ErrTooMany", err)
	}
	// Duplicates do not count against the bound, however many there are.
	dups := strings.Repeat("a.example.com\nb.example.com\n", 1000)
	if l, err := Parse(strings.NewReader(dups), Limits{MaxNames: 2}); err != nil || l.Names != 2 {
		t.Errorf("2 names repeated 1000 times with a bound of 2: %d names, %v", l.Names, err)
	}
	src := many(100)
	if _, err := Parse(strings.NewReader(src), Limits{MaxSize: int64(len(src))}); err != nil {
		t.Errorf("a source of exactly the bound: %v", err)
	}
	_, err = Parse(strings.NewReader(src), Limits{MaxSize: int64(len(src) - 1)})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("a source one byte over the bound: %v, want ErrTooLarge", err)
	}
	t.Logf("the errors say: %v / %v", func() error { _, err := Parse(strings.NewReader(many(11)), Limits{MaxNames: 10}); return err }(), err)
	// The default bounds.
	_, err = Parse(io.MultiReader(strings.NewReader("a.example.com\n"), zeros{}), Limits{})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "64 MiB") {
		t.Errorf("an endless source: %v, want ErrTooLarge at 64 MiB", err)
	}
}

// zeros is an endless source of blank lines.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '\n'
	}
	return len(p), nil
}

func TestLoadRefusesCorrupt(t *testing.T) {
	good := Encode([]string{"a.example.com", "b.example.com"}, 0)
	for _, c := range []struct {
		name string
		body string
	}{
		{"unsorted", "b.example.com\na.example.com\n"},
		{"repeated", "a.example.com\na.example.com\n"},
		{"no final newline", "a.example.com"},
		{"invalid name", "A.example.com\n"},
		{"empty line", "a.example.com\n\nb.example.com\n"},
		{"single label", "com\n"},
	} {
		body := []byte(c.body)
		if _, err := Load(body, sha256.Sum256(body)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", c.name, err)
		}
	}
	if _, err := Load(good.Body, sha256.Sum256([]byte("other"))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a body that is not the hash's: %v, want ErrCorrupt", err)
	}
	if s, err := Load(nil, sha256.Sum256(nil)); err != nil || s.Len() != 0 {
		t.Errorf("the empty list: %v", err)
	}
}

func TestMatch(t *testing.T) {
	l := Encode([]string{"ads.example.com", "tracker.net", "x.y.z.example.org"}, 0)
	s, err := Load(l.Body, l.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q      string
		listed string
	}{
		{"ads.example.com.", "ads.example.com"},
		{"ads.example.com", "ads.example.com"},
		{"deep.sub.ads.example.com.", "ads.example.com"},
		{"example.com.", ""},
		{"www.example.com.", ""},
		{"xads.example.com.", ""},
		{"ads.example.com.evil.", ""},
		{"tracker.net.", "tracker.net"},
		{"a.tracker.net.", "tracker.net"},
		{"net.", ""},
		{"y.z.example.org.", ""},
		{"w.x.y.z.example.org.", "x.y.z.example.org"},
		{".", ""},
		{"", ""},
	} {
		listed, ok := s.Match(c.q)
		if listed != c.listed || ok != (c.listed != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", c.q, listed, ok, c.listed)
		}
	}
	other, _ := Load(Encode([]string{"other.example"}, 0).Body, Encode([]string{"other.example"}, 0).SHA256)
	u := Union{s, other}
	if listed, ok := u.Match("a.other.example."); !ok || listed != "other.example" {
		t.Errorf("Union.Match of the second set's name: %q, %v", listed, ok)
	}
	if _, ok := (Union{}).Match("ads.example.com."); ok {
		t.Error("the empty union matches")
	}
}

// TestMatchRandom compares Has with a map of the same names.
func TestMatchRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ref := map[string]bool{}
	for range 20000 {
		ref[randomName(r)] = true
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range ref {
			if !yield(n) {
				return
			}
		}
	})
	l := Encode(names, 0)
	s, err := Load(l.Body, l.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	for range 100000 {
		q := randomName(r)
		if r.IntN(3) == 0 {
			q = names[r.IntN(len(names))]
		}
		if got := s.Has(q); got != ref[q] {
			t.Fatalf("Has(%q) = %v, the map says %v", q, got, ref[q])
		}
	}
	for _, n := range names {
		if !s.Has(n) {
			t.Fatalf("Has(%q) = false for a listed name", n)
		}
	}
}

func randomName(r *rand.Rand) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789-_"
	labels := 2 + r.IntN(3)
	parts := make([]string, labels)
	for i := range parts {
		b := make([]byte, 1+r.IntN(6))
		for j := range b {
			b[j] = chars[r.IntN(len(chars))]
		}
		parts[i] = string(b)
	}
	return strings.Join(parts, ".")
}

func TestMatchAllocs(t *testing.T) {
	l := Encode([]string{"ads.example.com", "tracker.net"}, 0)
	s, _ := Load(l.Body, l.SHA256)
	u := Union{s, s}
	if n := testing.AllocsPerRun(100, func() { u.Match("a.b.c.www.example.com.") }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

// millionNames is a list of n names like those of real blocklists (a label or two of 6-14
// characters under a registered domain), 26 bytes on average.
func millionNames(n int) []string {
	r := rand.New(rand.NewPCG(3, 4))
	tlds := []string{"com", "net", "org", "io", "de", "co.uk", "info", "xyz"}
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	word := func(min, max int) string {
		b := make([]byte, min+r.IntN(max-min+1))
		for i := range b {
			b[i] = chars[r.IntN(len(chars))]
		}
		return string(b)
	}
	seen := make(map[string]bool, n)
	out := make([]string, 0, n)
	for len(out) < n {
		name := word(6, 14) + "." + word(5, 10) + "." + tlds[r.IntN(len(tlds))]
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// TestMemory measures what a list of a million names costs a node: the Set (what popgate
// holds) against a Go map of the same names, in heap bytes and in the process's resident set.
// The figures are logged (go test -run TestMemory -v), not asserted but for the Set being the
// smaller.
func TestMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a list of a million names")
	}
	heap0, rss0 := memNow()
	names := millionNames(DefaultMaxNames)
	l := Encode(names, 0)
	body, sum := l.Body, l.SHA256
	names, l = nil, List{} // only the body stays, as on a node that fetched it
	s, err := Load(body, sum)
	if err != nil {
		t.Fatal(err)
	}
	body = nil
	heapSet, rssSet := memNow()
	setHeap := int64(heapSet) - int64(heap0)
	t.Logf("Set of %d names (%.1f bytes a name): body %.1f MB, Size() %.1f MB; heap +%.1f MB; RSS +%.1f MB (%.1f MB)",
		s.Len(), float64(len(s.body))/float64(s.Len()), float64(len(s.body))/1e6, float64(s.Size())/1e6,
		float64(setHeap)/1e6, (float64(rssSet)-float64(rss0))/1e6, float64(rssSet)/1e6)

	// The same names as a Go map, built from the set, which is then dropped.
	m := make(map[string]struct{})
	for i := range s.Len() {
		m[string(s.name(i))] = struct{}{}
	}
	kept := s.Len()
	s = nil
	heapMap, rssMap := memNow()
	mapHeap := int64(heapMap) - int64(heap0)
	t.Logf("map[string]struct{} of %d names: heap +%.1f MB (RSS %.1f MB, not returned to the system at once)",
		len(m), float64(mapHeap)/1e6, float64(rssMap)/1e6)
	if len(m) != kept {
		t.Fatalf("map has %d names, the set %d", len(m), kept)
	}
	if setHeap >= mapHeap {
		t.Errorf("the Set (%d B) is no smaller than a map (%d B)", setHeap, mapHeap)
	}
	runtime.KeepAlive(m)
}

// TestMemoryRSS measures the resident set a list of a million names adds to a process that
// holds nothing else: a child process (this test binary again) reads the canonical body from
// a file and keeps it as a Set, or as a Go map. The figures are logged.
func TestMemoryRSS(t *testing.T) {
	if path := os.Getenv("BLOCKLIST_RSS_CHILD"); path != "" {
		rssChild(path, os.Getenv("BLOCKLIST_RSS_MODE"))
		return
	}
	if testing.Short() {
		t.Skip("builds a list of a million names")
	}
	l := Encode(millionNames(DefaultMaxNames), 0)
	path := t.TempDir() + "/list"
	if err := os.WriteFile(path, l.Body, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"set", "map"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryRSS$")
		cmd.Env = append(os.Environ(), "BLOCKLIST_RSS_CHILD="+path, "BLOCKLIST_RSS_MODE="+mode)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out)
		}
		for line := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(line, "rss ") {
				t.Logf("%s of %d names (%.1f MB body): %s", mode, l.Names, float64(len(l.Body))/1e6, line)
			}
		}
	}
}

func rssChild(path, mode string) {
	_, before := memNow()
	body, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	var keep any
	switch mode {
	case "set":
		s, err := Load(body, sha256.Sum256(body))
		if err != nil {
			panic(err)
		}
		keep = s
	case "map":
		m := map[string]struct{}{}
		for _, n := range names(body) {
			m[n] = struct{}{}
		}
		keep, body = m, nil
	}
	debug.FreeOSMemory()
	heap, after := memNow()
	fmt.Printf("rss +%.1f MB (%.1f MB in all), heap %.1f MB\n", float64(after-before)/1e6, float64(after)/1e6, float64(heap)/1e6)
	runtime.KeepAlive(keep)
}

// memNow returns the live heap after a full collection and the process's resident set.
func memNow() (heap uint64, rss uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			rss = pages * uint64(os.Getpagesize())
		}
	}
	return ms.HeapAlloc, rss
}

func BenchmarkMatch(b *testing.B) {
	names := millionNames(DefaultMaxNames)
	l := Encode(names, 0)
	s, err := Load(l.Body, l.SHA256)
	if err != nil {
		b.Fatal(err)
	}
	u := Union{s}
	qs := []string{"www.example.com.", names[len(names)/3] + ".", "a.b.c.d.cdn.example.net."}
	b.ResetTimer()
	for i := range b.N {
		u.Match(qs[i%len(qs)])
	}
}

func BenchmarkParse(b *testing.B) {
	names := millionNames(100000)
	var src bytes.Buffer
	for _, n := range names {
		src.WriteString("0.0.0.0 " + n + "\n")
	}
	b.SetBytes(int64(src.Len()))
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(src.Bytes()), Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"0.0.0.0 ads.example.com\n127.0.0.1 localhost\n# c\n",
		"||ads.example.com^\n@@||x.com^\nexample.com##.ad\n",
		"a.example.com b.example.com # c\n",
		"x.y.\r\n\n\n[Adblock]\n! c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		l, err := Parse(bytes.NewReader(src), Limits{MaxNames: 1000, MaxSize: 1 << 16})
		if err != nil {
			if !errors.Is(err, ErrTooMany) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Parse: %v", err)
			}
			return
		}
		s, err := Load(l.Body, l.SHA256)
		if err != nil {
			t.Fatalf("Load of what Parse made: %v\nbody %q", err, l.Body)
		}
		if s.Len() != l.Names || l.Names > 1000 || len(l.Body) > len(src)+1 {
			t.Fatalf("%d names in the set, %d said, body %d bytes from %d", s.Len(), l.Names, len(l.Body), len(src))
		}
		for _, n := range names(l.Body) {
			if !s.Has(n) {
				t.Fatalf("Has(%q) is false", n)
			}
			if _, ok := s.Match("sub." + n + "."); !ok {
				t.Fatalf("Match of a subdomain of %q is false", n)
			}
		}
	})
}

func names(body []byte) []string {
	s := strings.TrimSuffix(string(body), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
