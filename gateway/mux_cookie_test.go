package gateway

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// TestMuxUnderLoadWantsMAC2: with muxUnderLoadQueued initiations waiting for the worker, an
// initiation without mac2 gets a cookie reply instead of an X25519; wireguard-go's own
// initiator code (CookieGenerator) turns that reply into a mac2 the Mux then accepts; a
// second after the load the Mux admits without mac2 again.
func TestMuxUnderLoadWantsMAC2(t *testing.T) {
	node := muxTestKey(t)
	nodePub := node.PublicKey()
	inner := newMuxFakeBind(8)
	m, clk := newTestMux(t, inner, node, nil)
	g := &muxGen{hs: make(chan muxInitiation, muxHandshakeQueue)}
	ep := muxFakeEndpoint{netip.MustParseAddrPort("192.0.2.7:40000")}

	var gen device.CookieGenerator
	gen.Init(device.NoisePublicKey(nodePub))
	msg := muxJunkInitiation(nodePub, 0x01020304)
	gen.AddMacs(msg)

	var c muxCounts
	if !m.admitInitiation(g, msg, ep, &c) {
		t.Fatal("not under load: an initiation without mac2 was refused")
	}
	for range muxUnderLoadQueued {
		g.hs <- muxInitiation{}
	}
	if m.admitInitiation(g, msg, ep, &c) {
		t.Fatal("under load: an initiation without mac2 was admitted")
	}
	if c[muxCookieDenied] != 1 {
		t.Errorf("CookieDenied = %d, want 1", c[muxCookieDenied])
	}
	var raw []byte
	select {
	case raw = <-inner.sent:
	default:
		t.Fatal("no cookie reply sent")
	}
	if len(raw) != device.MessageCookieReplySize {
		t.Fatalf("cookie reply of %d bytes, want %d", len(raw), device.MessageCookieReplySize)
	}
	var reply device.MessageCookieReply
	reply.Type = binary.LittleEndian.Uint32(raw[0:])
	reply.Receiver = binary.LittleEndian.Uint32(raw[4:])
	n := 8 + copy(reply.Nonce[:], raw[8:])
	copy(reply.Cookie[:], raw[n:])
	if reply.Type != device.MessageCookieReplyType || reply.Receiver != 0x01020304 {
		t.Fatalf("cookie reply type %d receiver %#x, want %d %#x", reply.Type, reply.Receiver, device.MessageCookieReplyType, 0x01020304)
	}
	if !gen.ConsumeReply(&reply) {
		t.Fatal("wireguard-go's initiator rejects the cookie reply")
	}

	// The client's retry carries mac2 for its address: admitted, still under load.
	gen.AddMacs(msg)
	if !m.admitInitiation(g, msg, ep, &c) {
		t.Fatal("under load: an initiation with a valid mac2 was refused")
	}
	// The same mac2 from another address is not valid.
	other := muxFakeEndpoint{netip.MustParseAddrPort("192.0.2.8:40000")}
	if m.admitInitiation(g, msg, other, &c) {
		t.Fatal("under load: a mac2 made for another source address was accepted")
	}

	// The load passes; a second later mac2 is not needed any more.
	for len(g.hs) > 0 {
		<-g.hs
	}
	junk := muxJunkInitiation(nodePub, 9)
	if m.admitInitiation(g, junk, ep, &c) {
		t.Fatal("right after the load an initiation without mac2 was admitted")
	}
	clk.Advance(muxUnderLoadFor + time.Millisecond)
	if !m.admitInitiation(g, junk, ep, &c) {
		t.Fatal("a second after the load an initiation without mac2 was refused")
	}
}
