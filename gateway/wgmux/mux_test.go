package wgmux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/gateway/internal/readturn"
	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
	"github.com/popgate/popgate/store"
)

// --- helpers ---

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testKey(t testing.TB) store.Key {
	t.Helper()
	k, err := store.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestMux returns a Mux on inner whose clock the test sets, and checks at the end of the
// test that no goroutine of it is left.
func newTestMux(t testing.TB, inner conn.Bind, node store.Key, route func(store.Key) (int64, bool)) (*Mux, *testClock) {
	t.Helper()
	clk := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := mustNew(t, Config{Socket: inner, PrivateKey: node, Route: route}, nil)
	m.now, m.epoch = clk.Now, clk.Now()
	t.Cleanup(func() {
		if n := m.goroutines.Load(); n != 0 {
			t.Errorf("%d goroutines of the Mux still running at the end of the test", n)
		}
	})
	return m, clk
}

// mustNew is New, failing the test on an error.
func mustNew(t testing.TB, cfg Config, log *slog.Logger) *Mux {
	t.Helper()
	m, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustOpen(t testing.TB, b conn.Bind, port uint16) ([]conn.ReceiveFunc, uint16) {
	t.Helper()
	fns, p, err := b.Open(port)
	if err != nil {
		t.Fatalf("Open(%d): %v", port, err)
	}
	return fns, p
}

// openDevice opens device id of m, closed when the test ends, and has it send a handshake
// response with sender index index, so that the Mux routes index's datagrams to it.
func openDevice(t testing.TB, m *Mux, id int64, index uint32) (*Bind, []conn.ReceiveFunc) {
	t.Helper()
	b := m.Bind(id)
	fns, _ := mustOpen(t, b, 0)
	t.Cleanup(func() { b.Close() })
	b.Send([][]byte{responseMsg(index, 0)}, wgmuxtest.Endpoint{})
	return b, fns
}

// collect reads every ReceiveFunc of one device until it returns an error and sends a copy
// of each datagram to the returned channel.
func collect(fns []conn.ReceiveFunc, batch int) <-chan []byte {
	out := make(chan []byte, 4096)
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs := make([][]byte, batch)
			for i := range bufs {
				bufs[i] = make([]byte, 65535)
			}
			sizes := make([]int, batch)
			eps := make([]conn.Endpoint, batch)
			for {
				n, err := fn(bufs, sizes, eps)
				if err != nil {
					return
				}
				for i := range n {
					if sizes[i] > 0 { // as wireguard-go, skip what the Mux took out
						out <- bytes.Clone(bufs[i][:sizes[i]])
					}
				}
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()
	return out
}

func expect(t *testing.T, ch <-chan []byte, want []byte, what string) {
	t.Helper()
	select {
	case got := <-ch:
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: got % x…, want % x…", what, got[:min(len(got), 12)], want[:min(len(want), 12)])
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing arrived", what)
	}
}

func expectNothing(t *testing.T, ch <-chan []byte, what string) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("%s: got % x…, want nothing", what, got[:min(len(got), 12)])
	case <-time.After(50 * time.Millisecond):
	}
}

// waitStats polls Stats until cond holds.
func waitStats(t *testing.T, m *Mux, what string, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := m.Stats()
		if cond(st) {
			// Stats reads one counter after another, not a snapshot: what cond saw may have
			// been counted after a counter read earlier had moved (a hit flushed, the device
			// answering, the confirmation counted, all between two loads). A second read
			// has everything that happened before cond held.
			return m.Stats()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, st)
		}
		time.Sleep(time.Millisecond)
	}
}

// Datagram builders. Contents other than type and indices are arbitrary.

func transportMsg(receiver uint32, payload int) []byte {
	b := make([]byte, 16+payload+16)
	binary.LittleEndian.PutUint32(b, typeTransport)
	binary.LittleEndian.PutUint32(b[4:], receiver)
	binary.LittleEndian.PutUint64(b[8:], 7)
	for i := 16; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

func responseMsg(sender, receiver uint32) []byte {
	b := make([]byte, responseSize)
	binary.LittleEndian.PutUint32(b, typeResponse)
	binary.LittleEndian.PutUint32(b[4:], sender)
	binary.LittleEndian.PutUint32(b[8:], receiver)
	return b
}

func cookieReplyMsg(receiver uint32) []byte {
	b := make([]byte, cookieReplySize)
	binary.LittleEndian.PutUint32(b, typeCookieReply)
	binary.LittleEndian.PutUint32(b[4:], receiver)
	return b
}

// junkInitiation is an initiation with a valid mac1 for nodePub and a static that decrypts
// for nobody.
func junkInitiation(nodePub store.Key, sender uint32) []byte {
	b := make([]byte, initiationSize)
	binary.LittleEndian.PutUint32(b, typeInitiation)
	binary.LittleEndian.PutUint32(b[4:], sender)
	for i := 8; i < initMAC1Off; i++ {
		b[i] = byte(i * 7)
	}
	setMAC1(nodePub, b)
	return b
}

func setMAC1(nodePub store.Key, b []byte) {
	key := hashOf([]byte(labelMAC1), nodePub[:])
	c := newMAC1Checker(&key)
	c.h.Reset()
	c.h.Write(b[:initMAC1Off])
	c.h.Sum(b[initMAC1Off:initMAC1Off])
}

// --- tests ---

func TestOpenCloseSharesInnerBind(t *testing.T) {
	before := runtime.NumGoroutine()
	inner := wgmuxtest.NewSocket(8)
	m, _ := newTestMux(t, inner, testKey(t), nil)
	b1, b2 := m.Bind(1), m.Bind(2)

	fns1, p1 := mustOpen(t, b1, 0)
	if !inner.IsOpen() || inner.Opens() != 1 {
		t.Fatalf("inner bind: open %v after %d opens, want open after 1", inner.IsOpen(), inner.Opens())
	}
	if len(fns1) != 2 {
		t.Fatalf("got %d receive funcs, want 2, one per receive func of the inner bind", len(fns1))
	}
	if _, p2 := mustOpen(t, b2, p1); p2 != p1 {
		t.Fatalf("second Open(%d) returned port %d", p1, p2)
	}
	if inner.Opens() != 1 {
		t.Fatalf("the second virtual Open opened the inner bind again (%d opens)", inner.Opens())
	}

	// Errors: a bind already open, another bind of an open device, another port.
	if _, _, err := b1.Open(0); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Errorf("Open of an open bind: %v, want ErrBindAlreadyOpen", err)
	}
	if _, _, err := m.Bind(2).Open(0); !errors.Is(err, ErrDeviceBusy) {
		t.Errorf("Open of a second bind for device 2: %v, want ErrDeviceBusy", err)
	}
	if _, _, err := m.Bind(3).Open(p1 + 1); !errors.Is(err, ErrPortMismatch) {
		t.Errorf("Open of another port: %v, want ErrPortMismatch", err)
	}
	b3 := m.Bind(3)
	if _, p3 := mustOpen(t, b3, 0); p3 != p1 {
		t.Errorf("Open(0) while open on %d returned %d", p1, p3)
	}
	if err := m.Bind(3).Close(); err != nil { // a bind never opened: no effect on device 3
		t.Errorf("Close of a bind never opened: %v", err)
	}

	// Pass-throughs.
	if err := b2.SetMark(42); err != nil || inner.Mark() != 42 {
		t.Errorf("SetMark: %v, inner mark %d", err, inner.Mark())
	}
	if got := b1.BatchSize(); got != 8 {
		t.Errorf("BatchSize %d, want the inner bind's 8", got)
	}
	if ep, err := b1.ParseEndpoint("198.51.100.7:51820"); err != nil || ep.DstToString() != "198.51.100.7:51820" {
		t.Errorf("ParseEndpoint: %v, %v", ep, err)
	}

	// Closing one device leaves the socket open; its ReceiveFuncs return ErrClosed, Sends fail.
	done := make(chan error, 1)
	go func() { _, err := fns1[0](make([][]byte, 8), make([]int, 8), make([]conn.Endpoint, 8)); done <- err }()
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked ReceiveFunc after Close returned %v, want net.ErrClosed", err)
	}
	if err := b1.Send([][]byte{transportMsg(1, 8)}, wgmuxtest.Endpoint{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close: %v, want net.ErrClosed", err)
	}
	if err := b1.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !inner.IsOpen() {
		t.Fatal("the inner bind closed while device 2 and 3 were open")
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	if !inner.IsOpen() {
		t.Fatal("the inner bind closed while device 3 was open")
	}
	if err := b3.Close(); err != nil {
		t.Fatal(err)
	}
	if inner.IsOpen() || inner.Closes() != 1 {
		t.Fatalf("inner bind: open %v after %d closes, want closed once after the last device", inner.IsOpen(), inner.Closes())
	}
	if n := m.goroutines.Load(); n != 0 {
		t.Fatalf("%d goroutines left after the last Close", n)
	}

	// Reopen: wireguard-go closes and opens on every BindUpdate.
	fns1, p := mustOpen(t, b1, p1)
	if p != p1 || inner.Opens() != 2 {
		t.Fatalf("reopen: port %d (want %d), %d inner opens (want 2)", p, p1, inner.Opens())
	}
	got := collect(fns1, 8)
	if err := b1.Send([][]byte{responseMsg(0xabcd, 9)}, wgmuxtest.Endpoint{}); err != nil {
		t.Fatal(err)
	}
	pkt := transportMsg(0xabcd, 40)
	inner.Deliver(pkt)
	expect(t, got, pkt, "after reopen")
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-got; ok {
		t.Fatal("datagram after Close")
	}
	if n := m.goroutines.Load(); n != 0 {
		t.Fatalf("%d goroutines left after the last Close", n)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines before, %d after", before, n)
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string // in the error: the field to fix
	}{
		{"no socket", Config{PrivateKey: testKey(t)}, "Config.Socket"},
		{"no private key", Config{Socket: wgmuxtest.NewSocket(1)}, "Config.PrivateKey"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := New(c.cfg, nil)
			if m != nil || err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, %v; want an error naming %s", m, err, c.want)
			}
		})
	}
}

// TestCloseClosesEveryBind: Mux.Close ends the reads of the devices still open, closes the
// socket, leaves no goroutine, and no bind opens after it.
func TestCloseClosesEveryBind(t *testing.T) {
	inner := wgmuxtest.NewSocket(8)
	m, _ := newTestMux(t, inner, testKey(t), nil)
	b1, b2 := m.Bind(1), m.Bind(2)
	if n := b1.Receivers(); n != 0 {
		t.Errorf("a bind not open has %d receive functions, want 0", n)
	}
	fns1, _ := mustOpen(t, b1, 0)
	mustOpen(t, b2, 0)
	if n := b1.Receivers(); n != len(fns1) || n != 2 {
		t.Errorf("Receivers %d, Open returned %d receive functions; want 2 (IPv4 and IPv6)", n, len(fns1))
	}
	done := callOnce(fns1[0], 8)
	waitReading(t, readersOf(t, m)[0], sessionOf(b1), "before Close")

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("the read of an open device returned %v at Close, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the read of an open device still blocked after Close")
	}
	if inner.IsOpen() || inner.Closes() != 1 {
		t.Errorf("socket open %v after %d closes, want closed once", inner.IsOpen(), inner.Closes())
	}
	if n := m.goroutines.Load(); n != 0 {
		t.Errorf("%d goroutines of the Mux left after Close", n)
	}
	if n := b1.Receivers(); n != 0 {
		t.Errorf("%d receive functions after Close, want 0", n)
	}
	if err := b1.Send([][]byte{transportMsg(1, 8)}, wgmuxtest.Endpoint{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close: %v, want net.ErrClosed", err)
	}
	if err := b2.Close(); err != nil { // closed already: nothing to do
		t.Errorf("a bind's Close after the Mux's: %v", err)
	}
	if _, _, err := m.Bind(3).Open(0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Open after Close: %v, want net.ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if inner.Opens() != 1 {
		t.Errorf("the socket opened %d times, want once", inner.Opens())
	}
}

func TestDemuxByLearnedIndex(t *testing.T) {
	inner := wgmuxtest.NewSocket(16)
	node := testKey(t)
	m, _ := newTestMux(t, inner, node, nil)
	b1, b2 := m.Bind(1), m.Bind(2)
	fns1, _ := mustOpen(t, b1, 0)
	fns2, _ := mustOpen(t, b2, 0)
	got1, got2 := collect(fns1, 16), collect(fns2, 16)
	defer b2.Close()
	defer b1.Close()
	ep := wgmuxtest.At("203.0.113.9:4444")

	// Device 1 initiates (sender 0x11111111), device 2 responds (sender 0x22222222); a
	// transport datagram is not learned from.
	var init1 [initiationSize]byte
	binary.LittleEndian.PutUint32(init1[:], typeInitiation)
	binary.LittleEndian.PutUint32(init1[4:], 0x11111111)
	if err := b1.Send([][]byte{init1[:], transportMsg(0x33333333, 20)}, ep); err != nil {
		t.Fatal(err)
	}
	if err := b2.Send([][]byte{responseMsg(0x22222222, 0x99)}, ep); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Learned != 2 || st.Indices != 2 {
		t.Fatalf("learned %d, %d indices; want 2, 2", st.Learned, st.Indices)
	}
	for range 3 {
		<-inner.Sent() // every datagram reached the inner bind
	}

	cases := []struct {
		name string
		pkt  []byte
		want <-chan []byte
	}{
		{"transport to device 1's index", transportMsg(0x11111111, 100), got1},
		{"transport to device 2's index", transportMsg(0x22222222, 1300), got2},
		{"keepalive to device 2", transportMsg(0x22222222, 0), got2},
		{"response to device 1's initiation", responseMsg(0x5555, 0x11111111), got1},
		{"cookie reply to device 2", cookieReplyMsg(0x22222222), got2},
	}
	for _, c := range cases {
		inner.Deliver(c.pkt)
		expect(t, c.want, c.pkt, c.name)
	}
	inner.Deliver(transportMsg(0x33333333, 10)) // only ever sent as a receiver index
	inner.Deliver(responseMsg(0x11111111, 0x4444))
	st := waitStats(t, m, "unknown indices", func(s Stats) bool { return s.UnknownIndex == 2 })
	if st.Transports != 4 || st.Responses != 2 || st.CookieReplies != 1 || st.Delivered != 5 {
		t.Errorf("stats %+v", st)
	}
	expectNothing(t, got1, "device 1")
	expectNothing(t, got2, "device 2")

	// Batches mixing devices, over both families. Either device's goroutine may read, so only
	// the set is checked, not the order (as with wireguard-go's own IPv4 and IPv6 readers).
	want := map[string]int{}
	for i := range 10 {
		p1, p2 := transportMsg(0x11111111, 50+i), transportMsg(0x22222222, 60+i)
		want["1"+string(p1)]++
		want["2"+string(p2)]++
		inner.Deliver(p1)
		inner.Deliver6(p2)
	}
	for range 20 {
		select {
		case p := <-got1:
			want["1"+string(p)]--
		case p := <-got2:
			want["2"+string(p)]--
		case <-time.After(5 * time.Second):
			t.Fatal("mixed batches: datagrams missing")
		}
	}
	for k, n := range want {
		if n != 0 {
			t.Fatalf("mixed batches: device %s got % x… %d times too few", k[:1], k[1:13], n)
		}
	}

	// Device 2 now sends an initiation with device 1's index: collision, the newest wins.
	binary.LittleEndian.PutUint32(init1[4:], 0x11111111)
	if err := b2.Send([][]byte{init1[:]}, ep); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.IndexCollisions != 1 {
		t.Errorf("collisions %d, want 1", st.IndexCollisions)
	}
	pkt := transportMsg(0x11111111, 33)
	inner.Deliver(pkt)
	expect(t, got2, pkt, "index taken over by device 2")
	expectNothing(t, got1, "device 1 after the collision")

	// An index of a device that closed: dropped as NoDevice, the socket still serves device 1.
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	inner.Deliver(transportMsg(0x22222222, 10))
	waitStats(t, m, "no device", func(s Stats) bool { return s.NoDevice == 1 })
}

func TestIndexExpiry(t *testing.T) {
	inner := wgmuxtest.NewSocket(4)
	m, clk := newTestMux(t, inner, testKey(t), nil)
	b := m.Bind(7)
	fns, _ := mustOpen(t, b, 0)
	got := collect(fns, 4)
	defer b.Close()
	ep := wgmuxtest.Endpoint{}

	b.Send([][]byte{responseMsg(1, 0)}, ep)
	b.Send([][]byte{responseMsg(2, 0)}, ep)

	// Index 1 is used every 4 minutes and stays; index 2 is idle and expires after 5.
	for i := range 3 {
		clk.Advance(4 * time.Minute)
		pkt := transportMsg(1, i)
		inner.Deliver(pkt)
		expect(t, got, pkt, "index in use")
	}
	inner.Deliver(transportMsg(2, 0))
	waitStats(t, m, "expired index", func(s Stats) bool { return s.UnknownIndex == 1 })
	expectNothing(t, got, "expired index")
	if n := m.Stats().Indices; n != 2 {
		t.Fatalf("%d indices before the sweep, want 2", n)
	}
	m.sweep()
	if n := m.Stats().Indices; n != 1 {
		t.Fatalf("%d indices after the sweep, want 1", n)
	}

	// The sweep also runs from learn, at most every 30 s.
	clk.Advance(6 * time.Minute)
	b.Send([][]byte{responseMsg(3, 0)}, ep)
	if n := m.Stats().Indices; n != 1 {
		t.Fatalf("%d indices after a send 6 minutes later, want only the new one", n)
	}
}

func TestIndexTableBounded(t *testing.T) {
	m, clk := newTestMux(t, wgmuxtest.NewSocket(1), testKey(t), nil)
	m.maxIndices = 100
	for i := range uint32(1000) {
		if i%100 == 0 {
			clk.Advance(time.Second) // the older entries are the ones evicted
		}
		m.learn(int64(i%3), i)
	}
	st := m.Stats()
	if st.Indices != 100 || st.IndexEvictions != 900 {
		t.Fatalf("%d indices, %d evictions; want 100, 900", st.Indices, st.IndexEvictions)
	}
	m.idxMu.RLock()
	defer m.idxMu.RUnlock()
	recent := 0
	for i := range m.idx {
		if i >= 900 {
			recent++
		}
	}
	if recent < 50 {
		t.Errorf("only %d of the 100 newest indices kept; eviction should prefer old ones", recent)
	}
}

func TestQueueFullDropsWithoutBlocking(t *testing.T) {
	inner := wgmuxtest.NewSocket(16)
	m, _ := newTestMux(t, inner, testKey(t), nil)
	m.queueLimit = 32
	slow, fast := m.Bind(1), m.Bind(2)
	mustOpen(t, slow, 0) // nobody reads device 1
	fns, _ := mustOpen(t, fast, 0)
	got := collect(fns, 16)
	defer fast.Close()
	defer slow.Close()
	slow.Send([][]byte{responseMsg(1, 0)}, wgmuxtest.Endpoint{})
	fast.Send([][]byte{responseMsg(2, 0)}, wgmuxtest.Endpoint{})

	for i := range 200 {
		inner.Deliver(transportMsg(1, i))
	}
	pkt := transportMsg(2, 5)
	inner.Deliver(pkt)
	expect(t, got, pkt, "device 2 behind a stalled device 1")
	st := waitStats(t, m, "queue drops", func(s Stats) bool { return s.Received == 201 })
	if st.QueueDrops < 200-32 || st.QueueDrops+st.Delivered != 201 {
		t.Errorf("queue drops %d, delivered %d; want ≥ 168 drops and 201 in all", st.QueueDrops, st.Delivered)
	}
}

func TestMalformedDatagrams(t *testing.T) {
	node := testKey(t)
	inner := wgmuxtest.NewSocket(1)
	m, _ := newTestMux(t, inner, node, nil)
	b := m.Bind(1)
	fns, _ := mustOpen(t, b, 0)
	got := collect(fns, 1)
	defer b.Close()
	b.Send([][]byte{responseMsg(1, 0)}, wgmuxtest.Endpoint{})

	badMAC := junkInitiation(node.PublicKey(), 1)
	badMAC[initMAC1Off] ^= 1
	otherNode := junkInitiation(testKey(t).PublicKey(), 1)
	reserved := transportMsg(1, 4)
	reserved[1] = 1 // a reserved byte set: not type 4 to wireguard-go either
	cases := []struct {
		name    string
		pkt     []byte
		counter counter
	}{
		{"one byte", []byte{4}, malformed},
		{"three bytes", []byte{4, 0, 0}, malformed},
		{"type only", []byte{4, 0, 0, 0}, malformed},
		{"transport below a keepalive", transportMsg(1, 0)[:31], malformed},
		{"initiation too long", append(junkInitiation(node.PublicKey(), 1), 0), malformed},
		{"initiation too short", junkInitiation(node.PublicKey(), 1)[:147], malformed},
		{"response too short", responseMsg(1, 1)[:91], malformed},
		{"cookie reply too long", append(cookieReplyMsg(1), 0), malformed},
		{"type 0", make([]byte, 64), malformed},
		{"type 5", append([]byte{5, 0, 0, 0}, make([]byte, 60)...), malformed},
		{"reserved byte set", reserved, malformed},
		{"initiation with a flipped mac1", badMAC, badMAC1},
		{"initiation for another node", otherNode, badMAC1},
		{"initiation whose static does not decrypt", junkInitiation(node.PublicKey(), 1), badInitiation},
	}
	for _, c := range cases {
		before := m.counters[c.counter].Load()
		inner.Deliver(c.pkt)
		waitStats(t, m, c.name, func(Stats) bool { return m.counters[c.counter].Load() == before+1 })
	}
	expectNothing(t, got, "malformed datagrams")
	st := m.Stats()
	if st.Received != uint64(len(cases)) || st.Delivered != 0 {
		t.Errorf("received %d, delivered %d; want %d, 0", st.Received, st.Delivered, len(cases))
	}
}

// syncHarness drives sort and routeInitiation on the calling goroutine, without an inner
// bind: as if device h.s[0]'s goroutine had read a batch. For the fuzz target and benchmarks.
type syncHarness struct {
	m     *Mux
	g     *gen
	rc    *receiver
	s     []*session
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
}

func newSyncHarness(t testing.TB, node store.Key, route func(store.Key) (int64, bool), devices ...int64) *syncHarness {
	m, _ := newTestMux(t, wgmuxtest.NewSocket(conn.IdealBatchSize), node, route)
	h := &syncHarness{m: m}
	h.g = &gen{
		readers: []*reader{{turn: readturn.New[session]()}},
		stop:    make(chan struct{}),
	}
	h.g.hsCond = sync.NewCond(&h.g.hsMu)
	m.mu.Lock()
	for _, id := range devices {
		s := &session{
			id:     id,
			gen:    h.g,
			queue:  make(chan *batch, m.queueLimit),
			closed: make(chan struct{}),
			rd:     []sessionReader{{grant: make(chan struct{}, 1)}},
		}
		m.sessions[id] = s
		h.s = append(h.s, s)
	}
	m.publishDevicesLocked()
	m.mu.Unlock()
	h.rc = m.newReceiver(h.g, h.g.readers[0], h.s[0])
	h.bufs = make([][]byte, conn.IdealBatchSize)
	for i := range h.bufs {
		h.bufs[i] = make([]byte, device.MaxMessageSize)
	}
	h.sizes = make([]int, conn.IdealBatchSize)
	h.eps = make([]conn.Endpoint, conn.IdealBatchSize)
	return h
}

// run sorts pkts as one batch read by device h.s[0], routes the initiations, and drains the
// device queues; it returns the datagrams each device got.
func (h *syncHarness) run(pkts [][]byte, out map[int64][][]byte) {
	for i, p := range pkts {
		h.sizes[i] = copy(h.bufs[i], p)
		h.eps[i] = wgmuxtest.Endpoint{}
	}
	end, _ := h.rc.sort(h.bufs, h.sizes, h.eps, len(pkts))
	for i := range end {
		if h.sizes[i] > 0 && out != nil {
			out[h.s[0].id] = append(out[h.s[0].id], bytes.Clone(h.bufs[i][:h.sizes[i]]))
		}
	}
	var (
		c   counts
		msg [initiationSize]byte
	)
	for {
		ep, ok := h.m.hs.take(&msg)
		if !ok {
			break
		}
		h.m.routeInitiation(h.g, &msg, ep, &c)
	}
	h.m.flush(&c)
	for _, s := range h.s {
		for {
			select {
			case b := <-s.queue:
				for i := range b.n {
					if out != nil {
						out[s.id] = append(out[s.id], bytes.Clone(b.bufs[i][:b.sizes[i]]))
					}
				}
				s.queued.Add(-int64(b.n))
				h.m.releaseBatch(b)
				continue
			default:
			}
			break
		}
	}
}

func FuzzDemux(f *testing.F) {
	node := testKey(f)
	client := testKey(f)
	real := captureInitiation(f, client, node.PublicKey())
	f.Add(real)
	f.Add(junkInitiation(node.PublicKey(), 5))
	f.Add(transportMsg(0x01020304, 64))
	f.Add(responseMsg(9, 0x01020304))
	f.Add(cookieReplyMsg(0x01020304))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{4, 0, 0, 0, 4, 3, 2, 1})
	route := func(k store.Key) (int64, bool) { return 1, k == client.PublicKey() }
	h := newSyncHarness(f, node, route, 1, 2)
	h.m.learn(1, 0x01020304)
	h.m.learn(2, 0x05060708)
	h.m.learn(3, 0x0a0b0c0d) // a device that is not open
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > len(h.bufs[0]) {
			return
		}
		before := h.m.Stats()
		// The datagram alone, and split in two at a point it chooses.
		pkts := [][]byte{data}
		if len(data) > 1 {
			cut := int(data[len(data)-1]) % len(data)
			pkts = append(pkts, data[:cut], data[cut:])
		}
		got := map[int64][][]byte{}
		h.run(pkts, got)
		after := h.m.Stats()
		received := after.Received - before.Received
		handled := (after.Delivered - before.Delivered) + (after.Malformed - before.Malformed) +
			(after.BadMAC1 - before.BadMAC1) + (after.BadInitiation - before.BadInitiation) +
			(after.UnknownInitiator - before.UnknownInitiator) + (after.UnknownIndex - before.UnknownIndex) +
			(after.NoDevice - before.NoDevice) + (after.QueueDrops - before.QueueDrops) + (after.HandshakeDrops - before.HandshakeDrops) +
			(after.CookiesSent - before.CookiesSent) + (after.CookieLimited - before.CookieLimited) + (after.RateLimited - before.RateLimited)
		nonEmpty := 0
		for _, p := range pkts {
			if len(p) > 0 {
				nonEmpty++
			}
		}
		if received != uint64(nonEmpty) || handled != received {
			t.Fatalf("%d datagrams: received %d, handled %d", nonEmpty, received, handled)
		}
		for id, ps := range got {
			for _, p := range ps {
				if !bytes.Equal(p, data) && !bytes.Equal(p, pkts[1]) && !bytes.Equal(p, pkts[len(pkts)-1]) {
					t.Fatalf("device %d got a datagram that was not sent", id)
				}
			}
		}
	})
}

// --- device goroutines reading the shared socket ---

func sessionOf(b *Bind) *session { return b.sess.Load() }

// readersOf returns the readers of the open inner bind: IPv4, then IPv6.
func readersOf(t *testing.T, m *Mux) []*reader {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen == nil {
		t.Fatal("the inner bind is not open")
	}
	return m.gen.readers
}

// waitReading waits until the goroutine of s is in a read of r.
func waitReading(t *testing.T, r *reader, s *session, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !r.turn.Reading(s); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the goroutine of device %d is not reading %s (reading %v, kept for %v, free %v)", what, s.id, r.name, r.turn.Reader(), r.reserved.Load(), r.turn.Free())
		}
		time.Sleep(time.Millisecond)
	}
}

// callOnce calls fn once on a goroutine of its own and returns what it returned.
func callOnce(fn conn.ReceiveFunc, batch int) <-chan error {
	done := make(chan error, 1)
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	go func() {
		_, err := fn(bufs, make([]int, batch), make([]conn.Endpoint, batch))
		done <- err
	}()
	return done
}

// TestReaderSortsForBothDevices: whichever device's goroutine holds the token reads the
// socket; each device gets its own datagrams, directly when it read them and queued when the
// other did, and the token follows the traffic.
func TestReaderSortsForBothDevices(t *testing.T) {
	inner := wgmuxtest.NewSocket(8)
	m, _ := newTestMux(t, inner, testKey(t), nil)
	b1, fns1 := openDevice(t, m, 1, 0x1111)
	b2, fns2 := openDevice(t, m, 2, 0x2222)
	s1, s2 := sessionOf(b1), sessionOf(b2)
	r4 := readersOf(t, m)[0]

	// Only device 1 reads IPv4 at first, so its goroutine holds the token.
	got1 := collect(fns1[:1], 8)
	var got2 <-chan []byte
	for _, st := range []struct {
		name   string
		reader *session // whose goroutine reads it
		pkt    []byte
		to     int    // device
		queued uint64 // Stats.Queued after it
	}{
		{"device 1 reads its own", s1, transportMsg(0x1111, 10), 1, 0},
		// From here device 2 reads too; device 1 has the token, reads for device 2 and leaves
		// the token to it, as device 2 got that batch.
		{"device 1 reads for device 2", s1, transportMsg(0x2222, 20), 2, 1},
		{"device 2 reads its own", s2, transportMsg(0x2222, 30), 2, 1},
		{"device 2 reads its own again", s2, responseMsg(9, 0x2222), 2, 1},
		{"device 2 reads for device 1", s2, transportMsg(0x1111, 40), 1, 2},
		{"device 1 has the token back", s1, cookieReplyMsg(0x1111), 1, 2},
	} {
		if got2 == nil && st.to == 2 {
			got2 = collect(fns2[:1], 8)
			for !s2.rd[0].active.Load() { // its goroutine waits for the token
				time.Sleep(time.Millisecond)
			}
		}
		waitReading(t, r4, st.reader, st.name)
		inner.Deliver(st.pkt)
		expect(t, map[int]<-chan []byte{1: got1, 2: got2}[st.to], st.pkt, st.name)
		waitStats(t, m, st.name, func(s Stats) bool { return s.Queued == st.queued })
	}
	// Batches mixing both: each gets its own, whoever reads.
	want1, want2 := transportMsg(0x1111, 50), transportMsg(0x2222, 60)
	for range 3 {
		inner.Deliver(want1)
		inner.Deliver(want2)
		expect(t, got1, want1, "mixed batch, device 1")
		expect(t, got2, want2, "mixed batch, device 2")
	}
	expectNothing(t, got1, "device 1")
	expectNothing(t, got2, "device 2")
	if st := m.Stats(); st.Wakeups != 0 || st.Delivered != st.Received {
		t.Errorf("stats %+v; want no wake-ups and everything delivered", st)
	}
}

// TestCloseWhileReading: Close of a device whose goroutine is blocked in a read of the
// socket ends that read (wireguard-go's Device.Close waits for it), with loopback, without it
// from the start (a reader of the Mux's own), and when loopback fails only later (the read ends
// with the next datagram); the other device carries on.
func TestCloseWhileReading(t *testing.T) {
	for _, c := range []struct {
		name           string
		loopbackAtOpen bool // loopback works when the socket opens
		loopbackLater  bool // and when the device closes
	}{
		{"woken through loopback", true, true},
		{"loopback down from the start", false, false},
		{"loopback gone after the start", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			inner := wgmuxtest.NewSocket(8)
			inner.SetLoopback(c.loopbackAtOpen)
			m, _ := newTestMux(t, inner, testKey(t), nil)
			var logs logBuffer
			m.log = slog.New(slog.NewTextHandler(&logs, nil))
			b1, b2 := m.Bind(1), m.Bind(2)
			fns1, _ := mustOpen(t, b1, 0)
			fns2, _ := mustOpen(t, b2, 0)
			defer b2.Close()
			b2.Send([][]byte{responseMsg(0x2222, 0)}, wgmuxtest.Endpoint{})
			readers := readersOf(t, m)
			for _, r := range readers {
				if r.proxied == c.loopbackAtOpen {
					t.Fatalf("%s: proxied %v with loopback %v", r.name, r.proxied, c.loopbackAtOpen)
				}
			}
			if want := int32(m.workers + 2*btoi(!c.loopbackAtOpen)); m.goroutines.Load() != want {
				t.Errorf("%d goroutines of the Mux, want %d", m.goroutines.Load(), want)
			}

			done := callOnce(fns1[0], 8)
			if c.loopbackAtOpen {
				waitReading(t, readers[0], sessionOf(b1), "before Close")
			}
			got2 := collect(fns2, 8)
			inner.SetLoopback(c.loopbackLater)
			closed := make(chan error, 1)
			go func() { closed <- b1.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close blocked")
			}
			if c.loopbackAtOpen && !c.loopbackLater {
				// Nothing can wake the read: it ends with the next datagram, which device 1's
				// goroutine passes on to device 2.
				select {
				case err := <-done:
					t.Fatalf("the read ended (%v) without a datagram", err)
				case <-time.After(50 * time.Millisecond):
				}
			}
			pkt := transportMsg(0x2222, 10)
			inner.Deliver(pkt)
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("ReceiveFunc of the closed device returned %v, want net.ErrClosed", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("the goroutine of the closed device is still blocked")
			}
			expect(t, got2, pkt, "device 2 after device 1 closed")
			pkt6 := transportMsg(0x2222, 11)
			inner.Deliver6(pkt6)
			expect(t, got2, pkt6, "device 2 over IPv6")

			st := m.Stats()
			if wantWake := c.loopbackAtOpen && c.loopbackLater; (st.Wakeups > 0) != wantWake {
				t.Errorf("%d wake-ups, want some: %v", st.Wakeups, wantWake)
			}
			warned := strings.Count(logs.String(), "loopback does not reach")
			if wantWarn := !c.loopbackLater; warned != btoi(wantWarn) {
				t.Errorf("loopback warned %d times, want %d; log:\n%s", warned, btoi(wantWarn), logs.String())
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestInitiationWakesReadingDevice: the only device reads both families; the handshake
// worker queues an initiation for it, which it must see without waiting for another datagram.
func TestInitiationWakesReadingDevice(t *testing.T) {
	node, client := testKey(t), testKey(t)
	inner := wgmuxtest.NewSocket(4)
	var (
		b       *Bind
		readers []*reader
	)
	// route returns once the device's goroutines are back in their reads (the one that read
	// the initiation may still be busy with its batch when the worker gets it): then the queued
	// initiation needs a wake-up.
	route := func(store.Key) (int64, bool) {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if s := sessionOf(b); readers[0].turn.Reading(s) && readers[1].turn.Reading(s) {
				break
			}
		}
		return 1, true
	}
	m, _ := newTestMux(t, inner, node, route)
	b = m.Bind(1)
	fns, _ := mustOpen(t, b, 0)
	defer b.Close()
	got := collect(fns, 4)
	readers = readersOf(t, m)
	waitReading(t, readers[0], sessionOf(b), "IPv4")
	waitReading(t, readers[1], sessionOf(b), "IPv6")
	init := captureInitiation(t, client, node.PublicKey())
	inner.Deliver(init)
	expect(t, got, init, "initiation")
	// The worker counts after it queued, and the wake-up after it was sent.
	waitStats(t, m, "one wake-up, the initiation queued", func(s Stats) bool { return s.Wakeups == 1 && s.Queued == 1 })
}

// TestStalledDeviceDoesNotStallOthers: a device that keeps the next read and then stops
// calling its ReceiveFunc loses the read after reserveFor, and its full queue drops.
func TestStalledDeviceDoesNotStallOthers(t *testing.T) {
	inner := wgmuxtest.NewSocket(16)
	m, _ := newTestMux(t, inner, testKey(t), nil)
	m.queueLimit = 32
	m.reserveFor = 5 * time.Millisecond
	stalled, fns1 := openDevice(t, m, 1, 1)
	_, fns2 := openDevice(t, m, 2, 2)

	// Device 1's goroutine reads a datagram of its own, so the next read is kept for it, and
	// then never calls again, as if stuck behind a full queue in wireguard-go.
	done := callOnce(fns1[0], 16)
	r4 := readersOf(t, m)[0]
	waitReading(t, r4, sessionOf(stalled), "device 1")
	inner.Deliver(transportMsg(1, 0))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r4.reserved.Load() != sessionOf(stalled) {
		t.Fatal("the next read is not kept for device 1")
	}

	got := collect(fns2, 16)
	for i := range 200 {
		inner.Deliver(transportMsg(1, i))
	}
	pkt := transportMsg(2, 5)
	inner.Deliver(pkt)
	expect(t, got, pkt, "device 2 behind a stalled device 1")
	st := waitStats(t, m, "queue drops", func(s Stats) bool { return s.Received == 202 })
	if st.ReservationsStolen == 0 || st.QueueDrops < 200-32 || st.QueueDrops+st.Delivered != 202 {
		t.Errorf("stats %+v; want the reservation stolen, ≥ 168 queue drops and 202 datagrams in all", st)
	}
}

// TestLoneDeviceStartsNoStealTimer: the read kept for a device that nobody else waits for
// starts no steal timer (a tick after every burst would wake a thread for nothing); a device
// that starts waiting later starts it (TestStalledDeviceDoesNotStallOthers).
func TestLoneDeviceStartsNoStealTimer(t *testing.T) {
	inner := wgmuxtest.NewSocket(16)
	m, _ := newTestMux(t, inner, testKey(t), nil)
	m.reserveFor = time.Millisecond
	b, fns := openDevice(t, m, 1, 1)
	r4 := readersOf(t, m)[0]
	for i := range 3 {
		done := callOnce(fns[0], 16)
		waitReading(t, r4, sessionOf(b), "device 1")
		inner.Deliver(transportMsg(1, i))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if r4.reserved.Load() != sessionOf(b) {
			t.Fatalf("read %d: the next read is not kept for the device", i)
		}
		if r4.armed.Load() {
			t.Fatalf("read %d: the steal timer runs with nobody waiting for the read", i)
		}
	}
	time.Sleep(5 * m.reserveFor)
	if st := m.Stats(); st.ReservationsStolen != 0 {
		t.Errorf("%d reservations stolen with nobody waiting", st.ReservationsStolen)
	}
	if r4.reserved.Load() != sessionOf(b) {
		t.Error("the read kept for the device was taken with nobody waiting for it")
	}
}

// TestInterruptEndsAWaitForTheTurn: a goroutine waiting for its turn to read (the node's
// holder once a device reads) returns no datagrams when its bind is interrupted, and the read
// kept for the busy device then starts no steal timer.
func TestInterruptEndsAWaitForTheTurn(t *testing.T) {
	inner := wgmuxtest.NewSocket(16)
	m, _ := newTestMux(t, inner, testKey(t), nil)
	m.reserveFor = time.Hour // a steal would end the wait too: none may
	holder := m.Bind(0)
	hfns, _ := mustOpen(t, holder, 0)
	t.Cleanup(func() { holder.Close() })
	dev, fns := openDevice(t, m, 1, 1)
	r4 := readersOf(t, m)[0]

	done := callOnce(fns[0], 16)
	waitReading(t, r4, sessionOf(dev), "device 1")
	waiting := callOnce(hfns[0], 16)
	for deadline := time.Now().Add(5 * time.Second); r4.waiting.Load() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("the holder's goroutine is not waiting for its turn (%d waiting)", r4.waiting.Load())
		}
		time.Sleep(time.Millisecond)
	}
	inner.Deliver(transportMsg(1, 0))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r4.reserved.Load() != sessionOf(dev) || !r4.armed.Load() {
		t.Fatal("with the holder waiting, the next read is not kept for device 1 under a steal timer")
	}
	holder.Interrupt()
	select {
	case err := <-waiting:
		if err != nil {
			t.Fatalf("the interrupted receive returned %v, want no datagrams and no error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the holder's goroutine still waits for its turn after Interrupt")
	}
	if n := r4.waiting.Load(); n != 0 {
		t.Fatalf("%d goroutines counted as waiting after Interrupt", n)
	}
	m.stealTick(m.gen, r4) // the tick the timer would run: it stops, stealing nothing
	if r4.armed.Load() || r4.reserved.Load() != sessionOf(dev) {
		t.Errorf("after a tick with nobody waiting: armed %v, kept for %v; want the timer stopped and the read still kept for device 1", r4.armed.Load(), r4.reserved.Load())
	}
}

// TestNoGoroutineLeftAfterLastClose: after traffic on both families and the last Close, no
// goroutine of the Mux runs and every ReceiveFunc has returned.
func TestNoGoroutineLeftAfterLastClose(t *testing.T) {
	for _, loopback := range []bool{true, false} {
		t.Run(fmt.Sprintf("loopback=%v", loopback), func(t *testing.T) {
			before := runtime.NumGoroutine()
			inner := wgmuxtest.NewSocket(8)
			inner.SetLoopback(loopback)
			m, _ := newTestMux(t, inner, testKey(t), nil)
			m.reserveFor = time.Millisecond
			var binds []*Bind
			var outs []<-chan []byte
			for id := range int64(3) {
				b := m.Bind(id)
				fns, _ := mustOpen(t, b, 0)
				b.Send([][]byte{responseMsg(uint32(0x100+id), 0)}, wgmuxtest.Endpoint{})
				binds = append(binds, b)
				outs = append(outs, collect(fns, 8))
			}
			for i := range 300 {
				id := uint32(i % 3)
				if i%2 == 0 {
					inner.Deliver(transportMsg(0x100+id, i))
				} else {
					inner.Deliver6(transportMsg(0x100+id, i))
				}
			}
			waitStats(t, m, "traffic", func(s Stats) bool { return s.Received == 300 })
			for _, i := range []int{1, 0, 2} {
				if err := binds[i].Close(); err != nil {
					t.Fatal(err)
				}
				for range outs[i] { // every goroutine of the device returned
				}
			}
			if inner.IsOpen() {
				t.Fatal("the inner bind is open after the last Close")
			}
			if n := m.goroutines.Load(); n != 0 {
				t.Fatalf("%d goroutines of the Mux left", n)
			}
			time.Sleep(5 * time.Millisecond) // no steal timer runs on
			deadline := time.Now().Add(2 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				t.Errorf("%d goroutines before, %d after", before, n)
			}
		})
	}
}

// TestOnSentCountsDataMessages: the hook set with OnSent hears of every transport message a
// Send passes on (keepalives too) and of no handshake message.
func TestOnSentCountsDataMessages(t *testing.T) {
	inner := wgmuxtest.NewSocket(8)
	m, _ := newTestMux(t, inner, testKey(t), nil)
	b := m.Bind(1)
	var got []int
	b.OnSent(func(n int) { got = append(got, n) })
	mustOpen(t, b, 0)
	keepalive := transportMsg(1, 0)
	if err := b.Send([][]byte{responseMsg(0xabcd, 9), transportMsg(1, 100), keepalive, transportMsg(1, 1400)}, wgmuxtest.Endpoint{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Send([][]byte{responseMsg(0xabce, 10)}, wgmuxtest.Endpoint{}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != 3 {
		t.Errorf("OnSent heard %v, want [3]: the three transport messages of the first Send, nothing of the second", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
