package netstack

import (
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkTCPDownload measures one TCP stream from a loopback server, through the exit
// (host socket → gVisor → Output), to the client stack. Both gVisor stacks share the two
// cores, so the figure is a lower bound of the exit alone; compare runs in one sitting.
func BenchmarkTCPDownload(b *testing.B) {
	for _, c := range []struct {
		name string
		gro  bool
	}{{"gro", true}, {"nogro", false}} {
		b.Run(c.name, func(b *testing.B) { benchDownload(b, !c.gro) })
	}
}

func benchDownload(b *testing.B, disableGRO bool) {
	const size = 64 << 20
	chunk := make([]byte, 256<<10)
	h := newHarness(b, Config{disableGRO: disableGRO})
	srv := serveTCP(b, "tcp4", func(c net.Conn) {
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	dst := ap(publicV4, 80)
	h.dialer.set(dst, srv.addr)
	buf := make([]byte, 256<<10)

	b.SetBytes(size)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		c, err := h.dialTCP(ctxTimeout(b, 10*time.Second), dst)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, buf)
		c.Close()
		if err != nil || n != size {
			b.Fatalf("downloaded %d of %d: %v", n, size, err)
		}
	}
	b.ReportMetric(float64(size)*float64(b.N)/time.Since(start).Seconds()/1e6*8/1000, "Gbit/s")
}

// BenchmarkTCPUpload is the other direction: client stack → exit → loopback server. Here
// inbound GRO matters: the exit receives the data segments.
func BenchmarkTCPUpload(b *testing.B) {
	for _, c := range []struct {
		name string
		gro  bool
	}{{"gro", true}, {"nogro", false}} {
		b.Run(c.name, func(b *testing.B) { benchUpload(b, !c.gro) })
	}
}

func benchUpload(b *testing.B, disableGRO bool) {
	const size = 64 << 20
	h := newHarness(b, Config{disableGRO: disableGRO})
	srv := serveTCP(b, "tcp4", func(c net.Conn) {
		io.Copy(io.Discard, c)
		c.Write([]byte{1})
	})
	dst := ap(publicV4, 80)
	h.dialer.set(dst, srv.addr)
	chunk := make([]byte, 256<<10)

	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		c, err := h.dialTCP(ctxTimeout(b, 10*time.Second), dst)
		if err != nil {
			b.Fatal(err)
		}
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		c.CloseWrite()
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkWriteUDP measures Write for datagrams of one established UDP flow, 64 per batch:
// the relay's send path, one sendmmsg per batch, to a loopback socket nobody reads (the
// kernel drops what its buffer does not hold; on loopback the sender pays for delivery).
// allocs/op are per batch.
func BenchmarkWriteUDP(b *testing.B) {
	e, d := newTestExit(b)
	dst := ap(publicV4, 9)
	d.set(dst, listenSink(b, "udp4"))
	pkt := udpPacket(ap(clientV4, 5000), dst, make([]byte, 1200))
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = pkt
	}
	e.Write(batch[:1])
	within(b, 5*time.Second, "the flow", func() bool { f := e.udp.get(makeUDPKey(ap(clientV4, 5000), dst)); return f != nil && f.ready.Load() })
	b.SetBytes(int64(len(pkt) * len(batch)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		e.Write(batch)
	}
}
