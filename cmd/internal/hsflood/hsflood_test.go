package hsflood

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/popgate/popgate/store"
)

// TestFlood checks the generator against wireguard-go's own MAC code, on loopback: every
// initiation has a valid mac1; a source that answers cookies sends a valid mac2 after the
// responder's cookie reply, and one that does not never does.
func TestFlood(t *testing.T) {
	for _, answer := range []bool{false, true} {
		t.Run(map[bool]string{false: "ignores cookies", true: "answers cookies"}[answer], func(t *testing.T) {
			serverPriv, err := store.GeneratePrivateKey()
			if err != nil {
				t.Fatal(err)
			}
			serverPub := device.NoisePublicKey(serverPriv.PublicKey())
			var checker device.CookieChecker
			checker.Init(serverPub)
			srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			f, err := Start(Config{
				Server:        srv.LocalAddr().(*net.UDPAddr).AddrPort(),
				ServerKey:     serverPub,
				Sources:       []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")},
				AnswerCookies: answer,
				Rate:          2000,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Stop()

			buf := make([]byte, 256)
			replied := map[netip.AddrPort]bool{}
			mac2 := map[netip.AddrPort]int{}
			deadline := time.Now().Add(10 * time.Second)
			for n := 0; n < 2000; n++ {
				_ = srv.SetReadDeadline(deadline)
				size, from, err := srv.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("after %d initiations: %v", n, err)
				}
				msg := buf[:size]
				if size != device.MessageInitiationSize || binary.LittleEndian.Uint32(msg) != device.MessageInitiationType {
					t.Fatalf("a datagram of %d bytes, type %d: not an initiation", size, binary.LittleEndian.Uint32(msg))
				}
				if !checker.CheckMAC1(msg) {
					t.Fatalf("initiation %d from %s: mac1 not valid", n, from)
				}
				src, _ := from.MarshalBinary()
				if checker.CheckMAC2(msg, src) {
					mac2[from]++
				}
				if !replied[from] { // a cookie reply to the first from each source
					replied[from] = true
					reply, err := checker.CreateReply(msg, binary.LittleEndian.Uint32(msg[4:]), src)
					if err != nil {
						t.Fatal(err)
					}
					out := make([]byte, device.MessageCookieReplySize)
					binary.LittleEndian.PutUint32(out, reply.Type)
					binary.LittleEndian.PutUint32(out[4:], reply.Receiver)
					copy(out[8:], reply.Nonce[:])
					copy(out[8+len(reply.Nonce):], reply.Cookie[:])
					if _, err := srv.WriteToUDPAddrPort(out, from); err != nil {
						t.Fatal(err)
					}
				}
			}
			st := f.Stop()
			t.Logf("%+v; mac2 valid by source: %v", st, mac2)
			if st.Sent < 2000 || st.SourcesTotal != 2 {
				t.Errorf("stats %+v", st)
			}
			if answer {
				if len(mac2) != 2 || st.MAC2Sources != 2 || st.Cookies < 2 {
					t.Errorf("answering cookies: valid mac2 from %d sources (%v), stats %+v; want both", len(mac2), mac2, st)
				}
			} else if len(mac2) != 0 || st.MAC2Sources != 0 {
				t.Errorf("ignoring cookies: valid mac2 from %v, stats %+v; want none", mac2, st)
			}
		})
	}
}
