package backbone

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// got is one packet a Deliver was given.
type got struct {
	from   NodeID
	tenant uint32
	pkt    []byte
}

// sink collects what a Device delivers.
type sink struct {
	mu   sync.Mutex
	pkts []got
}

func (s *sink) deliver(from NodeID, tenant uint32, pkts [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range pkts {
		s.pkts = append(s.pkts, got{from, tenant, append([]byte(nil), p...)})
	}
}

func (s *sink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pkts)
}

func (s *sink) take() []got {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.pkts
	s.pkts = nil
	return out
}

// node is a started Device on a loopback port with what it delivers.
type node struct {
	*Device
	sink *sink
	key  store.Key
	peer Peer // how the others see it
}

func newNode(t testing.TB, id NodeID, mod func(*Config)) *node {
	t.Helper()
	key, err := store.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return newNodeKey(t, id, key, 0, mod)
}

func newNodeKey(t testing.TB, id NodeID, key store.Key, port int, mod func(*Config)) *node {
	t.Helper()
	n := &node{sink: &sink{}, key: key}
	cfg := Config{Node: id, PrivateKey: key, ListenPort: port, AnyPort: port == 0, Deliver: n.sink.deliver}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg, testLogger(id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.Device = d
	n.peer = Peer{Node: id, Name: fmt.Sprint("n", uint32(id)), PublicKey: key.PublicKey(),
		Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(d.Port()))}
	return n
}

// mesh makes every node a peer of every other.
func mesh(t testing.TB, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		var peers []Peer
		for _, o := range nodes {
			if o != n {
				peers = append(peers, o.peer)
			}
		}
		if err := n.SetPeers(peers); err != nil {
			t.Fatal(err)
		}
	}
}

// waitUp waits until every link of every node is Up, as a caller does before it uses them.
func waitUp(t testing.TB, nodes ...*node) {
	t.Helper()
	waitFor(t, "links up", 15*time.Second, func() bool {
		for _, n := range nodes {
			for _, l := range n.Links() {
				if l.State != StateUp {
					return false
				}
			}
		}
		return true
	})
}

// payload is packet i from one node to another: its first 12 bytes say which.
func payload(from, to NodeID, i, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(from))
	binary.BigEndian.PutUint32(b[4:], uint32(to))
	binary.BigEndian.PutUint32(b[8:], uint32(i))
	for j := 12; j < size; j++ {
		b[j] = byte(i + j)
	}
	return b
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExchange: three nodes send each other batches of labelled packets both ways; each
// arrives once, in order, from the right node with the right tenant.
func TestExchange(t *testing.T) {
	const perPair = 300
	nodes := []*node{newNode(t, 1, nil), newNode(t, 2, nil), newNode(t, 300, nil)}
	mesh(t, nodes...)
	// Sending from both ends of a link before it is Up may cross the two handshakes and
	// cost 5 s (see initiateHold).
	waitUp(t, nodes...)
	tenant := func(from, to NodeID) uint32 { return uint32(from)*1000 + uint32(to) }
	var wg sync.WaitGroup
	for _, n := range nodes {
		for _, o := range nodes {
			if o == n {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perPair; i += 50 {
					var batch [][]byte
					for j := i; j < i+50; j++ {
						batch = append(batch, payload(n.peer.Node, o.peer.Node, j, 20+j*4)) // 20 to 1,216 B
					}
					if err := n.Send(o.peer.Node, tenant(n.peer.Node, o.peer.Node), batch); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, n := range nodes {
		waitFor(t, fmt.Sprintf("%v got %d packets, want %d", n.peer.Node, n.sink.len(), 2*perPair), 10*time.Second,
			func() bool { return n.sink.len() >= 2*perPair })
		next := map[NodeID]int{}
		for _, g := range n.sink.take() {
			from := NodeID(binary.BigEndian.Uint32(g.pkt))
			to := NodeID(binary.BigEndian.Uint32(g.pkt[4:]))
			i := int(binary.BigEndian.Uint32(g.pkt[8:]))
			want := payload(from, to, i, 20+i*4)
			switch {
			case g.from != from || to != n.peer.Node:
				t.Errorf("%v: packet %d of %v to %v delivered as from %v", n.peer.Node, i, from, to, g.from)
			case g.tenant != tenant(from, to):
				t.Errorf("%v: packet %d from %v has tenant %d, want %d", n.peer.Node, i, from, g.tenant, tenant(from, to))
			case string(g.pkt) != string(want):
				t.Errorf("%v: packet %d from %v is changed", n.peer.Node, i, from)
			case i != next[from]:
				t.Errorf("%v: packet %d from %v, want %d (lost or out of order)", n.peer.Node, i, from, next[from])
			}
			next[from] = i + 1
		}
		for _, l := range n.Links() {
			if l.RxPackets != perPair || l.TxPackets != perPair {
				t.Errorf("%v: link to %v counted %d in, %d out; want %d each", n.peer.Node, l.Node, l.RxPackets, l.TxPackets, perPair)
			}
		}
	}
}

func TestSendRefuses(t *testing.T) {
	a, b := newNode(t, 1, func(c *Config) { c.MTU = 1300 }), newNode(t, 2, nil)
	mesh(t, a, b)
	if err := a.Send(3, 5, [][]byte{{0x45}}); !errors.Is(err, ErrNoPeer) {
		t.Errorf("to a node that is no peer: %v, want ErrNoPeer", err)
	}
	if err := a.Send(2, ProbeTenant, [][]byte{{0x45}}); !errors.Is(err, ErrProbeLabel) {
		t.Errorf("with tenant 0: %v, want ErrProbeLabel", err)
	}
	// The packets that fit go; the one over the MTU does not, and the caller hears of it.
	err := a.Send(2, 5, [][]byte{payload(1, 2, 0, 1300), payload(1, 2, 1, 1301), payload(1, 2, 2, 100)})
	if !errors.Is(err, ErrTooBig) {
		t.Errorf("a packet over the MTU: %v, want ErrTooBig", err)
	}
	waitFor(t, "the two packets that fit", 15*time.Second, func() bool { return b.sink.len() == 2 })
	time.Sleep(50 * time.Millisecond)
	for i, g := range b.sink.take() {
		if n := int(binary.BigEndian.Uint32(g.pkt[8:])); n != 2*i {
			t.Errorf("delivered packet %d, want %d", n, 2*i)
		}
	}
}

// TestForgedSource: a node can send only with its own backbone address. A raw wireguard-go
// device (node 5) whose AllowedIPs the test controls sends B packets whose outer source is
// node 6, another peer of B's: they are not delivered; with its own address they are.
func TestForgedSource(t *testing.T) {
	b := newNode(t, 2, nil)
	six := newNode(t, 6, nil)
	raw := newRawNode(t, 5, b.peer)
	mesh(t, b, six)
	if err := b.SetPeers([]Peer{raw.peer, six.peer}); err != nil {
		t.Fatal(err)
	}
	// B, the lower ID, opens the session with its probes; sending before could cross
	// handshakes.
	select {
	case <-raw.heard:
	case <-time.After(15 * time.Second):
		t.Fatal("no probe from B reached the raw node")
	}
	raw.send(encode(6, 2, 77, []byte("forged")))
	raw.send(encode(5, 2, 77, []byte("honest")))
	waitFor(t, "the honest packet", 15*time.Second, func() bool { return b.sink.len() >= 1 })
	time.Sleep(50 * time.Millisecond)
	gs := b.sink.take()
	if len(gs) != 1 || string(gs[0].pkt) != "honest" || gs[0].from != 5 || gs[0].tenant != 77 {
		t.Errorf("delivered %+v, want only the honest packet, from node 5 with tenant 77", gs)
	}
}

// TestReceiveDrops: the receive path's own checks, on packets wireguard-go would let through.
func TestReceiveDrops(t *testing.T) {
	s := &sink{}
	d := bareDevice(t, 2, s.deliver, Peer{Node: 1})
	var probe [probeLen]byte
	for _, c := range []struct {
		name string
		pkt  []byte
		drop Drop
	}{
		{"not a peer", encode(9, 2, 7, []byte{1}), DropNotPeer},
		{"not for us", encode(1, 3, 7, []byte{1}), DropNotForUs},
		{"malformed", encode(1, 2, 7, []byte{1})[:Overhead-1], DropMalformed},
		{"empty", encode(1, 2, 7, nil), DropNoTenant},
		{"bad probe", encode(1, 2, 0, probe[:]), DropBadProbe},
	} {
		before := d.drops[c.drop].Load()
		d.receive([][]byte{c.pkt}, 0)
		if d.drops[c.drop].Load() != before+1 {
			t.Errorf("%s: not counted as %v", c.name, c.drop)
		}
	}
	if n := s.len(); n != 0 {
		t.Errorf("%d packets delivered, want none", n)
	}
	// A batch of two tenants from one node: two runs, in order.
	d.receive([][]byte{encode(1, 2, 7, []byte{1}), encode(1, 2, 7, []byte{2}), encode(1, 2, 8, []byte{3})}, 0)
	gs := s.take()
	if len(gs) != 3 || gs[0].tenant != 7 || gs[1].tenant != 7 || gs[2].tenant != 8 || gs[2].pkt[0] != 3 {
		t.Errorf("delivered %+v", gs)
	}
}

// TestSetPeers: removing a node stops its delivery at once; a kept node keeps its session; a
// node added back delivers again.
func TestSetPeers(t *testing.T) {
	a, b, c := newNode(t, 1, nil), newNode(t, 2, nil), newNode(t, 3, nil)
	mesh(t, a, b)
	send := func(from, to *node, i int) {
		t.Helper()
		if err := from.Send(to.peer.Node, 9, [][]byte{payload(from.peer.Node, to.peer.Node, i, 64)}); err != nil {
			t.Fatal(err)
		}
	}
	send(a, b, 0)
	waitFor(t, "the first packet", 15*time.Second, func() bool { return b.sink.len() == 1 })
	hs := handshake(t, b, a)

	// Adding c and setting the same a: a's session stays.
	if err := b.SetPeers([]Peer{a.peer, c.peer}); err != nil {
		t.Fatal(err)
	}
	if got := handshake(t, b, a); got != hs {
		t.Errorf("a's handshake changed from %q to %q: SetPeers touched a kept peer", hs, got)
	}
	send(a, b, 1)
	waitFor(t, "a packet after adding c", 5*time.Second, func() bool { return b.sink.len() == 2 })
	b.sink.take()

	// Removing a: nothing more from it.
	if err := b.SetPeers([]Peer{c.peer}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		send(a, b, 2+i)
	}
	time.Sleep(300 * time.Millisecond)
	if n := b.sink.len(); n != 0 {
		t.Errorf("%d packets delivered from a removed node", n)
	}
	if ls := b.Links(); len(ls) != 1 || ls[0].Node != 3 {
		t.Errorf("links %+v, want only node 3's", ls)
	}

	// Back again.
	if err := b.SetPeers([]Peer{a.peer, c.peer}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a packet after adding a back", 5*time.Second, func() bool {
		send(a, b, 100)
		return b.sink.len() > 0
	})
}

// handshake is the time of d's latest handshake with peer p, as wireguard-go reports it.
func handshake(t *testing.T, d, p *node) string {
	t.Helper()
	s, err := d.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	in := false
	pub := p.peer.PublicKey
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if k, ok := strings.CutPrefix(line, "public_key="); ok {
			in = k == fmt.Sprintf("%x", pub[:])
		}
		if in && strings.HasPrefix(line, "last_handshake_time_nsec=") {
			return line
		}
	}
	t.Fatalf("no peer %v in the device", p.peer.Node)
	return ""
}

func TestSetPeersRefuses(t *testing.T) {
	a := newNode(t, 1, nil)
	k := func() store.Key {
		key, _ := store.GeneratePrivateKey()
		return key.PublicKey()
	}
	ep := netip.MustParseAddrPort("127.0.0.1:1")
	good := Peer{Node: 2, PublicKey: k(), Endpoint: ep}
	for _, c := range []struct {
		name  string
		peers []Peer
		want  string
	}{
		{"node 0", []Peer{{Node: 0, PublicKey: k(), Endpoint: ep}}, "out of range"},
		{"node too big", []Peer{{Node: MaxNodeID + 1, PublicKey: k(), Endpoint: ep}}, "out of range"},
		{"itself", []Peer{{Node: 1, PublicKey: k(), Endpoint: ep}}, "not its own peer"},
		{"twice", []Peer{good, {Node: 2, PublicKey: k(), Endpoint: ep}}, "listed twice"},
		{"no key", []Peer{{Node: 3, Endpoint: ep}}, "no public key"},
		{"own key", []Peer{{Node: 3, PublicKey: a.key.PublicKey(), Endpoint: ep}}, "this node's public key"},
		{"shared key", []Peer{good, {Node: 3, PublicKey: good.PublicKey, Endpoint: ep}}, "another peer's"},
		{"no endpoint", []Peer{{Node: 3, PublicKey: k()}}, "no endpoint"},
	} {
		err := a.SetPeers(c.peers)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	key, _ := store.GeneratePrivateKey()
	c := Config{Node: 1, PrivateKey: key}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ListenPort != 51821 || c.MTU != 1396 || c.ProbeEvery != 300*time.Millisecond || c.ProbeTimeout != 500*time.Millisecond ||
		c.DownAfter != 3 || c.UpAfter != 3*time.Second {
		t.Errorf("defaults %+v", c)
	}
	for _, bad := range []struct {
		c    Config
		want string
	}{
		{Config{PrivateKey: key}, "node id 0"},
		{Config{Node: 1}, "private key"},
		{Config{Node: 1, PrivateKey: key, ListenPort: 70000}, "listen port"},
		{Config{Node: 1, PrivateKey: key, ListenPort: 5, AnyPort: true}, "AnyPort"},
		{Config{Node: 1, PrivateKey: key, MTU: 1000}, "mtu"},
		{Config{Node: 1, PrivateKey: key, ProbeEvery: time.Millisecond}, "probe interval"},
		{Config{Node: 1, PrivateKey: key, ProbeTimeout: 5 * time.Second}, "probe timeout"},
		{Config{Node: 1, PrivateKey: key, DownAfter: -1}, "down after"},
		{Config{Node: 1, PrivateKey: key, UpAfter: -1}, "up after"},
	} {
		if err := bad.c.Validate(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want an error about %q", bad.c, err, bad.want)
		}
	}
}

// TestProbes: the link's RTT is measured; a closed peer is Down after about DownAfter misses,
// and when it is back, Up only after UpAfter of answers.
func TestProbes(t *testing.T) {
	const (
		every   = 50 * time.Millisecond
		timeout = 100 * time.Millisecond
		upAfter = 600 * time.Millisecond
	)
	fast := func(c *Config) { c.ProbeEvery, c.ProbeTimeout, c.UpAfter = every, timeout, upAfter }
	changes := make(chan LinkState, 16)
	a := newNode(t, 1, func(c *Config) {
		fast(c)
		c.OnLinkChange = func(s LinkState) { changes <- s }
	})
	bKey, _ := store.GeneratePrivateKey()
	b := newNodeKey(t, 2, bKey, 0, fast)
	mesh(t, a, b)
	// next waits for the link to change to want, skipping changes to skip.
	next := func(want State, within time.Duration, skip ...State) LinkState {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case s := <-changes:
				if s.Node == 2 && slices.Contains(skip, s.State) {
					continue
				}
				if s.Node != 2 || s.State != want {
					t.Fatalf("link change %+v, want node 2 %v", s, want)
				}
				return s
			case <-deadline:
				t.Fatalf("link to node 2 not %v after %v: %+v", want, within, a.Links())
			}
		}
	}
	// The first handshake may take longer than the timeout on a loaded machine: the link
	// may be Down before it is Up.
	up := next(StateUp, 5*time.Second, StateDown)
	if up.RTT <= 0 || up.RTT > timeout || up.SmoothedRTT <= 0 {
		t.Errorf("up with RTT %v, smoothed %v", up.RTT, up.SmoothedRTT)
	}
	time.Sleep(10 * every)
	if l := a.Links()[0]; l.State != StateUp || l.Probes < 5 || l.MissesInRow != 0 {
		t.Errorf("a healthy link: %+v", l)
	}

	port := b.Port()
	died := time.Now()
	b.Close()
	down := next(StateDown, 5*time.Second)
	// 3 probes missed: the third is sent 2 intervals after the first missed one and judged
	// a timeout after that (at the next tick); the first is sent within an interval of the
	// death, or just before it and lost with it.
	if took := down.Since.Sub(died); took < 2*every || took > 4*every+timeout+500*time.Millisecond {
		t.Errorf("down %v after the peer closed, want ≈ %v-%v", took, 2*every+timeout, 4*every+timeout)
	}
	if down.MissesInRow < 3 || down.Lost < 3 {
		t.Errorf("down with %d misses in a row, %d lost", down.MissesInRow, down.Lost)
	}
	if down.Ups != 1 || down.Downs < 1 {
		t.Errorf("down after %d ups and %d downs, want 1 up and at least 1 down", down.Ups, down.Downs)
	}

	back := time.Now()
	b = newNodeKey(t, 2, bKey, port, fast)
	if err := b.SetPeers([]Peer{a.peer}); err != nil {
		t.Fatal(err)
	}
	up = next(StateUp, 10*time.Second)
	if took := up.Since.Sub(back); took < upAfter {
		t.Errorf("up %v after the peer came back, want at least the hysteresis, %v", took, upAfter)
	}
	if up.Ups != 2 || up.Downs != down.Downs {
		t.Errorf("up again after %d ups and %d downs, want 2 and %d", up.Ups, up.Downs, down.Downs)
	}
	select {
	case s := <-changes:
		t.Errorf("another change: %+v", s)
	case <-time.After(5 * every):
	}
}

// TestCloseRace: Close while Send and SetPeers run leaves no goroutine behind, and they
// return ErrClosed after it.
func TestCloseRace(t *testing.T) {
	before := runtime.NumGoroutine()
	for round := range 3 {
		a := newNode(t, 1, nil)
		b := newNode(t, 2, nil)
		mesh(t, a, b)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				batch := [][]byte{payload(1, 2, 0, 1000), payload(1, 2, 1, 1000)}
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := a.Send(2, 5, batch); errors.Is(err, ErrClosed) {
						return
					} else if err != nil && !errors.Is(err, ErrNoPeer) { // SetPeers takes b away and back
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				peers := []Peer{b.peer}
				if i%2 == 1 {
					peers = nil
				}
				if err := a.SetPeers(peers); errors.Is(err, ErrClosed) {
					return
				} else if err != nil {
					t.Error(err)
					return
				}
			}
		}()
		time.Sleep(time.Duration(20+round*30) * time.Millisecond)
		a.Close()
		a.Close()
		b.Close()
		close(stop) // a Send that found no peer does not see the Close
		wg.Wait()
		if err := a.Start(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Start after Close: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
