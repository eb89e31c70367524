package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/popgate/popgate/gateway/plane"
	"github.com/popgate/popgate/gateway/wgmux"
)

// handshakeRetry is how long a handshake check waits for an answer before it sends another
// initiation (a new one: the responder answers each timestamp once), so that one lost
// datagram is not a failure.
const handshakeRetry = time.Second

// handshake asks c's endpoint for a WireGuard handshake from the node's backbone key, which
// the endpoint's PoPs know as another node's (plane.Desired.Nodes) and answer themselves
// (wgmux.Mux.SetMonitors). It passes when a response opens with the keys: the endpoint is
// reachable from here and holds the region's key. Its latency is the round trip of the
// initiation answered (a cookie reply's round included: the endpoint was under load).
func (p *netProber) handshake(ctx context.Context, c *plane.Check) outcome {
	if p.hsKey.IsZero() {
		return outcome{err: "this node has no backbone key to shake hands with: give it --backbone-endpoint"}
	}
	addr, err := resolveUDP(ctx, c.Target)
	if err != nil {
		return outcome{err: err.Error()}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return outcome{err: err.Error()}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	type attempt struct {
		h    *wgmux.Handshake
		sent time.Time
	}
	var tries []attempt
	last := "no answer in time"
	refused := fmt.Sprintf("%s refused the datagram (ICMP port unreachable): nothing listens there", addr)
	// try sends a new initiation. A refusal (ICMP port unreachable) of an earlier one comes
	// back on the next read or write of the socket.
	try := func() error {
		h, err := wgmux.NewHandshake(p.hsKey, c.PublicKey, time.Now())
		if err != nil {
			return err
		}
		tries = append(tries, attempt{h, time.Now()})
		_, err = conn.Write(h.Initiation())
		if errors.Is(err, syscall.ECONNREFUSED) {
			last, err = refused, nil
		}
		return err
	}
	if err := try(); err != nil {
		return outcome{err: err.Error()}
	}
	cookied := false
	buf := make([]byte, 2048)
	for {
		conn.SetReadDeadline(time.Now().Add(handshakeRetry))
		if dl, ok := ctx.Deadline(); ok && dl.Before(time.Now().Add(handshakeRetry)) {
			conn.SetReadDeadline(dl)
		}
		n, err := conn.Read(buf)
		switch {
		case ctx.Err() != nil:
			return outcome{err: last}
		case errors.Is(err, os.ErrDeadlineExceeded):
			if err := try(); err != nil {
				return outcome{err: err.Error()}
			}
			continue
		case errors.Is(err, syscall.ECONNREFUSED):
			last = refused // said once: the next read waits for the retry
			continue
		case err != nil:
			return outcome{err: err.Error()}
		}
		for i := range tries {
			switch err := tries[i].h.Response(buf[:n]); {
			case err == nil:
				detail := "answered by " + addr
				if cookied {
					detail += " (under load: after a cookie)"
				}
				return outcome{ok: true, latency: time.Since(tries[i].sent), detail: detail}
			case errors.Is(err, wgmux.ErrCookie) && !cookied:
				cookied = true
				if err := tries[i].h.Retry(buf[:n], time.Now()); err != nil {
					last = err.Error()
					continue
				}
				if _, err := conn.Write(tries[i].h.Initiation()); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
					return outcome{err: err.Error()}
				}
			case !errors.Is(err, wgmux.ErrCookie) && !errors.Is(err, wgmux.ErrNotThis):
				last = err.Error()
			}
		}
	}
}

// resolveUDP turns host:port into an address to dial, looking the host up when it is a name.
func resolveUDP(ctx context.Context, hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return "", fmt.Errorf("look up %s: %v", host, err)
	}
	return net.JoinHostPort(addrs[0].Unmap().String(), port), nil
}
