//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// iperfReport is the part of `iperf3 --json` the benchmark reads.
type iperfReport struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Packets       float64 `json:"packets"`
			LostPackets   float64 `json:"lost_packets"`
			LostPercent   float64 `json:"lost_percent"`
		} `json:"sum_received"`
	} `json:"end"`
}

// tcpThroughput runs a TCP iperf3 through g with streams streams (reverse: from Net to the
// client, -R) for 5 s after 1 s omitted, and returns its Gbit/s and the CPU seconds per GB
// moved of the processes pids.
func (g *gw) tcpThroughput(t testing.TB, streams int, reverse bool, pids ...int) ([]float64, error) {
	args := []string{"-O", "1", "-P", strconv.Itoa(streams)}
	if reverse {
		args = append(args, "-R")
	}
	cpu0, err := cpuSeconds(pids...)
	if err != nil {
		return nil, err
	}
	rep, err := g.iperf(t, 5, args...)
	cpu1, cerr := cpuSeconds(pids...)
	if err == nil {
		err = cerr
	}
	// iperf3 ran 6 s (1 omitted) but reports the bytes of 5: scale by 6/5.
	gb := rep.End.SumReceived.Bytes / 1e9 * 6 / 5
	return []float64{rep.End.SumReceived.BitsPerSecond / 1e9, (cpu1 - cpu0) / max(gb, 1e-9)}, err
}

// iperf runs the iperf3 client in Cli against Net's server with args (e.g. "-P", "4") for
// secs seconds and returns its report. A failed run is retried once with a fresh server:
// iperf3 -s sometimes stays busy after a client died.
func (g *gw) iperf(t testing.TB, secs int, args ...string) (iperfReport, error) {
	rep, err := g.iperfOnce(secs, args...)
	if err == nil {
		return rep, nil
	}
	t.Logf("%s: iperf3 %s failed (%v); restarting iperf3 -s and trying again", g.kind, strings.Join(args, " "), err)
	if serr := g.startIperf(t); serr != nil {
		return rep, fmt.Errorf("%w; restarting iperf3 -s: %v", err, serr)
	}
	if rerr := g.ready(20 * time.Second); rerr != nil {
		return rep, fmt.Errorf("%w; then: %v", err, rerr)
	}
	return g.iperfOnce(secs, args...)
}

func (g *gw) iperfOnce(secs int, args ...string) (iperfReport, error) {
	var rep iperfReport
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+25)*time.Second)
	defer cancel()
	cmd := append([]string{"iperf3", "-c", g.topo.NetAddr4.String(), "-p", g.iperfAt(),
		"-t", strconv.Itoa(secs), "--connect-timeout", "5000", "--json"}, args...)
	out, runErr := g.topo.Cli.Command(ctx, cmd...).Output()
	if err := json.Unmarshal(out, &rep); err != nil {
		if runErr == nil {
			runErr = err
		}
		return rep, fmt.Errorf("%s: %w: %.300s", strings.Join(cmd, " "), runErr, out)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("%s: %s", strings.Join(cmd, " "), rep.Error)
	}
	if runErr != nil {
		return rep, fmt.Errorf("%s: %w", strings.Join(cmd, " "), runErr)
	}
	if ctx.Err() != nil {
		return rep, fmt.Errorf("%s: %w", strings.Join(cmd, " "), ctx.Err())
	}
	return rep, nil
}

// pingRTTs runs `ping -c count -i interval` from Cli to Net through the tunnel and returns the
// round-trip times of the replies and how many were lost.
func (g *gw) pingRTTs(count int, interval time.Duration) (rtts []float64, lost int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(count)*interval+20*time.Second)
	defer cancel()
	out, err := g.topo.Cli.Run(ctx, "ping", "-n", "-c", strconv.Itoa(count), "-i", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64),
		"-W", "1", g.topo.NetAddr4.String())
	rtts = parsePing(out)
	if len(rtts) == 0 {
		if err == nil {
			err = errors.New("no reply")
		}
		return nil, count, fmt.Errorf("%s: ping: %w", g.kind, err)
	}
	return rtts, count - len(rtts), nil // ping exits 1 when some were lost: not an error here
}

var pingTimeRE = regexp.MustCompile(`time=([0-9.]+) ms`)

// parsePing returns the time= values of ping's reply lines, in ms.
func parsePing(out string) []float64 {
	var v []float64
	for _, m := range pingTimeRE.FindAllStringSubmatch(out, -1) {
		if f, err := strconv.ParseFloat(m[1], 64); err == nil {
			v = append(v, f)
		}
	}
	return v
}

// percentile returns the p-th percentile (nearest rank) of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func durPercentile(v []time.Duration, p float64) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(percentile(f, p))
}

// drops are the kernel's counters of datagrams it dropped along a gateway's path: the
// client's TUN (what its wireguard-go did not read in time), the UDP sockets of the
// gateway's namespace (the gateway's socket whose receive buffer was full) and of Net's
// (iperf3's).
type drops struct{ cliTUN, popUDP, netUDP float64 }

func (g *gw) dropCounters() (drops, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d drops
	if g.client == nil {
		return d, fmt.Errorf("%s: no client whose TUN drops to count", g.kind)
	}
	out, err := g.topo.Cli.Run(ctx, "cat", "/sys/class/net/"+g.client.Ifname+"/statistics/tx_dropped")
	if err != nil {
		return d, err
	}
	if d.cliTUN, err = strconv.ParseFloat(strings.TrimSpace(out), 64); err != nil {
		return d, fmt.Errorf("tx_dropped of %s: %w", g.client.Ifname, err)
	}
	pop, err := g.topo.Pop.UDPRcvbufErrors()
	if err != nil {
		return d, err
	}
	inNet, err := g.topo.Net.UDPRcvbufErrors()
	d.popUDP, d.netUDP = float64(pop), float64(inNet)
	return d, err
}

// lossWhere splits one run's lost datagrams by where they went, in % of those sent.
type lossWhere struct{ cliTUN, popUDP, netUDP, other float64 }

// since is the run's share of each counter from before to d, of sent datagrams of which
// lost were lost; "other" is what no counter saw (dropped inside a wireguard-go or popgate).
func (d drops) since(before drops, sent, lost float64) lossWhere {
	pct := func(v float64) float64 { return 100 * v / sent }
	w := lossWhere{cliTUN: pct(d.cliTUN - before.cliTUN), popUDP: pct(d.popUDP - before.popUDP), netUDP: pct(d.netUDP - before.netUDP)}
	w.other = max(0, pct(lost)-w.cliTUN-w.popUDP-w.netUDP)
	return w
}

func medianWhere(ws []lossWhere) string {
	m := func(f func(lossWhere) float64) float64 {
		v := make([]float64, len(ws))
		for i, w := range ws {
			v[i] = f(w)
		}
		return median(v)
	}
	return fmt.Sprintf("the client's TUN %.1f, the gateway's UDP sockets %.1f, Net's UDP sockets %.1f, elsewhere (inside wireguard-go or popgate) %.1f",
		m(func(w lossWhere) float64 { return w.cliTUN }), m(func(w lossWhere) float64 { return w.popUDP }),
		m(func(w lossWhere) float64 { return w.netUDP }), m(func(w lossWhere) float64 { return w.other }))
}
