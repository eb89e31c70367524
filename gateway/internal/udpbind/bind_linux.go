package udpbind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// socketBuffer is what the bind asks for as each socket's receive and send buffer: room for
// bursts while a reader is busy (the kernel caps it at net.core.[rw]mem_max unless the
// process may force it).
const socketBuffer = 7 << 20

// NewDefault returns the node's UDP socket: popgate's Bind on Linux.
func NewDefault() conn.Bind { return New() }

// Bind is a conn.Bind over two UDP sockets on one port, IPv4 and IPv6 (V6ONLY). Each received
// datagram's Endpoint carries the local address it arrived at, and Send answers from it, so
// that a host with several addresses (an anycast PoP) answers from the one the client chose.
// It reads and writes in batches (recvmmsg, sendmmsg), takes coalesced datagrams from the
// kernel (UDP GRO) and hands it runs of same-size datagrams to coalesce (UDP GSO) where the
// kernel can.
type Bind struct {
	mu    sync.Mutex              // serialises Open, Close and SetMark
	socks atomic.Pointer[sockets] // nil while closed
	mark  uint32                  // guarded by mu: applied to sockets opened later too
	stats [numCounters]atomic.Uint64
}

var _ conn.Bind = (*Bind)(nil)

// New returns a closed Bind.
func New() *Bind { return &Bind{} }

// sockets is one opening of the bind.
type sockets struct {
	v4, v6 *socket // either may be nil when the host lacks the family
}

// socket is one of the two UDP sockets.
type socket struct {
	b      *Bind
	udp    *net.UDPConn
	batch  batchConn
	is6    bool
	gro    bool        // the kernel coalesces received datagrams (UDP_GRO is on)
	gso    atomic.Bool // the kernel takes UDP_SEGMENT; cleared when it refuses one for good
	closed atomic.Bool // Close was called
	rx     receiver
	txPool sync.Pool // *txState
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn have in common.
type batchConn interface {
	ReadBatch(ms []ipv6.Message, flags int) (int, error)
	WriteBatch(ms []ipv6.Message, flags int) (int, error)
}

// Open opens the two sockets on port (0: one the kernel picks for both) and returns one
// receive function per socket.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.socks.Load() != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	var s *sockets
	var actual uint16
	var err error
	// With port 0, the port the kernel gives the IPv4 socket may be taken for IPv6: try again.
	for try := 0; ; try++ {
		s, actual, err = b.open(port)
		if err == nil || port != 0 || try == 100 || !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return nil, 0, err
	}
	var fns []conn.ReceiveFunc
	if s.v4 != nil {
		fns = append(fns, s.v4.receiveIPv4)
	}
	if s.v6 != nil {
		fns = append(fns, s.v6.receiveIPv6)
	}
	b.socks.Store(s)
	return fns, actual, nil
}

// open opens both sockets, the IPv6 one on the port the IPv4 one got.
func (b *Bind) open(port uint16) (*sockets, uint16, error) {
	s := &sockets{}
	v4, actual, err := b.listen(false, port)
	switch {
	case err == nil:
		s.v4, port = v4, actual
	case !errors.Is(err, unix.EAFNOSUPPORT):
		return nil, 0, err
	}
	v6, actual, err := b.listen(true, port)
	switch {
	case err == nil:
		s.v6, port = v6, actual
	case errors.Is(err, unix.EAFNOSUPPORT) && s.v4 != nil:
	default:
		if s.v4 != nil {
			s.v4.udp.Close()
		}
		return nil, 0, err
	}
	return s, port, nil
}

// listen opens one socket with PKTINFO on, GRO where the kernel has it, and the mark.
func (b *Bind) listen(is6 bool, port uint16) (*socket, uint16, error) {
	network, pktinfo := "udp4", func(fd int) error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1) }
	if is6 {
		network, pktinfo = "udp6", func(fd int) error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1) }
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		cerr := rc.Control(func(fd uintptr) {
			setBuffers(int(fd))
			if b.mark != 0 {
				if err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(b.mark)); err != nil {
					err = fmt.Errorf("set SO_MARK: %w", err)
					return
				}
			}
			if err = pktinfo(int(fd)); err != nil {
				err = fmt.Errorf("enable PKTINFO: %w", err)
			}
		})
		return errors.Join(cerr, err)
	}}
	pc, err := lc.ListenPacket(context.Background(), network, net.JoinHostPort("", fmt.Sprint(port)))
	if err != nil {
		return nil, 0, err
	}
	udp := pc.(*net.UDPConn)
	s := &socket{b: b, udp: udp, is6: is6}
	if is6 {
		s.batch = ipv6.NewPacketConn(udp)
	} else {
		s.batch = ipv4.NewPacketConn(udp)
	}
	if rc, err := udp.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			s.gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
			_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			s.gso.Store(err == nil)
		})
	}
	s.rx.init(s)
	s.txPool.New = newTxState
	return s, uint16(udp.LocalAddr().(*net.UDPAddr).Port), nil
}

// setBuffers asks for socketBuffer both ways, forcing it past the system's maximum when the
// process may (CAP_NET_ADMIN). Failures leave the default, which works, slower.
func setBuffers(fd int) {
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], socketBuffer) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], socketBuffer)
		}
	}
}

// Close closes both sockets; the receive functions then return net.ErrClosed. Closing a
// closed Bind does nothing.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.socks.Swap(nil)
	if s == nil {
		return nil
	}
	var errs []error
	for _, so := range []*socket{s.v4, s.v6} {
		if so != nil {
			so.closed.Store(true)
			errs = append(errs, so.udp.Close())
		}
	}
	return errors.Join(errs...)
}

// SetMark sets SO_MARK on both sockets, and on those opened later.
func (b *Bind) SetMark(mark uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mark = mark
	s := b.socks.Load()
	if s == nil {
		return nil
	}
	for _, so := range []*socket{s.v4, s.v6} {
		if so == nil {
			continue
		}
		rc, err := so.udp.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("udpbind: set SO_MARK %d: %w", mark, serr)
		}
	}
	return nil
}

// ParseEndpoint parses "ip:port" ("[ip]:port" for IPv6).
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	e, err := parseEndpoint(s)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// BatchSize is conn.IdealBatchSize.
func (b *Bind) BatchSize() int { return conn.IdealBatchSize }

// Stats are the bind's counters since New.
type Stats struct {
	Reads       uint64 // recvmmsg calls that returned datagrams
	Messages    uint64 // messages those returned (a coalesced one counts once)
	Datagrams   uint64 // datagrams handed to the receive functions' callers
	Coalesced   uint64 // messages that carried several datagrams (UDP GRO)
	Carried     uint64 // datagrams that did not fit the caller's buffers and waited for the next call
	Writes      uint64 // sendmmsg calls
	Segmented   uint64 // messages sent as several datagrams (UDP GSO)
	SrcCleared  uint64 // sends whose source the kernel refused, sent again without
	GSOFallback uint64 // sends the kernel refused to segment, sent again datagram by datagram
}

const (
	cReads = iota
	cMessages
	cDatagrams
	cCoalesced
	cCarried
	cWrites
	cSegmented
	cSrcCleared
	cGSOFallback
	numCounters
)

// Stats returns the counters.
func (b *Bind) Stats() Stats {
	c := func(i int) uint64 { return b.stats[i].Load() }
	return Stats{c(cReads), c(cMessages), c(cDatagrams), c(cCoalesced), c(cCarried),
		c(cWrites), c(cSegmented), c(cSrcCleared), c(cGSOFallback)}
}

func (b *Bind) count(i int, n int) { b.stats[i].Add(uint64(n)) }

// errno returns the errno inside err, 0 if none.
func errno(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}
