package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
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

// FileServerOptions tunes ServeRandomFileWith.
type FileServerOptions struct {
	// Addr is where the server listens in its namespace. Default ":0": a free port on every
	// address.
	Addr string
	// SizeMB is the size of the file in MiB. Default 20.
	SizeMB int
	// Rate limits each download of the file to this many bytes a second, for a download that
	// must last a while. Default 0: as fast as it goes.
	Rate int64
	// Index, when set, is answered at "/" as text/plain: a quick probe that the server is
	// reached.
	Index string
}

// ServeRandomFile serves sizeMB MiB of random bytes from ns; t's cleanup stops the server.
func ServeRandomFile(t testing.TB, ns *Netns, sizeMB int) *FileServer {
	t.Helper()
	return ServeRandomFileWith(t, ns, FileServerOptions{SizeMB: sizeMB})
}

// ServeRandomFileWith serves a file of random bytes from ns as opts say; t's cleanup stops
// the server.
func ServeRandomFileWith(t testing.TB, ns *Netns, opts FileServerOptions) *FileServer {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = ":0"
	}
	if opts.SizeMB == 0 {
		opts.SizeMB = 20
	}
	data := make([]byte, opts.SizeMB<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	modTime := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		if opts.Rate > 0 {
			serveSlowly(w, r, data, opts.Rate)
			return
		}
		http.ServeContent(w, r, "file", modTime, bytes.NewReader(data))
	})
	if opts.Index != "" {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, opts.Index)
		})
	}
	port := serveHTTP(t, ns, opts.Addr, mux)
	return &FileServer{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Port: port}
}

// serveSlowly writes data as the whole answer at rate bytes a second, until the client
// goes away.
func serveSlowly(w http.ResponseWriter, r *http.Request, data []byte, rate int64) {
	const chunk = 32 << 10
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	start := time.Now()
	for sent := 0; sent < len(data); {
		due := start.Add(time.Duration(int64(sent) * int64(time.Second) / rate))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(wait):
			}
		}
		n := min(chunk, len(data)-sent)
		if _, err := w.Write(data[sent : sent+n]); err != nil {
			return
		}
		sent += n
	}
}

// ServeText answers every GET on addr (e.g. "10.10.0.2:80") in ns with text, as
// text/plain; t's cleanup stops the server. It returns the port.
func ServeText(t testing.TB, ns *Netns, addr, text string) int {
	t.Helper()
	return serveHTTP(t, ns, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, text)
	}))
}

// serveHTTP serves h on addr in ns until t's cleanup and returns the port.
func serveHTTP(t testing.TB, ns *Netns, addr string, h http.Handler) int {
	t.Helper()
	l, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("testbed: listen in %s: %v", ns, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port
}

// ServeTCP accepts TCP connections on addr (e.g. ":22") in ns and hands each to handle, one
// after the other, which closes it; t's cleanup stops it. It returns the port.
func ServeTCP(t testing.TB, ns *Netns, addr string, handle func(c net.Conn)) int {
	t.Helper()
	l, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("testbed: listen in %s: %v", ns, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			handle(c)
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port
}

// ServeBanner accepts TCP connections on addr (e.g. ":22") in ns, writes banner to each and
// closes it, like an SSH server's greeting; t's cleanup stops it. It returns the port.
func ServeBanner(t testing.TB, ns *Netns, addr, banner string) int {
	t.Helper()
	return ServeTCP(t, ns, addr, func(c net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, banner)
		_ = c.Close()
	})
}

// ReadBanner connects from ns to addr and returns what the server sends until it closes the
// connection (at most 64 KiB), or the error of the connect or of reading.
func ReadBanner(ctx context.Context, ns *Netns, addr netip.AddrPort) (string, error) {
	c, err := ns.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	b, err := io.ReadAll(io.LimitReader(c, 64<<10))
	if err != nil {
		return string(b), fmt.Errorf("read from %s: %w", addr, err)
	}
	return string(b), nil
}

// GetText fetches url with a connection made in ns and returns the body (at most 1 MiB). An
// answer other than 200 OK is an error.
func GetText(ctx context.Context, ns *Netns, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := ns.HTTPClient().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// Download fetches url with a connection made in ns and returns the body's length and
// hex sha256.
func Download(ctx context.Context, ns *Netns, url string) (n int64, sha string, err error) {
	return DownloadProgress(ctx, ns, url, nil)
}

// DownloadProgress is Download that also keeps the number of body bytes received so far in
// progress (when not nil), for a test to watch a download run.
func DownloadProgress(ctx context.Context, ns *Netns, url string, progress *atomic.Int64) (n int64, sha string, err error) {
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
	var w io.Writer = h
	if progress != nil {
		w = progressWriter{h, progress}
	}
	n, err = io.Copy(w, resp.Body)
	if err != nil {
		return n, "", fmt.Errorf("GET %s: after %d bytes: %w", url, n, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// BackgroundDownload is a DownloadProgress running on a goroutine of its own, for a test
// to watch it and change the network under it.
type BackgroundDownload struct {
	// Progress is the number of body bytes received so far.
	Progress atomic.Int64
	done     chan struct{}
	result   DownloadResult
}

// DownloadResult is how a download ended: the body's bytes received, their SHA-256 (hex) when
// it completed, or why it did not.
type DownloadResult struct {
	N      int64
	SHA256 string
	Err    error
}

// StartDownload starts DownloadProgress from ns of url until it ends or ctx does.
func StartDownload(ctx context.Context, ns *Netns, url string) *BackgroundDownload {
	d := &BackgroundDownload{done: make(chan struct{})}
	go func() {
		defer close(d.done)
		n, sha, err := DownloadProgress(ctx, ns, url, &d.Progress)
		d.result = DownloadResult{n, sha, err}
	}()
	return d
}

// Wait waits until the download ends and returns how.
func (d *BackgroundDownload) Wait() DownloadResult {
	<-d.done
	return d.result
}

// progressWriter counts what passes through it into n.
type progressWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n.Add(int64(n))
	return n, err
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

// StartUDPEcho starts a UDP echo server on a free port in ns; t's cleanup stops it.
func StartUDPEcho(t testing.TB, ns *Netns) *UDPEchoServer {
	t.Helper()
	return StartUDPEchoOn(t, ns, ":0")
}

// StartUDPEchoOn starts a UDP echo server on addr (e.g. ":7") in ns; t's cleanup stops it.
func StartUDPEchoOn(t testing.TB, ns *Netns, addr string) *UDPEchoServer {
	t.Helper()
	port := ServeUDP(t, ns, addr, func(req []byte, _ net.Addr) []byte { return req })
	return &UDPEchoServer{Port: port}
}

// ServeUDP answers each datagram to addr (e.g. ":53") in ns with what reply returns for it
// (nil: no answer), one after the other, until t's cleanup stops it; req is valid until
// reply returns. It returns the port.
func ServeUDP(t testing.TB, ns *Netns, addr string, reply func(req []byte, from net.Addr) []byte) int {
	t.Helper()
	c, err := ns.ListenPacket("udp", addr)
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
			if b := reply(buf[:n], from); b != nil {
				_, _ = c.WriteTo(b, from)
			}
		}
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-done
	})
	return c.LocalAddr().(*net.UDPAddr).Port
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

// EchoFlow sends a datagram from a namespace to a UDP echo server at a fixed interval, all
// over one socket (so a firewall sees one flow, not one per probe), and records the answers.
type EchoFlow struct {
	conn      net.Conn
	sent      atomic.Int64
	replies   atomic.Int64
	lastReply atomic.Int64 // UnixNano of the last answer; 0 before the first
	done      chan struct{}
	stopOnce  sync.Once
}

// StartEchoFlow starts an EchoFlow from ns to dst that sends every interval; Stop or t's
// cleanup stops it.
func StartEchoFlow(t testing.TB, ns *Netns, dst netip.AddrPort, interval time.Duration) *EchoFlow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "udp", dst.String())
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	f := &EchoFlow{conn: c, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // sender
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		msg := make([]byte, 64)
		for seq := uint64(0); ; seq++ {
			binary.BigEndian.PutUint64(msg, seq)
			// Errors (ECONNREFUSED after an ICMP error, no route) are what a cut looks like:
			// keep sending.
			if _, err := c.Write(msg); err == nil {
				f.sent.Add(1)
			}
			select {
			case <-f.done:
				return
			case <-tick.C:
			}
		}
	}()
	go func() { // receiver
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil && n == 64 {
				f.replies.Add(1)
				f.lastReply.Store(time.Now().UnixNano())
			}
		}
	}()
	stopped := make(chan struct{})
	go func() {
		wg.Wait()
		close(stopped)
	}()
	t.Cleanup(func() {
		f.Stop()
		<-stopped
	})
	return f
}

// LastReply returns when the last answer came; the zero time before the first.
func (f *EchoFlow) LastReply() time.Time {
	ns := f.lastReply.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Sent and Replies count the datagrams sent and the answers received.
func (f *EchoFlow) Sent() int64    { return f.sent.Load() }
func (f *EchoFlow) Replies() int64 { return f.replies.Load() }

// LocalAddr is the flow's source address and port.
func (f *EchoFlow) LocalAddr() netip.AddrPort {
	return f.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Stop stops sending and closes the socket; calling it again does nothing.
func (f *EchoFlow) Stop() {
	f.stopOnce.Do(func() {
		close(f.done)
		_ = f.conn.Close()
	})
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
