package wgmux

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/gateway/wgmux/wgmuxtest"
	"github.com/popgate/popgate/store"
)

// runFrom is syncHarness.run for datagrams from the endpoints eps, without collecting what
// the devices get.
func (h *syncHarness) runFrom(pkts [][]byte, eps []conn.Endpoint) {
	for i, p := range pkts {
		h.sizes[i] = copy(h.bufs[i], p)
		h.eps[i] = eps[i]
	}
	h.rc.sort(h.bufs, h.sizes, h.eps, len(pkts))
	var (
		c   counts
		msg [initiationSize]byte
	)
	for {
		ep, ok := h.m.hs.take(&msg)
		if !ok {
			break
		}
		h.m.routeInitiation(h.g, &msg, ep, &c)
	}
	h.m.flush(&c)
	for _, s := range h.s {
		for len(s.queue) > 0 {
			b := <-s.queue
			s.queued.Add(-int64(b.n))
			h.m.releaseBatch(b)
		}
	}
}

// handled is how many datagrams the counters of st say were dealt with, one way or another.
func handled(st Stats) uint64 {
	return st.Delivered + st.Malformed + st.BadMAC1 + st.BadInitiation + st.UnknownInitiator + st.UnknownIndex +
		st.NoDevice + st.QueueDrops + st.HandshakeDrops + st.CookiesSent + st.CookieLimited + st.RateLimited
}

// FuzzHandshakeAdmission: under load, initiations from a few sources (IPv4, and IPv6 sharing
// and not sharing a /64), each a real client's initiation or junk, changed where the fuzzer
// says, with mac1 and mac2 as a stock client's cookie generator sets them (mac2 once the
// source has a cookie) or left as they are. Every datagram is counted once; a cookie reply
// answers only an initiation with a valid mac1, goes to its sender index, and the client's
// cookie generator takes it; an initiation with a valid mac2 never gets another; the
// admission table stays within its bounds.
//
// The input is up to 16 steps of four bytes and a body: the source, flags (bit 0: junk instead of
// the real initiation; bit 1: the client sets the MACs; bit 2: the body is written after the
// MACs are set), the offset where the body goes, and the body's length.
func FuzzHandshakeAdmission(f *testing.F) {
	step := func(src, flags, off byte, body ...byte) []byte {
		return append([]byte{src, flags, off, byte(len(body))}, body...)
	}
	cat := func(steps ...[]byte) (b []byte) {
		for _, s := range steps {
			b = append(b, s...)
		}
		return b
	}
	for _, s := range [][]byte{
		cat(step(0, 2, 4, 1, 2, 3, 4), step(0, 2, 4, 1, 2, 3, 4)), // a cookie, then mac2
		cat(step(1, 3, 0), step(1, 3, 0), step(2, 2, 8, 9)),
		cat(step(3, 2, 4, 7), step(4, 2, 4, 7), step(3, 2, 4, 8)), // one /64
		cat(step(0, 6, 132, 0xff), step(0, 6, 116, 0)),            // mac1 or mac2 spoiled
		cat(step(0, 0, 0), step(1, 1, 0)),                         // as captured, and junk without MACs
		cat(step(0, 2, 0, 5, 0, 0, 0)),                            // not an initiation
		{},
	} {
		f.Add(s)
	}
	node, client := testKey(f), testKey(f)
	nodePub := node.PublicKey()
	real := captureInitiation(f, client, nodePub)
	route := func(k store.Key) (int64, bool) { return 1, k == client.PublicKey() }
	h := newSyncHarness(f, node, route, 1)
	clk := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h.m.now = clk.Now
	sock := h.m.inner.(*wgmuxtest.Socket)
	sources := []conn.Endpoint{
		wgmuxtest.At("192.0.2.1:51820"), wgmuxtest.At("192.0.2.2:40000"), wgmuxtest.At("198.51.100.7:1"),
		wgmuxtest.At("[2001:db8:1::1]:51820"), wgmuxtest.At("[2001:db8:1::2]:51820"), wgmuxtest.At("[2001:db8:2::1]:9"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 300 {
			return // longer inputs add nothing but time to minimize them in
		}
		// Under load for good, with full buckets and no refusals counted: each input starts
		// from the same state, so that what it covers is its own doing.
		clk.Advance(time.Minute)
		h.m.hs.mu.Lock()
		h.m.hs.renewLocked(math.MaxInt64)
		h.m.hs.mu.Unlock()
		gens := make([]*device.CookieGenerator, len(sources))
		hasCookie := make([]bool, len(sources))
		for steps := 0; len(data) >= 4 && steps < 16; steps++ { // 16: each costs up to an X25519 and two AEADs
			src, flags, off, n := int(data[0])%len(sources), data[1], int(data[2]), int(data[3])
			body := data[4:min(4+n, len(data))]
			data = data[4+len(body):]
			if gens[src] == nil {
				gens[src] = new(device.CookieGenerator)
				gens[src].Init(device.NoisePublicKey(nodePub))
			}
			msg := append([]byte(nil), real...)
			if flags&1 != 0 {
				msg = junkInitiation(nodePub, 7)
			}
			write := func() {
				if off < len(msg) {
					copy(msg[off:], body)
				}
			}
			macs := flags&2 != 0
			if flags&4 == 0 {
				write()
			}
			if macs {
				clear(msg[initMAC2Off:]) // a stock client sends zeros without a cookie
				gens[src].AddMacs(msg)
			}
			if flags&4 != 0 {
				write()
			}
			sender := binary.LittleEndian.Uint32(msg[initSenderOff:])
			withMAC2 := macs && hasCookie[src] && flags&4 == 0 // as the client set them, with its cookie

			before := h.m.Stats()
			h.runFrom([][]byte{msg}, []conn.Endpoint{sources[src]})
			after := h.m.Stats()
			if after.Received-before.Received != 1 || handled(after)-handled(before) != 1 {
				t.Fatalf("one datagram: received %d, handled %d", after.Received-before.Received, handled(after)-handled(before))
			}
			cookies := after.CookiesSent - before.CookiesSent
			if withMAC2 && cookies+after.CookieLimited-before.CookieLimited != 0 {
				t.Fatalf("an initiation with a valid mac2 from %v was refused for want of one", sources[src])
			}
			if cookies > 0 && after.BadMAC1 != before.BadMAC1 {
				t.Fatal("a cookie reply for an initiation with a bad mac1")
			}
			for range cookies {
				var r []byte
				select {
				case r = <-sock.Sent():
				default:
					t.Fatalf("CookiesSent counts %d replies, none sent", cookies)
				}
				if len(r) != cookieReplySize || binary.LittleEndian.Uint32(r) != typeCookieReply || binary.LittleEndian.Uint32(r[4:]) != sender {
					t.Fatalf("cookie reply %x to an initiation from sender %x", r, sender)
				}
				if macs && flags&4 == 0 {
					var reply device.MessageCookieReply
					reply.Type, reply.Receiver = typeCookieReply, sender
					copy(reply.Nonce[:], r[8:])
					copy(reply.Cookie[:], r[8+len(reply.Nonce):])
					if !gens[src].ConsumeReply(&reply) {
						t.Fatalf("the client's cookie generator refuses the cookie reply %x", r)
					}
					hasCookie[src] = true
				}
			}
			select {
			case r := <-sock.Sent():
				t.Fatalf("%x sent, but CookiesSent counts %d", r, cookies)
			default:
			}
			if st := h.m.hs.state(); st.queued > h.m.hs.lim.queue || st.sources > h.m.hs.lim.maxSources {
				t.Fatalf("admission holds %d initiations of %d sources", st.queued, st.sources)
			}
		}
	})
}
