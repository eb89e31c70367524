package checks

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/wgmux"
	"github.com/popgate/popgate/store"
)

func newKey(t *testing.T) store.Key {
	t.Helper()
	k, err := store.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startMux serves a Mux with key on a loopback UDP port, as a PoP's shared socket, with
// monitors as the other nodes' keys; it returns the port.
func startMux(t *testing.T, key store.Key, monitors ...store.Key) (*wgmux.Mux, int) {
	t.Helper()
	m, err := wgmux.New(wgmux.Config{Socket: conn.NewDefaultBind(), PrivateKey: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.SetMonitors(monitors)
	b := m.Bind(1)
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, fn := range fns { // a device's receive goroutines read the socket
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := b.BatchSize()
			bufs, sizes, eps := make([][]byte, n), make([]int, n), make([]conn.Endpoint, n)
			for i := range bufs {
				bufs[i] = make([]byte, 65535) // room for what GRO coalesces
			}
			for {
				if _, err := fn(bufs, sizes, eps); err != nil {
					return
				}
			}
		}()
	}
	t.Cleanup(func() { b.Close(); m.Close(); wg.Wait() })
	return m, int(port)
}

// TestHandshakeChecks: a node's handshake check passes against a PoP that knows its key as a
// monitor's, and fails, saying why, against a PoP that does not, a PoP with another key,
// and a port where nothing listens.
func TestHandshakeChecks(t *testing.T) {
	region, checker, other := newKey(t), newKey(t), newKey(t)
	m, port := startMux(t, region, checker.PublicKey())
	_, strangerPort := startMux(t, region) // knows no monitor
	free, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.LocalAddr().(*net.UDPAddr).Port
	free.Close()
	ep := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }

	r := newTestRunner(t, Config{HandshakeKey: checker, Timeout: 3 * time.Second})
	r.Set([]plane.Check{
		{ID: 1, Kind: plane.CheckHandshake, Target: ep(port), PublicKey: region.PublicKey(), Every: 2},
		{ID: 2, Kind: plane.CheckHandshake, Target: ep(strangerPort), PublicKey: region.PublicKey(), Every: 2},
		{ID: 3, Kind: plane.CheckHandshake, Target: ep(port), PublicKey: other.PublicKey(), Every: 2},
		{ID: 4, Kind: plane.CheckHandshake, Target: ep(freePort), PublicKey: region.PublicKey(), Every: 2},
	})
	res := waitResult(t, r, 1, 1)
	if res.OK < 1 || res.Failed != 0 || res.LatencyP50 <= 0 || res.Detail != "answered by "+ep(port) {
		t.Fatalf("check 1: %+v", res)
	}
	t.Logf("a handshake on loopback took %s", res.LatencyP50)
	if st := m.Stats(); st.MonitorsAnswered < 1 || st.Routed != 0 {
		t.Errorf("the Mux: %+v", st)
	}
	for id, want := range map[int64]string{2: "no answer in time", 3: "no answer in time", 4: "ICMP port unreachable"} {
		if res := waitResult(t, r, id, 1); res.OK != 0 || !strings.Contains(res.Error, want) {
			t.Errorf("check %d: %+v, want a failure with %q", id, res, want)
		}
	}

	none := newTestRunner(t, Config{})
	none.Set([]plane.Check{{ID: 1, Kind: plane.CheckHandshake, Target: ep(port), PublicKey: region.PublicKey(), Every: 1}})
	if res := waitResult(t, none, 1, 1); !strings.Contains(res.Error, "no backbone key") {
		t.Errorf("without a backbone key: %+v", res)
	}
}
