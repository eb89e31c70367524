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

// sendMsgs is a sendmmsg vector: one message of one buffer per datagram. Not safe for
// concurrent use.
type sendMsgs struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
}

// add appends a datagram; p must stay valid until reset.
func (m *sendMsgs) add(p []byte) {
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
	}
	m.iovs = append(m.iovs, iov)
	m.hdrs = append(m.hdrs, unix.Mmsghdr{})
}

func (m *sendMsgs) len() int { return len(m.hdrs) }

// reset forgets the datagrams (and the references to their buffers).
func (m *sendMsgs) reset() {
	clear(m.iovs)
	m.iovs = m.iovs[:0]
	m.hdrs = m.hdrs[:0]
}

// send makes one sendmmsg of the datagrams from index from on, without blocking, and
// returns how many it sent.
func (m *sendMsgs) send(fd uintptr, from int) (int, syscall.Errno) {
	// The iovecs are linked here: append may have moved them since add.
	for i := from; i < len(m.hdrs); i++ {
		m.hdrs[i].Hdr = unix.Msghdr{Iov: &m.iovs[i]}
		m.hdrs[i].Hdr.SetIovlen(1)
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
