package checks

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/store"
)

// netProber runs checks over the host's network.
type netProber struct {
	upstreams []netip.AddrPort
	hsKey     store.Key
	// open fetches the operator's URLs; public a tenant's, whose connections may reach
	// only public addresses (checked on the address dialled, after the name resolved).
	open, public *http.Client
}

var _ prober = (*netProber)(nil)

func newProber(cfg Config) *netProber {
	r := upstreamResolver(cfg.DNSUpstreams)
	return &netProber{upstreams: cfg.DNSUpstreams, hsKey: cfg.HandshakeKey,
		open: httpClient(r, false), public: httpClient(r, true)}
}

// upstreamResolver resolves names through the first of upstreams, the resolvers the node's
// DNS checks ask, so that an HTTP check sees the names as the node's clients do; nil (the
// system's resolver) without upstreams.
func upstreamResolver(upstreams []netip.AddrPort) *net.Resolver {
	if len(upstreams) == 0 {
		return nil
	}
	up := upstreams[0].String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, up)
	}}
}

func (p *netProber) probe(ctx context.Context, c *plane.Check) outcome {
	switch c.Kind {
	case plane.CheckDNS:
		return p.dns(ctx, c)
	case plane.CheckHTTP:
		return p.http(ctx, c)
	case plane.CheckHandshake:
		return p.handshake(ctx, c)
	}
	return outcome{err: "unknown kind " + strconv.Quote(c.Kind)}
}

// errNotPublic refuses a tenant's connection to an address of the PoP's own networks.
var errNotPublic = errors.New("not a public address: a tenant's check reaches only the internet")

// httpClient returns the client of HTTP checks: a new connection for every run (no keep-alive,
// so that each run measures what a new visitor waits for), no proxy from the environment, no
// redirects followed (the check sees the status the URL answers), names resolved by
// resolver (nil: the system's). publicOnly refuses to connect to addresses
// store.PublicAddr refuses.
func httpClient(resolver *net.Resolver, publicOnly bool) *http.Client {
	d := &net.Dialer{Timeout: DefaultTimeout, Resolver: resolver}
	if publicOnly {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !store.PublicAddr(ap.Addr()) {
				return errNotPublic
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		DisableKeepAlives:      true,
		TLSHandshakeTimeout:    DefaultTimeout,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// http fetches c's URL: it passes when the status is the one expected (200 by default);
// its latency is the time to the response's first byte, the connection's set-up included.
// The body is not read.
func (p *netProber) http(ctx context.Context, c *plane.Check) outcome {
	want := http.StatusOK
	if c.Expect != "" {
		want, _ = strconv.Atoi(c.Expect)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Target, nil)
	if err != nil {
		return outcome{err: err.Error()}
	}
	req.Header.Set("User-Agent", "popgate-check")
	var first time.Time
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}))
	client := p.open
	if c.Tenant != 0 {
		client = p.public
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return outcome{err: httpError(err)}
	}
	resp.Body.Close()
	if first.IsZero() {
		first = time.Now()
	}
	o := outcome{latency: first.Sub(start), detail: resp.Status}
	if resp.StatusCode != want {
		o.err = fmt.Sprintf("status %d, expected %d", resp.StatusCode, want)
		return o
	}
	o.ok = true
	return o
}

// httpError words a failed fetch without the method and URL the user knows.
func httpError(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	return err.Error()
}

// dns resolves c's name through the upstreams, in order until one answers: A and AAAA at
// once, over UDP. It passes when the answer holds an address (Expect, when set); its
// latency is the time until both answers came.
func (p *netProber) dns(ctx context.Context, c *plane.Check) outcome {
	if len(p.upstreams) == 0 {
		return outcome{err: "this node has no upstream resolver: give it --dns-upstream"}
	}
	name := c.Target
	if !strings.HasSuffix(name, ".") {
		name += "." // rooted: no search domains
	}
	qname, err := dnsmessage.NewName(name)
	if err != nil {
		return outcome{err: err.Error()}
	}
	var last string
	for i, up := range p.upstreams {
		// Each upstream gets its share of the time left, so that a dead one leaves the
		// others time to answer.
		uctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			uctx, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(len(p.upstreams)-i))
		}
		addrs, rcode, latency, err := lookup(uctx, up, qname)
		cancel()
		switch {
		case err != nil:
			last = fmt.Sprintf("%s: %v", up, err)
			if ctx.Err() != nil {
				return outcome{err: last}
			}
			continue
		case rcode == dnsmessage.RCodeServerFailure || rcode == dnsmessage.RCodeRefused:
			last = fmt.Sprintf("%s answered %s", up, rcodeText(rcode))
			continue // the next upstream may know better
		case rcode != dnsmessage.RCodeSuccess:
			return outcome{err: fmt.Sprintf("%s answered %s", up, rcodeText(rcode))}
		}
		texts := make([]string, len(addrs))
		for i, a := range addrs {
			texts[i] = a.String()
		}
		o := outcome{latency: latency, detail: strings.Join(texts, ", ") + " via " + up.String()}
		switch {
		case len(addrs) == 0:
			o.err = "no address for " + c.Target
		case c.Expect != "" && !slices.Contains(addrs, netip.MustParseAddr(c.Expect).Unmap()):
			o.err = "the answer does not hold " + c.Expect
		default:
			o.ok = true
		}
		return o
	}
	return outcome{err: last}
}

func rcodeText(rc dnsmessage.RCode) string {
	switch rc {
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return strings.TrimPrefix(rc.String(), "RCode")
}

// lookup asks up for the A and AAAA records of name and returns the addresses of both answers
// (the first's rcode when it is not success), and how long they took.
func lookup(ctx context.Context, up netip.AddrPort, name dnsmessage.Name) ([]netip.Addr, dnsmessage.RCode, time.Duration, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", up.String())
	if err != nil {
		return nil, 0, 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var ids [2]uint16
	var idb [4]byte
	rand.Read(idb[:])
	ids[0], ids[1] = binary.BigEndian.Uint16(idb[:2]), binary.BigEndian.Uint16(idb[2:])|1
	if ids[1] == ids[0] {
		ids[1] ^= 2
	}
	types := [2]dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA}
	start := time.Now()
	for i, t := range types {
		q, err := query(ids[i], name, t)
		if err != nil {
			return nil, 0, 0, err
		}
		if _, err := conn.Write(q); err != nil {
			return nil, 0, 0, err
		}
	}
	var addrs []netip.Addr
	rcode := dnsmessage.RCodeSuccess
	var got [2]bool
	buf := make([]byte, 1232)
	for !got[0] || !got[1] {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, 0, 0, errors.New("no answer in time")
			}
			return nil, 0, 0, err
		}
		var pr dnsmessage.Parser
		h, err := pr.Start(buf[:n])
		if err != nil || !h.Response {
			continue // not an answer: keep waiting for one
		}
		i := slices.Index(ids[:], h.ID)
		if i < 0 || got[i] {
			continue
		}
		qs, err := pr.AllQuestions()
		if err != nil || len(qs) != 1 || !strings.EqualFold(qs[0].Name.String(), name.String()) || qs[0].Type != types[i] {
			continue // an answer to another question (spoofed, or late): not ours
		}
		got[i] = true
		if h.RCode != dnsmessage.RCodeSuccess {
			if rcode == dnsmessage.RCodeSuccess {
				rcode = h.RCode
			}
			continue
		}
		if h.Truncated {
			return nil, 0, 0, errors.New("the answer was truncated")
		}
		for {
			rh, err := pr.AnswerHeader()
			if err != nil {
				break // ErrSectionDone, or a malformed rest: what was read counts
			}
			switch rh.Type {
			case dnsmessage.TypeA:
				r, err := pr.AResource()
				if err == nil {
					addrs = append(addrs, netip.AddrFrom4(r.A))
				}
			case dnsmessage.TypeAAAA:
				r, err := pr.AAAAResource()
				if err == nil {
					addrs = append(addrs, netip.AddrFrom16(r.AAAA))
				}
			default:
				pr.SkipAnswer()
			}
		}
	}
	return addrs, rcode, time.Since(start), nil
}

// query builds a recursive query for name's records of type t, with EDNS0 (a 1,232-byte
// UDP answer: no truncation for a few addresses, no fragmentation).
func query(id uint16, name dnsmessage.Name, t dnsmessage.Type) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 64), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: t, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	var rh dnsmessage.ResourceHeader
	if err := rh.SetEDNS0(1232, dnsmessage.RCodeSuccess, false); err != nil {
		return nil, err
	}
	if err := b.OPTResource(rh, dnsmessage.OPTResource{}); err != nil {
		return nil, err
	}
	return b.Finish()
}
