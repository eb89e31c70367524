package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// FileServer serves one file of random bytes over HTTP at /file on every address of its
// namespace (IPv4 and IPv6).
type FileServer struct {
	Size   int64
	SHA256 string // hex
	Port   int
}

// URL returns the file's URL at addr.
func (fs *FileServer) URL(addr netip.Addr) string {
	return "http://" + netip.AddrPortFrom(addr, uint16(fs.Port)).String() + "/file"
}

// ServeRandomFile serves sizeMB MiB of random bytes from ns; t's cleanup stops the server.
func ServeRandomFile(t testing.TB, ns *Netns, sizeMB int) *FileServer {
	t.Helper()
	data := make([]byte, sizeMB<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	l, err := ns.Listen("tcp", ":0")
	if err != nil {
		t.Fatalf("testbed: listen in %s: %v", ns, err)
	}
	modTime := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "file", modTime, bytes.NewReader(data))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return &FileServer{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Port: l.Addr().(*net.TCPAddr).Port}
}

// Download fetches url with a connection made in ns and returns the body's length and
// hex sha256.
func Download(ctx context.Context, ns *Netns, url string) (n int64, sha string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := ns.HTTPClient().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	n, err = io.Copy(h, resp.Body)
	if err != nil {
		return n, "", fmt.Errorf("GET %s: after %d bytes: %w", url, n, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// CheckDownload downloads the file from ns at addr and compares length and checksum.
func (fs *FileServer) CheckDownload(ctx context.Context, ns *Netns, addr netip.Addr) error {
	n, sha, err := Download(ctx, ns, fs.URL(addr))
	if err != nil {
		return err
	}
	if n != fs.Size || sha != fs.SHA256 {
		return fmt.Errorf("GET %s: got %d bytes sha256 %s, want %d bytes %s", fs.URL(addr), n, sha, fs.Size, fs.SHA256)
	}
	return nil
}

// UDPEchoServer answers every UDP datagram with the same bytes, on every address of its
// namespace.
type UDPEchoServer struct {
	Port int
}

// Addr returns the server's address at addr.
func (e *UDPEchoServer) Addr(addr netip.Addr) netip.AddrPort {
	return netip.AddrPortFrom(addr, uint16(e.Port))
}

// StartUDPEcho starts a UDP echo server in ns; t's cleanup stops it.
func StartUDPEcho(t testing.TB, ns *Netns) *UDPEchoServer {
	t.Helper()
	c, err := ns.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatalf("testbed: listen in %s: %v", ns, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			_, _ = c.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-done
	})
	return &UDPEchoServer{Port: c.LocalAddr().(*net.UDPAddr).Port}
}

// EchoUDP sends a random datagram of 1,000 bytes from ns to dst, again every 300 ms, until the
// same bytes come back or ctx ends (then it returns an error: give ctx a deadline).
func EchoUDP(ctx context.Context, ns *Netns, dst netip.AddrPort) error {
	c, err := ns.DialContext(ctx, "udp", dst.String())
	if err != nil {
		return err
	}
	defer c.Close()
	msg := make([]byte, 1000)
	_, _ = rand.Read(msg)
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 2048)
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("udp echo %s: no answer: %w", dst, ctx.Err())
		}
		if _, err := c.Write(msg); err != nil && ctx.Err() == nil {
			// e.g. ECONNREFUSED from an earlier ICMP error, or no route: retry until ctx ends.
			time.Sleep(300 * time.Millisecond)
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if bytes.Equal(buf[:n], msg) {
				return nil
			}
		}
	}
}

// Ping runs iputils `ping -n -c 3 -W 2 addr` in ns; it succeeds when any reply came back.
func Ping(ctx context.Context, ns *Netns, addr netip.Addr) error {
	return PingN(ctx, ns, addr, 3, 2*time.Second)
}

// PingN runs `ping -n -c count -W wait addr` in ns (-i 0.2 when count > 1); it succeeds when
// any reply came back.
func PingN(ctx context.Context, ns *Netns, addr netip.Addr, count int, wait time.Duration) error {
	args := []string{"ping", "-n", "-c", strconv.Itoa(count), "-W", strconv.FormatFloat(wait.Seconds(), 'f', -1, 64)}
	if count > 1 {
		args = append(args, "-i", "0.2")
	}
	_, err := ns.Run(ctx, append(args, addr.String())...)
	return err
}
