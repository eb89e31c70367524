// Package blocklist reads DNS blocklists — hosts files, plain domain lists, adblock-style
// "||name^" rules — into one canonical form, and answers whether a name, or a parent of it,
// is listed.
//
// The canonical form (List.Body) is what the controller stores and sends to the nodes, named
// by its SHA-256: the names, lower case and without the final dot, sorted byte-wise, each on
// a line of its own ending in '\n'. Two sources that list the same names have the same form
// and so the same hash, and a node keeps one copy of it however many tenants use it.
package blocklist

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
)

// Defaults of Limits.
const (
	// DefaultMaxNames bounds the names of one list (after duplicates are dropped).
	DefaultMaxNames = 1_000_000
	// DefaultMaxSize bounds the bytes read of one source (a fetched URL, an uploaded file).
	DefaultMaxSize = 64 << 20
	// maxLine bounds a line; a longer one is skipped (counted).
	maxLine = 16 << 10
	// MaxName is the longest name, without the final dot (RFC 1035: 255 bytes on the wire).
	MaxName = 253
)

// Errors of Parse: the source is over a bound. Each wraps one of these.
var (
	ErrTooLarge = errors.New("blocklist too large")
	ErrTooMany  = errors.New("blocklist has too many names")
)

// Limits bound what Parse takes.
type Limits struct {
	// MaxNames bounds the distinct names. Default DefaultMaxNames.
	MaxNames int
	// MaxSize bounds the bytes read. Default DefaultMaxSize.
	MaxSize int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxNames <= 0 {
		l.MaxNames = DefaultMaxNames
	}
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultMaxSize
	}
	return l
}

// List is a parsed blocklist in its canonical form.
type List struct {
	// Body is the canonical form: the names sorted byte-wise, each followed by '\n'.
	Body []byte
	// SHA256 is the hash of Body, which names the list's content.
	SHA256 [32]byte
	// Names is how many names Body holds.
	Names int
	// Skipped counts what the source held that is not a name to block: invalid names,
	// addresses, localhost and its kin, single labels (a top-level domain alone), adblock
	// rules other than "||name^", overlong lines. Comments and blank lines are not counted.
	Skipped int
}

// Parse reads a blocklist from r: a hosts file ("0.0.0.0 ads.example.com", several names a
// line), a list of names one a line, or adblock-style "||ads.example.com^" rules, mixed as
// they come. '#' starts a comment at the start of a line or after white space, and '!' a
// comment line (adblock); "[Adblock Plus 2.0]" headers are ignored. Names are lower-cased
// and lose a final dot; duplicates count once. What is not a name to block is skipped and
// counted (List.Skipped). An error wrapping ErrTooLarge or ErrTooMany says the source is over
// lim, with what to do; another error is r's.
func Parse(r io.Reader, lim Limits) (List, error) {
	lim = lim.withDefaults()
	cr := &countReader{r: io.LimitReader(r, lim.MaxSize+1)}
	br := bufio.NewReaderSize(cr, maxLine)
	p := parser{max: lim.MaxNames}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			p.skipped++ // a line longer than any a list needs: skip it whole
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			line = nil
		}
		if cr.n > lim.MaxSize {
			return List{}, fmt.Errorf("%w: the list is larger than %s, the most popgate takes: use a smaller list, or split it into several", ErrTooLarge, sizeText(lim.MaxSize))
		}
		if len(line) > 0 {
			if perr := p.line(line); perr != nil {
				return List{}, perr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return List{}, err
		}
	}
	if err := p.compact(); err != nil {
		return List{}, err
	}
	return Encode(p.names, p.skipped), nil
}

// Encode makes the canonical List of names, which must be valid names (ValidName) sorted
// byte-wise without duplicates, and skipped.
func Encode(names []string, skipped int) List {
	n := 0
	for _, s := range names {
		n += len(s) + 1
	}
	body := make([]byte, 0, n)
	for _, s := range names {
		body = append(body, s...)
		body = append(body, '\n')
	}
	return List{Body: body, SHA256: sha256.Sum256(body), Names: len(names), Skipped: skipped}
}

type parser struct {
	max     int
	names   []string
	skipped int
}

// line takes one line of the source.
func (p *parser) line(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] == '#' || b[0] == '!' || b[0] == '[' {
		return nil
	}
	if b[0] == '|' || b[0] == '@' || b[0] == '/' || bytes.Contains(b, []byte("##")) || bytes.Contains(b, []byte("#@#")) || bytes.Contains(b, []byte("#?#")) {
		// Adblock: only "||name^" says "this domain"; exceptions (@@), regular expressions,
		// URL rules, options ($third-party) and cosmetic rules (##) are for browsers.
		name, ok := bytes.CutPrefix(b, []byte("||"))
		if ok {
			name, ok = bytes.CutSuffix(name, []byte("^"))
		}
		if !ok {
			p.skipped++
			return nil
		}
		return p.name(name)
	}
	// A comment after white space ends the line; a '#' within a field makes it invalid.
	if i := indexComment(b); i >= 0 {
		b = bytes.TrimSpace(b[:i])
	}
	fields := bytes.Fields(b)
	if len(fields) == 0 {
		return nil
	}
	if _, err := netip.ParseAddr(string(fields[0])); err == nil {
		// A hosts line: an address, then the names it gives.
		if len(fields) == 1 {
			p.skipped++
		}
		fields = fields[1:]
	}
	for _, f := range fields {
		if err := p.name(f); err != nil {
			return err
		}
	}
	return nil
}

// indexComment is the index of the '#' that starts a comment after white space, or -1.
func indexComment(b []byte) int {
	for i := 1; i < len(b); i++ {
		if b[i] == '#' && (b[i-1] == ' ' || b[i-1] == '\t') {
			return i
		}
	}
	return -1
}

// name takes one name of the source. It lower-cases b in place.
func (p *parser) name(b []byte) error {
	b, ok := normalize(b)
	if !ok {
		p.skipped++
		return nil
	}
	p.names = append(p.names, string(b))
	if len(p.names) >= 2*p.max {
		// Duplicates must not hold more memory than the bound allows.
		return p.compact()
	}
	return nil
}

// compact sorts the names and drops duplicates; an error wrapping ErrTooMany when more than
// max remain.
func (p *parser) compact() error {
	slices.Sort(p.names)
	p.names = slices.Compact(p.names)
	if len(p.names) > p.max {
		return fmt.Errorf("%w: the list has more than %s names, the most popgate takes in one list: use a smaller list, or split it into several", ErrTooMany, countText(p.max))
	}
	return nil
}

// notBlocked are names hosts files give the loopback and link-local addresses, never names
// to block.
var notBlocked = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true, "broadcasthost": true,
	"ip6-localhost": true, "ip6-loopback": true, "ip6-localnet": true, "ip6-mcastprefix": true,
	"ip6-allnodes": true, "ip6-allrouters": true, "ip6-allhosts": true,
}

// Normalize returns s as a blocklist holds it — lower case, without the final dot — and
// whether it is a name to block: ValidName, not localhost or its kin, not an address.
func Normalize(s string) (string, bool) {
	b, ok := normalize([]byte(s))
	return string(b), ok
}

// normalize is Normalize of b, lower-cased in place.
func normalize(b []byte) ([]byte, bool) {
	b = bytes.TrimSuffix(b, []byte{'.'})
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	if !validName(b) || notBlocked[string(b)] || bytes.HasSuffix(b, []byte(".localhost")) {
		return nil, false
	}
	// A numeric last label: an IPv4 address (no top-level domain is numeric).
	last := b[bytes.LastIndexByte(b, '.')+1:]
	if bytes.IndexFunc(last, func(r rune) bool { return r < '0' || r > '9' }) < 0 {
		return nil, false
	}
	return b, true
}

// ValidName reports whether s is a name a canonical list may hold: at most MaxName bytes in
// two or more labels of 1-63 lower-case letters, digits, '-' and '_'. A single label (a
// top-level domain alone) would block a whole TLD, and is refused.
func ValidName(s string) bool { return validName(s) }

func validName[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > MaxName {
		return false
	}
	labels, n := 1, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if n == 0 {
				return false
			}
			labels, n = labels+1, 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		if n++; n > 63 {
			return false
		}
	}
	return n > 0 && labels >= 2
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// sizeText words a byte count in MiB or KiB when it is a whole number of them.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// countText writes n with thousands separators: 1,000,000.
func countText(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
