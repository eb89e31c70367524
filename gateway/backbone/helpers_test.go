package backbone

import (
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/popgate/popgate/store"
)

// bareDevice is a Device's packet path without wireguard-go: receive and Send on the memTun,
// with peers (their keys and endpoints made up when missing).
func bareDevice(t testing.TB, id NodeID, deliver func(NodeID, uint32, [][]byte), peers ...Peer) *Device {
	t.Helper()
	key, err := store.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Node: id, PrivateKey: key, AnyPort: true, Deliver: deliver}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := newDevice(cfg, slog.New(slog.DiscardHandler))
	snap := &snapshot{peers: map[NodeID]*peerEntry{}}
	for _, p := range peers {
		snap.peers[p.Node] = &peerEntry{Peer: p, hdr: makeHeader(id, p.Node),
			link: newLink(cfg, time.Now())}
	}
	d.snap.Store(snap)
	t.Cleanup(func() { d.tun.Close() })
	return d
}

// rawNode is a plain wireguard-go device, not a backbone Device: the test writes the outer
// headers itself, so it can forge them.
type rawNode struct {
	tun  *tuntest.ChannelTUN
	peer Peer
	// heard is closed when the first packet arrives: the session is up.
	heard chan struct{}
}

// newRawNode starts a raw device that sends everything to to.
func newRawNode(t *testing.T, id NodeID, to Peer) *rawNode {
	t.Helper()
	key, err := store.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	ct := tuntest.NewChannelTUN()
	dev := device.NewDevice(ct.TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "raw: "))
	t.Cleanup(dev.Close)
	conf := "private_key=" + hexKey(key) + "\nlisten_port=0\n" +
		"public_key=" + hexKey(to.PublicKey) + "\nendpoint=" + to.Endpoint.String() + "\nallowed_ip=0.0.0.0/0\n"
	if err := dev.IpcSet(conf); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	s, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	port := 0
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "listen_port="); ok {
			port, _ = strconv.Atoi(v)
		}
	}
	r := &rawNode{tun: ct, heard: make(chan struct{}), peer: Peer{Node: id, Name: "raw", PublicKey: key.PublicKey(),
		Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}}
	go func() { // the device's writes block until read; Inbound closes with the device
		first := true
		for range ct.Inbound {
			if first {
				close(r.heard)
				first = false
			}
		}
	}()
	return r
}

func (r *rawNode) send(pkt []byte) { r.tun.Outbound <- pkt }

func hexKey(k store.Key) string {
	const hex = "0123456789abcdef"
	var b [64]byte
	for i, c := range k {
		b[2*i], b[2*i+1] = hex[c>>4], hex[c&0xf]
	}
	return string(b[:])
}

// testLogger logs at debug level when BACKBONE_DEBUG is set.
func testLogger(id NodeID) *slog.Logger {
	if os.Getenv("BACKBONE_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", uint32(id))
}
