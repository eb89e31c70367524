package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	wgnetstack "golang.zx2c4.com/wireguard/tun/netstack"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/popgate/popgate/gateway/control"
	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
	"github.com/popgate/popgate/store"
)

// mapDialer sends the exit's flows for public-looking test addresses to loopback servers: the
// exit itself refuses loopback destinations from clients.
type mapDialer map[string]string

func (m mapDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	to, ok := m[address]
	if !ok {
		return nil, fmt.Errorf("test dialer: no mapping for %s %s", network, address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// wgClient is an in-process stock wireguard-go client on a userspace (gVisor) TUN.
type wgClient struct {
	dev  *device.Device
	tnet *wgnetstack.Net
}

// startClient configures a wireguard-go client from the wg-quick text popgate printed.
func startClient(t *testing.T, config string) *wgClient {
	t.Helper()
	return startClientOn(t, config, conn.NewDefaultBind())
}

// startClientOn is startClient on the socket bind.
func startClientOn(t *testing.T, config string, bind conn.Bind) *wgClient {
	t.Helper()
	kv := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(config))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		kv[strings.TrimSpace(k)] = append(kv[strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	var addrs []netip.Addr
	for _, a := range strings.Split(kv["Address"][0], ",") {
		addrs = append(addrs, netip.MustParsePrefix(strings.TrimSpace(a)).Addr())
	}
	priv, err := store.ParseKey(kv["PrivateKey"][0])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := store.ParseKey(kv["PublicKey"][0])
	if err != nil {
		t.Fatal(err)
	}
	tun, tnet, err := wgnetstack.CreateNetTUN(addrs, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tun, bind, device.NewLogger(device.LogLevelError, "client: "))
	uapi := fmt.Sprintf("private_key=%x\npublic_key=%x\nendpoint=%s\npersistent_keepalive_interval=25\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n",
		priv[:], pub[:], kv["Endpoint"][0])
	if err := dev.IpcSet(uapi); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wgmuxtest.CloseDevice(dev) })
	return &wgClient{dev: dev, tnet: tnet}
}

// get downloads url through the tunnel and returns the body's SHA-256.
func (c *wgClient) get(ctx context.Context, url string) ([32]byte, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: c.tnet.DialContext, DisableKeepAlives: true}}
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return [32]byte{}, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), nil
}

// udpEcho sends one datagram through the tunnel and waits for the echo.
func (c *wgClient) udpEcho(ctx context.Context, addr string) error {
	ap := netip.MustParseAddrPort(addr)
	uc, err := c.tnet.DialUDPAddrPort(netip.AddrPort{}, ap)
	if err != nil {
		return err
	}
	defer uc.Close()
	deadline, _ := ctx.Deadline()
	uc.SetDeadline(deadline)
	msg := []byte("popgate udp " + addr)
	if _, err := uc.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, 100)
	n, err := uc.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.Equal(buf[:n], msg) {
		return fmt.Errorf("echo %q, want %q", buf[:n], msg)
	}
	return nil
}

// lostAccess waits until the exit's UDP echo no longer answers the client; why is the state its
// peer was put in ("disabled").
func (c *wgClient) lostAccess(t *testing.T, why string) {
	t.Helper()
	eventually(t, why+" peer loses access", 10*time.Second, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if c.udpEcho(ctx, "198.51.100.2:7") == nil {
			return fmt.Errorf("%s peer still reaches the exit", why)
		}
		return nil
	})
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, d time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after %v: %v", what, d, err)
}

// testNode is a node with a controller and a store of its own, as popgate serve wires them.
type testNode struct {
	*Node
	ctrl  *control.Controller
	store *store.Store
}

// Controller returns the node's controller.
func (n *testNode) Controller() *control.Controller { return n.ctrl }

// startNode starts a node with cfg and, on a store in a temporary directory, its
// controller, with client configs for 127.0.0.1:<its port>. Without a ListenPort, the node
// binds a port the system picks (AnyPort). All are closed at the end of the test.
func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	return startNodeEndpoint(t, cfg, "")
}

// startNodeEndpoint is startNode with client configs for endpoint ("": 127.0.0.1:<port>).
func startNodeEndpoint(t *testing.T, cfg Config, endpoint string) *testNode {
	t.Helper()
	ctx := context.Background()
	log := testLogger(t)
	st := openTestStore(t)
	var err error
	if cfg.PrivateKey, err = st.NodePrivateKey(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.Overlay = storeOverlay(st)
	if cfg.ListenPort == 0 {
		cfg.AnyPort = true
	}
	node, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if endpoint == "" { // the port is known once Start has bound it (AnyPort)
		endpoint = fmt.Sprintf("127.0.0.1:%d", node.Config().ListenPort)
	}
	ctrl, err := control.New(control.Config{
		PublicEndpoint: endpoint,
		MTU:            node.Config().MTU,
		Region:         node.Config().Region,
		ClientDNS:      len(node.Config().DNSUpstreams) > 0,
	}, st, node, log.With("component", "control"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() }) // runs before node.Close
	if err := ctrl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &testNode{Node: node, ctrl: ctrl, store: st}
}

// openTestStore opens a store in a temporary directory, closed at the end of the test.
func openTestStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "popgate.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// storeOverlay is the overlay of the installation st belongs to.
func storeOverlay(st *store.Store) plane.Overlay {
	var ov plane.Overlay
	ov.V4, ov.V6 = st.OverlayPrefixes()
	ov.Gateway4, ov.Gateway6 = st.GatewayAddrs()
	return ov
}

// testServers starts the loopback servers the exit's test dialer maps the test's "internet"
// addresses to: HTTP serving payload on :80 and a UDP echo on :7.
func testServers(t *testing.T, payload []byte) mapDialer {
	t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(payload) })}
	go hs.Serve(hl)
	t.Cleanup(func() { hs.Close() })
	ul, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ul.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := ul.ReadFrom(buf)
			if err != nil {
				return
			}
			ul.WriteTo(buf[:n], from)
		}
	}()
	return mapDialer{
		"198.51.100.2:80":    hl.Addr().String(),
		"[2001:db8:1::2]:80": hl.Addr().String(),
		"198.51.100.2:7":     ul.LocalAddr().String(),
		"[2001:db8:1::2]:7":  ul.LocalAddr().String(),
	}
}

// TestNodeTrimsIdlePeers: a peer idle past the session lifetime leaves its device; the same
// stock client, not reconfigured, connects again on its next packets (its handshake
// materialises the peer).
func TestNodeTrimsIdlePeers(t *testing.T) {
	cfg := Config{
		Interface:  fmt.Sprintf("pgt%d", os.Getpid()%100000),
		ExitMode:   ExitUserspace,
		exitDialer: testServers(t, []byte("hello")),
		sweepEvery: 200 * time.Millisecond,
		trimEvery:  200 * time.Millisecond,
		peerIdle:   2 * time.Second,
	}
	node, network := startMemNode(t, cfg)
	ctx := context.Background()
	ctrl := node.Controller()
	if _, err := ctrl.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	p, config, err := ctrl.AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	held := func() bool {
		td := node.snap.Load().tenants[p.TenantID].dev
		td.mu.Lock()
		defer td.mu.Unlock()
		_, ok := td.peers[p.PublicKey]
		return ok
	}
	if held() {
		t.Fatal("a peer that never connected is in the device: peers must be materialised on handshake")
	}
	client := network.startClient(t, config)
	eventually(t, "first contact", 20*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })
	if !held() {
		t.Fatal("the connected peer is not in its device")
	}
	eventually(t, "trim of the idle peer", 60*time.Second, func(context.Context) error {
		if held() {
			return errors.New("still in the device")
		}
		return nil
	})
	if pi, err := ctrl.Peer(ctx, "acme", "laptop"); err != nil || pi.LastHandshake.IsZero() {
		t.Errorf("after the trim, the peer's last handshake is forgotten: %+v, %v", pi, err)
	}
	eventually(t, "the trimmed client again", 40*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })
}

// TestNodeServesStockClient runs a node and an in-process wireguard-go client configured only
// from the printed config, over loopback UDP, without root.
func TestNodeServesStockClient(t *testing.T) {
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	want := sha256.Sum256(payload)
	dialer := testServers(t, payload)

	cfg := Config{
		Interface:    fmt.Sprintf("pgu%d", os.Getpid()%100000),
		ExitMode:     ExitUserspace, // the kernel exit would change the host's own firewall
		DNSUpstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")},
		exitDialer:   dialer,
	}
	node := startNode(t, cfg)
	ctx := context.Background()

	ctrl := node.Controller()
	if _, err := ctrl.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	_, config, err := ctrl.AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	client := startClient(t, config)

	for _, url := range []string{"http://198.51.100.2/file", "http://[2001:db8:1::2]/file"} {
		eventually(t, "download "+url, 20*time.Second, func(ctx context.Context) error {
			got, err := client.get(ctx, url)
			if err == nil && got != want {
				return fmt.Errorf("checksum %x, want %x", got, want)
			}
			return err
		})
	}
	for _, addr := range []string{"198.51.100.2:7", "[2001:db8:1::2]:7"} {
		eventually(t, "udp echo "+addr, 10*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, addr) })
	}

	peers, err := ctrl.ListPeers(ctx, "acme")
	if err != nil || len(peers) != 1 {
		t.Fatalf("ListPeers = %v, %v", peers, err)
	}
	if p := peers[0]; !p.Online || p.RxBytes == 0 || p.TxBytes < 4<<20 || p.LastHandshake.IsZero() || p.RxPackets == 0 || p.TxPackets < (4<<20)/1420 {
		t.Errorf("peer state after traffic: online=%v rx=%d tx=%d packets rx=%d tx=%d handshake=%v", p.Online, p.RxBytes, p.TxBytes, p.RxPackets, p.TxPackets, p.LastHandshake)
	}
	st, err := ctrl.Status(ctx)
	if err != nil || st.PeersOnline != 1 || st.PeersTotal != 1 {
		t.Errorf("Status = %+v, %v", st, err)
	}
	checkWgctrl(t, cfg.Interface, peers[0])

	// Disabling cuts the peer off at once; enabling brings it back without a new config.
	if _, err := ctrl.SetPeerEnabled(ctx, "acme", "laptop", false); err != nil {
		t.Fatal(err)
	}
	client.lostAccess(t, "disabled")
	if _, err := ctrl.SetPeerEnabled(ctx, "acme", "laptop", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "re-enabled peer", 30*time.Second, func(ctx context.Context) error { return client.udpEcho(ctx, "198.51.100.2:7") })

	// An expiry date cuts the peer off when it passes, like disable.
	at := time.Now().Add(time.Second)
	if _, err := ctrl.SetPeerExpiry(ctx, "acme", "laptop", &at); err != nil {
		t.Fatal(err)
	}
	client.lostAccess(t, "expired")

	if err := ctrl.RemovePeer(ctx, "acme", "laptop"); err != nil {
		t.Fatal(err)
	}
	client.lostAccess(t, "removed")
}

// checkWgctrl reads the device through its UAPI socket with wgctrl, as monitoring tools do.
// Creating /var/run/wireguard needs root.
func checkWgctrl(t *testing.T, iface string, want control.PeerInfo) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: skipping the wgctrl check (the UAPI socket lives in /var/run/wireguard)")
		return
	}
	wc, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	d, err := wc.Device(iface)
	if err != nil {
		t.Fatalf("wgctrl: %v", err)
	}
	if len(d.Peers) != 1 || d.Peers[0].PublicKey != wgtypes.Key(want.PublicKey) {
		t.Fatalf("wgctrl sees peers %+v, want only %s", d.Peers, want.PublicKey)
	}
	if p := d.Peers[0]; p.ReceiveBytes == 0 || p.LastHandshakeTime.IsZero() || len(p.AllowedIPs) != 2 {
		t.Errorf("wgctrl peer state: %+v", p)
	}
}

func TestNodeDeviceBufferBytes(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, Config{Interface: fmt.Sprintf("pgc%d", os.Getpid()%100000), ExitMode: ExitUserspace})
	c := n.Controller()
	if _, err := c.AddTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if got := n.DeviceBufferBytes(); got != 0 {
		t.Errorf("no device yet: %d bytes", got)
	}
	if _, _, err := c.AddPeer(ctx, control.AddPeerRequest{Tenant: "acme", Name: "laptop"}); err != nil {
		t.Fatal(err)
	}
	// A receive batch per address family of the socket (a ReceiveFunc each, through the
	// Mux) and a read batch (the TUN's).
	families := n.holder.Receivers()
	if families < 1 || families > 2 {
		t.Fatalf("the socket has %d receive functions, want 1 or 2", families)
	}
	if got, want := n.DeviceBufferBytes(), uint64((families+1)*conn.IdealBatchSize)*device.MaxMessageSize; got != want {
		t.Errorf("one device: %d bytes, want %d", got, want)
	}
}

// TestNodeAnyPort: with AnyPort the node binds a port the system picks and reports it, in
// Config and Report, once Start has bound it; AnyPort with a ListenPort is refused.
func TestNodeAnyPort(t *testing.T) {
	n := startBareNode(t, Config{})
	port := n.Config().ListenPort
	if port < 1 || port > 65535 {
		t.Fatalf("Config().ListenPort after Start = %d, want the bound port", port)
	}
	if got := n.Report().Node.ListenPort; got != port {
		t.Errorf("Report().Node.ListenPort = %d, Config().ListenPort = %d", got, port)
	}
	if c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		c.Close()
		t.Errorf("port %d is free: the node does not hold it", port)
	}
	c := Config{ListenPort: 5, AnyPort: true}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "AnyPort") {
		t.Errorf("Validate of ListenPort 5 with AnyPort: %v, want an error naming both", err)
	}
}
