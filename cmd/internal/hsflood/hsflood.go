// Package hsflood floods a WireGuard responder with handshake initiations, for the handshake
// flood tests and benchmarks.
//
// Every initiation has a valid mac1 for the responder's public key, so a responder cannot
// drop it cheaply, and junk where the encrypted static key and timestamp go, so that opening
// it costs the responder one X25519 and then fails. A flood is sent from many source addresses
// (one UDP socket each) as fast as the sending goroutines can (sendmmsg batches), or at a
// set rate. With AnswerCookies each socket reads the cookie replies the responder sends and
// puts a valid mac2 on its later initiations, as an attacker that receives at its address
// does: the flood then passes a responder's under-load check and only a limit per source
// stops it.
package hsflood

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/net/ipv4"
)

// WireGuard message layout (the whitepaper, section 5.4).
const (
	typeInitiation  = 1
	typeCookieReply = 3
	initiationSize  = 148
	cookieReplySize = 64
	mac1Off         = 116
	mac2Off         = 132
	labelMAC1       = "mac1----"
	labelCookie     = "cookie--"
)

// Config describes a flood.
type Config struct {
	// Server is the responder's address.
	Server netip.AddrPort
	// ServerKey is the responder's public key: mac1 and cookie replies depend on it.
	ServerKey [32]byte
	// Sources are the addresses to send from, one socket each; they must be local addresses
	// of the namespace Listen opens sockets in.
	Sources []netip.Addr
	// Listen opens a UDP socket ("udp4", "addr:0"); net.ListenPacket when nil, or a
	// namespace's (testbed.Netns.ListenPacket).
	Listen func(network, addr string) (net.PacketConn, error)
	// AnswerCookies makes each socket read cookie replies and send valid mac2 from then on.
	AnswerCookies bool
	// Senders is the number of sending goroutines, each serving a share of the sockets.
	// Default 2.
	Senders int
	// Rate caps the initiations per second of the whole flood; 0 sends as fast as possible.
	Rate int
}

// Stats are a flood's counters.
type Stats struct {
	Sent         uint64        // initiations sent
	Cookies      uint64        // cookie replies that opened (AnswerCookies only)
	Elapsed      time.Duration // from Start to Stop (or to now)
	SendErrors   uint64        // failed sendmmsg calls (e.g. ENOBUFS)
	MAC2Sources  int           // sockets that hold a cookie (send mac2)
	SourcesTotal int
}

// PerSecond is the mean rate of initiations sent.
func (s Stats) PerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// Flood is a running flood; Stop ends it.
type Flood struct {
	cfg     Config
	mac1Key [blake2s.Size]byte
	cookie  [blake2s.Size]byte // the key that seals cookie replies
	sockets []*socket
	start   time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	end     atomic.Int64 // UnixNano of Stop

	sent, cookies, sendErrors atomic.Uint64
}

// ring is the number of distinct initiations each socket cycles through.
const ring = 64

// socket is one source address: its connection and the initiations it sends.
type socket struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
	// msgs holds ring initiations; it is replaced whole (with mac2 set) when a cookie comes.
	msgs atomic.Pointer[[ring][initiationSize]byte]
	mu   sync.Mutex // guards cookie
	// cookie is the last cookie the responder gave this socket; nil before one came.
	cookie []byte
}

// Start opens the sockets and starts sending.
func Start(cfg Config) (*Flood, error) {
	if len(cfg.Sources) == 0 {
		return nil, errors.New("hsflood: no source addresses")
	}
	if !cfg.Server.IsValid() {
		return nil, errors.New("hsflood: no server address")
	}
	if cfg.Listen == nil {
		cfg.Listen = net.ListenPacket
	}
	if cfg.Senders <= 0 {
		cfg.Senders = 2
	}
	cfg.Senders = min(cfg.Senders, len(cfg.Sources))
	f := &Flood{cfg: cfg, stop: make(chan struct{})}
	f.mac1Key = hash([]byte(labelMAC1), cfg.ServerKey[:])
	f.cookie = hash([]byte(labelCookie), cfg.ServerKey[:])
	for i, a := range cfg.Sources {
		network := "udp4"
		if a.Is6() && !a.Is4In6() {
			network = "udp6"
		}
		c, err := cfg.Listen(network, netip.AddrPortFrom(a, 0).String())
		if err != nil {
			f.closeSockets()
			return nil, fmt.Errorf("hsflood: socket on %s: %w", a, err)
		}
		uc, ok := c.(*net.UDPConn)
		if !ok {
			c.Close()
			f.closeSockets()
			return nil, fmt.Errorf("hsflood: socket on %s is a %T, not a UDP socket", a, c)
		}
		s := &socket{conn: uc, pc: ipv4.NewPacketConn(uc)}
		var msgs [ring][initiationSize]byte
		for j := range msgs {
			if err := f.junk(msgs[j][:], uint32(i)<<8|uint32(j)); err != nil {
				f.closeSockets()
				return nil, err
			}
		}
		s.msgs.Store(&msgs)
		f.sockets = append(f.sockets, s)
	}
	f.start = time.Now()
	for w := range cfg.Senders {
		f.wg.Add(1)
		go f.send(w)
	}
	if cfg.AnswerCookies {
		for _, s := range f.sockets {
			f.wg.Add(1)
			go f.readCookies(s)
		}
	}
	return f, nil
}

// junk writes an initiation with sender index sender, random content and a valid mac1.
func (f *Flood) junk(msg []byte, sender uint32) error {
	binary.LittleEndian.PutUint32(msg[0:], typeInitiation)
	binary.LittleEndian.PutUint32(msg[4:], sender)
	if _, err := rand.Read(msg[8:mac1Off]); err != nil {
		return fmt.Errorf("hsflood: %w", err)
	}
	m := mac(f.mac1Key[:], msg[:mac1Off])
	copy(msg[mac1Off:], m[:])
	clear(msg[mac2Off:])
	return nil
}

// send is one sending goroutine: it serves sockets w, w+Senders, … in turn, a batch each.
func (f *Flood) send(w int) {
	defer f.wg.Done()
	const batch = 32
	dst := net.UDPAddrFromAddrPort(f.cfg.Server)
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i].Buffers = [][]byte{nil}
		ms[i].Addr = dst
	}
	var mine []*socket
	for i := w; i < len(f.sockets); i += f.cfg.Senders {
		mine = append(mine, f.sockets[i])
	}
	// With a rate, each goroutine sends its share in batches spaced accordingly.
	var every time.Duration
	if f.cfg.Rate > 0 {
		share := float64(f.cfg.Rate) / float64(f.cfg.Senders)
		every = time.Duration(float64(time.Second) * batch / share)
	}
	next := time.Now()
	pos := 0
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		for _, s := range mine {
			msgs := s.msgs.Load()
			for i := range ms {
				ms[i].Buffers[0] = msgs[(pos+i)%ring][:]
			}
			n, err := s.pc.WriteBatch(ms, 0)
			if err != nil {
				f.sendErrors.Add(1)
			}
			if n > 0 {
				f.sent.Add(uint64(n))
			}
			if every > 0 {
				next = next.Add(every)
				if d := time.Until(next); d > 0 {
					select {
					case <-f.stop:
						return
					case <-time.After(d):
					}
				} else if d < -time.Second {
					next = time.Now() // far behind: do not burst to catch up
				}
			}
		}
		pos += batch
	}
}

// readCookies reads what the responder sends to s; a cookie reply to one of s's initiations
// gives s a cookie, and its initiations get a valid mac2 from then on.
func (f *Flood) readCookies(s *socket) {
	defer f.wg.Done()
	aead, err := chacha20poly1305.NewX(f.cookie[:])
	if err != nil {
		return
	}
	buf := make([]byte, 256)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n != cookieReplySize || binary.LittleEndian.Uint32(buf) != typeCookieReply {
			continue
		}
		msgs := s.msgs.Load()
		j := binary.LittleEndian.Uint32(buf[4:]) & 0xff
		if j >= ring {
			continue
		}
		// The reply's additional data is the mac1 of the initiation it answers.
		cookie, err := aead.Open(nil, buf[8:32], buf[32:64], msgs[j][mac1Off:mac2Off])
		if err != nil {
			continue
		}
		f.cookies.Add(1)
		s.mu.Lock()
		s.cookie = cookie
		next := *msgs
		for i := range next {
			m := mac(cookie, next[i][:mac2Off])
			copy(next[i][mac2Off:], m[:])
		}
		s.msgs.Store(&next)
		s.mu.Unlock()
	}
}

// Stats returns the counters so far.
func (f *Flood) Stats() Stats {
	end := time.Now()
	if e := f.end.Load(); e != 0 {
		end = time.Unix(0, e)
	}
	st := Stats{
		Sent:         f.sent.Load(),
		Cookies:      f.cookies.Load(),
		SendErrors:   f.sendErrors.Load(),
		Elapsed:      end.Sub(f.start),
		SourcesTotal: len(f.sockets),
	}
	for _, s := range f.sockets {
		s.mu.Lock()
		if s.cookie != nil {
			st.MAC2Sources++
		}
		s.mu.Unlock()
	}
	return st
}

// Stop ends the flood, closes its sockets and returns its counters. Calling it again returns
// the same counters.
func (f *Flood) Stop() Stats {
	f.once.Do(func() {
		f.end.Store(time.Now().UnixNano())
		close(f.stop)
		f.closeSockets()
		f.wg.Wait()
	})
	return f.Stats()
}

func (f *Flood) closeSockets() {
	for _, s := range f.sockets {
		s.conn.Close()
	}
}

func hash(a, b []byte) (out [blake2s.Size]byte) {
	h, _ := blake2s.New256(nil)
	h.Write(a)
	h.Write(b)
	h.Sum(out[:0])
	return out
}

// mac is keyed BLAKE2s-128.
func mac(key, msg []byte) (out [blake2s.Size128]byte) {
	h, err := blake2s.New128(key)
	if err != nil {
		panic(err) // only for an empty or over-long key
	}
	h.Write(msg)
	h.Sum(out[:0])
	return out
}
