package netstack

import "sync/atomic"

// DropReason says why the exit dropped a client packet: before gVisor saw it, or on the way
// to a UDP flow's host socket.
type DropReason uint8

// Drop reasons. dropNone is not a drop.
const (
	dropNone DropReason = iota
	// DropMalformed: truncated header, bad version or length fields.
	DropMalformed
	// DropLoopback: a loopback source or destination (127/8, ::1, ::ffff:127/104): a client
	// must never reach the PoP's own loopback services.
	DropLoopback
	// DropMartian: a source or destination that must never be dialled: unspecified, 0/8,
	// multicast, limited broadcast, link-local (cloud metadata lives at 169.254.169.254),
	// IPv4-mapped or IPv4-compatible IPv6.
	DropMartian
	// DropICMPFragment: a fragmented ICMP packet; echo is answered before reassembly, so
	// fragmented echo is not supported.
	DropICMPFragment
	// DropPingUnavailable: the pinger cannot send (no ICMP sockets allowed, or closed).
	DropPingUnavailable
	// DropPingLimit: too many echo requests outstanding.
	DropPingLimit
	// DropPingFailed: the pinger failed to send the echo request.
	DropPingFailed
	// DropFlowQueueFull: a UDP datagram of a flow still dialling, beyond the first 16 it
	// holds until the dial completes.
	DropFlowQueueFull
	// DropHostSendFailed: a UDP datagram the flow's host socket did not take at once (its
	// send buffer was full, it failed, or the flow had just closed). Write does not wait.
	DropHostSendFailed
	numDropReasons
)

var dropNames = [numDropReasons]string{
	dropNone:            "none",
	DropMalformed:       "malformed",
	DropLoopback:        "loopback",
	DropMartian:         "martian",
	DropICMPFragment:    "icmp_fragment",
	DropPingUnavailable: "ping_unavailable",
	DropPingLimit:       "ping_limit",
	DropPingFailed:      "ping_failed",
	DropFlowQueueFull:   "flow_queue_full",
	DropHostSendFailed:  "host_send_failed",
}

func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Stats is a snapshot of the exit's counters. Counters only grow; TCPFlows and UDPFlows
// are the flows open now.
type Stats struct {
	TCPFlows         int64  // TCP flows established and relaying
	UDPFlows         int64  // UDP flows open (including DNS)
	Flows            int    // flows counted against the limits: TCP (dialling too), UDP, echo requests
	HostSockets      int    // of those, the ones holding a host socket, against FDBudget
	FDBudget         int    // Config.FDBudget
	FlowsRefused     uint64 // new flows (their packets) refused at a limit (see Limit)
	DialFailures     uint64 // re-origination dials (and DNS upstreams) that failed
	PingsSent        uint64 // echo requests re-originated through the Pinger
	PingsAnswered    uint64 // echo replies synthesised towards clients from Pinger replies
	LocalEchoReplies uint64 // echo requests to LocalAddrs answered directly
	PacketsIn        uint64 // packets handed to Write
	PacketsOut       uint64 // packets handed to Output
	// TCPRetransmits and TCPTimeouts are gVisor's: segments its TCP sent again towards
	// clients, and retransmission timeouts (losses repaired only after a timer: each stalls
	// the flow). Loss on the client leg shows here.
	TCPRetransmits uint64
	TCPTimeouts    uint64
	// TCPCoalesced counts client TCP segments that entered gVisor inside another's packet
	// (coalesce.go).
	TCPCoalesced uint64
	// UDPSegmented counts relayed datagrams sent inside a run that the host's kernel
	// segmented (UDP GSO, udpsend.go).
	UDPSegmented uint64
	Drops        map[DropReason]uint64
}

type counters struct {
	flowsRefused     atomic.Uint64
	dialFailures     atomic.Uint64
	pingsSent        atomic.Uint64
	pingsAnswered    atomic.Uint64
	localEchoReplies atomic.Uint64
	packetsIn        atomic.Uint64
	packetsOut       atomic.Uint64
	tcpFlows         atomic.Int64
	udpFlows         atomic.Int64
	udpSegmented     atomic.Uint64
	drops            [numDropReasons]atomic.Uint64
}

func (c *counters) drop(r DropReason) { c.drops[r].Add(1) }

// Stats returns a snapshot of the counters. Each is read atomically, the set is not.
func (e *Exit) Stats() Stats {
	c := &e.st
	s := Stats{
		TCPFlows:         c.tcpFlows.Load(),
		UDPFlows:         c.udpFlows.Load(),
		FlowsRefused:     c.flowsRefused.Load(),
		DialFailures:     c.dialFailures.Load(),
		PingsSent:        c.pingsSent.Load(),
		PingsAnswered:    c.pingsAnswered.Load(),
		LocalEchoReplies: c.localEchoReplies.Load(),
		PacketsIn:        c.packetsIn.Load(),
		PacketsOut:       c.packetsOut.Load(),
		Drops:            make(map[DropReason]uint64),
		FDBudget:         e.cfg.FDBudget,
		TCPCoalesced:     e.link.coalesced.Load(),
		UDPSegmented:     c.udpSegmented.Load(),
	}
	tcp := e.stack.Stats().TCP
	s.TCPRetransmits, s.TCPTimeouts = tcp.Retransmits.Value(), tcp.Timeouts.Value()
	s.Flows, s.HostSockets = e.acct.counts()
	for r := dropNone + 1; r < numDropReasons; r++ {
		if n := c.drops[r].Load(); n > 0 {
			s.Drops[r] = n
		}
	}
	return s
}
