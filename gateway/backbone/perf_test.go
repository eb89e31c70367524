package backbone

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestPacketPathAllocs: Send, the TUN's Read and the receive path allocate nothing per
// packet once warm.
func TestPacketPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	const batch = 64
	delivered := 0
	d := bareDevice(t, 1, func(_ NodeID, _ uint32, pkts [][]byte) { delivered += len(pkts) }, Peer{Node: 2})
	pkts := make([][]byte, batch)
	rx := make([][]byte, batch)
	for i := range pkts {
		pkts[i] = payload(1, 2, i, 1396)
		rx[i] = encode(2, 1, 7, payload(2, 1, i, 1396))
	}
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = make([]byte, 16+1500)
	}
	sizes := make([]int, len(bufs))
	send := func() {
		if err := d.Send(2, 7, pkts); err != nil {
			t.Fatal(err)
		}
		if n, err := d.tun.Read(bufs, sizes, 16); n != batch || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
	}
	send()
	if n := testing.AllocsPerRun(100, send); n != 0 {
		t.Errorf("Send and Read: %v allocations a batch of %d, want 0", n, batch)
	}
	if m, ok := decode(bufs[0][16 : 16+sizes[0]]); !ok || m.from != 1 || m.to != 2 || m.tenant != 7 || len(m.payload) != 1396 {
		t.Errorf("read back %+v, %v", m, ok)
	}
	d.receive(rx, 0)
	if n := testing.AllocsPerRun(100, func() { d.receive(rx, 0) }); n != 0 {
		t.Errorf("receive: %v allocations a batch of %d, want 0", n, batch)
	}
	if delivered != 102*batch {
		t.Errorf("delivered %d, want %d", delivered, 102*batch)
	}
}

// BenchmarkSendDeliver: Send on one node to Deliver on another over loopback UDP, through
// both wireguard-go devices; ns/op is per packet. The sender keeps at most 2,048 packets in
// flight, so the figure is what the pair carries, not what a sender can drop.
func BenchmarkSendDeliver(b *testing.B) {
	for _, size := range []int{64, 1400 - Overhead, 1396} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			var got atomic.Int64
			a := newNode(b, 1, nil)
			c := newNode(b, 2, func(cfg *Config) {
				cfg.Deliver = func(_ NodeID, _ uint32, pkts [][]byte) { got.Add(int64(len(pkts))) }
			})
			mesh(b, a, c)
			waitUp(b, a, c)
			batch := make([][]byte, 128)
			for i := range batch {
				batch[i] = payload(1, 2, i, size)
			}
			const window = 2048
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			sent := 0
			for sent < b.N {
				k := min(len(batch), b.N-sent)
				for int64(sent)-got.Load() > window {
					time.Sleep(20 * time.Microsecond)
				}
				if err := a.Send(2, 9, batch[:k]); err != nil {
					b.Fatal(err)
				}
				sent += k
			}
			last, since := got.Load(), time.Now()
			for got.Load() < int64(b.N) && time.Since(since) < time.Second {
				if n := got.Load(); n != last {
					last, since = n, time.Now()
				}
				time.Sleep(50 * time.Microsecond)
			}
			b.StopTimer()
			b.ReportMetric(100*float64(int64(b.N)-got.Load())/float64(b.N), "lost%")
		})
	}
}

// TestProbesFirst: with the tenant queue full, a probe is still queued, and read first.
func TestProbesFirst(t *testing.T) {
	d := bareDevice(t, 1, nil, Peer{Node: 2})
	pkts := make([][]byte, queueLen)
	for i := range pkts {
		pkts[i] = payload(1, 2, i, 100)
	}
	if err := d.Send(2, 7, pkts); err != nil { // fills the queue exactly
		t.Fatal(err)
	}
	d.sendProbe(d.snap.Load().peers[2], probeMsg{kind: probeEcho, seq: 9})
	bufs := [][]byte{make([]byte, 1500), make([]byte, 1500)}
	sizes := make([]int, 2)
	if n, err := d.tun.Read(bufs, sizes, 0); n != 2 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	m, ok := decode(bufs[0][:sizes[0]])
	if !ok || m.tenant != ProbeTenant {
		t.Fatalf("first packet read: %+v, want the probe", m)
	}
	if p, ok := decodeProbe(m.payload); !ok || p.seq != 9 {
		t.Errorf("probe %+v", p)
	}
	if m, _ := decode(bufs[1][:sizes[1]]); m.tenant != 7 {
		t.Errorf("second packet read: %+v, want the first tenant packet", m)
	}
}

// TestSendBlocksUntilClose: a Send waiting on a full queue returns ErrClosed when the
// device closes.
func TestSendBlocksUntilClose(t *testing.T) {
	d := bareDevice(t, 1, nil, Peer{Node: 2})
	full := make([][]byte, queueLen)
	for i := range full {
		full[i] = payload(1, 2, i, 100)
	}
	if err := d.Send(2, 7, full); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- d.Send(2, 7, full[:1]) }()
	select {
	case err := <-done:
		t.Fatalf("Send on a full queue returned %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	d.tun.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Send after close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send still blocked after close")
	}
}
