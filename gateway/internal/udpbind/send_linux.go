package udpbind

import (
	"fmt"
	"io"
	"net"
	"net/netip"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

const (
	// maxSegments is the most datagrams one UDP_SEGMENT message carries (the kernel's
	// UDP_MAX_SEGMENTS is 64 before Linux 6.9, 128 after).
	maxSegments = 64
	// maxSegmentedBytes is the most payload one UDP_SEGMENT message carries: what fits an
	// IPv4 datagram (65,535 − 20 − 8).
	maxSegmentedBytes = 65507
)

// txState is the memory of one Send, pooled per socket.
type txState struct {
	msgs [conn.IdealBatchSize]ipv6.Message
	bufs [conn.IdealBatchSize]int // datagrams in each message
	oob  [conn.IdealBatchSize][]byte
	addr net.UDPAddr
	ip   [16]byte
}

func newTxState() any {
	st := &txState{}
	space := make([]byte, len(st.oob)*txControlLen)
	for i := range st.oob {
		st.oob[i] = space[i*txControlLen : (i+1)*txControlLen : (i+1)*txControlLen]
	}
	return st
}

// Send sends bufs to ep (an *Endpoint) from its source address, if it has one. When the
// kernel refuses that source (the address is gone), the endpoint forgets it (ClearSrc) and the
// datagrams leave from the address the kernel picks. Runs of same-size datagrams go as one
// message that the kernel segments (UDP GSO) where it can.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	s := b.socks.Load()
	if s == nil {
		return net.ErrClosed
	}
	so, family := s.v6, "IPv6"
	if e.dst.Addr().Is4() {
		so, family = s.v4, "IPv4"
	}
	if so == nil {
		return fmt.Errorf("udpbind: send to %s: no %s socket: %w", e.dst, family, unix.EAFNOSUPPORT)
	}
	return so.send(bufs, e)
}

func (s *socket) send(bufs [][]byte, e *Endpoint) error {
	st := s.txPool.Get().(*txState)
	defer s.txPool.Put(st)
	ip := e.dst.Addr()
	if ip.Is4() {
		a := ip.As4()
		copy(st.ip[:], a[:])
		st.addr.IP = st.ip[:4]
	} else {
		a := ip.As16()
		copy(st.ip[:], a[:])
		st.addr.IP = st.ip[:16]
	}
	st.addr.Port = int(e.dst.Port())
	st.addr.Zone = ip.Zone() // a link-local peer's interface

	src, ifindex := e.SrcIP(), e.ifindex
	gso := s.gso.Load()
	for done := 0; done < len(bufs); {
		n, segmented, err := s.write(st, bufs[done:], src, ifindex, gso)
		done += n
		if err == nil {
			continue
		}
		switch en := errno(err); {
		case segmented && en == unix.EIO:
			// No checksum offload on the way out: the kernel will never segment here.
			s.gso.Store(false)
			gso = false
			s.b.count(cGSOFallback, 1)
		case segmented && (en == unix.EMSGSIZE || en == unix.EINVAL):
			// A segment too large for the route's MTU (EMSGSIZE here; some kernels say
			// EINVAL, which may also be a source refused, below): one by one, which the
			// kernel fragments. Segmenting stays on for later sends.
			gso = false
			s.b.count(cGSOFallback, 1)
		case src.IsValid() && (en == unix.EINVAL || en == unix.EADDRNOTAVAIL || en == unix.ENETUNREACH):
			// The source is not (or no longer) the host's: IPv6 says EINVAL, IPv4
			// ENETUNREACH. Without a route at all the next try fails the same way, and the
			// source returns with the peer's next datagram.
			e.ClearSrc()
			src, ifindex = netip.Addr{}, 0
			s.b.count(cSrcCleared, 1)
		default:
			return err
		}
	}
	return nil
}

// write sends bufs, or as many messages of them as one Send's memory holds, from src and
// returns how many datagrams went, and whether the messages built included a segmented one.
func (s *socket) write(st *txState, bufs [][]byte, src netip.Addr, ifindex int32, gso bool) (sent int, segmented bool, err error) {
	nm := 0
	for i := 0; i < len(bufs) && nm < len(st.msgs); nm++ {
		j := i + 1
		if gso {
			j = runEnd(bufs, i)
		}
		seg := 0
		if j-i > 1 {
			seg, segmented = len(bufs[i]), true
		}
		m := &st.msgs[nm]
		m.Buffers = bufs[i:j]
		m.OOB = st.oob[nm][:putControl(st.oob[nm], src, ifindex, seg)]
		m.Addr = &st.addr
		st.bufs[nm] = j - i
		i = j
	}
	for k := 0; k < nm; {
		n, err := s.batch.WriteBatch(st.msgs[k:nm], 0)
		s.b.count(cWrites, 1)
		n = max(n, 0) // -1 with an error
		for _, c := range st.bufs[k : k+n] {
			sent += c
			if c > 1 {
				s.b.count(cSegmented, 1)
			}
		}
		k += n
		if err != nil {
			return sent, segmented, err
		}
		if n == 0 {
			return sent, segmented, io.ErrShortWrite
		}
	}
	return sent, segmented, nil
}

// runEnd returns the end of the run of datagrams from bufs[i] that one segmented message can
// carry: of bufs[i]'s size, the last one possibly shorter, within the kernel's limits.
func runEnd(bufs [][]byte, i int) int {
	size := len(bufs[i])
	if size == 0 {
		return i + 1
	}
	total, j := size, i+1
	for ; j < len(bufs) && j-i < maxSegments; j++ {
		l := len(bufs[j])
		if l == 0 || l > size || total+l > maxSegmentedBytes {
			break
		}
		total += l
		if l < size {
			j++
			break
		}
	}
	return j
}
