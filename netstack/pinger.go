package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// ErrPingUnavailable is returned (wrapped) by Ping when the host cannot send ICMP echo to
// the destination's address family at all.
var ErrPingUnavailable = errors.New("netstack: ping through the exit is unavailable")

// EchoHandler receives one echo reply: from src, carrying the id and seq that Ping was
// given. payload is valid only during the call. It may be called from any goroutine,
// including from within Ping.
type EchoHandler func(src netip.Addr, id, seq uint16, payload []byte)

// Pinger re-originates ICMP echo requests from the host. Replies come back asynchronously
// through the EchoHandler given to Start, so one slow destination holds no goroutine.
type Pinger interface {
	// Start is called once, by New, before any Ping. onReply receives every echo reply
	// until Close returns. An error means pings will fail; New logs it and goes on.
	Start(onReply EchoHandler) error
	// Ping sends one echo request to dst with id, seq and payload (valid only during the
	// call). It must not block for long. It returns an error wrapping ErrPingUnavailable
	// when it can never send to dst's family, another error when this one send failed.
	// The id and seq of the reply must be those given here, whatever the host did to them.
	Ping(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) error
	// Close stops the replies and releases what Start opened; after it returns, onReply is
	// not called again. Idempotent.
	Close() error
}

var _ Pinger = (*hostPinger)(nil)

// pingMode selects the host pinger's sockets; auto is the default, the others are for tests.
type pingMode int

const (
	pingModeAuto     pingMode = iota // unprivileged datagram sockets, else raw sockets
	pingModeDatagram                 // unprivileged ICMP datagram sockets only
	pingModeRaw                      // raw sockets only
)

// maxPingSockets bounds the datagram sockets of one family. The kernel rewrites the echo
// id of a datagram socket to the socket's own ident, so replies are told apart by (socket,
// source, seq); one more socket is opened only when two outstanding pings to the same
// destination share a seq.
const maxPingSockets = 8

// maxPendingPerSocket bounds the outstanding pings one datagram socket remembers; the next
// goes out on another socket.
const maxPendingPerSocket = 4096

// hostPinger pings from the host with ICMP datagram sockets ("ping sockets", allowed when
// net.ipv4.ping_group_range includes our gid) or, failing that and when privileged, raw
// sockets. One reader goroutine per socket.
type hostPinger struct {
	log  *slog.Logger
	mode pingMode

	onReply EchoHandler
	v4, v6  pingFamily

	mu     sync.Mutex // guards closed and every pingFamily.socks
	closed bool
	wg     sync.WaitGroup // readers
}

type pingFamily struct {
	v6    bool
	raw   bool
	err   error       // non-nil: this family cannot ping; set by Start only
	socks []*pingSock // guarded by hostPinger.mu
}

type pingSock struct {
	c *icmp.PacketConn

	mu      sync.Mutex // guards pending
	pending map[pingSockKey]pendingPing
}

type pingSockKey struct {
	src netip.Addr
	seq uint16
}

type pendingPing struct {
	id      uint16
	expires time.Time
}

func newHostPinger(log *slog.Logger, mode pingMode) *hostPinger {
	return &hostPinger{log: log, mode: mode, v4: pingFamily{}, v6: pingFamily{v6: true}}
}

// Start opens one socket per family, logging one line when a family cannot ping.
func (h *hostPinger) Start(onReply EchoHandler) error {
	h.onReply = onReply
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, fam := range []*pingFamily{&h.v4, &h.v6} {
		s, raw, err := h.open(fam.v6)
		if err != nil {
			fam.err = err
			continue
		}
		fam.raw = raw
		h.addSockLocked(fam, s)
	}
	switch {
	case h.v4.err != nil && h.v6.err != nil && isPermission(h.v4.err) && isPermission(h.v6.err):
		h.log.Warn("ping through the exit is unavailable: unprivileged ICMP sockets are not allowed (sysctl net.ipv4.ping_group_range) and the process has no CAP_NET_RAW")
	case h.v4.err != nil && h.v6.err != nil:
		h.log.Warn("ping through the exit is unavailable", "ipv4", h.v4.err, "ipv6", h.v6.err)
	case h.v4.err != nil:
		h.log.Warn("ping through the exit is unavailable for IPv4", "err", h.v4.err)
	case h.v6.err != nil:
		h.log.Warn("ping through the exit is unavailable for IPv6", "err", h.v6.err)
	default:
		h.log.Debug("ping through the exit is available", "raw", h.v4.raw)
	}
	return nil
}

// open opens one ICMP socket for a family, as h.mode allows; raw reports which kind.
func (h *hostPinger) open(v6 bool) (s *pingSock, raw bool, err error) {
	dgram, rawNet, addr := "udp4", "ip4:icmp", "0.0.0.0"
	if v6 {
		dgram, rawNet, addr = "udp6", "ip6:ipv6-icmp", "::"
	}
	if h.mode != pingModeRaw {
		c, err := icmp.ListenPacket(dgram, addr)
		if err == nil {
			return &pingSock{c: c, pending: make(map[pingSockKey]pendingPing)}, false, nil
		}
		if h.mode == pingModeDatagram || !isPermission(err) {
			return nil, false, err
		}
	}
	c, err := icmp.ListenPacket(rawNet, addr)
	if err != nil {
		return nil, false, err
	}
	// A raw socket sees every ICMP message the host receives; let the kernel keep only
	// echo replies. Best effort: the reader filters too.
	if v6 {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		c.IPv6PacketConn().SetICMPFilter(&f)
	} else {
		var f ipv4.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv4.ICMPTypeEchoReply)
		c.IPv4PacketConn().SetICMPFilter(&f)
	}
	return &pingSock{c: c}, true, nil
}

func isPermission(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

func (h *hostPinger) addSockLocked(fam *pingFamily, s *pingSock) {
	fam.socks = append(fam.socks, s)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.read(fam, s)
	}()
}

// Ping implements Pinger.
func (h *hostPinger) Ping(ctx context.Context, dst netip.Addr, id, seq uint16, payload []byte) error {
	dst = dst.Unmap()
	fam := &h.v4
	if dst.Is6() {
		fam = &h.v6
	}
	if fam.err != nil {
		return fmt.Errorf("%w: %w", ErrPingUnavailable, fam.err)
	}
	s, err := h.sockFor(fam, dst, id, seq)
	if err != nil {
		return err
	}

	bp := getBuf()
	defer putBuf(bp)
	msg := (*bp)[:icmpHeaderLen+min(len(payload), len(*bp)-icmpHeaderLen)]
	msg[0], msg[1], msg[2], msg[3] = icmpv4Echo, 0, 0, 0
	if fam.v6 {
		msg[0] = icmpv6Echo // the kernel computes ICMPv6 checksums on both socket kinds
	}
	binary.BigEndian.PutUint16(msg[4:6], id)
	binary.BigEndian.PutUint16(msg[6:8], seq)
	copy(msg[icmpHeaderLen:], payload)
	if !fam.v6 {
		binary.BigEndian.PutUint16(msg[2:4], ^checksum.Checksum(msg, 0))
	}
	var to net.Addr = &net.UDPAddr{IP: dst.AsSlice()}
	if fam.raw {
		to = &net.IPAddr{IP: dst.AsSlice()}
	}
	if _, err := s.c.WriteTo(msg, to); err != nil {
		if !fam.raw {
			s.mu.Lock()
			delete(s.pending, pingSockKey{dst, seq})
			s.mu.Unlock()
		}
		return err
	}
	return nil
}

// sockFor picks the socket to send from and, for datagram sockets, records the id to
// restore on the reply.
func (h *hostPinger) sockFor(fam *pingFamily, dst netip.Addr, id, seq uint16) (*pingSock, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("%w: closed", ErrPingUnavailable)
	}
	if fam.raw {
		return fam.socks[0], nil
	}
	now := time.Now()
	k := pingSockKey{dst, seq}
	for _, s := range fam.socks {
		if s.claim(k, id, now) {
			return s, nil
		}
	}
	if len(fam.socks) >= maxPingSockets {
		return nil, errors.New("netstack: too many pings to one destination with the same sequence number")
	}
	s, _, err := h.open(fam.v6)
	if err != nil {
		return nil, err
	}
	h.addSockLocked(fam, s)
	s.claim(k, id, now)
	return s, nil
}

// claim records k → id unless a live ping holds k on this socket.
func (s *pingSock) claim(k pingSockKey, id uint16, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pending[k]; ok && now.Before(p.expires) {
		return false
	}
	if len(s.pending) >= maxPendingPerSocket {
		for k, p := range s.pending {
			if !now.Before(p.expires) {
				delete(s.pending, k)
			}
		}
		if len(s.pending) >= maxPendingPerSocket {
			return false
		}
	}
	s.pending[k] = pendingPing{id: id, expires: now.Add(pingTimeout)}
	return true
}

// read delivers the echo replies arriving on s until s is closed.
func (h *hostPinger) read(fam *pingFamily, s *pingSock) {
	want := byte(icmpv4EchoReply)
	if fam.v6 {
		want = icmpv6EchoReply
	}
	buf := make([]byte, 1<<16)
	for {
		n, from, err := s.c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			h.log.Debug("ping: read failed", "err", err)
			time.Sleep(10 * time.Millisecond) // no spinning on a persistent error
			continue
		}
		msg := buf[:n]
		if len(msg) < icmpHeaderLen || msg[0] != want || msg[1] != 0 {
			continue
		}
		var src netip.Addr
		switch a := from.(type) {
		case *net.UDPAddr:
			src, _ = netip.AddrFromSlice(a.IP)
		case *net.IPAddr:
			src, _ = netip.AddrFromSlice(a.IP)
		}
		src = src.Unmap()
		id := binary.BigEndian.Uint16(msg[4:6])
		seq := binary.BigEndian.Uint16(msg[6:8])
		if !fam.raw {
			k := pingSockKey{src, seq}
			s.mu.Lock()
			p, ok := s.pending[k]
			delete(s.pending, k)
			s.mu.Unlock()
			if !ok {
				continue
			}
			id = p.id
		}
		h.onReply(src, id, seq, msg[icmpHeaderLen:])
	}
}

// Close closes every socket and waits for the readers.
func (h *hostPinger) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	var errs []error
	for _, fam := range []*pingFamily{&h.v4, &h.v6} {
		for _, s := range fam.socks {
			errs = append(errs, s.c.Close())
		}
	}
	h.mu.Unlock()
	h.wg.Wait()
	return errors.Join(errs...)
}
