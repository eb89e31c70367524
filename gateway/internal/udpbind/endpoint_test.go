package udpbind

import (
	"net/netip"
	"testing"
)

func TestEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in, dst, dstIP string
		bytes          int
	}{
		{"192.0.2.1:51820", "192.0.2.1:51820", "192.0.2.1", 6},
		{"[::ffff:192.0.2.1]:51820", "192.0.2.1:51820", "192.0.2.1", 6},
		{"[2001:db8::1]:1", "[2001:db8::1]:1", "2001:db8::1", 18},
	} {
		e, err := parseEndpoint(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if e.DstToString() != tc.dst || e.DstIP().String() != tc.dstIP || len(e.DstToBytes()) != tc.bytes {
			t.Errorf("%s: %s %s %d bytes, want %s %s %d", tc.in, e.DstToString(), e.DstIP(), len(e.DstToBytes()), tc.dst, tc.dstIP, tc.bytes)
		}
		if e.SrcIP().IsValid() || e.SrcToString() != "" {
			t.Errorf("%s: source %q, want none", tc.in, e.SrcToString())
		}
	}
	for _, bad := range []string{"", "192.0.2.1", "example.com:1", "[2001:db8::1]"} {
		if _, err := parseEndpoint(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	e := NewEndpoint(netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddr("198.18.0.1"))
	if e.SrcToString() != "198.18.0.1" {
		t.Errorf("source %q", e.SrcToString())
	}
	e.ClearSrc()
	if e.SrcIP().IsValid() || e.SrcToString() != "" {
		t.Errorf("source %q after ClearSrc", e.SrcToString())
	}
}
