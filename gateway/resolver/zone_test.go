package resolver

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/popgate/popgate/gateway/plane"
)

// BenchmarkBuildZones builds the zones of 100,000 peers in 100 tenants, as every publish of
// a large installation does.
func BenchmarkBuildZones(b *testing.B) {
	d := &plane.Desired{}
	for i := range 100 {
		d.Tenants = append(d.Tenants, plane.Tenant{ID: int64(i + 1), Name: fmt.Sprintf("t%03d", i)})
	}
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
		d.Peers = append(d.Peers, plane.Peer{ID: int64(i + 1), Tenant: int64(i%100 + 1), Name: fmt.Sprintf("peer%d", i),
			IPv4: a, IPv6: netip.AddrFrom16([16]byte{0xfd, 0, 1, 10: byte(i >> 16), 11: byte(i >> 8), 12: byte(i)}), Enabled: true})
	}
	served := func(p *plane.Peer) bool { return p.Enabled }
	for b.Loop() {
		BuildZones(d, served)
	}
}
