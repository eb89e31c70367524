package gateway

import "github.com/popgate/popgate/gateway/wgmux"

// HandshakeStatus is what the node's shared socket did with handshake initiations since it
// started: the figures of a handshake flood. Every initiation received counts once in
// Routed, CookieReplies or Drops, or is still Queued (or inside a handshake worker).
type HandshakeStatus struct {
	Initiations   uint64 // well-formed initiations received
	Routed        uint64 // handed to the device of the initiator's tenant
	CookieReplies uint64 // answered with a cookie reply: under load, without a valid mac2
	UnderLoad     bool   // initiations need a valid mac2 now
	Queued        int    // waiting for the handshake workers now
	// Drops by reason: bad_mac1 (not for this node's key), cookie_limited (under load without
	// mac2, and the cookie replies' rate spent), rate_limited (under load, its source over its
	// rate), queue_full, bad_initiation (the static key does not decrypt), unknown_peer,
	// no_device (the tenant's device is not open), device_queue_full.
	Drops map[string]uint64
}

// handshakeStatus picks the handshake counters out of the shared socket's.
func handshakeStatus(st wgmux.Stats) HandshakeStatus {
	hs := HandshakeStatus{
		Initiations:   st.Initiations,
		Routed:        st.Routed,
		CookieReplies: st.CookiesSent,
		UnderLoad:     st.UnderLoad,
		Queued:        st.HandshakeQueued,
		Drops:         map[string]uint64{},
	}
	for k, v := range map[string]uint64{
		"bad_mac1":          st.BadMAC1,
		"cookie_limited":    st.CookieLimited,
		"rate_limited":      st.RateLimited,
		"queue_full":        st.HandshakeDrops,
		"bad_initiation":    st.BadInitiation,
		"unknown_peer":      st.UnknownInitiator,
		"no_device":         st.RouteNoDevice,
		"device_queue_full": st.RouteQueueDrops,
	} {
		if v > 0 {
			hs.Drops[k] = v
		}
	}
	return hs
}
