package netstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// scriptedDNS is a Dialer whose upstreams answer from a script: each UDP socket it dials
// records the query written to it and reads the answers the script gives for that upstream
// and query, then fails (as a timeout would, at once).
type scriptedDNS struct {
	upstreams []netip.AddrPort

	mu      sync.Mutex
	down    [2]bool                                   // dials to this upstream fail
	answers func(upstream int, query []byte) [][]byte // what an upstream answers to a query
	queries [][]byte                                  // every query sent, after its upstream's index
}

var _ Dialer = (*scriptedDNS)(nil)

func (d *scriptedDNS) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, up := range d.upstreams {
		if up.String() == address && network == "udp" && !d.down[i] {
			return &scriptedConn{d: d, upstream: i}, nil
		}
	}
	return nil, fmt.Errorf("scripted DNS: no upstream %s %s", network, address)
}

// script sets which upstreams are down and what the others answer, and forgets the queries
// sent so far.
func (d *scriptedDNS) script(down [2]bool, answers func(int, []byte) [][]byte) {
	d.mu.Lock()
	d.down, d.answers, d.queries = down, answers, nil
	d.mu.Unlock()
}

func (d *scriptedDNS) sent() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries
}

type scriptedConn struct {
	d        *scriptedDNS
	upstream int
	pending  [][]byte
}

var errScriptEnd = errors.New("scripted DNS: no more answers")

func (c *scriptedConn) Write(b []byte) (int, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	c.d.queries = append(c.d.queries, append([]byte{byte(c.upstream)}, b...))
	c.pending = c.d.answers(c.upstream, b)
	return len(b), nil
}

func (c *scriptedConn) Read(b []byte) (int, error) {
	if len(c.pending) == 0 {
		return 0, errScriptEnd
	}
	n := copy(b, c.pending[0]) // a datagram socket truncates what does not fit
	c.pending = c.pending[1:]
	return n, nil
}

func (c *scriptedConn) Close() error                     { return nil }
func (c *scriptedConn) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (c *scriptedConn) RemoteAddr() net.Addr             { return &net.UDPAddr{} }
func (c *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// splitAnswers cuts data into datagrams, each a 2-byte length (at most what is left) then
// its bytes; the first byte of data says how many of them go to the first upstream.
func splitAnswers(data []byte) (first, second [][]byte) {
	if len(data) == 0 {
		return nil, nil
	}
	k := int(data[0])
	data = data[1:]
	for len(data) >= 2 {
		n := min(int(data[0])<<8|int(data[1]), len(data)-2)
		a := data[2 : 2+n]
		data = data[2+n:]
		if len(first) < k {
			first = append(first, a)
		} else {
			second = append(second, a)
		}
	}
	return first, second
}

// FuzzDNSRelay: the in-tunnel DNS service relays a query (one that holds a DNS header: serve
// drops shorter ones) unchanged to the upstreams it reaches, in order, and relays back exactly
// the first answer that is a DNS message with the query's ID; without one, nothing, and
// errNoUpstream. The fuzzer chooses the query, every upstream answer (any bytes, any length)
// and which upstreams cannot be reached. The relay is driven on the fuzzer's goroutine: the
// service's gVisor leg adds goroutines whose varying coverage would mislead the fuzzer, and
// FuzzWrite covers the packets that reach it.
func FuzzDNSRelay(f *testing.F) {
	q := []byte{0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 'q'}
	answer := func(id0, id1 byte, rest string) []byte {
		a := append([]byte{id0, id1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0}, rest...)
		return append([]byte{byte(len(a) >> 8), byte(len(a))}, a...)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, s := range []struct {
		query, answers []byte
		down           uint8
	}{
		{q, cat([]byte{1}, answer(0xab, 0xcd, "good")), 0},
		{q, cat([]byte{1}, answer(0xab, 0xce, "other id"), answer(0xab, 0xcd, "second")), 0},
		{q, cat([]byte{0}, answer(0xab, 0xcd, "from the second")), 1},
		{q, cat([]byte{1}, []byte{0, 5, 0xab, 0xcd, 1, 2, 3}, answer(0xab, 0xcd, "after a short one")), 0},
		{q, cat([]byte{1}, answer(0xab, 0xcd, "")), 3},
		{q[:12], cat([]byte{1}, answer(0xab, 0xcd, "")), 0},
		{q, nil, 0},
		{bytes.Repeat([]byte{0xab}, 1500), cat([]byte{2}, answer(0xab, 0xab, string(bytes.Repeat([]byte{'x'}, 3000)))), 0},
	} {
		f.Add(s.query, s.answers, s.down)
	}

	d := &scriptedDNS{upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53")}}
	e, err := New(Config{LocalAddrs: []netip.Addr{localV4, localV6}, DNSUpstreams: d.upstreams, Dialer: d, Output: func([][]byte) {}, Pinger: &fakePinger{drop: true}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	resp := make([]byte, dnsBufSize)

	f.Fuzz(func(t *testing.T, query, answers []byte, down uint8) {
		if len(query) < dnsHeaderLen || len(query) > dnsBufSize {
			return
		}
		byUpstream := [2][][]byte{}
		byUpstream[0], byUpstream[1] = splitAnswers(answers)
		isDown := [2]bool{down&1 != 0, down&2 != 0}
		d.script(isDown, func(up int, q []byte) [][]byte { return byUpstream[up] })
		// What the relay must do: ask each upstream it reaches in turn until one gives an
		// answer with the query's ID.
		var want []byte
		var asked []int
		for up := range 2 {
			if isDown[up] {
				continue
			}
			asked = append(asked, up)
			for _, a := range byUpstream[up] {
				if len(a) >= dnsHeaderLen && a[0] == query[0] && a[1] == query[1] {
					want = a
					break
				}
			}
			if want != nil {
				break
			}
		}
		got, err := (&dnsFlow{e: e}).ask(query, resp)
		switch {
		case want == nil && !errors.Is(err, errNoUpstream):
			t.Fatalf("query %x: %x, %v; want errNoUpstream", query, got, err)
		case want != nil && (err != nil || !bytes.Equal(got, want)):
			t.Fatalf("query %x: %x, %v; want %x", query, got, err, want)
		}
		sent := d.sent()
		if len(sent) != len(asked) {
			t.Fatalf("query %x: %d queries reached the upstreams, want %d (upstreams %v)", query, len(sent), len(asked), asked)
		}
		for i, up := range asked {
			if s := sent[i]; int(s[0]) != up || !bytes.Equal(s[1:], query) {
				t.Fatalf("query %x: upstream %d got %x, want upstream %d to get it", query, s[0], s[1:], up)
			}
		}
	})
}
