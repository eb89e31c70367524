package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/popgate/popgate/firewall"
	"github.com/popgate/popgate/gateway/internal/readturn"
	"github.com/popgate/popgate/gateway/plane"
)

// Peers of the tests of the way back from an exit: tenants 1 and 2 have a device, tenant 3
// has none (it has no active peer on this node).
var (
	exA1   = testPeer(1, "acme", "a1", 2, true)
	exA2   = testPeer(1, "acme", "a2", 6, true)
	exAOff = testPeer(1, "acme", "off", 3, false)
	exB1   = testPeer(2, "bravo", "b1", 4, true)
	exC1   = testPeer(3, "charlie", "c1", 5, true)
	exNet4 = netip.MustParseAddr("198.51.100.2")
	exNet6 = netip.MustParseAddr("2001:db8:1::2")
)

// newExitTestPath returns the packet path of tenants 1 to 3 with devices for 1 and 2.
func newExitTestPath(t testing.TB, policy string) *testPath {
	t.Helper()
	return newTestPath(t, []plane.Peer{exA1, exA2, exAOff, exB1, exC1}, policy, 3, []int64{1, 2})
}

// dropsText lists the non-zero counts of drops: "malformed=1 no_route=2", "" for none.
func dropsText(drops *[numDropReasons]atomic.Uint64) string {
	var parts []string
	for r := dropReason(0); r < numDropReasons; r++ {
		if n := drops[r].Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%v=%d", r, n))
		}
	}
	return strings.Join(parts, " ")
}

// outboundOnly lets peers open UDP flows and nothing in: what comes back from the exit passes
// only as the reply of a flow a peer opened.
const outboundOnly = "default deny\nallow any -> any udp\n"

func TestFromExit(t *testing.T) {
	tests := []struct {
		name   string
		policy string   // of every tenant; allowAll when empty
		opened [][]byte // written by tenant 1's device first: the flows its peers opened
		pkt    []byte   // from the exit, at offset 16
		to     int64    // the tenant whose device gets it; 0: dropped
		drops  string   // dropsText of the exit's drops afterwards
		tx     *plane.Peer
	}{
		{name: "malformed", pkt: []byte{16: 0x45, 0, 0}, drops: "malformed=1"},
		{name: "empty", pkt: make([]byte, 16), drops: "malformed=1"},
		{name: "to no peer", pkt: ipv4Packet(exNet4, exNet4), drops: "no_route=1"},
		{name: "to an unassigned overlay address", pkt: ipv4Packet(exNet4, netip.MustParseAddr("100.64.9.9")), drops: "no_route=1"},
		{name: "to a disabled peer", pkt: ipv4Packet(exNet4, exAOff.IPv4), drops: "no_route=1"},
		{name: "to a peer of a tenant without a device", pkt: ipv4Packet(exNet4, exC1.IPv4), drops: "no_route=1"},
		{name: "allowed, v4", pkt: ipv4Packet(exNet4, exA1.IPv4), to: 1, tx: &exA1},
		{name: "allowed, v6", pkt: ipv6Packet(exNet6, exA1.IPv6), to: 1, tx: &exA1},
		{name: "to another tenant's peer", pkt: ipv4Packet(exNet4, exB1.IPv4), to: 2, tx: &exB1},
		// The firewall counts what it refuses; the exit's drops do not.
		{name: "refused by the policy", policy: "default deny\n", pkt: ipv4Packet(exNet4, exA1.IPv4)},
		{name: "from the node's services, v4", policy: "default deny\n", pkt: ipv4Packet(testOverlay.Gateway4, exA1.IPv4), to: 1, tx: &exA1},
		{name: "from the node's services, v6", policy: "default deny\n", pkt: ipv6Packet(testOverlay.Gateway6, exA1.IPv6), to: 1, tx: &exA1},
		{name: "reply of a flow the peer opened", policy: outboundOnly, opened: [][]byte{ipv4Packet(exA1.IPv4, exNet4)},
			pkt: ipv4Packet(exNet4, exA1.IPv4), to: 1, tx: &exA1},
		{name: "reply of a flow another peer opened", policy: outboundOnly, opened: [][]byte{ipv4Packet(exA2.IPv4, exNet4)},
			pkt: ipv4Packet(exNet4, exA1.IPv4)},
		{name: "unsolicited", policy: outboundOnly, opened: [][]byte{ipv4Packet(exA1.IPv4, exNet4)},
			pkt: ipv4Packet(netip.MustParseAddr("198.51.100.3"), exA1.IPv4)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp := newExitTestPath(t, tc.policy)
			td := tp.tuns[1]
			td.setExits(discardExit{}, discardExit{}, discardExit{})
			for _, p := range tc.opened {
				td.Write([][]byte{p}, 16)
				if got := dropsText(td.drops); got != "" {
					t.Fatalf("opening a flow: dropped, %s", got)
				}
			}
			snap := tp.snap.Load()
			var drops [numDropReasons]atomic.Uint64
			var pkt firewall.Packet
			got, _, _ := fromExit(snap, tp.filter, &pkt, tc.pkt[16:], tp.filter.Now(), &drops)
			if want := tp.tuns[tc.to]; got != want {
				t.Errorf("fromExit = %s, want %s", tunName(got), tunName(want))
			}
			if got := dropsText(&drops); got != tc.drops {
				t.Errorf("drops %q, want %q", got, tc.drops)
			}
			for _, p := range []plane.Peer{exA1, exA2, exB1} {
				e := snap.byAddr[p.IPv4]
				want := uint64(0)
				if tc.tx != nil && tc.tx.Name == p.Name {
					want = 1
				}
				if n, b := e.ctr.txPackets.Load(), e.ctr.txBytes.Load(); n != want || b != want*uint64(len(tc.pkt)-16) {
					t.Errorf("peer %s counted %d packets, %d bytes towards it; want %d packets of %d bytes", p.Name, n, b, want, len(tc.pkt)-16)
				}
			}
		})
	}
}

func tunName(td *tunDevice) string {
	if td == nil {
		return "dropped"
	}
	return fmt.Sprintf("tenant %d's device", td.tenantID)
}

// fakeKernelTUN stands in for the kernel exit's TUN: each Read takes the next scripted read.
type fakeKernelTUN struct {
	reads []kernelRead
	calls int
}

// kernelRead is one scripted Read: it returns pkts (each copied at the offset) and err, after
// calling during, when set.
type kernelRead struct {
	pkts   [][]byte
	err    error
	during func()
}

func (f *fakeKernelTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	f.calls++
	if len(f.reads) == 0 {
		return 0, errors.New("fakeKernelTUN: no read scripted")
	}
	r := f.reads[0]
	f.reads = f.reads[1:]
	if r.during != nil {
		r.during()
	}
	for i, p := range r.pkts {
		sizes[i] = copy(bufs[i][offset:], p)
	}
	return len(r.pkts), r.err
}

func (f *fakeKernelTUN) File() *os.File                   { return nil }
func (f *fakeKernelTUN) Write([][]byte, int) (int, error) { return 0, nil }
func (f *fakeKernelTUN) MTU() (int, error)                { return 1420, nil }
func (f *fakeKernelTUN) Name() (string, error)            { return "pgfake", nil }
func (f *fakeKernelTUN) Events() <-chan tun.Event         { return nil }
func (f *fakeKernelTUN) Close() error                     { return nil }
func (f *fakeKernelTUN) BatchSize() int                   { return 128 }

var _ tun.Device = (*fakeKernelTUN)(nil)

// TestReadKernel: a device holding the kernel exit's read token reads a batch from the TUN,
// keeps its own tenant's packets in place, queues the others' to their devices and zeroes
// the size of everything it does not keep; it hands the token back, except when the TUN
// itself is closed, so that nobody reads a closed TUN again.
func TestReadKernel(t *testing.T) {
	toA1 := ipv4Packet(exNet4, exA1.IPv4)[16:]
	toA1v6 := ipv6Packet(exNet6, exA1.IPv6)[16:]
	toB1 := ipv4Packet(exNet4, exB1.IPv4)[16:]
	toNet := ipv4Packet(exNet4, exNet4)[16:]
	malformed := []byte{0x45, 0, 0}
	tests := []struct {
		name string
		// before prepares tenant 1's device (td) before it reads: closes it, queues to it.
		before func(td *tunDevice)
		// closeInRead closes td while it waits in the TUN's first read (which Close wakes).
		closeInRead bool
		reads       []kernelRead
		n           int
		err         error
		sizes       []int // of the batch read, when n > 0
		queued      int   // packets queued to tenant 2's device
		drops       string
		tokenBack   bool
		tunReads    int // reads of the TUN
	}{
		{name: "own packets stay in place", reads: []kernelRead{{pkts: [][]byte{toA1, toA1v6}}},
			n: 2, sizes: []int{len(toA1), len(toA1v6)}, tokenBack: true, tunReads: 1},
		{name: "mixed batch", reads: []kernelRead{{pkts: [][]byte{toB1, toA1, toNet, malformed, toB1}}},
			n: 5, sizes: []int{0, len(toA1), 0, 0, 0}, queued: 2, drops: "malformed=1 no_route=1", tokenBack: true, tunReads: 1},
		{name: "nothing of its own", reads: []kernelRead{{pkts: [][]byte{toB1, toNet}}},
			queued: 1, drops: "no_route=1", tokenBack: true, tunReads: 1},
		{name: "too many segments: the packets read count", reads: []kernelRead{{pkts: [][]byte{toA1, toB1}, err: tun.ErrTooManySegments}},
			n: 2, sizes: []int{len(toA1), 0}, queued: 1, tokenBack: true, tunReads: 1},
		{name: "woken: the deadline passed", reads: []kernelRead{{err: os.ErrDeadlineExceeded}},
			tokenBack: true, tunReads: 1},
		{name: "woken because the device closed", closeInRead: true,
			reads: []kernelRead{{err: os.ErrDeadlineExceeded}}, err: os.ErrClosed, tokenBack: true, tunReads: 1},
		{name: "the TUN is closed: the token stays taken", reads: []kernelRead{{err: os.ErrClosed}},
			tunReads: 1},
		{name: "another error", reads: []kernelRead{{err: errors.New("EIO")}},
			tokenBack: true, tunReads: 1},
		{name: "closed before the read", before: func(td *tunDevice) { td.Close() },
			err: os.ErrClosed, tokenBack: true},
		{name: "a packet queued before the read is served first", before: func(td *tunDevice) { td.enqueue([][]byte{toA1}) },
			tokenBack: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp := newExitTestPath(t, "")
			td := tp.tuns[1]
			r, w, err := os.Pipe() // a file whose read deadline the exit's wake and rearm set
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			fake := &fakeKernelTUN{reads: tc.reads}
			k := &kernelExit{log: slog.New(slog.DiscardHandler), dev: fake, file: r, name: "pgfake", turn: readturn.New[tunDevice]()}
			var drops [numDropReasons]atomic.Uint64
			td.setKernelExit(k, &drops)
			if tc.closeInRead {
				fake.reads[0].during = func() { td.Close() }
			}
			if tc.before != nil {
				tc.before(td)
			}

			bufs, sizes := make([][]byte, 8), make([]int, 8)
			for i := range bufs {
				bufs[i] = make([]byte, 16+1500)
			}
			// Read's part: take the turn (it starts free), then read.
			<-k.turn.Wait()
			n, err := td.readKernel(bufs, sizes, 16)
			if n != tc.n || !errors.Is(err, tc.err) {
				t.Errorf("readKernel = %d, %v; want %d, %v", n, err, tc.n, tc.err)
			}
			for i := range tc.sizes {
				if sizes[i] != tc.sizes[i] {
					t.Errorf("sizes %v, want %v", sizes[:len(tc.sizes)], tc.sizes)
					break
				}
			}
			for i := range n {
				if read := tc.reads[0].pkts[i]; sizes[i] > 0 && string(bufs[i][16:16+sizes[i]]) != string(read) {
					t.Errorf("packet %d kept is % x, want % x", i, bufs[i][16:16+sizes[i]], read)
				}
			}
			if got := tp.tuns[2].out.len(); got != tc.queued {
				t.Errorf("%d packets queued to tenant 2's device, want %d", got, tc.queued)
			}
			if got := dropsText(&drops); got != tc.drops {
				t.Errorf("drops %q, want %q", got, tc.drops)
			}
			if got := k.turn.Free(); got != tc.tokenBack {
				t.Errorf("token given back: %v, want %v", got, tc.tokenBack)
			}
			if d := k.turn.Reader(); d != nil {
				t.Errorf("device %d still marked as reading the TUN after readKernel returned", d.tenantID)
			}
			if fake.calls != tc.tunReads {
				t.Errorf("%d reads of the TUN, want %d", fake.calls, tc.tunReads)
			}
		})
	}
}
