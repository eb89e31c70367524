// Package checkstest is a tiny DNS server on loopback UDP for tests of DNS checks: it answers
// A and AAAA questions from a table, NXDOMAIN for other names.
package checkstest

import (
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS is a DNS server that answers from Names until the test ends.
type DNS struct {
	conn    net.PacketConn
	names   map[string][]netip.Addr
	rcode   dnsmessage.RCode
	silent  bool
	queries atomic.Int64
}

// Options change how a DNS answers.
type Options struct {
	// RCode, when set, is every answer's code (SERVFAIL, REFUSED): a resolver that fails.
	RCode dnsmessage.RCode
	// Silent: it answers nothing, as a resolver that is down.
	Silent bool
	// Addr is where it listens (default 127.0.0.1:0).
	Addr string
}

// StartDNS starts a DNS server answering names' addresses (without the root's dot), closed
// when the test ends.
func StartDNS(t testing.TB, names map[string][]netip.Addr, o Options) *DNS {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	conn, err := net.ListenPacket("udp", o.Addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &DNS{conn: conn, names: names, rcode: o.RCode, silent: o.Silent}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			s.queries.Add(1)
			if s.silent {
				continue
			}
			if out := s.answer(buf[:n]); out != nil {
				conn.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return s
}

// Addr is the server's address.
func (s *DNS) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Queries counts the questions it received.
func (s *DNS) Queries() int64 { return s.queries.Load() }

func (s *DNS) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	name := strings.TrimSuffix(qs[0].Name.String(), ".")
	addrs, known := s.names[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionAvailable: true, RCode: s.rcode}
	if !known && s.rcode == 0 {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.StartQuestions()
	b.Question(qs[0])
	b.StartAnswers()
	if rh.RCode == dnsmessage.RCodeSuccess {
		for _, a := range addrs {
			hdr := dnsmessage.ResourceHeader{Name: qs[0].Name, Class: dnsmessage.ClassINET, TTL: 60}
			switch {
			case a.Is4() && qs[0].Type == dnsmessage.TypeA:
				b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
			case a.Is6() && qs[0].Type == dnsmessage.TypeAAAA:
				b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
	}
	out, _ := b.Finish()
	return out
}
