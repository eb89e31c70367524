package plane

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkValidate validates a desired state of 100,000 peers in two tenants: what a node
// spends on each Apply before it builds its snapshot.
func BenchmarkValidate(b *testing.B) {
	d := testDesired()
	d.Peers = make([]Peer, 0, 100_000)
	for i := range 100_000 {
		var k [32]byte
		k[0], k[1], k[2], k[3] = byte(i), byte(i>>8), byte(i>>16), 1
		d.Peers = append(d.Peers, Peer{ID: int64(i + 1), Tenant: int64(1 + i%2), Name: fmt.Sprintf("device-%06d", i), PublicKey: k, Enabled: true,
			IPv4:   netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)}).Next().Next(),
			IPv6:   netip.AddrFrom16([16]byte{0xfd, 0x12, 0x34, 0x56, 0x78, 0x9a, 12: 100, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}).Next().Next(),
			Groups: []string{"eng"}})
	}
	if err := d.Validate(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		d.Validate()
	}
}
