package gateway

import (
	"encoding/binary"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/store"
)

// muxTransportPath measures what the Mux adds to a received batch of transport datagrams: a
// reader demuxes a full batch spread over devices, then each device's ReceiveFunc copies its
// datagrams into wireguard-go-sized buffers, as RoutineReceiveIncoming would.
type muxTransportPath struct {
	h     *muxSyncHarness
	fns   []conn.ReceiveFunc
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
	idx   []uint32
	size  int
}

func newMuxTransportPath(tb testing.TB, devices, size int) *muxTransportPath {
	ids := make([]int64, devices)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	h := newMuxSyncHarness(tb, muxTestKey(tb), nil, ids...)
	p := &muxTransportPath{h: h, size: size}
	for i, s := range h.s {
		p.fns = append(p.fns, h.m.receiveFunc(s))
		for j := range 4 { // a few sessions per device
			idx := uint32(0x1000*(i+1) + j)
			h.m.learn(s.id, idx)
			p.idx = append(p.idx, idx)
		}
	}
	p.bufs = make([][]byte, conn.IdealBatchSize)
	for i := range p.bufs {
		p.bufs[i] = make([]byte, device.MaxMessageSize)
	}
	p.sizes = make([]int, conn.IdealBatchSize)
	p.eps = make([]conn.Endpoint, conn.IdealBatchSize)
	return p
}

// batch runs one batch of IdealBatchSize datagrams through the Mux.
func (p *muxTransportPath) batch() {
	r := p.h.r
	for i := range conn.IdealBatchSize {
		b := r.slots[i]
		// What the socket writes: the header (the payload is whatever the buffer held).
		binary.LittleEndian.PutUint32(b[0:], muxTypeTransport)
		binary.LittleEndian.PutUint32(b[4:], p.idx[(i/8)%len(p.idx)]) // runs of 8 per session
		binary.LittleEndian.PutUint64(b[8:], uint64(i))
		r.sizes[i] = p.size
		r.eps[i] = muxFakeEndpoint{}
	}
	p.h.m.demux(p.h.g, r, conn.IdealBatchSize)
	for i, s := range p.h.s {
		for len(s.queue) > 0 {
			p.fns[i](p.bufs, p.sizes, p.eps)
		}
	}
}

func TestMuxTransportPathDoesNotAllocate(t *testing.T) {
	if muxRace {
		t.Skip("sync.Pool drops items under the race detector")
	}
	p := newMuxTransportPath(t, 4, 1400)
	p.batch() // fill the pools
	if n := testing.AllocsPerRun(100, p.batch); n != 0 {
		t.Errorf("%v allocations per batch of %d, want 0", n, conn.IdealBatchSize)
	}
	if st := p.h.m.Stats(); st.Delivered != st.Received || st.Delivered == 0 {
		t.Errorf("stats %+v", st)
	}
}

func BenchmarkMuxTransport(b *testing.B) {
	for _, c := range []struct {
		name          string
		devices, size int
	}{
		{"1dev/64B", 1, 64},
		{"1dev/1400B", 1, 1400},
		{"4dev/1400B", 4, 1400},
		{"32dev/1400B", 32, 1400},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := newMuxTransportPath(b, c.devices, c.size)
			b.SetBytes(int64(c.size * conn.IdealBatchSize))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p.batch()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*conn.IdealBatchSize), "ns/packet")
		})
	}
}

// BenchmarkMuxInitiation measures one valid initiation from the socket to a device queue:
// mac1, the X25519 and AEAD of the static key, and route (a map lookup).
func BenchmarkMuxInitiation(b *testing.B) {
	node, client := muxTestKey(b), muxTestKey(b)
	msg := muxCaptureInitiation(b, client, node.PublicKey())
	owners := map[store.Key]int64{client.PublicKey(): 1}
	for range 10000 {
		owners[muxTestKey(b).PublicKey()] = 2
	}
	route := func(k store.Key) (int64, bool) { id, ok := owners[k]; return id, ok }
	h := newMuxSyncHarness(b, node, route, 1, 2)
	pkts := [][]byte{msg}
	b.ReportAllocs()
	for b.Loop() {
		h.run(pkts, nil)
	}
	if st := h.m.Stats(); st.Delivered != st.Initiations {
		b.Fatalf("stats %+v", st)
	}
}

// BenchmarkMuxStatic is the decryption of the static key alone.
func BenchmarkMuxStatic(b *testing.B) {
	node, client := muxTestKey(b), muxTestKey(b)
	msg := muxCaptureInitiation(b, client, node.PublicKey())
	n, _ := newMuxNoise(node)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := n.initiatorStatic(msg); !ok {
			b.Fatal("no static")
		}
	}
}
