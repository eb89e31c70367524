package gateway

import (
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/wgmux"
)

// handshakeStatus picks the handshake counters out of the shared socket's.
func handshakeStatus(st wgmux.Stats) plane.HandshakeStatus {
	hs := plane.HandshakeStatus{
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
