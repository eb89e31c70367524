package netstack

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Loopback servers the test dialer maps public-looking destinations to. Each is closed,
// with every connection and goroutine it started, by t.Cleanup or its close func.

type tcpServer struct {
	ln    net.Listener
	addr  netip.AddrPort
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// serveTCP listens on network ("tcp4" → 127.0.0.1, "tcp6" → [::1]) and runs handle for
// every connection.
func serveTCP(t testing.TB, network string, handle func(net.Conn)) *tcpServer {
	t.Helper()
	addr := netip.MustParseAddrPort("127.0.0.1:0")
	if network == "tcp6" {
		addr = netip.MustParseAddrPort("[::1]:0")
	}
	return serveTCPAt(t, addr, handle)
}

// serveTCPAt is serveTCP on a given address.
func serveTCPAt(t testing.TB, addr netip.AddrPort, handle func(net.Conn)) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln, addr: ln.Addr().(*net.TCPAddr).AddrPort(), conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *tcpServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

type udpServer struct {
	c    net.PacketConn
	addr netip.AddrPort
	wg   sync.WaitGroup
}

// serveUDP answers every datagram with reply(datagram); nil means no answer.
func serveUDP(t testing.TB, network string, port int, reply func([]byte) []byte) *udpServer {
	t.Helper()
	host := "127.0.0.1"
	if network == "udp6" {
		host = "::1"
	}
	c, err := net.ListenPacket(network, net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	s := &udpServer{c: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				c.WriteTo(r, from)
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *udpServer) close() {
	s.c.Close()
	s.wg.Wait()
}

func echoUDP(b []byte) []byte { return append([]byte(nil), b...) }

// sendData writes data and closes.
func sendData(data []byte) func(net.Conn) {
	return func(c net.Conn) { c.Write(data) }
}

// hashBack reads until EOF (the client's half-close) and answers the SHA-256 of it.
func hashBack(c net.Conn) {
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		return
	}
	c.Write(h.Sum(nil))
}

// holdOpen echoes until the client closes.
func holdOpen(c net.Conn) { io.Copy(c, c) }

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// freePort returns a loopback port on which nothing listens (TCP and UDP), for refusals.
func freePort(t testing.TB, network string) netip.AddrPort {
	t.Helper()
	s := serveTCP(t, network, func(net.Conn) {})
	s.close()
	return s.addr
}

// dnsServer is a fake upstream resolver on one port for UDP and TCP: it answers a query
// with the query, QR bit set, and tag appended.
type dnsServer struct {
	addr netip.AddrPort
	udp  *udpServer
	tcp  *tcpServer
}

func serveDNS(t testing.TB, tag string) *dnsServer {
	t.Helper()
	answer := func(q []byte) []byte {
		if len(q) < dnsHeaderLen {
			return nil
		}
		a := append([]byte(nil), q...)
		a[2] |= 0x80
		return append(a, tag...)
	}
	for range 20 {
		u := serveUDP(t, "udp4", 0, answer)
		ln, err := net.Listen("tcp4", u.addr.String())
		if err != nil {
			u.close()
			continue // the TCP port was taken; try another
		}
		ln.Close()
		ts := serveTCPAt(t, u.addr, func(c net.Conn) {
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				a := answer(q)
				binary.BigEndian.PutUint16(l[:], uint16(len(a)))
				c.Write(append(l[:], a...))
			}
		})
		return &dnsServer{addr: u.addr, udp: u, tcp: ts}
	}
	t.Fatal("no port free for both UDP and TCP")
	return nil
}

// within fails t unless cond becomes true within d.
func within(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
