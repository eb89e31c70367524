package udpbind

import (
	"net"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// TestAllocs: Send allocates nothing; a receive allocates per message (x/net's address and
// the endpoint), not per datagram.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	b := New()
	v4, _, port := openBind(t, b, 0)
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ep := NewEndpoint(client.LocalAddr().(*net.UDPAddr).AddrPort(), netip.MustParseAddr("127.0.0.1"))
	bufs := [][]byte{make([]byte, 100), make([]byte, 100), make([]byte, 100)}
	send := func() {
		if err := b.Send(bufs, ep); err != nil {
			t.Fatal(err)
		}
	}
	send()
	if n := testing.AllocsPerRun(100, send); n != 0 {
		t.Errorf("Send: %v allocations, want 0", n)
	}

	server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	r := newReader(v4, conn.IdealBatchSize)
	payload := make([]byte, 64)
	recv := func() {
		if _, _, err := client.WriteMsgUDPAddrPort(payload, nil, server); err != nil {
			t.Fatal(err)
		}
		if _, err := r.fn(r.bufs, r.sizes, r.eps); err != nil {
			t.Fatal(err)
		}
	}
	recv()
	n := testing.AllocsPerRun(100, recv)
	t.Logf("send and receive of one datagram: %v allocations", n)
	if n > 4 {
		t.Errorf("send and receive of one datagram: %v allocations, want at most 4", n)
	}
}
