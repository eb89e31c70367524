//go:build bench

package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

const (
	scalePerTenant   = 1000              // peers per tenant: 100 tenants for 100,000 peers
	scaleStartLimit  = 150 * time.Second // how long serve may take to answer status
	scaleColdSamples = 100               // peers whose first and second handshake are timed
	// scaleSharedSamples: more such peers, all from the one address and port where the probe
	// and each other's handshakes were answered (a key new at an address: a NAT that gave
	// the port to another user).
	scaleSharedSamples = 20
)

// phaseScale stores cfg.scalePeers peers (through the store, before serve starts), then
// measures popgate serve with the userspace exit: start, memory, handshakes of
// cfg.scaleActive distinct peers, a cold peer's first handshake against a warm one's, `peer
// list --json`, and one peer added through the CLI until a stock client gets through.
func (e *env) phaseScale(t *testing.T) {
	g := e.gw(kindUserspace)
	if g.client != nil {
		_ = g.client.Stop()
		g.client = nil
	}
	if err := g.node.stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	n := &pgNode{bin: e.bin, topo: g.topo, dataDir: t.TempDir(), ifname: g.topo.Name("ps"), port: 51830, mode: kindUserspace}
	endpoint := netip.AddrPortFrom(g.topo.PopCliAddr, uint16(n.port))
	total := e.cfg.scalePeers
	// Keys of the peers that handshake: the active ones, the cold/warm samples and the probe.
	withPriv := min(total, e.cfg.scaleActive+scaleColdSamples+scaleSharedSamples+1)
	probe := withPriv - 1

	// Store.
	privs, err := genKeys(withPriv)
	if err != nil {
		t.Fatal(err)
	}
	var (
		nodePub store.Key
		first   store.Peer
		took    time.Duration
	)
	err = n.withStore(func(s *store.Store) error {
		nodePub = s.NodePublicKey()
		ctx := context.Background()
		pubs := make(chan store.Key, 4096)
		stop := make(chan struct{})
		defer close(stop)
		go func() { // key pairs are made while the store writes
			defer close(pubs)
			for i := range total {
				var k store.Key
				if i < withPriv {
					k = privs[i].PublicKey()
				} else {
					p, err := store.GeneratePrivateKey()
					if err != nil {
						return
					}
					k = p.PublicKey()
				}
				select {
				case pubs <- k:
				case <-stop:
					return
				}
			}
		}()
		began := time.Now()
		for i := 0; i < total; i++ {
			tenant := fmt.Sprintf("t%03d", i/scalePerTenant)
			if i%scalePerTenant == 0 {
				if _, err := s.AddTenant(ctx, tenant); err != nil {
					return err
				}
			}
			pub, ok := <-pubs
			if !ok {
				return errors.New("key generation failed")
			}
			p, err := s.AddPeer(ctx, store.NewPeer{TenantName: tenant, Name: fmt.Sprintf("p%06d", i), PublicKey: &pub})
			if err != nil {
				return fmt.Errorf("peer %d: %w", i, err)
			}
			if i == 0 {
				first = p
			}
			if i > 0 && i%20000 == 0 {
				t.Logf("scale: %d peers stored after %v", i, time.Since(began).Round(time.Second))
			}
		}
		took = time.Since(began)
		return nil
	})
	if err != nil {
		t.Fatalf("scale: store %d peers: %v", total, err)
	}
	tenants := (total + scalePerTenant - 1) / scalePerTenant
	e.res.scaleFig("peers stored", fmt.Sprintf("%s in %d tenants of %s (wireguard-go holds at most 65,536 per device)", thousands(total), tenants, thousands(scalePerTenant)), "100,000")
	e.res.scaleFig("storing them: store.AddPeer in a loop before serve starts (one durable transaction each)",
		fmt.Sprintf("%.1f s (%.2f ms per peer)", took.Seconds(), took.Seconds()*1e3/float64(total)), "")
	t.Logf("scale: stored %d peers in %v", total, took.Round(time.Millisecond))

	keys, err := newHSKeys(nodePub, privs)
	if err != nil {
		t.Fatal(err)
	}
	g.addSources(t)
	gen, err := newHSGen(keys, endpoint, hsSources(), g.topo.Cli.ListenPacket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gen.Close)

	// Start, with a Go initiator polling every 200 ms for the first handshake.
	profile := filepath.Join(e.profDir, "cpu-scale.pprof")
	began := time.Now()
	hsDone := make(chan time.Duration, 1)
	pollCtx, stopPoll := context.WithTimeout(context.Background(), scaleStartLimit+30*time.Second)
	defer stopPoll()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var r hsResult
		for pollCtx.Err() == nil {
			if _, err := gen.once(pollCtx, gen.sockets[0], probe, true, 200*time.Millisecond, &r); err == nil {
				hsDone <- time.Since(began)
				return
			}
		}
	}()
	startTook, err := n.start(t, scaleStartLimit, "POPGATE_CPUPROFILE="+profile)
	if err != nil {
		stopPoll()
		wg.Wait()
		e.scaleStartFailed(t, n, err)
		return
	}
	t.Logf("scale: serve answered status after %v", startTook.Round(time.Millisecond))
	e.res.scaleFig("serve start → `popgate status` answers", fmt.Sprintf("%.2f s", startTook.Seconds()), verdict(startTook <= 10*time.Second, "≤ 10 s"))
	var hsAfter time.Duration
	select {
	case hsAfter = <-hsDone:
		e.res.scaleFig("serve start → first completed handshake (Go initiator retrying every 200 ms)", fmt.Sprintf("%.2f s", hsAfter.Seconds()), verdict(hsAfter <= 10*time.Second, "≤ 10 s"))
	case <-time.After(30 * time.Second):
		e.res.scaleFig("serve start → first completed handshake", "none within 30 s of status answering", "✗ ≤ 10 s")
	}
	stopPoll()
	wg.Wait()

	// A stock client of the first stored peer, started once status answers.
	g.conf = clientConf(privs[0], first, nodePub, endpoint)
	if err := g.startClient(t); err != nil {
		e.res.scaleFig("serve start → a stock client's first ping through the tunnel", "failed: "+firstLine(err), "")
		t.Error(err)
	} else {
		passed := time.Since(began)
		e.res.scaleFig("serve start → a stock client (started when status answered) passes its first ping", fmt.Sprintf("%.2f s", passed.Seconds()), verdict(passed <= 10*time.Second, "≤ 10 s"))
	}
	e.scaleMemory(t, n, "after start (1 peer with traffic)")

	// Cold and warm handshakes of peers that never handshaked since start, one at a time:
	// each from a port of its own, as a client is, then from the port the probe used.
	coldEnd := min(e.cfg.scaleActive+scaleColdSamples, probe)
	cold, warm, err := e.coldWarm(gen, e.cfg.scaleActive, coldEnd, false)
	if err != nil {
		t.Errorf("scale: cold/warm handshakes: %v", err)
		e.res.scaleFig("cold vs warm handshake", "failed: "+firstLine(err), "")
	} else {
		c50, w50 := durPercentile(cold, 50), durPercentile(warm, 50)
		e.res.scaleFig(fmt.Sprintf("a cold peer's first handshake (%d peers never seen since start, each from a port of its own), p50 / p99", len(cold)),
			fmt.Sprintf("%.2f / %.2f ms", ms(c50), ms(durPercentile(cold, 99))), "")
		e.res.scaleFig("the same peers' second handshake (warm, 30 ms later), p50 / p99",
			fmt.Sprintf("%.2f / %.2f ms", ms(w50), ms(durPercentile(warm, 99))), "")
		e.res.scaleFig("cold − warm, p50", fmt.Sprintf("%+.2f ms", ms(c50-w50)), verdict(c50-w50 <= 50*time.Millisecond, "≤ +50 ms"))
	}
	if shared, _, err := e.coldWarm(gen, coldEnd, min(coldEnd+scaleSharedSamples, probe), true); err != nil {
		t.Errorf("scale: cold handshakes from one port: %v", err)
		e.res.scaleFig("cold handshakes from one port", "failed: "+firstLine(err), "")
	} else {
		e.res.scaleFig(fmt.Sprintf("a cold peer's first handshake from the port where another key was answered last (%d peers: a NAT that gave the port to another user), p50 / p99", len(shared)),
			fmt.Sprintf("%.2f / %.2f ms (the endpoint cache sends the initiation to the other key's device, waits at least 50 ms for its answer, then routes by key)", ms(durPercentile(shared, 50)), ms(durPercentile(shared, 99))), "")
	}

	// Active peers: one handshake from each of scaleActive distinct keys.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	r, sweepTook, err := gen.sweep(ctx, 0, e.cfg.scaleActive)
	cancel()
	if err != nil {
		t.Errorf("scale: handshakes of %d peers: %v", e.cfg.scaleActive, err)
	}
	e.res.scaleFig(fmt.Sprintf("%s distinct peers handshake once each (64 in flight): the active peers", thousands(e.cfg.scaleActive)),
		fmt.Sprintf("%s completed in %.1f s (%.0f/s), p50 %.2f ms, %d unanswered, %d cookie replies", thousands(r.Completed), sweepTook.Seconds(),
			float64(r.Completed)/sweepTook.Seconds(), ms(durPercentile(r.Latency, 50)), r.Timeouts, r.Cookies), "10,000 active")
	e.scaleMemory(t, n, fmt.Sprintf("after %s peers handshook", thousands(r.Completed)))

	// peer list --json.
	var lists []float64
	var size, count int
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		began := time.Now()
		out, err := n.cli(ctx, "peer", "list", "--json")
		d := time.Since(began)
		cancel()
		if err != nil {
			// A finding about popgate, recorded in the table, not a failure of the benchmark.
			t.Logf("scale: FINDING: %v", err)
			e.res.scaleFig("`popgate peer list --json`", "**fails**: "+firstLine(err), "")
			break
		}
		lists = append(lists, d.Seconds())
		size, count = len(out), countPeers([]byte(out))
	}
	if len(lists) > 0 {
		e.res.scaleFig("`popgate peer list --json` (median of 3 runs, wall clock of the CLI)",
			fmt.Sprintf("%.2f s for %s peers, %.1f MB of JSON (runs: %s s)", median(lists), thousands(count), float64(size)/1e6, joinFloats(lists, 2)), "")
	} else {
		// What the CLI refused: the API's answer itself, read without the CLI's size limit.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		began := time.Now()
		body, err := n.apiGet(ctx, "/api/v1/peers")
		d := time.Since(began)
		cancel()
		if err != nil {
			e.res.scaleFig("GET /api/v1/peers on the control socket (what the CLI asks for)", "failed: "+firstLine(err), "")
		} else {
			e.res.scaleFig("GET /api/v1/peers on the control socket (what the CLI asks for), read whole",
				fmt.Sprintf("%.2f s, %.1f MB for %s peers: larger than the CLI reads of one answer", d.Seconds(), float64(len(body))/1e6, thousands(countPeers(body))), "")
		}
	}
	e.scaleMemory(t, n, "after peer list")

	// One peer added through the CLI, until a stock client of it gets through.
	_ = g.client.Stop()
	g.client = nil
	addBegan := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	conf, err := n.cli(ctx, "peer", "add", "--tenant", fmt.Sprintf("t%03d", tenants/2), "added-by-bench")
	cancel()
	addTook := time.Since(addBegan)
	if err != nil {
		t.Errorf("scale: %v", err)
		e.res.scaleFig("`popgate peer add`", "failed: "+firstLine(err), "")
	} else {
		g.conf = conf
		clientBegan := time.Now()
		err := g.startClient(t)
		working := time.Since(addBegan)
		if err != nil {
			t.Errorf("scale: the added peer: %v", err)
			e.res.scaleFig("`popgate peer add` → its stock client passes a ping", fmt.Sprintf("CLI %.2f s, then no ping: %s", addTook.Seconds(), firstLine(err)), "✗ ≤ 1 s")
		} else {
			e.res.scaleFig("`popgate peer add` → its stock client passes a ping",
				fmt.Sprintf("%.2f s (the CLI %.2f s; client start, handshake and ping %.2f s)", working.Seconds(), addTook.Seconds(), time.Since(clientBegan).Seconds()),
				verdict(working <= time.Second, "≤ 1 s"))
		}
	}
	e.scaleMemory(t, n, "at the end")

	if g.client != nil {
		_ = g.client.Stop()
		g.client = nil
	}
	stopBegan := time.Now()
	if err := n.stop(2 * time.Minute); err != nil {
		t.Error(err)
	}
	e.res.scaleFig("serve stop (SIGTERM → exit)", fmt.Sprintf("%.2f s", time.Since(stopBegan).Seconds()), "")
	title := fmt.Sprintf("popgate serve with %d stored peers: its whole life (start, the handshakes, peer list, peer add, stop), sorted by cumulative time", total)
	if err := e.keepProfile(t, profile, 22, true, title); err != nil {
		t.Error(err)
	}
}

// scaleStartFailed records how serve failed to start with many peers.
func (e *env) scaleStartFailed(t *testing.T, n *pgNode, err error) {
	t.Helper()
	what := firstLine(err)
	if n.proc != nil {
		if exited, werr := n.proc.Exited(); exited {
			what = fmt.Sprintf("serve exited (%v)", werr)
		} else {
			if mib, rerr := rssMiB(n.proc.Pid()); rerr == nil {
				what += fmt.Sprintf("; serve still running with VmRSS %.0f MiB", mib)
			}
		}
		e.res.note("Scale: serve's log when it failed to start:\n\n```\n%s\n```", n.proc.LogTail(15))
	}
	e.res.scaleFig("serve start → `popgate status` answers", fmt.Sprintf("did not within %v: %s", scaleStartLimit, what), "✗ ≤ 10 s")
	t.Errorf("scale: %v", err)
	_ = n.stop(time.Minute)
}

// scaleMemory records serve's RSS, goroutines and threads.
func (e *env) scaleMemory(t *testing.T, n *pgNode, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := n.status(ctx)
	if err != nil {
		t.Errorf("scale: %v", err)
		return
	}
	ps, _ := procStatus(n.proc.Pid(), "Threads")
	rss, err := rssMiB(n.proc.Pid())
	if err != nil {
		t.Errorf("scale: %v", err)
		return
	}
	e.res.scaleFig("serve "+when+": RSS (VmRSS of /proc/PID/status), goroutines (status --json), threads",
		fmt.Sprintf("%.0f MiB (%.1f KiB per stored peer), %s goroutines, %s threads; status: %s peers, %s online",
			rss, rss*1024/float64(max(1, st.Peers.Total)), thousands(st.Node.Goroutines), ps["Threads"], thousands(st.Peers.Total), thousands(st.Peers.Online)),
		verdict(rss <= 1024, "RSS ≤ 1 GiB"))
}

// coldWarm times the first handshake of each key in [from, to) and, 30 ms later, its second:
// all from the generator's first socket when shared, else each key from a new socket on the
// same address.
func (e *env) coldWarm(gen *hsGen, from, to int, shared bool) (cold, warm []time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := from; i < to; i++ {
		c, w, err := e.coldWarmOne(ctx, gen, i, shared)
		if err != nil {
			return nil, nil, err
		}
		cold, warm = append(cold, c), append(warm, w)
	}
	return cold, warm, nil
}

// coldWarmOne times key i's first handshake and, 30 ms later, its second (see coldWarm).
func (e *env) coldWarmOne(ctx context.Context, gen *hsGen, i int, shared bool) (cold, warm time.Duration, err error) {
	s := gen.sockets[0]
	if !shared {
		if s, err = gen.newSocket(gen.sources[0]); err != nil {
			return 0, 0, err
		}
		defer s.conn.Close()
	}
	var r hsResult
	if cold, err = gen.once(ctx, s, i, true, 2*time.Second, &r); err != nil {
		return 0, 0, fmt.Errorf("first handshake of key %d: %w", i, err)
	}
	time.Sleep(30 * time.Millisecond)
	if warm, err = gen.once(ctx, s, i, true, 2*time.Second, &r); err != nil {
		return 0, 0, fmt.Errorf("second handshake of key %d: %w", i, err)
	}
	return cold, warm, nil
}

// clientConf is the wg-quick file popgate would print for a stored peer with a key the user
// brought.
func clientConf(priv store.Key, p store.Peer, server store.Key, endpoint netip.AddrPort) string {
	return fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = %s/32, %s/128\nMTU = 1420\n\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = 0.0.0.0/0, ::/0\nPersistentKeepalive = 25\n",
		base64.StdEncoding.EncodeToString(priv[:]), p.IPv4, p.IPv6, base64.StdEncoding.EncodeToString(server[:]), endpoint)
}

// countPeers counts the peers of a peer list answer, {"peers": [...]}; -1 when it is not one.
func countPeers(body []byte) int {
	var l struct {
		Peers []json.RawMessage `json:"peers"`
	}
	if json.Unmarshal(body, &l) != nil {
		return -1
	}
	return len(l.Peers)
}

// thousands formats n with commas: 100000 → "100,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func verdict(ok bool, target string) string {
	if ok {
		return "✓ " + target
	}
	return "✗ " + target
}

func ms(d time.Duration) float64 { return d.Seconds() * 1e3 }

func firstLine(err error) string { return strings.SplitN(err.Error(), "\n", 2)[0] }

func joinFloats(v []float64, digits int) string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = fmt.Sprintf("%.*f", digits, f)
	}
	return strings.Join(parts, " / ")
}
