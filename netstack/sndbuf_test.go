package netstack

import (
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

func TestSendBufferFor(t *testing.T) {
	for _, c := range []struct {
		rtt   time.Duration
		want  int
		fixed bool
	}{
		{0, 0, false}, // no sample: gVisor's tuning
		{200 * time.Microsecond, tcpTXBufNear, true},
		{time.Millisecond, tcpTXBufNear, true},
		{3 * time.Millisecond, 3_750_000, true}, // 10 Gbit/s × 3 ms
		{6 * time.Millisecond, 0, false},        // 7.5 MB ≥ tcpTXBufMax
		{80 * time.Millisecond, 0, false},
	} {
		if got, fixed := sendBufferFor(c.rtt); got != c.want || fixed != c.fixed {
			t.Errorf("sendBufferFor(%v) = %d, %v; want %d, %v", c.rtt, got, fixed, c.want, c.fixed)
		}
	}
}

// TestTCPSendBufferByHandshakeRTT: the flow of a client close by gets a fixed send buffer
// (tcpTXBufNear, more when its handshake took over 1.7 ms); a client 20 ms away keeps
// gVisor's, which starts at tcpTXBufDef and grows with the window.
func TestTCPSendBufferByHandshakeRTT(t *testing.T) {
	for _, c := range []struct {
		name  string
		delay time.Duration
	}{
		{"near", 0},
		{"20ms", 20 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.setDelay(c.delay)
			srv := serveTCP(t, "tcp4", hashBack)
			dst := ap(publicV4, 80)
			h.dialer.set(dst, srv.addr)
			conn, err := h.dialTCP(ctxTimeout(t, 5*time.Second), dst)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ep := h.tcpFlowEndpoint(t)
			var info tcpip.TCPInfoOption
			if err := ep.GetSockOpt(&info); err != nil {
				t.Fatal(err)
			}
			got := ep.SocketOptions().GetSendBufferSize()
			switch {
			case c.delay > 0:
				if info.RTT < c.delay {
					t.Fatalf("the handshake measured %v across a wire of %v", info.RTT, c.delay)
				}
				if got != tcpTXBufDef {
					t.Errorf("send buffer %d with a handshake of %v, want gVisor's %d", got, info.RTT, tcpTXBufDef)
				}
			case info.RTT.Seconds()*tcpPathRate >= tcpTXBufMax:
				// The machine stalled the in-process handshake: nothing to check.
				t.Logf("the handshake took %v in process: the client was not close by", info.RTT)
			default:
				if want, _ := sendBufferFor(info.RTT); got != int64(want) {
					t.Errorf("send buffer %d with a handshake of %v, want %d", got, info.RTT, want)
				}
			}
		})
	}
}

// tcpFlowEndpoint waits for the exit to track its one TCP flow and returns the flow's
// client-leg endpoint.
func (h *harness) tcpFlowEndpoint(t *testing.T) tcpip.Endpoint {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		h.exit.mu.Lock()
		for f := range h.exit.flows {
			if tf, ok := f.(*tcpFlow); ok {
				h.exit.mu.Unlock()
				return tf.ep
			}
		}
		h.exit.mu.Unlock()
	}
	t.Fatal("the exit tracked no TCP flow within 10 s")
	return nil
}
