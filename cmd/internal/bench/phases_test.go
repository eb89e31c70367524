//go:build bench

package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popgate/popgate/store"
)

// phaseProfile profiles popgate serve (POPGATE_CPUPROFILE) during one TCP stream each way
// and four streams down with the userspace exit, and upload with the kernel exit. serve writes the profile when it
// stops, so each profile is one life of serve: start, the client's handshake, 9 s of iperf3.
func (e *env) phaseProfile(t *testing.T) {
	for _, c := range []struct {
		kind, what string
		args       []string
	}{
		{kindUserspace, "TCP upload (client → Net), 1 stream", []string{"-P", "1"}},
		{kindUserspace, "TCP download (Net → client), 1 stream", []string{"-P", "1", "-R"}},
		{kindUserspace, "TCP download (Net → client), 4 streams", []string{"-P", "4", "-R"}},
		{kindKernel, "TCP upload (client → Net), 1 stream", []string{"-P", "1"}},
	} {
		g := e.gw(c.kind)
		path := filepath.Join(e.profDir, fmt.Sprintf("cpu-%s-%d.pprof", c.kind, len(e.res.profiles)))
		if err := g.node.stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := g.node.start(t, 60*time.Second, "POPGATE_CPUPROFILE="+path, "GODEBUG=gctrace=1"); err != nil {
			t.Fatal(err)
		}
		if err := g.startClient(t); err != nil {
			t.Fatal(err)
		}
		gcBefore := gcCycles(g.node.proc.Log())
		rep, err := g.iperf(t, 8, append([]string{"-O", "1"}, c.args...)...)
		gcs := gcCycles(g.node.proc.Log()) - gcBefore
		if err != nil {
			t.Errorf("profile run: %v", err)
		}
		if err := g.node.stop(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		title := fmt.Sprintf("popgate serve, %s exit, %s — %.2f Gbit/s while profiled, %d GC cycles in iperf3's 9 s", c.kind, c.what, rep.End.SumReceived.BitsPerSecond/1e9, gcs)
		if err := e.keepProfile(t, path, 15, false, title); err != nil {
			t.Fatal(err)
		}
	}
	// Back to the state the other phases expect.
	for _, k := range []string{kindUserspace, kindKernel} {
		g := e.gw(k)
		if _, err := g.node.start(e.root, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := g.startClient(e.root); err != nil {
			t.Fatal(err)
		}
	}
}

// gcCycles counts the collections in a log of serve run with GODEBUG=gctrace=1 (a line
// "gc N @…" each).
func gcCycles(log string) int {
	n := 0
	for line := range strings.Lines(log) {
		if strings.HasPrefix(line, "gc ") && strings.Contains(line, " @") {
			n++
		}
	}
	return n
}

// keepProfile puts the top n functions of the CPU profile at path (cum: sorted by cumulative
// time) in the report under title, and in the test's log.
func (e *env) keepProfile(t testing.TB, path string, n int, cum bool, title string) error {
	top, err := pprofTop(e.bin, path, n, cum)
	if err != nil {
		return err
	}
	t.Logf("%s\n%s", title, top)
	e.res.addProfile(title, top)
	return nil
}

// pprofTop returns `go tool pprof -top` of a CPU profile, its first n functions, without the
// lines naming the binary; cum sorts by cumulative time (who calls the hot code).
func pprofTop(bin, profile string, n int, cum bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n)}
	if cum {
		args = append(args, "-cum")
	}
	out, err := exec.CommandContext(ctx, "go", append(args, bin, profile)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof %s: %w\n%s", profile, err, out)
	}
	var keep []string
	for line := range strings.SplitSeq(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Build ID:") || strings.HasPrefix(line, "Type:") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n"), nil
}

// genKeys returns n new private keys, generated on every core.
func genKeys(n int) ([]store.Key, error) {
	keys := make([]store.Key, n)
	workers := runtime.NumCPU()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if keys[i], errs[w] = store.GeneratePrivateKey(); errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// publicKeys derives the public keys of privs on every core.
func publicKeys(privs []store.Key) []store.Key {
	pubs := make([]store.Key, len(privs))
	workers := runtime.NumCPU()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(privs); i += workers {
				pubs[i] = privs[i].PublicKey()
			}
		}()
	}
	wg.Wait()
	return pubs
}

// hsSources are the generator's source addresses in Cli: 64 addresses so that the rate limit
// wireguard-go applies per source address under load (20/s, burst 5) stays out of the way.
func hsSources() []netip.Addr {
	var a []netip.Addr
	for i := range 64 {
		a = append(a, netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}))
	}
	return a
}

// addSources puts the generator's source addresses on g's client link (idempotent).
func (g *gw) addSources(t testing.TB) {
	t.Helper()
	var b strings.Builder
	for _, a := range hsSources() {
		fmt.Fprintf(&b, "address replace %s/32 dev %s\n", a, g.topo.CliLink)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := g.topo.Cli.Command(ctx, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: add the generator's addresses: %v: %s", g.kind, err, out)
	}
}

// addStorePeers adds a tenant with one peer per public key, named prefix00000…, through the
// store (serve must not run: it loads the store when it starts). It returns how long that took.
func addStorePeers(s *store.Store, tenant, prefix string, pubs []store.Key) (time.Duration, error) {
	ctx := context.Background()
	began := time.Now()
	if _, err := s.AddTenant(ctx, tenant); err != nil {
		return 0, err
	}
	for i := range pubs {
		if _, err := s.AddPeer(ctx, store.NewPeer{TenantName: tenant, Name: fmt.Sprintf("%s%05d", prefix, i), PublicKey: &pubs[i]}); err != nil {
			return 0, fmt.Errorf("add peer %d of tenant %s: %w", i, tenant, err)
		}
	}
	return time.Since(began), nil
}

const hsGroup = "Handshakes (Go load generator in Cli: distinct client keys, one initiation in flight per source address, 64 source addresses; 1 s warm-up, then 5 s counted)"

// phaseHandshake registers cfg.hsKeys client keys on every gateway (popgate: through the store
// before serve starts; baseline: `wg addconf`) and drives handshakes with them.
func (e *env) phaseHandshake(t *testing.T) {
	privs, err := genKeys(e.cfg.hsKeys)
	if err != nil {
		t.Fatal(err)
	}
	pubs := publicKeys(privs)
	profile := filepath.Join(e.profDir, "cpu-handshake.pprof")
	gens := map[string]*hsGen{}
	for _, g := range e.gws {
		switch g.kind {
		case kindBaseline:
			var b strings.Builder
			for i, p := range pubs {
				fmt.Fprintf(&b, "[Peer]\nPublicKey = %s\nAllowedIPs = 100.100.%d.%d/32\n\n", base64.StdEncoding.EncodeToString(p[:]), i/250, i%250+1)
			}
			file := filepath.Join(t.TempDir(), "hs.conf")
			if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			g.topo.Pop.MustRun(t, "wg", "addconf", g.stock.Ifname, file)
			t.Logf("baseline: wg addconf of %d peers took %v", len(pubs), time.Since(began).Round(time.Millisecond))
		default:
			if err := g.node.stop(30 * time.Second); err != nil {
				t.Fatal(err)
			}
			var took time.Duration
			err := g.node.withStore(func(s *store.Store) (err error) {
				took, err = addStorePeers(s, "hs", "k", pubs)
				return err
			})
			if err != nil {
				t.Fatalf("%s: %v", g.kind, err)
			}
			t.Logf("%s: store.AddPeer of %d peers took %v", g.kind, len(pubs), took.Round(time.Millisecond))
			var env []string
			if g.kind == kindUserspace {
				env = append(env, "POPGATE_CPUPROFILE="+profile)
			}
			startTook, err := g.node.start(t, 120*time.Second, env...)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: serve with %d more peers answered status after %v", g.kind, len(pubs), startTook.Round(time.Millisecond))
		}
		g.addSources(t)
		keys, err := newHSKeys(g.serverPub, privs)
		if err != nil {
			t.Fatal(err)
		}
		gen, err := newHSGen(keys, g.endpoint, hsSources(), g.topo.Cli.ListenPacket)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(gen.Close)
		gens[g.kind] = gen
	}
	rate := e.res.def(hsGroup, fmt.Sprintf("completed handshakes per second (%d client keys)", len(privs)), "1/s", 0, +1, 1.0)
	lat := e.res.def(hsGroup, "latency p50, initiation sent → response received", "ms", 2, -1, 0)
	lat99 := e.res.def(hsGroup, "latency p99", "ms", 2, -1, 0)
	cookies := e.res.def(hsGroup, "cookie replies (server under load, wants mac2)", "per run", 0, 0, 0)
	timeouts := e.res.def(hsGroup, "initiations unanswered within 1 s", "per run", 0, 0, 0)
	e.rounds(func(g *gw, _ int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := gens[g.kind].run(ctx, time.Second, 5*time.Second)
		if err != nil {
			t.Errorf("%s: handshakes: %v", g.kind, err)
			for _, rw := range []*row{rate, lat, lat99, cookies, timeouts} {
				e.res.fail(rw, g.kind, err)
			}
			return
		}
		vals := []float64{r.PerSecond(), durPercentile(r.Latency, 50).Seconds() * 1e3, durPercentile(r.Latency, 99).Seconds() * 1e3, float64(r.Cookies), float64(r.Timeouts)}
		for i, rw := range []*row{rate, lat, lat99, cookies, timeouts} {
			e.res.add(rw, g.kind, vals[i])
		}
		t.Logf("%-9s %.0f handshakes/s, p50 %.2f ms, p99 %.2f ms, %d sent, %d verified in full, %d cookies, %d timeouts",
			g.kind, vals[0], vals[1], vals[2], r.Sent, r.Verified, r.Cookies, r.Timeouts)
	})
	g := e.gw(kindUserspace)
	if err := g.node.stop(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	title := fmt.Sprintf("popgate serve, userspace exit, handshake case (start with %d stored peers, then %d rounds of 6 s of handshakes), sorted by cumulative time", len(privs)+1, e.cfg.reps)
	if err := e.keepProfile(t, profile, 22, true, title); err != nil {
		t.Fatal(err)
	}
	if _, err := g.node.start(e.root, 120*time.Second); err != nil {
		t.Fatal(err)
	}
}
