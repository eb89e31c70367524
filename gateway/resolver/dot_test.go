package resolver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/popgate/popgate/gateway/plane"
)

// testCA is a self-signed certificate for dotName and the pool that trusts it.
type testCA struct {
	cert tls.Certificate
	pool *x509.CertPool
}

const dotName = "dns.test.example"

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: dotName}, DNSNames: []string{dotName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &testCA{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, pool: pool}
}

// dotServer is a DNS-over-TLS server on loopback (miekg/dns's server): it answers A
// questions with its address (TTL 300); it counts queries and the connections it accepted,
// and how many are open now.
type dotServer struct {
	addr              netip.AddrPort
	answer            netip.Addr
	queries, accepted atomic.Int64
	open              atomic.Int64
	srv               *dns.Server
}

// countingListener counts the connections it accepts and those still open.
type countingListener struct {
	net.Listener
	s *dotServer
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.accepted.Add(1)
		l.s.open.Add(1)
		c = &countedConn{Conn: c, s: l.s}
	}
	return c, err
}

type countedConn struct {
	net.Conn
	s    *dotServer
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.s.open.Add(-1) })
	return c.Conn.Close()
}

func startDoT(t *testing.T, ca *testCA, answer string) *dotServer {
	t.Helper()
	return startDoTLimited(t, ca, answer, -1)
}

// startDoTLimited is startDoT closing a connection after maxQueries (-1: never), as some
// servers do.
func startDoTLimited(t *testing.T, ca *testCA, answer string, maxQueries int) *dotServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dotServer{addr: ln.Addr().(*net.TCPAddr).AddrPort(), answer: netip.MustParseAddr(answer)}
	tl := tls.NewListener(countingListener{ln, s}, &tls.Config{Certificates: []tls.Certificate{ca.cert}, MinVersion: tls.VersionTLS12})
	s.srv = &dns.Server{Listener: tl, Net: "tcp-tls", IdleTimeout: func() time.Duration { return time.Minute }, MaxTCPQueries: maxQueries,
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			s.queries.Add(1)
			m := new(dns.Msg)
			m.SetReply(q)
			if q.Question[0].Qtype == dns.TypeA {
				m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
					A: s.answer.AsSlice()}}
			}
			w.WriteMsg(m)
		})}
	started := make(chan struct{})
	s.srv.NotifyStartedFunc = func() { close(started) }
	go s.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { s.srv.Shutdown() })
	return s
}

// up is the DNS-over-TLS upstream of s under name.
func (s *dotServer) up(name string) plane.DNSUpstream {
	return plane.DNSUpstream{Addr: s.addr, TLSName: name}
}

// withUpstreams is testDesired with tenant 1 (acme) forwarding to ups.
func withUpstreams(ups ...plane.DNSUpstream) *plane.Desired {
	d := testDesired()
	d.Tenants[0].DNS.Upstreams = ups
	return d
}

func setZones(r *Resolver, d *plane.Desired) {
	r.SetZones(BuildZones(d, func(p *plane.Peer) bool { return p.Enabled }))
}

// TestTenantUpstreams: a tenant with upstreams of its own has its queries answered by them,
// in order; the other tenants keep the node's; neither sees the other's answers from the
// cache; a node without upstreams still serves the tenant's.
func TestTenantUpstreams(t *testing.T) {
	node, own := startUpstream(t), startUpstreamAnswering(t, "198.51.100.7")
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{node.addr}})
	setZones(r, withUpstreams(plane.DNSUpstream{Addr: own.addr}))
	for i := range 2 { // the second time from the cache
		if got := answerText(ask(t, r, 1, "www.example.com.", dns.TypeA)); got != "NOERROR 198.51.100.7" {
			t.Errorf("round %d: acme (its upstream) got %q", i, got)
		}
		if got := answerText(ask(t, r, 2, "www.example.com.", dns.TypeA)); got != "NOERROR 192.0.2.1" {
			t.Errorf("round %d: globex (the node's upstream) got %q", i, got)
		}
	}
	if n, o := node.queries.Load(), own.queries.Load(); n != 1 || o != 1 {
		t.Errorf("the node's upstream was asked %d times, acme's %d; want once each (then the cache, each its own)", n, o)
	}

	// In order: a silent first upstream is skipped after the timeout.
	silent := startUpstream(t)
	silent.silent.Store(true)
	r2 := newTestResolver(t, Config{Timeout: 100 * time.Millisecond}) // no upstreams of the node's
	setZones(r2, withUpstreams(plane.DNSUpstream{Addr: silent.addr}, plane.DNSUpstream{Addr: own.addr}))
	if got := answerText(ask(t, r2, 1, "next.example.com.", dns.TypeA)); got != "NOERROR 198.51.100.7" {
		t.Errorf("with acme's first upstream silent: %q", got)
	}
	if got := answerText(ask(t, r2, 2, "next.example.com.", dns.TypeA)); got != "SERVFAIL" {
		t.Errorf("globex on a node without upstreams: %q, want SERVFAIL", got)
	}
	// Back to the node's: the tenant's cached answers stay its own, unseen.
	setZones(r, testDesired())
	if got := answerText(ask(t, r, 1, "www.example.com.", dns.TypeA)); got != "NOERROR 192.0.2.1" {
		t.Errorf("acme back on the node's upstreams got %q", got)
	}
	if r.inFlight.Load() != 0 || r2.inFlight.Load() != 0 {
		t.Errorf("queries left in flight: %d, %d", r.inFlight.Load(), r2.inFlight.Load())
	}
}

// TestDoT: a tenant's DNS-over-TLS upstream answers over one connection, kept for the next
// queries; a certificate that does not name the upstream, or that the roots do not trust,
// is refused and the next upstream answers; the cache keeps the tenant's answers its own.
func TestDoT(t *testing.T) {
	ca := newTestCA(t)
	srv := startDoT(t, ca, "198.51.100.53")
	plain := startUpstream(t)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{plain.addr}, TLSRoots: ca.pool})
	setZones(r, withUpstreams(srv.up(dotName)))
	for i := range 5 {
		name := fmt.Sprintf("q%d.example.com.", i)
		if got := answerText(ask(t, r, 1, name, dns.TypeA)); got != "NOERROR 198.51.100.53" {
			t.Fatalf("%s over TLS: %q", name, got)
		}
	}
	if a := srv.accepted.Load(); a != 1 {
		t.Errorf("the server accepted %d connections for 5 queries in a row, want 1", a)
	}
	// globex, on the node's upstream, never sees acme's answer.
	if got := answerText(ask(t, r, 2, "q0.example.com.", dns.TypeA)); got != "NOERROR 192.0.2.1" {
		t.Errorf("globex got %q for a name acme's upstream answered", got)
	}
	if got := answerText(ask(t, r, 1, "q0.example.com.", dns.TypeA)); got != "NOERROR 198.51.100.53" || srv.queries.Load() != 5 {
		t.Errorf("acme again: %q with %d queries over TLS; want its own answer, from the cache", got, srv.queries.Load())
	}

	// A name the certificate does not hold, or roots that do not trust it: refused, and
	// the next upstream (plain) answers; alone, SERVFAIL.
	for _, c := range []struct {
		what  string
		roots *x509.CertPool
		name  string
	}{
		{"another name", ca.pool, "other.test.example"},
		{"the system's roots", nil, dotName},
	} {
		r := newTestResolver(t, Config{TLSRoots: c.roots, Timeout: 2 * time.Second})
		setZones(r, withUpstreams(srv.up(c.name), plane.DNSUpstream{Addr: plain.addr}))
		if got := answerText(ask(t, r, 1, "refused.example.com.", dns.TypeA)); got != "NOERROR 192.0.2.1" {
			t.Errorf("%s: %q, want the plain upstream's answer", c.what, got)
		}
		setZones(r, withUpstreams(srv.up(c.name)))
		if got := answerText(ask(t, r, 1, "refused2.example.com.", dns.TypeA)); got != "SERVFAIL" {
			t.Errorf("%s, no other upstream: %q, want SERVFAIL", c.what, got)
		}
	}
	if q := srv.queries.Load(); q != 5 {
		t.Errorf("the server answered %d queries, want 5: one went over an unverified connection", q)
	}
}

// TestDoTPipelined: many queries at once share the connections (at most two per
// upstream), and answers that come back in another order go to their own queries.
func TestDoTPipelined(t *testing.T) {
	ca := newTestCA(t)
	srv := startDoT(t, ca, "198.51.100.53")
	r := newTestResolver(t, Config{TLSRoots: ca.pool})
	setZones(r, withUpstreams(srv.up(dotName)))
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := ask(t, r, 1, fmt.Sprintf("p%d.example.com.", i), dns.TypeA)
			if answerText(m) != "NOERROR 198.51.100.53" || m.Question[0].Name != fmt.Sprintf("p%d.example.com.", i) {
				if bad.Add(1) == 1 {
					t.Logf("a wrong answer: %v", m)
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of 500 queries at once got a wrong answer", bad.Load())
	}
	if a := srv.accepted.Load(); a < 1 || a > tlsConnsPerUpstream {
		t.Errorf("500 queries at once opened %d connections, want 1 to %d", a, tlsConnsPerUpstream)
	}
	t.Logf("500 queries at once over %d connections", srv.accepted.Load())

	// A server that closes a connection after 128 queries: the next query goes over a new
	// connection, whichever way the close crosses it.
	limited := startDoTLimited(t, ca, "198.51.100.53", 128)
	r3 := newTestResolver(t, Config{TLSRoots: ca.pool})
	setZones(r3, withUpstreams(limited.up(dotName)))
	for i := range 300 {
		if got := answerText(ask(t, r3, 1, fmt.Sprintf("l%d.example.com.", i), dns.TypeA)); got != "NOERROR 198.51.100.53" {
			t.Fatalf("query %d to a server that closes after 128: %q", i, got)
		}
	}
	if a := limited.accepted.Load(); a != 3 {
		t.Errorf("300 queries to a server that closes after 128 took %d connections, want 3", a)
	}

	// Answers in reverse order, on a server that waits for ten queries.
	rev := startReversingDoT(t, ca, 10)
	r2 := newTestResolver(t, Config{TLSRoots: ca.pool})
	setZones(r2, withUpstreams(rev.up(dotName)))
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("NOERROR 192.0.2.%d", i+1)
			if got := answerText(ask(t, r2, 1, fmt.Sprintf("r%d.example.com.", i+1), dns.TypeA)); got != want {
				t.Errorf("r%d: %q, want %q", i+1, got, want)
			}
		}()
	}
	wg.Wait()
}

// startReversingDoT is a DNS-over-TLS server that reads batch queries on a connection, then
// answers them last first: rN.example.com. A is 192.0.2.N.
func startReversingDoT(t *testing.T, ca *testCA, batch int) *dotServer {
	t.Helper()
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &dotServer{addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var qs []*dns.Msg
				for len(qs) < batch {
					var hdr [2]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
					if _, err := io.ReadFull(c, b); err != nil {
						return
					}
					q := new(dns.Msg)
					if q.Unpack(b) != nil {
						return
					}
					qs = append(qs, q)
				}
				for i := len(qs) - 1; i >= 0; i-- {
					q := qs[i]
					var n int
					fmt.Sscanf(q.Question[0].Name, "r%d.", &n)
					m := new(dns.Msg)
					m.SetReply(q)
					m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
						A: net.IPv4(192, 0, 2, byte(n))}}
					b, _ := m.Pack()
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return s
}

// TestDoTIdleAndBackoff: an idle connection is closed and made again for the next query; an
// upstream that cannot be reached is not tried again before its backoff, its queries going
// to the next upstream meanwhile.
func TestDoTIdleAndBackoff(t *testing.T) {
	ca := newTestCA(t)
	srv := startDoT(t, ca, "198.51.100.53")
	r := newTestResolver(t, Config{TLSRoots: ca.pool, TLSIdle: 100 * time.Millisecond})
	setZones(r, withUpstreams(srv.up(dotName)))
	ask(t, r, 1, "a.example.com.", dns.TypeA)
	waitFor(t, "the idle connection to close", func() bool { return srv.open.Load() == 0 && r.tls.open() == 0 })
	if got := answerText(ask(t, r, 1, "b.example.com.", dns.TypeA)); got != "NOERROR 198.51.100.53" || srv.accepted.Load() != 2 {
		t.Errorf("after the idle close: %q over %d connections, want the answer over a second one", got, srv.accepted.Load())
	}

	// A server that takes the TCP connection and drops it: the TLS handshake fails.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var tries atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tries.Add(1)
			c.Close()
		}
	}()
	plain := startUpstream(t)
	broken := plane.DNSUpstream{Addr: ln.Addr().(*net.TCPAddr).AddrPort(), TLSName: dotName}
	r2 := newTestResolver(t, Config{TLSRoots: ca.pool})
	setZones(r2, withUpstreams(broken, plane.DNSUpstream{Addr: plain.addr}))
	for i := range 5 {
		if got := answerText(ask(t, r2, 1, fmt.Sprintf("c%d.example.com.", i), dns.TypeA)); got != "NOERROR 192.0.2.1" {
			t.Errorf("query %d with the TLS upstream broken: %q, want the next upstream's answer", i, got)
		}
	}
	if n := tries.Load(); n != 1 {
		t.Errorf("the broken upstream was tried %d times within its backoff, want once", n)
	}
}

// TestDoTNodeBound: the node opens at most MaxTLSConns connections, every tenant's
// together; a query that would need one more goes to the next upstream (SERVFAIL when none).
func TestDoTNodeBound(t *testing.T) {
	ca := newTestCA(t)
	a, b := startDoT(t, ca, "198.51.100.1"), startDoT(t, ca, "198.51.100.2")
	r := newTestResolver(t, Config{TLSRoots: ca.pool, MaxTLSConns: 1, TLSIdle: time.Hour})
	d := withUpstreams(a.up(dotName))
	d.Tenants[1].DNS.Upstreams = []plane.DNSUpstream{b.up(dotName)}
	setZones(r, d)
	if got := answerText(ask(t, r, 1, "x.example.com.", dns.TypeA)); got != "NOERROR 198.51.100.1" {
		t.Fatalf("acme: %q", got)
	}
	if got := answerText(ask(t, r, 2, "x.example.com.", dns.TypeA)); got != "SERVFAIL" {
		t.Errorf("globex past the node's bound of 1 connection: %q, want SERVFAIL", got)
	}
	if n := r.tls.open(); n != 1 || b.accepted.Load() != 0 {
		t.Errorf("%d connections open, %d to globex's upstream; want 1 and 0", n, b.accepted.Load())
	}
}

// TestDoTClose: Close ends every connection and goroutine.
func TestDoTClose(t *testing.T) {
	ca := newTestCA(t)
	srv := startDoT(t, ca, "198.51.100.53")
	plain := startUpstream(t)
	before := runtime.NumGoroutine()
	r, err := New(Config{Overlay: testOverlay, TLSRoots: ca.pool}, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	setZones(r, withUpstreams(srv.up(dotName), plane.DNSUpstream{Addr: plain.addr}))
	ask(t, r, 1, "a.example.com.", dns.TypeA)
	ask(t, r, 1, "a.example.com.", dns.TypeAAAA)
	r.Close()
	r.Close()
	waitFor(t, "the server to see the connection closed", func() bool { return srv.open.Load() == 0 })
	waitFor(t, "the resolver's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
