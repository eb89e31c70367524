package udpbind

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestControlRoundTrip: what putControl writes, parseControl reads back (the send side's
// PKTINFO has the receive side's layout, with the local address where the kernel puts it).
func TestControlRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		src     string
		ifindex int32
		gro     int
	}{
		{"198.18.0.1", 0, 0},
		{"198.18.0.1", 7, 1400},
		{"2001:db8::1", 0, 64},
		{"fe80::1", 3, 0},
	} {
		src := netip.MustParseAddr(tc.src)
		b := make([]byte, rxControlLen)
		n := putControl(b, src, tc.ifindex, 0)
		if tc.gro > 0 { // UDP_GRO's data is an int
			d := putCmsg(b[n:], unix.IPPROTO_UDP, unix.UDP_GRO, 4)
			binary.NativeEndian.PutUint32(d, uint32(tc.gro))
			n += cmsgSpace(4)
		}
		got := parseControl(b[:n])
		want := rxMeta{local: src, ifindex: tc.ifindex, gso: tc.gro}
		if got != want {
			t.Errorf("%s: parsed %+v, want %+v", tc.src, got, want)
		}
	}
}

// FuzzParseControl: control messages come from the kernel, but a parser of bytes must not
// trust lengths: no panic, no address of the wrong family.
func FuzzParseControl(f *testing.F) {
	b := make([]byte, txControlLen)
	f.Add(b[:putControl(b, netip.MustParseAddr("198.18.0.1"), 1, 1200)])
	f.Add(b[:putControl(b, netip.MustParseAddr("2001:db8::1"), 2, 0)])
	f.Add([]byte{})
	f.Add(make([]byte, unix.SizeofCmsghdr))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := parseControl(b)
		if m.gso < 0 {
			t.Fatalf("negative segment size %d", m.gso)
		}
		if m.local.IsValid() && m.local.Is4In6() {
			t.Fatalf("mapped address %s", m.local)
		}
	})
}
