package netstack

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// idleDeadline ends a flow after a stretch without datagrams either way, without moving a
// read deadline per datagram (that costs a timer update, and on gonet an allocation): the
// flow's reader arms the deadline at last+idle when none is set, and when it fires the flow
// ends only if nothing arrived since.
type idleDeadline struct {
	last  atomic.Int64 // Exit.now() of the last datagram either way
	armed bool         // the reader's alone: c's deadline is set
}

// touch records a datagram at now (Exit.now()).
func (d *idleDeadline) touch(now int64) { d.last.Store(now) }

// arm sets c's read deadline to when the flow becomes idle, unless one is set.
func (d *idleDeadline) arm(e *Exit, c net.Conn, idle time.Duration) {
	if !d.armed {
		c.SetReadDeadline(e.start.Add(time.Duration(d.last.Load() + int64(idle))))
		d.armed = true
	}
}

// fired looks at an error of a read under arm's deadline: deadline reports whether it is
// that deadline (the next arm sets a new one), idle whether the flow has been idle for idle.
func (d *idleDeadline) fired(err error, e *Exit, idle time.Duration) (deadline, expired bool) {
	if !errors.Is(err, os.ErrDeadlineExceeded) && !isTimeout(err) {
		return false, false
	}
	d.armed = false
	return true, e.now()-d.last.Load() >= int64(idle)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
