package firewall

import "strconv"

// Verdict is what the filter does with one packet. The zero value is Drop.
type Verdict uint8

const (
	Drop Verdict = iota
	Accept
)

func (v Verdict) String() string {
	switch v {
	case Drop:
		return "drop"
	case Accept:
		return "accept"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Reason says why a packet was dropped; ReasonNone goes with Accept.
type Reason uint8

const (
	ReasonNone Reason = iota
	// ReasonPolicyDeny: a deny rule matched the new flow (or, after a policy change, the
	// tracked flow).
	ReasonPolicyDeny
	// ReasonDefaultDeny: no rule matched and the default is deny.
	ReasonDefaultDeny
	// ReasonNoPolicy: the tenant has no rule set (unknown tenant, or its rule set was removed).
	ReasonNoPolicy
	// ReasonConntrackFull: the flow would be new but the node's flow table is full.
	ReasonConntrackFull
	// ReasonInvalid: a packet no flow can start with or continue, e.g. TCP with SYN and FIN, a
	// TCP SYN-ACK or FIN of no tracked flow, an ICMP echo reply nobody asked for.
	ReasonInvalid
	// ReasonUnrelatedICMP: an ICMP error that quotes no tracked flow.
	ReasonUnrelatedICMP
	// ReasonFragment: a non-first fragment whose first fragment was not accepted.
	ReasonFragment
	// ReasonPeerLimit: the flow would be new but its peer has as many tracked flows as its
	// tenant allows a peer, none of them evictable (see Peer).
	ReasonPeerLimit
	// ReasonTenantLimit: the flow would be new but its tenant has as many tracked flows as it
	// may, and its peer none evictable.
	ReasonTenantLimit
	numReasons
)

func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonPolicyDeny:
		return "policy_deny"
	case ReasonDefaultDeny:
		return "default_deny"
	case ReasonNoPolicy:
		return "no_policy"
	case ReasonConntrackFull:
		return "conntrack_full"
	case ReasonInvalid:
		return "invalid"
	case ReasonUnrelatedICMP:
		return "unrelated_icmp"
	case ReasonFragment:
		return "fragment"
	case ReasonPeerLimit:
		return "conntrack_limit_peer"
	case ReasonTenantLimit:
		return "conntrack_limit_tenant"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Direction says where a packet is going relative to the tenant's peers.
type Direction uint8

const (
	// FromPeer: sent by a peer (decrypted from its tunnel; the source address is the peer's).
	FromPeer Direction = iota
	// ToPeer: arriving for a peer, from the exit, a site or the backbone.
	ToPeer
)

func (d Direction) String() string {
	switch d {
	case FromPeer:
		return "from_peer"
	case ToPeer:
		return "to_peer"
	}
	return "direction(" + strconv.Itoa(int(d)) + ")"
}
