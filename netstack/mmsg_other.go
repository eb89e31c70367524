//go:build !linux

package netstack

import (
	"net"
	"syscall"
)

// Without sendmmsg and recvmmsg, the UDP relay uses every host socket through its net.Conn
// methods; these stubs are never called.

func udpRawConn(net.Conn) syscall.RawConn { return nil }

type sendMsgs struct{ n int }

func (m *sendMsgs) add([]byte)                             { m.n++ }
func (m *sendMsgs) addRun(ps [][]byte)                     { m.n += len(ps) }
func (m *sendMsgs) len() int                               { return m.n }
func (m *sendMsgs) segments(from int) int                  { return m.n - from }
func (m *sendMsgs) isRun(int) bool                         { return false }
func (m *sendMsgs) runSegments(int, int) int               { return 0 }
func (m *sendMsgs) split(int)                              {}
func (m *sendMsgs) reset()                                 { m.n = 0 }
func (m *sendMsgs) send(uintptr, int) (int, syscall.Errno) { return 0, syscall.ENOSYS }

type recvMsgs struct{}

func (m *recvMsgs) setBuf(int, []byte)                {}
func (m *recvMsgs) recv(uintptr) (int, syscall.Errno) { return 0, syscall.ENOSYS }
func (m *recvMsgs) size(int) int                      { return 0 }

func pending(uintptr) syscall.Errno { return syscall.ENOSYS }
