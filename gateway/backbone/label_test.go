package backbone

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestNodeAddr(t *testing.T) {
	for _, c := range []struct {
		id   NodeID
		want string
	}{
		{1, "240.0.0.1"},
		{258, "240.0.1.2"},
		{MaxNodeID, "255.255.255.254"},
	} {
		a := c.id.Addr()
		if a.String() != c.want {
			t.Errorf("%v: address %v, want %s", c.id, a, c.want)
		}
		b := a.As4()
		if got := nodeOf(b[:]); got != c.id {
			t.Errorf("nodeOf(%v) = %v, want %v", a, got, c.id)
		}
	}
	for _, s := range []string{"240.0.0.0", "255.255.255.255", "100.64.0.1", "10.0.0.1", "239.255.255.255"} {
		b := netip.MustParseAddr(s).As4()
		if got := nodeOf(b[:]); got != 0 {
			t.Errorf("nodeOf(%s) = %v, want no node", s, got)
		}
	}
}

// encode is what Send puts on the TUN for one packet.
func encode(from, to NodeID, tenant uint32, payload []byte) []byte {
	h := makeHeader(from, to)
	b := make([]byte, Overhead+len(payload))
	h.put(b, tenant, len(payload))
	copy(b[Overhead:], payload)
	return b
}

// checksum is RFC 1071's sum over an IPv4 header: 0 when the header's checksum is right.
func checksum(h []byte) uint16 {
	var s uint32
	for i := 0; i < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s>>16 != 0 {
		s = (s >> 16) + (s & 0xffff)
	}
	return ^uint16(s)
}

func TestEncodeDecode(t *testing.T) {
	for _, c := range []struct {
		from, to NodeID
		tenant   uint32
		n        int
	}{
		{1, 2, 7, 0},
		{2, 1, 0xffffffff, 1},
		{MaxNodeID, 3, 1, 1396},
		{5, MaxNodeID, 42, 8976},
	} {
		payload := bytes.Repeat([]byte{0xa5}, c.n)
		pkt := encode(c.from, c.to, c.tenant, payload)
		if len(pkt) != c.n+24 {
			t.Errorf("%+v: %d bytes, want %d (24 bytes of overhead)", c, len(pkt), c.n+24)
		}
		if s := checksum(pkt[:ipv4HeaderLen]); s != 0 {
			t.Errorf("%+v: the outer header's checksum is wrong (sum %#x)", c, s)
		}
		m, ok := decode(pkt)
		if !ok || m.from != c.from || m.to != c.to || m.tenant != c.tenant || !bytes.Equal(m.payload, payload) {
			t.Errorf("%+v: decode = %v, %v/%v/%v, %d bytes", c, ok, m.from, m.to, m.tenant, len(m.payload))
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := encode(1, 2, 9, []byte{0x45, 0, 0, 0})
	for _, c := range []struct {
		name string
		mod  func(b []byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:Overhead-1] }},
		{"ipv6", func(b []byte) []byte { b[0] = 0x60; return b }},
		{"options", func(b []byte) []byte { b[0] = 0x46; return b }},
		{"other protocol", func(b []byte) []byte { b[9] = 4; return b }},
		{"length longer", func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], uint16(len(b)+1)); return b }},
		{"length shorter", func(b []byte) []byte { return append(b, 0) }},
		{"more fragments", func(b []byte) []byte { b[6] = 0x20; return b }},
		{"fragment offset", func(b []byte) []byte { b[7] = 1; return b }},
		{"source not a node", func(b []byte) []byte { copy(b[12:], []byte{10, 0, 0, 1}); return b }},
		{"source node 0", func(b []byte) []byte { copy(b[12:], []byte{240, 0, 0, 0}); return b }},
		{"destination not a node", func(b []byte) []byte { copy(b[16:], []byte{100, 64, 0, 1}); return b }},
	} {
		b := c.mod(bytes.Clone(good))
		if _, ok := decode(b); ok {
			t.Errorf("%s: decoded", c.name)
		}
	}
	if _, ok := decode(good); !ok {
		t.Error("the good packet does not decode")
	}
}

func TestProbeMsg(t *testing.T) {
	var b [probeLen]byte
	for _, m := range []probeMsg{{probeEcho, 1, 0}, {probeReply, 0xffffffff, -1}, {probeEcho, 7, 1 << 62}} {
		m.put(b[:])
		got, ok := decodeProbe(b[:])
		if !ok || got != m {
			t.Errorf("%+v: decoded %+v, %v", m, got, ok)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, probeLen), append([]byte{probeEcho}, make([]byte, probeLen)...),
		{probeEcho, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, {3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}} {
		if m, ok := decodeProbe(bad); ok {
			t.Errorf("% x decoded as %+v", bad, m)
		}
	}
}

// FuzzDecode: decode and decodeProbe never panic, and what decode accepts encodes back to the
// same bytes (but the checksum, which decode does not check).
func FuzzDecode(f *testing.F) {
	f.Add(encode(1, 2, 9, []byte{0x45, 0, 0, 20}))
	var p [probeLen]byte
	probeMsg{probeEcho, 3, 12345}.put(p[:])
	f.Add(encode(3, 4, 0, p[:]))
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := decode(b)
		if !ok {
			return
		}
		if !m.from.valid() || !m.to.valid() {
			t.Fatalf("decoded nodes %v and %v", m.from, m.to)
		}
		re := encode(m.from, m.to, m.tenant, m.payload)
		re[10], re[11] = b[10], b[11]
		// The fields decode ignores: TOS, ID, DF, TTL.
		re[1], re[4], re[5], re[6], re[8] = b[1], b[4], b[5], b[6], b[8]
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoded\n% x\nfrom\n% x", re, b)
		}
		if m.tenant == ProbeTenant {
			if pm, ok := decodeProbe(m.payload); ok {
				var q [probeLen]byte
				pm.put(q[:])
				if !bytes.Equal(q[:], m.payload) {
					t.Fatalf("probe re-encoded % x from % x", q, m.payload)
				}
			}
		}
	})
}
