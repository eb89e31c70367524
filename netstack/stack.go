package netstack

import (
	"fmt"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const nicID tcpip.NICID = 1

// TCP tuning. gVisor's defaults suit a sandboxed application, not a gateway terminating
// many fast flows; these follow what Tailscale measured for its userspace subnet router.
const (
	// Receive buffers start at 1 MiB and, with moderation, grow to 8 MiB: enough window for
	// ~1 Gbit/s at 64 ms RTT on the client leg. Memory is spent only when a reader lags.
	tcpRXBufMin = tcp.MinBufferSize
	tcpRXBufDef = tcp.DefaultReceiveBufferSize
	tcpRXBufMax = 8 << 20
	// Send buffers likewise, capped at 6 MiB; a flow whose client is close by gets a fixed
	// one instead (sendBufferFor).
	tcpTXBufMin = tcp.MinBufferSize
	tcpTXBufDef = tcp.DefaultSendBufferSize
	tcpTXBufMax = 6 << 20
	// tcpTXBufNear is the least fixed send buffer: that of a client whose handshake took
	// under tcpTXBufNear / tcpPathRate (≈ 1.7 ms).
	tcpTXBufNear = 2 << 20
	// tcpPathRate is the fastest one flow's client leg is taken to run, in bytes a second
	// (10 Gbit/s): a send buffer beyond rate × RTT holds only a queue.
	tcpPathRate = 10e9 / 8

	// TIME-WAIT only protects the exit-side tuple (client addr:port ↔ destination), which
	// the client allocates; holding it 60 s like Linux just pins memory under churn.
	tcpTimeWait = time.Second
)

// newStack builds the exit's gVisor stack on link: one NIC, promiscuous (it accepts every
// destination, since it terminates flows to the whole internet) and spoofing (it answers
// from those destinations), default routes for both families, forwarding off.
func newStack(link stack.LinkEndpoint) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
		// ICMP echo never reaches gVisor (icmp.go answers it), so no ICMP transport.
	})
	if err := tuneStack(s); err != nil {
		s.Destroy()
		return nil, err
	}
	if err := s.CreateNIC(nicID, link); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("netstack: create NIC: %v", err)
	}
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("netstack: promiscuous mode: %v", err)
	}
	if err := s.SetSpoofing(nicID, true); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("netstack: spoofing: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	return s, nil
}

// tuneStack sets every transport option the exit changes from gVisor's defaults, in one
// place so a measurement can vary them.
func tuneStack(s *stack.Stack) error {
	opts := []tcpip.SettableTransportProtocolOption{
		// SACK is off by default; without it one loss costs a window's worth of
		// retransmission on the client leg.
		ptr(tcpip.TCPSACKEnabled(true)),
		ptr(tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpRXBufMin, Default: tcpRXBufDef, Max: tcpRXBufMax}),
		ptr(tcpip.TCPSendBufferSizeRangeOption{Min: tcpTXBufMin, Default: tcpTXBufDef, Max: tcpTXBufMax}),
		// Let the receive window grow with what the reader (the host socket) drains, like
		// Linux's tcp_moderate_rcvbuf, instead of advertising Max from the start.
		ptr(tcpip.TCPModerateReceiveBufferOption(true)),
		ptr(tcpip.TCPTimeWaitTimeoutOption(tcpTimeWait)),
		// Reno, explicitly: gVisor's cubic has an int overflow in the congestion window
		// arithmetic (gVisor issue 11632), and pinning it keeps upgrades from changing it.
		ptr(tcpip.CongestionControlOption("reno")),
		// RACK loss detection off: with it (gVisor's default) a third of 20 MB downloads to
		// stock clients stalled for 10-50 s in retransmission timeouts; without it, loss is
		// repaired by SACK-based fast retransmit (cmd/popgate e2e, userspace exit). The
		// gVisor of September 2026 still stalls with Reno and RACK; CUBIC with RACK does not
		// stall there but moves a single stream slower to upstream wireguard-go clients
		// (docs/perf-tcp.md).
		ptr(tcpip.TCPRecovery(0)),
	}
	for _, o := range opts {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("netstack: set TCP option %T: %v", o, err)
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// installForwarders routes every TCP SYN and every UDP datagram without an endpoint to the
// exit's handlers: UDP to handleUDPPacket, which passes UDP to LocalAddrs on to the UDP
// forwarder (the DNS service) and relays the rest.
func (e *Exit) installForwarders() {
	// The forwarder bounds the handshakes whose dial is still running, dropping SYNs above it
	// silently; at MaxFlows it never does: the limits (limits.go) decide, per peer and tenant,
	// so that one peer's SYNs to unreachable places cannot hold every slot.
	tf := tcp.NewForwarder(e.stack, tcpRXBufDef, e.cfg.MaxFlows, e.handleTCP)
	e.stack.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	e.udpForwarder = udp.NewForwarder(e.stack, e.handleLocalUDP)
	e.stack.SetTransportProtocolHandler(udp.ProtocolNumber, e.handleUDPPacket)
}
