//go:build bench

package bench

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/popgate/popgate/store"
)

// TestHandshakeGenerator checks the load generator against an in-process wireguard-go
// device on loopback: every handshake completes and the checked ones open all the way.
// Needs no root; runs first in `make bench` so a broken generator fails fast.
func TestHandshakeGenerator(t *testing.T) {
	serverKey, err := store.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	privs := make([]store.Key, 50)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "private_key=%s\nlisten_port=0\n", hex.EncodeToString(serverKey[:]))
	for i := range privs {
		if privs[i], err = store.GeneratePrivateKey(); err != nil {
			t.Fatal(err)
		}
		pub := privs[i].PublicKey()
		fmt.Fprintf(&cfg, "public_key=%s\nallowed_ip=10.9.%d.%d/32\n", hex.EncodeToString(pub[:]), i/200, i%200+1)
	}
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	defer dev.Close()
	if err := dev.IpcSet(cfg.String()); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	state, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	var port uint16
	for line := range strings.SplitSeq(state, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			fmt.Sscan(v, &port)
		}
	}
	if port == 0 {
		t.Fatalf("device has no listen port:\n%s", state)
	}
	keys, err := newHSKeys(serverKey.PublicKey(), privs)
	if err != nil {
		t.Fatal(err)
	}
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	g, err := newHSGen(keys, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), srcs, net.ListenPacket)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx := context.Background()
	var r hsResult
	for i := range privs {
		if _, err := g.once(ctx, g.sockets[i%2], i, true, 2*time.Second, &r); err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
	}
	if r.Verified != len(privs) {
		t.Fatalf("verified %d of %d handshakes", r.Verified, len(privs))
	}
	res, err := g.run(ctx, 200*time.Millisecond, time.Second)
	if err != nil {
		t.Fatalf("run: %v (%+v)", err, res)
	}
	if res.Completed == 0 {
		t.Fatalf("run completed nothing: %+v", res)
	}
	t.Logf("in-process wireguard-go: %.0f handshakes/s, %d sent, %d verified, %d timeouts, %d cookies", res.PerSecond(), res.Sent, res.Verified, res.Timeouts, res.Cookies)
}
