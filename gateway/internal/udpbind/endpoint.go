// Package udpbind is popgate's UDP socket for wireguard-go (a conn.Bind): one IPv4 and one
// IPv6 socket on the same port that remember, for every datagram, the local address it
// arrived at and answer from it, also when the kernel coalesced datagrams (UDP GRO).
package udpbind

import (
	"net/netip"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// Endpoint is a remote address and, when known, the local address datagrams to it leave
// from (the one the peer's last datagram arrived at). Only ClearSrc changes it, and it may be
// called concurrently with Send (wireguard-go sends outside the peer's lock, and Send itself
// clears a source the kernel refuses).
type Endpoint struct {
	dst     netip.AddrPort
	src     netip.Addr  // zero: the kernel picks the source
	ifindex int32       // interface of src, kept only where the address needs it (IPv6 link-local)
	noSrc   atomic.Bool // ClearSrc was called: src is not to be used
}

var _ conn.Endpoint = (*Endpoint)(nil)

// NewEndpoint returns an endpoint for dst that sends from src (the zero Addr: no source).
func NewEndpoint(dst netip.AddrPort, src netip.Addr) *Endpoint {
	return &Endpoint{dst: netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), src: src.Unmap()}
}

// ClearSrc forgets the source address: the kernel picks one for the next datagram.
func (e *Endpoint) ClearSrc() { e.noSrc.Store(true) }

// SrcToString returns the source address, "" when there is none.
func (e *Endpoint) SrcToString() string {
	if src := e.SrcIP(); src.IsValid() {
		return src.String()
	}
	return ""
}

// DstToString returns the remote address as ip:port.
func (e *Endpoint) DstToString() string { return e.dst.String() }

// DstToBytes returns the remote address and port as bytes (for cookie MACs).
func (e *Endpoint) DstToBytes() []byte {
	b, _ := e.dst.MarshalBinary()
	return b
}

// DstIP returns the remote address.
func (e *Endpoint) DstIP() netip.Addr { return e.dst.Addr() }

// SrcIP returns the source address, the zero Addr when there is none.
func (e *Endpoint) SrcIP() netip.Addr {
	if e.noSrc.Load() {
		return netip.Addr{}
	}
	return e.src
}

// DstAddrPort returns the remote address and port.
func (e *Endpoint) DstAddrPort() netip.AddrPort { return e.dst }

// parseEndpoint parses "ip:port" ("[ip]:port" for IPv6) into an endpoint without a source.
func parseEndpoint(s string) (*Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return NewEndpoint(ap, netip.Addr{}), nil
}
