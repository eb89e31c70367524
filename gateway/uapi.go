package gateway

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/ipc"

	"github.com/popgate/popgate/store"
)

// serveUAPI serves a read-only view of every tenant's device as one device named after
// --interface on /var/run/wireguard/<iface>.sock, so wg(8) and wgctrl see all peers (they
// share the node's key and port). Without write access there (not root) it logs one line and
// the node runs on without it.
func (n *Node) serveUAPI() {
	path := "/var/run/wireguard/" + n.cfg.Interface + ".sock"
	f, err := ipc.UAPIOpen(n.cfg.Interface)
	if err != nil {
		n.log.Info("'wg show' is unavailable: cannot create the UAPI socket (needs write access to /var/run/wireguard)", "path", path, "err", err)
		return
	}
	l, err := ipc.UAPIListen(n.cfg.Interface, f)
	f.Close()
	if err != nil {
		n.log.Info("'wg show' is unavailable: cannot listen on the UAPI socket", "path", path, "err", err)
		return
	}
	n.uapi, n.uapiPath = l, path
	n.uapiConns = map[net.Conn]struct{}{}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// wireguard-go's UAPI listener runs two goroutines (accept, and a watch on the
		// socket file) that each end by handing Accept one error, and block until it is
		// taken: take both, or they outlive the node.
		for errs := 0; errs < 2; {
			c, err := l.Accept()
			if err != nil {
				errs++
				continue
			}
			n.uapiMu.Lock()
			if n.closed() {
				n.uapiMu.Unlock()
				c.Close()
				continue
			}
			n.uapiConns[c] = struct{}{}
			n.wg.Add(1)
			n.uapiMu.Unlock()
			go func() {
				defer n.wg.Done()
				n.handleUAPI(c)
				n.uapiMu.Lock()
				delete(n.uapiConns, c)
				n.uapiMu.Unlock()
			}()
		}
	}()
}

// closeUAPI closes the UAPI listener and the connections it accepted. The node is closing, so
// the accept loop takes no new ones.
func (n *Node) closeUAPI() {
	if n.uapi == nil {
		return
	}
	n.uapi.Close()
	n.uapiMu.Lock()
	for c := range n.uapiConns {
		c.Close()
	}
	n.uapiMu.Unlock()
}

// handleUAPI answers the configuration protocol's get; set is refused (EPERM): popgate owns
// the configuration.
func (n *Node) handleUAPI(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for {
		op, err := r.ReadString('\n')
		if err != nil {
			return
		}
		// Consume the request up to its empty line.
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\n" {
				break
			}
		}
		switch op {
		case "get=1\n":
			io.WriteString(c, n.uapiGet())
			io.WriteString(c, "errno=0\n\n")
		default:
			io.WriteString(c, "errno=1\n\n")
		}
	}
}

// uapiGet merges the devices' configuration: the node's key and port once, then every peer.
func (n *Node) uapiGet() string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%x\nlisten_port=%d\n", n.key[:], n.cfg.ListenPort)
	for _, text := range n.deviceStates() {
		i := strings.Index(text, "public_key=")
		if i >= 0 {
			b.WriteString(text[i:])
		}
	}
	return b.String()
}

// deviceStates returns every tenant device's IpcGet text.
func (n *Node) deviceStates() []string {
	n.mu.Lock()
	devs := make([]*tenantDevice, 0, len(n.devs))
	for _, td := range n.devs {
		devs = append(devs, td)
	}
	n.mu.Unlock()
	out := make([]string, 0, len(devs))
	for _, td := range devs {
		text, err := td.dev.IpcGet()
		if err != nil {
			n.log.Warn("read device state", "tenant_id", td.id, "err", err)
			continue
		}
		out = append(out, text)
	}
	return out
}

// peerStats is the live state of one peer in the device.
type peerStats struct {
	endpoint      string
	lastHandshake time.Time
	rxBytes       uint64
	txBytes       uint64
}

// onlineWindow: a peer that completed a handshake this recently is online. WireGuard re-keys
// every 2 minutes while traffic flows (keepalives count), and sessions die after 3.
const onlineWindow = 3 * time.Minute

func (s peerStats) online(now time.Time) bool {
	return !s.lastHandshake.IsZero() && now.Sub(s.lastHandshake) < onlineWindow
}

// parsePeerStats adds the peers of one IpcGet text to out.
func parsePeerStats(text string, out map[store.Key]peerStats) {
	var (
		key   store.Key
		cur   peerStats
		have  bool
		sec   int64
		nsec  int64
		flush = func() {
			if have {
				if sec != 0 || nsec != 0 {
					cur.lastHandshake = time.Unix(sec, nsec)
				}
				out[key] = cur
			}
		}
	)
	// Lines of text, not copies: with thousands of peers in the devices this runs for every
	// listing and status.
	for line := range strings.Lines(text) {
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			flush()
			have, cur, sec, nsec = false, peerStats{}, 0, 0
			if b, err := hex.DecodeString(v); err == nil && len(b) == store.KeyLen {
				copy(key[:], b)
				have = true
			}
		case "endpoint":
			cur.endpoint = v
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			cur.rxBytes, _ = strconv.ParseUint(v, 10, 64)
		case "tx_bytes":
			cur.txBytes, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	flush()
}
