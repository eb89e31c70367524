package udpbind

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// TestWireGuardAnycastEndpoint: a stock wireguard-go client talks to a server at the
// server's second address (on lo, as an anycast address is), reached over a veth whose own
// address the kernel would answer from. The client's endpoint must stay the address it was
// configured with: were the answers to come from the veth's address, the client would roam
// to it and never come back to the anycast address when this server fails.
func TestWireGuardAnycastEndpoint(t *testing.T) {
	srvNS := newNetns(t, "addr add 198.18.0.1/32 dev lo", "addr add 2001:db8:ff::1/128 dev lo nodad")
	cliNS := newNetns(t)
	veth := fmt.Sprintf("ubv%d", nsSeq.Add(1))
	ip(t, "link", "add", veth+"s", "netns", srvNS.name, "type", "veth", "peer", "name", veth+"c", "netns", cliNS.name)
	for _, c := range []string{"addr add 192.0.2.1/24 dev " + veth + "s", "addr add 2001:db8:1::1/64 dev " + veth + "s nodad", "link set " + veth + "s up"} {
		ip(t, append([]string{"-n", srvNS.name}, strings.Fields(c)...)...)
	}
	for _, c := range []string{"addr add 192.0.2.2/24 dev " + veth + "c", "addr add 2001:db8:1::2/64 dev " + veth + "c nodad", "link set " + veth + "c up",
		"route add 198.18.0.1/32 via 192.0.2.1", "route add 2001:db8:ff::1/128 via 2001:db8:1::1"} {
		ip(t, append([]string{"-n", cliNS.name}, strings.Fields(c)...)...)
	}

	for i, anycast := range []string{"198.18.0.1", "2001:db8:ff::1"} {
		t.Run(anycast, func(t *testing.T) {
			srvKey, cliKey := newKey(t), newKey(t)
			port := 47201 + i
			srvTUN, cliTUN := tuntest.NewChannelTUN(), tuntest.NewChannelTUN()
			srv := device.NewDevice(srvTUN.TUN(), nsBind{New(), srvNS}, device.NewLogger(device.LogLevelError, "srv "))
			defer srv.Close()
			cli := device.NewDevice(cliTUN.TUN(), nsBind{conn.NewDefaultBind(), cliNS}, device.NewLogger(device.LogLevelError, "cli "))
			defer cli.Close()
			want := netip.AddrPortFrom(netip.MustParseAddr(anycast), uint16(port)).String()
			if err := srv.IpcSet(fmt.Sprintf("private_key=%x\nlisten_port=%d\npublic_key=%x\nallowed_ip=10.9.0.2/32\n", srvKey, port, pub(cliKey))); err != nil {
				t.Fatal(err)
			}
			if err := cli.IpcSet(fmt.Sprintf("private_key=%x\npublic_key=%x\nendpoint=%s\nallowed_ip=10.9.0.1/32\n", cliKey, pub(srvKey), want)); err != nil {
				t.Fatal(err)
			}
			for _, d := range []*device.Device{srv, cli} {
				if err := d.Up(); err != nil {
					t.Fatal(err)
				}
			}
			cliIP, srvIP := netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("10.9.0.1")
			for round := range 3 {
				cliTUN.Outbound <- tuntest.Ping(srvIP, cliIP)
				expectPacket(t, srvTUN, "server", round)
				srvTUN.Outbound <- tuntest.Ping(cliIP, srvIP)
				expectPacket(t, cliTUN, "client", round)
			}
			if got := endpoint(t, cli); got != want {
				t.Errorf("client's endpoint %s, want %s: the server answered from another address", got, want)
			}
		})
	}
}

func expectPacket(t *testing.T, c *tuntest.ChannelTUN, who string, round int) {
	t.Helper()
	select {
	case <-c.Inbound:
	case <-time.After(5 * time.Second):
		t.Fatalf("round %d: nothing reached the %s through the tunnel", round, who)
	}
}

// endpoint returns the device's only peer's endpoint.
func endpoint(t *testing.T, d *device.Device) string {
	t.Helper()
	s, err := d.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "endpoint="); ok {
			return v
		}
	}
	return ""
}

func newKey(t *testing.T) [32]byte {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	k[0] &= 248
	k[31] = k[31]&127 | 64
	return k
}

func pub(k [32]byte) [32]byte {
	p, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		panic(err)
	}
	return [32]byte(p)
}
