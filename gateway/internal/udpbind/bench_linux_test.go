package udpbind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// BenchmarkReceive: datagrams per second a bind's IPv4 receive function takes from loopback
// while a sender floods it, popgate's bind against wireguard-go's StdNetBind. 64 B: one
// datagram per sendmmsg message, as a flood of small datagrams from many sources arrives;
// 1400 B: runs of 46 segmented by the sender (UDP GSO), which arrive coalesced as a bulk
// transfer through a NIC with GRO does.
func BenchmarkReceive(b *testing.B) {
	for _, size := range []int{64, 1400} {
		for _, bind := range []struct {
			name string
			new  func() conn.Bind
		}{{"udpbind", func() conn.Bind { return New() }}, {"std", conn.NewDefaultBind}} {
			b.Run(fmt.Sprintf("%s/%dB", bind.name, size), func(b *testing.B) {
				benchReceive(b, bind.new(), size)
			})
		}
	}
}

func benchReceive(b *testing.B, bind conn.Bind, size int) {
	fns, port, err := bind.Open(0)
	if err != nil {
		b.Fatal(err)
	}
	defer bind.Close()
	var v4 conn.ReceiveFunc
	for _, fn := range fns {
		if fn.PrettyName() == "v4" {
			v4 = fn
		}
	}
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pc := ipv4.NewPacketConn(client)
		var msgs []ipv4.Message
		if size < 1000 {
			msgs = make([]ipv4.Message, 128)
			for i := range msgs {
				msgs[i] = ipv4.Message{Buffers: [][]byte{make([]byte, size)}, Addr: dst}
			}
		} else {
			oob := make([]byte, txControlLen)
			oob = oob[:putControl(oob, netip.Addr{}, 0, size)]
			msgs = make([]ipv4.Message, 8)
			for i := range msgs {
				msgs[i] = ipv4.Message{Buffers: [][]byte{make([]byte, maxSegmentedBytes/size*size)}, OOB: oob, Addr: dst}
			}
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := pc.WriteBatch(msgs, 0); err != nil {
				if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ENOBUFS) {
					b.Error(err)
					bind.Close() // ends the read
					return
				}
				time.Sleep(time.Millisecond) // a full buffer
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)

	n := bind.BatchSize()
	bufs, sizes, eps := make([][]byte, n), make([]int, n), make([]conn.Endpoint, n)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	for range 200 { // past the start, when a full socket buffer waits
		if _, err := v4(bufs, sizes, eps); err != nil {
			b.Fatal(err)
		}
	}
	got, reads := 0, 0
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for got < b.N {
		k, err := v4(bufs, sizes, eps)
		if err != nil {
			if !b.Failed() {
				b.Error(err)
			}
			return
		}
		got += k
		reads++
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "datagrams/s")
	b.ReportMetric(float64(got)/float64(reads), "datagrams/read")
	if ub, ok := bind.(*Bind); ok {
		b.Logf("%+v", ub.Stats())
	}
}
