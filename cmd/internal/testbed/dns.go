package testbed

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNSAnswer is what StartDNS answers every A question with.
var DNSAnswer = netip.MustParseAddr("192.0.2.53")

// DNSServer is a stand-in for an upstream resolver: it answers every A question with
// DNSAnswer (TTL 300), every other type with NODATA, and counts the queries.
type DNSServer struct {
	Port    int
	queries atomic.Int64
}

// Addr is the server's address on a.
func (s *DNSServer) Addr(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, uint16(s.Port)) }

// Queries is how many queries it got.
func (s *DNSServer) Queries() int64 { return s.queries.Load() }

// StartDNS starts a DNSServer on a port of its own in ns (UDP, every address); t's cleanup
// stops it.
func StartDNS(t testing.TB, ns *Netns) *DNSServer {
	t.Helper()
	s := new(DNSServer)
	s.Port = ServeUDP(t, ns, ":0", func(req []byte, _ net.Addr) []byte {
		q := new(dns.Msg)
		if q.Unpack(req) != nil || len(q.Question) != 1 {
			return nil
		}
		s.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A: DNSAnswer.AsSlice()}}
		}
		b, err := m.Pack()
		if err != nil {
			return nil
		}
		return b
	})
	return s
}

// Resolve asks server, from ns over UDP, for name's records of type qtype (dns.TypeA, …),
// again every second until an answer comes or ctx ends. It returns the answer's rcode
// ("NOERROR", "NXDOMAIN", …) and the addresses or names in its answer section.
func Resolve(ctx context.Context, ns *Netns, server netip.AddrPort, name string, qtype uint16) (rcode string, answers []string, err error) {
	c, err := ns.DialContext(ctx, "udp", server.String())
	if err != nil {
		return "", nil, err
	}
	defer c.Close()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(1232, false)
	conn := &dns.Conn{Conn: c}
	for {
		if err := conn.WriteMsg(q); err != nil {
			return "", nil, err
		}
		deadline := time.Now().Add(time.Second)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		c.SetReadDeadline(deadline)
		m, err := conn.ReadMsg()
		if err == nil && m.Id == q.Id {
			rcode, answers = readAnswer(m)
			return rcode, answers, nil
		}
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
	}
}

// ResolveTCP is Resolve over TCP: one query on a connection of its own, what a client does
// after a truncated answer.
func ResolveTCP(ctx context.Context, ns *Netns, server netip.AddrPort, name string, qtype uint16) (rcode string, answers []string, err error) {
	c, err := ns.DialContext(ctx, "tcp", server.String())
	if err != nil {
		return "", nil, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(1232, false)
	conn := &dns.Conn{Conn: c}
	if err := conn.WriteMsg(q); err != nil {
		return "", nil, err
	}
	m, err := conn.ReadMsg()
	if err != nil {
		return "", nil, err
	}
	if m.Id != q.Id {
		return "", nil, fmt.Errorf("an answer with ID %d to query %d", m.Id, q.Id)
	}
	rcode, answers = readAnswer(m)
	return rcode, answers, nil
}

// readAnswer is m's rcode and the addresses and names of its answer section.
func readAnswer(m *dns.Msg) (rcode string, answers []string) {
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			answers = append(answers, rr.A.String())
		case *dns.AAAA:
			answers = append(answers, rr.AAAA.String())
		case *dns.PTR:
			answers = append(answers, rr.Ptr)
		}
	}
	return dns.RcodeToString[m.Rcode], answers
}
