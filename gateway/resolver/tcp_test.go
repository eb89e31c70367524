package resolver

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startBigUpstream is a DNS server on loopback answering every question with 100 A records
// (≈ 1,700 bytes: more than MaxUDPSize), over UDP whole, as a server does to a client whose
// EDNS size allows it.
func startBigUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			m := new(dns.Msg)
			m.SetReply(q)
			for i := range 100 {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
					A: net.IPv4(192, 0, 2, byte(i+1))})
			}
			b, _ := m.Pack()
			pc.WriteTo(b, from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestServeTCP: over TCP a client gets its tenant's names like over UDP, and an answer
// too large for UDP whole where UDP gets it truncated; queries pipelined on one connection
// are all answered, and the connection ends once the client has closed its side and the
// answers went out.
func TestServeTCP(t *testing.T) {
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{startBigUpstream(t)}})

	// Over UDP the big answer is truncated: the client is told to ask over TCP.
	if m := ask(t, r, 1, "many.example.com.", dns.TypeA); !m.Truncated || len(m.Answer) == 100 {
		t.Fatalf("over UDP: truncated %v with %d records, want truncated", m.Truncated, len(m.Answer))
	}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r.ServeTCP(1, netip.MustParseAddr("100.64.0.2"), c)
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := map[uint16]string{}
	var out []byte
	for i, qq := range []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"many.example.com.", dns.TypeA, "NOERROR, 100 records, whole"},
		{"laptop.acme.internal.", dns.TypeA, "NOERROR, 1 records, whole"},
		{"laptop.globex.internal.", dns.TypeA, "NXDOMAIN, 0 records, whole"},
	} {
		q := new(dns.Msg)
		q.SetQuestion(qq.name, qq.qtype)
		q.Id = uint16(100 + i)
		q.SetEdns0(1232, false) // what dig +tcp sends
		b, _ := q.Pack()
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
		want[q.Id] = qq.want
	}
	if _, err := c.Write(out); err != nil { // all three at once
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range len(want) {
		var hdr [2]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatalf("reading an answer: %v (%d unanswered)", err, len(want))
		}
		b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatal(err)
		}
		whole := "whole"
		if m.Truncated {
			whole = "truncated"
		}
		got := dns.RcodeToString[m.Rcode] + ", " + strconv.Itoa(len(m.Answer)) + " records, " + whole
		if w, ok := want[m.Id]; !ok || got != w {
			t.Errorf("answer %d (%s): %s, want %q", m.Id, m.Question[0].Name, got, w)
		}
		delete(want, m.Id)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the answers the connection gave %d bytes, %v; want EOF", n, err)
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeTCP did not return after the client closed its side")
	}
}
