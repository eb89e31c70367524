package wgmux

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	wgnetstack "golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
	"github.com/popgate/popgate/store"
)

func silentLogger() *device.Logger { return device.NewLogger(device.LogLevelSilent, "") }

// captureInitiation returns the first handshake initiation that a wireguard-go device with
// key client sends to a peer with public key nodePub, captured from a fake bind.
func captureInitiation(tb testing.TB, client, nodePub store.Key) []byte {
	tb.Helper()
	inner := wgmuxtest.NewSocket(1)
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), inner, silentLogger())
	defer dev.Close()
	uapi := fmt.Sprintf("private_key=%x\npublic_key=%x\nendpoint=192.0.2.1:51820\npersistent_keepalive_interval=25\nallowed_ip=0.0.0.0/0\n", client[:], nodePub[:])
	if err := dev.IpcSet(uapi); err != nil {
		tb.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		tb.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case b := <-inner.Sent():
			if len(b) == initiationSize && binary.LittleEndian.Uint32(b) == typeInitiation {
				return b
			}
		case <-timeout:
			tb.Fatal("wireguard-go sent no handshake initiation")
		}
	}
}

func TestStaticMatchesWireGuard(t *testing.T) {
	node, client := testKey(t), testKey(t)
	noise, err := newNoise(node)
	if err != nil {
		t.Fatal(err)
	}

	// As sent on the wire, mac1 included.
	msg := captureInitiation(t, client, node.PublicKey())
	if !newMAC1Checker(&noise.mac1Key).ok(msg) {
		t.Error("mac1 of wireguard-go's initiation rejected")
	}
	static, ok := noise.initiatorStatic(msg)
	if !ok || static != client.PublicKey() {
		t.Fatalf("decrypted static %v (ok %v), want the client's public key %v", static, ok, client.PublicKey())
	}

	// Straight from Device.CreateMessageInitiation of a peer.
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), wgmuxtest.NewSocket(1), silentLogger())
	defer dev.Close()
	nodePub := node.PublicKey()
	if err := dev.IpcSet(fmt.Sprintf("private_key=%x\npublic_key=%x\n", client[:], nodePub[:])); err != nil {
		t.Fatal(err)
	}
	peer := dev.LookupPeer(device.NoisePublicKey(node.PublicKey()))
	if peer == nil {
		t.Fatal("peer not configured")
	}
	im, err := dev.CreateMessageInitiation(peer)
	if err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	if err := binary.Write(&wire, binary.LittleEndian, im); err != nil || wire.Len() != initiationSize {
		t.Fatalf("marshal: %v, %d bytes", err, wire.Len())
	}
	if static, ok := noise.initiatorStatic(wire.Bytes()); !ok || static != client.PublicKey() {
		t.Fatalf("CreateMessageInitiation: decrypted static %v (ok %v), want %v", static, ok, client.PublicKey())
	}

	// Another node cannot read it, and its mac1 does not check out.
	other, _ := newNoise(testKey(t))
	if _, ok := other.initiatorStatic(msg); ok {
		t.Error("another node's key decrypted the static")
	}
	if newMAC1Checker(&other.mac1Key).ok(msg) {
		t.Error("mac1 accepted for another node")
	}
	// Any flipped bit of ephemeral or static makes it fail.
	for _, i := range []int{initEphemeralOff, initEphemeralOff + 31, initStaticOff, initStaticOff + 47} {
		bad := bytes.Clone(msg)
		bad[i] ^= 0x40
		if _, ok := noise.initiatorStatic(bad); ok {
			t.Errorf("byte %d flipped: still decrypts", i)
		}
	}
	// A low-order ephemeral (all zero) is refused, not turned into an all-zero secret.
	bad := bytes.Clone(msg)
	clear(bad[initEphemeralOff:initStaticOff])
	if _, ok := noise.initiatorStatic(bad); ok {
		t.Error("all-zero ephemeral accepted")
	}
}

func TestRoutesInitiationByStaticKey(t *testing.T) {
	node := testKey(t)
	known, unknown := testKey(t), testKey(t)
	var mu sync.Mutex
	var asked []store.Key
	route := func(k store.Key) (int64, bool) {
		mu.Lock()
		asked = append(asked, k)
		mu.Unlock()
		return 2, k == known.PublicKey()
	}
	inner := wgmuxtest.NewSocket(4)
	m, _ := newTestMux(t, inner, node, route)
	b1, b2 := m.Bind(1), m.Bind(2)
	fns1, _ := mustOpen(t, b1, 0)
	fns2, _ := mustOpen(t, b2, 0)
	got1, got2 := collect(fns1, 4), collect(fns2, 4)
	defer b1.Close()
	defer b2.Close()

	good := captureInitiation(t, known, node.PublicKey())
	inner.Deliver(good)
	expect(t, got2, good, "initiation of a peer of device 2")
	expectNothing(t, got1, "device 1")

	inner.Deliver(captureInitiation(t, unknown, node.PublicKey()))
	// The reader counts its batch when it is done with it, which may be after the worker.
	st := waitStats(t, m, "unknown initiator", func(s Stats) bool { return s.UnknownInitiator == 1 && s.Initiations == 2 })
	if st.Delivered != 1 || st.Routed != 1 {
		t.Errorf("stats %+v", st)
	}
	mu.Lock()
	if len(asked) != 2 || asked[0] != known.PublicKey() || asked[1] != unknown.PublicKey() {
		t.Errorf("route asked for %v", asked)
	}
	mu.Unlock()

	badMAC := bytes.Clone(good)
	badMAC[initMAC1Off+3] ^= 1
	inner.Deliver(badMAC)
	waitStats(t, m, "bad mac1", func(s Stats) bool { return s.BadMAC1 == 1 })
	mu.Lock()
	if len(asked) != 2 {
		t.Errorf("route was asked about an initiation with a bad mac1")
	}
	mu.Unlock()

	// An initiator routed to a device that is not open.
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	inner.Deliver(good)
	waitStats(t, m, "device closed", func(s Stats) bool { return s.NoDevice == 1 })
}

// TestCloseDuringSlowRoute: the last Close must not wait for a route call, which may be
// waiting for the device that is closing (wireguard-go's Device.Close holds its IPC lock).
func TestCloseDuringSlowRoute(t *testing.T) {
	node, client := testKey(t), testKey(t)
	entered, release := make(chan struct{}), make(chan struct{})
	route := func(store.Key) (int64, bool) {
		close(entered)
		<-release
		return 1, true
	}
	inner := wgmuxtest.NewSocket(1)
	m, _ := newTestMux(t, inner, node, route)
	b := m.Bind(1)
	fns, _ := mustOpen(t, b, 0)
	collect(fns, 1) // the device's goroutines read the socket
	inner.Deliver(captureInitiation(t, client, node.PublicKey()))
	<-entered
	closed := make(chan error)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for route")
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for m.goroutines.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := m.Stats(); st.Delivered != 0 {
		t.Errorf("delivered %d datagrams after Close", st.Delivered)
	}
}

// --- two tenants on one socket, real wireguard-go on both ends ---

type wgEnd struct {
	dev  *device.Device
	tnet *wgnetstack.Net
}

// startEcho answers each UDP datagram to at with name + ": " + datagram.
func startEcho(t testing.TB, tnet *wgnetstack.Net, at netip.AddrPort, name string) {
	t.Helper()
	uc, err := tnet.ListenUDPAddrPort(at)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			uc.WriteTo(append([]byte(name+": "), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { uc.Close(); <-done })
}

// ping sends a datagram from tnet to addr and checks that the answer comes from want.
func ping(ctx context.Context, tnet *wgnetstack.Net, addr, want string) error {
	uc, err := tnet.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort(addr))
	if err != nil {
		return err
	}
	defer uc.Close()
	deadline, _ := ctx.Deadline()
	uc.SetDeadline(deadline)
	msg := "hello " + addr
	if _, err := uc.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	n, err := uc.Read(buf)
	if err != nil {
		return err
	}
	if got := string(buf[:n]); got != want+": "+msg {
		return fmt.Errorf("answer %q, want one from %s", got, want)
	}
	return nil
}

func eventually(t *testing.T, what string, d time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err = f(ctx)
		cancel()
		if err == nil {
			return
		}
	}
	t.Fatalf("%s: still failing after %v: %v", what, d, err)
}

func never(t *testing.T, what string, d time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := f(ctx); err == nil {
		t.Fatalf("%s: succeeded", what)
	}
}

// startServer runs device id of the PoP on m: the node's key, its overlay address
// 100.64.0.1 (the same in every tenant), and one site-connector peer owning 100.64.0.2/32 and
// the LAN 10.10.0.0/24. endpoint, if set, is the peer's address.
func startServer(t testing.TB, m *Mux, id int64, node, peer store.Key, endpoint string) *wgEnd {
	t.Helper()
	return startServerOn(t, m.Bind(id), fmt.Sprintf("device %d", id), node, peer, endpoint)
}

// startServerOn is startServer on any bind; its echo answers as name.
func startServerOn(t testing.TB, bind conn.Bind, name string, node, peer store.Key, endpoint string) *wgEnd {
	t.Helper()
	tdev, tnet, err := wgnetstack.CreateNetTUN([]netip.Addr{netip.MustParseAddr("100.64.0.1")}, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tdev, bind, silentLogger())
	pub := peer.PublicKey()
	uapi := fmt.Sprintf("private_key=%x\npublic_key=%x\nallowed_ip=100.64.0.2/32\nallowed_ip=10.10.0.0/24\npersistent_keepalive_interval=1\n", node[:], pub[:])
	if endpoint != "" {
		uapi += "endpoint=" + endpoint + "\n"
	}
	if err := dev.IpcSet(uapi); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wgmuxtest.CloseDevice(dev) })
	startEcho(t, tnet, netip.MustParseAddrPort("100.64.0.1:7"), name)
	return &wgEnd{dev: dev, tnet: tnet}
}

// startClient runs a site connector: a stock wireguard-go client on its own UDP socket with
// the overlay address 100.64.0.2 and the LAN address 10.10.0.5, where site answers.
func startClient(t testing.TB, key, nodePub store.Key, port uint16, site string) *wgEnd {
	t.Helper()
	tdev, tnet, err := wgnetstack.CreateNetTUN([]netip.Addr{netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("10.10.0.5")}, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), silentLogger())
	uapi := fmt.Sprintf("private_key=%x\npublic_key=%x\nendpoint=127.0.0.1:%d\nallowed_ip=100.64.0.0/10\n", key[:], nodePub[:], port)
	if err := dev.IpcSet(uapi); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wgmuxtest.CloseDevice(dev) })
	startEcho(t, tnet, netip.MustParseAddrPort("10.10.0.5:9"), site)
	return &wgEnd{dev: dev, tnet: tnet}
}

func listenPort(t testing.TB, dev *device.Device) uint16 {
	t.Helper()
	cfg, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(cfg, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			p, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				t.Fatal(err)
			}
			return uint16(p)
		}
	}
	t.Fatal("no listen_port")
	return 0
}

type testLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func TestTwoTenantsOverlappingPrefixes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five wireguard-go devices")
	}
	node := testKey(t)
	site1, site2, stranger := testKey(t), testKey(t), testKey(t)
	owners := map[store.Key]int64{site1.PublicKey(): 1, site2.PublicKey(): 2}
	route := func(k store.Key) (int64, bool) { id, ok := owners[k]; return id, ok }
	lw := &testLogWriter{t: t}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	m := mustNew(t, Config{Socket: conn.NewDefaultBind(), PrivateKey: node, Route: route}, slog.New(slog.NewTextHandler(lw, nil)))

	dev1 := startServer(t, m, 1, node, site1, "")
	dev2 := startServer(t, m, 2, node, site2, "")
	port := listenPort(t, dev1.dev)
	if p2 := listenPort(t, dev2.dev); p2 != port {
		t.Fatalf("devices listen on %d and %d, want one shared port", port, p2)
	}
	c1 := startClient(t, site1, node.PublicKey(), port, "site 1")
	c2 := startClient(t, site2, node.PublicKey(), port, "site 2")

	const wait = 15 * time.Second // a handshake is retried after 5 s
	check := func(step string) {
		t.Helper()
		eventually(t, step+": site 1 → device 1", wait, func(ctx context.Context) error { return ping(ctx, c1.tnet, "100.64.0.1:7", "device 1") })
		eventually(t, step+": site 2 → device 2", wait, func(ctx context.Context) error { return ping(ctx, c2.tnet, "100.64.0.1:7", "device 2") })
		eventually(t, step+": device 1 → 10.10.0.5 at site 1", wait, func(ctx context.Context) error { return ping(ctx, dev1.tnet, "10.10.0.5:9", "site 1") })
		eventually(t, step+": device 2 → 10.10.0.5 at site 2", wait, func(ctx context.Context) error { return ping(ctx, dev2.tnet, "10.10.0.5:9", "site 2") })
	}
	check("start")
	st := m.Stats()
	t.Logf("after the first handshakes: %+v", st)
	if st.Initiations < 2 || st.Transports == 0 || st.Learned < 2 {
		t.Errorf("stats %+v", st)
	}

	// A client whose key route does not know gets nowhere and is counted.
	c3 := startClient(t, stranger, node.PublicKey(), port, "stranger")
	never(t, "stranger → 100.64.0.1", time.Second, func(ctx context.Context) error { return ping(ctx, c3.tnet, "100.64.0.1:7", "device 1") })
	waitStats(t, m, "stranger's initiation", func(s Stats) bool { return s.UnknownInitiator >= 1 })
	wgmuxtest.CloseDevice(c3.dev)

	// Device 1 goes down and up (wireguard-go closes and reopens its bind); device 2 carries on.
	if err := dev1.dev.Down(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "device 1 down: site 2 → device 2", 3*time.Second, func(ctx context.Context) error { return ping(ctx, c2.tnet, "100.64.0.1:7", "device 2") })
	never(t, "device 1 down: site 1 → device 1", time.Second, func(ctx context.Context) error { return ping(ctx, c1.tnet, "100.64.0.1:7", "device 1") })
	if err := dev1.dev.Up(); err != nil {
		t.Fatal(err)
	}
	check("device 1 down and up")

	// Device 2 is closed and replaced by a new device with the same ID; device 1 carries on.
	wgmuxtest.CloseDevice(dev2.dev)
	eventually(t, "device 2 closed: site 1 → device 1", 3*time.Second, func(ctx context.Context) error { return ping(ctx, c1.tnet, "100.64.0.1:7", "device 1") })
	dev2 = startServer(t, m, 2, node, site2, fmt.Sprintf("127.0.0.1:%d", listenPort(t, c2.dev)))
	check("device 2 replaced")

	// With every device closed the socket is closed and nothing of the Mux runs.
	wgmuxtest.CloseDevice(dev1.dev)
	wgmuxtest.CloseDevice(dev2.dev)
	m.mu.Lock()
	open := m.gen != nil
	m.mu.Unlock()
	if open {
		t.Error("the shared socket is open after every device closed")
	}
	if n := m.goroutines.Load(); n != 0 {
		t.Errorf("%d goroutines of the Mux left", n)
	}
	st = m.Stats()
	t.Logf("at the end: %+v", st)
	if st.IndexCollisions != 0 || st.QueueDrops != 0 || st.HandshakeDrops != 0 {
		t.Errorf("stats %+v", st)
	}
	b := m.Bind(9) // the port is free to open again
	if _, p, err := b.Open(port); err != nil || p != port {
		t.Errorf("reopen on %d: port %d, %v", port, p, err)
	} else if err := b.Close(); err != nil {
		t.Error(err)
	}
}

// TestCloseWhileReadingRealSocket: wireguard-go's Device.Close waits for its receive
// goroutines, so a goroutine blocked in a read of the shared socket must be woken (through
// loopback) when its device closes, while the other devices go on.
func TestCloseWhileReadingRealSocket(t *testing.T) {
	node := testKey(t)
	m := mustNew(t, Config{Socket: conn.NewDefaultBind(), PrivateKey: node}, nil)
	t.Cleanup(func() { // after the devices' cleanups
		if n := m.goroutines.Load(); n != 0 {
			t.Errorf("%d goroutines of the Mux left after every device closed", n)
		}
	})
	devs := map[int64]*wgEnd{}
	for id := range int64(3) {
		devs[id+1] = startServer(t, m, id+1, node, testKey(t), "")
	}
	readers := readersOf(t, m)
	for _, r := range readers {
		if r.proxied || len(r.wakeEps) != 1 || (r.name != "v4" && r.name != "v6") {
			t.Fatalf("reader %s: proxied %v, wake-up addresses %v; want one per family", r.name, r.proxied, r.wakeEps)
		}
	}
	for _, r := range readers {
		var s *session
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no device reads %s", r.name)
			}
			if s = r.turn.Reader(); s != nil && devs[s.id] != nil {
				break
			}
		}
		before := m.Stats().Wakeups
		closed := make(chan struct{})
		go func() { devs[s.id].dev.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("Close of device %d, reading %s, blocked", s.id, r.name)
		}
		delete(devs, s.id)
		if m.Stats().Wakeups == before {
			t.Errorf("closing device %d sent no wake-up", s.id)
		}
	}
	if len(devs) == 0 {
		t.Fatal("no device left open")
	}
}

// TestWakeLosesNoDatagram: StdNetBind's GRO path ends a read at an empty datagram and drops
// what it read with it, so the datagram the Mux sends itself to wake a read must not be empty.
// The socket opens with one queued (the loopback check); a datagram queued behind it before
// anyone reads must arrive.
func TestWakeLosesNoDatagram(t *testing.T) {
	m := mustNew(t, Config{Socket: conn.NewDefaultBind(), PrivateKey: testKey(t)}, nil)
	b := m.Bind(1)
	fns, port := mustOpen(t, b, 0)
	defer b.Close()
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ep, err := b.ParseEndpoint(client.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Send([][]byte{responseMsg(7, 0)}, ep); err != nil {
		t.Fatal(err)
	}
	pkt := transportMsg(7, 64)
	if _, err := client.WriteToUDP(pkt, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}); err != nil {
		t.Fatal(err)
	}
	got := collect(fns, b.BatchSize())
	expect(t, got, pkt, "the datagram behind the wake-up")
	if st := m.Stats(); st.Received != 1 || st.Malformed != 0 {
		t.Errorf("stats %+v; want one datagram, the wake-up not counted", st)
	}
}
