//go:build linux

package netstack

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tests of the relay's runs (udpsend.go): datagrams of one flow sent as one message that
// the kernel segments (UDP GSO).

// sizeServer records every datagram it receives, whole.
type sizeServer struct {
	addr netip.AddrPort
	mu   sync.Mutex
	got  [][]byte
}

func serveSizes(t *testing.T, network string, noCheck6 bool) *sizeServer {
	t.Helper()
	c, err := net.ListenPacket(network, loopbackAny(network))
	if err != nil {
		t.Fatal(err)
	}
	uc := c.(*net.UDPConn)
	// A batch is ≈ 300 KB of socket memory on loopback: room for all of it, in case the
	// reader is not scheduled while it arrives (above net.core.rmem_max when root).
	uc.SetReadBuffer(4 << 20)
	rc, _ := uc.SyscallConn()
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		if noCheck6 { // accept IPv6 datagrams without a checksum
			unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_NO_CHECK6_RX, 1)
		}
	})
	s := &sizeServer{addr: uc.LocalAddr().(*net.UDPAddr).AddrPort()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, _, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got = append(s.got, append([]byte{}, buf[:n]...))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { uc.Close(); <-done })
	return s
}

func (s *sizeServer) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.got...)
}

// patterned returns datagram number id of n bytes: each byte depends on id and its offset,
// so a datagram cut at the wrong place or another's bytes show.
func patterned(id, n int) []byte {
	p := make([]byte, n)
	for j := range p {
		p[j] = byte(id*7 + j)
	}
	return p
}

// runBatch is the test's batch: sizes that make runs of equal datagrams cut by the segment
// limit, by the byte limit and by a shorter last one, and datagrams that go alone (empty,
// larger than a run's segments, a longer one after a run).
func runBatch() (sizes []int, inRuns int) {
	add := func(n, size int) {
		for range n {
			sizes = append(sizes, size)
		}
	}
	add(40, 1392)                        // one run of 40
	add(100, 64)                         // runs of 64 and 36
	sizes = append(sizes, 500, 500, 300) // a run of 2 and a shorter last one
	sizes = append(sizes, 500, 0, 3000)  // 500 alone (an empty one follows), empty, too large
	add(50, 1392)                        // 46 fill 64,032 bytes of 65,000; 4 and the 100 below
	add(2, 100)                          // 100 ends the run of 4; the second goes alone
	return sizes, 40 + 64 + 36 + 3 + 46 + 5
}

func sendSizes(t *testing.T, h *harness, src, dst netip.AddrPort, sizes []int) {
	t.Helper()
	var batch [][]byte
	for i, n := range sizes {
		batch = append(batch, udpPacket(src, dst, patterned(i, n)))
	}
	h.exit.Write(batch)
}

func wantSizes(t *testing.T, srv *sizeServer, sizes []int) {
	t.Helper()
	within(t, 5*time.Second, fmt.Sprintf("%d datagrams", len(sizes)+1), func() bool { return len(srv.received()) == len(sizes)+1 })
	got := srv.received()[1:] // after the one that opened the flow
	for i, n := range sizes {
		if want := patterned(i, n); string(got[i]) != string(want) {
			t.Fatalf("datagram %d: %d bytes, want %d (%d bytes of pattern %d); sizes received %v", i, len(got[i]), n, n, i, lens(got))
		}
	}
}

func lens(ps [][]byte) []int {
	var l []int
	for _, p := range ps {
		l = append(l, len(p))
	}
	return l
}

// openFlow sends one datagram src → dst and waits until the flow's socket is ready.
func openFlow(t *testing.T, h *harness, src, dst netip.AddrPort) *udpFlow {
	t.Helper()
	h.exit.Write([][]byte{udpPacket(src, dst, []byte("open"))})
	var f *udpFlow
	within(t, 5*time.Second, "the flow", func() bool {
		f = h.exit.udp.get(makeUDPKey(src, dst))
		return f != nil && f.ready.Load()
	})
	return f
}

// relayRunBatch sends runBatch's datagrams through a relay flow of fam to a loopback
// server, checks that each arrives whole and in order, and returns the flow and the exit's
// counters. control, if set, prepares the flow's host socket; noCheck6: the server accepts
// IPv6 datagrams without a checksum.
func relayRunBatch(t *testing.T, fam family, control func(network, address string, c syscall.RawConn) error, noCheck6 bool) (*udpFlow, Stats) {
	t.Helper()
	h := newRelayHarness(t, Config{}, false)
	h.dialer.d.Control = control
	srv := serveSizes(t, fam.udp, noCheck6)
	src, dst := ap(fam.client, 4000), ap(fam.public, 1000)
	h.dialer.set(dst, srv.addr)
	f := openFlow(t, h, src, dst)
	sizes, _ := runBatch()
	sendSizes(t, h, src, dst, sizes)
	wantSizes(t, srv, sizes)
	return f, h.exit.Stats()
}

// TestUDPRelayRuns: a batch of one flow arrives datagram by datagram, each whole and in
// order, with the runs the kernel segmented counted.
func TestUDPRelayRuns(t *testing.T) {
	_, inRuns := runBatch()
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			f, st := relayRunBatch(t, fam, nil, false)
			if st.UDPSegmented != uint64(inRuns) {
				t.Errorf("%d datagrams sent in runs, want %d", st.UDPSegmented, inRuns)
			}
			if f.noRuns.Load() || st.Drops[DropHostSendFailed] != 0 {
				t.Errorf("runs off %v, host send drops %d", f.noRuns.Load(), st.Drops[DropHostSendFailed])
			}
		})
	}
}

// TestUDPRelayRunsRefused: where the kernel refuses a run (here: a socket that sends
// without checksums, which UDP GSO requires), the flow sends each datagram alone from
// then on, and nothing is lost.
func TestUDPRelayRunsRefused(t *testing.T) {
	noChecksums := func(network, address string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) {
			if network == "udp6" {
				err = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_NO_CHECK6_TX, 1)
			} else {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
			}
		})
		return err
	}
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			f, st := relayRunBatch(t, fam, noChecksums, true)
			if !f.noRuns.Load() || st.UDPSegmented != 0 || st.Drops[DropHostSendFailed] != 0 {
				t.Errorf("runs off %v, %d datagrams sent in runs, host send drops %d; want runs off, 0, 0", f.noRuns.Load(), st.UDPSegmented, st.Drops[DropHostSendFailed])
			}
		})
	}
}
