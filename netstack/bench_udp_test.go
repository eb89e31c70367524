package netstack

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// BenchmarkUDPRelay measures datagrams per second through the exit between Write/Output
// and a real loopback UDP socket, one flow, each direction alone:
//   - up: Write (batches of 64) → the exit → the peer, which counts what arrives;
//   - down: the peer sends as fast as sendmmsg goes → the flow's host socket → the exit →
//     Output (which counts; no client stack).
//
// The peer is a child process (this test binary, udpPeerEnv set), so that its work is not
// counted with the exit's. ns/op is the sender's time per datagram offered (Write's, or
// the peer's); kpps is what arrived, per second from the first datagram offered to the
// last one counted; lost-% is what did not arrive; cpu-µs/dgram is this process's CPU time
// (the exit, plus for "up" the kernel's loopback delivery, which the sending thread pays)
// per datagram that arrived.
func BenchmarkUDPRelay(b *testing.B) {
	for _, size := range []int{64, 1392} {
		b.Run(fmt.Sprintf("up/%dB", size), func(b *testing.B) { benchUDPUp(b, size) })
		b.Run(fmt.Sprintf("down/%dB", size), func(b *testing.B) { benchUDPDown(b, size) })
	}
}

func benchUDPUp(b *testing.B, size int) {
	peer := startUDPPeer(b)
	e, d := newBenchExit(b, func([][]byte) {})
	dst := ap(publicV4, 9)
	d.set(dst, peer.addr)
	pkt := udpPacket(ap(clientV4, 5000), dst, make([]byte, size))
	e.Write([][]byte{pkt})
	if settle(peer.count, 1); peer.count() != 1 {
		b.Fatal("the first datagram never arrived")
	}
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = pkt
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime(b)
	for sent := 0; sent < b.N; sent += len(batch) {
		e.Write(batch[:min(len(batch), b.N-sent)])
	}
	b.StopTimer()
	got := func() int64 { return peer.count() - 1 }
	end := settle(got, int64(b.N))
	reportUDP(b, got(), int64(b.N), end.Sub(start), cpuTime(b)-cpu)
}

func benchUDPDown(b *testing.B, size int) {
	peer := startUDPPeer(b)
	var n atomic.Int64
	e, d := newBenchExit(b, func(pkts [][]byte) { n.Add(int64(len(pkts))) })
	dst := ap(publicV4, 9)
	d.set(dst, peer.addr)
	e.Write([][]byte{udpPacket(ap(clientV4, 5000), dst, []byte("hello"))})
	if settle(peer.count, 1); peer.count() != 1 {
		b.Fatal("the first datagram never arrived")
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime(b)
	peer.ask(fmt.Sprintf("send %d %d", b.N, size))
	b.StopTimer()
	end := settle(n.Load, int64(b.N))
	reportUDP(b, n.Load(), int64(b.N), end.Sub(start), cpuTime(b)-cpu)
}

func newBenchExit(b *testing.B, out func([][]byte)) (*Exit, *mapDialer) {
	d := newMapDialer()
	e, err := New(Config{Output: out, Dialer: d, Pinger: &fakePinger{drop: true}, LocalAddrs: []netip.Addr{localV4, localV6}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e, d
}

// settle waits until count reaches want or stops growing for 200 ms, and returns when the
// last increase was seen.
func settle(count func() int64, want int64) time.Time {
	last, seen := count(), time.Now()
	for last < want {
		time.Sleep(5 * time.Millisecond)
		n := count()
		if n != last {
			last, seen = n, time.Now()
		} else if time.Since(seen) > 200*time.Millisecond {
			break
		}
	}
	return seen
}

func reportUDP(b *testing.B, got, offered int64, d, cpu time.Duration) {
	b.ReportMetric(float64(got)/d.Seconds()/1e3, "kpps")
	b.ReportMetric(100*float64(offered-got)/float64(offered), "lost-%")
	b.ReportMetric(cpu.Seconds()*1e6/float64(max(got, 1)), "cpu-µs/dgram")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The peer process: a loopback UDP socket (its address on the first line of its stdout)
// that counts the datagrams it receives and answers commands on stdin, one a line:
// "count" → the count; "send N SIZE" → N datagrams of SIZE bytes to the last sender,
// then "sent". It exits when stdin closes.

const udpPeerEnv = "NETSTACK_BENCH_UDP_PEER"

func init() {
	if os.Getenv(udpPeerEnv) == "1" {
		if err := runUDPPeer(); err != nil {
			fmt.Fprintln(os.Stderr, "udp peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

func runUDPPeer() error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	c.SetReadBuffer(8 << 20)
	pc := ipv4.NewPacketConn(c)
	var n atomic.Int64
	var from atomic.Pointer[net.UDPAddr]
	go func() {
		ms := make([]ipv4.Message, 64)
		for i := range ms {
			ms[i].Buffers = [][]byte{make([]byte, 2048)}
		}
		for {
			k, err := pc.ReadBatch(ms, 0)
			if err != nil {
				return
			}
			from.Store(ms[k-1].Addr.(*net.UDPAddr))
			n.Add(int64(k))
		}
	}()
	fmt.Println(c.LocalAddr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 1 && f[0] == "count":
			fmt.Println(n.Load())
		case len(f) == 3 && f[0] == "send":
			count, _ := strconv.Atoi(f[1])
			size, _ := strconv.Atoi(f[2])
			ms := make([]ipv4.Message, 64)
			for i := range ms {
				ms[i].Buffers = [][]byte{make([]byte, size)}
				ms[i].Addr = from.Load()
			}
			for sent := 0; sent < count; {
				k, err := pc.WriteBatch(ms[:min(len(ms), count-sent)], 0)
				if err != nil {
					return err
				}
				sent += k
			}
			fmt.Println("sent")
		default:
			return fmt.Errorf("unknown command %q", in.Text())
		}
	}
	return in.Err()
}

type udpPeer struct {
	b    testing.TB
	in   io.WriteCloser
	out  *bufio.Scanner
	addr netip.AddrPort
}

func startUDPPeer(b testing.TB) *udpPeer {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), udpPeerEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	p := &udpPeer{b: b, in: in, out: bufio.NewScanner(out)}
	if !p.out.Scan() {
		b.Fatal("the UDP peer did not start")
	}
	if p.addr, err = netip.ParseAddrPort(p.out.Text()); err != nil {
		b.Fatal(err)
	}
	return p
}

func (p *udpPeer) ask(cmd string) string {
	fmt.Fprintln(p.in, cmd)
	if !p.out.Scan() {
		p.b.Fatalf("the UDP peer did not answer %q", cmd)
	}
	return p.out.Text()
}

func (p *udpPeer) count() int64 {
	n, err := strconv.ParseInt(p.ask("count"), 10, 64)
	if err != nil {
		p.b.Fatal(err)
	}
	return n
}
