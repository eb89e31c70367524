//go:build linux

package netstack

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batched datagram syscalls (sendmmsg, recvmmsg) on a connected UDP socket, for the UDP
// relay. Each call is one non-blocking attempt; the caller runs it inside the socket's
// syscall.RawConn, which owns the descriptor and the poller.

// udpRawConn returns c's raw connection when the batched syscalls apply to it (c is a
// *net.UDPConn), else nil: c is then used through its net.Conn methods, one datagram a call.
func udpRawConn(c net.Conn) syscall.RawConn {
	u, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	rc, err := u.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// sendMsgs is a sendmmsg vector: one message per datagram, or per run of datagrams that
// the kernel segments (UDP GSO, addRun). Not safe for concurrent use.
type sendMsgs struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec // one per datagram, in order
	segs []int32      // per message: its datagrams, iovs[first:first+segs]
	ctrl []byte       // per message, udpGSOCtrlLen bytes: its UDP_SEGMENT cmsg when segs > 1
}

// udpGSOCtrlLen is the size of a message's control buffer: one cmsg of a uint16 segment size.
var udpGSOCtrlLen = unix.CmsgSpace(2)

// add appends a message of one datagram; p must stay valid until reset.
func (m *sendMsgs) add(p []byte) {
	m.addIov(p)
	m.addMsg(1, 0)
}

// addRun appends one message of the datagrams ps, which the kernel sends as len(ps)
// datagrams of len(ps[0]) bytes, the last of which may be shorter (UDP_SEGMENT). ps must
// hold at least two datagrams, each but the last len(ps[0]) bytes and none empty; they must
// stay valid until reset.
func (m *sendMsgs) addRun(ps [][]byte) {
	for _, p := range ps {
		m.addIov(p)
	}
	m.addMsg(len(ps), len(ps[0]))
}

func (m *sendMsgs) addIov(p []byte) {
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
	}
	m.iovs = append(m.iovs, iov)
}

// addMsg appends the message of the last segs iovecs, segmented at size when segs > 1.
func (m *sendMsgs) addMsg(segs, size int) {
	m.hdrs = append(m.hdrs, unix.Mmsghdr{})
	m.segs = append(m.segs, int32(segs))
	at := len(m.ctrl)
	m.ctrl = append(m.ctrl, make([]byte, udpGSOCtrlLen)...)
	if segs > 1 {
		c := m.ctrl[at:]
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		h.Level = unix.SOL_UDP
		h.Type = unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(size)
	}
}

func (m *sendMsgs) len() int { return len(m.hdrs) }

// segments returns how many datagrams messages from on carry.
func (m *sendMsgs) segments(from int) int {
	n := 0
	for _, s := range m.segs[from:] {
		n += int(s)
	}
	return n
}

// runSegments returns how many datagrams the runs among messages from to to carry.
func (m *sendMsgs) runSegments(from, to int) int {
	n := 0
	for _, s := range m.segs[from:to] {
		if s > 1 {
			n += int(s)
		}
	}
	return n
}

// isRun reports whether message i is a run that the kernel segments.
func (m *sendMsgs) isRun(i int) bool { return m.segs[i] > 1 }

// split turns the messages from index from on into one message per datagram, without
// segmentation: where the kernel refused a run.
func (m *sendMsgs) split(from int) {
	n := m.segments(from)
	m.hdrs, m.segs, m.ctrl = m.hdrs[:from], m.segs[:from], m.ctrl[:from*udpGSOCtrlLen]
	for range n {
		m.addMsg(1, 0)
	}
}

// reset forgets the datagrams (and the references to their buffers).
func (m *sendMsgs) reset() {
	clear(m.iovs)
	m.iovs = m.iovs[:0]
	m.hdrs = m.hdrs[:0]
	m.segs = m.segs[:0]
	m.ctrl = m.ctrl[:0]
}

// send makes one sendmmsg of the messages from index from on, without blocking, and
// returns how many messages it sent.
func (m *sendMsgs) send(fd uintptr, from int) (int, syscall.Errno) {
	// The iovecs and control buffers are linked here: append may have moved them since add.
	iov := len(m.iovs) - m.segments(from)
	for i := from; i < len(m.hdrs); i++ {
		h := &m.hdrs[i].Hdr
		*h = unix.Msghdr{Iov: &m.iovs[iov]}
		h.SetIovlen(int(m.segs[i]))
		if m.segs[i] > 1 {
			h.Control = &m.ctrl[i*udpGSOCtrlLen]
			h.SetControllen(udpGSOCtrlLen)
		}
		iov += int(m.segs[i])
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[from])),
		uintptr(len(m.hdrs)-from), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// recvMsgs is a recvmmsg vector of udpRxBatch messages, each of one buffer.
type recvMsgs struct {
	hdrs [udpRxBatch]unix.Mmsghdr
	iovs [udpRxBatch]unix.Iovec
}

// setBuf sets where message i lands; b must outlive m.
func (m *recvMsgs) setBuf(i int, b []byte) {
	m.iovs[i].Base = &b[0]
	m.iovs[i].SetLen(len(b))
	m.hdrs[i].Hdr = unix.Msghdr{Iov: &m.iovs[i]}
	m.hdrs[i].Hdr.SetIovlen(1)
}

// recv makes one recvmmsg without blocking and returns how many datagrams it read.
func (m *recvMsgs) recv(fd uintptr) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])),
		udpRxBatch, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// pending reports whether a datagram (or an error) waits on the socket fd, without taking
// it: 0 when one does, EAGAIN when none does, or the socket's error (which it clears).
func pending(fd uintptr) syscall.Errno {
	var b [1]byte
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno
}

// size is the length of datagram i of the last recv.
func (m *recvMsgs) size(i int) int { return int(m.hdrs[i].Len) }
